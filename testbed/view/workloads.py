"""The workloads' own time series for the view (offload task delays, CPN services, tokens/s,
consensus rounds): each workload registers a `view` hook (testbed/workloads.py) that reads the
files it already writes in the run folder; this module asks every installed one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from testbed.workloads import Registry

Points = list[tuple[float, dict[str, float]]]


def series_of_workloads(run_dir: Path, t_zero_wall: float) -> tuple[list[dict[str, Any]], Points]:
    """(series declarations, points) of every workload with something in this run."""
    series: list[dict[str, Any]] = []
    points: Points = []
    for _, fn in Registry.installed().calls("view"):
        try:
            got = fn(run_dir, t_zero_wall)
        except Exception:  # noqa: BLE001 - one workload's numbers never break the view
            continue
        if got:
            series += got[0]
            points += got[1]
    points.sort(key=lambda p: p[0])
    return series, points
