"""Hardware in the loop: a physical board (Jetson, Raspberry Pi) takes the place of a scenario's
compute node, and its traffic still crosses that node's emulated links.

How the board is joined (gre; vxlan is the same over UDP)::

    gs ns --eth0== emulated link (20 ms) ==eth0-- edge ns --hil0 (gretap, key K)
                                                               |  encapsulated packets leave
                                                               |  through the ROOT namespace
    host root ns: local H ---- management network ---- board: B
                                                        sagin-<tag> (gretap, key K)
                                                        E = board's emulated address

The tunnel device is created in the root namespace (where the management network is) and
then moved into the replaced node's namespace: a moved tunnel keeps its underlay where it was
created, so the node reaches the board without any route in the emulated network, and the
emulated network cannot leak into the management one.  The node's end and the board's end
share a /30 from the run's address pool (`allocate`); every other node routes that /30 like
the node's own address (`board_routes`), and on the board a policy rule sends everything
sourced from E into the tunnel, so every packet the agent sends crosses the node's links.
Management traffic (SSH) keeps the board's normal routes.  With join mode `nic`, a spare NIC
of this host cabled to the board is moved into the node's namespace instead of a tunnel.

Lifecycle (`HardwareInTheLoop`): `preflight` (before anything exists: reachability, SSH login,
remote Python, deployed agent version, clock offset, disk, tunnel support on both ends) ->
`attach` (after the network is built, before time zero: deploy the agent over SFTP when its
files changed, token file 0600, tunnel on both ends, agent started and checked through the
emulated path) -> `detach` (agent stopped, logs fetched, tunnel and token removed: the board
is left as it was).  Every object is recorded in a per-run record under
/run/sagin-hil/boards/ *before* it is created, so `teardown_boards` removes it after a crash
or SIGKILL too (`make clean`).
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import hashlib
import ipaddress
import itertools
import json
import os
import shlex
import subprocess
import sys
import time
import warnings
from collections.abc import Awaitable, Iterable
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

with warnings.catch_warnings():  # asyncssh imports cryptography's deprecated DSA on load
    warnings.filterwarnings("ignore", message="DSA is deprecated")
    import asyncssh

from testbed.devices.profiles import lookup as lookup_profile
from testbed.hil import wheels
from testbed.hil.inventory import (
    Board,
    GreJoin,
    LoadedInventory,
    NicJoin,
    VxlanJoin,
    profile_cpu_hz,
)
from testbed.hil.inventory import check as check_inventory
from testbed.hil.inventory import load as load_inventory
from testbed.hil.monitor import BoardMonitor, Watched
from testbed.lifecycle.ledger import BOARD_RECORDS, LEDGER_DIR, Ledger
from testbed.lifecycle.sh import in_netns
from testbed.net.plan import NetworkPlan, Route, node_addresses
from testbed.scenario.errors import Problem
from testbed.scenario.layout import blocks_needed
from testbed.scenario.model import Scenario
from testbed.workloads import BoardAgent, Registry

if TYPE_CHECKING:
    from rich.console import Console

    from testbed.net.network import Network

AGENT_PORT = 7700
BUNDLE_DIR = "sagin-hil-agent"
RECORDS = BOARD_RECORDS
REPO = Path(__file__).resolve().parents[2]
BOARD_PREFIX = 30
OVERHEAD = {"gre": 42, "vxlan": 50}  # outer IPv4 + GRE with key / UDP+VXLAN + inner Ethernet
RULE_PRIORITY = 1000
MIN_FREE_BYTES = 16 << 20
MIN_FREE_MEMORY = 64 << 20  # the agent's Python and a task body in flight
SPEED_S = 1.0  # how long the speed check runs on the board (and on this host)
INNER_NAME = "hil0"  # the board's interface inside the replaced node's namespace
AGENT_START_TIMEOUT_S = 15.0
CLOCK_ROUNDS = 8


class BoardError(RuntimeError):
    """A board problem in words for a person: what failed, on which board, what to do."""


def board_agent() -> BoardAgent:
    """What runs on a board: the agent a workload registers (testbed.workloads.BoardAgent)."""
    return Registry.installed().board_agent()


# ---- the agent bundle --------------------------------------------------------------------------
@dataclass(frozen=True)
class Bundle:
    files: dict[str, bytes]  # "payloads/agent.py" -> content
    version: str  # 12 hex digits over every file: what preflight compares with the board's
    required: list[str]  # third-party modules imported when the agent starts
    optional: dict[str, list[str]]  # third-party module -> bundle files importing it lazily

    def digests(self) -> dict[str, str]:
        return {p: hashlib.sha256(b).hexdigest() for p, b in self.files.items()}


def _imports(tree: ast.Module) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import of a module, with whether it runs at import time (module level, not in a
    function, not under `if TYPE_CHECKING` or `try: ... except ImportError`)."""
    out: list[tuple[ast.Import | ast.ImportFrom, bool]] = []

    def deferred(node: ast.AST) -> bool:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            return True
        if isinstance(node, ast.If):
            return "TYPE_CHECKING" in ast.unparse(node.test)
        return isinstance(node, ast.Try) and any(
            h.type is not None and "ImportError" in ast.unparse(h.type) for h in node.handlers)

    def walk(node: ast.AST, eager: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                out.append((child, eager))
            else:
                walk(child, eager and not deferred(child))

    walk(tree, True)
    return out


def _module_file(mod: str) -> Path | None:
    """The source file of a first-party module (a package of this repository), or None."""
    base = REPO.joinpath(*mod.split("."))
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    init = base / "__init__.py"
    return init if init.is_file() else None


def _parents(mod: str) -> list[str]:
    parts = mod.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def agent_bundle(spec: BoardAgent | None = None) -> Bundle:
    """The files the board's agent needs (the registered board agent: the payload agent),
    found by following its imports through this repository's packages (lazy ones too, so an
    optional task type still works on the board; the core modules it uses, such as the device
    profiles, come along), and the third-party modules they import.  Computed from the source
    each time: a new payload module is deployed without anyone updating a list."""
    spec = spec or board_agent()
    stdlib = set(sys.stdlib_module_names)
    entry = f"{spec.package}.{spec.entry}"
    todo: list[tuple[str, bool]] = [(m, True) for m in (*_parents(entry), entry)]
    eager_mods: set[str] = set()
    seen: dict[str, Path] = {}
    required: set[str] = set()
    optional: dict[str, set[str]] = {}
    while todo:
        mod, eager = todo.pop()
        if mod in seen and (not eager or mod in eager_mods):
            continue
        path = _module_file(mod)
        if path is None:
            continue
        seen[mod] = path
        if eager:
            eager_mods.add(mod)
        rel = str(path.relative_to(REPO))
        for node, at_import in _imports(ast.parse(path.read_text(), str(path))):
            now = eager and at_import
            if isinstance(node, ast.ImportFrom) and node.level:  # from . import x / from .x
                pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
                for _ in range(node.level - 1):
                    pkg = pkg.rpartition(".")[0]
                base = f"{pkg}.{node.module}" if node.module else pkg
                names = [base] + ([f"{base}.{a.name}" for a in node.names]
                                  if not node.module else [])
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                base = node.module or ""
                names = [base, *(f"{base}.{a.name}" for a in node.names)]
            for name in names:
                top = name.partition(".")[0]
                if _module_file(top) is not None:  # first party: bundle it and its parents
                    todo += [(m, now) for m in (*_parents(name), name)]
                elif top and top not in stdlib:
                    if now:
                        required.add(top)
                    else:
                        optional.setdefault(top, set()).add(rel)
    files = {str(p.relative_to(REPO)): p.read_bytes() for _, p in sorted(seen.items())}
    h = hashlib.sha256()
    for p, b in sorted(files.items()):
        h.update(p.encode() + b"\0" + hashlib.sha256(b).digest())
    opt = {m: sorted(f) for m, f in optional.items() if m not in required}
    return Bundle(files, h.hexdigest()[:12], sorted(required), opt)


# ---- addresses and routes ----------------------------------------------------------------------
@dataclass(frozen=True)
class BoardAddress:
    subnet: str  # e.g. 198.18.3.0/30
    node_ip: str  # the replaced node's end of the tunnel
    board_ip: str  # the board's emulated address: the agent listens here
    prefixlen: int = BOARD_PREFIX


def allocate(pool_cidr: str, n_segments: int, hosts: list[str],
             boards: list[Board]) -> dict[str, BoardAddress]:
    """One /30 per board from the /24 right after the segments' /24s (testbed.net.plan takes
    x.x.0.0/24 unused, then one /24 per segment, in order, or fewer with
    addressing.p2p_prefix: n_segments is the number of /24s they take), so a board's address
    reads as part of the run's network and never collides with a segment or a node address."""
    pool = ipaddress.ip_network(pool_cidr)
    k = 1 + n_segments
    block = next(itertools.islice(pool.subnets(new_prefix=24), k, None), None)
    top = {ipaddress.ip_address(a) for a in node_addresses(pool, hosts).values()}
    if block is None or any(a in block for a in top):
        raise ValueError(f"the address pool {pool} has no /24 left for the boards after "
                         f"{n_segments} segments and {len(hosts)} node addresses: give the "
                         "scenario a larger addressing.pool")
    out: dict[str, BoardAddress] = {}
    for board, net in zip(boards, block.subnets(new_prefix=BOARD_PREFIX), strict=False):
        node_ip, board_ip = list(net.hosts())[:2]
        out[board.name] = BoardAddress(str(net), str(node_ip), str(board_ip))
    if len(out) < len(boards):
        raise ValueError(f"at most {len(out)} boards fit in one /24")
    return out


def allocate_for(sc: Scenario, boards: list[Board]) -> dict[str, BoardAddress]:
    """For a scenario: pass the scenario the plan is built from (a run's world.sc)."""
    # the /24s the segments take: one each by default, fewer with addressing.p2p_prefix
    return allocate(sc.addressing.pool, blocks_needed(sc)[0] - 1, sc.hosts(), boards)


def board_routes(plan: NetworkPlan, tables: dict[str, list[Route]],
                 attached: dict[str, list[str]]) -> dict[str, list[Route]]:
    """`tables` with, on every node but the owner, a route to each subnet attached to an owner
    node through the same next hop as that node's route to the owner's node address: what
    compute_routes gives when the subnet is treated as a second address of the owner.  A node
    whose table already has the route (the plan carries `attached`) keeps its very table."""
    out: dict[str, list[Route]] = {}
    for node, table in tables.items():
        have = {r.subnet: r for r in table}
        extra: list[Route] = []
        for owner, subnets in attached.items():
            to_owner = have.get(f"{plan.primary_ip[owner]}/32") if owner != node else None
            if to_owner is not None:
                extra += [Route(s, to_owner.via, to_owner.dev, to_owner.src)
                          for s in subnets if s not in have]
        out[node] = [*table, *extra] if extra else table
    return out


# ---- SSH ---------------------------------------------------------------------------------------
@dataclass
class Target:
    """How to reach one board; stored in the run's record so a later `make clean` can too."""

    name: str
    address: str
    port: int
    user: str
    key: str
    known_hosts: str | None
    python: str
    connect_timeout_s: float

    @classmethod
    def of(cls, loaded: LoadedInventory, b: Board) -> Target:
        kh = loaded.known_hosts_path(b)
        return cls(b.name, str(b.address), b.ssh.port, b.ssh.user, str(loaded.key_path(b)),
                   str(kh) if kh else None, b.python, b.ssh.connect_timeout_s)

    @property
    def where(self) -> str:
        return f"{self.user}@{self.address}:{self.port}"


async def probe_tcp(t: Target) -> tuple[str, float]:
    """(SSH banner, connect ms).  A bare TCP connect first, so that an unreachable board is
    told apart from a refused login in the error."""
    t0 = time.perf_counter()
    connected = False
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(t.connect_timeout_s):
            reader, writer = await asyncio.open_connection(t.address, t.port)
            connected = True
            banner = await reader.readline()
    except TimeoutError:
        if connected:
            raise BoardError(f"board {t.name}: {t.address}:{t.port} accepted a connection but "
                             f"sent no SSH banner within {t.connect_timeout_s:g} s: is ssh.port "
                             "the SSH server's port?") from None
        raise BoardError(f"board {t.name}: no answer from {t.address}:{t.port} within "
                         f"{t.connect_timeout_s:g} s: check that the board is powered and on the "
                         f"network and that its address is right (ping {t.address}; "
                         f"ip route get {t.address})") from None
    except ConnectionRefusedError:
        raise BoardError(f"board {t.name}: {t.address}:{t.port} refused the connection: no SSH "
                         f"server listens on port {t.port}: start it on the board (systemctl "
                         "enable --now ssh) or fix ssh.port") from None
    except OSError as exc:
        raise BoardError(f"board {t.name}: cannot reach {t.address}:{t.port}: "
                         f"{exc.strerror or exc}: check this host's route to the board "
                         f"(ip route get {t.address})") from None
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    ms = (time.perf_counter() - t0) * 1e3
    if not banner.startswith(b"SSH-"):
        raise BoardError(f"board {t.name}: {t.address}:{t.port} answers, but not as an SSH "
                         f"server (it sent {banner[:40]!r}): fix ssh.port")
    return banner.decode(errors="replace").strip(), ms


async def connect(t: Target) -> asyncssh.SSHClientConnection:
    """Key-only login with host key checking; no ssh-agent and no ~/.ssh/config, so what the
    inventory says is exactly what is used."""
    try:
        return await asyncssh.connect(
            t.address, port=t.port, username=t.user, client_keys=[t.key],
            known_hosts=t.known_hosts if t.known_hosts else (), agent_path=None, config=None,
            preferred_auth="publickey", connect_timeout=t.connect_timeout_s,
            login_timeout=max(10.0, 3 * t.connect_timeout_s))
    except asyncssh.PermissionDenied:
        raise BoardError(f"board {t.name}: SSH login as {t.user} with key {t.key} was refused "
                         f"by {t.address}: put {t.key}.pub into ~{t.user}/.ssh/authorized_keys "
                         f"on the board (ssh-copy-id -i {t.key}.pub -p {t.port} "
                         f"{t.user}@{t.address}), or fix ssh.user / ssh.key") from None
    except asyncssh.HostKeyNotVerifiable as exc:
        kh = t.known_hosts or "~/.ssh/known_hosts"
        raise BoardError(f"board {t.name}: the host key of {t.address} is not in {kh} "
                         f"({exc.reason}): after checking its fingerprint on the board's console "
                         f"(ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), add it: "
                         f"ssh-keyscan -p {t.port} {t.address} >> {kh}") from None
    except asyncssh.KeyImportError as exc:
        raise BoardError(f"board {t.name}: cannot use key {t.key}: {exc} (an encrypted key "
                         "cannot be used unattended: make a dedicated one with ssh-keygen -t "
                         "ed25519 -N '')") from None
    except (asyncssh.Error, OSError) as exc:
        raise BoardError(f"board {t.name}: SSH to {t.where} failed: {exc}") from None


class Session:
    """One SSH connection to a board with the run's conventions: every command's failure is a
    BoardError naming the board and the command, root commands go through `sudo -n` when
    the login is not root."""

    def __init__(self, conn: asyncssh.SSHClientConnection, t: Target, sudo: bool = False,
                 ip: str = "ip") -> None:
        self.conn, self.t, self.sudo, self.ip_path = conn, t, sudo, ip

    @property
    def ip(self) -> str:
        """The `ip` command as root on the board."""
        return ("sudo -n " if self.sudo else "") + shlex.quote(self.ip_path)

    async def sh(self, script: str, *, check: bool = True, input: str | None = None,
                 timeout: float = 30.0, what: str = "") -> asyncssh.SSHCompletedProcess:
        try:
            res = await self.conn.run(f"sh -c {shlex.quote(script)}", input=input, check=False,
                                      timeout=timeout)
        except asyncssh.TimeoutError:
            raise BoardError(f"board {self.t.name}: {what or 'a command'} did not finish within "
                             f"{timeout:g} s") from None
        except (asyncssh.Error, OSError) as exc:
            raise BoardError(f"board {self.t.name}: SSH session failed during "
                             f"{what or 'a command'}: {exc}") from None
        if check and res.exit_status != 0:
            err = (str(res.stderr or "") or str(res.stdout or "")).strip()
            raise BoardError(f"board {self.t.name}: {what or script.splitlines()[0]} failed "
                             f"(exit {res.exit_status}): {err or '(no output)'}")
        return res

    async def py(self, code: str, *args: str, timeout: float = 30.0, what: str = "") -> Any:
        """Run `code` with the board's Python (fed on stdin: nothing long on a command line)
        and return the JSON it prints."""
        argv = " ".join(shlex.quote(a) for a in args)
        res = await self.sh(f"{shlex.quote(self.t.python)} - {argv}", input=code,
                            timeout=timeout, what=what)
        try:
            return json.loads(str(res.stdout))
        except ValueError:
            raise BoardError(f"board {self.t.name}: {what}: unexpected output "
                             f"{str(res.stdout)[:200]!r}") from None


# Runs on the board's Python, whatever its version: no f-strings, nothing past 3.3.
_INFO_PY = r"""
import json, os, platform, shutil, socket, sys
wd = os.path.expanduser(sys.argv[1])
port = int(sys.argv[2])
sys.path.insert(0, os.path.join(wd, "sagin-hil-agent", "site"))
p = wd
while not os.path.isdir(p):
    p = os.path.dirname(p)
man = None
try:
    with open(os.path.join(wd, "sagin-hil-agent", "MANIFEST.json")) as f:
        man = json.load(f)
except (OSError, ValueError):
    pass
mods = {}
for m in sys.argv[3:]:
    try:
        import importlib.util
        mods[m] = importlib.util.find_spec(m) is not None
    except Exception:
        mods[m] = False
mtus = {}
for d in os.listdir("/sys/class/net"):
    try:
        with open("/sys/class/net/%s/mtu" % d) as f:
            mtus[d] = int(f.read())
    except (OSError, ValueError):
        pass
runs = []
rd = os.path.join(wd, "sagin-hil-agent", "run")
if os.path.isdir(rd):
    runs = sorted(os.listdir(rd))
s = socket.socket()
try:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    port_free = True
except OSError:
    port_free = False
finally:
    s.close()
path = os.environ.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"
mem = {}
try:
    with open("/proc/meminfo") as f:
        for line in f:
            k, v = line.split(":", 1)
            mem[k] = int(v.split()[0]) * 1024
except (OSError, ValueError):
    pass
try:
    import importlib.util
    has_pip = importlib.util.find_spec("pip") is not None
except Exception:
    has_pip = False
print(json.dumps({
    "mem_total": mem.get("MemTotal"), "mem_available": mem.get("MemAvailable"),
    "glibc": platform.libc_ver()[1], "pip": has_pip, "cpus": os.cpu_count(),
    "version": list(sys.version_info[:3]), "executable": sys.executable, "uid": os.getuid(),
    "workdir": wd, "existing": p, "writable": os.access(p, os.W_OK),
    "free": shutil.disk_usage(p).free, "manifest": man, "modules": mods, "mtus": mtus,
    "ip": shutil.which("ip", path=path), "machine": os.uname()[4], "hostname": os.uname()[1],
    "runs": runs, "port_free": port_free}))
"""

_CLOCK_PY = ("import sys, time\nwhile True:\n    line = sys.stdin.readline()\n"
             "    if not line:\n        break\n"
             "    sys.stdout.write(repr(time.time()) + '\\n')\n    sys.stdout.flush()\n")

# The agent's real-mode kernel (payloads.agent: SHA-256 over 4 KiB blocks), timed for ~1 s:
# the same code on the board and on this host gives the board's speed relative to the host.
_SPEED_PY = r"""
import hashlib, json, sys, time
block = bytes(range(256)) * 16
h = hashlib.sha256()
for _ in range(64):
    h.update(block)
n, t0 = 0, time.perf_counter()
while True:
    for _ in range(64):
        h.update(block)
    n += 64
    dt = time.perf_counter() - t0
    if dt >= float(sys.argv[1]):
        break
print(json.dumps({"iters_per_s": n / dt}))
"""

_REGISTRY_PY = r"""
import json, socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
    print(json.dumps({"ok": True}))
except OSError as exc:
    print(json.dumps({"ok": False, "error": str(exc)}))
"""

_HASH_PY = r"""
import hashlib, json, os, sys
out = {}
for rel in sys.argv[2:]:
    try:
        with open(os.path.join(sys.argv[1], rel), "rb") as f:
            out[rel] = hashlib.sha256(f.read()).hexdigest()
    except OSError:
        out[rel] = None
print(json.dumps(out))
"""


# ---- preflight ---------------------------------------------------------------------------------
@dataclass
class PreflightReport:
    board: str
    index: int
    where: str
    replaces: str
    mode: str
    lines: list[tuple[str, str]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0
    # what attach needs, found here
    python_version: str = ""
    clock_offset_ms: float | None = None
    clock_rtt_ms: float | None = None
    agent_version: str | None = None
    uid: int | None = None
    sudo: bool = False
    ip: str = "ip"
    workdir: str = ""
    local: str | None = None  # this host's underlay address
    mtu: int | None = None  # of the tunnel, both ends
    free_bytes: int | None = None
    machine: str = ""
    glibc: str = ""
    memory: dict[str, int | None] = field(default_factory=dict)
    measured: dict[str, Any] = field(default_factory=dict)  # speed vs host and vs profile
    missing: list[str] = field(default_factory=list)  # pinned requirements to install
    install: str | None = None  # online | offline, when something is missing

    @property
    def ok(self) -> bool:
        return not self.problems

    def fail(self, path: str, message: str, fix: str = "") -> None:
        self.problems.append(Problem(f"boards[{self.index}]{path}", message, fix))
        self.lines.append(("FAILED", message))

    def render(self) -> str:
        head = (f"board {self.board} ({self.where}) replaces {self.replaces} via {self.mode}: "
                f"{'ok' if self.ok else 'FAILED'} in {self.seconds:.2f} s")
        return "\n".join([head, *(f"  {k:<13} {v}" for k, v in self.lines)])


def _host_route(address: str) -> tuple[str | None, str | None, int | None]:
    """(source address, device, device MTU) of this host's route to `address`."""
    proc = subprocess.run(["ip", "-j", "route", "get", address], capture_output=True, text=True,
                          timeout=10)
    try:
        r = json.loads(proc.stdout)[0]
    except (ValueError, IndexError):
        return None, None, None
    dev = r.get("dev")
    try:
        mtu = int(Path(f"/sys/class/net/{dev}/mtu").read_text())
    except (OSError, ValueError):
        mtu = None
    return r.get("prefsrc"), dev, mtu


def _board_dev(tag: str) -> str:
    return f"sagin-{tag}"


async def preflight_board(loaded: LoadedInventory, index: int, bundle: Bundle) -> PreflightReport:
    """Everything a run needs from one board, read-only: a failure here leaves nothing on the
    board and nothing on the host."""
    b = loaded.boards[index]
    t = Target.of(loaded, b)
    rep = PreflightReport(b.name, index, t.where, b.replaces, b.join.mode)
    t0 = time.perf_counter()
    try:
        await _preflight(loaded, b, t, rep, bundle)
    except BoardError as exc:
        rep.fail("", str(exc))
    rep.seconds = time.perf_counter() - t0
    return rep


async def _preflight(loaded: LoadedInventory, b: Board, t: Target, rep: PreflightReport,
                     bundle: Bundle) -> None:
    try:
        banner, ms = await probe_tcp(t)
    except BoardError as exc:
        rep.fail(".address", str(exc))
        return
    rep.lines.append(("reachable", f"yes, {banner} ({ms:.1f} ms)"))
    try:
        conn = await connect(t)
    except BoardError as exc:
        rep.fail(".ssh", str(exc))
        return
    async with conn:
        s = Session(conn, t)
        mods = [*bundle.required, *bundle.optional,
                *(wheels.import_name(p) for p in b.packages)]
        min_python = board_agent().min_python
        try:
            info = await s.py(_INFO_PY, b.workdir, str(AGENT_PORT), *mods, what="board info")
        except BoardError as exc:
            if "exit 127" in str(exc):
                rep.fail(".python", f"board {b.name}: '{b.python}' is not a command there",
                         f"install Python >= {'.'.join(map(str, min_python))} on the board, or "
                         "set python: to its path")
            else:
                rep.fail(".python", str(exc))
            return
        rep.uid, rep.workdir = info["uid"], info["workdir"]
        rep.lines.append(("login", f"ok as {t.user} (uid {info['uid']}) with key {t.key}; "
                          f"{info['hostname']} ({info['machine']})"))
        version = tuple(info["version"])
        rep.python_version = ".".join(map(str, version))
        need = ".".join(map(str, min_python))
        if version < min_python:
            rep.fail(".python", f"{b.python} on the board is Python {rep.python_version}; the "
                     f"agent needs >= {need}", f"install Python {need} or newer on the board "
                     "and set python: to it (e.g. /usr/bin/python3.10)")
        else:
            rep.lines.append(("python", f"{b.python} = {info['executable']} "
                              f"{rep.python_version} (>= {need} ok)"))
        missing = [m for m in bundle.required if not info["modules"].get(m)]
        if missing:
            rep.fail(".python", f"the agent imports {', '.join(missing)}, missing on the board",
                     f"pip install {' '.join(missing)} for {b.python} on the board")
        rep.machine, rep.glibc = info["machine"], info.get("glibc") or ""
        rep.memory = {"total": info.get("mem_total"), "available": info.get("mem_available"),
                      "cpus": info.get("cpus")}
        avail = info.get("mem_available")
        if avail is not None and avail < MIN_FREE_MEMORY:
            rep.fail("", f"only {avail / 2**20:.0f} MiB of memory available on the board "
                     f"(of {(info.get('mem_total') or 0) / 2**20:.0f} MiB)",
                     "stop what uses it on the board, or give the board more memory")
        elif avail is not None:
            rep.lines.append(("memory", f"{avail / 2**20:.0f} MiB available of "
                              f"{(info.get('mem_total') or 0) / 2**20:.0f} MiB, "
                              f"{info.get('cpus')} CPUs"))
        await _packages(s, b, rep, info)
        coming = {wheels.import_name(r.split("==")[0]) for r in rep.missing}
        absent = [m for m in bundle.optional if not info["modules"].get(m) and m not in coming]
        if absent:
            uses = sorted({f for m in absent for f in bundle.optional[m]})
            rep.lines.append(("optional", f"not on the board: {', '.join(absent)} (used lazily "
                              f"by {', '.join(uses)}: those task kinds will be refused)"))
        man = info.get("manifest") or {}
        rep.agent_version = man.get("version")
        state = ("not deployed yet" if rep.agent_version is None else
                 f"version {rep.agent_version} (current)" if rep.agent_version == bundle.version
                 else f"version {rep.agent_version}, will update to {bundle.version}")
        rep.lines.append(("agent", f"{state} in {info['workdir']}/{BUNDLE_DIR}"))
        if info["runs"]:
            rep.lines.append(("note", f"files of earlier runs on the board: "
                              f"{', '.join(info['runs'][:4])} (make clean removes its own)"))
        if not info["port_free"]:
            rep.fail("", f"TCP port {AGENT_PORT} is in use on the board (another agent?)",
                     f"stop it: on the board, ss -ltnp | grep {AGENT_PORT}")
        await _clock(s, b, rep)
        await _speed(s, b, rep)
        rep.free_bytes = info["free"]
        free = f"{info['free'] / 2**30:.1f} GiB free in {info['existing']}"
        if not info["writable"]:
            rep.fail(".workdir", f"{info['existing']} is not writable by {t.user}: the workdir "
                     f"{info['workdir']} cannot be created", "set workdir: to a directory the "
                     "login may write (e.g. ~/sagin-hil)")
        elif info["free"] < MIN_FREE_BYTES:
            rep.fail(".workdir", f"only {free}", "free some space or move workdir:")
        else:
            rep.lines.append(("disk", free))
        if not info.get("ip"):
            rep.fail("", "the board has no `ip` command", "install iproute2 on the board")
            return
        rep.ip = info["ip"]
        if info["uid"] != 0:
            res = await s.sh(f"sudo -n {shlex.quote(rep.ip)} -V", check=False, what="sudo check")
            if res.exit_status != 0:
                rep.fail(".ssh.user", f"{t.user} is not root and cannot run ip through sudo "
                         "without a password: the tunnel and its routes need root on the board",
                         f"log in as root, or allow it: echo '{t.user} ALL=(root) NOPASSWD: "
                         f"{rep.ip}' > /etc/sudoers.d/sagin-hil")
                return
            rep.sudo = True
        s.sudo, s.ip_path = rep.sudo, rep.ip
        leftover = sorted(d for d in info["mtus"] if d.startswith("sagin-"))
        if leftover:
            rep.fail("", f"the board still has tunnel {', '.join(leftover)} of an earlier run",
                     "run make clean on the host that ran it, or on the board: ip link del "
                     + leftover[0])
        await _join_checks(s, b, rep, info)


async def _packages(s: Session, b: Board, rep: PreflightReport, info: dict[str, Any]) -> None:
    """Which of the board's `packages` are missing, and whether they can get there: pip on the
    board, and for online installs its route to the registry."""
    if not b.packages:
        return
    missing = [p for p in b.packages if not info["modules"].get(wheels.import_name(p))]
    have = [p for p in b.packages if p not in missing]
    if not missing:
        rep.lines.append(("packages", f"{', '.join(have)}: present"))
        return
    rep.missing = [wheels.pin(p) for p in missing]
    if not info.get("pip"):
        rep.fail(".packages", f"{', '.join(missing)} missing on the board, and its Python has "
                 "no pip to install them", "install pip on the board (apt install python3-pip), "
                 "or install the packages there yourself")
        return
    mode = b.install
    if mode != "offline":
        host, port = wheels.REGISTRY
        r = await s.py(_REGISTRY_PY, host, str(port), "5", what="registry check")
        if not r["ok"] and mode == "online":
            rep.fail(".install", f"{', '.join(missing)} missing on the board, and the board "
                     f"cannot reach the package registry {host}:{port} ({r['error']}): no "
                     "route out", "set install: offline (this host downloads the board's "
                     "wheels and pushes them), or give the board a route to the registry")
            return
        mode = "online" if r["ok"] else "offline"
    if mode == "offline":
        try:
            wheels.platforms(rep.machine, rep.glibc)
        except wheels.WheelError as exc:
            rep.fail(".install", str(exc))
            return
    rep.install = mode
    rep.lines.append(("packages", f"to install {mode}: {' '.join(rep.missing)}"
                      + (f" ({', '.join(have)} present)" if have else "")))


@cache
def host_kernel_speed() -> float:
    """This host's iterations/s of the speed check (its own Python, one process)."""
    proc = subprocess.run([sys.executable, "-c", _SPEED_PY, str(SPEED_S)], capture_output=True,
                          text=True, timeout=60)
    return float(json.loads(proc.stdout)["iters_per_s"])


async def _speed(s: Session, b: Board, rep: PreflightReport) -> None:
    """The board's single-core speed, measured with the agent's real-mode kernel and compared
    with this host and with the board's device profile (whose speed is a model)."""
    r = await s.py(_SPEED_PY, str(SPEED_S), timeout=60, what="speed check")
    host = await asyncio.to_thread(host_kernel_speed)  # 1 s: not on the boards' shared loop
    vs_host = r["iters_per_s"] / host
    prof = lookup_profile(b.profile)
    # this host's core is taken as the profiles' reference core (an assumption, stated)
    vs_profile = vs_host / prof.cpu_speed
    rep.measured = {"kernel_iters_per_s": round(r["iters_per_s"], 1),
                    "host_kernel_iters_per_s": round(host, 1), "speed_vs_host": round(vs_host, 4),
                    "profile_cpu_speed": prof.cpu_speed, "speed_vs_profile": round(vs_profile, 4),
                    "assumes": "this host's core = the profiles' reference core"}
    rep.lines.append(("speed", f"{vs_host:.3f} x this host per core ({r['iters_per_s']:.0f} "
                      f"kernel it/s); {vs_profile:.2f} x profile {b.profile}'s modelled speed"))


async def _clock(s: Session, b: Board, rep: PreflightReport) -> None:
    """Offset of the board's clock to this host's, from the round trip with the smallest delay
    over one SSH channel (a process that answers each line with its time.time())."""
    try:
        proc = await s.conn.create_process(f"{shlex.quote(s.t.python)} -u -c "
                                           f"{shlex.quote(_CLOCK_PY)}")
    except (asyncssh.Error, OSError) as exc:
        rep.fail("", f"clock check failed: {exc}")
        return
    best: tuple[float, float] | None = None
    try:
        async with asyncio.timeout(10):
            for _ in range(CLOCK_ROUNDS):
                t0 = time.time()
                proc.stdin.write("\n")
                line = await proc.stdout.readline()
                t1 = time.time()
                sample = (t1 - t0, float(line) - (t0 + t1) / 2)
                best = sample if best is None or sample[0] < best[0] else best
    except (TimeoutError, ValueError) as exc:
        rep.fail("", f"clock check failed: {exc or 'no answer within 10 s'}")
        return
    finally:
        proc.stdin.write_eof()
        proc.close()
    assert best is not None
    rep.clock_rtt_ms, rep.clock_offset_ms = best[0] * 1e3, best[1] * 1e3
    text = (f"{rep.clock_offset_ms:+.2f} ms (board - host; round trip {rep.clock_rtt_ms:.2f} ms, "
            f"best of {CLOCK_ROUNDS})")
    if abs(rep.clock_offset_ms) > b.max_clock_offset_ms:
        rep.fail(".max_clock_offset_ms", f"the board's clock is {text}: its task timestamps "
                 "would not line up with the host's", "synchronise it (chrony or "
                 "systemd-timesyncd against the host or a common NTP server), or raise "
                 "max_clock_offset_ms")
    else:
        rep.lines.append(("clock offset", text))


async def _join_checks(s: Session, b: Board, rep: PreflightReport,
                       info: dict[str, Any]) -> None:
    if isinstance(b.join, NicJoin):
        res = await s.sh(f"{s.ip} -j addr show dev {shlex.quote(b.join.board_interface)}",
                         check=False, what="board interface check")
        if res.exit_status != 0:
            rep.fail(".join.board_interface", f"the board has no interface "
                     f"'{b.join.board_interface}'", "name the board's NIC cabled to the host's "
                     f"{b.join.interface} (ip link on the board)")
            return
        addrs = [a.get("local") for link in json.loads(str(res.stdout) or "[]")
                 for a in link.get("addr_info", [])]
        if str(b.address) in addrs:
            rep.fail(".join.board_interface", f"{b.join.board_interface} carries the board's "
                     f"management address {b.address}: the run would take it over",
                     "use the board's second NIC")
            return
        rep.lines.append(("join", f"nic: host {b.join.interface} <-> board "
                          f"{b.join.board_interface}"))
        return
    assert isinstance(b.join, GreJoin | VxlanJoin)
    local, _, host_mtu = _host_route(str(b.address))
    local = str(b.join.local) if b.join.local is not None else local
    if local is None:
        rep.fail(".address", f"this host has no route to {b.address}",
                 "connect the board's network to this host")
        return
    rep.local = local
    probe = f"sgprobe{os.urandom(2).hex()}"
    kind = (f"gretap remote {local} key 1" if b.join.mode == "gre"
            else f"vxlan id 1 dstport {b.join.port} remote {local}")
    script = (f"{s.ip} -j route get {local}; {s.ip} link add {probe} type {kind} && "
              f"{s.ip} link del {probe}")
    res = await s.sh(script, check=False, what="tunnel check")
    if res.exit_status != 0:
        err = str(res.stderr).strip()
        module = "ip_gre" if b.join.mode == "gre" else "vxlan"
        rep.fail(".join.mode", f"the board cannot create a {b.join.mode} tunnel: {err}",
                 f"load the module on the board (modprobe {module}), or use another join mode")
        return
    try:
        dev = json.loads(str(res.stdout).splitlines()[0])[0]["dev"]
        board_mtu = int(info["mtus"][dev])
    except (ValueError, IndexError, KeyError):
        board_mtu = 1500
    rep.mtu = min(host_mtu or 1500, board_mtu) - OVERHEAD[b.join.mode]
    rep.lines.append(("join", f"{b.join.mode}: this host {local} <-> board {b.address}, "
                      f"tunnel MTU {rep.mtu}; supported on both ends"))


# ---- the run record ----------------------------------------------------------------------------
@dataclass
class BoardRecord:
    """Everything one board's part of a run creates, written before it is created."""

    target: Target
    mode: str
    replaces: str
    netns: str
    run_id: str
    ip: str
    sudo: bool
    host_dev: str | None  # tunnel: name in the root namespace at creation (s<tag>g<i>)
    nic: str | None  # nic mode: the host NIC's own name, restored at the end
    board_dev: str  # tunnel on the board (sagin-<tag>) or its NIC
    board_dev_created: bool
    board_dev_was_up: bool
    board_ip: str
    node_ip: str
    prefixlen: int
    pool: str
    table: int
    remote_dir: str  # <workdir>/sagin-hil-agent
    run_dir: str  # <remote_dir>/run/<run_id>
    results: str  # where the board's logs are fetched to
    agent_args: str = ""  # the inventory's extra agent arguments


def _records_path(run_id: str) -> Path:
    return RECORDS / f"{run_id}.json"


def _save_records(run_id: str, records: list[BoardRecord]) -> None:
    RECORDS.mkdir(parents=True, exist_ok=True)
    path = _records_path(run_id)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([asdict(r) for r in records], indent=1))
    tmp.replace(path)


def _load_records(path: Path) -> list[BoardRecord]:
    out = []
    for d in json.loads(path.read_text()):
        d["target"] = Target(**d["target"])
        out.append(BoardRecord(**d))
    return out


# ---- attach ------------------------------------------------------------------------------------
def _host(argv: list[str], what: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise BoardError(f"{what}: `{' '.join(argv)}` failed: {proc.stderr.strip()}")


async def deploy(s: Session, remote_dir: str, bundle: Bundle,
                 run_dir: str | None = None) -> dict[str, Any]:
    """Upload only the files whose hash differs (idempotent), each written to a temporary
    name and renamed, the manifest last: an interrupted deploy is never taken as current.
    `run_dir` (this run's files: token, logs) is created 0700."""
    rels = sorted(bundle.files)
    remote = await s.py(_HASH_PY, remote_dir, *rels, what="hash of the deployed agent")
    want = bundle.digests()
    changed = [r for r in rels if remote.get(r) != want[r]]
    sent = 0
    try:
        async with s.conn.start_sftp_client() as sftp:
            for d in {str(Path(remote_dir) / Path(r).parent) for r in rels}:
                await sftp.makedirs(d, exist_ok=True)
            if run_dir is not None:
                await sftp.makedirs(run_dir, attrs=asyncssh.SFTPAttrs(permissions=0o700),
                                    exist_ok=True)
            manifest_path = f"{remote_dir}/MANIFEST.json"
            for rel in changed:
                await _put(sftp, f"{remote_dir}/{rel}", bundle.files[rel], 0o644)
                sent += len(bundle.files[rel])
            manifest = json.dumps({"version": bundle.version, "files": want}, indent=1).encode()
            if changed or not await sftp.exists(manifest_path):
                await _put(sftp, manifest_path, manifest, 0o644)
    except (asyncssh.Error, OSError) as exc:
        raise BoardError(f"board {s.t.name}: copying the agent to {remote_dir} failed: "
                         f"{exc}") from None
    return {"files_sent": len(changed), "bytes_sent": sent, "version": bundle.version}


async def _put(sftp: asyncssh.SFTPClient, path: str, data: bytes, mode: int) -> None:
    """Created with its final mode (no moment when a token is readable by others), then
    renamed over the old file."""
    tmp = f"{path}.tmp{os.getpid()}"
    async with sftp.open(tmp, "wb", attrs=asyncssh.SFTPAttrs(permissions=mode)) as f:
        await f.write(data)
    await sftp.chmod(tmp, mode)
    await sftp.posix_rename(tmp, path)


async def _install(s: Session, rec: BoardRecord, rep: PreflightReport) -> dict[str, Any]:
    """Install the missing pinned packages into the agent's site directory (see
    testbed.hil.wheels): online the board downloads them, offline this host pushes them."""
    out: dict[str, Any] = {"mode": rep.install, "requirements": rep.missing}
    offline = rep.install == "offline"
    if offline:
        t = time.perf_counter()
        try:
            files = await asyncio.to_thread(wheels.download, rep.missing, rep.machine,
                                            rep.glibc, rep.python_version)
        except wheels.WheelError as exc:
            raise BoardError(f"board {s.t.name}: {exc}") from None
        out["download_s"] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()
        try:
            async with s.conn.start_sftp_client() as sftp:
                await sftp.makedirs(f"{rec.remote_dir}/{wheels.WHEELS}", exist_ok=True)
                for f in files:
                    await _put(sftp, f"{rec.remote_dir}/{wheels.WHEELS}/{f.name}",
                               f.read_bytes(), 0o644)
        except (asyncssh.Error, OSError) as exc:
            raise BoardError(f"board {s.t.name}: pushing wheels failed: {exc}") from None
        out |= {"push_s": round(time.perf_counter() - t, 3), "wheels": [f.name for f in files],
                "bytes_pushed": sum(f.stat().st_size for f in files)}
    t = time.perf_counter()
    script = wheels.install_script(s.t.python, rec.remote_dir, rep.missing, offline)
    if offline:
        script += f"; rc=$?; rm -rf {shlex.quote(rec.remote_dir + '/' + wheels.WHEELS)}; exit $rc"
    await s.sh(script, timeout=900, what=f"pip install ({rep.install}) of "
               f"{' '.join(rep.missing)}")
    out["pip_s"] = round(time.perf_counter() - t, 3)
    return out


async def _write_token(s: Session, rec: BoardRecord, token: str) -> None:
    try:
        async with s.conn.start_sftp_client() as sftp:
            await _put(sftp, f"{rec.run_dir}/token", token.encode() + b"\n", 0o600)
            mode = (await sftp.stat(f"{rec.run_dir}/token")).permissions
    except (asyncssh.Error, OSError) as exc:
        raise BoardError(f"board {s.t.name}: writing the token file failed: {exc}") from None
    if mode is None or mode & 0o077:
        raise BoardError(f"board {s.t.name}: the token file {rec.run_dir}/token has mode "
                         f"{oct(mode or 0)}, readable by others")


def _host_join(rec: BoardRecord, ledger: Ledger, b: Board, local: str | None, mtu: int | None,
               key: int) -> None:
    ns, inner = rec.netns, INNER_NAME
    addr = f"{rec.node_ip}/{rec.prefixlen}"
    if isinstance(b.join, NicJoin):
        # a physical NIC is not recorded in root_links: teardown would try to delete it
        _host(["ip", "link", "set", "dev", b.join.interface, "down"], f"board {b.name}")
        _host(["ip", "link", "set", "dev", b.join.interface, "netns", ns, "name", inner],
              f"board {b.name}: moving {b.join.interface} into {ns}")
    else:
        assert rec.host_dev is not None and local is not None and mtu is not None
        ledger.add("root_links", rec.host_dev)
        spec = (["type", "gretap", "local", local, "remote", rec.target.address, "key",
                 str(key), "ttl", "64"] if isinstance(b.join, GreJoin) else
                ["type", "vxlan", "id", str(key), "local", local, "remote", rec.target.address,
                 "dstport", str(b.join.port)])
        _host(["ip", "link", "add", rec.host_dev, *spec], f"board {b.name}: host tunnel")
        _host(["ip", "link", "set", "dev", rec.host_dev, "netns", ns, "name", inner],
              f"board {b.name}: moving the tunnel into {ns}")
        _host(["ip", "-n", ns, "link", "set", "dev", inner, "mtu", str(mtu)], f"board {b.name}")
    _host(["ip", "-n", ns, "addr", "add", addr, "dev", inner], f"board {b.name}")
    _host(["ip", "-n", ns, "link", "set", "dev", inner, "up"], f"board {b.name}")


async def _board_join(s: Session, rec: BoardRecord, b: Board, local: str | None,
                      mtu: int | None, key: int) -> None:
    q = shlex.quote
    dev, ip = q(rec.board_dev), s.ip
    lines = ["set -e"]
    if rec.board_dev_created:
        kind = (f"gretap local {q(rec.target.address)} remote {q(local or '')} key {key} ttl 64"
                if isinstance(b.join, GreJoin) else
                f"vxlan id {key} local {q(rec.target.address)} remote {q(local or '')} "
                f"dstport {b.join.port if isinstance(b.join, VxlanJoin) else 4789}")
        lines += [f"{ip} link add {dev} type {kind}", f"{ip} link set dev {dev} mtu {mtu}"]
    lines += [f"{ip} addr add {rec.board_ip}/{rec.prefixlen} dev {dev}",
              f"{ip} link set dev {dev} up",
              # the emulated network by destination, and by source everything the agent sends
              f"{ip} route add {rec.pool} via {rec.node_ip} dev {dev} src {rec.board_ip}",
              f"{ip} route add default via {rec.node_ip} dev {dev} table {rec.table}",
              f"{ip} rule add from {rec.board_ip}/32 table {rec.table} priority {RULE_PRIORITY}"]
    await s.sh("\n".join(lines), what="setting up the board's end of the link")


async def _start_agent(s: Session, rec: BoardRecord, cpu_hz: float) -> int:
    q, run, agent = shlex.quote, rec.run_dir, board_agent()
    args = agent.args.format(node=q(rec.replaces), cpu_hz=f"{cpu_hz:g}", host=rec.board_ip,
                             port=AGENT_PORT, run=q(run))
    site = q(f"{rec.remote_dir}/{wheels.SITE}")  # packages installed for the agent
    extra = " ".join(q(a) for a in shlex.split(rec.agent_args))
    cmd = (f"env PYTHONPATH={site} {q(s.t.python)} -m {agent.package}.{agent.entry} {args} "
           f"{extra}").rstrip()
    log = q(run + "/agent.log")
    script = f"""cd {q(rec.remote_dir)}
umask 077
nohup setsid {cmd} > {log} 2>&1 < /dev/null &
pid=$!
echo $pid > {q(run + '/agent.pid')}
i=0
while [ $i -lt {int(AGENT_START_TIMEOUT_S * 10)} ]; do
  grep -q 'listening on' {log} && echo $pid && exit 0
  state=$(sed -n 's/.*) \\(.\\).*/\\1/p' /proc/$pid/stat 2>/dev/null)
  if [ -z "$state" ] || [ "$state" = Z ]; then echo "exited:"; tail -n 15 {log}; exit 3; fi
  sleep 0.1; i=$((i+1))
done
echo "not listening after {AGENT_START_TIMEOUT_S:g} s:"; tail -n 15 {log}; exit 4
"""
    res = await s.sh(script, check=False, timeout=AGENT_START_TIMEOUT_S + 15,
                     what="starting the agent")
    if res.exit_status != 0:
        raise BoardError(f"board {s.t.name}: the agent did not start ({run}/agent.log): "
                         f"{str(res.stdout).strip()}")
    return int(str(res.stdout).split()[0])


def _verify(net: Network, rec: BoardRecord, token: str) -> dict[str, Any]:
    """Proof through the emulated path: the agent's health from the replaced node's namespace
    (across the tunnel), and the board's address from every other node (across the emulated
    links).  Raises with what failed."""
    code = ("import asyncio, json, sys\nfrom testbed.workloads import resolve\n"
            "health = resolve(sys.argv[3])\ntoken = sys.stdin.read().strip()\n"
            "print(json.dumps(asyncio.run(health(sys.argv[1], int(sys.argv[2]), token, "
            "timeout=5))))")
    proc = subprocess.run(in_netns(rec.netns, [sys.executable, "-c", code, rec.board_ip,
                                               str(AGENT_PORT), board_agent().health]),
                          input=token, capture_output=True, text=True, timeout=30, cwd=REPO)
    if proc.returncode != 0:
        raise BoardError(f"board {rec.target.name}: its agent does not answer at "
                         f"{rec.board_ip}:{AGENT_PORT} from {rec.replaces}: "
                         f"{proc.stderr.strip().splitlines()[-1:]}")
    health = json.loads(proc.stdout)
    if not health.get("ok") or health.get("node") != rec.replaces:
        raise BoardError(f"board {rec.target.name}: unexpected health reply {health}")
    others = [n for n in net.plan.namespaces if n != rec.replaces]
    procs = {n: subprocess.Popen(in_netns(net.plan.namespaces[n],
                                          ["fping", "-a", "-r", "3", "-t", "1000",
                                           rec.board_ip]),
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
             for n in others}
    dead = [n for n, p in procs.items() if rec.board_ip not in p.communicate(timeout=60)[0]]
    if dead:
        raise BoardError(f"board {rec.target.name} ({rec.board_ip}) does not answer from "
                         f"{', '.join(dead)}: those nodes have no route to its subnet")
    return {"health": health, "reached_from": len(others)}


# ---- detach / cleanup --------------------------------------------------------------------------
def _stop_script(rec: BoardRecord) -> str:
    q, run = shlex.quote, rec.run_dir
    return f"""run={q(run)}
pid=$(cat "$run/agent.pid" 2>/dev/null) || pid=
alive() {{
  s=$(sed -n 's/.*) \\(.\\).*/\\1/p' /proc/$1/stat 2>/dev/null); [ -n "$s" ] && [ "$s" != Z ]
}}
ours() {{ tr '\\0' '\\n' < /proc/$1/cmdline 2>/dev/null | grep -qxF -- "$run/token"; }}
if [ -n "$pid" ] && alive "$pid" && ours "$pid"; then
  kill -TERM "$pid"; i=0
  while alive "$pid" && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
  if alive "$pid"; then kill -KILL "$pid"; echo killed; else echo stopped; fi
else echo absent; fi
"""


def _unjoin_script(rec: BoardRecord, ip: str) -> str:
    """Remove the board's end (each step tolerates an object already gone), then list what is
    left so the host can check it."""
    dev = shlex.quote(rec.board_dev)
    lines = [f"{ip} rule del from {rec.board_ip}/32 table {rec.table} priority {RULE_PRIORITY} "
             "2>/dev/null"]
    if rec.board_dev_created:
        lines.append(f"{ip} link del {dev} 2>/dev/null")
    else:
        lines += [f"{ip} route del default table {rec.table} 2>/dev/null",
                  f"{ip} route del {rec.pool} dev {dev} 2>/dev/null",
                  f"{ip} addr del {rec.board_ip}/{rec.prefixlen} dev {dev} 2>/dev/null"]
        if not rec.board_dev_was_up:
            lines.append(f"{ip} link set dev {dev} down 2>/dev/null")
    lines += ["echo ---", f"{ip} -j rule list", "echo ---", f"{ip} -j addr show", "true"]
    return "\n".join(lines)


async def _remote_cleanup(rec: BoardRecord, fetch: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    conn = await connect(rec.target)
    async with conn:
        s = Session(conn, rec.target, rec.sudo, rec.ip)
        out["agent"] = str((await s.sh(_stop_script(rec), what="stopping the agent")).stdout
                           ).strip()
        if fetch:
            out["logs"] = await _fetch_logs(s, rec)
        res = await s.sh(_unjoin_script(rec, s.ip), what="removing the board's end")
        _, rules, addrs = str(res.stdout).split("---\n")
        left = [r for r in json.loads(rules or "[]") if r.get("src") == rec.board_ip]
        left_addr = [link["ifname"] for link in json.loads(addrs or "[]")
                     if (rec.board_dev_created and link["ifname"] == rec.board_dev)
                     or any(a.get("local") == rec.board_ip for a in link.get("addr_info", []))]
        if left or left_addr:
            raise BoardError(f"board {rec.target.name}: still there after cleanup: rules "
                             f"{left}, interfaces {left_addr}")
        await s.sh(f"rm -rf -- {shlex.quote(rec.run_dir)}; "
                   f"rmdir {shlex.quote(rec.remote_dir + '/run')} 2>/dev/null; true",
                   what="removing the run's files (token, logs)")
    return out


async def _fetch_logs(s: Session, rec: BoardRecord) -> list[str]:
    dest = Path(rec.results)
    dest.mkdir(parents=True, exist_ok=True)
    got = []
    try:
        async with s.conn.start_sftp_client() as sftp:
            for name in ("agent.log", *board_agent().logs):
                src = f"{rec.run_dir}/{name}"
                if await sftp.exists(src):
                    await sftp.get(src, str(dest / name))
                    got.append(name)
    except (asyncssh.Error, OSError) as exc:
        raise BoardError(f"board {s.t.name}: fetching its logs failed: {exc}") from None
    return got


def _host_cleanup(rec: BoardRecord) -> None:
    """The node's end: a tunnel is deleted, a NIC goes back to the root namespace under its
    own name (deleting the namespace would return it, but named hil0)."""
    if rec.host_dev is not None and Path(f"/sys/class/net/{rec.host_dev}").exists():
        _host(["ip", "link", "del", "dev", rec.host_dev], "host tunnel")  # never moved
    if subprocess.run(["ip", "-n", rec.netns, "link", "show", "dev", INNER_NAME],
                      capture_output=True).returncode != 0:
        return
    if rec.nic is not None:
        _host(["ip", "-n", rec.netns, "link", "set", "dev", INNER_NAME, "down"], "nic")
        _host(["ip", "-n", rec.netns, "link", "set", "dev", INNER_NAME, "netns",
               str(os.getpid()), "name", rec.nic], f"returning {rec.nic} to the host")
    else:
        _host(["ip", "-n", rec.netns, "link", "del", "dev", INNER_NAME], "host tunnel")


def _cleanup_records(run_id: str, fetch: bool) -> tuple[int, list[str]]:
    """Undo every recorded board of a run; the record stays while something could not be
    undone (a board switched off), so the next `make clean` tries again."""
    path = _records_path(run_id)
    if not path.is_file():
        return 0, []
    records = _load_records(path)
    # the boards first: the agent is stopped while its link still works
    errors = [e for e in asyncio.run(_gather_cleanups(records, fetch)) if e]
    for rec in records:
        try:
            _host_cleanup(rec)
        except BoardError as exc:
            errors.append(str(exc))
    if not errors:
        path.unlink(missing_ok=True)
    return len(records), errors


async def _gather_cleanups(records: list[BoardRecord], fetch: bool) -> list[str]:
    async def one(rec: BoardRecord) -> str:
        try:
            await _remote_cleanup(rec, fetch)
        except BoardError as exc:
            return str(exc)
        return ""
    return list(await asyncio.gather(*(one(r) for r in records)))


def teardown_boards(ledger: Ledger) -> dict[str, int]:
    """Teardown hook (testbed.run.cleanup.teardown, before the namespaces are deleted): undoes
    what the run's boards still have (after a failure or a SIGKILL; nothing after a clean
    detach).  Never raises: errors are printed and the record is kept for the next clean."""
    n, errors = _cleanup_records(ledger.run_id, fetch=Path(ledger.results_dir).is_dir())
    for e in errors:
        print(f"board cleanup of run {ledger.run_id}: {e}", file=sys.stderr)
    return {"boards": n, "board_errors": len(errors)}


def forget_board(address: str, port: int) -> int:
    """Drop a board that no longer exists (an emulated board taken down: its disk is gone)
    from every run record, so that `make clean` stops trying to reach it; the host's side of
    its links goes with the runs' namespaces.  Returns how many entries were dropped."""
    n = 0
    for path in sorted(RECORDS.glob("*.json")) if RECORDS.is_dir() else []:
        records = _load_records(path)
        keep = [r for r in records
                if (r.target.address, r.target.port) != (address, port)]
        if len(keep) == len(records):
            continue
        n += len(records) - len(keep)
        if keep:
            _save_records(path.stem, keep)
        else:
            path.unlink(missing_ok=True)
    return n


def clean_orphans(active: Iterable[str] = ()) -> list[tuple[str, dict[str, int]]]:
    """For `make clean`: board records whose run ledger is gone (their cleanup failed before)."""
    out = []
    skip = set(active)
    for path in sorted(RECORDS.glob("*.json")) if RECORDS.is_dir() else []:
        run_id = path.stem
        if run_id in skip or (LEDGER_DIR / f"{run_id}.json").exists():
            continue
        n, errors = _cleanup_records(run_id, fetch=False)
        for e in errors:
            print(f"board cleanup of run {run_id}: {e}", file=sys.stderr)
        out.append((run_id, {"boards": n, "board_errors": len(errors)}))
    return out


# ---- the entry point for the run pipeline ------------------------------------------------------
class HardwareInTheLoop:
    """One run's boards: `preflight(sc)` before anything is created, `attached(sc)` for the
    plan, `attach(net, ledger, token)` after the network is built and before time zero,
    `detach()` before teardown.  Synchronous (each phase runs its own asyncio loop), so the
    runner needs no event loop."""

    def __init__(self, loaded: LoadedInventory, console: Console | None = None) -> None:
        self.loaded = loaded
        self.console = console
        self.bundle = agent_bundle()
        self.reports: dict[str, PreflightReport] = {}
        self.addresses: dict[str, BoardAddress] = {}
        self.timings: dict[str, float] = {}
        self.details: dict[str, dict[str, Any]] = {}
        self.records: list[BoardRecord] = []
        self._run_id: str | None = None
        self.monitor: BoardMonitor | None = None

    @classmethod
    def load(cls, path: str | Path, console: Console | None = None) -> HardwareInTheLoop:
        return cls(load_inventory(path), console)

    @property
    def boards(self) -> list[Board]:
        return self.loaded.boards

    def _print(self, text: str) -> None:
        if self.console is not None:
            self.console.print(text, markup=False, highlight=False)
        else:
            print(text)

    # -- before anything exists
    def preflight(self, sc: Scenario) -> list[Problem]:
        """Problems with the inventory against `sc`, then with each board (contacted over SSH,
        read-only).  Prints each board's report."""
        t0 = time.perf_counter()
        problems = check_inventory(self.loaded, sc)
        if problems:
            return problems  # no SSH to boards the file describes wrongly
        try:
            self.addresses = allocate_for(sc, self.boards)
        except ValueError as exc:
            return [Problem("boards", str(exc))]
        reports = asyncio.run(self._preflight_all())
        for rep in reports:
            self.reports[rep.board] = rep
            a = self.addresses[rep.board]
            if rep.ok:
                rep.lines.append(("address", f"{a.board_ip}/{a.prefixlen} behind "
                                  f"{rep.replaces} ({a.node_ip}); agent on port {AGENT_PORT}"))
            self._print(rep.render())
            problems += rep.problems
        self.timings["boards_preflight_s"] = round(time.perf_counter() - t0, 3)
        return problems

    async def _preflight_all(self) -> list[PreflightReport]:
        return list(await asyncio.gather(*(preflight_board(self.loaded, i, self.bundle)
                                           for i in range(len(self.boards)))))

    def require(self, sc: Scenario) -> None:
        problems = self.preflight(sc)
        if problems:
            raise self.loaded.error(problems)

    def attached(self, sc: Scenario) -> dict[str, list[str]]:
        """node -> subnets behind it, for the plan (NetworkPlan.attached); `sc` is the
        scenario the plan is built from."""
        addresses = self.addresses or allocate_for(sc, self.boards)
        return {b.replaces: [addresses[b.name].subnet] for b in self.boards}

    def served_by(self, sc: Scenario) -> dict[str, str]:
        """node -> its board's agent address: what the node's name resolves to in the run."""
        addresses = self.addresses or allocate_for(sc, self.boards)
        return {b.replaces: addresses[b.name].board_ip for b in self.boards}

    def address(self, node: str) -> str:
        """The emulated address of the board that replaces `node` (where its agent listens)."""
        b = next(b for b in self.boards if b.replaces == node)
        return self.addresses[b.name].board_ip

    def describe(self) -> dict[str, Any]:
        """For the run's manifest."""
        return {b.name: {"replaces": b.replaces, "profile": b.profile, "mode": b.join.mode,
                         "address": self.addresses[b.name].board_ip if self.addresses else None,
                         "python": self.reports[b.name].python_version
                         if b.name in self.reports else None,
                         "clock_offset_ms": self.reports[b.name].clock_offset_ms
                         if b.name in self.reports else None,
                         "agent_version": self.bundle.version,
                         **self._measured(b.name), **self.details.get(b.name, {})}
                for b in self.boards}

    def _measured(self, name: str) -> dict[str, Any]:
        rep = self.reports.get(name)
        if rep is None:
            return {}
        return {"machine": rep.machine, "memory": rep.memory, "measured": rep.measured}

    # -- after the network is built, before time zero
    def attach(self, net: Network, ledger: Ledger, token: str) -> None:
        """Deploy, join and start every board, then prove each answers through the emulated
        network.  On failure everything created so far is in the run's record: detach() (or
        teardown_boards) removes it."""
        t0 = time.perf_counter()
        if not self.reports:
            self.require(net.sc)
        bad = [r.board for r in self.reports.values() if not r.ok]
        if bad:
            raise BoardError(f"preflight failed for {', '.join(bad)}: not attaching")
        plan = net.plan
        self.addresses = allocate(net.sc.addressing.pool, blocks_needed(net.sc)[0] - 1,
                                  list(plan.namespaces), self.boards)
        self._check_plan(plan)
        self._run_id = ledger.run_id
        results = Path(ledger.results_dir) / "boards"
        self.records = [self._record(i, b, plan, ledger, results, net.sc.addressing.pool)
                        for i, b in enumerate(self.boards)]
        _save_records(ledger.run_id, self.records)  # before anything is created
        attached = self.attached(net.sc)
        tables = board_routes(plan, net.routes.installed, attached)
        report = net.routes.install(tables)
        if report.errors:
            raise BoardError(f"routes to the boards' subnets: {report.errors}")
        asyncio.run(self._attach_all(ledger, token))
        for rec in self.records:
            t1 = time.perf_counter()
            self.details[rec.target.name].update(_verify(net, rec, token))
            self.details[rec.target.name]["verify_s"] = round(time.perf_counter() - t1, 3)
        self.timings["boards_attach_s"] = round(time.perf_counter() - t0, 3)
        self.monitor = BoardMonitor(
            [Watched(r.target.name, r.target.address, r.target.port, r.netns, r.board_ip)
             for r in self.records], say=self._print)
        self.monitor.start()

    def check(self) -> None:
        """Raises BoardLost when a board stopped answering on both paths (see monitor)."""
        if self.monitor is not None:
            self.monitor.check()

    def _check_plan(self, plan: NetworkPlan) -> None:
        used = [ipaddress.ip_network(s.subnet) for s in plan.segments]
        used += [ipaddress.ip_network(f"{a}/32") for a in plan.primary_ip.values()]
        for name, a in self.addresses.items():
            net = ipaddress.ip_network(a.subnet)
            if any(net.overlaps(u) for u in used):
                raise BoardError(f"board {name}: subnet {a.subnet} overlaps the plan's "
                                 "addresses (the plan was built from another scenario?)")
        planned = getattr(plan, "attached", None)
        if planned and planned != self.attached_from_addresses():
            raise BoardError(f"the plan's attached subnets {planned} differ from the boards' "
                             f"{self.attached_from_addresses()}: build the plan with "
                             "attached=hil.attached(sc) for the same scenario")

    def attached_from_addresses(self) -> dict[str, list[str]]:
        return {b.replaces: [self.addresses[b.name].subnet] for b in self.boards}

    def _record(self, i: int, b: Board, plan: NetworkPlan, ledger: Ledger, results: Path,
                pool: str) -> BoardRecord:
        rep, a = self.reports[b.name], self.addresses[b.name]
        tag = ledger.tag
        key = (int(tag, 16) << 8) | (i + 1)
        remote_dir = f"{rep.workdir}/{BUNDLE_DIR}"
        nic = isinstance(b.join, NicJoin)
        return BoardRecord(
            target=Target.of(self.loaded, b), mode=b.join.mode, replaces=b.replaces,
            netns=plan.namespaces[b.replaces], run_id=ledger.run_id, ip=rep.ip, sudo=rep.sudo,
            host_dev=None if nic else f"s{tag}{'g' if b.join.mode == 'gre' else 'x'}{i}",
            nic=b.join.interface if isinstance(b.join, NicJoin) else None,
            board_dev=b.join.board_interface if isinstance(b.join, NicJoin)
            else _board_dev(tag),
            board_dev_created=not nic, board_dev_was_up=not nic, board_ip=a.board_ip,
            node_ip=a.node_ip, prefixlen=a.prefixlen, pool=pool,
            table=1_000_000 + key, remote_dir=remote_dir,
            run_dir=f"{remote_dir}/run/{ledger.run_id}", results=str(results / b.name),
            agent_args=b.agent_args)

    async def _attach_all(self, ledger: Ledger, token: str) -> None:
        await asyncio.gather(*(self._attach_one(i, rec, ledger, token)
                               for i, rec in enumerate(self.records)))

    async def _attach_one(self, i: int, rec: BoardRecord, ledger: Ledger, token: str) -> None:
        b, rep = self.boards[i], self.reports[self.boards[i].name]
        key = (int(ledger.tag, 16) << 8) | (i + 1)
        d: dict[str, Any] = {"board_ip": rec.board_ip, "node_ip": rec.node_ip,
                             "table": rec.table, "key": key}
        self.details[b.name] = d

        async def timed(name: str, coro: Awaitable[Any]) -> Any:
            t = time.perf_counter()
            out = await coro
            d[f"{name}_s"] = round(time.perf_counter() - t, 3)
            return out

        conn = await connect(rec.target)
        async with conn:
            s = Session(conn, rec.target, rep.sudo, rep.ip)
            if isinstance(b.join, NicJoin):
                res = await s.sh(f"cat /sys/class/net/{shlex.quote(rec.board_dev)}/operstate",
                                 what="board NIC state")
                rec.board_dev_was_up = str(res.stdout).strip() != "down"
                _save_records(ledger.run_id, self.records)
            d["deploy"] = await timed("deploy", deploy(s, rec.remote_dir, self.bundle,
                                                       rec.run_dir))
            await _write_token(s, rec, token)
            if rep.missing:
                d["packages"] = await timed("packages", _install(s, rec, rep))
            t = time.perf_counter()
            # on the loop's thread, one board after the other: the ledger is one file
            _host_join(rec, ledger, b, rep.local, rep.mtu, key)
            await _board_join(s, rec, b, rep.local, rep.mtu, key)
            d["join_s"] = round(time.perf_counter() - t, 3)
            cpu_hz = b.cpu_hz if isinstance(b.cpu_hz, float) else profile_cpu_hz(b.profile)
            assert cpu_hz is not None  # inventory.check made sure
            if b.cpu_hz == "measured":
                cpu_hz *= rep.measured["speed_vs_profile"]
            d["agent_pid"] = await timed("agent_start", _start_agent(s, rec, cpu_hz))
            d["cpu_hz"] = cpu_hz

    # -- at the end
    def detach(self) -> dict[str, Any]:
        """Stop the agents, fetch their logs into the run folder, remove both ends of every
        link and the run's files on the boards.  Raises BoardError listing whatever could not
        be undone (the record then stays for make clean)."""
        if self.monitor is not None:
            for name, outages in self.monitor.stop().items():
                self.details.setdefault(name, {})["outages"] = outages
            for w in self.monitor.boards:
                if w.lost:
                    self.details[w.name]["status"] = "lost"
            self.monitor = None
        if self._run_id is None:
            return {}
        t0 = time.perf_counter()
        n, errors = _cleanup_records(self._run_id, fetch=True)
        self.timings["boards_detach_s"] = round(time.perf_counter() - t0, 3)
        self._run_id = None
        if errors:
            raise BoardError("; ".join(errors))
        return {"boards": n}

