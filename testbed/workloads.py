"""The workload registry: how the core finds what a workload adds, without importing it.

The core (this package) builds, runs, measures and tears down emulated networks; workloads
(task offloading, CPN mapping, the edge LLM, drones, the payload agent, and whatever comes
next) sit above it, import it, and *register* with it.  A workload is one `Workload` value,
published as a Python entry point in the group ``sagin_hil.workloads``::

    [project.entry-points."sagin_hil.workloads"]
    offload = "controllers.offload.workload:WORKLOAD"

Why entry points and not a list in the core: the core names no workload anywhere, so adding
one never edits the core, and a researcher's own package (installed with pip next to ours)
registers the same way ours do (the mechanism pytest and setuptools plugins use).  The cost
is that the project must be installed (`make` does: `pip install -e .`).

Everything a workload registers is a *reference* ("module:attribute"), imported only when
used: reading the registry imports each workload's small registration module and nothing
heavy (no torch, no ns-3), so `make check` stays fast.  What a workload can add:

* ``node_sections``: extra fields on a scenario node (``autopilot:``), as pydantic models;
  the scenario schema is built from the core's model plus these (`testbed.scenario.schema`).
  A section model may set ``reports_position: ClassVar[bool] = True``: the node's position
  then comes from telemetry at run time (the mobility world gives it a telemetry track).
* ``check``: cross-reference checks of the whole scenario at load time, ``preflight``: host
  checks (a binary present?) before anything is created; both return `Problem`s.
* ``service``: something the runner starts once the network is built and stops at teardown
  (the autopilots), created by ``factory(RunContext) -> Service | None``.
* ``sdn_apps``: os-ken apps a scenario can pick with ``services.sdn.app``.
* ``benches`` (`make bench BENCH=<name>`), ``evals`` (`make eval-<name>`).
* ``headline``: lines for the console summary of a run; ``report``: sections, figures and
  numbers for the run's report.html and `make compare`; ``view``: the workload's time series
  for the live view and its replay (testbed/view), read from the files it writes.
* ``board_agent``: what the hardware-in-the-loop path deploys and starts on a board.

The core registers its own benches and its default SDN app the same way (`CORE` below), so
`make bench` and `services.sdn.app` have one list each.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from testbed.lifecycle.supervisor import Supervisor
    from testbed.mobility.world import World
    from testbed.net.network import Network
    from testbed.scenario.model import Scenario

ENTRY_POINT_GROUP = "sagin_hil.workloads"


class RegistryError(RuntimeError):
    """A workload that cannot be registered, in words: which one, what is wrong."""


def resolve(ref: str) -> Any:
    """Import "package.module:attribute" (or "package.module" for the module itself)."""
    module, _, attr = ref.partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in filter(None, attr.split(".")):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise RegistryError(f"cannot load {ref!r}: {type(exc).__name__}: {exc}") from exc
    return obj


def lazy_exports(exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A package's ``__getattr__`` (PEP 562) that imports each exported name from its module
    on first use.  Reading the registry imports every workload's package; with this its
    public names stay where users expect them (``from controllers.llm import halda``) without
    the package pulling in numpy and scipy at import."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f"module has no attribute {name!r}")

    return __getattr__


def run_output(run_dir: Path, workload: str, name: str = "summary.json") -> Any:
    """A JSON file a workload wrote in its folder of a run (results/<run>/<workload>/), or
    None: what headline and report hooks read."""
    path = run_dir / workload / name
    return json.loads(path.read_text()) if path.is_file() else None


def log_records(run_dir: Path, pattern: str, required: Iterable[str]
                ) -> Iterator[tuple[Path, dict[str, Any]]]:
    """(log file, record) for each JSON object a process printed as a whole line into the
    run's logs (logs/<pattern>, e.g. "*/exec-*.log") that has every `required` key: how
    commands started by the timeline report results without a file of their own."""
    keys = tuple(required)
    for log in sorted((run_dir / "logs").glob(pattern)):
        for line in log.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and all(k in rec for k in keys):
                yield log, rec


def fresh_output(run_dir: Path, workload: str, make: Callable[[Path], Any],
                 name: str = "summary.json") -> Any:
    """A workload's summary of a run, remade by `make(run_dir)` when its nodes' records
    (<workload>/*.jsonl) are newer than the file: live nodes write records until they are
    stopped, after which the first reader builds the summary.  None when there are none."""
    folder = run_dir / workload
    logs = list(folder.glob("*.jsonl")) if folder.is_dir() else []
    if not logs:
        return None
    out = folder / name
    if not out.is_file() or out.stat().st_mtime < max(p.stat().st_mtime for p in logs):
        return make(run_dir)
    return json.loads(out.read_text())


# ---- what a workload registers --------------------------------------------------------------
@dataclass(frozen=True)
class Bench:
    name: str
    run: str  # ref to (rich Console) -> dict, written to results/bench/<name>.json
    about: str  # a few lines for `python -m testbed bench --list`


@dataclass(frozen=True)
class Eval:
    """`make eval-<name> VAR=value ...`: command-line make variables become flags."""

    name: str
    main: str  # ref to (argv: list[str]) -> int | None
    about: str
    make_vars: Mapping[str, str] = field(default_factory=dict)  # e.g. {"SEEDS": "--seeds"}


@dataclass(frozen=True)
class SdnApp:
    """An os-ken app for `services.sdn.app`.  The launcher (testbed.net.sdn.launch) imports
    `module`; if it defines ``configure(conf, api_socket, event_log)`` that is called before
    the app starts.  With ``api=True`` the run gives it a Unix socket for its API (handed to
    the timeline's exec commands as $SAGIN_SDN_API) and an event log."""

    name: str
    module: str
    about: str
    api: bool = False


@dataclass(frozen=True)
class BoardAgent:
    """What a board runs in place of an emulated node (hardware in the loop).

    The files bundled to the board are found by following the imports of
    ``package.entry`` through this repository; the board starts
    ``python -m package.entry`` + `args`, where {node} (the replaced node), {cpu_hz},
    {host} and {port} (where to listen) and {run} (the run's folder on the board: token file,
    logs) are filled in; it is ready when its log says "listening on".  `health` is a ref to
    an async (host, port, token, timeout=) -> dict with "ok" and "node", run from the replaced
    node's namespace; `logs` are the files in {run} fetched into the results afterwards."""

    package: str  # importable package name, e.g. "payloads"
    entry: str  # module inside it, e.g. "agent"
    args: str
    health: str
    logs: tuple[str, ...] = ()
    min_python: tuple[int, int] = (3, 10)


@dataclass(frozen=True)
class ReportPart:
    """A workload's share of a run's report: HTML sections, figures written beside the
    report (name -> PNG bytes), and numbers `make compare` tabulates."""

    sections: list[tuple[str, str]] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    numbers: dict[str, float | int | None] = field(default_factory=dict)


@dataclass(frozen=True)
class RunContext:
    """What a service gets from the runner once the network is built."""

    sc: Scenario  # the expanded scenario (satellites and generated links included)
    world: World
    net: Network
    sup: Supervisor
    state_dir: Path
    run_dir: Path
    token: str


class Service(Protocol):
    def start(self) -> None: ...
    def check(self) -> None: ...  # raise if it failed (called while the timeline runs)
    def stop(self) -> None: ...


@dataclass(frozen=True)
class Workload:
    name: str
    about: str
    node_sections: Mapping[str, str] = field(default_factory=dict)  # field -> model ref
    check: str | None = None  # (Scenario) -> list[Problem]
    preflight: str | None = None  # (Scenario) -> list[Problem]
    service: str | None = None  # (RunContext) -> Service | None
    sdn_apps: Sequence[SdnApp] = ()
    benches: Sequence[Bench] = ()
    evals: Sequence[Eval] = ()
    headline: str | None = None  # (run_dir: Path) -> list[str]
    report: str | None = None  # (run_dir: Path, t0: float) -> ReportPart | None
    # (run_dir: Path, t_zero_wall: float) -> ([{key, label, unit, group}], [(t_s, {key: v})])
    view: str | None = None
    board_agent: BoardAgent | None = None

    def refs(self) -> list[str]:
        """Every reference this workload registers (for the architecture test)."""
        out = [*self.node_sections.values(), *(b.run for b in self.benches),
               *(e.main for e in self.evals)]
        out += [r for r in (self.check, self.preflight, self.service, self.headline,
                            self.report, self.view) if r]
        out += [a.module for a in self.sdn_apps]
        if self.board_agent is not None:
            out += [f"{self.board_agent.package}.{self.board_agent.entry}",
                    self.board_agent.health]
        return out


CORE = Workload(
    name="core",
    about="the testbed itself: link fidelity, start-up, scale, mobility and analysis "
          "benchmarks; the default SDN app",
    sdn_apps=(SdnApp("l2-proactive", "testbed.net.sdn.l2_proactive",
                     "the whole L2 table installed when a switch connects"),),
    benches=(
        Bench("fidelity", "testbed.bench.fidelity:run",
              "measured vs configured RTT (5/25/125/270 ms one way) and TCP goodput\n"
              "(1/10/50 Mbit/s) on ns-3 point-to-point links, side by side, as ratios"),
        Bench("scale", "testbed.bench.scale:run",
              "a generated 100-node SAGIN (20 UAVs, 50 users, 20 satellites, 10 edge):\n"
              "command -> first packet time, ns-3 real-time lag over 60 s with ping on every\n"
              "link, probe loss"),
        Bench("engines", "testbed.bench.engines:run",
              "tc netem vs ns-3 point-to-point (RTT, TCP goodput, CPU at 5/25/50 ms x\n"
              "10/50 Mbit/s), hwsim vs ns-3 Wi-Fi (goodput vs distance), hwsim association\n"
              "and roam times, OVS kernel vs userspace datapath; the kernel half in the\n"
              "stock-kernel VM where this kernel lacks the modules (relative figures)"),
        Bench("boards", "testbed.bench.boards:run",
              "an emulated arm64 board (qemu, Cortex-A72) through the hardware path: boot to\n"
              "ready, deployment online vs offline (numpy's aarch64 wheel), task round trip\n"
              "vs the namespace stand-in, measured speed vs profile, a 4 s link cut"),
        Bench("lifecycle", "testbed.bench.lifecycle:run",
              "quickstart: command -> time zero, and teardown time"),
        Bench("emulators", "testbed.bench.emulators:run",
              "emulator-eval (the setting of arXiv 2604.04498: 220 satellites of a 72x22\n"
              "shell): bring-up by phase, CPU (total, steady %, per core), memory,\n"
              "constellation-update delay, beside StarryNet/OpenSN/Celestial's figures"),
        Bench("mobility", "testbed.bench.mobility:run",
              "leo-handover: measured RTT vs geometric prediction, outage per handover,\n"
              "route install time; a 100-satellite shell with 200 ISLs updated at 10 Hz:\n"
              "late updates, CPU, diff vs full route install"),
        Bench("resilience", "testbed.bench.resilience:run",
              "runs of quickstart, leo-handover, sagin-offload and edge-llm killed (SIGINT,\n"
              "SIGTERM, SIGKILL + make clean) in every phase: leaks left, run folders valid\n"
              "(RUNS=30 by default, ~30 min)"),
        Bench("view", "testbed.bench.view:run",
              "the live web view: frames/s of a 200-node / 500-link scene in headless\n"
              "Chromium; quickstart and leo-handover with and without the view and a browser\n"
              "watching (view CPU, run CPU, tick lateness p99, how far behind the page is)"),
        Bench("mininet_ref", "testbed.bench.mininet_ref:run",
              "the scale curve's reference: Mininet (Debian's) with userspace OVS, no link\n"
              "emulation, 25 to 1,000 hosts: bring-up by phase, first packet, sampled\n"
              "pingAll, teardown, CPU, PSS, leftovers (docs/scale-mininet.md)"),
        Bench("cluster", "testbed.bench.cluster:run",
              "multi-host emulation on two stand-in hosts (namespaces with sshd): added\n"
              "delay of an ns-3 link whose end is joined across hosts by VXLAN, and the\n"
              "VXLAN path's TCP rate (iperf3) vs a veth"),
        Bench("analysis", "testbed.bench.analysis:run",
              "packets/s and peak memory of the packet-trace analyzer on a generated capture\n"
              "(~1 GB by default), side by side with tshark -z conv,ip (defaults and with\n"
              "heuristic dissectors off)"),
    ),
    evals=(
        Eval("realism", "testbed.analysis.realism:main",
             "starlink-access with the Starlink access model and without it (geometry only)\n"
             "beside WetLinks' published figures: RTT/throughput percentiles and CDFs, the\n"
             "15-s period, loss at slot boundaries (docs/realism.md)",
             make_vars={"DURATION": "--duration", "ONLY": "--only"}),
    ),
)


# ---- the registry ---------------------------------------------------------------------------
class Registry:
    """The core plus every installed workload; names are unique across all of them."""

    def __init__(self, workloads: Iterable[Workload]) -> None:
        self.workloads: list[Workload] = list(workloads)
        self._node_models: dict[str, type] | None = None
        seen: dict[tuple[str, str], str] = {}
        for w in self.workloads:
            named = [("workload", w.name)]
            named += [("node section", n) for n in w.node_sections]
            named += [("SDN app", a.name) for a in w.sdn_apps]
            named += [("bench", b.name) for b in w.benches]
            named += [("eval", e.name) for e in w.evals]
            for key in named:
                if key in seen:
                    raise RegistryError(f"{key[0]} {key[1]!r} is registered by both "
                                        f"{seen[key]!r} and {w.name!r}: rename one")
                seen[key] = w.name
        agents = [w.name for w in self.workloads if w.board_agent is not None]
        if len(agents) > 1:
            raise RegistryError(f"board agents registered by {', '.join(agents)}: a board "
                                "runs one agent; keep one")

    @staticmethod
    @cache
    def installed() -> Registry:
        """The core and the workloads installed as entry points (read once per process)."""
        found: list[Workload] = [CORE]
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            try:
                w = ep.load()
            except Exception as exc:
                raise RegistryError(f"workload {ep.name!r} ({ep.value}) failed to load: "
                                    f"{type(exc).__name__}: {exc}") from exc
            if not isinstance(w, Workload):
                raise RegistryError(f"entry point {ep.name!r} ({ep.value}) is a "
                                    f"{type(w).__name__}, not a testbed.workloads.Workload")
            found.append(w)
        return Registry(found)

    def named(self, name: str) -> Workload:
        for w in self.workloads:
            if w.name == name:
                return w
        raise KeyError(name)

    # ---- scenario --------------------------------------------------------------------------
    def node_models(self) -> dict[str, type]:
        """Node section field -> its pydantic model (imported on first use)."""
        if self._node_models is None:
            self._node_models = {name: resolve(ref) for w in self.workloads
                                 for name, ref in w.node_sections.items()}
        return self._node_models

    def calls(self, hook: str) -> list[tuple[Workload, Callable[..., Any]]]:
        """(workload, function) for every workload that registered `hook` (a field name)."""
        return [(w, resolve(getattr(w, hook))) for w in self.workloads if getattr(w, hook)]

    def sdn_apps(self) -> dict[str, SdnApp]:
        return {a.name: a for w in self.workloads for a in w.sdn_apps}

    # ---- commands ---------------------------------------------------------------------------
    def benches(self) -> dict[str, Bench]:
        return {b.name: b for w in self.workloads for b in w.benches}

    def evals(self) -> dict[str, Eval]:
        return {e.name: e for w in self.workloads for e in w.evals}

    def board_agent(self) -> BoardAgent:
        for w in self.workloads:
            if w.board_agent is not None:
                return w.board_agent
        raise RegistryError("no installed workload registers a board agent (the payload "
                            "agent does: pip install -e . from the project's root)")
