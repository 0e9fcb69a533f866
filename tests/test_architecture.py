"""The tree's direction (issue 17): the core below, workloads above, registered, no cycles.

The import graph is read from the source (ast), lazy imports inside functions included (they
run too), imports under `if TYPE_CHECKING:` left out (they never run).  Importing a module
also runs its parent packages' __init__, so an import of a.b.c counts as an import of a and
a.b as well.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path
from typing import ClassVar

import networkx as nx
import pytest
from pydantic import BaseModel

from testbed.scenario import ScenarioError, parse
from testbed.scenario.model import Strict
from testbed.workloads import (
    CORE,
    Bench,
    Eval,
    Registry,
    RegistryError,
    Workload,
    resolve,
)

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("testbed", "controllers", "payloads", "firmware")
WORKLOADS = ("controllers", "payloads", "firmware")
# who may import whom at the top level: the core imports nobody; node-side packages import the
# core; controllers (algorithms and orchestration) import the node side and the core
ALLOWED = {("controllers", "payloads"), ("controllers", "firmware"), ("controllers", "testbed"),
           ("payloads", "testbed"), ("firmware", "testbed")}

pytestmark = pytest.mark.unit


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for f in (ROOT / pkg).rglob("*.py"):
            name = ".".join(f.relative_to(ROOT).with_suffix("").parts)
            mods[name.removesuffix(".__init__")] = f
    return mods


def _imports(tree: ast.AST) -> list[str]:
    out: list[str] = []

    def walk(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for other in child.orelse:
                    walk(other)
                continue
            if isinstance(child, ast.Import):
                out.extend(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                out.extend(f"{child.module}.{a.name}" for a in child.names)
            walk(child)

    walk(tree)
    return out


def _parents(mod: str) -> list[str]:
    parts = mod.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph() -> nx.DiGraph:
    mods = _modules()

    def owner(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    g = nx.DiGraph()
    for mod, path in mods.items():
        g.add_node(mod)
        running = set(_parents(mod)) | ({mod} if path.name == "__init__.py" else set())
        for target in _imports(ast.parse(path.read_text(), str(path))):
            found = owner(target)
            if found is None:
                continue
            for dep in (*_parents(found), found):
                if dep not in running:
                    g.add_edge(mod, dep)
    return g


def test_the_core_imports_no_workload() -> None:
    """The issue's own check, verbatim: grep -rE "^\\s*(from|import) (controllers|...)"."""
    pattern = re.compile(r"^\s*(from|import) (controllers|payloads|firmware)")
    hits = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}"
            for p in sorted((ROOT / "testbed").rglob("*.py"))
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.match(line)]
    assert hits == []


def test_the_core_names_no_workload_module_in_code() -> None:
    """Not by import, and not as a string either (`python -m controllers...` argv, an
    importlib name): workloads reach the core only through the registry."""
    name = re.compile(r"^(-m )?(controllers|payloads|firmware)(\.\w+)+(:[\w.]+)?$")
    hits = []
    for p in sorted((ROOT / "testbed").rglob("*.py")):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and name.match(node.value.strip()):
                hits.append(f"{p.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert hits == []


def test_no_import_cycle_between_or_inside_packages() -> None:
    g = import_graph()
    cycles = [sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1]
    assert cycles == [], [nx.find_cycle(g.subgraph(c)) for c in map(set, cycles)]
    top = {(a.split(".")[0], b.split(".")[0]) for a, b in g.edges}
    top = {e for e in top if e[0] != e[1]}
    assert top <= ALLOWED, top - ALLOWED


def test_the_cores_rooms_form_layers() -> None:
    """testbed's subpackages (scenario, net, engines, run, hil, ...) import each other in one
    direction only, so a newcomer can read the core bottom-up."""
    g = import_graph()
    rooms = nx.DiGraph()
    for a, b in g.edges:
        if a.startswith("testbed.") and b.startswith("testbed."):
            ra, rb = ".".join(a.split(".")[:2]), ".".join(b.split(".")[:2])
            if ra != rb:
                rooms.add_edge(ra, rb)
    cycles = [sorted(c) for c in nx.strongly_connected_components(rooms) if len(c) > 1]
    assert cycles == []


def test_firmware_mission_and_vehicle_no_longer_import_each_other() -> None:
    g = import_graph()
    assert g.has_edge("firmware.vehicle", "firmware.mission")
    assert not g.has_edge("firmware.mission", "firmware.vehicle")


# ---- the registry ---------------------------------------------------------------------------
def test_installed_workloads_match_pyproject_and_resolve() -> None:
    """Every entry point in pyproject.toml is installed (a stale install is caught here), and
    everything each workload registers can be imported."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "entry-points"]["sagin_hil.workloads"]
    reg = Registry.installed()
    assert [w.name for w in reg.workloads] == ["core", *sorted(declared)]
    for w in reg.workloads:
        for ref in w.refs():
            assert resolve(ref) is not None, (w.name, ref)
    assert {"fidelity", "scale", "lifecycle", "mobility", "analysis", "offload", "cpn", "llm",
            "drones", "profiles"} <= set(reg.benches())
    assert {"offload", "cpn"} <= set(reg.evals())
    assert set(reg.sdn_apps()) == {"l2-proactive", "cpn"}
    assert reg.board_agent().package == "payloads"
    bench_dir = ROOT / "testbed" / "bench"
    core_benches = {p.stem for p in bench_dir.glob("*.py")} - {"__init__"}
    assert core_benches == {b.name for b in CORE.benches}  # only the core's own live there


def test_registry_refuses_duplicates_and_says_who() -> None:
    a = Workload("a", "", benches=(Bench("x", "m:f", ""),))
    b = Workload("b", "", benches=(Bench("x", "m:g", ""),))
    with pytest.raises(RegistryError, match="bench 'x' is registered by both 'a' and 'b'"):
        Registry([a, b])
    with pytest.raises(RegistryError, match=r"cannot load 'no\.such\.module:thing'"):
        resolve("no.such.module:thing")


class Beacon(Strict):
    """A test section: a node carrying it reports its own position at run time."""

    reports_position: ClassVar[bool] = True
    period_s: float = 1.0


def _registry_with_beacon() -> Registry:
    w = Workload("beacons", "", node_sections={"beacon": f"{__name__}:Beacon"},
                 check=f"{__name__}:beacon_check")
    return Registry([CORE, w])


def beacon_check(sc: object) -> list[object]:
    from testbed.scenario import Problem

    nodes = getattr(sc, "nodes", {})
    return [Problem(f"nodes.{n}.beacon.period_s", "too fast", "use >= 0.1")
            for n, node in nodes.items()
            if (b := node.sections.get("beacon")) is not None and b.period_s < 0.1]


SMALL = {"name": "t", "duration_s": 5,
         "nodes": {"a": {"kind": "ground_station", "position": [0, 0, 0]},
                   "b": {"kind": "uav", "position": [10, 0, 50]}},
         "links": [{"name": "l", "kind": "air-to-ground", "medium": "p2p", "endpoints": ["a", "b"],
                    "delay_ms": 1, "rate_mbps": 10}]}


def test_a_registered_node_section_is_validated_like_a_core_field() -> None:
    reg = _registry_with_beacon()
    data = {**SMALL, "nodes": {**SMALL["nodes"],
                               "b": {**SMALL["nodes"]["b"], "beacon": {"period_s": 2}}}}
    sc = parse(data, "t.yaml", reg)
    node = sc.nodes["b"]
    assert isinstance(node.sections["beacon"], BaseModel) and node.reports_position
    assert not sc.nodes["a"].reports_position
    bad = {**data, "nodes": {**data["nodes"], "b": {**data["nodes"]["b"],
                                                     "beacon": {"perod_s": 2}}}}
    with pytest.raises(ScenarioError) as err:
        parse(bad, "t.yaml", reg)
    assert err.value.problems[0].path == "nodes.b.beacon.perod_s"
    assert "did you mean 'period_s'" in err.value.problems[0].fix
    fast = {**data, "nodes": {**data["nodes"], "b": {**data["nodes"]["b"],
                                                      "beacon": {"period_s": 0.01}}}}
    with pytest.raises(ScenarioError, match="too fast"):
        parse(fast, "t.yaml", reg)
    moving = {**data, "nodes": {**data["nodes"], "b": {**data["nodes"]["b"], "motion": {
        "model": "circle", "center": [0, 0, 50], "radius_m": 10, "speed_mps": 1}}}}
    with pytest.raises(ScenarioError, match="moved by its beacon"):
        parse(moving, "t.yaml", reg)
    # without the workload the field does not exist, and the error offers the known ones
    with pytest.raises(ScenarioError) as err:
        parse(data, "t.yaml", Registry([CORE]))
    assert err.value.problems[0].message == "unknown field 'beacon'"


def test_sdn_apps_come_from_the_registry() -> None:
    data = {**SMALL, "services": {"sdn": {"app": "cpm"}}}
    with pytest.raises(ScenarioError) as err:
        parse(data, "t.yaml")
    p = err.value.problems[0]
    assert p.path == "services.sdn.app" and "did you mean 'cpn'" in p.fix
    with pytest.raises(ScenarioError, match="unknown SDN app 'cpn'"):
        parse({**SMALL, "services": {"sdn": {"app": "cpn"}}}, "t.yaml", Registry([CORE]))


def test_eval_variables_become_the_evals_flags() -> None:
    from testbed.cli import eval_argv

    assert eval_argv("offload", ["SEEDS=3", "CONFIG=a b.yaml", "--", "--no-sweeps"]) == [
        "--seeds", "3", "--config", "a b.yaml", "--no-sweeps"]
    with pytest.raises(SystemExit,
                       match="eval cpn takes ALGOS, INSTANCE, PAPER_LOADS, PRESETS, SEEDS"):
        eval_argv("cpn", ["CONFIG=x"])
    with pytest.raises(SystemExit, match="no eval named 'nope'"):
        eval_argv("nope", [])
    assert isinstance(Registry.installed().evals()["offload"], Eval)
