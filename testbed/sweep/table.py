"""The combined table of a sweep: every configuration's metrics as mean ± 95 % confidence
half-width over its seeds (Student t, scipy), from the runs' own files, and one plot per
metric.  Read again from the run folders each time, so the table of a resumed sweep covers
the runs of every attempt."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from testbed.sweep.expand import Config
from testbed.sweep.spec import Spec

DONE = "done.json"  # written last in a run's folder: the run is finished and complete


def write_json(path: Path, data: Any) -> None:
    """Whole or not at all: a reader (or a resumed sweep) never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    tmp.replace(path)


def get_path(data: Any, path: str) -> Any:
    """A value at a dotted path: mapping keys, list items by `name` or index; None if absent."""
    node = data
    for part in path.split("."):
        if isinstance(node, dict):
            if part not in node:
                return None
            node = node[part]
        elif isinstance(node, list):
            hit = [x for x in node if isinstance(x, dict) and x.get("name") == part]
            if hit:
                node = hit[0]
            elif part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node):
                node = node[int(part)]
            else:
                return None
        else:
            return None
    return node


def metric_path(template: str, params: dict[str, Any]) -> str:
    """`points.simple.table.{--algos}.acceptance.mean` with the run's own parameter values."""
    for k, v in params.items():
        template = template.replace("{" + k + "}", str(v))
    return template


def extract(spec: Spec, params: dict[str, Any], data: dict[str, Any]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for col, template in spec.metrics.items():
        v = get_path(data, metric_path(template, params))
        out[col] = float(v) if isinstance(v, int | float) and not isinstance(v, bool) \
            and math.isfinite(float(v)) else None
    return out


def mean_ci(values: list[float], level: float = 0.95) -> dict[str, float | int | None]:
    """Mean and the confidence half-width, Student t with n-1 degrees of freedom (None with
    fewer than two values: one run says nothing about its spread)."""
    from scipy import stats

    n = len(values)
    if n == 0:
        return {"mean": None, "ci95": None, "n": 0}
    mean = sum(values) / n
    if n < 2:
        return {"mean": mean, "ci95": None, "n": 1}
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return {"mean": mean, "ci95": half, "n": n}


def read_runs(runs_dir: Path) -> list[dict[str, Any]]:
    """Every finished run's record (done.json), in folder order."""
    out = []
    for d in sorted(runs_dir.iterdir()) if runs_dir.is_dir() else []:
        if (d / DONE).is_file():
            out.append(json.loads((d / DONE).read_text()))
    return out


def aggregate(spec: Spec, configs: list[Config], records: list[dict[str, Any]]
              ) -> list[dict[str, Any]]:
    """One row per configuration of the spec (in the spec's order), over its finished seeds."""
    by_cfg: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_cfg.setdefault(r["config_id"], []).append(r)
    rows, seen = [], set()
    for c in configs:
        if c.config_id in seen:
            continue
        seen.add(c.config_id)
        got = by_cfg.get(c.config_id, [])
        row: dict[str, Any] = {"config_id": c.config_id, "params": c.params,
                               "seeds": sorted(r["seed"] for r in got), "metrics": {}}
        for col in spec.metrics:
            vals = [r["metrics"][col] for r in got if r["metrics"].get(col) is not None]
            row["metrics"][col] = mean_ci(vals)
        rows.append(row)
    return rows


def _cell(s: dict[str, Any]) -> str:
    if s["mean"] is None:
        return "-"
    if s["ci95"] is None:
        return f"{s['mean']:.4g} (n=1)"
    return f"{s['mean']:.4g} ± {s['ci95']:.2g}"


def write(out: Path, spec: Spec, rows: list[dict[str, Any]]) -> list[Path]:
    """table.md, table.csv, table.json and plots/<metric>.png under `out`."""
    params = list(dict.fromkeys(k for r in rows for k in r["params"]))
    cols = list(spec.metrics)
    md = [f"# Sweep {spec.name}: mean ± 95 % CI (Student t over seeds)", "",
          "| " + " | ".join([*params, "seeds", *cols]) + " |",
          "|" + "---|" * (len(params) + 1 + len(cols))]
    for r in rows:
        md.append("| " + " | ".join([*(str(r["params"].get(p, "")) for p in params),
                                     str(len(r["seeds"])),
                                     *(_cell(r["metrics"][c]) for c in cols)]) + " |")
    (out / "table.md").write_text("\n".join(md) + "\n")
    with (out / "table.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([*params, "n", *(f"{c}_{s}" for c in cols for s in ("mean", "ci95"))])
        for r in rows:
            w.writerow([*(r["params"].get(p, "") for p in params), len(r["seeds"]),
                        *(r["metrics"][c][s] for c in cols for s in ("mean", "ci95"))])
    (out / "table.json").write_text(json.dumps(rows, indent=1, default=str))
    return [out / "table.md", out / "table.csv", *plots(out / "plots", spec, rows, params)]


def plots(where: Path, spec: Spec, rows: list[dict[str, Any]], params: list[str]) -> list[Path]:
    """Per metric: against the first numeric parameter (one line per value of the others) with
    CI error bars, or one bar per configuration when no parameter is numeric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    where.mkdir(parents=True, exist_ok=True)
    numeric = [p for p in params if all(isinstance(r["params"].get(p), int | float)
                                        and not isinstance(r["params"].get(p), bool)
                                        for r in rows)]
    xs = numeric[0] if numeric else None
    out = []
    for col in spec.metrics:
        fig, ax = plt.subplots(figsize=(6, 4))
        if xs is not None:
            groups: dict[str, list[dict[str, Any]]] = {}
            for r in rows:
                rest = ", ".join(f"{k}={v}" for k, v in r["params"].items() if k != xs)
                groups.setdefault(rest, []).append(r)
            for rest, rs in groups.items():
                rs = sorted((r for r in rs if r["metrics"][col]["mean"] is not None),
                            key=lambda r: r["params"][xs])
                ax.errorbar([r["params"][xs] for r in rs],
                            [r["metrics"][col]["mean"] for r in rs],
                            yerr=[r["metrics"][col]["ci95"] or 0 for r in rs],
                            marker="o", capsize=3, label=rest or None)
            ax.set_xlabel(xs)
            if any(groups):
                ax.legend(fontsize=7)
        else:
            labels = [", ".join(f"{v}" for v in r["params"].values()) or "-" for r in rows]
            ax.bar(range(len(rows)), [r["metrics"][col]["mean"] or 0 for r in rows],
                   yerr=[r["metrics"][col]["ci95"] or 0 for r in rows], capsize=3)
            ax.set_xticks(range(len(rows)), labels, rotation=30, ha="right", fontsize=7)
        ax.set_ylabel(col)
        ax.set_title(f"{spec.name}: {col} (mean ± 95 % CI)", fontsize=9)
        fig.tight_layout()
        path = where / f"{_fname(col)}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        out.append(path)
    return out


def _fname(col: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in col)
