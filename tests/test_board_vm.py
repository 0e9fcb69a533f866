"""The hardware path against an emulated arm64 board (testbed/vm/board.py): its own kernel,
root filesystem, Python 3.11 and CPU architecture under qemu-system-aarch64, booted offline
(no route out of this machine), reached over SSH on loopback and joined through a NIC.

What a namespace stand-in cannot show shows here: aarch64 wheels pushed by the host for a
board with no registry, a board ~20x slower than the host, a clock the host must set, and a
board that loses power mid-run.  The lane runs with `make test-boards` (CI runs it after
`make test`); the image is built once (~6 min) and cached.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed.hil import boards as hil
from testbed.run.cleanup import leftovers
from testbed.workloads import BoardAgent

sys.path.insert(0, str(Path(__file__).parent))
from test_hil import _tasks_from, scenario, scenario_data

pytestmark = [pytest.mark.boards]


@pytest.fixture(scope="module")
def vm() -> Iterator[Any]:
    from testbed.vm import board

    why = board.unavailable()
    if why is not None:
        pytest.skip(why)
    try:
        board.build()
    except board.BoardVmError as exc:
        pytest.skip(f"the board image cannot be built here: {exc}")
    (v,) = board.up(1, offline=True)
    try:
        yield v
    finally:
        board.down([v.name])
    assert not Path(f"/sys/class/net/{v.tap}").exists()


def ssh(vm: Any, command: str, check: bool = True) -> str:
    from testbed.vm.board import ssh_argv

    proc = subprocess.run([*ssh_argv(vm), command], capture_output=True, text=True, timeout=60)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc.stdout


def inventory(vm: Any, tmp_path: Path, **over: Any) -> Path:
    e = vm.inventory_entry("edge")
    e.update({"packages": ["numpy"], "cpu_hz": "measured"}, **over)
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump({"boards": [e]}))
    return path


def board_clean(vm: Any) -> None:
    """Nothing of a run on the board: no agent, no address on the data NIC, no rule."""
    out = ssh(vm, "pgrep -af '[p]ayloads[.]agent'; echo ---; ip -o addr show dev enp0s2; echo ---; "
              "ip rule list | grep -v -E 'lookup (local|main|default)'; true")
    assert out.split("---")[0].strip() == "" and "inet " not in out.split("---")[1], out
    assert out.split("---")[2].strip() == "", out


def test_preflight_reads_the_real_board(vm: Any, tmp_path: Path) -> None:
    h = hil.HardwareInTheLoop.load(inventory(vm, tmp_path))
    assert h.preflight(scenario()) == []
    rep = h.reports[vm.name]
    assert rep.machine == "aarch64" and rep.python_version.startswith("3.")
    assert rep.install == "offline"  # auto: the board cannot reach the registry
    assert rep.missing == [f"numpy=={hil.wheels.pins()['numpy']}"]
    assert abs(rep.clock_offset_ms or 1e9) < 50
    assert 0 < rep.measured["speed_vs_host"] < 1  # emulated aarch64 is slower than the host
    assert rep.memory["total"] and rep.memory["total"] > 512 << 20
    print(f"\npreflight {rep.seconds:.1f} s: clock {rep.clock_offset_ms:+.1f} ms, speed "
          f"{rep.measured['speed_vs_host']:.3f} x host, {rep.measured['speed_vs_profile']:.2f} x "
          "profile")


def test_faults_found_in_preflight(vm: Any, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    sc = scenario()
    # online install with no route out
    h = hil.HardwareInTheLoop.load(inventory(vm, tmp_path, install="online"))
    probs = h.preflight(sc)
    assert [p.path for p in probs] == ["boards[0].install"], probs
    assert "no route out" in probs[0].message and "install: offline" in probs[0].fix
    # the board's clock off by seconds
    ssh(vm, "date -s @$(( $(date +%s) + 5 )) >/dev/null")
    try:
        probs = hil.HardwareInTheLoop.load(inventory(vm, tmp_path)).preflight(sc)
        assert [p.path for p in probs] == ["boards[0].max_clock_offset_ms"], probs
        # `date -s @<whole seconds>` drops the fraction: 4 to 5 s ahead
        offset = float(re.search(r"clock is ([+-][0-9.]+) ms", probs[0].message).group(1))
        assert 3900 < offset < 5100, probs[0].message
    finally:
        from testbed.vm.board import set_clock

        set_clock(vm)
    # the board's Python older than the agent needs (3.11 on the board, 3.99 asked for)
    real = hil.board_agent()
    monkeypatch.setattr(hil, "board_agent", lambda: BoardAgent(
        **{**real.__dict__, "min_python": (3, 99)}))
    probs = hil.HardwareInTheLoop.load(inventory(vm, tmp_path)).preflight(sc)
    assert [p.path for p in probs] == ["boards[0].python"], probs
    assert "needs >= 3.99" in probs[0].message
    # an interpreter that is not there
    monkeypatch.undo()
    probs = hil.HardwareInTheLoop.load(
        inventory(vm, tmp_path, python="/usr/bin/python3.7")).preflight(sc)
    assert [p.path for p in probs] == ["boards[0].python"] and "not a command" in probs[0].message


def test_offline_deploy_and_tasks_on_the_board(vm: Any, tmp_path: Path) -> None:
    from testbed.run.harness import emulated

    sc = scenario()
    h = hil.HardwareInTheLoop.load(inventory(vm, tmp_path))
    with emulated(sc, tmp_path / "results", hil=h) as emu:  # preflight, attach ... detach
        tag, token = emu.net.plan.tag, emu.token
        d = h.details[vm.name]
        assert d["packages"]["mode"] == "offline"
        assert any(w.startswith("numpy-") and "aarch64" in w for w in d["packages"]["wheels"])
        # numpy, pushed as the board's own wheel, imports on the board's Python
        site = f"{h.records[0].remote_dir}/site"
        out = ssh(vm, f"PYTHONPATH={site} python3 -c 'import numpy, platform; "
                  "print(numpy.__version__, platform.machine())'")
        assert out.split() == [hil.wheels.pins()["numpy"], "aarch64"]
        # the node's name resolves to the board, inside the emulated network
        assert emu.run("gs", ["getent", "hosts", "edge"]).stdout.split()[0] == h.address("edge")
        tasks = _tasks_from(emu, "gs", h.address("edge"), token, n=3)
        assert all(t["ok"] and t["node"] == "edge" for t in tasks), tasks
        assert all(t["digest"] == t["expect"] for t in tasks)
        rtts = [(t["t_result"] - t["t_sent"]) * 1e3 for t in tasks]
        assert min(rtts) >= 40.0, rtts  # 2 x 20 ms of emulated link, plus the task
        # the board's management cable pulled for 3 s: recorded, the run goes on
        from testbed.vm.board import set_link

        set_link(vm.name, "mgmt", False)
        time.sleep(3.0)
        set_link(vm.name, "mgmt", True)
        assert h.monitor is not None
        deadline = time.monotonic() + 15
        while not any(o["path"] == "management" and o["to"] for o in h.monitor.boards[0].outages):
            assert time.monotonic() < deadline, h.monitor.boards[0].outages
            time.sleep(0.5)
        h.check()  # not lost: the data path kept answering
        assert not any(o["path"] == "data" for o in h.monitor.boards[0].outages)
        print(f"\nattach {h.timings['boards_attach_s']:.1f} s (packages "
              f"{d['packages_s']:.1f} s: download {d['packages'].get('download_s')} s, push "
              f"{d['packages'].get('push_s')} s, pip {d['packages']['pip_s']} s); task RTT "
              f"{[round(r, 1) for r in rtts]} ms")
    served = (emu.run_dir / "boards" / vm.name / "tasks.jsonl").read_text().splitlines()
    assert [json.loads(x)["id"] for x in served] == ["t0", "t1", "t2"]
    assert not any(leftovers(tag).values()), leftovers(tag)
    board_clean(vm)
    # a second deployment finds the agent and numpy in place: nothing to send or install
    h2 = hil.HardwareInTheLoop.load(inventory(vm, tmp_path))
    assert h2.preflight(sc) == [] and h2.reports[vm.name].missing == []


def test_board_powered_off_mid_run(vm: Any, tmp_path: Path) -> None:
    """The last test of the lane: it kills the board."""
    from testbed.run.runner import Run, RunOptions
    from testbed.scenario import parse
    from testbed.vm import board

    data = scenario_data()
    data["duration_s"] = 60
    data["capture"] = {"enabled": True}
    # by name: "edge" resolves to the board, so the pings cross gs-edge into the board
    data["timeline"] = [{"at_s": 0.5, "action": "exec", "node": "gs",
                         "command": "ping -n -i 0.2 -c 250 edge"}]
    sc = parse(data, "hil-small")
    killed: dict[str, float] = {}

    def pull_the_plug() -> None:
        runs = tmp_path / "results"
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            for m in runs.glob("*/*/manifest.json"):
                with_zero = json.loads(m.read_text()).get("time_zero_wall")
                if with_zero and time.time() > with_zero + 6:
                    board.power_off(vm.name)
                    killed["at"] = time.time()
                    return
            time.sleep(0.5)

    plug = threading.Thread(target=pull_the_plug, daemon=True)
    plug.start()
    res = Run(sc, "hil-small", RunOptions(results_base=tmp_path / "results", analyze=False,
                                          inventory=inventory(vm, tmp_path))).execute()
    plug.join()
    assert "at" in killed
    assert res.status == "failed"
    assert res.error and res.error.startswith(f"board {vm.name}: lost"), res.error
    # what it measured before is kept: the outages, and the pings that crossed into the board
    m = json.loads((res.run_dir / "metrics.json").read_text())
    outages = m["boards"][vm.name]["outages"]
    assert {o["path"] for o in outages} == {"management", "data"}
    assert all(o["from"] >= killed["at"] - 1 for o in outages)
    assert m["hardware"][0]["status"] == "lost"
    log = (res.run_dir / "logs" / "gs").glob("exec-*.log")
    replies = sum(t.count(f"from {m['boards'][vm.name]['board_ip']}")
                  for t in (p.read_text() for p in log))
    assert replies >= 20, replies  # ~5/s for 6 s before the plug was pulled
    pcaps = list((res.run_dir / "pcaps").glob("*.pcap"))
    assert pcaps
    # the host is clean; the board's side is recorded for make clean until the board is gone
    tag = json.loads((res.run_dir / "network.json").read_text())["tag"]
    assert not any(leftovers(tag).values()), leftovers(tag)
    run_id = res.run_dir.name
    assert (hil.RECORDS / f"{run_id}.json").exists()
    board.down([vm.name])
    assert not (hil.RECORDS / f"{run_id}.json").exists()
    assert os.path.exists(vm.image)  # the cached image stays
