"""One run of a scenario, start to finish:

    plan -> build network -> health checks -> captures/probes -> time zero -> timeline
         -> metrics -> teardown

Teardown happens whatever happens (normal end, failure, Ctrl-C, SIGTERM), with further
interrupts ignored while it runs; the run folder is written as the run goes, and metrics.json
and manifest.json are rewritten at the end with the final status (done / failed /
interrupted) and whatever was measured up to then.
"""

from __future__ import annotations

import json
import secrets
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from testbed.hil import report as hil_report
from testbed.hil.monitor import BoardLost
from testbed.lifecycle.ledger import Ledger
from testbed.lifecycle.supervisor import ServiceDied, Supervisor
from testbed.mobility.driver import MobilityDriver
from testbed.mobility.report import analyse as analyse_mobility
from testbed.mobility.world import World
from testbed.net import plan as planner
from testbed.net.calibration import calibrate
from testbed.net.health import reachability, services
from testbed.net.network import Network, preflight
from testbed.run.capture import Captures
from testbed.run.cleanup import teardown
from testbed.run.loadlog import LoadLog
from testbed.run.metrics import collect
from testbed.run.probes import Probes
from testbed.run.results import RESULTS, manifest, new_run, write_json
from testbed.run.timeline import Timeline
from testbed.run.traffic import Flows
from testbed.scenario import Scenario, dump
from testbed.workloads import Registry, RunContext, Service

if TYPE_CHECKING:
    from testbed.hil.boards import HardwareInTheLoop


class Interrupted(Exception):
    pass


@dataclass
class RunOptions:
    hold: bool = False
    results_base: Path = RESULTS
    inventory: Path | None = None  # hardware in the loop: boards replacing nodes
    analyze: bool = True  # packet-trace analysis of the run's captures at the end
    view: bool = False  # the live web view (testbed.view), its URL printed on the console
    view_port: int = 0  # 0: any free port
    # one host's share of a multi-host run (testbed.cluster.share.ShareRuntime): its plan,
    # its part of the network, and the common time zero; None: everything is here
    share: Any = None
    console: Console = field(default_factory=Console)


@dataclass
class RunResult:
    run_dir: Path
    status: str
    metrics: dict[str, Any]
    error: str | None = None


def _counters(loadlog: LoadLog) -> dict[str, dict[str, int]]:
    """Every interface's byte counters ("node/ifname"), from the /proc/net/dev files the
    link-load sampler holds open in each namespace (not an `ip -n ... -s link` process per
    namespace: at 1,000 nodes those took half a minute, twice per run)."""
    return {f"{node}/{ifname}": {"rx_bytes": rx, "tx_bytes": tx}
            for node, ifaces in loadlog.counters().items()
            for ifname, (rx, tx) in ifaces.items()}


def _diff(a: dict[str, dict[str, int]], b: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    return {k: {f: v[f] - a.get(k, {}).get(f, 0) for f in v} for k, v in b.items()}


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise Interrupted(signal.Signals(signum).name)


class Run:
    def __init__(self, sc: Scenario, source: str, options: RunOptions | None = None) -> None:
        self.sc, self.source = sc, source
        self.opt = options or RunOptions()
        self.console = self.opt.console
        self.timings: dict[str, float] = {}
        self.net: Network | None = None
        self.flows: Flows | None = None
        self.probes: Probes | None = None
        self.captures: Captures | None = None
        self.counters0: dict[str, dict[str, int]] | None = None
        self.t_zero: float | None = None
        self.driver: MobilityDriver | None = None
        self.workload_services: list[Service] = []  # workloads' run-time services, in start order
        self.hil: HardwareInTheLoop | None = None
        # the run's secret, shared by the boards' agents and the timeline's exec commands
        self.token = secrets.token_hex(16)
        self.failure: dict[str, Any] | None = None  # the component whose death ended the run
        self.loadlog: LoadLog | None = None
        self.plan_dict: dict[str, Any] = {}  # network.json (also what the load sampler reads)

    def _phase(self, name: str, t0: float) -> None:
        self.timings[name] = round(time.monotonic() - t0, 3)

    def execute(self) -> RunResult:
        t_cmd = time.monotonic()
        world = World.build(self.sc, self.source)  # pure; errors before anything exists
        if self.opt.share is not None:  # this host's flows and node actions only
            world.sc = self.opt.share.restrict(world.sc)
        preflight(world.sc, self.source)  # on the expanded scenario (constellation links)
        if self.opt.inventory is not None:
            from testbed.hil.boards import HardwareInTheLoop

            self.hil = HardwareInTheLoop.load(self.opt.inventory, self.console)
            self.hil.require(world.sc)  # SSH, read-only: still nothing exists on the host
        run_id, tag, run_dir = new_run(self.sc.name, self.opt.results_base)
        self.run_dir = run_dir
        state_dir = Path("/run/sagin-hil") / run_id
        ledger = Ledger.create(run_id, tag, self.sc.name, run_dir)
        ledger.add("state_dirs", str(state_dir))
        state_dir.mkdir(parents=True, exist_ok=True)
        sup = Supervisor(ledger, run_dir / "logs")
        man = manifest(self.sc.name, run_id, self.sc.seed, self.source)
        write_json(run_dir / "manifest.json", man)
        (run_dir / "scenario.resolved.yaml").write_text(dump(self.sc))
        man["mobility"] = {"epoch_unix": world.epoch_unix, "time_scale": world.time_scale}
        write_json(run_dir / "world.json", world.describe())
        self.world = world
        hil = self.hil
        plan = planner.build(world.sc, tag, hil.attached(world.sc) if hil else None,
                             hil.served_by(world.sc) if hil else None) \
            if self.opt.share is None else self.opt.share.make_plan(world.sc, tag)
        self._phase("plan_s", t_cmd)  # expansion (constellations) and the plan, routes too
        self.plan_dict = plan.to_dict()
        write_json(run_dir / "network.json", self.plan_dict)
        old = {s: signal.signal(s, _raise_interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
        status, error = "failed", None
        metrics: dict[str, Any] = {}
        try:
            self.console.print(f"[bold]run[/] {self.sc.name} -> {run_dir}")
            if self.opt.view:
                self._start_view(sup)
            self._bring_up(plan, ledger, sup, state_dir, t_cmd, man)
            self._experiment(sup)
            status = "done"
        except Interrupted as exc:
            status, error = "interrupted", f"interrupted by {exc}"
            self.console.print(f"[yellow]interrupted ({exc}): tearing down[/]")
        except BoardLost as exc:  # "failed: board <name>", with what was measured kept
            error = str(exc)
            self.console.print(f"[red]run failed:[/] {error}")
        except ServiceDied as exc:  # "failed: <component>", with what was measured kept
            error = f"failed: {exc.component or 'a service'}: {exc}"
            self.failure = {"component": exc.component, "detected_wall": exc.detected_wall}
            self.console.print(f"[red]run failed:[/] {error}")
        except Exception as exc:  # noqa: BLE001 - any failure is reported, then torn down
            error = f"{type(exc).__name__}: {exc}"
            self.console.print(f"[red]run failed:[/] {error}")
        finally:
            for s in old:
                signal.signal(s, signal.SIG_IGN)
            try:
                metrics = self._finish(sup, ledger, status, error, man)
            finally:
                for s, h in old.items():
                    signal.signal(s, h)
        return RunResult(run_dir, status, metrics, error)

    world: World

    def _bring_up(self, plan: planner.NetworkPlan, ledger: Ledger, sup: Supervisor,
                  state_dir: Path, t_cmd: float, man: dict[str, Any]) -> None:
        with self.console.status("building the emulated network (ns-3 import ~10 s)..."):
            net = Network(self.world.sc, plan, ledger, sup, state_dir,
                          share=None if self.opt.share is None
                          else self.opt.share.view(ledger.tag, ledger))
            self.net = net
            net.build()
            if self.world.dyn or self.world.wifi_moving:
                self.driver = MobilityDriver(self.world, net, self.run_dir / "mobility")
                self.driver.prime()
            self._start_services(net, sup, state_dir)
        self.timings.update(net.timings)
        man["engines"] = net.engine_names()
        man["link_engines"] = net.link_engine_names()
        if net.cgroups:
            man["profiles"] = net.profiles()
            for node, p in man["profiles"].items():
                if p.get("capped"):
                    self.console.print(f"[yellow]profile {p['profile']} on {node} is capped:[/] "
                                       f"{p['reason']}")
        man["phase"] = "health"
        write_json(self.run_dir / "manifest.json", man)
        t = time.monotonic()
        with self.console.status("health checks: services and reachability of every node..."):
            services(net)
            self.timings.update(reachability(net))
        self._phase("health_s", t)
        with self.console.status("measuring the emulator's per-hop delay..."):
            self.timings.update(calibrate(net))
        if self.hil is not None:
            with self.console.status("boards: deploying the agent, joining, starting..."):
                self.hil.attach(net, ledger, self.token)
            self.timings.update(self.hil.timings)
            man["boards"] = self.hil.describe()
        self.flows = Flows(net, sup, self.run_dir / "flows")
        self.flows.prepare()
        self.captures = Captures(net, sup, self.run_dir / "pcaps")
        self.captures.start()
        if self.sc.probes.link_rtt:
            self.probes = Probes(net, sup, self.run_dir / "probes", self.sc.probes.interval_s)
            self.probes.start()
        self._wait_captures(sup)
        self.loadlog = LoadLog(self.plan_dict, self.run_dir / "logs" / "link-load.jsonl",
                               t_zero_wall=lambda: man.get("time_zero_wall"))
        self.loadlog.start()
        self.counters0 = _counters(self.loadlog)
        if self.opt.share is not None:  # every host ready: one wall-clock time zero for all
            self.opt.share.wait_for_time_zero(self.timings, net, self.run_dir)
            self.counters0 = _counters(self.loadlog)
        self.t_zero = time.monotonic()
        if self.driver is not None:
            self.driver.start(self.t_zero)
        self.timings["command_to_time_zero_s"] = round(self.t_zero - t_cmd, 3)
        man["status"] = man["phase"] = "running"
        man["time_zero_wall"] = time.time()
        write_json(self.run_dir / "manifest.json", man)
        self.console.print(f"[green]time zero[/] after {self.timings['command_to_time_zero_s']:.1f}"
                           f" s; running {self.sc.duration_s:g} s "
                           f"(shell into a node: make shell NODE=<name>)")

    def _start_view(self, sup: Supervisor) -> None:
        """The web view as its own process reading the run folder (testbed.view, a layer above
        this one: started by name, never imported): whatever a browser does costs the run
        nothing, and the process ends with the run's teardown."""
        announce = self.run_dir / "view.json"
        view = sup.start("view", [sys.executable, "-m", "testbed.view", str(self.run_dir),
                                  "--live", "--port", str(self.opt.view_port), "--announce",
                                  str(announce)],
                         log=self.run_dir / "logs" / "view.log",
                         env={"SAGIN_VIEW_TOKEN": secrets.token_urlsafe(16)})
        deadline = time.monotonic() + 15.0
        while time.monotonic() < deadline and view.popen.poll() is None:
            try:
                self.view_url = str(json.loads(announce.read_text())["url"])
                self.console.print(f"[bold]view[/]: {self.view_url}")
                return
            except (OSError, ValueError, KeyError):
                time.sleep(0.05)
        log = (self.run_dir / "logs" / "view.log").read_text(errors="replace").strip()
        self.console.print(f"[yellow]view: did not start: {log.splitlines()[-1] if log else ''}"
                           " (logs/view.log); the run goes on[/]")

    view_url: str | None = None

    def _start_services(self, net: Network, sup: Supervisor, state_dir: Path) -> None:
        """Every registered workload service the scenario uses (e.g. the autopilots)."""
        ctx = RunContext(self.world.sc, self.world, net, sup, state_dir, self.run_dir,
                         self.token)
        for _, factory in Registry.installed().calls("service"):
            service = factory(ctx)
            if service is not None:
                self.workload_services.append(service)
                service.start()

    def _wait_captures(self, sup: Supervisor, timeout: float = 10.0) -> None:
        if self.captures is None:
            return
        deadline = time.monotonic() + timeout
        for p in self.captures.procs:
            while not (p.log.exists() and "listening on" in p.log.read_text(errors="replace")):
                sup.check()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"tcpdump did not start: {p.log}")
                time.sleep(0.02)

    def _experiment(self, sup: Supervisor) -> None:
        assert self.net is not None and self.flows is not None and self.t_zero is not None
        timeline = Timeline(self.net, self.flows, sup, self.run_dir / "events.jsonl",
                            self.driver, token=self.token)
        self.timeline = timeline
        with self.console.status(f"experiment running ({self.sc.duration_s:g} s)..."):
            timeline.run(self.t_zero, self.sc.duration_s, self._check)
        self.timings["timeline_errors"] = timeline.errors
        if self.opt.hold:
            self.console.print("[bold]holding the network[/]: press Ctrl-C to tear down")
            while True:
                self._check()
                time.sleep(0.5)

    def _check(self) -> None:
        assert self.net is not None
        self.net.check()
        if self.driver is not None:
            self.driver.check()
        for service in self.workload_services:
            service.check()
        if self.hil is not None:
            self.hil.check()
        if self.opt.share is not None:
            self.opt.share.check()  # the coordinator said stop, or is gone

    def _finish(self, sup: Supervisor, ledger: Ledger, status: str, error: str | None,
                man: dict[str, Any]) -> dict[str, Any]:
        metrics: dict[str, Any] = {}
        net = self.net
        duration = time.monotonic() - self.t_zero if self.t_zero else 0.0
        man["phase"] = "teardown"
        write_json(self.run_dir / "manifest.json", man)
        service_errors: list[str] = []
        try:
            if self.driver is not None:
                self.driver.stop()
            for service in reversed(self.workload_services):
                try:
                    service.stop()
                except Exception as exc:  # noqa: BLE001 - one service must not stop teardown
                    service_errors.append(f"{type(service).__name__}: "
                                          f"{type(exc).__name__}: {exc}")
            if net is not None:
                counters = None
                if self.counters0 is not None and self.loadlog is not None:
                    counters = _diff(self.counters0, _counters(self.loadlog))
            if self.loadlog is not None:
                self.loadlog.stop()
            if net is not None:
                if self.probes:
                    self.probes.stop()
                if self.captures:
                    self.captures.stop()
                metrics = collect(net, self.flows, self.probes, counters, duration,
                                  self.timings, self.run_dir / "logs",
                                  man.get("time_zero_wall"))
            if self.driver is not None:
                metrics["mobility"] = self.driver.summary()
                if self.t_zero is not None:
                    metrics["mobility"].update(analyse_mobility(
                        self.run_dir, self.world.sc, self.driver.handovers))
        except Exception as exc:  # noqa: BLE001 - metrics must not block teardown
            metrics["metrics_error"] = f"{type(exc).__name__}: {exc}"
        if service_errors:
            metrics["service_errors"] = service_errors
        if self.loadlog is not None:
            metrics["link_load"] = {"samples": self.loadlog.samples,
                                    "cpu_s": round(self.loadlog.cpu_s, 3),
                                    "error": self.loadlog.error}
        if sup.events:
            metrics["restarts"] = list(sup.events)
        if self.failure is not None:
            metrics["failure"] = self.failure
        t = time.monotonic()
        if self.hil is not None:
            detached = None
            try:
                detached = self.hil.detach()
            except Exception as exc:  # noqa: BLE001 - teardown retries from the record
                metrics["boards_error"] = f"{type(exc).__name__}: {exc}"
            described = self.hil.describe()
            metrics["boards"] = {"detach": detached, **described}
            metrics["hardware"] = hil_report.rows(described, self.run_dir)
        if net is not None:
            net.stop_engines()
        self._phase("teardown_engines_s", t)
        t1 = time.monotonic()
        sup.stop_all()
        self._phase("teardown_processes_s", t1)
        t1 = time.monotonic()
        counts = teardown(ledger)
        self._phase("teardown_namespaces_s", t1)
        self.timings["teardown_s"] = round(time.monotonic() - t, 3)
        metrics.setdefault("timings_s", self.timings)
        metrics["status"] = status
        metrics["measured_duration_s"] = round(duration, 3)
        write_json(self.run_dir / "metrics.json", metrics)
        man.update(status=status, error=error, ended=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                   teardown=counts, phase="analysis" if self.opt.analyze else "ended")
        write_json(self.run_dir / "manifest.json", man)
        if self.opt.analyze:
            # after teardown (it needs only the files) and never fatal: a run's results stand
            # whether or not its analysis works
            from testbed.analysis import on_run_finished

            on_run_finished(self.run_dir, self.console)
            man["phase"] = "ended"
            write_json(self.run_dir / "manifest.json", man)
        return metrics
