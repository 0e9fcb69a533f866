"""Hardware-in-the-loop inventory: the physical boards (Jetson, Raspberry Pi) that stand in for
compute nodes of a scenario, read from a YAML file (see testbed/hil/inventory.example.yaml).

Kept apart from the scenario on purpose: a scenario says what network to emulate and must run
on any host; an inventory says which boards are cabled to *this* host, with their addresses
and SSH keys.  The same scenario runs emulated, or with some nodes swapped for boards, by
adding ``--inventory FILE``.

Everything here is checked before anything is created, with the same kind of errors as a
scenario's (file, field path such as ``boards[0].replaces``, what to do): first the file on
its own (pydantic), then against a scenario (`check`): the node each board replaces, the key
files, the host interfaces and tunnel types this host supports.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import subprocess
import uuid
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from testbed.devices.profiles import PROFILES
from testbed.hil.wheels import WheelError, pin
from testbed.scenario.errors import Problem, ScenarioError, field_path
from testbed.scenario.files import read_or_raise
from testbed.scenario.model import NAME_PATTERN, NodeKind, Scenario

Name = Annotated[str, Field(pattern=NAME_PATTERN)]
IFNAME_PATTERN = r"^[A-Za-z0-9_.:-]{1,15}$"  # what Linux accepts as an interface name


class InventoryError(ScenarioError):
    """An inventory that cannot be used: rendered like a scenario error (file, field, fix), and
    a ScenarioError so that the CLI's handler prints it without a traceback."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Ssh(Strict):
    user: str = Field(default="root", min_length=1,
                      description="login on the board; not root: needs passwordless sudo for "
                      "`ip` (the tunnel and its routes)")
    key: str = Field(description="private key file (unencrypted; relative to this file or ~)")
    port: int = Field(default=22, ge=1, le=65535)
    known_hosts: str | None = Field(
        default=None, description="known_hosts file holding the board's host key; default "
        "~/.ssh/known_hosts.  Host keys are always checked")
    connect_timeout_s: float = Field(default=3.0, gt=0.0, le=60.0)


class GreJoin(Strict):
    """Ethernet over GRE (gretap): one L2 segment between the replaced node and the board."""

    mode: Literal["gre"]
    local: ipaddress.IPv4Address | None = Field(
        default=None, description="this host's address facing the board; default: the source "
        "address of the host's route to the board")


class VxlanJoin(Strict):
    """The same design as gre over VXLAN (UDP), for kernels that have vxlan but not ip_gre."""

    mode: Literal["vxlan"]
    local: ipaddress.IPv4Address | None = None
    port: int = Field(default=4789, ge=1, le=65535, description="VXLAN UDP port on both ends")


class NicJoin(Strict):
    """A spare NIC of this host, cabled to the board, is moved into the replaced node's
    namespace for the run (and back afterwards)."""

    mode: Literal["nic"]
    interface: str = Field(pattern=IFNAME_PATTERN, description="this host's spare NIC")
    board_interface: str = Field(pattern=IFNAME_PATTERN,
                                 description="the board's NIC at the other end of the cable")


Join = Annotated[GreJoin | VxlanJoin | NicJoin, Field(discriminator="mode")]


class Board(Strict):
    name: Name
    address: ipaddress.IPv4Address = Field(description="management address (SSH)")
    ssh: Ssh
    profile: str = Field(description="device profile (testbed/devices/profiles.py)")
    replaces: Name = Field(description="the scenario node whose place the board takes")
    join: Join = GreJoin(mode="gre")
    cpu_hz: Annotated[float, Field(gt=0.0)] | Literal["measured"] | None = Field(
        default=None, description="the agent's --cpu-hz; default: the profile's clock; "
        "`measured`: the profile's clock times the board's speed measured in preflight over "
        "the profile's modelled speed")
    packages: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]] = Field(
        default_factory=list, description="third-party packages the agent needs on the board "
        "(e.g. numpy for inference tasks), installed at the project's pinned versions into the "
        "agent's directory when missing")
    agent_args: str = Field(
        default="", pattern=r"^[^\n\x00]*$", description="extra arguments for the agent on this "
        "board, e.g. `--llm --llm-mem-mb 128` to host edge-LLM shards (the board's own speed: "
        "no --llm-profile)")
    install: Literal["auto", "online", "offline"] = Field(
        default="auto", description="how missing packages get there: online (the board runs "
        "pip against the registry), offline (this host downloads the board's wheels and "
        "pushes them), auto (online if the board reaches the registry)")
    python: str = Field(default="python3", min_length=1, description="interpreter on the board")
    workdir: str = Field(default="~/sagin-hil", min_length=1,
                         description="directory on the board for the agent and the run files")
    max_clock_offset_ms: float = Field(
        default=50.0, gt=0.0, description="preflight fails above this clock offset to the host: "
        "the agent's task timestamps come from the board's clock")

    @field_validator("workdir")
    @classmethod
    def _workdir(cls, v: str) -> str:
        if not (v.startswith("/") or v == "~" or v.startswith("~/")):
            raise ValueError("workdir must be absolute or start with ~/ (the login's home)")
        if any(c in v for c in "\n\0"):
            raise ValueError("workdir must be one line")
        return v


class Inventory(Strict):
    boards: list[Board] = Field(min_length=1)


_JOIN_MODELS: dict[str, type[BaseModel]] = {"gre": GreJoin, "vxlan": VxlanJoin, "nic": NicJoin}


def _owner(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model that owns the last field of `loc` (for typo suggestions)."""
    model: type[BaseModel] | None = Inventory
    after_join = False
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if after_join:
            model, after_join = _JOIN_MODELS.get(str(part)), False
        elif model is Inventory and part == "boards":
            model = Board
        elif model is Board and part == "ssh":
            model = Ssh
        elif model is Board and part == "join":
            after_join = True  # pydantic names the union member next: join.nic.interface
        else:
            return None
    return None if after_join else model


def _problem(err: Any) -> Problem:
    raw = tuple(err["loc"])
    # a discriminated union puts the chosen tag into the location: join.nic.x -> join.x
    loc = tuple(p for i, p in enumerate(raw)
                if not (i > 0 and raw[i - 1] == "join" and p in _JOIN_MODELS))
    kind, msg, fix = err["type"], str(err["msg"]).removeprefix("Value error, "), ""
    if kind == "extra_forbidden":
        owner = _owner(raw)
        fields = list(owner.model_fields) if owner is not None else []
        close = difflib.get_close_matches(str(loc[-1]), fields, n=1)
        msg = f"unknown field '{loc[-1]}'"
        fix = (f"did you mean '{close[0]}'? " if close else "") + (
            f"allowed: {', '.join(fields)}" if fields else "remove it")
    elif kind == "missing":
        msg, fix = "required field is missing", f"add {loc[-1]}:"
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        fix = ("join: {mode: gre} (the default), {mode: vxlan} or {mode: nic, interface: ..., "
               "board_interface: ...}")
    elif kind == "string_pattern_mismatch":
        fix = ("names are lower-case letters, digits, '-' or '_', start with a letter, max 32"
               if loc[-1] in ("name", "replaces") else "a Linux interface name (max 15 chars)")
    return Problem(field_path(loc), msg, fix)


def _resolve_path(value: str, base: Path) -> Path:
    p = Path(os.path.expanduser(value))
    return p if p.is_absolute() else base / p


class LoadedInventory:
    """An inventory with the file it came from: relative key paths resolve against it and
    every error names it."""

    def __init__(self, inventory: Inventory, source: Path) -> None:
        self.inventory, self.source = inventory, source

    @property
    def boards(self) -> list[Board]:
        return self.inventory.boards

    def key_path(self, board: Board) -> Path:
        return _resolve_path(board.ssh.key, self.source.parent)

    def known_hosts_path(self, board: Board) -> Path | None:
        kh = board.ssh.known_hosts
        return _resolve_path(kh, self.source.parent) if kh is not None else None

    def error(self, problems: list[Problem]) -> InventoryError:
        return InventoryError(self.source, problems)


def parse(data: Any, source: Path | str) -> LoadedInventory:
    if not isinstance(data, dict):
        raise InventoryError(source, [Problem("", "the file must be a mapping with boards: [...]",
                                              "see testbed/hil/inventory.example.yaml")])
    try:
        inv = Inventory.model_validate(data)
    except ValidationError as exc:
        raise InventoryError(source, [_problem(e) for e in exc.errors()]) from None
    return LoadedInventory(inv, Path(source).resolve())


def load(path: str | Path) -> LoadedInventory:
    path = Path(path)
    data = read_or_raise(path, InventoryError,
                         missing="give the path of an inventory YAML file "
                         "(see testbed/hil/inventory.example.yaml)")
    return parse(data, path)


# ---- host capabilities (probed, never assumed) -------------------------------------------------
@cache
def tunnel_support(mode: str) -> str | None:
    """None when this kernel can create the tunnel device of `mode`, else why not.  Probed in a
    throw-away namespace (like features.has_netem), so nothing is left in the root one."""
    if os.geteuid() != 0:
        return None  # unknown without root; a run needs root anyway and checks again
    ns = f"shprobe-{uuid.uuid4().hex[:6]}"
    spec = {"gre": ["type", "gretap", "remote", "192.0.2.1", "key", "1"],
            "vxlan": ["type", "vxlan", "id", "1", "dstport", "4789", "remote", "192.0.2.1"]}[mode]
    try:
        subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"cannot create a probe namespace: {exc}"
    try:
        proc = subprocess.run(["ip", "-n", ns, "link", "add", "probe0", *spec],
                              capture_output=True, text=True, timeout=10)
        return None if proc.returncode == 0 else (proc.stderr.strip() or "ip link add failed")
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def host_interfaces() -> dict[str, list[str]]:
    """Interfaces of the root namespace -> their IPv4 addresses."""
    out = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True,
                         timeout=10).stdout
    return {link["ifname"]: [a["local"] for a in link.get("addr_info", [])
                             if a.get("family") == "inet"]
            for link in json.loads(out or "[]")}


def route_dev(address: str) -> str | None:
    """The root-namespace interface the host uses to reach `address`."""
    proc = subprocess.run(["ip", "-j", "route", "get", address], capture_output=True, text=True,
                          timeout=10)
    try:
        return json.loads(proc.stdout)[0].get("dev") if proc.returncode == 0 else None
    except (ValueError, IndexError):
        return None


def profile_cpu_hz(name: str) -> float | None:
    profile = PROFILES.get(name)
    ghz = profile.clock_ghz if profile is not None else 0.0
    return float(ghz) * 1e9 if ghz else None


def check(loaded: LoadedInventory, sc: Scenario, *, host: bool = True) -> list[Problem]:
    """Everything that can be known without contacting the boards.  `host=False` leaves out
    what depends on this host (tunnel types, interfaces), for unit tests and `check`."""
    problems: list[Problem] = []
    nodes = list(sc.nodes)
    pool = ipaddress.ip_network(sc.addressing.pool)
    seen_name: dict[str, int] = {}
    seen_addr: dict[str, int] = {}
    seen_node: dict[str, int] = {}
    seen_nic: dict[str, int] = {}
    for i, b in enumerate(loaded.boards):
        at = f"boards[{i}]"
        if b.name in seen_name:
            problems.append(Problem(f"{at}.name", f"duplicate board name '{b.name}' (also "
                                    f"boards[{seen_name[b.name]}])",
                                    "give each board its own name"))
        seen_name.setdefault(b.name, i)
        if str(b.address) in seen_addr:
            problems.append(Problem(f"{at}.address", f"{b.address} is also the address of "
                                    f"boards[{seen_addr[str(b.address)]}]",
                                    "each board has its own management address"))
        seen_addr.setdefault(str(b.address), i)
        if b.address in pool:
            problems.append(Problem(f"{at}.address", f"{b.address} is inside the scenario's "
                                    f"address pool {pool}: the board's management traffic would "
                                    "be routed into the emulated network",
                                    "change the scenario's addressing.pool or the board's "
                                    "address"))
        if b.replaces not in sc.nodes:
            close = difflib.get_close_matches(b.replaces, nodes, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            problems.append(Problem(f"{at}.replaces", f"scenario '{sc.name}' has no node "
                                    f"'{b.replaces}'",
                                    f"{hint}nodes: {', '.join(sorted(nodes)[:12])}"))
        elif sc.nodes[b.replaces].kind is NodeKind.SWITCH:
            problems.append(Problem(f"{at}.replaces", f"'{b.replaces}' is a switch: a board "
                                    "can only stand in for a host (a compute node)",
                                    "name a non-switch node"))
        elif b.replaces in seen_node:
            j = seen_node[b.replaces]
            problems.append(Problem(f"{at}.replaces", f"node '{b.replaces}' is already "
                                    f"replaced by boards[{j}] ({loaded.boards[j].name})",
                                    "one board per node: remove one, or make it replace "
                                    "another node"))
        seen_node.setdefault(b.replaces, i)
        if b.profile not in PROFILES:
            close = difflib.get_close_matches(b.profile, list(PROFILES), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            problems.append(Problem(f"{at}.profile", f"unknown device profile '{b.profile}'",
                                    f"{hint}known: {', '.join(sorted(PROFILES))}"))
        elif not isinstance(b.cpu_hz, float) and profile_cpu_hz(b.profile) is None:
            problems.append(Problem(f"{at}.cpu_hz", f"profile '{b.profile}' gives no clock for "
                                    "the agent's --cpu-hz", "set cpu_hz: (cycles/s, e.g. 1.5e9)"))
        for j, pkg in enumerate(b.packages):
            try:
                pin(pkg)
            except WheelError as exc:
                problems.append(Problem(f"{at}.packages[{j}]", str(exc)))
        key = loaded.key_path(b)
        if not key.is_file():
            problems.append(Problem(f"{at}.ssh.key", f"key file {key} does not exist",
                                    "give the private key whose .pub is in the board's "
                                    "authorized_keys (relative paths are relative to the "
                                    "inventory file); make one with ssh-keygen -t ed25519"))
        elif not os.access(key, os.R_OK):
            problems.append(Problem(f"{at}.ssh.key", f"key file {key} is not readable",
                                    "run as its owner (root) or fix its permissions"))
        kh = loaded.known_hosts_path(b)
        if kh is not None and not kh.is_file():
            problems.append(Problem(f"{at}.ssh.known_hosts", f"known_hosts file {kh} does not "
                                    "exist", f"ssh-keyscan -p {b.ssh.port} {b.address} > {kh} "
                                    "(and check the fingerprint with the board's console)"))
        if isinstance(b.join, NicJoin):
            nic = b.join.interface
            if nic in seen_nic:
                problems.append(Problem(f"{at}.join.interface", f"{nic} is also used by "
                                        f"boards[{seen_nic[nic]}]", "one NIC per board"))
            seen_nic.setdefault(nic, i)
        if host:
            problems += _host_checks(b, at)
    return problems


def _host_checks(b: Board, at: str) -> list[Problem]:
    problems: list[Problem] = []
    if isinstance(b.join, GreJoin | VxlanJoin):
        why = tunnel_support(b.join.mode)
        if why is not None:
            other = "vxlan" if b.join.mode == "gre" else "gre"
            module = "ip_gre" if b.join.mode == "gre" else "vxlan"
            problems.append(Problem(
                f"{at}.join.mode", f"this host's kernel cannot create {b.join.mode} tunnels "
                f"(ip link add type {'gretap' if b.join.mode == 'gre' else 'vxlan'}: {why})",
                f"use join: {{mode: {other}}} if this host supports it, load the module "
                f"(modprobe {module}) on a kernel that has it, or join: {{mode: nic}} with a "
                "spare NIC"))
        if b.join.local is not None and not any(
                str(b.join.local) in addrs for addrs in host_interfaces().values()):
            problems.append(Problem(f"{at}.join.local", f"{b.join.local} is not an address of "
                                    "this host", "leave local out (the route to the board "
                                    "decides) or give one of this host's addresses"))
    else:
        nics = host_interfaces()
        nic = b.join.interface
        if nic not in nics:
            close = difflib.get_close_matches(nic, list(nics), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            problems.append(Problem(f"{at}.join.interface", f"this host has no interface "
                                    f"'{nic}'", f"{hint}interfaces: {', '.join(sorted(nics))}"))
        elif nic == "lo":
            problems.append(Problem(f"{at}.join.interface", "lo cannot carry a board",
                                    "name the spare NIC cabled to the board"))
        elif route_dev(str(b.address)) == nic:
            problems.append(Problem(f"{at}.join.interface", f"{nic} carries this host's route "
                                    f"to the board's management address {b.address}: moving "
                                    "it into the emulation would cut the SSH session",
                                    "use a second NIC for the data path, or mode gre/vxlan"))
        elif nics[nic]:
            problems.append(Problem(f"{at}.join.interface", f"{nic} has addresses "
                                    f"({', '.join(nics[nic])}): it is in use on this host",
                                    f"use a spare NIC, or free it first: ip addr flush dev {nic}"))
    return problems


def require(loaded: LoadedInventory, sc: Scenario) -> None:
    """Raise InventoryError with every problem `check` finds."""
    problems = check(loaded, sc)
    if problems:
        raise loaded.error(problems)
