"""Where Ray comes from and how its nodes must be started: one place for the sweeps and for
the ABS swarms (controllers.cpn.swarm), which both run on Ray.

Ray is imported lazily (it costs ~1 s and most commands never need it), so a missing install
is reported when Ray is first wanted, with the command that fixes it.
"""

from __future__ import annotations

from typing import Any

RAY_PIN = "ray==2.58.0"  # the one pin is in pyproject.toml; this is for the error message
SLOT = "emulation_slot"  # the custom resource an emulation holds: one per Ray node
# A Ray worker that exits SIGKILLs its child processes by default: a run's teardown (after the
# SIGTERM a dead worker sends it) would be cut short and leave namespaces behind.  Nodes that
# run emulations must start with these (testbed.sweep.cluster and the local cluster do).
RAY_ENV = {"RAY_kill_child_processes_on_worker_exit": "0",
           "RAY_kill_child_processes_on_worker_exit_with_raylet_subreaper": "0",
           "RAY_USAGE_STATS_ENABLED": "0"}
# Ray replaces 127.0.0.1 by the host's outside address and listens on every interface; with
# this (meant for single-machine Ray on macOS and Windows) the local, in-process Ray uses and
# listens on 127.0.0.1 only.  It also refuses a second node, so a cluster cannot have it.
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def require_ray(address: str | None = None, wanted_by: str = "sweeps run as Ray tasks") -> Any:
    """The ray module, or a RuntimeError telling the user what to install."""
    try:
        import ray
    except ImportError:
        where = f" (--ray-address {address})" if address else ""
        raise RuntimeError(f"{wanted_by}{where} but ray is not installed; "
                           f"install it with: pip install {RAY_PIN} (or make setup)") from None
    return ray
