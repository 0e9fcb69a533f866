"""Malformed input files get a named problem (file, where, fix) and nothing else: no traceback
from inside the YAML parser, no hang.  Hand-picked pathological files, and a property test
(hypothesis) that mutates every shipped scenario's bytes and asserts that loading it either
succeeds or raises the testbed's own error."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testbed.hil.inventory import InventoryError
from testbed.hil.inventory import load as load_inventory
from testbed.scenario import load
from testbed.scenario.errors import ScenarioError
from testbed.scenario.loader import TOPOLOGY_DIR, available

pytestmark = pytest.mark.unit

SHIPPED = sorted(available().values())

CASES: dict[str, tuple[bytes, str]] = {
    "binary": (b"name: x\n\x00\x01\x02 junk", "binary file"),
    "latin1": ("name: caf\u00e9\n".encode("latin-1"), "not UTF-8"),
    "deep": (b"a: " + b"[" * 5000 + b"]" * 5000, "nested too deeply"),
    "deep-ok-for-yaml": (b"a: " + b"[" * 60 + b"]" * 60, "nested deeper than 40"),
    "cycle": (b"name: x\nnodes: &a [*a]\n", "nested deeper than 40"),
    "nan": (b"name: x\nnodes: {a: {kind: uav, position: [.nan, 0, 0]}}\n", "not a finite"),
    "inf": (b"name: x\nduration_s: .inf\nnodes: {}\n", "not a finite"),
    "python-tag": (b"!!python/object/apply:os.system ['true']\n", "not valid YAML"),
    "tab": (b"name: x\n\tnodes: {}\n", "not valid YAML"),
    "outside-include": (b"include: /etc/hostname\nname: x\n", "outside the scenario's folder"),
    "bad-include": (b"include: {a: 1}\nname: x\n", "must be a file name"),
    "list": (b"- 1\n- 2\n", "must be a mapping"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_pathological_scenario_files_are_named_problems(tmp_path: Path, case: str) -> None:
    raw, expect = CASES[case]
    path = tmp_path / f"{case}.yaml"
    path.write_bytes(raw)
    with pytest.raises(ScenarioError) as err:
        load(path)
    assert expect in str(err.value), str(err.value)
    assert str(path) in str(err.value) or path.name in str(err.value)


def test_oversized_and_missing_files(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"# " + b"x" * (5 << 20) + b"\nname: x\n")
    with pytest.raises(ScenarioError, match="at most"):
        load(big)
    with pytest.raises(ScenarioError, match="no such file"):
        load(tmp_path / "nope.yaml")
    with pytest.raises(ScenarioError, match="a directory"):
        load(tmp_path)
    inv = tmp_path / "inv.yaml"
    inv.write_bytes(b"boards:\n  - \xff\xfe\n")
    with pytest.raises(InventoryError, match="not UTF-8"):
        load_inventory(inv)


def test_includes_inside_the_folder_or_topologies_still_work(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text((TOPOLOGY_DIR / "quickstart.yaml").read_text())
    top = tmp_path / "top.yaml"
    top.write_text("include: base.yaml\nname: top\n")
    assert load(top).name == "top"
    top.write_text(f"include: {TOPOLOGY_DIR / '_edge-llm-net.yaml'}\nname: top2\n"
                   "duration_s: 30\n")
    assert load(top).name == "top2"


def _mutate(raw: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    out = bytearray(raw)
    for pos, cut, insert in edits:
        at = pos % (len(out) + 1)
        out[at:at + cut] = insert
    return bytes(out)


EDIT = st.tuples(st.integers(0, 1 << 16), st.integers(0, 8),
                 st.one_of(st.binary(max_size=6),
                           st.sampled_from([b"[", b"{", b"]", b"}", b":", b"- ", b"\t", b"&a ",
                                            b"*a", b".nan", b"1e999", b"'", b'"', b"\n  ",
                                            b"!!python/name:os.system", b"\xff", b"\x00"])))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, len(SHIPPED) - 1), edits=st.lists(EDIT, min_size=1, max_size=4))
def test_mutated_shipped_scenarios_load_or_name_the_problem(
        tmp_path: Path, which: int, edits: list[tuple[int, int, bytes]]) -> None:
    src = SHIPPED[which]
    path = tmp_path / src.name
    path.write_bytes(_mutate(src.read_bytes(), edits))
    # the scenario's includes and companion files, next to it as in topologies/
    for f in src.parent.glob("_*.yaml"):
        (tmp_path / f.name).write_bytes(f.read_bytes())
    try:
        load(path)
    except ScenarioError as exc:
        text = str(exc)
        assert text.strip() and "Traceback" not in text


# ---- the other files a scenario names: traces and TLEs -------------------------------------

TRACES: dict[str, tuple[bytes, str]] = {
    "nan": (b"t_s,x,y,z\n0,0,0,50\n1,nan,0,50\n", ":3: not a finite number"),
    "overflow": (b"t_s,x,y,z\n0,0,0,50\n1,1e400,0,50\n", ":3: not a finite number"),
    "binary": (b"t_s,x,y,z\n\x00\x01", "binary file"),
    "latin1": ("t_s,x,y,z\n0,caf\u00e9,0,1\n".encode("latin-1"), ":2: not UTF-8"),
    "header": (b"a,b\n1,2\n", "header must have"),
}


@pytest.mark.parametrize("case", sorted(TRACES))
def test_malformed_traces_name_file_and_line(tmp_path: Path, case: str) -> None:
    from testbed.mobility.motion import read_trace
    from testbed.mobility.roads import read_trace as read_drive

    raw, expect = TRACES[case]
    path = tmp_path / "t.csv"
    path.write_bytes(raw)
    with pytest.raises(ValueError, match=expect) as err:
        read_trace(path)
    assert str(path) in str(err.value)
    # the road drive trace (t_s,vehicle,x,y,speed_mps) goes through the same reader
    drive = raw.replace(b"t_s,x,y,z", b"t_s,vehicle,x,y,speed_mps")
    drive = drive.replace(b"\n0,", b"\n0,v,").replace(b"\n1,", b"\n1,v,")
    path.write_bytes(drive)
    with pytest.raises(ValueError, match=expect):
        read_drive(path)


def test_tle_files_are_bounded_ascii(tmp_path: Path) -> None:
    from testbed.mobility.orbits import MAX_TLE_BYTES, parse_tle_file

    path = tmp_path / "x.tle"
    path.write_bytes(b"ISS\n\x00\x01")
    with pytest.raises(ValueError, match="binary file"):
        parse_tle_file(path)
    path.write_bytes("ISS \u00e9\n".encode())
    with pytest.raises(ValueError, match=r"x.tle:1: not ASCII"):
        parse_tle_file(path)
    with path.open("wb") as f:
        f.truncate(MAX_TLE_BYTES + 1)
    with pytest.raises(ValueError, match="at most"):
        parse_tle_file(path)


def test_files_named_by_a_scenario_stay_in_its_folder(tmp_path: Path) -> None:
    from testbed.mobility.world import World
    from testbed.scenario import parse

    (tmp_path / "ok.csv").write_text("t_s,x,y,z\n0,0,0,50\n1,10,0,50\n")
    source = str(tmp_path / "s.yaml")

    def scenario(motion: dict, tle: str | None = None) -> dict:
        sc: dict = {"name": "files", "duration_s": 10,
                    "nodes": {"gs1": {"kind": "ground_station", "position": [0, 0, 0]},
                              "uav1": {"kind": "uav", "motion": motion}},
                    "links": [{"name": "l", "kind": "air-to-ground", "endpoints": ["uav1", "gs1"]}]}
        if tle is not None:
            sc["constellation"] = {"tle": {"file": tle, "limit": 1}, "isl": None}
        return sc

    trace = {"model": "trace", "file": "ok.csv"}
    assert World.build(parse(scenario(trace), source), source).enu("uav1", 0.5)[0] == 5.0
    for name in ("../../etc/passwd", "/etc/passwd"):
        with pytest.raises(ScenarioError, match="leads outside") as err:
            World.build(parse(scenario({"model": "trace", "file": name}), source), source)
        assert "nodes.uav1.motion.file" in str(err.value)
        with pytest.raises(ScenarioError, match="leads outside") as err:
            World.build(parse(scenario(trace, tle=name), source), source)
        assert "constellation.tle.file" in str(err.value)
    (tmp_path / "link.csv").symlink_to("/etc/hostname")
    with pytest.raises(ScenarioError, match="leads outside"):
        World.build(parse(scenario({"model": "trace", "file": "link.csv"}), source), source)


# ---- experiment files: the offload config and the CPN instance (JSON and YAML) ---------------

JSONS: dict[str, tuple[bytes, str]] = {
    "deep": (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    "deep-ok-for-json": (b"{\"a\": " + b"[" * 60 + b"]" * 60 + b"}", "nested deeper than 40"),
    "nan": (b'{"n_users": NaN}', "not a finite number"),
    "overflow": (b'{"n_users": 1e400}', "not a finite number"),
    "binary": (b'{"a": 1}\x00', "binary file"),
    "latin1": ('{"a": "caf\u00e9"}'.encode("latin-1"), "not UTF-8"),
    "syntax": (b'{"a": 1,}', "line 1, column 9"),
}


@pytest.mark.parametrize("case", sorted(JSONS))
def test_malformed_experiment_files_are_named_problems(tmp_path: Path, case: str) -> None:
    from controllers.cpn.instances import InstanceError, load_instance
    from controllers.offload.config import load_config

    raw, expect = JSONS[case]
    path = tmp_path / "x.json"
    path.write_bytes(raw)
    with pytest.raises(InstanceError, match=expect) as err:
        load_instance(path)
    assert str(path) in str(err.value)
    with pytest.raises(ValueError, match=expect):
        load_config(path)


def test_absurd_counts_are_refused_before_anything_is_allocated(tmp_path: Path) -> None:
    from controllers.offload.config import load_config

    path = tmp_path / "huge.yaml"
    path.write_text("n_users: 1000000000\n")
    with pytest.raises(ValueError, match="less than or equal to 10000"):
        load_config(path)
