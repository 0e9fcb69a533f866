"""What the boards of a run did, for the console summary and the report: which nodes were
hardware, what the board was (architecture, Python, clock offset, measured speed), and how it
served the tasks it was sent, from its own log fetched back at detach (boards/<name>/).

A task's `exec_ratio` is its execution time on the board over the time the agent was asked to
take (cycles / cpu_hz): 1.0 on a board that keeps up; above 1 when the board is slower than
the profile it was given (an emulated board under load is).
"""

from __future__ import annotations

import html
import json
import statistics
from pathlib import Path
from typing import Any

from testbed.workloads import ReportPart

COLS = ["board", "replaces", "machine", "python", "clock_offset_ms", "speed_vs_profile",
        "tasks", "ok", "exec_ratio_median", "queue_wait_ms_median", "status"]


def _tasks(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def rows(boards: dict[str, Any], run_dir: Path) -> list[dict[str, Any]]:
    """One row per board from its description (HardwareInTheLoop.describe) and its task log."""
    out = []
    for name, d in boards.items():
        if not isinstance(d, dict) or "replaces" not in d:
            continue
        tasks = _tasks(run_dir / "boards" / name / "tasks.jsonl")
        cpu_hz = d.get("cpu_hz") or 0.0
        ratios = [(t["t_done"] - t["t_start"]) / (t["cycles"] / cpu_hz) for t in tasks
                  if t.get("ok") and cpu_hz and t.get("cycles") and "t_start" in t]
        waits = [(t["t_start"] - t["t_recv"]) * 1e3 for t in tasks
                 if t.get("ok") and "t_start" in t and "t_recv" in t]
        speed = (d.get("measured") or {}).get("speed_vs_profile")
        out.append({
            "board": name, "replaces": d["replaces"], "machine": d.get("machine"),
            "python": d.get("python"),
            "clock_offset_ms": round(d["clock_offset_ms"], 2)
            if d.get("clock_offset_ms") is not None else None,
            "speed_vs_profile": round(speed, 3) if speed is not None else None,
            "tasks": len(tasks), "ok": sum(1 for t in tasks if t.get("ok")),
            "exec_ratio_median": round(statistics.median(ratios), 3) if ratios else None,
            "queue_wait_ms_median": round(statistics.median(waits), 1) if waits else None,
            "status": d.get("status", "attached" if d.get("health") else "not attached")})
    return out


def part(run_dir: Path) -> ReportPart | None:
    """The report's "Hardware in the loop" section, or None for a run without boards."""
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    table = metrics.get("hardware")
    if not table:
        return None
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>"
                                    for c in COLS) + "</tr>" for r in table)
    note = ("<p>These nodes were physical (or emulated arm64) boards, joined to the emulated "
            "network through the hardware-in-the-loop path; every packet they sent crossed the "
            "replaced node's emulated links. exec_ratio: execution time on the board over the "
            "time asked for (cycles / cpu_hz).</p>")
    numbers: dict[str, float | int | None] = {}
    for r in table:
        numbers[f"{r['board']}_tasks"] = r["tasks"]
        numbers[f"{r['board']}_exec_ratio"] = r["exec_ratio_median"]
    return ReportPart(sections=[("Hardware in the loop", note + f"<table><tr>{head}</tr>"
                                 f"{body}</table>")], numbers=numbers)
