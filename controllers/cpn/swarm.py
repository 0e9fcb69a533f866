"""Run independent swarm tasks serially, on a local pool, or on a Ray cluster.

ABS runs several swarms per decision, each a pure function of its task (the residual state, the
request and its own seed), so where they run changes the wall time and nothing else: results
come back in task order and the caller reduces them deterministically.  This module is only the
dispatch - Ray (or the local executor) is the cluster manager.

Backends: "serial" (in-process loop), "thread", "process" (concurrent.futures), "ray" (needs
`ray` and, for a cluster, its address; imported lazily so the rest of the package never needs
it).  Pass an existing executor to reuse its workers across decisions: a pool started per
decision costs tens of milliseconds, more than a decision's search.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, TypeVar

from testbed.sweep import rayenv

T = TypeVar("T")
R = TypeVar("R")

BACKENDS = ("serial", "thread", "process", "ray")


def require_ray(address: str | None = None) -> Any:
    """The ray module (testbed.sweep.rayenv), or an error naming the pin to install."""
    return rayenv.require_ray(address, "the Ray backend was requested")


def run_swarms(fn: Callable[[T], R], tasks: Sequence[T], backend: str = "serial", *,
               workers: int | None = None, executor: Executor | None = None,
               ray_address: str | None = None) -> list[R]:
    """fn(task) for every task, results in task order.

    `executor` (a live pool) takes precedence over starting one for "thread"/"process";
    `workers` sizes a pool started here (default: one per task).  fn must be a module-level
    function for "process" and "ray" (it is pickled).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown swarm backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "serial" or (len(tasks) <= 1 and backend != "ray"):
        return [fn(t) for t in tasks]
    if backend == "ray":
        ray = require_ray(ray_address)
        if not ray.is_initialized():
            ray.init(address=ray_address, ignore_reinit_error=True, log_to_driver=False)
        remote = ray.remote(fn)
        return list(ray.get([remote.remote(t) for t in tasks]))
    if executor is not None:
        return list(executor.map(fn, tasks))
    pool_cls = ProcessPoolExecutor if backend == "process" else ThreadPoolExecutor
    with pool_cls(max_workers=workers or len(tasks)) as pool:
        return list(pool.map(fn, tasks))


def make_executor(backend: str, workers: int) -> Executor | None:
    """A pool to keep across decisions (None for serial and ray, which need none)."""
    if backend == "process":
        return ProcessPoolExecutor(max_workers=workers)
    if backend == "thread":
        return ThreadPoolExecutor(max_workers=workers)
    return None
