"""CPN mapping benchmark: decision time per request of every mapper, with the quality it buys.

`mapping_times(console)` replays every preset with every algorithm on 3 evaluation seeds
(`make eval-cpn` is the full 5-seed table with the load sweep) and returns, per preset and
algorithm, the mapping decision time per request (median and p95 over the run's requests,
averaged over seeds, in ms), acceptance and CPU utilisation, plus ABS over the best baseline
as ratios.  A couple of minutes on two cores.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from controllers.cpn.evaluate import EVAL_SEED, run_jobs
from controllers.cpn.instances import PRESETS
from controllers.cpn.mappers import DEFAULT_ALGOS, PROPOSED

SEEDS = 3
KEYS = ("time_median_ms", "time_p95_ms", "acceptance", "cpu_util", "evals_per_request")


def mapping_times(console: Console, seeds: int = SEEDS,
                  workers: int | None = None) -> dict[str, Any]:
    workers = workers or min(2, os.cpu_count() or 1)
    jobs = [(p, a, EVAL_SEED + s, {"preset": p, "load": 1.0})
            for p in PRESETS for a in DEFAULT_ALGOS for s in range(seeds)]
    done = [0]

    def tick(what: str) -> None:
        done[0] += 1
        if done[0] % 10 == 0 or done[0] == len(jobs):
            console.print(f"[dim]{done[0]}/{len(jobs)} runs ({what})")

    raw = run_jobs(jobs, workers, tick)
    out: dict[str, Any] = {"seeds": seeds, "workers": workers, "presets": {}, "ratios": {}}
    for preset, algos in raw.items():
        rows = {a: {k: round(float(np.mean([r[k] for r in runs])), 4) for k in KEYS}
                for a, runs in algos.items()}
        out["presets"][preset] = rows
        base = [a for a in rows if a not in PROPOSED]
        ratios = {}
        for metric in ("acceptance", "cpu_util"):
            best = max(base, key=lambda a, m=metric: rows[a][m])
            theirs = rows[best][metric]
            ratios[metric] = {"best_baseline": best,
                              "abs_over_best": round(rows["abs"][metric] / theirs, 4)
                              if theirs else None}
        out["ratios"][preset] = ratios
        table = Table(title=f"CPN mapping, {preset} preset ({seeds} seeds)")
        for col in ("algorithm", "median ms", "p95 ms", "acceptance", "CPU util", "evals"):
            table.add_column(col, justify="left" if col == "algorithm" else "right")
        for algo in DEFAULT_ALGOS:
            r = rows[algo]
            table.add_row(algo, f"{r['time_median_ms']:.2f}", f"{r['time_p95_ms']:.2f}",
                          f"{r['acceptance']:.3f}", f"{r['cpu_util']:.3f}",
                          f"{r['evals_per_request']:.0f}" if r["evals_per_request"] else "-")
        console.print(table)
        console.print(
            f"ABS / best baseline: acceptance x{ratios['acceptance']['abs_over_best']} "
            f"({ratios['acceptance']['best_baseline']}), CPU util "
            f"x{ratios['cpu_util']['abs_over_best']} ({ratios['cpu_util']['best_baseline']})")
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(mapping_times(Console()), indent=1))


def run(console: Console) -> dict[str, Any]:
    """`make bench BENCH=cpn`: the mapping times above, then the SDN side on a real OVS
    backbone (controllers/cpn/sdn/bench.py)."""
    from controllers.cpn.sdn.bench import sdn_side

    return {"mapping": mapping_times(console), "sdn": sdn_side(console)}
