"""Benchmarks (`make bench`): each writes results/bench/<name>.json and prints a table.

The core's own benchmarks live here (fidelity, scale, lifecycle, mobility, analysis); every
workload's live with the workload and are found through the registry (testbed.workloads), so
`make bench BENCH=<name>` runs either.  `python -m testbed bench --list` prints them all.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console

from testbed.run.results import RESULTS, write_json
from testbed.workloads import Registry, resolve

BENCH_DIR = RESULTS / "bench"


def listing(registry: Registry | None = None) -> str:
    """Every benchmark with its description and who registers it."""
    registry = registry or Registry.installed()
    lines = []
    for w in registry.workloads:
        for b in w.benches:
            about = b.about.splitlines()
            lines.append(f"  {b.name:<10} {about[0]}  [{w.name}]")
            lines += [f"  {'':<10} {line}" for line in about[1:]]
    return "\n".join(lines)


def main(which: list[str], console: Console, registry: Registry | None = None) -> int:
    benches = (registry or Registry.installed()).benches()
    names = which or list(benches)
    unknown = [n for n in names if n not in benches]
    if unknown:
        console.print(f"unknown benchmark(s) {unknown}; available: {', '.join(benches)}")
        return 2
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    failed = 0
    for name in names:
        console.rule(f"bench: {name}")
        t0 = time.monotonic()
        try:
            result: dict[str, Any] = resolve(benches[name].run)(console)
        except Exception as exc:  # noqa: BLE001 - one benchmark failing must not hide others
            result = {"error": f"{type(exc).__name__}: {exc}"}
            failed += 1
            console.print(f"[red]{name} failed: {exc}[/]")
        result["bench"] = name
        result["wall_s"] = round(time.monotonic() - t0, 1)
        result["date"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        write_json(BENCH_DIR / f"{name}.json", result)
        console.print(f"-> {BENCH_DIR / f'{name}.json'}")
    return 1 if failed else 0
