"""The run ledger's journal: entries appended one line each, replayed on read (what
`make clean` sees after a SIGKILL), a line cut mid-write ignored."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from testbed.lifecycle.ledger import Ledger

pytestmark = pytest.mark.unit


def _ledger(tmp_path: Path) -> Ledger:
    lg = Ledger(run_id="r1", tag="abcd", scenario="s", results_dir=str(tmp_path))
    lg.path = tmp_path / "r1.json"
    lg.save()
    return lg


def test_entries_survive_a_crash_through_the_journal(tmp_path: Path) -> None:
    lg = _ledger(tmp_path)
    lg.add_many("namespaces", [f"shabcd-n{i}" for i in range(1000)] + ["shabcd-n0"])
    lg.add("state_dirs", "/run/sagin-hil/r1")
    rec = lg.add_process(os.getpid(), "me", "shabcd-n1")
    snapshot = (tmp_path / "r1.json").read_text()
    assert "shabcd-n1" not in snapshot  # nothing rewritten per entry
    back = Ledger.read(tmp_path / "r1.json")
    assert back.namespaces == lg.namespaces and len(back.namespaces) == 1000
    assert back.state_dirs == ["/run/sagin-hil/r1"]
    assert back.processes == [rec] and back.processes[0].alive()


def test_a_cut_line_is_ignored_and_save_compacts(tmp_path: Path) -> None:
    lg = _ledger(tmp_path)
    lg.add("namespaces", "shabcd-a")
    with open(lg.journal, "a") as f:
        f.write('{"kind": "namespaces", "val')  # the runner died mid-write
    assert Ledger.read(tmp_path / "r1.json").namespaces == ["shabcd-a"]
    lg.save()
    assert not lg.journal.exists()
    assert Ledger.read(tmp_path / "r1.json").namespaces == ["shabcd-a"]
    lg.remove()
    assert not (tmp_path / "r1.json").exists()
