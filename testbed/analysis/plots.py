"""PNG figures for the report: returned as bytes so they can be both written and embedded.

Times are seconds since the run's time zero (or the first packet), so plots of different
captures and runs line up.  Legends go below the axes, one entry per line (long flow names
are what people read, so they are not squeezed into the plot area where they hid the data
and were cut at the figure's edge), at most TOP series with "+k more" for the rest; figures
are saved with bbox_inches="tight" so whatever sits outside the axes is kept.
"""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

TOP = 8
LABEL_MAX = 90  # characters of a legend entry; longer ones end in "…"
MARKER_COLORS = {"link": "tab:red", "handover": "tab:purple"}


def to_png(fig: Any) -> bytes:
    """A finished figure as PNG bytes (closed afterwards): the one way every plot is saved."""
    buf = io.BytesIO()
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)
    return buf.getvalue()


def short(label: str, n: int = LABEL_MAX) -> str:
    return label if len(label) <= n else label[: n - 1] + "…"


def figure(width: float = 9, height: float = 4) -> tuple[Any, Any]:
    """A figure and axes with constrained layout: the layout that makes room for a legend
    placed outside the axes (`legend_below`)."""
    return plt.subplots(figsize=(width, height), layout="constrained")


def _height(entries: int) -> float:
    """Figure height for a 4-inch plot plus a legend of `entries` lines below it (at most
    TOP series, a "+k more" line and the markers), so the axes keep their size."""
    return 4 + 0.13 * min(entries, TOP + 3)


def legend_below(ax: Any, more: int = 0, **kw: Any) -> Any:
    """The axes' legend under the x axis label, with a last "+k more" entry when `more`
    series were left out; two columns once it gets long.  On a constrained-layout figure
    (`figure`) it is the figure's legend, "outside lower center", and the axes shrink to make
    room; elsewhere it hangs under the axes and to_png's tight bounding box keeps it.
    Returns the legend (tests check that it lies inside the saved figure)."""
    handles, labels = ax.get_legend_handles_labels()
    if more:
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], ls="none"))
        labels.append(f"+{more} more (see the CSV files)")
    if not handles:
        return None
    ncol = 1 if len(handles) <= 4 or max(map(len, labels)) > 70 else 2
    if ax.figure.get_layout_engine() is not None:
        return ax.figure.legend(handles, labels, loc="outside lower center", ncol=ncol,
                                fontsize=7, frameon=False, **kw)
    return ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.2),
                     ncol=ncol, fontsize=7, frameon=False, **kw)


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
    fig, ax = figure(height=_height(len(series)))
    for label, bins in series[:TOP]:
        xs = sorted(int(b) for b in bins)
        ax.plot([b * bin_s - t0 for b in xs], [bins[str(b)] * 8 / bin_s / 1e6 for b in xs],
                label=short(label), lw=1)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("Mbit/s")
    ax.set_title(title)
    legend_below(ax, max(0, len(series) - TOP))
    return to_png(fig)


def timeseries(series: list[tuple[str, list[list[float]]]], t0: float, ylabel: str,
               title: str, markers: list[dict[str, Any]] | None = None) -> bytes | None:
    if not series:
        return None
    fig, ax = figure(height=_height(len(series) + len({m["kind"] for m in markers or []})))
    for label, pts in series[:TOP]:
        ax.plot([p[0] - t0 for p in pts], [p[1] for p in pts], ".", ms=2, label=short(label))
    if markers:
        _markers(ax, markers, t0)
    ax.set_xlabel("time (s)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    legend_below(ax, max(0, len(series) - TOP), markerscale=4)
    return to_png(fig)


