"""Outputs of an analysis: JSON, CSVs, PNGs and one self-contained HTML page.

The HTML embeds its figures as base64 data URIs and its CSS inline, with no external link,
so the file can be mailed or opened offline and still shows everything.
"""

from __future__ import annotations

import base64
import csv
import html
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

CSS = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:12px}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#eee}
td:first-child,th:first-child{text-align:left}.err{color:#b00}img{max-width:100%}
h2{border-bottom:1px solid #ddd}"""


def table_html(rows: list[dict[str, Any]], cols: list[str], limit: int = 50,
               tips: dict[str, str] | None = None) -> str:
    """An HTML table of `rows`.  `tips` maps a column to another key of the row whose value
    becomes the cell's tooltip: names in the cells, the addresses they stand for on hover."""
    if not rows:
        return "<p>none</p>"
    tips = tips or {}

    def cell(r: dict[str, Any], c: str) -> str:
        tip = _fmt(r.get(tips[c])) if c in tips else ""
        attr = f' title="{html.escape(tip)}"' if tip and tip != _fmt(r.get(c)) else ""
        return f"<td{attr}>{html.escape(_fmt(r.get(c)))}</td>"

    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(cell(r, c) for c in cols) + "</tr>" for r in rows[:limit])
    more = f"<p>{len(rows) - limit} more rows in the CSV files.</p>" if len(rows) > limit else ""
    return f"<table><tr>{head}</tr>{body}</table>{more}"


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def img_html(png: bytes | None, alt: str) -> str:
    if not png:
        return ""
    data = base64.b64encode(png).decode("ascii")
    return f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></p>'


def write_csv(path: Path, rows: Iterable[dict[str, Any]], cols: list[str]) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c) for c in cols})


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    tmp.replace(path)


def page(title: str, sections: list[tuple[str, str]]) -> str:
    body = "".join(f"<h2>{html.escape(h)}</h2>{content}" for h, content in sections)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"
            f"{body}</body></html>")
