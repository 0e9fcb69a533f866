"""Online replay: requests arrive in time order, stay for their duration, then leave.

At each arrival the services that have departed are released first (in departure order), the
state learns the newcomer's demands (`State.observe`, the fragmentation reference), the mapper
decides - timed - and an accepted mapping is allocated after `State.check`.  A mapper that
returns an infeasible mapping is a bug, not a rejection: the replay raises.

Time integrals (utilisation, fragmentation) are exact for this piecewise-constant process and
run from the first arrival to the last.
"""

from __future__ import annotations

import heapq
import time

import numpy as np

from controllers.cpn.instances import Instance
from controllers.cpn.mappers import Mapper
from controllers.cpn.metrics import RunMetrics
from controllers.cpn.model import Mapping, State


def simulate(instance: Instance, mapper: Mapper, seed: int = 0) -> RunMetrics:
    """Replay `instance` with `mapper`; deterministic for a deterministic mapper and seed
    (except the timings)."""
    rng = np.random.default_rng(seed)
    state = State(instance.infra)
    departures: list[tuple[float, int, Mapping]] = []
    times: list[float] = []
    evals: list[int] = []
    integ = np.zeros(5)  # cpu, mem, bw utilisation, cpu fragmentation, bw stranding
    accepted = 0
    revenue = 0.0
    requests = instance.requests
    start = requests[0].arrival if requests else 0.0
    last = start
    snapshot = np.zeros(5)

    def advance(t: float) -> None:
        nonlocal last
        if t > last:
            integ[:] += snapshot * (t - last)
            last = t

    def measure() -> None:
        snapshot[:3] = state.utilisation()
        snapshot[3:] = state.fragmentation()

    for req in requests:
        while departures and departures[0][0] <= req.arrival:
            t, _, mapping = heapq.heappop(departures)
            advance(t)
            state.release(mapping)
            measure()
        advance(req.arrival)
        state.observe(req)
        t0 = time.perf_counter()
        mapping = mapper.map(state, req, rng)
        times.append(time.perf_counter() - t0)
        if hasattr(mapper, "last_evals"):
            evals.append(int(mapper.last_evals))
        if mapping is not None:
            problems = state.check(mapping)
            if problems:
                raise RuntimeError(f"{mapper.name} returned an infeasible mapping for request "
                                   f"{req.id}: " + "; ".join(problems))
            state.allocate(mapping)
            heapq.heappush(departures, (req.departure, req.id, mapping))
            accepted += 1
            revenue += req.total_cpu() * req.duration
        measure()
    span = last - start
    avg = integ / span if span > 0 else snapshot.copy()
    ms = np.asarray(times) * 1e3 if times else np.zeros(1)
    n = len(requests)
    return RunMetrics(
        acceptance=accepted / n if n else 0.0, cpu_util=float(avg[0]), mem_util=float(avg[1]),
        bw_util=float(avg[2]), fragmentation=float(avg[3]), bw_stranding=float(avg[4]),
        time_median_ms=float(np.median(ms)), time_p95_ms=float(np.percentile(ms, 95)),
        revenue=revenue, evals_per_request=float(np.mean(evals)) if evals else 0.0,
        requests=n, accepted=accepted)
