"""What every evaluation in controllers/ reports the same way: a mean with its 95 % Student-t
confidence half-width over seeds, and a table printed with rich and saved as Markdown, so
results of different controllers read alike and a table in a results folder is the one that
was printed."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from rich.console import Console
from rich.table import Table


def mean_ci(values: Sequence[float]) -> dict[str, float]:
    """Mean and 95 % Student-t half-width (0 for a single value, NaN for none)."""
    from scipy import stats

    a = np.asarray(values, dtype=float)
    n = len(a)
    if n == 0:
        return {"mean": math.nan, "ci95": math.nan, "n": 0}
    half = float(stats.t.ppf(0.975, n - 1) * a.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    return {"mean": float(a.mean()), "ci95": half, "n": n}


def results_table(console: Console, title: str, columns: Sequence[str],
                  rows: Sequence[tuple[str, Sequence[str]]]) -> str:
    """Print rows (algorithm, cells) under `columns`; return the same as Markdown."""
    t = Table(title=title)
    t.add_column("algorithm")
    for c in columns:
        t.add_column(c, justify="right")
    md = [f"### {title}", "", "| algorithm | " + " | ".join(columns) + " |",
          "|---" * (len(columns) + 1) + "|"]
    for algo, cells in rows:
        t.add_row(algo, *cells)
        md.append(f"| {algo} | " + " | ".join(cells) + " |")
    console.print(t)
    return "\n".join(md) + "\n"
