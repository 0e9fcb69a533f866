"""`python -m testbed run NAME --hosts FILE` (or a scenario with a cluster: section): the
multi-host run from the command line, and the hosts' part of `make clean`."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from testbed.cluster.coordinator import ClusterError, clean_hosts, run_split
from testbed.cluster.hosts import resolve
from testbed.scenario.model import Scenario


def run(sc: Scenario, path: Path, hosts_file: str | None, con: Console,
        results: str | None = None) -> int:
    cluster = resolve(sc, str(path), hosts_file)  # errors before anything is created
    extra = {"results_base": Path(results)} if results else {}
    try:
        res = run_split(path, cluster, sc=sc, log=con.print, **extra)
    except ClusterError as exc:
        con.print(f"[red]multi-host run failed:[/] {exc}")
        return 1
    except KeyboardInterrupt:
        con.print("[yellow]interrupted: every host stopped and tore down its share[/]")
        return 130
    hosts = res.placement
    for h in cluster.hosts:
        t = (res.ready.get(h.name) or {}).get("timings") or {}
        con.print(f"  {h.name}: {sorted(n for n, x in hosts.items() if x == h.name)} "
                  f"(ready after {t.get('command_to_ready_s', '?')} s)")
    con.print(f"results: {res.run_dir}  (status: {res.status}; time zero after "
              f"{res.timings.get('command_to_time_zero_s', '?')} s)")
    return 0 if res.status == "done" else 1


def clean(con: Console) -> None:
    for item in clean_hosts():
        con.print(f"cleaned on host: {item}")
