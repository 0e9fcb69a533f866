"""Ablations of the paper presets (docs/offload-papers.md): one field changed back at a time.

    python -m controllers.offload.paper_ablations [--seeds 3]

Runs the same shipped policies on the same evaluation seeds as `make eval-offload
PRESET=paper`, with one field of the preset changed, and prints the three claim lines for each
variant: MUECRS with the UAVs' uniform start, and with the satellite and the cloud switched
back on; CMADDPG with 1, 2, 4 and 8 clusters (deciders).  It exists so that the explanation
of a shortfall in the docs is a measurement anyone can repeat, not an argument.
"""

from __future__ import annotations

import argparse

from controllers.offload.baselines import PAPER_BASELINES
from controllers.offload.config import PRESETS, OffloadConfig
from controllers.offload.evaluate import (
    LEARNED,
    ORDER,
    PROPOSED,
    paper_claim,
    paper_claim_lines,
    run_grid,
)
from controllers.offload.train import SHIPPED


def variants() -> dict[str, dict[str, OffloadConfig]]:
    """Per proposed method: label -> config (its paper preset with one field changed)."""
    m, c = PRESETS["muecrs-paper"](), PRESETS["cmaddpg-paper"]()
    return {
        "muecrs": {
            "as preset (corner start, no satellite/cloud)": m,
            "uniform start (no satellite/cloud)": m.model_copy(update={
                "uav": m.uav.model_copy(update={"start": "uniform"})}),
            "corner start, satellite and cloud on": m.model_copy(update={
                "satellite": m.satellite.model_copy(update={"enabled": True}),
                "cloud": m.cloud.model_copy(update={"enabled": True})}),
        },
        "cmaddpg": {f"{n} cluster(s)": c.model_copy(update={"n_clusters": n})
                    for n in (1, 2, 4, 8)},
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m controllers.offload.paper_ablations",
                                 description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    others = tuple(a for a in ORDER if a not in (*PROPOSED, *LEARNED))
    for algo, cfgs in variants().items():
        algos = (algo, *LEARNED, *others, *PAPER_BASELINES)
        for label, cfg in cfgs.items():
            # the preset's name, so its policies (<algo>-<algo>-paper.pt) are the ones used
            table = run_grid({label: (cfg, f"{algo}-paper")}, algos, args.seeds, SHIPPED,
                             args.workers, lambda _: None)[label]
            print(f"## {algo}: {label}")
            for line in paper_claim_lines(paper_claim(table, algo)):
                print(line)
            print(f"   {algo}: effective delay {table[algo]['mean_effective_delay_s']['mean']:.3f}"
                  f" s, profit {table[algo]['profit']['mean']:.1f}", flush=True)


if __name__ == "__main__":
    main()
