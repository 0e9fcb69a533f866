"""Device profiles: does a node's cgroup CPU quota make it as much slower than the host as the
profile says?  (testbed/devices/profiles.py; the profile speeds themselves are a model, and this
checks the emulation of the model, not the model.)

The workload is the payload agent's real-mode kernel (SHA-256 over 4 KiB blocks,
`payloads.agent._kernel`), a fixed number of iterations (about 1.1 s on one free host core)
per worker process.  A profile's group gets `w = ceil(quota in host cores)` workers (at most
the device's cores and the host's): just enough to use the whole quota, and no more busy cores
than the quota needs, so that other load on the host disturbs as little as possible.  The
reference is the same `w` workers in a group without a quota.  Workers start together on a
signal after their interpreter is up; the time is first kernel start -> last kernel end.

Expected time ratio (quota / reference) = w / min(quota cores, w).  Each repetition runs the
reference and the profile back to back (paired, so slow drift of the host's load cancels);
the median of 3 ratios is reported with its error against the expected ratio.

Two modes:
  host    reference_speed 1.0 (a host core = a reference core).  On a 2-core host most
          profiles need more than the host has and are capped: listed, not measured.
  scaled  reference_speed = (largest profile's total speed) / host cores: every device
          scaled down by the same factor so all fit, relative speeds kept.
"""

from __future__ import annotations

import math
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from payloads.agent import calibrate_kernel
from testbed.devices import cgroups
from testbed.devices.profiles import PROFILES, DeviceProfile, quota_for
from testbed.lifecycle.ledger import Ledger
from testbed.run.results import RESULTS

REPEAT = 3
KERNEL_S = 1.1
TARGET_PCT = 10.0
REPO = Path(__file__).resolve().parents[1]

WORKER = r"""
import sys, threading, time
from payloads.agent import _kernel
n, stop = int(sys.argv[1]), threading.Event()
_kernel(256, stop)
print("ready", flush=True)
sys.stdin.readline()
t0 = time.monotonic()
_kernel(n, stop)
print(t0, time.monotonic(), flush=True)
"""


def measure(handle: cgroups.CgroupHandle, workers: int, iterations: int,
            timeout: float = 600.0) -> float:
    """Seconds from the first worker's kernel start to the last one's end, all workers
    inside `handle`'s group from their first instruction."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = cgroups.join_argv(handle, [sys.executable, "-c", WORKER, str(iterations)])
    procs = [subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
             for _ in range(workers)]
    try:
        for p in procs:
            assert p.stdout is not None
            if p.stdout.readline().strip() != "ready":
                raise RuntimeError(f"kernel worker in {handle.dirs[0]} did not start: "
                                   f"{p.communicate(timeout=5)[1].strip()}")
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        spans = []
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            if p.returncode != 0:
                raise RuntimeError(f"kernel worker failed (exit {p.returncode}): {err.strip()}")
            t0, t1 = (float(x) for x in out.split())
            spans.append((t0, t1))
        return max(t1 for _, t1 in spans) - min(t0 for t0, _ in spans)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def profile_entry(tag: str, profile: DeviceProfile, host_cores: int, reference_speed: float,
                  iterations: int, references: dict[int, cgroups.CgroupHandle],
                  console: Console) -> dict[str, Any]:
    quota = quota_for(profile, host_cores, reference_speed)
    entry: dict[str, Any] = {
        "cores": profile.cores, "cpu_speed_modelled": profile.cpu_speed,
        "total_speed": round(profile.total_speed, 4), "wanted_host_cores": quota.wanted_cores,
        "quota_us": quota.quota_us, "period_us": quota.period_us,
        "quota_host_cores": round(quota.cores, 5), "capped": quota.capped,
        "reason": quota.reason}
    if quota.capped:
        return entry
    workers = max(1, min(profile.cores, host_cores, math.ceil(quota.wanted_cores - 1e-9)))
    expected = workers / min(quota.wanted_cores, workers)
    name = f"r{int(reference_speed * 1000)}-{profile.name}"[:32]
    handle = cgroups.create(tag, name, quota)
    if workers not in references:
        references[workers] = cgroups.create(tag, f"reference-{workers}", None)
    ref_s, quota_s, ratios = [], [], []
    for _ in range(REPEAT):
        ref_s.append(measure(references[workers], workers, iterations))
        quota_s.append(measure(handle, workers, iterations))
        ratios.append(quota_s[-1] / ref_s[-1])
    measured = statistics.median(ratios)
    error = (measured / expected - 1) * 100
    entry.update({
        "workers": workers, "expected_time_ratio": round(expected, 4),
        "measured_time_ratio": round(measured, 4), "error_pct": round(error, 2),
        "within_target": abs(error) <= TARGET_PCT,
        "reference_s": [round(t, 3) for t in ref_s], "quota_s": [round(t, 3) for t in quota_s],
        "ratios": [round(r, 4) for r in ratios]})
    console.print(f"  {profile.name:18} quota {quota.cores:6.3f} cores, {workers} worker(s): "
                  f"time x{measured:.3f} (expected x{expected:.3f}, error {error:+.1f} %)")
    return entry


def run(console: Console) -> dict[str, Any]:
    layout = cgroups.require()
    host_cores = len(os.sched_getaffinity(0))
    rate = calibrate_kernel(0.5)
    iterations = int(rate * KERNEL_S)
    tag = secrets.token_hex(2)
    # a ledger, so that `make clean` removes the groups if this benchmark is killed
    ledger = Ledger.create(f"bench-profiles-{tag}", tag, "bench-profiles", RESULTS / "bench")
    largest = max(p.total_speed for p in PROFILES.values())
    modes = {"host": 1.0, "scaled": round(largest / host_cores, 4)}
    out: dict[str, Any] = {
        "host_cores": host_cores, "cgroup_version": layout.version,
        "kernel": "sha256 over 4 KiB blocks (payloads.agent._kernel)",
        "kernel_iterations": iterations, "kernel_iters_per_s_unlimited": round(rate),
        "repeat": REPEAT, "target_error_pct": TARGET_PCT,
        "load_avg_before": os.getloadavg(), "modes": {}}
    t0 = time.monotonic()
    try:
        for mode, reference_speed in modes.items():
            console.print(f"{mode}: reference_speed {reference_speed} (one host core = "
                          f"{reference_speed} reference cores)")
            references: dict[int, cgroups.CgroupHandle] = {}
            out["modes"][mode] = {"reference_speed": reference_speed, "profiles": {
                name: profile_entry(tag, p, host_cores, reference_speed, iterations,
                                    references, console)
                for name, p in PROFILES.items()}}
    finally:
        cgroups.remove(tag)
        ledger.remove()
    out["load_avg_after"] = os.getloadavg()
    out["measure_s"] = round(time.monotonic() - t0, 1)
    measured = [e for m in out["modes"].values() for e in m["profiles"].values()
                if "error_pct" in e]
    out["measured"] = len(measured)
    out["within_target"] = sum(e["within_target"] for e in measured)
    out["max_abs_error_pct"] = max((abs(e["error_pct"]) for e in measured), default=None)
    table = Table(title=f"Device profiles: cgroup quota vs modelled speed ({host_cores} host "
                  "cores; time ratio vs unlimited)")
    for col in ("mode", "profile", "quota cores", "workers", "expected", "measured",
                "error %"):
        table.add_column(col)
    for mode, m in out["modes"].items():
        for name, e in m["profiles"].items():
            if "error_pct" in e:
                table.add_row(mode, name, f"{e['quota_host_cores']:.3f}", str(e["workers"]),
                              f"{e['expected_time_ratio']:.3f}",
                              f"{e['measured_time_ratio']:.3f}", f"{e['error_pct']:+.1f}")
            else:
                table.add_row(mode, name, f"{e['wanted_host_cores']:.2f} > {host_cores}",
                              "-", "capped", "-", "-")
    console.print(table)
    console.print(f"{out['within_target']} of {out['measured']} within {TARGET_PCT:g} % "
                  f"(max |error| {out['max_abs_error_pct']} %)")
    return out
