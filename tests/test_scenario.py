"""Scenario files: schema and reference errors point at the exact field, good files load.

Every malformed file in tests/data/bad/ carries one kind of mistake (or, for
many_problems.yaml, several); the tests check that `testbed.scenario.load` reports it with
the field path a user would look for, names the file, and gives a fix worth reading.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from testbed import scenario
from testbed.scenario import Problem, ScenarioError
from testbed.scenario.model import FlowKind, Medium, NodeKind

pytestmark = pytest.mark.unit

DATA = Path(__file__).resolve().parent / "data"
BAD = DATA / "bad"
GOOD = DATA / "good"
QUICKSTART = Path(__file__).resolve().parents[1] / "topologies" / "quickstart.yaml"


def load_error(path: Path, **kwargs) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        scenario.load(path, **kwargs)
    return info.value


def problem_at(err: ScenarioError, path: str) -> Problem:
    found = [p for p in err.problems if p.path == path]
    assert found, f"no problem at {path!r}; got {[p.path for p in err.problems]}"
    return found[0]


# file, field path, words expected in the problem's message + fix (case-insensitive)
CASES = [
    ("typo_field.yaml", "links[1].dealy_ms", ["unknown field 'dealy_ms'",
                                              "did you mean 'delay_ms'"]),
    ("negative_delay.yaml", "links[1].delay_ms", ["greater than or equal to 0"]),
    ("bad_node_kind.yaml", "nodes.uav1.kind", ["'uav'", "'ground_station'",
                                               "use one of the listed values"]),
    ("unknown_endpoint.yaml", "links[0].endpoints[2]", ["unknown node 'usr2'",
                                                        "did you mean 'user2'"]),
    ("unknown_flow_dst.yaml", "traffic[0].dst", ["unknown node 'clod1'",
                                                 "did you mean 'cloud1'"]),
    ("unknown_event_link.yaml", "timeline[0].link", ["unknown link 'sat-upp'",
                                                     "did you mean 'sat-up'"]),
    ("wifi_with_delay.yaml", "links[0]", ["delay_ms cannot be set on a wi-fi link",
                                          "medium: p2p"]),
    ("p2p_missing_rate.yaml", "links[0]", ["point-to-point", "rate_mbps"]),
    ("flow_after_end.yaml", "traffic[0].duration_s", ["ends at 40 s", "duration_s: 30",
                                                      "shorten the flow"]),
    ("event_after_end.yaml", "timeline[0].at_s", ["45 s", "after the run ends",
                                                  "raise duration_s"]),
    ("wifi_no_position.yaml", "nodes.user2.position", ["wi-fi link 'cell'", "no position",
                                                       "position: [x, y, z]"]),
    ("islands.yaml", "links", ["islands", "{gs1, sat1}", "{cloud1, edge1}", "add links"]),
    ("duplicate_link.yaml", "links[1].name", ["duplicate name 'sat'", "unique name"]),
    ("missing_duration.yaml", "traffic[0].duration_s", ["required field is missing",
                                                        "add duration_s:"]),
    ("include_cycle_a.yaml", "include", ["include cycle",
                                         "include_cycle_a.yaml -> include_cycle_b.yaml "
                                         "-> include_cycle_a.yaml"]),
    ("include_missing.yaml", "include", ["no_such_base.yaml", "does not exist",
                                         "relative to the including file"]),
    ("not_mapping.yaml", "", ["must be a mapping"]),
    ("access_unknown_terminal.yaml", "access[0].terminals[1]", ["unknown node 'usr2'",
                                                                "did you mean 'user2'"]),
    ("access_no_constellation.yaml", "access[0].candidates", ["no constellation section",
                                                              "list candidate nodes"]),
    ("constellation_two_sources.yaml", "constellation", ["exactly one of walker", "tle"]),
    ("channel_with_delay.yaml", "links[0]", ["delay_ms cannot be set together with channel"]),
    ("walker_bad_phasing.yaml", "constellation.walker", ["phasing must be in 0 .. planes-1"]),
    ("motion_typo.yaml", "nodes.uav1.motion", ["'circel'", "'circle'", "'random-waypoint'"]),
    ("bad_epoch.yaml", "mobility.epoch", ["iso 8601", "2026-11-26t12:00:00z"]),
]


@pytest.mark.parametrize(("filename", "field_path", "words"), CASES,
                         ids=[c[0].removesuffix(".yaml") for c in CASES])
def test_bad_file_reports_field_and_fix(filename: str, field_path: str, words: list[str]):
    path = BAD / filename
    err = load_error(path)
    problem = problem_at(err, field_path)
    text = f"{problem.message}\n{problem.fix}".lower()
    for word in words:
        assert word.lower() in text, f"{word!r} not in {text!r}"
    rendered = str(err)
    assert filename in rendered.splitlines()[0]
    assert (field_path or "(file)") in rendered


def test_bad_files_are_all_covered():
    """Every file in tests/data/bad/ is exercised by some test here."""
    covered = {c[0] for c in CASES} | {"invalid_yaml.yaml", "many_problems.yaml",
                                       "include_cycle_b.yaml"}
    assert {p.name for p in BAD.glob("*.yaml")} == covered


def test_single_mistake_gives_single_problem():
    for filename, _, _ in CASES:
        assert len(load_error(BAD / filename).problems) == 1, filename


def test_invalid_yaml_reports_line_number():
    err = load_error(BAD / "invalid_yaml.yaml")
    assert len(err.problems) == 1
    problem = err.problems[0]
    m = re.fullmatch(r"line (\d+), column (\d+)", problem.path)
    assert m, problem.path
    # the unclosed '{' is on line 4; the parser notices it there or on the next line
    assert int(m.group(1)) in (4, 5)
    assert "not valid yaml" in problem.message.lower()
    assert "invalid_yaml.yaml" in str(err)


def test_include_cycle_reported_from_either_end():
    err = load_error(BAD / "include_cycle_b.yaml")
    assert "include_cycle_b.yaml" in str(err).splitlines()[0]
    assert "include cycle" in problem_at(err, "include").message


def test_all_reference_problems_reported_in_one_pass():
    err = load_error(BAD / "many_problems.yaml")
    assert [p.path for p in err.problems] == [
        "links[0].endpoints[1]", "traffic[0].dst", "timeline[0].flow"]
    assert "did you mean 'sat1'" in err.problems[0].fix
    assert "did you mean 'cloud1'" in err.problems[1].fix
    assert "did you mean 'ping-cloud'" in err.problems[2].fix
    assert str(err).splitlines()[0].endswith("many_problems.yaml: 3 problems")


def test_missing_file():
    with pytest.raises(ScenarioError) as info:
        scenario.resolve(file=BAD / "does_not_exist.yaml")
    assert "does_not_exist.yaml" in str(info.value)
    assert "no such file" in info.value.problems[0].message


def test_unknown_scenario_name_suggests_close_one():
    with pytest.raises(ScenarioError) as info:
        scenario.resolve(name="quickstrat")
    err = info.value
    assert "quickstrat" in str(err)
    problem = err.problems[0]
    assert "no scenario named 'quickstrat'" in problem.message
    assert "did you mean 'quickstart'" in problem.fix
    for name in scenario.available():
        assert name in problem.fix


def test_every_listed_scenario_is_valid_and_companion_files_are_not_listed():
    names = scenario.available()
    assert {"quickstart", "edge-llm", "cpn-mapping"} <= set(names)
    assert not [n for n in names if "." in n or n.startswith("_")]
    for path in names.values():
        scenario.load(path)  # raises ScenarioError naming the problem


def test_resolve_known_name():
    assert scenario.resolve(name="quickstart") == scenario.available()["quickstart"]
    assert scenario.resolve(name="quickstart").samefile(QUICKSTART)


def test_quickstart_loads():
    sc = scenario.load(QUICKSTART)
    assert sc.name == "quickstart"
    assert sc.duration_s == 60
    assert len(sc.nodes) == 12
    assert sc.switches() == ["sw1", "sw2"]
    assert sc.nodes["sat1"].kind is NodeKind.SATELLITE
    assert sc.link("cell-a").carried_by is Medium.WIFI
    assert sc.link("sat-up").carried_by is Medium.P2P
    assert sc.link("metro").carried_by is Medium.ETHERNET
    assert sc.link("backhaul").wifi is not None
    assert sc.link("backhaul").wifi.data_mode == "OfdmRate36Mbps"
    assert [f.name for f in sc.traffic] == ["ping-cloud", "ping-edge", "bulk-edge",
                                            "video-cloud"]
    assert sc.flow("video-cloud").kind is FlowKind.UDP
    assert len(sc.timeline) == 3


def test_dump_round_trips():
    sc = scenario.load(QUICKSTART)
    again = scenario.parse(yaml.safe_load(scenario.dump(sc)), "dumped")
    assert again == sc


def test_include_merges_by_name():
    base = scenario.load(QUICKSTART)
    sc = scenario.load(GOOD / "quickstart_extended.yaml")
    assert sc.name == "quickstart-extended"
    assert sc.duration_s == base.duration_s  # inherited

    # nodes: merged key by key
    assert set(sc.nodes) == set(base.nodes) | {"edge2"}
    assert sc.nodes["uav1"].kind is NodeKind.UAV
    assert sc.nodes["uav1"].description == "relay west"
    assert sc.nodes["uav1"].position == base.nodes["uav1"].position
    assert sc.nodes["uav2"] == base.nodes["uav2"]

    # links: same name replaced in place, new name appended
    names = [link.name for link in sc.links]
    assert names == [link.name for link in base.links] + ["edge2-lan"]
    assert sc.link("sat-up").delay_ms == 12
    assert sc.link("sat-up").rate_mbps == 20
    assert names.index("sat-up") == [link.name for link in base.links].index("sat-up")
    assert sc.link("sat-down") == base.link("sat-down")

    # traffic: appended; timeline: inherited
    assert [f.name for f in sc.traffic] == [f.name for f in base.traffic] + ["ping-edge2"]
    assert sc.flow("ping-edge2").dst == "edge2"
    assert sc.timeline == base.timeline


def test_include_can_move_a_node(tmp_path):
    over = tmp_path / "moved.yaml"
    over.write_text(f"include: {QUICKSTART}\n"
                    "nodes:\n  uav1: {position: [-60, 40, 100]}\n")
    sc = scenario.load(over)
    assert sc.nodes["uav1"].position == (-60, 40, 100)


def test_include_resolved_relative_to_including_file(tmp_path, monkeypatch):
    """The include path is relative to the file, not to the working directory."""
    monkeypatch.chdir(tmp_path)
    sc = scenario.load(GOOD / "quickstart_extended.yaml")
    assert "sat1" in sc.nodes


def test_overrides_are_merged_before_validation():
    sc = scenario.load(QUICKSTART, overrides={"duration_s": 90, "seed": 7})
    assert (sc.duration_s, sc.seed) == (90, 7)
    err = load_error(QUICKSTART, overrides={"duration_s": 30})
    assert "traffic[0].duration_s" in [p.path for p in err.problems]


def test_cut_clips_flows_and_drops_later_events():
    base = scenario.load(QUICKSTART)
    sc = scenario.load(QUICKSTART, cut_to_s=10)
    assert sc.duration_s == 10
    assert [f.name for f in sc.traffic] == [f.name for f in base.traffic if f.start_s < 10]
    for flow in sc.traffic:
        assert flow.start_s + flow.duration_s <= sc.duration_s
        assert flow.duration_s <= base.flow(flow.name).duration_s
    assert all(ev.at_s <= 10 for ev in sc.timeline)
    assert sc.timeline == [ev for ev in base.timeline if ev.at_s <= 10]


def test_cut_keeps_what_fits_and_drops_late_flows():
    base = scenario.load(QUICKSTART)
    sc = scenario.load(QUICKSTART, cut_to_s=30)
    assert [ev.at_s for ev in sc.timeline] == [20]
    assert sc.timeline[0] == base.timeline[0]
    late = {"name": "late", "kind": "ping", "src": "user1", "dst": "edge1", "start_s": 40,
            "duration_s": 10}
    sc = scenario.load(QUICKSTART, overrides={"traffic": [late]}, cut_to_s=30)
    assert "late" not in [f.name for f in sc.traffic]


def test_cut_flow_starting_just_before_new_end():
    flow = {"name": "late", "kind": "ping", "src": "user1", "dst": "edge1", "start_s": 9.5,
            "duration_s": 20}
    sc = scenario.load(QUICKSTART, overrides={"traffic": [flow]}, cut_to_s=10)
    for f in sc.traffic:
        assert f.start_s + f.duration_s <= sc.duration_s
