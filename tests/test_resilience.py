"""The supervisor's answer to a dead component, on real processes: a critical one fails the
run naming it (`ServiceDied.component`), a restartable one is started again until its restarts
are used up, a watched one's early end is recorded, and a crashed node's processes are let go."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import pytest

from testbed.lifecycle.ledger import Ledger
from testbed.lifecycle.supervisor import ServiceDied, Supervisor

pytestmark = pytest.mark.unit


@pytest.fixture
def sup(tmp_path: Path):
    tag = secrets.token_hex(2)
    ledger = Ledger.create(f"test-resilience-{tag}", tag, "test-resilience", tmp_path)
    s = Supervisor(ledger, tmp_path / "logs")
    yield s
    s.stop_all(timeout=1.0)
    ledger.remove()


def _dies(sup: Supervisor, name: str, **kw) -> None:
    m = sup.start(name, ["sh", "-c", "echo up; exit 3"], **kw)
    m.popen.wait(timeout=5)


def test_a_dead_critical_process_names_itself(sup: Supervisor) -> None:
    _dies(sup, "osken", critical=True)
    with pytest.raises(ServiceDied) as err:
        sup.check()
    assert err.value.component == "osken" and "status 3" in str(err.value)
    assert abs(err.value.detected_wall - time.time()) < 5


def test_restartable_processes_come_back_until_their_restarts_run_out(sup: Supervisor) -> None:
    m = sup.start("agent", ["sh", "-c", "echo up; exit 3"], critical=True, restart=2)
    first = m.popen.pid
    for expected in (1, 2):
        m.popen.wait(timeout=5)
        sup.check()  # restarted, no error
        assert len(sup.events) == expected and m.popen.pid != first
    m.popen.wait(timeout=5)
    with pytest.raises(ServiceDied, match="agent"):
        sup.check()
    assert [e["restarts_left"] for e in sup.events] == [1, 0]
    log = m.log.read_text()
    assert log.count("up\n") == 3 and log.count("restarted by the supervisor") == 2
    # every incarnation is in the ledger, so teardown finds whichever is alive
    assert sum(r.name == "agent" for r in sup.ledger.processes) == 3


def test_watched_processes_are_recorded_once_and_stopping_is_no_incident(
        sup: Supervisor) -> None:
    _dies(sup, "tcpdump-a", watch=True)
    sup.check()
    sup.check()
    assert [(e["component"], e["action"]) for e in sup.events] == [("tcpdump-a", "ended early")]
    m = sup.start("tcpdump-b", ["sleep", "30"], watch=True)
    sup.stop(m)
    sup.check()
    assert len(sup.events) == 1


def test_a_crashed_nodes_processes_are_let_go(sup: Supervisor) -> None:
    m = sup.start("agent", ["sleep", "30"], critical=True, restart=3)
    m.record.netns = "shxxxx-uav1"  # as started in the node's namespace
    sup.abandon("shxxxx-uav1")
    m.popen.kill()
    m.popen.wait(timeout=5)
    sup.check()  # neither restarted nor fatal
    assert not sup.events
