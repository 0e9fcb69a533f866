"""Train an offloading controller on the fast simulator.

    python -m controllers.offload.train --algo cmaddpg [--config default|large|FILE]
                                        [--slots N] [--seed S] [--out DIR]
    make train ALGO=cmaddpg [CONFIG=...] [SLOTS=...]      (ALGO=all trains every one)

Writes `<out>/<algo>-<config>.pt` (the policy) and `<out>/<algo>-<config>.csv`: one row per
episode with the training scalars (profit, delays, deadline ratio, energy, load balance,
losses, exploration, wall time) - TensorBoard's scalars as a plain CSV that any plotting tool
reads.  Default out: results/offload/policies.  The shipped policies in
controllers/offload/policies were made by exactly this command (`make ship-policies`).

Episodes use seeds seed, seed+1, ...; before training and every `validate_every` episodes the
deterministic policy plays the validation episodes (seeds 5_000-5_003; score: profit, for
MUECRS minus the mean effective delay).  The final policy is saved unless an earlier one scored
better by more than SELECT_MARGIN (then that one is): a learner that only got worse ships its
best state, and noise does not swap a trained policy for an immature one.  The checkpoint's
meta records the scores and which was kept.  Evaluation (controllers.offload.evaluate) uses
seeds from 10_000 on, so no evaluation episode is ever seen in training or selection.

Every validation is also written to `<out>/<algo>-<config>-validation.csv` (episode, slot,
score, the untrained policy's score) and drawn, with the untrained score as a horizontal line,
to `results/offload/learning/<algo>-<config>.png` (--plot-dir): whether training beats the
policy it started from is the first thing to look at (docs/offload-learning.md).
"""

from __future__ import annotations

import argparse
import copy
import csv
import time
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from controllers.offload.agents import ALGORITHMS, Controller, make_controller, save_checkpoint
from controllers.offload.agents.base import strip_checkpoint
from controllers.offload.baselines import evaluate
from controllers.offload.config import PRESETS, OffloadConfig, load_config
from controllers.offload.model import OffloadModel, jain_index

DEFAULT_SLOTS = {"muecrs": 30_000, "cmaddpg": 12_000, "maddpg": 20_000, "ddpg": 30_000}
DEFAULT_OUT = Path("results/offload/policies")
DEFAULT_PLOTS = Path("results/offload/learning")
VALIDATION_SEED = 5_000  # training episodes use seed, seed+1, ...; evaluation 10_000 on
VALIDATION_EPISODES = 4
# the final policy is kept unless an earlier one was better on validation by this fraction:
# picking the maximum of noisy scores otherwise favours a lucky immature checkpoint
SELECT_MARGIN = 0.02
OBJECTIVE = {"muecrs": "delay"}  # what each algorithm is selected on; the rest: profit
SHIPPED = Path(__file__).parent / "policies"
SCALARS = ("episode", "slot", "profit", "mean_effective_delay_s", "mean_delay_s",
           "deadline_ratio", "uav_energy_j", "load_balance", "critic_loss", "actor_loss",
           "mode_loss", "epsilon", "wall_s")


def resolve_config(name: str) -> tuple[OffloadConfig, str]:
    """A preset name (default, large, muecrs-paper, cmaddpg-paper) or a JSON/YAML file ->
    (config, short name for file names)."""
    if name in PRESETS:
        return PRESETS[name](), name
    path = Path(name)
    if not path.is_file():
        raise SystemExit(f"--config {name}: neither a preset ({', '.join(PRESETS)}) nor a file")
    try:
        return load_config(path), path.stem
    except (ValueError, OSError) as exc:
        raise SystemExit(f"{path}: {exc}") from None


def train(algo: str, config: OffloadConfig, config_name: str, slots: int, seed: int,
          out: Path, quiet: bool = False, validate_every: int = 10,
          plot_dir: Path | None = DEFAULT_PLOTS) -> Path:
    """Train, log scalars and the validation curve, save; returns the policy path."""
    torch.set_num_threads(1)
    ctrl = make_controller(algo, config, seed)
    model = OffloadModel(config, seed)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{algo}-{config_name}"
    start = time.perf_counter()
    episode, totals, losses = 0, _zero(), {}
    untrained = validate(ctrl, config)
    best = (untrained, 0, copy.deepcopy(ctrl.state_dict()))
    curve = [(0, 0, untrained)]
    load = np.zeros(config.n_uavs)
    with open(stem.with_suffix(".csv"), "w", newline="") as fh, Progress(
            TextColumn(f"[bold]{algo}[/] {config_name}"), BarColumn(),
            TextColumn("{task.completed:>6}/{task.total} slots"),
            TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            disable=quiet) as progress:
        writer = csv.DictWriter(fh, SCALARS)
        writer.writeheader()
        bar = progress.add_task("train", total=slots, status="")
        for slot in range(1, slots + 1):
            decision = ctrl.decide(model, explore=True)
            metrics, info = model.step(decision)
            losses.update(ctrl.learn(model, metrics, info, model.done))
            for key in totals:
                totals[key] += metrics[key]
            load += info["server_cycles"][:config.n_uavs]
            if model.done:
                row = _episode_row(episode, slot, totals, load, losses, ctrl, start)
                writer.writerow(row)
                fh.flush()
                progress.update(bar, status=f"profit {row['profit']:8.1f}  delay "
                                f"{row['mean_effective_delay_s']:.3f} s")
                episode += 1
                totals, load = _zero(), np.zeros(config.n_uavs)
                model.reset(seed + episode)
                if episode % validate_every == 0:
                    score = validate(ctrl, config)
                    curve.append((episode, slot, score))
                    if score > best[0]:
                        best = (score, episode, copy.deepcopy(ctrl.state_dict()))
            progress.advance(bar)
    final = validate(ctrl, config)
    if curve[-1][1] != slots:
        curve.append((episode, slots, final))
    write_curve(stem.with_name(f"{stem.name}-validation.csv"), curve, untrained)
    if plot_dir is not None:
        plot_curve(curve, untrained, plot_dir / f"{stem.name}.png",
                   f"{algo} on {config_name}: validation {OBJECTIVE.get(algo, 'profit')}")
    selected_best = best[0] > final + SELECT_MARGIN * abs(final)
    if selected_best:
        ctrl.load_state_dict(best[2])
    meta = {"config_name": config_name, "config": config.model_dump(mode="json"),
            "slots": slots, "seed": seed, "wall_s": time.perf_counter() - start,
            "torch": torch.__version__, "validation": {
                "objective": OBJECTIVE.get(algo, "profit"), "final": final,
                "untrained": untrained,
                "best": best[0], "best_episode": best[1], "kept": "best" if selected_best
                else "final", "seeds": [VALIDATION_SEED + i for i in range(VALIDATION_EPISODES)]}}
    path = stem.with_suffix(".pt")
    save_checkpoint(ctrl, path, meta)
    return path


def validate(ctrl: Controller, config: OffloadConfig) -> float:
    """The deterministic policy's score on the validation episodes (seeds VALIDATION_SEED...,
    disjoint from training and from evaluation): profit, or minus the mean effective delay for
    a delay-minimising algorithm.  Training keeps the best policy by this score - model
    selection on held-out episodes, applied alike to every algorithm."""
    res = evaluate(ctrl, config, seed=VALIDATION_SEED, episodes=VALIDATION_EPISODES)
    if OBJECTIVE.get(ctrl.algo) == "delay":
        return -res["mean_effective_delay_s"]
    return res["profit"]


def write_curve(path: Path, curve: list[tuple[int, int, float]], untrained: float) -> None:
    """The validation learning curve as CSV: one row per validation."""
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(("episode", "slot", "score", "untrained"))
        for episode, slot, score in curve:
            writer.writerow((episode, slot, round(score, 5), round(untrained, 5)))


def plot_curve(curve: list[tuple[int, int, float]], untrained: float, path: Path,
               title: str) -> None:
    """Validation score against training slots, the untrained policy's as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([c[1] for c in curve], [c[2] for c in curve], marker="o", ms=3, label="trained")
    ax.axhline(untrained, color="grey", ls="--", label="untrained")
    ax.set_xlabel("training slots")
    ax.set_ylabel(f"validation score ({VALIDATION_EPISODES} episodes)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _zero() -> dict[str, float]:
    return dict.fromkeys(("profit", "tasks", "admitted", "delay_sum_s",
                          "effective_delay_sum_s", "uav_energy_j"), 0.0)


def _episode_row(episode: int, slot: int, t: dict[str, float], load: np.ndarray,
                 losses: dict[str, float], ctrl: object, start: float) -> dict[str, float]:
    tasks, admitted = max(t["tasks"], 1.0), max(t["admitted"], 1.0)
    return {"episode": episode, "slot": slot, "profit": round(t["profit"], 3),
            "mean_effective_delay_s": round(t["effective_delay_sum_s"] / tasks, 5),
            "mean_delay_s": round(t["delay_sum_s"] / admitted, 5),
            "deadline_ratio": round(t["admitted"] / tasks, 5),
            "uav_energy_j": round(t["uav_energy_j"], 1),
            "load_balance": round(jain_index(load), 5),
            **{k: losses.get(k, "") for k in ("critic_loss", "actor_loss", "mode_loss")},
            "epsilon": getattr(ctrl, "epsilon", ""),
            "wall_s": round(time.perf_counter() - start, 2)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m controllers.offload.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--algo", required=True, help=f"{', '.join(ALGORITHMS)} or all")
    ap.add_argument("--config", default="default", help="default, large or a JSON/YAML file")
    ap.add_argument("--slots", type=int, default=None, help="training slots (default per algo)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    ap.add_argument("--plot-dir", type=Path, default=DEFAULT_PLOTS,
                    help="where the validation learning curves are drawn")
    ap.add_argument("--acting-only", action="store_true",
                    help="save only what acting needs (no critics/targets): shipped policies")
    args = ap.parse_args(argv)
    algos = ALGORITHMS if args.algo == "all" else (args.algo,)
    for algo in algos:
        if algo not in ALGORITHMS:
            ap.error(f"--algo {algo}: choose one of {', '.join(ALGORITHMS)} or all")
    config, name = resolve_config(args.config)
    for algo in algos:
        slots = args.slots or DEFAULT_SLOTS[algo]
        path = train(algo, config, name, slots, args.seed, args.out, args.quiet,
                     plot_dir=args.plot_dir)
        if args.acting_only:
            strip_checkpoint(path)
        print(f"{algo}: {slots} slots -> {path} (scalars: {path.with_suffix('.csv')})")


if __name__ == "__main__":
    main()
