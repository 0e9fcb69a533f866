"""Parameter sweeps on Ray (testbed/sweep): the file's checks, the expansion, the statistics
and the resume bookkeeping as unit tests; then, for real, a Ray cluster of two `ray start`
nodes on this machine running a 2 x 2 sweep of tiny emulations (killed half-way and resumed)
and an evaluation sweep, with the placement by emulation slot checked from the runs' records
and the combined table checked against the runs' own metrics.json."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from scipy import stats

from testbed.scenario import ScenarioError, load
from testbed.scenario.overrides import PathError, set_path
from testbed.sweep import table
from testbed.sweep.execute import command, land, pending
from testbed.sweep.expand import Config, expand
from testbed.sweep.load import load_spec
from testbed.sweep.spec import SweepError

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "data" / "sweep" / "tiny.yaml"


def spec_file(tmp_path: Path, **fields: Any) -> Path:
    data: dict[str, Any] = {"name": "t", "scenario": str(TINY),
                            "parameters": {"links.hop.delay_ms": [2, 10]}, "seeds": [1, 2],
                            "metrics": {"rtt_ms": "flows.ping.rtt_ms_median"}}
    data.update(fields)
    data = {k: v for k, v in data.items() if v is not None}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def problems(path: Path) -> list[tuple[str, str, str]]:
    with pytest.raises(SweepError) as err:
        load_spec(path)
    assert str(path) in str(err.value)  # the file is named
    return [(p.path, p.message, p.fix) for p in err.value.problems]


# ---- the file ---------------------------------------------------------------------------------
@pytest.mark.unit
def test_shipped_sweeps_are_valid() -> None:
    for path in sorted((ROOT / "sweeps").glob("*.yaml")):
        spec, _ = load_spec(path)
        assert expand(spec), path


@pytest.mark.unit
def test_a_mistyped_path_names_the_parameter_and_the_close_name(tmp_path: Path) -> None:
    got = problems(spec_file(tmp_path, parameters={"links.hopp.delay_ms": [1]}))
    assert got[0][0] == "parameters.links.hopp"
    assert "no item named 'hopp'" in got[0][1] and "did you mean 'hop'" in got[0][2]


@pytest.mark.unit
def test_an_out_of_range_value_is_the_scenarios_own_complaint(tmp_path: Path) -> None:
    got = problems(spec_file(tmp_path, parameters={"links.hop.delay_ms": [5, -1]}))
    assert len(got) == 1 and got[0][0].startswith("parameters.links")
    assert "delay_ms=-1" in got[0][1]  # which configuration
    got = problems(spec_file(tmp_path, parameters={"links.hop.delay_mss": [5]}))
    assert "unknown field 'delay_mss'" in got[0][1] and "delay_ms" in got[0][2]


@pytest.mark.unit
def test_the_files_own_fields_are_checked(tmp_path: Path) -> None:
    got = problems(spec_file(tmp_path, metric={"a": "b"}))
    assert got[0][:2] == ("metric", "unknown field 'metric'") and "metrics" in got[0][2]
    got = problems(spec_file(tmp_path, eval="cpn"))
    assert "exactly one of scenario: and eval:" in got[0][1]
    got = problems(spec_file(tmp_path, parameters={"links.hop.delay_ms": {"min": 1, "max": 2}}))
    assert "for mode: random" in got[0][1]
    got = problems(spec_file(tmp_path, mode="random"))
    assert "samples" in got[0][1]
    got = problems(spec_file(tmp_path, scenario="no-such-scenario"))
    assert got[0][0] == "scenario"


@pytest.mark.unit
def test_an_evaluations_parameters_are_its_flags(tmp_path: Path) -> None:
    got = problems(spec_file(tmp_path, scenario=None, eval="cpm"))
    assert got[0][0] == "eval" and "did you mean 'cpn'" in got[0][2]
    got = problems(spec_file(tmp_path, scenario=None, eval="cpn", parameters={"algos": [1]}))
    assert got[0][0] == "parameters.algos" and "ALGOS" in got[0][2]
    spec, _ = load_spec(spec_file(tmp_path, scenario=None, eval="cpn",
                                  parameters={"ALGOS": ["abs"], "--presets": ["simple"]}))
    argv = command(spec, None, expand(spec)[0], tmp_path / "r")
    assert argv[3:] == ["eval", "cpn", "--presets", "simple", "ALGOS=abs", "--out",
                        str(tmp_path / "r" / "out")]


# ---- dotted paths -----------------------------------------------------------------------------
@pytest.mark.unit
def test_dotted_paths_address_list_items_by_name_or_index() -> None:
    data = {"links": [{"name": "a", "delay_ms": 1}, {"name": "b", "delay_ms": 2}],
            "engines": {}}
    out = set_path(data, "links.b.delay_ms", 9)
    assert out["links"][1]["delay_ms"] == 9 and data["links"][1]["delay_ms"] == 2
    assert set_path(data, "links.0.delay_ms", 7)["links"][0]["delay_ms"] == 7
    assert set_path(data, "engines.wifi.x", 1)["engines"] == {"wifi": {"x": 1}}
    with pytest.raises(PathError, match="no item named 'c'"):
        set_path(data, "links.c.delay_ms", 1)
    with pytest.raises(PathError, match="not a mapping or list"):
        set_path(data, "links.a.delay_ms.x", 1)


@pytest.mark.unit
def test_run_set_changes_the_scenario_and_refuses_typos() -> None:
    sc = load(TINY, sets={"links.hop.delay_ms": 7, "seed": 3}, cut_to_s=3)
    assert sc.link("hop").delay_ms == 7 and sc.seed == 3 and sc.duration_s == 3
    with pytest.raises(ScenarioError, match=r"links\.hip"):
        load(TINY, sets={"links.hip.delay_ms": 7})
    out = subprocess.run([sys.executable, "-m", "testbed", "check", "--file", str(TINY),
                          "--set", "links.hop.rate_mbps=-3"], capture_output=True, text=True,
                         cwd=ROOT)
    assert out.returncode == 2 and "links[0].rate_mbps" in out.stdout


# ---- expansion --------------------------------------------------------------------------------
@pytest.mark.unit
def test_grid_random_and_list_expansion(tmp_path: Path) -> None:
    spec, _ = load_spec(spec_file(tmp_path, parameters={"links.hop.delay_ms": [2, 10],
                                                        "links.hop.rate_mbps": [5, 20]}))
    runs = expand(spec)
    assert len(runs) == 8 and len({r.key for r in runs}) == 8
    assert [(r.params["links.hop.delay_ms"], r.seed) for r in runs[:3]] == [(2, 1), (2, 2),
                                                                             (2, 1)]
    # the key depends on values and seed only, not on the order parameters are written in
    spec2, _ = load_spec(spec_file(tmp_path, parameters={"links.hop.rate_mbps": [5, 20],
                                                         "links.hop.delay_ms": [2, 10]}))
    assert {r.key for r in expand(spec2)} == {r.key for r in runs}

    rnd = {"links.hop.delay_ms": {"min": 1, "max": 50}, "links.hop.rate_mbps":
           {"min": 1, "max": 100, "log": True, "int": True}}
    a, _ = load_spec(spec_file(tmp_path, mode="random", samples=5, parameters=rnd))
    b, _ = load_spec(spec_file(tmp_path, mode="random", samples=5, parameters=rnd))
    c, _ = load_spec(spec_file(tmp_path, mode="random", samples=5, parameters=rnd,
                               sample_seed=7))
    assert [r.params for r in expand(a)] == [r.params for r in expand(b)]  # seeded
    assert [r.params for r in expand(a)] != [r.params for r in expand(c)]
    assert all(1 <= r.params["links.hop.delay_ms"] <= 50
               and isinstance(r.params["links.hop.rate_mbps"], int) for r in expand(a))

    lst, _ = load_spec(spec_file(tmp_path, mode="list", parameters=None, seeds=[4],
                                 runs=[{"links.hop.delay_ms": 3},
                                       {"links.hop.delay_ms": 4, "duration": 2}]))
    runs = expand(lst)
    assert [r.params for r in runs] == [{"links.hop.delay_ms": 3},
                                        {"links.hop.delay_ms": 4, "duration": 2}]
    argv = command(lst, TINY, runs[1], tmp_path / "r")
    assert argv[argv.index("--duration") + 1] == "2" and "seed=4" in argv


# ---- statistics -------------------------------------------------------------------------------
@pytest.mark.unit
def test_mean_and_student_t_half_width() -> None:
    vals = [10.0, 12.0, 17.0]
    s = table.mean_ci(vals)
    lo, hi = stats.t.interval(0.95, 2, loc=13.0, scale=stats.sem(vals))
    assert s["mean"] == pytest.approx(13.0) and s["ci95"] == pytest.approx((hi - lo) / 2)
    assert s["ci95"] == pytest.approx(4.302653 * 3.605551 / 3 ** 0.5, rel=1e-5)
    assert table.mean_ci([5.0]) == {"mean": 5.0, "ci95": None, "n": 1}
    assert table.mean_ci([])["mean"] is None


@pytest.mark.unit
def test_the_table_groups_seeds_and_writes_files(tmp_path: Path) -> None:
    spec, _ = load_spec(spec_file(tmp_path))
    configs = expand(spec)
    recs = [{"config_id": c.config_id, "seed": c.seed, "params": c.params,
             "metrics": {"rtt_ms": 2.0 * c.params["links.hop.delay_ms"] + c.seed}}
            for c in configs]
    rows = table.aggregate(spec, configs, recs)
    assert [r["params"]["links.hop.delay_ms"] for r in rows] == [2, 10]
    assert rows[1]["metrics"]["rtt_ms"]["mean"] == pytest.approx(21.5)
    files = table.write(tmp_path, spec, rows)
    md = (tmp_path / "table.md").read_text()
    assert "| 10 | 2 | 21.5 ± 6.4 |" in md
    assert all(f.is_file() and f.stat().st_size > 0 for f in files)
    assert table.get_path({"a": [{"name": "x", "v": 1}]}, "a.x.v") == 1
    assert table.metric_path("p.{--algos}.m", {"--algos": "abs"}) == "p.abs.m"


# ---- resume bookkeeping -----------------------------------------------------------------------
def _result(cfg: Config, rc: int, rtt: float | None) -> dict[str, Any]:
    """What a task returns: its record and a tar of a run folder like the runner's."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        if rtt is not None:
            data = json.dumps({"status": "done", "flows": {"ping": {"rtt_ms_median": rtt}}})
            info = tarfile.TarInfo("./sweep-tiny/20260101-000000-abcd/metrics.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data.encode()))
    rec = {"key": cfg.key, "config_id": cfg.config_id, "params": cfg.params, "seed": cfg.seed,
           "kind": "emulation", "rc": rc, "host": "h", "node_id": "n",
           "run_dir": "sweep-tiny/20260101-000000-abcd" if rtt is not None else None}
    return {"record": rec, "tar": buf.getvalue()}


@pytest.mark.unit
def test_done_json_is_written_last_and_only_for_runs_that_ended_well(tmp_path: Path) -> None:
    spec, _ = load_spec(spec_file(tmp_path))
    configs = expand(spec)
    runs = tmp_path / "runs"
    runs.mkdir()
    assert pending(configs, runs) == ([], configs)
    (runs / f".{configs[0].key}.partial").mkdir()  # a driver killed while unpacking
    rec = land(_result(configs[0], 0, 4.1), spec, runs)
    assert rec["status"] == "done" and rec["metrics"] == {"rtt_ms": 4.1}
    assert not (runs / f".{configs[0].key}.partial").exists()
    assert land(_result(configs[1], 1, 4.0), spec, runs)["status"] == "failed"
    assert land(_result(configs[2], 0, None), spec, runs)["status"] == "failed"
    assert (runs / configs[1].key / "failed.json").is_file()
    done, todo = pending(configs, runs)
    assert done == [configs[0]] and todo == configs[1:]
    # a retried run replaces the failed folder
    land(_result(configs[1], 0, 4.2), spec, runs)
    assert not (runs / configs[1].key / "failed.json").exists()
    assert [r["key"] for r in table.read_runs(runs)] == sorted([configs[0].key,
                                                               configs[1].key])


# ---- for real: a two-node Ray cluster on this machine -----------------------------------------
@pytest.fixture(scope="module")
def cluster() -> Any:
    from testbed.sweep.cluster import LocalCluster
    cl = LocalCluster(nodes=2, cpus=1)
    with cl:
        yield cl
    assert cl.left() == []  # raylet, gcs_server, workers: nothing of ours is left


def listening(pids: list[int]) -> set[str]:
    """The local addresses these processes listen on (TCP), from ss."""
    out = subprocess.run(["ss", "-H", "-ltnp"], capture_output=True, text=True).stdout
    return {line.split()[3].rsplit(":", 1)[0] for line in out.splitlines()
            if any(f"pid={p}," in line for p in pids)}


def _sweep(spec: Path, out: Path, address: str, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "testbed", "sweep", str(spec),
                             "--ray-address", address, "--out", str(out)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, **kw)


def _done(out: Path) -> list[Path]:
    return sorted((out / "runs").glob(f"*/{table.DONE}"))


@pytest.mark.emulation
@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="emulation needs root (namespaces)")
@pytest.mark.skipif(shutil.which("ovs-vswitchd") is None, reason="run make setup")
def test_emulation_sweep_on_two_ray_nodes_killed_and_resumed(cluster: Any,
                                                             tmp_path: Path) -> None:
    from testbed.run.cleanup import leftovers

    spec = spec_file(tmp_path, name="tiny-2x2", duration=5)
    shutil.rmtree(Path("/tmp") / f"sagin-sweep-{os.getuid()}" / "tiny-2x2", ignore_errors=True)
    out = tmp_path / "out"
    driver = _sweep(spec, out, cluster.address)
    t0 = time.monotonic()
    while len(_done(out)) < 1 and driver.poll() is None and time.monotonic() - t0 < 150:
        time.sleep(0.2)
    first = {p.parent.name: p.stat().st_mtime_ns for p in _done(out)}
    assert 1 <= len(first) < 4, driver.communicate()[0] if driver.poll() is not None else first
    os.kill(driver.pid, signal.SIGKILL)  # the sweep's driver dies mid-way
    driver.wait()
    # Ray kills the dead driver's workers; their runners get SIGTERM and tear down
    t1 = time.monotonic()
    while cluster._runs() and time.monotonic() - t1 < 120:
        time.sleep(0.5)
    assert not cluster._runs()
    first = {p.parent.name: p.stat().st_mtime_ns for p in _done(out)}  # landed meanwhile?

    again = _sweep(spec, out, cluster.address)
    text = again.communicate(timeout=300)[0]
    assert again.returncode == 0, text
    assert f"{len(first)} already finished, {4 - len(first)} to run" in " ".join(text.split())
    done = _done(out)
    assert len(done) == 4
    for p in done:  # the finished runs were skipped, not redone
        if p.parent.name in first:
            assert p.stat().st_mtime_ns == first[p.parent.name]

    recs = [json.loads(p.read_text()) for p in done]
    # placement: both nodes ran emulations, never two at once on one node
    by_node: dict[str, list[tuple[float, float]]] = {}
    for r in recs:
        by_node.setdefault(r["node_id"], []).append((r["started"], r["ended"]))
        assert r["rc"] == 0 and r["status"] == "done"
    assert len(by_node) == 2, by_node
    for spans in by_node.values():
        spans.sort()
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), spans

    # every run's folder came back whole, with the host in its manifest, nothing left behind
    metrics = {}
    for r in recs:
        run_dir = out / "runs" / r["key"] / r["run_dir"]
        man = json.loads((run_dir / "manifest.json").read_text())
        assert man["sweep"]["node_id"] == r["node_id"] and man["sweep"]["host"] == r["host"]
        assert man["status"] == "done"
        assert not any(leftovers(man["run_id"].rsplit("-", 1)[1]).values())
        metrics[r["key"]] = json.loads((run_dir / "metrics.json").read_text())
    for stale in Path("/tmp").glob(f"sagin-sweep-{os.getuid()}/tiny-2x2/*/*/*/manifest.json"):
        man = json.loads(stale.read_text())  # the killed attempts: torn down, marked so
        assert not any(leftovers(man["run_id"].rsplit("-", 1)[1]).values())
        assert man["status"] in ("interrupted", "done")
    shutil.rmtree(Path("/tmp") / f"sagin-sweep-{os.getuid()}" / "tiny-2x2", ignore_errors=True)
    with contextlib.suppress(OSError):
        (Path("/tmp") / f"sagin-sweep-{os.getuid()}").rmdir()
    # the combined table is the runs' own metrics.json, mean +- Student t half-width
    rows = json.loads((out / "table.json").read_text())
    assert len(rows) == 2
    for row in rows:
        vals = [metrics[r["key"]]["flows"]["ping"]["rtt_ms_median"] for r in recs
                if r["config_id"] == row["config_id"]]
        assert len(vals) == 2
        mean = sum(vals) / 2
        half = stats.t.ppf(0.975, 1) * stats.sem(vals) if vals[0] != vals[1] else 0.0
        assert row["metrics"]["rtt_ms"]["mean"] == pytest.approx(mean)
        assert row["metrics"]["rtt_ms"]["ci95"] == pytest.approx(half, abs=1e-9)
        # and the emulation did what the parameter says: RTT ~ 2 x one-way delay
        assert mean == pytest.approx(2 * row["params"]["links.hop.delay_ms"], abs=1.5)
    index = json.loads((out / "index.json").read_text())
    assert {r["host"] for r in index["runs"]} and len(index["runs"]) == 4
    assert (out / "plots" / "rtt_ms.png").stat().st_size > 0


@pytest.mark.emulation
@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="runs on the same two-node cluster")
def test_evaluation_sweep_on_the_cluster(cluster: Any, tmp_path: Path) -> None:
    spec = tmp_path / "eval.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "cpn-2", "eval": "cpn", "mode": "grid",
        "parameters": {"--algos": ["abs", "first_fit"]},
        "args": ["--presets", "simple", "--seeds", "2", "--no-sweep", "--workers", "1"],
        "metrics": {"acceptance": "points.simple.table.{--algos}.acceptance.mean"}}))
    out = tmp_path / "out"
    run = _sweep(spec, out, cluster.address)
    text = run.communicate(timeout=240)[0]
    assert run.returncode == 0, text
    recs = [json.loads(p.read_text()) for p in _done(out)]
    assert len(recs) == 2
    rows = {r["params"]["--algos"]: r for r in json.loads((out / "table.json").read_text())}
    for r in recs:
        algo = r["params"]["--algos"]
        res = json.loads((out / "runs" / r["key"] / "out" / "results.json").read_text())
        want = res["points"]["simple"]["table"][algo]["acceptance"]["mean"]
        assert r["metrics"]["acceptance"] == pytest.approx(want)
        assert rows[algo]["metrics"]["acceptance"]["mean"] == pytest.approx(want)
        assert 0.0 < want <= 1.0


@pytest.mark.emulation
@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="runs on the same two-node cluster")
def test_cpn_swarms_ray_backend_on_the_cluster(cluster: Any) -> None:
    """ABS's swarms with --ray-address, which before Ray was installed had only its error
    tested (tests/test_cpn.py): the same cluster runs them."""
    import ray

    from controllers.cpn import swarm

    try:
        got = swarm.run_swarms(lambda x: x * x, [1, 2, 3], "ray", ray_address=cluster.address)
    finally:
        ray.shutdown()
    assert got == [1, 4, 9]


@pytest.mark.emulation
@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="emulation needs root (namespaces)")
@pytest.mark.skipif(shutil.which("ovs-vswitchd") is None, reason="run make setup")
def test_ctrl_c_stops_the_local_ray_and_the_run_tears_down(tmp_path: Path) -> None:
    """Without --ray-address the sweep starts Ray in-process; Ctrl-C (SIGINT to the whole
    process group, as a terminal sends it) mid-run leaves no Ray process and no network."""
    from testbed.run.cleanup import leftovers
    from testbed.sweep.procs import session_pids

    # 30-s runs: Ctrl-C lands mid-run however long the wait for the first manifest took
    spec = spec_file(tmp_path, name="tiny-ctrl-c", duration=30, seeds=[1])
    out = tmp_path / "out"
    scratch = Path("/tmp") / f"sagin-sweep-{os.getuid()}" / "tiny-ctrl-c"
    shutil.rmtree(scratch, ignore_errors=True)  # an earlier attempt's
    driver = subprocess.Popen([sys.executable, "-m", "testbed", "sweep", str(spec), "--out",
                               str(out)], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        t0 = time.monotonic()
        while not list(scratch.glob("*/*/*/manifest.json")) and time.monotonic() - t0 < 120:
            assert driver.poll() is None, driver.communicate()[0]
            time.sleep(0.2)
        time.sleep(2.0)  # the network is up
        addrs = listening(session_pids(driver.pid))  # GCS, raylet, workers: loopback only
        assert addrs and addrs <= {"127.0.0.1", "[::ffff:127.0.0.1]"}, addrs
        os.killpg(driver.pid, signal.SIGINT)
        text = driver.communicate(timeout=150)[0]
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    assert driver.returncode == 130, text
    assert "sweep interrupted" in text and "resumes it" in " ".join(text.split())
    t1 = time.monotonic()
    while session_pids(driver.pid) and time.monotonic() - t1 < 90:
        time.sleep(0.3)
    assert session_pids(driver.pid) == []  # raylet, gcs_server, workers and the runner
    mans = [json.loads(p.read_text()) for p in scratch.glob("*/*/*/manifest.json")]
    assert mans and all(m["status"] == "interrupted" for m in mans)
    for m in mans:
        assert not any(leftovers(m["run_id"].rsplit("-", 1)[1]).values())
    shutil.rmtree(scratch, ignore_errors=True)
    with contextlib.suppress(OSError):
        scratch.parent.rmdir()
