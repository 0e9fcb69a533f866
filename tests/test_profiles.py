"""Device profiles: lookup and validation errors a person can act on, quota arithmetic and its
capping, and (as root, on a host with a cgroup cpu controller) that a quota really slows a
kernel down, that a profiled node's processes land in its group, and that teardown leaves no
group behind."""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from payloads.agent import calibrate_kernel
from testbed.devices import cgroups
from testbed.devices.profiles import (
    MIN_QUOTA_US,
    PROFILES,
    CpuQuota,
    DeviceProfile,
    lookup,
    quota_for,
)
from testbed.scenario import ScenarioError, parse

REQUIRED = ("jetson-orin-nano", "jetson-nano", "raspberry-pi-4", "raspberry-pi-5", "uav-mec",
            "edge-server", "cloud")

F = TypeVar("F", bound=Callable[..., Any])


def needs_cgroups(fn: F) -> F:
    """Real cgroups: root, and a cpu controller (v1 hierarchy or cgroup2 listing cpu)."""
    for mark in (pytest.mark.emulation,
                 pytest.mark.skipif(os.geteuid() != 0, reason="cgroups need root"),
                 pytest.mark.skipif(cgroups.detect() is None,
                                    reason="no cgroup cpu controller on this host")):
        fn = mark(fn)
    return fn


def two_nodes(profile_a: str | None = "raspberry-pi-4", **extra: Any) -> dict[str, Any]:
    a: dict[str, Any] = {"kind": "edge_server"}
    if profile_a is not None:
        a["profile"] = profile_a
    sc: dict[str, Any] = {
        "name": "profiles", "duration_s": 10,
        "nodes": {"a": a, "b": {"kind": "cloud"}},
        "links": [{"name": "lan", "kind": "wired", "endpoints": ["a", "b"]}],
        "capture": {"enabled": False},
    }
    sc.update(extra)
    return sc


# ---- profiles and quotas ------------------------------------------------------------------
@pytest.mark.unit
def test_required_profiles_exist_with_sources_and_model_note() -> None:
    for name in REQUIRED:
        p = lookup(name)
        assert p.name == name and p.cores >= 1 and p.memory_mb >= 1024 and p.cpu_speed > 0
        assert len(p.sources) >= 2
        # the speed is declared a model, never a measurement
        assert any("MODEL, not measured" in s for s in p.sources), p.sources


@pytest.mark.unit
def test_unknown_profile_lists_known_names() -> None:
    with pytest.raises(ValueError) as info:
        lookup("jetson-tx2")
    msg = str(info.value)
    assert "jetson-tx2" in msg
    for name in REQUIRED:
        assert name in msg


@pytest.mark.unit
def test_quota_is_total_speed_in_host_cores() -> None:
    nano = PROFILES["jetson-nano"]
    q = quota_for(nano, host_cores=4)
    assert not q.capped and q.reason == ""
    assert q.period_us == 100_000
    assert q.quota_us == int(nano.cores * nano.cpu_speed * 100_000)
    assert q.cores == pytest.approx(nano.total_speed, abs=1e-4)
    # a host core twice the reference: half the quota
    half = quota_for(nano, host_cores=4, reference_speed=2.0)
    assert half.quota_us == pytest.approx(q.quota_us / 2, abs=1)


@pytest.mark.unit
def test_quota_capped_at_host_with_reason() -> None:
    cloud = PROFILES["cloud"]
    q = quota_for(cloud, host_cores=2)
    assert q.capped
    assert q.quota_us == 200_000 and q.cores == 2.0
    assert q.wanted_cores == pytest.approx(cloud.total_speed, abs=1e-3)
    assert "cloud" in q.reason and "capped at 2" in q.reason and "reference_speed" in q.reason
    # scaled down so that it fits: not capped any more
    fits = quota_for(cloud, host_cores=2, reference_speed=cloud.total_speed / 2)
    assert not fits.capped and fits.quota_us == pytest.approx(200_000, abs=1)


@pytest.mark.unit
def test_quota_raised_to_kernel_minimum() -> None:
    tiny = DeviceProfile("tiny", "a very slow microcontroller", cores=1, cpu_speed=0.001,
                         memory_mb=1)
    q = quota_for(tiny, host_cores=2)
    assert q.quota_us == MIN_QUOTA_US and q.capped and "minimum" in q.reason


@pytest.mark.unit
@pytest.mark.parametrize("kwargs", [{"host_cores": 0}, {"host_cores": 2, "reference_speed": 0}])
def test_quota_rejects_nonsense(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        quota_for(PROFILES["cloud"], **kwargs)


# ---- scenario validation ------------------------------------------------------------------
@pytest.mark.unit
def test_scenario_accepts_a_profile() -> None:
    sc = parse(two_nodes(), "profiles")
    assert sc.nodes["a"].profile == "raspberry-pi-4"
    assert sc.nodes["b"].profile is None


@pytest.mark.unit
def test_scenario_unknown_profile_names_field_and_known_profiles() -> None:
    with pytest.raises(ScenarioError) as info:
        parse(two_nodes("rpi4"), "profiles")
    problems = [p for p in info.value.problems if p.path == "nodes.a.profile"]
    assert problems, [p.path for p in info.value.problems]
    assert "rpi4" in problems[0].message and "raspberry-pi-4" in problems[0].message


@pytest.mark.unit
def test_scenario_profile_on_switch_is_an_error() -> None:
    raw = two_nodes(None)
    raw["nodes"]["sw"] = {"kind": "switch", "profile": "edge-server"}
    raw["links"] = [{"name": "l1", "kind": "wired", "endpoints": ["a", "sw"]},
                    {"name": "l2", "kind": "wired", "endpoints": ["b", "sw"]}]
    with pytest.raises(ScenarioError) as info:
        parse(raw, "profiles")
    assert any("switch cannot have a device profile" in p.message
               for p in info.value.problems), info.value.problems


# ---- cgroup plumbing without root ---------------------------------------------------------
@pytest.mark.unit
def test_create_refuses_a_tag_that_is_not_a_run_tag() -> None:
    with pytest.raises(ValueError, match="4 hex digits"):
        cgroups.create("../x", "a", None)


@pytest.mark.unit
def test_join_argv_joins_every_hierarchy_then_execs() -> None:
    handle = cgroups.CgroupHandle("1a2b", "a", 1, (Path("/cg/cpu/sagin-1a2b/a"),
                                                   Path("/cg/memory/sagin-1a2b/a")), None, None)
    argv = cgroups.join_argv(handle, ["ip", "netns", "exec", "sh1a2b-a", "true"])
    assert argv[:2] == ["sh", "-c"]
    assert "/cg/cpu/sagin-1a2b/a/cgroup.procs" in argv[2]
    assert "/cg/memory/sagin-1a2b/a/cgroup.procs" in argv[2]
    assert argv[2].endswith('exec "$@"') and "exit 125" in argv[2]
    assert argv[4:] == ["ip", "netns", "exec", "sh1a2b-a", "true"]


# ---- real cgroups (root) ------------------------------------------------------------------
def _tag() -> str:
    while True:
        tag = secrets.token_hex(2)
        if not cgroups.leftover_groups(tag):
            return tag


def _quota(cores: float) -> CpuQuota:
    return CpuQuota(period_us=100_000, quota_us=int(cores * 100_000), wanted_cores=cores,
                    host_cores=len(os.sched_getaffinity(0)))


@needs_cgroups
def test_quarter_core_quota_makes_kernel_about_four_times_slower() -> None:
    from payloads.bench import measure

    tag = _tag()
    try:
        full = cgroups.create(tag, "full", None)
        quarter = cgroups.create(tag, "quarter", _quota(0.25))
        assert (full.dirs[0] / ("cpu.cfs_quota_us" if full.version == 1 else "cpu.max")
                ).read_text().split()[0] in ("-1", "max")
        iterations = int(calibrate_kernel(0.3) * 1.0)  # ~1 s on a free core
        t_full = measure(full, 1, iterations)
        t_quarter = measure(quarter, 1, iterations)
        ratio = t_quarter / t_full
        # 4x expected; generous bounds because the host is shared
        assert 3.0 <= ratio <= 5.5, (t_full, t_quarter)
    finally:
        cgroups.remove(tag)
    assert cgroups.leftover_groups(tag) == []


@needs_cgroups
def test_limits_written_children_inherit_and_remove_kills_and_leaves_nothing() -> None:
    layout = cgroups.detect()
    assert layout is not None
    tag = _tag()
    quota = quota_for(PROFILES["jetson-nano"], host_cores=2)
    memory_mb = 256 if layout.memory is not None else None
    try:
        handle = cgroups.create(tag, "n1", quota, memory_mb)
        if handle.version == 1:
            assert (handle.dirs[0] / "cpu.cfs_quota_us").read_text().strip() == \
                str(quota.quota_us)
            assert (handle.dirs[0] / "cpu.cfs_period_us").read_text().strip() == "100000"
            if memory_mb is not None:
                mem = next(d for d in handle.dirs if d.is_relative_to(layout.memory))
                assert int((mem / "memory.limit_in_bytes").read_text()) == memory_mb << 20
        proc = subprocess.Popen(cgroups.join_argv(handle, ["sh", "-c", "sleep 60; sleep 60"]),
                                start_new_session=True)
        deadline = time.monotonic() + 5
        while len(handle.pids()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.pid in handle.pids() and len(handle.pids()) == 2  # sh and its sleep
        assert f"sagin-{tag}/n1" in Path(f"/proc/{proc.pid}/cgroup").read_text()
        assert len(cgroups.leftover_groups(tag)) == 2 * len(handle.dirs)
        late = subprocess.Popen(["sleep", "60"])  # attach after start: the fallback path
        cgroups.attach(handle, late.pid)
        assert late.pid in handle.pids()
        found = cgroups.existing(tag, "n1")
        assert found is not None and found.dirs == handle.dirs
        assert cgroups.existing(tag, "other") is None
    finally:
        removed = cgroups.remove(tag)
    assert removed
    assert proc.wait(timeout=5) != 0  # killed by remove()
    assert late.wait(timeout=5) != 0
    assert cgroups.leftover_groups(tag) == []


@needs_cgroups
def test_teardown_of_a_dead_runs_ledger_removes_its_groups(tmp_path: Path) -> None:
    """What `make clean` does after a SIGKILL: only the ledger (with its tag) is left."""
    from testbed.lifecycle.ledger import Ledger
    from testbed.run.cleanup import leftovers, teardown

    tag = _tag()
    ledger = Ledger.create(f"test-profiles-{tag}", tag, "test-profiles", tmp_path)
    try:
        handle = cgroups.create(tag, "n1", _quota(0.5))
        proc = subprocess.Popen(cgroups.join_argv(handle, ["sleep", "60"]))
        time.sleep(0.2)
        assert leftovers(tag)["cgroups"]
        counts = teardown(ledger)
        assert counts["cgroups"] == 2 * len(handle.dirs)
        assert proc.wait(timeout=5) != 0
        assert leftovers(tag)["cgroups"] == []
    finally:
        cgroups.remove(tag)
        ledger.remove()


@needs_cgroups
def test_profiled_node_exec_runs_in_its_cgroup_and_teardown_removes_it(tmp_path: Path) -> None:
    from testbed.run.cleanup import leftovers
    from testbed.run.harness import emulated
    from testbed.run.timeline import Timeline
    from testbed.run.traffic import Flows
    from testbed.scenario.model import Event

    sc = parse(two_nodes(), "profiles")
    with emulated(sc, tmp_path) as emu:
        net = emu.net
        tag = net.plan.tag
        assert set(net.cgroups) == {"a"}  # no profile, no group
        handle = net.cgroups["a"]
        expected = quota_for(PROFILES["raspberry-pi-4"], len(os.sched_getaffinity(0)))
        assert handle.quota == expected
        if handle.version == 1:
            assert (handle.dirs[0] / "cpu.cfs_quota_us").read_text().strip() == \
                str(expected.quota_us)
        timeline = Timeline(net, Flows(net, net.sup, emu.run_dir / "flows"), net.sup,
                            emu.run_dir / "events.jsonl")
        timeline.execute(Event(at_s=0, action="exec", node="a",
                               command="sleep 60 & wait"))
        pid = net.sup.procs[-1].popen.pid
        deadline = time.monotonic() + 5
        while len(handle.pids()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pid in handle.pids() and len(handle.pids()) >= 2  # the shell and its sleep
        cg = Path(f"/proc/{pid}/cgroup").read_text()
        assert f"sagin-{tag}/a" in cg
        # it is in the node's network namespace too
        ns = subprocess.run(["ip", "netns", "pids", net.plan.namespaces["a"]],
                            capture_output=True, text=True).stdout.split()
        assert str(pid) in ns
        assert leftovers(tag)["cgroups"]
    assert leftovers(tag)["cgroups"] == []
    assert not Path(f"/proc/{pid}").exists() or "sagin-" not in \
        Path(f"/proc/{pid}/cgroup").read_text()


@pytest.mark.unit
def test_auto_reference_speed_fits_the_fastest_device_without_capping() -> None:
    from testbed.devices.profiles import PROFILES, quota_for
    from testbed.net.network import reference_speed

    chosen = [PROFILES["jetson-nano"], PROFILES["edge-server"], PROFILES["raspberry-pi-5"]]
    scale = reference_speed("auto", chosen, host_cores=2)
    assert scale == pytest.approx(PROFILES["edge-server"].total_speed / 2)
    quotas = [quota_for(p, 2, scale) for p in chosen]
    assert not any(q.capped for q in quotas)
    # relative speeds kept: the quotas are in the devices' total-speed ratios
    assert quotas[1].cores / quotas[0].cores == pytest.approx(
        PROFILES["edge-server"].total_speed / PROFILES["jetson-nano"].total_speed, rel=0.01)
    assert reference_speed("auto", [PROFILES["jetson-nano"]], host_cores=2) == 1.0
    assert reference_speed(3.0, chosen, host_cores=2) == 3.0
