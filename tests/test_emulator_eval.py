"""The emulator-evaluation setting of arXiv 2604.04498 (topologies/emulator-eval.yaml) and the
bench that measures us on it (testbed/bench/emulators.py): the scenario has the paper's shell
(53 deg, 72x22, 10 planes), the normalisation and comparison code computes what its doc says,
and - with root - ten seconds of the scenario carry pings while the constellation moves."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from testbed.bench import emulators as em
from testbed.scenario import load, resolve

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.unit
def test_scenario_has_the_papers_shell_and_ground_stations() -> None:
    from testbed.mobility.world import World

    path = resolve("emulator-eval")
    sc = load(path)
    w = sc.constellation.walker
    assert (w.inclination_deg, w.altitude_km, w.per_plane) == (53, 550, 22)
    # 10 planes of the 72-plane shell: the same 5-deg spacing of RAAN as the full shell
    assert w.planes == 10 and w.raan_spread_deg / w.planes == pytest.approx(360 / 72)
    assert sc.constellation.include == "all"
    assert {"osnabrueck", "enschede", "gw-aerzen"} <= set(sc.access[0].terminals)
    kinds = {f.kind.value for f in sc.traffic}
    assert kinds == {"ping", "tcp"}
    world = World.build(sc, str(path))
    sats = [n for n, node in world.sc.nodes.items() if node.kind.value == "satellite"]
    assert len(sats) == em.SATELLITES == 220
    isl = [x for x in world.sc.links if x.name.startswith("isl-")]
    assert len(isl) == 10 * 22 + 9 * 22  # +Grid within 10 planes, no wrap across the gap


@pytest.mark.unit
def test_per_core_normalisation() -> None:
    assert em.cores_used(50.0, 2) == pytest.approx(1.0)
    assert em.cores_used(6.25, 16) == pytest.approx(1.0)
    assert em.per_core("cpu_util_pct", 25.0, 2) == pytest.approx(0.5)
    assert em.per_core("bring_up_s", 10.0, 2) == pytest.approx(20.0)
    assert em.per_core("memory_mb", 300.0, 2) == 300.0
    assert em.per_core("update_delay_ms", 1.5, 64) == 1.5
    assert em.per_core("cpu_util_pct", None, 2) is None
    assert em.cpu_s_per_sat_per_s(22.0, 220, 100.0) == pytest.approx(0.001)
    with pytest.raises(ValueError):
        em.cores_used(10.0, 0)


@pytest.mark.unit
def test_comparison_ratios_raw_and_per_core() -> None:
    theirs = em.Emulator("X", "test", {
        "bring_up_s": em.Published(100.0, "s", "test"),
        "cpu_util_pct": em.Published(10.0, "%", "test"),
        "memory_mb": em.Published(None, "MB", "missing"),
    })
    ours = {"bring_up_s": 5.0, "cpu_util_pct": 40.0, "memory_mb": 280.0}
    c = em.compare(ours, our_cores=2, emulators=[theirs], their_cores=16)["X"]
    assert c["bring_up_s"]["ratio_ours_to_theirs"] == pytest.approx(0.05)
    # 5 s x 2 cores vs 100 s x 16 cores
    assert c["bring_up_s"]["ratio_per_core"] == pytest.approx(10 / 1600, abs=1e-3)
    # 40 % of 2 cores = 0.8 cores; 10 % of 16 cores = 1.6 cores
    assert c["cpu_util_pct"]["ours_per_core"] == pytest.approx(0.8)
    assert c["cpu_util_pct"]["theirs_per_core"] == pytest.approx(1.6)
    assert c["cpu_util_pct"]["ratio_per_core"] == pytest.approx(0.5)
    assert c["memory_mb"]["ratio_ours_to_theirs"] is None
    # the paper's hardware unknown: no per-core ratio, the raw one stays
    c2 = em.compare(ours, our_cores=2, emulators=[theirs], their_cores=None)["X"]
    assert c2["cpu_util_pct"]["ratio_per_core"] is None
    assert c2["cpu_util_pct"]["ratio_ours_to_theirs"] == pytest.approx(4.0)
    # nothing of the real paper is invented: every published value is missing, with a reason
    for emu in em.PUBLISHED:
        for pub in emu.metrics.values():
            assert pub.value is None and "2604.04498" in pub.source


@pytest.mark.unit
def test_update_delays_from_the_link_changes_log() -> None:
    at = 1000.0
    lead = em.lead_s(10.0)
    assert lead == pytest.approx(0.04)
    recs = [
        {"wall": 990.0, "received": 989.9, "op": {"op": "batch", "ops": [{}] * 400}},
        {"wall": at + 0.001, "received": at - lead + 0.0005,
         "op": {"op": "batch", "at": at, "ops": [{}] * 10}},
        {"wall": at + 0.1 + 0.030, "received": at + 0.1 - lead + 0.002,
         "op": {"op": "batch", "at": at + 0.1, "ops": [{}] * 4}},
    ]
    u = em.update_delays(recs, rate_hz=10.0)
    assert (u["batches"], u["initial_batches"], u["initial_changes"]) == (2, 1, 400)
    assert u["late_over_20ms"] == 1
    assert u["lateness_ms_max"] == pytest.approx(30.0, abs=1e-3)
    assert u["delivery_ms_p50"] in (pytest.approx(0.5, abs=1e-3), pytest.approx(2.0, abs=1e-3))
    assert u["changes_per_update_mean"] == 7.0 and u["changes_total"] == 14


@pytest.mark.unit
def test_window_cpu_and_summary() -> None:
    # (wall, tree CPU-s, machine busy jiffies, machine total jiffies): 10 s in which the run
    # used 5 CPU-s of 2 cores and the machine was 40 % busy
    samples = [(0.0, 1.0, 0, 0), (5.0, 3.0, 200, 1000), (10.0, 6.0, 400, 2000)]
    w = em.window_cpu(samples, 0.0, 10.0, cores=2)
    assert w["run_cores"] == pytest.approx(0.5) and w["run_util_pct"] == pytest.approx(25.0)
    assert w["machine_util_pct"] == pytest.approx(20.0)
    runs = [{"status": "done", "command_to_time_zero_s": x, "steady": {"run_util_pct": u},
             "updates": {"lateness_ms_p50": 0.1, "delivery_ms_p50": 0.5},
             "mobility": {"compute_ms_p50": 1.0}} for x, u in ((5.0, 10.0), (7.0, 30.0))]
    runs.append({"status": "failed"})
    s = em.summarise(runs, cores=2)
    assert (s["runs_ok"], s["runs"]) == (2, 3)
    assert s["bring_up_s"] == 6.0 and s["cpu_util_pct"] == 20.0
    assert s["update_delay_ms"] == pytest.approx(1.6)


@pytest.mark.emulation
@pytest.mark.skipif(os.geteuid() != 0, reason="emulation tests need root (namespaces)")
@pytest.mark.skipif(shutil.which("fping") is None, reason="fping missing: run `make setup`")
def test_ten_seconds_of_the_scenario_ping_and_update(tmp_path: Path) -> None:
    from testbed.run.cleanup import leftovers
    from testbed.run.runner import Run, RunOptions

    path = resolve("emulator-eval")
    sc = load(path, cut_to_s=10)
    res = Run(sc, str(path), RunOptions(results_base=tmp_path)).execute()
    try:
        assert res.status == "done", res.error
        for name in ("ping-osnabrueck", "ping-enschede"):
            assert res.metrics["flows"][name]["received"] > 50
        mob = res.metrics["mobility"]
        assert mob["ticks"] >= 90 and mob["changes_sent"] > 0
        recs = [json.loads(x) for x in (res.run_dir / "logs" / "link-changes.jsonl")
                .read_text().splitlines() if x.strip()]
        u = em.update_delays(recs)
        assert u["batches"] > 50 and u["changes_total"] > 0
    finally:
        assert not any(leftovers(res.run_dir.name.rsplit("-", 1)[-1]).values())


@pytest.mark.unit
def test_own_papers_normalisation_per_100_satellites_and_per_core() -> None:
    # 5.556 s for 220 satellites on 2 cores vs 1272 s for 4408 satellites on 56 cores
    assert em.per_100_sats("bring_up_s", 5.556, 220) == pytest.approx(2.5255, abs=1e-4)
    assert em.per_100_sats("bring_up_s", 1272.0, 4408) == pytest.approx(28.8566, abs=1e-4)
    assert em.core_s_per_100_sats("bring_up_s", 5.556, 220, 2) == pytest.approx(5.0509,
                                                                                 abs=1e-4)
    assert em.core_s_per_100_sats("bring_up_s", 1272.0, 4408, 56) == pytest.approx(
        1615.971, abs=1e-3)
    # a latency is not normalised per satellite; per core is only defined for bring-up
    assert em.per_100_sats("update_delay_ms", 2.0, 220) is None
    assert em.core_s_per_100_sats("cpu", 0.25, 220, 2) is None
    assert em.per_100_sats("memory", 300.0, None) is None
    assert em.ratio_sig(5.0509, 1615.971) == pytest.approx(0.00313)
    assert em.ratio_sig(1.0, 0.0) is None and em.ratio_sig(None, 2.0) is None


@pytest.mark.unit
def test_own_papers_comparison_on_given_inputs() -> None:
    figs = [
        em.OwnFigure("A", "bring_up_s", 100.0, "s", 1000, 8, "test A"),
        em.OwnFigure("A", "cpu", 2.0, "cores used", 500, 16, "test A"),
        em.OwnFigure("B", "cpu", 40.0, "%", 4408, None, "test B", comparable=False),
        em.OwnFigure("C", "bring_up_s", None, "s", None, None, "test C",
                     relative="5-10x faster than A"),
        em.OwnFigure("D", "update_delay_ms", None, "ms", None, None, "test D"),
        em.OwnFigure("E", "update_delay_ms", 10.0, "ms", 1584, 8, "test E",
                     inferred="size"),
    ]
    ours = {"bring_up_s": 5.0, "run_cores": 0.25, "memory_mb": 280.0,
            "update_delay_ms": 2.0, "cores": 2}
    rows = em.compare_own_papers(ours, figures=figs, our_satellites=200)
    a_up, a_cpu, b_cpu, c_up, d_upd, e_upd = rows
    # bring-up: 5 s / 200 sats = 2.5 s per 100; theirs 10 s per 100 -> 0.25; per core:
    # 5 x 2 / 200 x 100 = 5 core-s vs 100 x 8 / 1000 x 100 = 80 core-s -> 0.0625
    assert a_up["ratio_raw"] == pytest.approx(0.05)
    assert a_up["ratio_per_100_sats"] == pytest.approx(0.25)
    assert a_up["ratio_per_core"] == pytest.approx(0.0625)
    assert a_up["status"] == "compared"
    # CPU in cores used: 0.125 vs 0.4 cores per 100 satellites
    assert a_cpu["ratio_per_100_sats"] == pytest.approx(0.3125, rel=1e-2)  # 3 sig. figures
    assert a_cpu["ratio_per_core"] is None
    # a percentage of an unstated basis: shown, never divided
    assert b_cpu["theirs"] == 40.0 and b_cpu["status"] == "shown, not compared"
    assert b_cpu["ratio_raw"] is b_cpu["ratio_per_100_sats"] is None
    # a relative factor stays text; nothing is derived from it
    assert c_up["status"] == "relative factor only" and c_up["ratio_raw"] is None
    assert c_up["relative"] == "5-10x faster than A"
    assert d_upd["status"] == "not found" and d_upd["ratio_raw"] is None
    # a latency: raw ratio only, and an inferred size is said so in the status
    assert e_upd["ratio_raw"] == pytest.approx(0.2) and e_upd["ratio_per_100_sats"] is None
    assert e_upd["status"].startswith("compared (inferred")
    assert all(r["source_kind"] == em.OWN_LABEL for r in rows)
    with pytest.raises(ValueError, match="unknown metric"):
        em.compare_own_papers(ours, figures=[em.OwnFigure("X", "cpu_pct", 1.0, "%", 1, 1,
                                                          "x")])


@pytest.mark.unit
def test_own_papers_table_is_labelled_and_recomputes_from_json(tmp_path: Path) -> None:
    # every figure is the emulator's own paper's, never arXiv 2604.04498's; missing = None
    for f in em.OWN_PAPERS:
        assert f.metric in em.OWN_METRICS
        assert "2604.04498" not in f.citation
        if f.value is None:
            assert f.relative or "no value" in f.note
    assert "not arXiv 2604.04498" in em.OWN_LABEL
    doc = {"machine": {"cores": 2},
           "ours": {"bring_up_s": 5.556, "run_cores": 0.248, "memory_mb": 288.8,
                    "update_delay_ms": 1.985, "cores": 2}}
    path = tmp_path / "emulators.json"
    path.write_text(json.dumps(doc))
    own = em.own_papers_from_json(path)
    assert own["rows"] == em.compare_own_papers(doc["ours"], 2)
    sn = next(r for r in own["rows"] if r["emulator"] == "StarryNet" and
              r["metric"] == "bring_up_s" and r["their_satellites"] == 4408)
    assert sn["ratio_per_100_sats"] == pytest.approx(0.0875, rel=1e-2)
    assert sn["ratio_per_core"] == pytest.approx(0.00313, rel=1e-2)
    assert em.main(["--from-json", str(path), "--json"]) == 0
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(SystemExit, match="no 'ours'"):
        em.own_papers_from_json(bad)
