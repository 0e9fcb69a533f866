"""Teardown: remove what a run's ledger says it created, and leftovers that carry its tag.

The same function ends a normal run, a failed or interrupted one, and serves `make clean`
after a SIGKILL.  It only ever touches namespaces named sh<tag>-*, interfaces named s<tag>*,
processes recorded with their start time, directories the run recorded, and cgroups under
sagin-<tag> (device profiles; found by the tag alone, so a SIGKILLed run's are found too).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from testbed.devices import cgroups
from testbed.lifecycle import netns
from testbed.lifecycle.ledger import BOARD_RECORDS, Ledger, active_ledgers, all_ledgers
from testbed.lifecycle.sh import ip_batch
from testbed.lifecycle.supervisor import terminate
from testbed.run.results import write_json


def _netns_list() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _root_links() -> list[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    names = []
    for line in out.splitlines():
        parts = line.split(":", 2)
        if len(parts) > 1:
            names.append(parts[1].strip().split("@")[0])
    return names


def leftovers(tag: str) -> dict[str, list[str]]:
    """What still exists on the host with this run's tag (used by tests, too)."""
    return {
        "namespaces": [n for n in _netns_list()
                       if n.startswith((f"sh{tag}-", f"sh{tag}."))],
        "links": [n for n in _root_links() if n.startswith(f"s{tag}")],
        "etc_netns": [str(p) for p in Path("/etc/netns").glob(f"sh{tag}-*")]
        if Path("/etc/netns").is_dir() else [],
        "cgroups": cgroups.leftover_groups(tag),
        "radios": [p.name for p in Path("/sys/class/ieee80211").glob(f"sh{tag}w*")],
    }


def teardown(ledger: Ledger) -> dict[str, int]:
    counts = {"processes": 0, "namespaces": 0, "links": 0, "cgroups": 0, "boards": 0,
              "board_errors": 0, "radios": 0}
    # first: the boards' agents and links (over SSH), and a moved NIC back to the host while
    # its namespace still exists.  Only a run that recorded boards pays for importing asyncssh.
    if (BOARD_RECORDS / f"{ledger.run_id}.json").is_file():
        from testbed.hil.boards import teardown_boards

        counts.update(teardown_boards(ledger))
    terminate(list(reversed(ledger.processes)), timeout=3.0)
    counts["processes"] = len(ledger.processes)
    namespaces = sorted(set(ledger.namespaces) | set(leftovers(ledger.tag)["namespaces"]))
    # what still runs inside them (one walk of /proc for all, not `ip netns pids` each)
    for pid in [p for found in netns.pids(namespaces).values() for p in found]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    ip_batch([f"netns del {ns}" for ns in namespaces], force=True)
    counts["namespaces"] = len(namespaces)
    links = sorted(set(ledger.root_links) | set(leftovers(ledger.tag)["links"]))
    present = set(_root_links())
    ip_batch([f"link del {n}" for n in links if n in present], force=True)
    counts["links"] = len([n for n in links if n in present])
    if ledger.hwsim_radios:
        # after the namespaces: their radios have fallen back to the root namespace
        from testbed.engines import hwsim_nl

        counts["radios"] = sum(hwsim_nl.del_radio_quietly(r) for r in ledger.hwsim_radios)
    # after the namespaces' processes are gone, so the groups are empty (remove() kills
    # whatever of the run is still inside them)
    counts["cgroups"] = len(cgroups.remove(ledger.tag))
    for d in [*ledger.etc_netns, *leftovers(ledger.tag)["etc_netns"], *ledger.state_dirs]:
        shutil.rmtree(d, ignore_errors=True)
    ledger.remove()
    return counts


def mark_killed(run_dir: Path, counts: dict[str, int]) -> None:
    """A run whose runner died (SIGKILL, OOM, power) never wrote its end: its manifest still
    says starting or running.  Say what happened, keeping the phase it died in, so that every
    run folder ends with a status; what it measured (pcaps, flow logs, events) stays as it is
    (`make analyze RUN=<dir>` reads it)."""
    path = run_dir / "manifest.json"
    try:
        man = json.loads(path.read_text())
    except (OSError, ValueError):
        return  # no folder, or the runner died writing its very first file
    if not isinstance(man, dict) or man.get("status") not in ("starting", "running"):
        return
    man.update(status="killed", error=f"the runner died in phase {man.get('phase', '?')}; "
               "cleaned up by make clean", ended=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               teardown=counts)
    write_json(path, man)


def clean(include_active: bool = False) -> list[tuple[str, dict[str, int]]]:
    """Tear down every run whose runner process is gone (or all, with include_active)."""
    active = {lg.run_id for lg in active_ledgers()}
    done = []
    for ledger in all_ledgers():
        if ledger.run_id in active and not include_active:
            continue
        counts = teardown(ledger)
        if ledger.run_id not in active:
            mark_killed(Path(ledger.results_dir), counts)
        done.append((ledger.run_id, counts))
    if BOARD_RECORDS.is_dir() and any(BOARD_RECORDS.glob("*.json")):
        from testbed.hil.boards import clean_orphans

        done += clean_orphans(active)  # boards whose cleanup failed before (switched off)
    return done
