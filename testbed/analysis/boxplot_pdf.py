"""Read the statistics back out of a matplotlib box plot saved as a vector PDF.

Why: WetLinks (Laniewski et al., arXiv 2402.16448) publishes its RTT and throughput only as
figures, but its authors released the figures as vector PDFs with the dataset
(github.com/sys-uos/WetLinks, Plots/, drawn by Plotting_Scripts/latency_analysis.py and
throughput_analysis.py with `boxplot(..., notch=True)`).  A vector PDF holds the exact plotted
coordinates, so the box plot's statistics can be recovered to the precision of the drawing
(far better than reading pixels), and anyone can re-derive testbed/analysis/realism.py's
REFERENCES from a PDF they downloaded themselves:

    python -m testbed.analysis.boxplot_pdf Fig7a.pdf --log
    python -m testbed.analysis.boxplot_pdf Fig4a.pdf

What a notched matplotlib box encodes, and how each number is read:

* median = the notch's centre (the polygon's waist), Q1 / Q3 = the box's bottom / top edges;
* whiskers = the last data points within 1.5 IQR of the box (the vertical whisker lines' ends);
* n, the sample count, from the notch half-width: matplotlib draws the notch at
  median +- 1.57 IQR / sqrt(n) (`matplotlib.cbook.boxplot_stats`), so n = (1.57 IQR / h)^2;
* fliers = every point beyond the whiskers, drawn one marker each; with n known, a high
  percentile p is the (1 - p) n-th flier from the top when that many fliers exist (p99
  usually; p95 usually lies inside the whisker, where the plot only bounds it to
  [Q3, upper whisker]).

The y axis is mapped from its labelled major ticks (linear, or `log=True` for a log axis).
Only the PDF structure matplotlib's pdf backend writes is understood (FlateDecode content
streams, paths as `x y m` / `x y l`, markers as `1 0 0 1 dx dy cm /Mn Do`); anything else
raises a clear error rather than returning a guess.  No third-party file is part of the
project: the PDF is the user's.
"""

from __future__ import annotations

import argparse
import math
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

_STREAM = re.compile(rb"stream\r?\n")
_NUM = r"-?[\d.]+"
_TICK_LEN = 3.5  # matplotlib's major tick length (points)


@dataclass
class Box:
    """One notched box as drawn, in data units (q1/median/q3/whiskers) with its derived n and
    its fliers, sorted."""

    label: str
    q1: float
    median: float
    q3: float
    notch_lo: float
    notch_hi: float
    whisker_lo: float
    whisker_hi: float
    fliers: list[float]

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    @property
    def n(self) -> float:
        """Sample count from the notch half-width (matplotlib: 1.57 IQR / sqrt(n))."""
        half = (self.notch_hi - self.notch_lo) / 2.0
        return (1.57 * self.iqr / half) ** 2 if half > 0 else math.nan

    def upper_percentile(self, p: float) -> float | None:
        """The p-th percentile (p in (50, 100)) from the high fliers, or None when it lies
        inside the upper whisker (the plot then bounds it to [q3, whisker_hi] only)."""
        k = int(round((1.0 - p / 100.0) * self.n))
        high = [v for v in self.fliers if v > self.whisker_hi]
        return high[-k] if 0 < k <= len(high) else None


def content_streams(pdf: bytes) -> list[str]:
    """The decompressed content streams that draw something (FlateDecode only)."""
    out = []
    for m in _STREAM.finditer(pdf):
        end = pdf.find(b"endstream", m.end())
        try:
            txt = zlib.decompress(pdf[m.end():end].rstrip(b"\r\n")).decode("latin1")
        except zlib.error:
            continue
        if re.search(r"\sm\n", txt):
            out.append(txt)
    return out


def _paths(txt: str) -> list[list[tuple[float, float]]]:
    """Every stroked/filled path as its list of points (m starts one, l extends it)."""
    paths: list[list[tuple[float, float]]] = []
    cur: list[tuple[float, float]] | None = None
    for line in txt.splitlines():
        m = re.fullmatch(rf"({_NUM}) ({_NUM}) ([ml])", line.strip())
        if m:
            pt = (float(m.group(1)), float(m.group(2)))
            if m.group(3) == "m":
                cur = [pt]
                paths.append(cur)
            elif cur is not None:
                cur.append(pt)
        elif line.strip() in ("S", "B", "f", "h", "") or line.strip().endswith(" re W n"):
            cur = None if line.strip() in ("S", "B", "f") else cur
    return paths


def _labels(txt: str) -> list[tuple[float, float, str]]:
    """Text labels as (x, y, text) from `1 0 -0 1 x y cm BT ... [ (text) ] TJ`."""
    out = []
    for m in re.finditer(rf"1 0 -?0 1 ({_NUM}) ({_NUM}) cm\nBT\n.*?\[(.*?)\] TJ", txt, re.S):
        text = "".join(re.findall(r"\((.*?)\)", m.group(3)))
        out.append((float(m.group(1)), float(m.group(2)), text))
    return out


def _number(text: str) -> float | None:
    t = text.replace("\x92", "-").replace("\u2212", "-").replace("$", "").strip()
    try:
        return float(t)
    except ValueError:
        return None


def _fliers(txt: str) -> list[tuple[float, list[float]]]:
    """Marker runs: (x, [y ...]) from a `q` block of cumulative `1 0 0 1 dx dy cm /Mn Do`."""
    out = []
    for block in re.findall(rf"(1 0 0 1 {_NUM} {_NUM} cm /M\d+ Do(?:\n1 0 0 1 {_NUM} {_NUM} "
                            rf"cm /M\d+ Do)*)", txt):
        x = y = 0.0
        ys = []
        for dx, dy in re.findall(rf"1 0 0 1 ({_NUM}) ({_NUM}) cm", block):
            x, y = x + float(dx), y + float(dy)
            ys.append(y)
        out.append((x, ys))
    return out


def read_boxes(pdf_path: Path, log: bool = False) -> list[Box]:
    """Every notched box in the PDF, left to right, in data units."""
    try:
        pdf = pdf_path.read_bytes()
    except OSError as e:
        raise ValueError(f"{pdf_path}: cannot read ({e})") from e
    txt = "\n".join(content_streams(pdf))
    if not txt:
        raise ValueError(f"{pdf_path}: no FlateDecode content stream with paths (not a "
                         "matplotlib vector PDF?)")
    paths = _paths(txt)
    labels = _labels(txt)
    # notched boxes: closed 11-point polygons (q1 q1 nlo med nhi q3 q3 nhi med nlo q1)
    polys = [p for p in paths if len(p) == 11 and p[0] == p[-1]]
    if not polys:
        raise ValueError(f"{pdf_path}: no notched box (11-point polygon) found; was it drawn "
                         "with boxplot(notch=True)?")
    # y ticks: short horizontal segments of the major tick length left of the axes,
    # each followed by its label
    ticks = []
    for p in paths:
        if len(p) == 2 and p[0][1] == p[1][1] and abs(p[0][0] - p[1][0] - _TICK_LEN) < 1e-6:
            y = p[0][1]
            # its label: the numeric text left of the axis whose baseline is nearest
            near = [(abs(ly - y), v) for lx, ly, t in labels
                    if lx < p[1][0] and (v := _number(t)) is not None]
            if near and min(near)[0] < 8.0:
                ticks.append((y, min(near)[1]))
    ticks = sorted(set(ticks))
    if len(ticks) < 2:
        raise ValueError(f"{pdf_path}: fewer than two labelled y ticks; cannot map the axis")
    (y0, v0), (y1, v1) = ticks[0], ticks[-1]
    if log and (v0 <= 0 or v1 <= 0):
        raise ValueError(f"{pdf_path}: log axis with non-positive tick labels {v0}, {v1}")

    def val(y: float) -> float:
        f = (y - y0) / (y1 - y0)
        return 10 ** (math.log10(v0) + f * (math.log10(v1) - math.log10(v0))) if log \
            else v0 + f * (v1 - v0)

    # x tick labels (categories): the label nearest below each box centre
    verticals = [p for p in paths if len(p) == 2 and p[0][0] == p[1][0]]
    runs = _fliers(txt)
    boxes = []
    for poly in polys:
        ys = [pt[1] for pt in poly]
        xs = [pt[0] for pt in poly]
        xc = (min(xs) + max(xs)) / 2.0
        q1, nlo, med, nhi, q3 = ys[0], ys[2], ys[3], ys[4], ys[5]
        # whiskers: vertical lines at the centre that start on the box's edge (q1 or q3)
        whisk = [end[1] for p in verticals if abs(p[0][0] - xc) < 1e-3
                 for start, end in ((p[0], p[1]),)
                 if (abs(start[1] - q1) < 1e-6 and end[1] < q1)
                 or (abs(start[1] - q3) < 1e-6 and end[1] > q3)]
        cat = [(abs(lx - xc), t) for lx, ly, t in labels if ly < min(ys) and _number(t) is None]
        fl = sorted(val(y) for x, yy in runs if abs(x - xc) < 1e-3 for y in yy)
        boxes.append(Box(
            label=min(cat)[1] if cat else "", q1=val(q1), median=val(med), q3=val(q3),
            notch_lo=val(nlo), notch_hi=val(nhi),
            whisker_lo=val(min(whisk)) if whisk else val(q1),
            whisker_hi=val(max(whisk)) if whisk else val(q3), fliers=fl))
    return boxes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m testbed.analysis.boxplot_pdf",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("pdf", type=Path, help="a matplotlib box plot saved as PDF")
    ap.add_argument("--log", action="store_true", help="the y axis is logarithmic")
    args = ap.parse_args(argv)
    for b in read_boxes(args.pdf, args.log):
        p99 = b.upper_percentile(99)
        p95 = b.upper_percentile(95)
        print(f"{b.label or '(box)'}: median {b.median:.2f}  Q1 {b.q1:.2f}  Q3 {b.q3:.2f}  "
              f"whiskers {b.whisker_lo:.2f} / {b.whisker_hi:.2f}  n ~ {b.n:,.0f}  "
              f"fliers {len(b.fliers)}  p95 "
              f"{f'{p95:.2f}' if p95 is not None else f'in [{b.q3:.2f}, {b.whisker_hi:.2f}]'}"
              f"  p99 {f'{p99:.2f}' if p99 is not None else 'inside the whisker'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
