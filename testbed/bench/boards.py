"""The hardware path against an emulated arm64 board (testbed/vm/board.py), side by side with
the namespace stand-in (testbed/hil/boardsim.py) on the same scenario, in one run.

* boot-to-ready: `boards vm up` until SSH answers and the clock is set;
* deployment on a bare board: the agent bundle, then numpy at its pin, online (the board's pip
  against the registry) vs offline (this host downloads the aarch64 wheel and pushes it);
* task round trip from `gs` to the board's agent across 2 x 20 ms of emulated link: through
  the emulated board vs the stand-in (same agent, same path, on this host's CPU);
* the board's speed measured in preflight vs its device profile's modelled speed, and the
  agent's own kernel calibration;
* a data-link cut of 4 s (qemu set_link): the outage the board monitor measured.

Everything on the emulated board is software-emulated aarch64 (~18x slower than this host per
core for the hashing kernel): read its times as an upper bound of a real Pi 4's.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from testbed.run.harness import Emulation, emulated
from testbed.scenario import parse

TASKS = 20
CYCLES = 1.5e6
CUT_S = 4.0
SCENARIO: dict[str, Any] = {
    "name": "hil-bench", "duration_s": 30,
    "nodes": {"user": {"kind": "ground_user"}, "gs": {"kind": "ground_station"},
              "edge": {"kind": "edge_server"}, "sw": {"kind": "switch"}},
    "links": [
        {"name": "gs-edge", "kind": "wired", "medium": "p2p", "endpoints": ["gs", "edge"],
         "delay_ms": 20, "rate_mbps": 50},
        {"name": "user-gs", "kind": "wired", "endpoints": ["user", "gs"]},
    ],
    "capture": {"enabled": False}, "probes": {"link_rtt": False},
}

_SUBMIT = """
import asyncio, hashlib, importlib, json, sys
AgentConnection = importlib.import_module(sys.argv[4]).AgentConnection
token = sys.stdin.read().strip()
async def main():
    out = []
    async with AgentConnection(sys.argv[1], 7700, token, timeout=30) as conn:
        for i in range(int(sys.argv[2])):
            body = bytes([i % 256]) * 2000
            r = await conn.submit("t%d" % i, body, cycles=float(sys.argv[3]))
            r["expect"] = hashlib.sha256(body).hexdigest()
            out.append(r)
    return out
print(json.dumps(asyncio.run(main())))
"""


def tasks_from(emu: Emulation, node: str, host: str, token: str, n: int = 5,
               cycles: float = CYCLES) -> list[dict[str, Any]]:
    """Offload n tasks from `node`'s namespace to the agent at `host`, over one connection,
    with the agent's own client module (what the offloading controllers use)."""
    from testbed.hil.boards import board_agent
    from testbed.lifecycle.sh import in_netns

    root = Path(__file__).resolve().parents[2]
    client = board_agent().health.partition(":")[0]  # the agent's client module
    proc = subprocess.run(in_netns(emu.net.plan.namespaces[node],
                                   [sys.executable, "-c", _SUBMIT, host, str(n), str(cycles),
                                    client]),
                          input=token, capture_output=True, text=True, timeout=300, cwd=root)
    if proc.returncode != 0:
        raise RuntimeError(f"tasks from {node} to {host} failed: {proc.stderr.strip()[-400:]}")
    return list(json.loads(proc.stdout))


def _rtts(tasks: list[dict[str, Any]]) -> dict[str, Any]:
    ms = sorted((t["t_result"] - t["t_sent"]) * 1e3 for t in tasks if t.get("ok"))
    exec_ms = [(t["t_done"] - t["t_start"]) * 1e3 for t in tasks if t.get("ok")]
    return {"n": len(tasks), "ok": len(ms),
            "rtt_ms_median": round(statistics.median(ms), 2) if ms else None,
            "rtt_ms_p95": round(ms[int(0.95 * (len(ms) - 1))], 2) if ms else None,
            "exec_ms_median": round(statistics.median(exec_ms), 2) if exec_ms else None}


def _inventory(entry: dict[str, Any], folder: Path) -> Path:
    path = folder / f"inventory-{time.monotonic_ns()}.yaml"
    path.write_text(yaml.safe_dump({"boards": [entry]}))
    return path


def _one_run(inv: Path, base: Path, cut: Any = None) -> dict[str, Any]:
    """Preflight, attach (deploy), TASKS tasks from gs, optionally a cut; detach."""
    from testbed.hil.boards import HardwareInTheLoop

    sc = parse(SCENARIO, "hil-bench")
    h = HardwareInTheLoop.load(inv)
    with emulated(sc, base, hil=h) as emu:
        name = h.boards[0].name
        tasks = tasks_from(emu, "gs", h.address("edge"), emu.token, TASKS)
        out: dict[str, Any] = {"tasks": _rtts(tasks)}
        if cut is not None:
            out["cut"] = cut(h)
        d = h.details[name]
        rep = h.reports[name]
        out |= {"preflight_s": round(rep.seconds, 2), "attach_s": h.timings["boards_attach_s"],
                "deploy_s": d["deploy_s"], "files_sent": d["deploy"]["files_sent"],
                "packages": d.get("packages"), "packages_s": d.get("packages_s"),
                "agent_start_s": d["agent_start_s"], "machine": rep.machine,
                "python": rep.python_version, "clock_offset_ms": round(rep.clock_offset_ms or 0, 2),
                "measured": rep.measured, "memory": rep.memory,
                "agent_kernel_iters_per_s": round(d["health"].get("kernel_iters_per_s", 0), 1),
                "cpu_hz": d["cpu_hz"]}
    return out


def run(console: Console) -> dict[str, Any]:
    from testbed.hil.boardsim import SSHD, BoardSim, clean_stale
    from testbed.vm import board

    why = board.unavailable()
    if why is not None:
        raise RuntimeError(f"emulated boards cannot run here: {why}")
    work = Path(tempfile.mkdtemp(prefix="bench-boards-"))
    base = work / "results"
    out: dict[str, Any] = {"tasks": TASKS, "cycles_per_task": CYCLES,
                           "link": "gs-edge p2p 20 ms one way (ns-3), 50 Mbit/s"}
    t = time.monotonic()
    img = board.build()
    out["image"] = {"path": str(img), "build_or_cache_s": round(time.monotonic() - t, 1)}
    t = time.monotonic()
    (vm,) = board.up(1)
    out["boot_to_ready_s"] = round(time.monotonic() - t, 1)
    console.print(f"board {vm.name} ready in {out['boot_to_ready_s']} s")
    try:
        entry = vm.inventory_entry("edge") | {"packages": ["numpy"], "cpu_hz": "measured"}

        def cut(h: Any) -> dict[str, Any]:
            board.set_link(vm.name, "data", False)
            t_cut = time.time()
            time.sleep(CUT_S)
            board.set_link(vm.name, "data", True)
            time.sleep(4.0)
            outages = [o for o in h.monitor.boards[0].outages if o["path"] == "data"]
            o = outages[0] if outages else {}
            return {"applied_s": CUT_S, "detected_after_s": round(o["from"] - t_cut, 2)
                    if o else None, "measured_s": round(o["to"] - o["from"], 2)
                    if o and o.get("to") else None, "run_survived": True}

        console.print("online deployment (the board's pip against the registry)...")
        out["online"] = _one_run(_inventory(entry | {"install": "online"}, work), base, cut)
        subprocess.run([*board.ssh_argv(vm), "rm -rf ~/sagin-hil"], check=True,
                       capture_output=True, timeout=60)
        console.print("offline deployment (wheels pushed by this host)...")
        out["offline"] = _one_run(_inventory(entry | {"install": "offline"}, work), base)
        out["second_deploy"] = _one_run(_inventory(entry, work), base)
    finally:
        board.down([vm.name])
    if SSHD.is_file():
        console.print("namespace stand-in (same scenario, same agent, this host's CPU)...")
        clean_stale()
        with BoardSim("benchsim", data_nic=True) as sim:
            e = sim.inventory_entry("edge", "raspberry-pi-4", {"mode": "nic"}, cpu_hz=1.8e9)
            out["standin"] = _one_run(_inventory(e, work), base)
    out["ratios"] = ratios(out)
    print_tables(out, console)
    return out


def ratios(out: dict[str, Any]) -> dict[str, Any]:
    r: dict[str, Any] = {}
    on, off = out["online"], out["offline"]
    if on.get("packages_s") and off.get("packages_s"):
        r["packages_offline_over_online"] = round(off["packages_s"] / on["packages_s"], 3)
    if "standin" in out:
        b, s = off["tasks"]["rtt_ms_median"], out["standin"]["tasks"]["rtt_ms_median"]
        r["task_rtt_board_over_standin"] = round(b / s, 3)
        r["task_rtt_board_minus_standin_ms"] = round(b - s, 2)
    r["speed_vs_profile"] = off["measured"]["speed_vs_profile"]
    r["speed_vs_host"] = off["measured"]["speed_vs_host"]
    if on.get("cut", {}).get("measured_s"):
        r["cut_measured_over_applied"] = round(on["cut"]["measured_s"] / CUT_S, 3)
    return r


def print_tables(out: dict[str, Any], console: Console) -> None:
    t = Table(title="Emulated arm64 board vs the namespace stand-in")
    for c in ("run", "preflight s", "deploy s", "packages s", "agent start s",
              "task RTT median ms", "p95 ms", "exec median ms"):
        t.add_column(c)
    for k in ("online", "offline", "second_deploy", "standin"):
        if k not in out:
            continue
        r = out[k]
        t.add_row(k, f"{r['preflight_s']:.1f}", f"{r['deploy_s']:.2f}",
                  f"{r['packages_s']:.1f}" if r.get("packages_s") else "-",
                  f"{r['agent_start_s']:.2f}", f"{r['tasks']['rtt_ms_median']}",
                  f"{r['tasks']['rtt_ms_p95']}", f"{r['tasks']['exec_ms_median']}")
    console.print(t)
    console.print(f"boot to ready {out['boot_to_ready_s']} s; ratios: {out['ratios']}")
