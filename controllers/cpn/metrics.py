"""Run metrics and their aggregation over seeds.

Per run (online.simulate):

* acceptance - accepted / arrived requests.
* cpu_util, mem_util, bw_util - time-averaged used share of compute-node CPU, memory and link
  bandwidth, from the first arrival to the last (the drain after the last arrival would only
  dilute every algorithm alike).
* fragmentation - time-averaged CPU fragmentation (model.cpu_fragmentation: share of the free
  CPU that sits on nodes unable to host a median component, or whose links can no longer carry
  a median virtual link); bw_stranding - share of free bandwidth on links below a median
  virtual link.  Both are shares of what is free, so compare them at similar utilisation: a
  fuller network leaves less, and more fragmented, free capacity.
* time_median_ms, time_p95_ms - wall time of the mapping decision per request (mapper.map
  only; allocation and bookkeeping excluded).
* revenue - sum over accepted requests of total CPU * duration (the usual VNE revenue).
* evals_per_request - distinct candidates scored per decision, for the searchers.

Margins.  Ours (`relative_gain`): the mean over seeds of ABS against the mean of the best
baseline, at one setting.  The paper's (arXiv 2507.07535, abstract: ABS "achieves up to 73.2%
higher computing resource utilization and a 60.2% higher service acceptance ratio compared to
the best-performing baseline"): `up_to_gain`, the largest over the evaluated settings of that
setting's gain over its own best baseline.  The per-run metrics themselves are the standard
ones (accepted / arrived; time-averaged used share of CPU) - the reachable text of the paper
defines neither differently, so only the margin's aggregation is added here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

METRICS = ("acceptance", "cpu_util", "fragmentation", "time_median_ms", "time_p95_ms",
           "mem_util", "bw_util", "bw_stranding", "revenue", "evals_per_request")


@dataclass(frozen=True)
class RunMetrics:
    acceptance: float
    cpu_util: float
    mem_util: float
    bw_util: float
    fragmentation: float
    bw_stranding: float
    time_median_ms: float
    time_p95_ms: float
    revenue: float
    evals_per_request: float
    requests: int
    accepted: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def relative_gain(ours: float, theirs: float) -> float:
    """(ours - theirs) / theirs; inf when the baseline is 0 and we are not."""
    if theirs == 0:
        return 0.0 if ours == 0 else math.inf
    return (ours - theirs) / abs(theirs)


@dataclass(frozen=True)
class UpTo:
    """The paper-style margin: the largest per-setting gain, where, and over which baseline."""

    gain: float
    setting: str
    baseline: str
    ours: float
    theirs: float


def up_to_gain(points: Mapping[str, tuple[float, Mapping[str, float]]]) -> UpTo | None:
    """The paper's "up to X % higher than the best-performing baseline": at each setting
    (label -> (our value, baseline -> value)), our gain over that setting's best baseline; the
    largest of those.  None when no setting has a baseline.  Ties go to the first setting,
    so the answer does not depend on dict order beyond the caller's."""
    best: UpTo | None = None
    for setting, (ours, baselines) in points.items():
        if not baselines:
            continue
        name = max(baselines, key=lambda a: (baselines[a], a))
        gain = relative_gain(ours, baselines[name])
        if best is None or gain > best.gain:
            best = UpTo(gain, setting, name, ours, baselines[name])
    return best
