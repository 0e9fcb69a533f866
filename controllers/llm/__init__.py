"""Splitting an LLM over heterogeneous edge devices joined by emulated links.

Modules, one job each:

* latency - the data model (`Device`, `ModelShape`, `Link`, `Assignment`) and the cost model:
  piped-ring (prima.cpp) decode latency and TTFT, tensor-parallel (TPI-LLM) latency and TTFT.
* assign - who runs which layers: `halda` (exact MILP per number of rounds, HiGHS) and the
  baselines `even_split`, `proportional_split`, `single_device`; `ring_order` proposes a ring.

The formulation and a worked example are in docs/llm-assignment.md.  Use::

    from controllers.llm import Device, full_mesh, halda, smollm2_135m

    devices = [Device("pi5", 9.0, 60.0, 2 << 30), Device("orin", 4.0, 25.0, 1 << 30)]
    plan = halda(devices, smollm2_135m(), full_mesh(["pi5", "orin"], 5.0, 100.0))
    plan.stages()   # [(device, start, end), ...] in execution order
"""

from controllers.llm.assign import (
    AssignmentError,
    build_assignment,
    even_split,
    halda,
    halda_by_rounds,
    memory_use,
    memory_violations,
    proportional_split,
    ring_order,
    single_device,
)
from controllers.llm.latency import (
    Assignment,
    Device,
    Link,
    Links,
    ModelShape,
    full_mesh,
    layer_capacity,
    link_between,
    links_from_matrix,
    pipeline_breakdown,
    pipeline_ms_per_token,
    pipeline_ttft_ms,
    proportional_shares,
    smollm2_135m,
    tensor_parallel_breakdown,
    tensor_parallel_ms_per_token,
    tensor_parallel_ttft_ms,
)

__all__ = [
    "Assignment",
    "AssignmentError",
    "Device",
    "Link",
    "Links",
    "ModelShape",
    "build_assignment",
    "even_split",
    "full_mesh",
    "halda",
    "halda_by_rounds",
    "layer_capacity",
    "link_between",
    "links_from_matrix",
    "memory_use",
    "memory_violations",
    "pipeline_breakdown",
    "pipeline_ms_per_token",
    "pipeline_ttft_ms",
    "proportional_shares",
    "proportional_split",
    "ring_order",
    "single_device",
    "smollm2_135m",
    "tensor_parallel_breakdown",
    "tensor_parallel_ms_per_token",
    "tensor_parallel_ttft_ms",
]
