"""Resilience: runs killed at random moments of every phase, and what they leave behind.

Each trial starts a real run (`python -m testbed run NAME --duration S`, its own results folder),
waits until the run's manifest says it reached the trial's phase (setup, health, running,
teardown, analysis), waits a random moment inside that phase, and sends the trial's signal:

* SIGINT to the run's process group, as Ctrl-C in its terminal would;
* SIGTERM to the runner alone, as `kill` or a scheduler would;
* SIGKILL to the runner alone (its children live on), then `python -m testbed clean`, as the
  README tells a user to do.

Then it counts what the trial's run left on the host: network namespaces, interfaces (veths,
taps, bridges, tunnels), Open vSwitch bridges, processes, cgroups, /etc/netns entries,
/run/sagin-hil entries (ledger, state directory, board records) - found by the run's tag and id
and by the environment its processes inherit, so that whatever else runs on the host is not
counted; and checks the run's folder: a manifest
that parses, a final status (done, interrupted, failed or killed) and, unless SIGKILLed, the
metrics written up to the kill.

Then each component is crashed (SIGKILL) in a running scenario, five seconds after time zero:
ns-3, os-ken, ovs-vswitchd, a tcpdump capture, a payload agent, an autopilot.  The row gives
how long the runner took to notice (from the kill to the supervisor's detection, both wall
clock), the outcome (restarted and the run done; the run continued with the capture ended
early; or `failed: <component>` with its metrics), and the leaks after teardown.

    make bench BENCH=resilience [RUNS=30]      -> results/bench/resilience.json

Trials cover every phase x signal pair (15) over the scenario kinds in turn; RUNS beyond 15
repeat the pairs with new random moments (seeded, so a run of the bench is reproducible up to
the host's timing).  A phase that was over before the signal could land (a 40 ms analysis) is
reported as `missed`, the run then killed in the phase it had reached.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from itertools import product
from pathlib import Path
from typing import Any

from rich.console import Console

from testbed.lifecycle.ledger import LEDGER_DIR
from testbed.run.cleanup import leftovers
from testbed.run.results import RESULTS

KINDS = ("quickstart", "leo-handover", "sagin-offload", "edge-llm")
PHASES = ("setup", "health", "running", "teardown", "analysis")
SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGKILL": signal.SIGKILL}
DURATION_S = 12  # each run cut to this: long enough for every phase to happen
# how long into a phase the signal may land (a random moment in [0, this)); a phase shorter
# than this is caught wherever it has got to
DWELL_S = {"setup": 4.0, "health": 1.0, "running": 8.0, "teardown": 0.5, "analysis": 0.5}
FINAL = ("done", "interrupted", "failed", "killed")
REPO = Path(__file__).resolve().parents[2]


def _lines(cmd: list[str]) -> list[str]:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.splitlines()
    except (OSError, subprocess.TimeoutExpired):
        return []


def _processes(marker: bytes) -> list[str]:
    """Processes that carry the trial's SAGIN_RESULTS in their environment: the runner's
    children inherit it (through ip netns exec, setsid, the supervisor), so nothing another
    user or run has started on the host is counted."""
    out = []
    for env in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker in env.read_bytes().split(b"\0"):
                cmd = (env.parent / "cmdline").read_bytes().replace(b"\0", b" ")
                out.append(f"{env.parent.name} {cmd.decode(errors='replace')[:120]}")
        except OSError:
            continue
    return out


def leaks_of(run_id: str, tag: str, marker: bytes) -> dict[str, list[str]]:
    """What the trial's run left on the host: everything named with its tag (namespaces
    sh<tag>-*, interfaces s<tag>*, /etc/netns, cgroups sagin-<tag>, hwsim radios), its
    processes, and /run/sagin-hil entries (ledger, state directory, board records) naming it."""
    out = leftovers(tag)
    out["processes"] = _processes(marker)
    out["ovs_bridges"] = [b for b in _lines(["ovs-vsctl", "--timeout=2", "list-br"])
                          if tag in b]
    out["run_entries"] = [str(p) for p in LEDGER_DIR.rglob(f"*{run_id}*")] \
        if LEDGER_DIR.is_dir() else []
    return {k: v for k, v in out.items() if v}


def _manifest(run_dir: Path) -> dict[str, Any] | None:
    try:
        man = json.loads((run_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return man if isinstance(man, dict) else None


def _run_dir(base: Path) -> Path | None:
    found = [p for p in base.glob("*/*") if p.is_dir() and not p.is_symlink()]
    return found[0] if found else None


def _env(base: Path) -> dict[str, str]:
    return {**os.environ, "SAGIN_RESULTS": str(base)}


def _launch(kind: str, duration_s: float, base: Path, log: Any) -> subprocess.Popen[bytes]:
    """`testbed run KIND` in a session of its own, its folder (and the environment all its
    processes inherit, by which leaks_of finds them) under `base`."""
    return subprocess.Popen([sys.executable, "-m", "testbed", "run", kind, "--duration",
                             str(duration_s)], cwd=REPO, env=_env(base), stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def _clean(base: Path) -> int:
    """`make clean`, as a user runs it after a SIGKILL."""
    return subprocess.run([sys.executable, "-m", "testbed", "clean"], cwd=REPO, env=_env(base),
                          capture_output=True, text=True, timeout=180).returncode


def _left_by(base: Path) -> dict[str, list[str]]:
    """What the run under `base` left: by its tag and id once its folder exists, else by
    the environment its processes inherited."""
    marker = f"SAGIN_RESULTS={base}".encode()
    run_dir = _run_dir(base)
    if run_dir is not None:
        return leaks_of(run_dir.name, run_dir.name.rsplit("-", 1)[1], marker)
    return {k: v for k, v in {"processes": _processes(marker)}.items() if v}


def folder_check(run_dir: Path | None, sig: str) -> dict[str, Any]:
    """Is the run's folder what a user can trust: a final status, and metrics unless the
    runner was SIGKILLed (then `make clean` marks it killed and its captures stay)."""
    if run_dir is None:
        return {"valid": True, "status": "never created", "why": "killed before its folder"}
    man = _manifest(run_dir)
    if man is None:
        return {"valid": False, "status": None, "why": "manifest.json missing or unreadable"}
    status = man.get("status")
    out: dict[str, Any] = {"status": status, "phase": man.get("phase"),
                           "files": sum(1 for p in run_dir.rglob("*") if p.is_file())}
    if status not in FINAL:
        return {**out, "valid": False, "why": f"status {status!r} is not final"}
    if status != "killed":
        try:
            metrics = json.loads((run_dir / "metrics.json").read_text())
            assert isinstance(metrics, dict) and metrics.get("status") == status
        except (OSError, ValueError, AssertionError):
            return {**out, "valid": False, "why": "metrics.json missing or not the run's"}
    elif sig != "SIGKILL":
        return {**out, "valid": False, "why": f"status killed after {sig}"}
    return {**out, "valid": True}


def trial(i: int, kind: str, phase: str, sig: str, rng: random.Random, work: Path,
          console: Console) -> dict[str, Any]:
    base = work / f"{i:02d}-{kind}"
    log = (work / f"{i:02d}-{kind}.log").open("w")
    t0 = time.monotonic()
    proc = _launch(kind, DURATION_S, base, log)
    reached, seen_at, target = None, None, PHASES.index(phase)
    while proc.poll() is None and time.monotonic() - t0 < 300:
        run_dir = _run_dir(base)
        man = _manifest(run_dir) if run_dir else None
        now_phase = man.get("phase") if man else ("setup" if run_dir else None)
        if now_phase in PHASES and PHASES.index(now_phase) >= target:
            reached, seen_at = now_phase, time.monotonic()
            break
        time.sleep(0.01)
    delay = rng.uniform(0.0, DWELL_S[phase])
    if reached is not None:
        time.sleep(delay)
    missed = reached != phase
    sent_at = None
    landed_in = None
    if proc.poll() is None:
        run_dir = _run_dir(base)
        man = _manifest(run_dir) if run_dir else None
        landed_in = man.get("phase") if man else "setup"
        if sig == "SIGINT":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(SIGNALS[sig])
        sent_at = time.monotonic()
    hung = False
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        hung = True
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    exit_s = round(time.monotonic() - sent_at, 2) if sent_at else None
    cleaned = None
    if sig == "SIGKILL" or hung:
        cleaned = _clean(base)
    log.close()
    time.sleep(0.5)  # a reaped child's entries (namespace files) settle
    leaks = _left_by(base)
    folder = folder_check(_run_dir(base), sig)
    row = {"trial": i, "scenario": kind, "phase": phase, "signal": sig,
           "landed_in": landed_in, "missed_phase": missed and sent_at is not None,
           "run_ended_before_signal": sent_at is None, "delay_s": round(delay, 2),
           "exit_after_signal_s": exit_s, "returncode": proc.returncode, "hung": hung,
           "clean_rc": cleaned, "leaks": leaks,
           "leak_count": sum(len(v) for v in leaks.values()), "folder": folder,
           "wall_s": round(time.monotonic() - t0, 1)}
    mark = "[green]ok[/]" if not row["leak_count"] and folder["valid"] else "[red]LEAK/INVALID[/]"
    console.print(f"{i:2d} {kind:<13} {phase:<9} {sig:<7} landed in {landed_in or '-':<9} "
                  f"exit {exit_s if exit_s is not None else '-'} s  status "
                  f"{folder.get('status')}  leaks {row['leak_count']}  {mark}")
    if row["leak_count"]:
        console.print(f"   left: {row['leaks']}")
    if seen_at is None and sent_at is None:
        console.print("   (the run ended before the phase was seen)")
    return row


# component, scenario, the supervisor's name for it (prefix), kill the child of that process
# (an exec event's `sh -c` runs the agent as its child)
CRASHES = (("ns-3", "quickstart", "ns3", False),
           ("os-ken", "quickstart", "osken", False),
           ("ovs-vswitchd", "quickstart", "ovs-vswitchd", False),
           ("tcpdump", "quickstart", "tcpdump-", False),
           ("payload agent", "sagin-offload", "exec-uav1-", True),
           ("autopilot", "sagin-offload", "autopilot-uav1", False))
CRASH_AT_S = 5.0
CRASH_DURATION_S = 25


def _ledger_pid(run_id: str, prefix: str) -> int | None:
    try:
        data = json.loads((LEDGER_DIR / f"{run_id}.json").read_text())
    except (OSError, ValueError):
        return None
    pids = [p["pid"] for p in data.get("processes", []) if p["name"].startswith(prefix)]
    return pids[-1] if pids else None


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def crash(component: str, kind: str, prefix: str, child: bool, work: Path,
          console: Console) -> dict[str, Any]:
    """One component SIGKILLed CRASH_AT_S after time zero; how the run noticed and ended."""
    base = work / f"crash-{prefix.strip('-')}"
    log = (work / f"crash-{prefix.strip('-')}.log").open("w")
    proc = _launch(kind, CRASH_DURATION_S, base, log)
    t0 = time.monotonic()
    run_dir, killed_wall, victim = None, None, None
    while proc.poll() is None and time.monotonic() - t0 < 300:
        run_dir = _run_dir(base)
        man = _manifest(run_dir) if run_dir else None
        if man and man.get("phase") == "running":
            time.sleep(CRASH_AT_S)
            pid = _ledger_pid(run_dir.name, prefix)
            kids = _children(pid) if (pid and child) else []
            victim = kids[0] if child and kids else (None if child else pid)
            if victim is not None:
                killed_wall = time.time()
                os.kill(victim, signal.SIGKILL)
            break
        time.sleep(0.05)
    try:
        proc.wait(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        _clean(base)
    log.close()
    run_dir = _run_dir(base)
    man = _manifest(run_dir) if run_dir else {}
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text()) if run_dir else {}
    except (OSError, ValueError):
        metrics = {}
    events = [e for e in metrics.get("restarts", []) if str(e["component"]).startswith(prefix)]
    failure = metrics.get("failure") or {}
    detected = (events[0]["detected_wall"] if events else failure.get("detected_wall"))
    if killed_wall is None:
        outcome = "not crashed (process not found)"
    elif events and events[0]["action"] == "restarted":
        outcome = f"restarted; run {man.get('status')}"
    elif events:
        outcome = f"{events[0]['action']}; run {man.get('status')}"
    elif failure:
        outcome = f"failed: {failure.get('component')} (metrics kept: " \
                  f"{'flows' in metrics or 'measured' in metrics})"
    else:
        outcome = f"unnoticed; run {man.get('status')}: {str(man.get('error'))[:80]}"
    leaks = _left_by(base)
    row = {"component": component, "scenario": kind, "victim_pid": victim,
           "detected_s": round(detected - killed_wall, 3) if detected and killed_wall else None,
           "outcome": outcome, "status": man.get("status"), "error": man.get("error"),
           "leaks": leaks, "leak_count": sum(len(v) for v in leaks.values())}
    console.print(f"crash {component:<14} {kind:<13} detected in "
                  f"{row['detected_s'] if row['detected_s'] is not None else '-'} s: {outcome}"
                  f"; leaks {row['leak_count']}")
    return row


def plan(runs: int, seed: int = 24) -> list[tuple[str, str, str]]:
    """(scenario, phase, signal) per trial: every phase x signal pair, scenarios in turn."""
    rng = random.Random(seed)
    pairs = list(product(PHASES, SIGNALS))
    out = []
    while len(out) < runs:
        rng.shuffle(pairs)
        out += pairs
    return [(KINDS[i % len(KINDS)], ph, sg) for i, (ph, sg) in enumerate(out[:runs])]


def run(console: Console) -> dict[str, Any]:
    runs = int(os.environ.get("SAGIN_BENCH_RUNS", "30"))
    work = RESULTS / "bench" / "resilience-runs"
    subprocess.run(["rm", "-rf", str(work)], check=False)
    work.mkdir(parents=True)
    rng = random.Random(2024)
    rows = [trial(i, kind, phase, sig, rng, work, console)
            for i, (kind, phase, sig) in enumerate(plan(runs))]
    crashes = [crash(*c, work, console) for c in CRASHES] \
        if os.environ.get("SAGIN_BENCH_CRASHES", "1") != "0" else []
    leaks = sum(r["leak_count"] for r in rows)
    valid = sum(r["folder"]["valid"] for r in rows)
    by: dict[str, dict[str, int]] = {}
    for r in rows:
        cell = by.setdefault(f"{r['signal']} in {r['phase']}", {"runs": 0, "leaks": 0,
                                                                "invalid": 0})
        cell["runs"] += 1
        cell["leaks"] += r["leak_count"]
        cell["invalid"] += not r["folder"]["valid"]
    exits = sorted(r["exit_after_signal_s"] for r in rows
                   if r["exit_after_signal_s"] is not None and r["signal"] != "SIGKILL")
    out = {"runs": len(rows), "leaks": leaks, "valid_folders": valid,
           "valid_ratio": round(valid / len(rows), 3) if rows else None,
           "missed_phase": sum(r["missed_phase"] for r in rows),
           "ended_before_signal": sum(r["run_ended_before_signal"] for r in rows),
           "hung": sum(r["hung"] for r in rows),
           "graceful_exit_s_median": exits[len(exits) // 2] if exits else None,
           "graceful_exit_s_max": exits[-1] if exits else None,
           "by_signal_and_phase": by, "trials": rows, "crashes": crashes,
           "mobility_driver": "not crashed: a thread of the runner, it ends only with the "
                              "runner; an exception in it ends the run as failed "
                              "(MobilityDriver.check)"}
    console.print(f"resilience: {len(rows)} runs killed, leaks {leaks}, valid folders "
                  f"{valid}/{len(rows)}, hung {out['hung']}, graceful exit median "
                  f"{out['graceful_exit_s_median']} s (max {out['graceful_exit_s_max']} s)")
    return out
