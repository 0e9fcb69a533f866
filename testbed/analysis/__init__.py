"""Packet-trace analysis of a run's captures: per-flow statistics, one-way delay between
capture points, MAVLink and task timelines, plots and a self-contained HTML report.

Entry points: `analyze_run(run_dir)`, `analyze_pcap(path)`, `compare_runs(dirs)` and the CLI
`python -m testbed.analysis`.  Heavy imports (matplotlib, pymavlink) are deferred so that a
scenario's end-of-run hook stays cheap to import.
"""

from __future__ import annotations

from typing import Any

__all__ = ["analyze_pcap", "analyze_run", "compare_runs", "on_run_finished"]


def analyze_pcap(path: Any, **kw: Any) -> dict[str, Any]:
    from testbed.analysis.run import analyze_pcap as _impl

    return _impl(path, **kw)


def analyze_run(path: Any, **kw: Any) -> dict[str, Any]:
    from testbed.analysis.run import analyze_run as _impl

    return _impl(path, **kw)


def compare_runs(paths: Any, **kw: Any) -> Any:
    from testbed.analysis.compare import compare_runs as _impl

    return _impl(paths, **kw)


def on_run_finished(run_dir: Any, console: Any = None) -> dict[str, Any] | None:
    from testbed.analysis.run import on_run_finished as _impl

    return _impl(run_dir, console)
