"""What happened during a run, as wall-clock markers for the plots.

Captures carry wall-clock timestamps; events.jsonl and link-changes.jsonl carry `wall`, the
handover log carries seconds since the run's time zero, which events.jsonl lets us convert
(wall - actual_s).  Marker lists are capped: a mobility run updates links many times a second
and hundreds of vertical lines would hide the data they are meant to explain.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MARKER_CAP = 200


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    if not path.is_file():
        return
    with path.open(errors="replace") as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue


def run_t0(run_dir: Path) -> float | None:
    """Wall-clock time of the run's time zero, from the first timed event."""
    for ev in _jsonl(run_dir / "events.jsonl"):
        if "wall" in ev and "actual_s" in ev:
            return float(ev["wall"]) - float(ev["actual_s"])
    return None


def markers(run_dir: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for ev in _jsonl(run_dir / "events.jsonl"):
        name = str(ev.get("event", ""))
        if name.startswith(("link_down", "link_up", "set_link")) and "wall" in ev:
            out.append({"t": float(ev["wall"]), "kind": "link", "label": name})
    t0 = run_t0(run_dir)
    if t0 is not None:
        for h in _jsonl(run_dir / "mobility" / "handovers.jsonl"):
            if h.get("reason") != "initial" and "t_s" in h:
                out.append({"t": t0 + float(h["t_s"]), "kind": "handover",
                            "label": f"{h.get('terminal')} {h.get('from')}->{h.get('to')}"})
    up: dict[str, bool] = {}
    for rec in _jsonl(run_dir / "logs" / "link-changes.jsonl"):
        op = rec.get("op") or {}
        ops = op.get("ops", [op]) if isinstance(op, dict) else []
        for o in ops:
            if isinstance(o, dict) and "up" in o and "link" in o:
                prev = up.get(o["link"])
                up[o["link"]] = bool(o["up"])
                if prev is not None and prev != bool(o["up"]):
                    out.append({"t": float(rec.get("wall", 0)), "kind": "link",
                                "label": f"{o['link']} {'up' if o['up'] else 'down'}"})
    out.sort(key=lambda m: m["t"])
    if len(out) > MARKER_CAP:
        step = len(out) / MARKER_CAP
        out = [out[int(i * step)] for i in range(MARKER_CAP)]
    return out
