"""Does the learned part of each proposed controller earn its keep?  Two checks on the
evaluation seeds (10_000 on, never seen in training or checkpoint selection):

* CMADDPG: a trained policy against the untrained one it starts from (zero preference
  weights: the clustered, decentralised contention-aware assignment), on the validation seeds
  that selected it and on the evaluation seeds; per-seed paired differences of profit.
* MUECRS: the same shipped policy with its learned trajectory, hovering, and the greedy
  trajectory heuristic `agents.muecrs.centroid_velocity` (fly towards the centroid of one's
  users' pending tasks); the mode decisions are identical in all three.

    python -m controllers.offload.ablation [--config default|large|FILE] [--seeds 10]
                                           [--cmaddpg PATH] [--muecrs PATH] [--out DIR]

Prints mean ± 95 % CI (Student t over seeds) and writes `<out>/ablation-<config>.json`
(default out: results/offload/learning).  docs/offload-learning.md quotes its numbers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from controllers.offload.agents import load_controller, make_controller
from controllers.offload.agents.muecrs import MUECRS, TRAJECTORIES
from controllers.offload.baselines import Policy, evaluate
from controllers.offload.config import OffloadConfig
from controllers.offload.train import (
    DEFAULT_PLOTS,
    SHIPPED,
    VALIDATION_EPISODES,
    VALIDATION_SEED,
    resolve_config,
)
from controllers.report import mean_ci

EVAL_SEED = 10_000  # as controllers.offload.evaluate
METRICS = ("profit", "mean_effective_delay_s", "deadline_ratio", "uav_energy_j")


def per_seed(policy: Policy, config: OffloadConfig, seeds: list[int]) -> list[dict[str, float]]:
    """One episode per seed (paired across policies: the same tasks and positions)."""
    return [evaluate(policy, config, seed=s, episodes=1) for s in seeds]


def summarise(runs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    return {m: mean_ci([r[m] for r in runs]) for m in METRICS}


def paired(a: list[dict[str, float]], b: list[dict[str, float]],
           metric: str) -> dict[str, float]:
    """mean ± CI of a - b per seed: the comparison's noise without the seeds' own spread."""
    return mean_ci([x[metric] - y[metric] for x, y in zip(a, b, strict=True)])


def cmaddpg_check(config: OffloadConfig, path: Path, seeds: list[int]) -> dict[str, Any]:
    untrained = make_controller("cmaddpg", config, seed=0)
    trained = load_controller(path, config)
    validation = [VALIDATION_SEED + i for i in range(VALIDATION_EPISODES)]
    out: dict[str, Any] = {"policy": str(path)}
    for name, sset in (("validation", validation), ("evaluation", seeds)):
        u, t = per_seed(untrained, config, sset), per_seed(trained, config, sset)
        out[name] = {"seeds": sset, "untrained": summarise(u), "trained": summarise(t),
                     "trained_minus_untrained_profit": paired(t, u, "profit")}
    return out


def muecrs_check(config: OffloadConfig, path: Path, seeds: list[int]) -> dict[str, Any]:
    runs: dict[str, list[dict[str, float]]] = {}
    for kind in TRAJECTORIES:
        ctrl = load_controller(path, config)
        assert isinstance(ctrl, MUECRS)
        ctrl.trajectory_kind = kind
        runs[kind] = per_seed(ctrl, config, seeds)
    return {"policy": str(path), "seeds": seeds,
            **{kind: summarise(r) for kind, r in runs.items()},
            "learned_minus_hover_delay": paired(runs["learned"], runs["hover"],
                                                "mean_effective_delay_s"),
            "learned_minus_centroid_delay": paired(runs["learned"], runs["centroid"],
                                                   "mean_effective_delay_s")}


def _fmt(s: dict[str, float]) -> str:
    return f"{s['mean']:.4g} ± {s['ci95']:.3g}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m controllers.offload.ablation",
                                 description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="default")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--cmaddpg", type=Path, default=None, help="default: the shipped one")
    ap.add_argument("--muecrs", type=Path, default=None, help="default: the shipped one")
    ap.add_argument("--out", type=Path, default=DEFAULT_PLOTS)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    config, name = resolve_config(args.config)
    seeds = [EVAL_SEED + i for i in range(args.seeds)]
    report: dict[str, Any] = {"config": name}
    cm = args.cmaddpg or SHIPPED / f"cmaddpg-{name}.pt"
    if cm.is_file():
        report["cmaddpg"] = c = cmaddpg_check(config, cm, seeds)
        for split in ("validation", "evaluation"):
            r = c[split]
            print(f"cmaddpg {name} {split} ({len(r['seeds'])} seeds) profit: untrained "
                  f"{_fmt(r['untrained']['profit'])}, trained {_fmt(r['trained']['profit'])}, "
                  f"paired difference {_fmt(r['trained_minus_untrained_profit'])}")
    mu = args.muecrs or SHIPPED / f"muecrs-{name}.pt"
    if not mu.is_file():
        mu = SHIPPED / "muecrs-default.pt"  # size-independent
    report["muecrs"] = m = muecrs_check(config, mu, seeds)
    for kind in TRAJECTORIES:
        print(f"muecrs {name} trajectory {kind:8s} ({len(seeds)} seeds): eff. delay "
              f"{_fmt(m[kind]['mean_effective_delay_s'])} s, profit {_fmt(m[kind]['profit'])},"
              f" UAV energy {_fmt(m[kind]['uav_energy_j'])} J")
    print(f"muecrs learned - hover delay {_fmt(m['learned_minus_hover_delay'])} s; learned - "
          f"centroid {_fmt(m['learned_minus_centroid_delay'])} s")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"ablation-{name}.json").write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
