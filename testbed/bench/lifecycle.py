"""Lifecycle: time to bring quickstart up (command -> time zero, by phase) and to tear it
down, from a 20-second run of the real scenario (three repetitions, median reported)."""

from __future__ import annotations

import statistics
from typing import Any

from rich.console import Console

from testbed.run.runner import Run, RunOptions
from testbed.scenario import load, resolve

REPEAT = 3


def run(console: Console) -> dict[str, Any]:
    path = resolve("quickstart")
    runs = []
    for _ in range(REPEAT):
        sc = load(path, cut_to_s=20)
        res = Run(sc, str(path), RunOptions(console=console)).execute()
        t = res.metrics.get("timings_s", {})
        runs.append({"status": res.status, "run_dir": str(res.run_dir), **{
            k: t.get(k) for k in ("command_to_time_zero_s", "ns3_ready_s", "ns3_tap_attach_s",
                                  "namespaces_and_veths_s", "sdn_ready_s", "build_s",
                                  "health_s", "teardown_s")}})
    def med(key: str) -> float | None:
        vals = [r[key] for r in runs if r.get(key) is not None]
        return round(statistics.median(vals), 3) if vals else None
    out = {"runs": runs, "bring_up_s_median": med("command_to_time_zero_s"),
           "teardown_s_median": med("teardown_s"), "ns3_import_build_s_median": med("ns3_ready_s")}
    console.print(f"quickstart bring-up (command -> time zero): {out['bring_up_s_median']} s, "
                  f"teardown: {out['teardown_s_median']} s (median of {REPEAT})")
    return out
