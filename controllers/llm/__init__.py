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

from __future__ import annotations

from testbed.workloads import lazy_exports

# Imported on first use (PEP 562, testbed.workloads.lazy_exports): the testbed reads this
# package's registration module (workload.py) for every scenario it loads.
_EXPORTS = {
    "AssignmentError": "controllers.llm.assign",
    "build_assignment": "controllers.llm.assign",
    "even_split": "controllers.llm.assign",
    "halda": "controllers.llm.assign",
    "halda_by_rounds": "controllers.llm.assign",
    "memory_use": "controllers.llm.assign",
    "memory_violations": "controllers.llm.assign",
    "proportional_split": "controllers.llm.assign",
    "ring_order": "controllers.llm.assign",
    "single_device": "controllers.llm.assign",
    "Assignment": "controllers.llm.latency",
    "Device": "controllers.llm.latency",
    "Link": "controllers.llm.latency",
    "Links": "controllers.llm.latency",
    "ModelShape": "controllers.llm.latency",
    "full_mesh": "controllers.llm.latency",
    "layer_capacity": "controllers.llm.latency",
    "link_between": "controllers.llm.latency",
    "links_from_matrix": "controllers.llm.latency",
    "pipeline_breakdown": "controllers.llm.latency",
    "pipeline_ms_per_token": "controllers.llm.latency",
    "pipeline_ttft_ms": "controllers.llm.latency",
    "proportional_shares": "controllers.llm.latency",
    "smollm2_135m": "controllers.llm.latency",
    "tensor_parallel_breakdown": "controllers.llm.latency",
    "tensor_parallel_ms_per_token": "controllers.llm.latency",
    "tensor_parallel_ttft_ms": "controllers.llm.latency",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(_EXPORTS)
