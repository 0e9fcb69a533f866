"""PNG figures for the report: returned as bytes so they can be both written and embedded.

Times are seconds since the run's time zero (or the first packet), so plots of different
captures and runs line up.
"""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

TOP = 8
MARKER_COLORS = {"link": "tab:red", "handover": "tab:purple"}


def to_png(fig: Any) -> bytes:
    """A finished figure as PNG bytes (closed afterwards): the one way every plot is saved."""
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def _markers(ax: Any, markers: list[dict[str, Any]], t0: float) -> None:
    seen = set()
    for m in markers:
        kind = m["kind"]
        ax.axvline(m["t"] - t0, color=MARKER_COLORS.get(kind, "grey"), lw=0.7, ls="--",
                   alpha=0.6, label=kind if kind not in seen else None)
        seen.add(kind)


def throughput(series: list[tuple[str, dict[str, int]]], bin_s: float, t0: float,
               title: str = "Throughput per flow") -> bytes | None:
    """series: (label, {bin index: bytes}) for the flows to draw."""
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(9, 4))
    for label, bins in series[:TOP]:
        xs = sorted(int(b) for b in bins)
        ax.plot([b * bin_s - t0 for b in xs], [bins[str(b)] * 8 / bin_s / 1e6 for b in xs],
                label=label[:60], lw=1)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("Mbit/s")
    ax.set_title(title)
    ax.legend(fontsize=7)
    return to_png(fig)


def timeseries(series: list[tuple[str, list[list[float]]]], t0: float, ylabel: str,
               title: str, markers: list[dict[str, Any]] | None = None) -> bytes | None:
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(9, 4))
    for label, pts in series[:TOP]:
        ax.plot([p[0] - t0 for p in pts], [p[1] for p in pts], ".", ms=2, label=label[:60])
    if markers:
        _markers(ax, markers, t0)
    ax.set_xlabel("time (s)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7, markerscale=4)
    return to_png(fig)


