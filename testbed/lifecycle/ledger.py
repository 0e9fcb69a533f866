"""The run ledger: a record, written *before* each resource is created, of everything a run
owns (namespaces, root-namespace interfaces, processes, state directories).

Teardown at a normal end, after Ctrl-C or a failure, and `make clean` after a SIGKILL all walk
the same record, so they remove exactly what the run created: nothing found by grepping
process names, nothing of another run or of the user.

On disk: a snapshot (<run>.json) and a journal of what was added since (<run>.journal, one
JSON line per entry).  An entry costs one appended line, not a rewrite of the whole record:
a 1,000-node run records thousands of namespaces and processes, and rewriting the record for
each made starting them quadratic (minutes).  Reading replays the journal over the snapshot.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

LEDGER_DIR = Path(os.environ.get("SAGIN_STATE_DIR", "/run/sagin-hil"))
BOARD_RECORDS = LEDGER_DIR / "boards"  # hardware-in-the-loop records (testbed.hil.boards)


def proc_start_ticks(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot: tells a reused pid from ours.
    A zombie (exited, not yet reaped) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


@dataclass
class ProcRecord:
    pid: int
    start_ticks: int
    name: str
    netns: str | None = None

    def alive(self) -> bool:
        return proc_start_ticks(self.pid) == self.start_ticks


@dataclass
class Ledger:
    run_id: str
    tag: str
    scenario: str
    results_dir: str
    runner_pid: int = field(default_factory=os.getpid)
    runner_start: int = 0
    created: float = field(default_factory=time.time)
    namespaces: list[str] = field(default_factory=list)
    root_links: list[str] = field(default_factory=list)
    etc_netns: list[str] = field(default_factory=list)
    state_dirs: list[str] = field(default_factory=list)
    hwsim_radios: list[str] = field(default_factory=list)  # by wiphy name (engines.hwsim)
    processes: list[ProcRecord] = field(default_factory=list)
    path: Path | None = None

    def __post_init__(self) -> None:
        if not self.runner_start:
            self.runner_start = proc_start_ticks(self.runner_pid) or 0

    @classmethod
    def create(cls, run_id: str, tag: str, scenario: str, results_dir: Path) -> Ledger:
        ledger = cls(run_id=run_id, tag=tag, scenario=scenario, results_dir=str(results_dir))
        LEDGER_DIR.mkdir(parents=True, exist_ok=True)
        ledger.path = LEDGER_DIR / f"{run_id}.json"
        ledger.save()
        return ledger

    @classmethod
    def read(cls, path: Path) -> Ledger:
        data = json.loads(path.read_text())
        data["processes"] = [ProcRecord(**p) for p in data.get("processes", [])]
        data.pop("path", None)
        ledger = cls(**data)
        ledger.path = path
        ledger._replay()
        return ledger

    def runner_alive(self) -> bool:
        return proc_start_ticks(self.runner_pid) == self.runner_start

    @property
    def journal(self) -> Path:
        assert self.path is not None
        return self.path.with_suffix(".journal")

    def save(self) -> None:
        """A full snapshot (and an empty journal after it)."""
        assert self.path is not None
        data = asdict(self)
        data.pop("path")
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(self.path)
        self.journal.unlink(missing_ok=True)

    def _append(self, entries: list[dict[str, Any]]) -> None:
        with open(self.journal, "a") as f:
            f.write("".join(json.dumps(e) + "\n" for e in entries))

    def add(self, kind: str, value: str) -> None:
        self.add_many(kind, [value])

    def add_many(self, kind: str, values: list[str]) -> None:
        """Record resources of one kind (namespaces, root_links, ...) before creating them."""
        bucket: list[str] = getattr(self, kind)
        known = set(bucket)
        new = [v for v in dict.fromkeys(values) if v not in known]
        if new:
            bucket += new
            self._append([{"kind": kind, "value": v} for v in new])

    def add_process(self, pid: int, name: str, netns: str | None = None) -> ProcRecord:
        rec = ProcRecord(pid=pid, start_ticks=proc_start_ticks(pid) or 0, name=name, netns=netns)
        self.processes.append(rec)
        self._append([{"process": asdict(rec)}])
        return rec

    def _replay(self) -> None:
        try:
            lines = self.journal.read_text().splitlines()
        except FileNotFoundError:
            return
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line cut by a crash mid-write: its resource was never created
            if "process" in entry:
                self.processes.append(ProcRecord(**entry["process"]))
            elif entry.get("value") not in getattr(self, entry["kind"]):
                getattr(self, entry["kind"]).append(entry["value"])

    def remove(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.journal.unlink(missing_ok=True)


def all_ledgers() -> list[Ledger]:
    if not LEDGER_DIR.is_dir():
        return []
    out = []
    for p in sorted(LEDGER_DIR.glob("*.json")):
        try:
            out.append(Ledger.read(p))
        except (OSError, ValueError, TypeError):
            continue
    return out


def active_ledgers() -> list[Ledger]:
    return [lg for lg in all_ledgers() if lg.runner_alive()]
