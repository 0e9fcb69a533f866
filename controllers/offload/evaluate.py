"""Side-by-side evaluation of every offloading controller, and the papers' claims checked.

    python -m controllers.offload.evaluate [--config FILE | --preset paper] [--seeds 5]
                                           [--policies DIR] [--no-sweeps] [--out DIR]
    make eval-offload [CONFIG=my.yaml | PRESET=paper] [SEEDS=5]

For the default and the large preset (or only the given config file), every algorithm runs
the same evaluation episodes (seeds 10_000, 10_001, ...; training never sees them) and the
table gives mean ± 95% confidence half-width (Student t over the seeds) of: mean effective task
delay (a dropped task counts deadline + penalty), mean delay of served tasks, deadline
satisfaction, episode profit, UAV energy and load balance (Jain's index of UAV cycles).

Then the claims: CMADDPG's profit against the best baseline's (arXiv 2412.10700 claims
>= +25 %) and MUECRS's mean effective delay against the best baseline's (arXiv 2409.17882
claims >= 16.7 % lower).  Baselines: random, local_only, all_to_cloud, nearest_uav,
greedy_delay, maddpg (no clustering), ddpg (one central agent); the two proposed methods are
never each other's baseline.  Sweeps (default preset, one parameter varied): number of users
and task arrival rate, drawn as profit and delay curves.

Learned policies come from --policies (default: the shipped controllers/offload/policies):
`<algo>-<config>.pt`, else `<algo>-default.pt` where it fits the size (MUECRS fits any size,
MADDPG/CMADDPG any number of users, DDPG only its own size); an algorithm without a fitting
policy is listed as n/a with the command that trains one.

Writes results.json, table.md and the plots under --out (default results/offload/eval).

--preset paper: each proposed method in its own paper's setting (`OffloadConfig.muecrs_paper`,
`cmaddpg_paper`; docs/offload-papers.md) against that paper's kind of baselines
(`PAPER_COMPARISON`) and against every baseline we have (`baselines.PAPER_BASELINES`
included), three lines per claim (`paper_claim_lines`); no sweeps; default --out
results/offload/eval-paper.  Policies: `<algo>-muecrs-paper.pt` etc. where shipped.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from rich.console import Console

from controllers.offload.agents import load_controller
from controllers.offload.baselines import BASELINES, PAPER_BASELINES, Policy, evaluate
from controllers.offload.config import PAPER_PRESETS, PRESETS, OffloadConfig, load_config
from controllers.offload.train import SHIPPED
from controllers.report import mean_ci, results_table

EVAL_SEED = 10_000
METRICS = ("mean_effective_delay_s", "mean_delay_s", "deadline_ratio", "profit",
           "uav_energy_j", "load_balance")
LABELS = {"mean_effective_delay_s": "eff. delay (s)", "mean_delay_s": "served delay (s)",
          "deadline_ratio": "deadline hit", "profit": "profit", "uav_energy_j": "UAV energy (kJ)",
          "load_balance": "load balance"}
PROPOSED = ("cmaddpg", "muecrs")
LEARNED = ("maddpg", "ddpg")  # learned baselines
ORDER = (*PROPOSED, "maddpg", "ddpg", *BASELINES)
CLAIMS = {"cmaddpg": ("profit", 0.25), "muecrs": ("mean_effective_delay_s", 0.167)}
# --preset paper: the baselines each paper compares against - its kind of baselines, since the
# papers' own baseline sections were not retrievable (docs/offload-papers.md): the learned
# multi-agent / single-agent ones and the classic schemes of its setting
PAPER_COMPARISON = {
    "muecrs": ("maddpg", "ddpg", "random_offload", "local_only", "nearest_uav", "fixed_circle"),
    "cmaddpg": ("maddpg", "ddpg", "random_offload", "local_only", "nearest_uav",
                "all_to_satellite"),
}
PAPER_CLAIM_TEXT = {
    "muecrs": "task delay at least 16.7 % below the comparative algorithms (arXiv 2409.17882, "
              "abstract; its setting table was not retrievable)",
    "cmaddpg": "system profit at least 25 % above existing methods (arXiv 2412.10700, "
               "abstract; its setting table was not retrievable)",
}
REPRODUCED_WITHIN = 0.2  # a margin counts as reproduced at >= 80 % of the claimed one
ALL_ORDER = (*ORDER, *PAPER_BASELINES)
USERS_SWEEP = (10, 20, 30, 40)
LOAD_SWEEP = (0.3, 0.5, 0.7, 0.9)


def policy_for(algo: str, config: OffloadConfig, name: str,
               policies: Path) -> tuple[Policy | None, str]:
    """(policy, provenance) or (None, why not)."""
    if algo in BASELINES:
        return BASELINES[algo](), "heuristic"
    if algo in PAPER_BASELINES:
        return PAPER_BASELINES[algo](), "heuristic"
    errors = []
    for candidate in dict.fromkeys((name, "default")):
        path = policies / f"{algo}-{candidate}.pt"
        if not path.is_file():
            continue
        try:
            return load_controller(path, config), str(path)
        except ValueError as exc:
            errors.append(str(exc))
    hint = f"make train ALGO={algo} CONFIG={name}"
    return None, f"n/a: no policy for this size ({hint})" + (f"; {errors[0]}" if errors else "")


def _run(job: tuple[str, OffloadConfig, str, Path, int]) -> tuple[str, int, dict | None, str]:
    algo, config, name, policies, seed = job
    import torch

    torch.set_num_threads(1)
    policy, source = policy_for(algo, config, name, policies)
    if policy is None:
        return algo, seed, None, source
    return algo, seed, evaluate(policy, config, seed=seed, episodes=1), source


def run_grid(points: dict[str, tuple[OffloadConfig, str]], algos: tuple[str, ...],
             seeds: int, policies: Path, workers: int,
             progress: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    """Evaluate every (point, algo, seed); returns point -> algo -> {metric: summary}."""
    jobs = [(point, (algo, cfg, name, policies, EVAL_SEED + s))
            for point, (cfg, name) in points.items() for algo in algos for s in range(seeds)]
    raw: dict[str, dict[str, dict[str, Any]]] = {p: {} for p in points}
    with ProcessPoolExecutor(workers) as pool:
        for (point, _), (algo, _seed, metrics, source) in zip(
                jobs, pool.map(_run, [j for _, j in jobs]), strict=True):
            cell = raw[point].setdefault(algo, {"source": source, "runs": []})
            if metrics is not None:
                cell["runs"].append(metrics)
            progress(f"{point} {algo}")
    out: dict[str, dict[str, Any]] = {}
    for point, cells in raw.items():
        out[point] = {}
        for algo, cell in cells.items():
            runs = cell["runs"]
            out[point][algo] = {"source": cell["source"], **(
                {m: mean_ci([r[m] for r in runs]) for m in METRICS} if runs else {})}
    return out


def claims(table: dict[str, Any]) -> dict[str, Any]:
    """Each proposed method against the best baseline on its paper's metric."""
    result = {}
    baselines = [a for a in table if a not in PROPOSED and "profit" in table[a]]
    for algo, (metric, target) in CLAIMS.items():
        if "profit" not in table.get(algo, {}) or not baselines:
            result[algo] = {"metric": metric, "status": "n/a"}
            continue
        lower_better = metric.endswith("delay_s")
        means = {a: table[a][metric]["mean"] for a in baselines}
        best = (min if lower_better else max)(means, key=means.__getitem__)
        ours, theirs = table[algo][metric]["mean"], table[best][metric]["mean"]
        gain = ((theirs - ours) / theirs if lower_better else (ours - theirs) / abs(theirs))
        result[algo] = {"metric": metric, "best_baseline": best, "ours": ours,
                        "baseline": theirs, "improvement": gain, "claimed": target,
                        "reproduced": gain >= target, "shortfall": max(target - gain, 0.0)}
        learned = [a for a in baselines if a in LEARNED]
        if learned:  # the kind of baseline the papers compare against
            best_l = (min if lower_better else max)(learned, key=means.__getitem__)
            theirs_l = means[best_l]
            result[algo]["best_learned_baseline"] = best_l
            result[algo]["improvement_over_learned"] = (
                (theirs_l - ours) / theirs_l if lower_better else (ours - theirs_l) / abs(theirs_l))
    return result


def _gain(ours: float, theirs: float, lower_better: bool) -> float:
    return (theirs - ours) / theirs if lower_better else (ours - theirs) / abs(theirs)


def paper_claim(table: dict[str, Any], algo: str,
                paper_baselines: tuple[str, ...] | None = None) -> dict[str, Any]:
    """`algo` in its paper's setting: its margin over the best of the paper's kind of
    baselines (`PAPER_COMPARISON`) and over the best of every baseline in the table (the
    proposed methods excepted), each with a verdict against the claimed margin."""
    metric, target = CLAIMS[algo]
    lower_better = metric.endswith("delay_s")
    if metric not in table.get(algo, {}):
        return {"algo": algo, "metric": metric, "claimed": target, "status": "n/a"}
    ours = table[algo][metric]["mean"]
    out: dict[str, Any] = {"algo": algo, "metric": metric, "claimed": target, "ours": ours,
                           "claim_text": PAPER_CLAIM_TEXT[algo]}
    paper = paper_baselines if paper_baselines is not None else PAPER_COMPARISON[algo]
    groups = {"paper": [a for a in paper if metric in table.get(a, {})],
              "all": [a for a in table if a not in PROPOSED and metric in table[a]]}
    for key, names in groups.items():
        if not names:
            out[key] = {"status": "n/a"}
            continue
        means = {a: table[a][metric]["mean"] for a in names}
        best = (min if lower_better else max)(means, key=means.__getitem__)
        gain = _gain(ours, means[best], lower_better)
        out[key] = {"best": best, "baseline": means[best], "improvement": gain,
                    "reproduced": gain >= (1 - REPRODUCED_WITHIN) * target,
                    "shortfall": max(target - gain, 0.0)}
    return out


def _verdict(c: dict[str, Any], claimed: float) -> str:
    if c.get("status") == "n/a":
        return "not checked (no baseline result)"
    if c["reproduced"]:
        return f"reproduced within {REPRODUCED_WITHIN:.0%} of the claimed margin"
    return (f"not reproduced: {c['improvement']:+.1%} vs the claimed {claimed:+.1%}, "
            f"short by {c['shortfall']:.1%} points")


def paper_claim_lines(check: dict[str, Any]) -> list[str]:
    """The three lines per claim (and the verdicts) `--preset paper` prints and saves."""
    algo = check["algo"]
    if check.get("status") == "n/a":
        return [f"{algo}: claim not checked (no result for {algo})"]
    metric, ours = check["metric"], check["ours"]
    lines = [f"{algo} paper: {check['claim_text']}"]
    for key, what in (("paper", "ours in the paper's setting vs its baselines"),
                      ("all", "ours vs the best baseline we have")):
        c = check[key]
        if c.get("status") == "n/a":
            lines.append(f"{algo} {what}: n/a")
            continue
        label = "best paper baseline" if key == "paper" else "best"
        lines.append(f"{algo} {what}: {c['improvement']:+.1%} ({metric} {ours:.4g} vs "
                     f"{c['baseline']:.4g}; {label} {c['best']})")
    lines.append(f"{algo} verdict: vs its baselines {_verdict(check['paper'], check['claimed'])}"
                 f"; vs the best we have {_verdict(check['all'], check['claimed'])}")
    return lines


def render(console: Console, title: str, table: dict[str, Any]) -> str:
    """Print a rich table; return the same as Markdown."""
    rows: list[tuple[str, list[str]]] = []
    missing = []
    for algo in ALL_ORDER:
        row = table.get(algo)
        if row is None:
            continue
        if "profit" not in row:
            rows.append((algo, ["n/a"] + [""] * (len(METRICS) - 1)))
            missing.append(f"{algo}: {row['source']}")
        else:
            rows.append((algo, [_fmt(m, row[m]) for m in METRICS]))
    md = results_table(console, title, [LABELS[m] for m in METRICS], rows)
    for line in missing:
        console.print(f"[dim]{line}")
    return md + "\n".join(["", *(f"- {line}" for line in missing)]) + "\n"


def _fmt(metric: str, s: dict[str, float]) -> str:
    scale = 1e-3 if metric == "uav_energy_j" else 1.0
    digits = 1 if metric in ("profit", "uav_energy_j") else 3
    return f"{s['mean'] * scale:.{digits}f} ± {s['ci95'] * scale:.{digits}f}"


def plot_sweeps(sweeps: dict[str, dict[str, Any]], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    for sweep, xs, xlabel in (("users", USERS_SWEEP, "number of users"),
                              ("load", LOAD_SWEEP, "task arrival probability per slot")):
        for metric in ("profit", "mean_effective_delay_s"):
            fig, ax = plt.subplots(figsize=(6, 4))
            for algo in ORDER:
                pts = [(x, sweeps[f"{sweep}={x}"].get(algo, {}).get(metric)) for x in xs]
                pts = [(x, s) for x, s in pts if s]
                if not pts:
                    continue
                x, s = zip(*pts, strict=True)
                ax.errorbar(x, [v["mean"] for v in s], yerr=[v["ci95"] for v in s],
                            label=algo, marker="o", capsize=3,
                            linewidth=2.5 if algo in PROPOSED else 1.0)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(LABELS[metric])
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
            fig.tight_layout()
            path = out / f"{metric.split('_s')[0]}_vs_{sweep}.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            files.append(path)
    return files


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m controllers.offload.evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=None, help="a JSON/YAML config (default: both presets)")
    ap.add_argument("--preset", default=None, choices=("paper", *PRESETS),
                    help="paper: each proposed method in its paper's setting (three lines per "
                         "claim); or one named preset")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--policies", type=Path, default=SHIPPED)
    ap.add_argument("--algos", default=None, help="comma-separated subset (default: every "
                    "algorithm; with --preset paper also the paper baselines)")
    ap.add_argument("--no-sweeps", action="store_true")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None,
                    help="default results/offload/eval (eval-paper with --preset paper)")
    args = ap.parse_args(argv)
    if args.seeds < 2:
        ap.error("--seeds: at least 2 for a confidence interval")
    if args.config and args.preset:
        ap.error("--config and --preset exclude each other")
    if args.out is None:
        args.out = Path("results/offload/eval-paper" if args.preset == "paper"
                        else "results/offload/eval")
    if args.algos is None:
        args.algos = ",".join(ALL_ORDER if args.preset == "paper" else ORDER)
    algos = tuple(a.strip() for a in args.algos.split(",") if a.strip())
    unknown = [a for a in algos if a not in ALL_ORDER]
    if unknown:
        ap.error(f"--algos: unknown {', '.join(unknown)}; known: {', '.join(ALL_ORDER)}")
    console = Console()
    if args.preset == "paper":
        run_paper(console, args, algos)
        return
    if args.preset:
        configs = {args.preset: (PRESETS[args.preset](), args.preset)}
    elif args.config:
        path = Path(args.config)
        try:
            configs = {path.stem: (load_config(path), path.stem)}
        except (ValueError, OSError) as exc:
            raise SystemExit(f"{path}: {exc}") from None
    else:
        configs = {"default": (OffloadConfig.default(), "default"),
                   "large": (OffloadConfig.large(), "large")}
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    done = [0]

    def tick(what: str) -> None:
        done[0] += 1
        if done[0] % 10 == 0:
            console.print(f"[dim]{done[0]} episodes ({what}), {time.perf_counter() - start:.0f} s")

    tables = run_grid(configs, algos, args.seeds, args.policies, args.workers, tick)
    report: dict[str, Any] = {"seeds": args.seeds, "eval_seed": EVAL_SEED,
                              "policies": str(args.policies), "configs": {}}
    markdown = []
    for point, table in tables.items():
        cfg, _ = configs[point]
        markdown.append(render(console, f"{point}: {cfg.n_users} users, {cfg.n_uavs} UAVs, "
                               f"{args.seeds} seeds", table))
        verdict = claims(table)
        for algo, c in verdict.items():
            if c.get("status") == "n/a":
                line = f"{algo}: claim not checked (no result)"
            else:
                verdict_text = ("reproduced" if c["reproduced"]
                                else f"short by {c['shortfall']:.1%}")
                line = (f"{algo}: {c['metric']} {c['ours']:.4g} vs best baseline "
                        f"{c['best_baseline']} {c['baseline']:.4g}: {c['improvement']:+.1%} "
                        f"(claimed >= {c['claimed']:.1%}: {verdict_text})")
                if "best_learned_baseline" in c:
                    line += (f"; vs the best learned baseline {c['best_learned_baseline']}: "
                             f"{c['improvement_over_learned']:+.1%}")
            console.print(line)
            markdown.append(f"- {line}")
        markdown.append("")
        report["configs"][point] = {"config": cfg.model_dump(mode="json"), "table": table,
                                    "claims": verdict}
    if not args.no_sweeps and not args.config and not args.preset:
        base = OffloadConfig.default()
        points = {f"users={n}": (base.model_copy(update={"n_users": n}), "default")
                  for n in USERS_SWEEP}
        points |= {f"load={r}": (base.model_copy(update={"tasks": base.tasks.model_copy(
            update={"arrival_rate": r})}), "default") for r in LOAD_SWEEP}
        sweeps = run_grid(points, algos, args.seeds, args.policies, args.workers, tick)
        report["sweeps"] = sweeps
        for f in plot_sweeps(sweeps, args.out):
            console.print(f"plot: {f}")
    report["wall_s"] = time.perf_counter() - start
    (args.out / "results.json").write_text(json.dumps(report, indent=1))
    (args.out / "table.md").write_text("\n".join(markdown))
    console.print(f"wrote {args.out / 'results.json'} and {args.out / 'table.md'} "
                  f"({report['wall_s']:.0f} s)")


def run_paper(console: Console, args: argparse.Namespace, algos: tuple[str, ...]) -> None:
    """--preset paper: each proposed method in its paper's preset against the paper's kind of
    baselines and every baseline we have; prints and saves three lines per claim."""
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    report: dict[str, Any] = {"seeds": args.seeds, "eval_seed": EVAL_SEED,
                              "policies": str(args.policies), "preset": "paper", "configs": {}}
    markdown = []
    for algo, name in PAPER_PRESETS.items():
        cfg = PRESETS[name]()
        # the other paper's method is never a baseline here (as in the default evaluation)
        run = tuple(a for a in algos if a == algo or a not in PROPOSED)
        if algo not in run:
            continue
        table = run_grid({name: (cfg, name)}, run, args.seeds, args.policies, args.workers,
                         lambda _: None)[name]
        markdown.append(render(console, f"{name}: {cfg.n_users} users, {cfg.n_uavs} UAVs, "
                               f"{args.seeds} seeds ({algo}'s paper setting)", table))
        check = paper_claim(table, algo)
        lines = paper_claim_lines(check)
        for line in lines:
            console.print(line)
        markdown += [*(f"- {line}" for line in lines), ""]
        report["configs"][name] = {"config": cfg.model_dump(mode="json"), "table": table,
                                   "paper_claim": check, "lines": lines}
    report["wall_s"] = time.perf_counter() - start
    (args.out / "results.json").write_text(json.dumps(report, indent=1))
    (args.out / "table.md").write_text("\n".join(markdown))
    console.print(f"wrote {args.out / 'results.json'} and {args.out / 'table.md'} "
                  f"({report['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
