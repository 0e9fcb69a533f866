"""The scenario timeline: time-indexed actions executed on time and logged.

Flow starts are timeline entries too, so an experiment reads as one schedule.  Every executed
entry is appended to events.jsonl with its planned and actual time (and the error, if it
failed); a failed entry is reported, never silently dropped, and the run goes on.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.engines.base import Change
from testbed.lifecycle.supervisor import Supervisor
from testbed.mobility.driver import MobilityDriver
from testbed.net.network import Network
from testbed.net.sdn import SOCKET_ENV
from testbed.run.traffic import Flows
from testbed.scenario.model import Event, EventAction, Medium


@dataclass(order=True)
class Entry:
    at_s: float
    seq: int
    describe: str
    action: Callable[[], dict[str, Any] | None]
    # machine-readable form of `describe` for events.jsonl (the view reads link/node/flow)
    fields: dict[str, Any] = field(default_factory=dict, compare=False)


class Timeline:
    def __init__(self, net: Network, flows: Flows, sup: Supervisor, log_path: Path,
                 driver: MobilityDriver | None = None, token: str | None = None) -> None:
        self.net, self.flows, self.sup = net, flows, sup
        self.driver = driver
        self.log = log_path
        # handed to every `exec` command: where the run's results go (SAGIN_RUN_DIR), time zero
        # on the wall clock (SAGIN_T_ZERO), and a secret the run's services authenticate each
        # other with (SAGIN_RUN_TOKEN; payload agents refuse work without it).  The token
        # lives only in these processes' env.
        self.run_dir = log_path.parent
        self.token = token or secrets.token_hex(16)  # the runner's, when boards use it
        self.entries: list[Entry] = []
        self.t_zero_wall: float | None = None
        self.errors = 0
        self.executed = 0
        sc = net.sc
        for flow in sc.traffic:
            self._add(flow.start_s, f"start_flow {flow.name}",
                      lambda name=flow.name: self.flows.start(name),
                      {"action": "start_flow", "flow": flow.name})
        for ev in sc.timeline:
            self._add(ev.at_s, _describe(ev), lambda ev=ev: self.execute(ev), _fields(ev))
        self.entries.sort()

    def _add(self, at: float, describe: str, fn: Callable[[], Any],
             fields: dict[str, Any] | None = None) -> None:
        self.entries.append(Entry(at, len(self.entries), describe, fn, fields or {}))

    def run(self, t0: float, until_s: float, tick: Callable[[], None]) -> None:
        """Execute entries at t0 + at_s (monotonic clock) until `until_s`; `tick` runs about
        every 100 ms (health watch) between entries."""
        pending = list(self.entries)
        # time zero on the wall clock, for `exec` commands ($SAGIN_T_ZERO): processes started
        # seconds apart can share one run-relative clock
        self.t_zero_wall = time.time() - (time.monotonic() - t0)
        with open(self.log, "a") as log:
            while True:
                now = time.monotonic() - t0
                while pending and pending[0].at_s <= now:
                    entry = pending.pop(0)
                    record: dict[str, Any] = {"planned_s": entry.at_s,
                                              "actual_s": round(time.monotonic() - t0, 4),
                                              "wall": time.time(), "event": entry.describe,
                                              **entry.fields}
                    try:
                        extra = entry.action()
                        record["ok"] = True
                        if extra:
                            record.update(extra)
                    except Exception as exc:  # noqa: BLE001 - logged and counted, run goes on
                        record["ok"] = False
                        record["error"] = f"{type(exc).__name__}: {exc}"
                        self.errors += 1
                    record["done_s"] = round(time.monotonic() - t0, 4)
                    self.executed += 1
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                if now >= until_s:
                    return
                tick()
                nxt = pending[0].at_s if pending else until_s
                time.sleep(max(0.0, min(0.1, nxt - (time.monotonic() - t0))))

    # ---- actions --------------------------------------------------------------------------
    def execute(self, ev: Event) -> dict[str, Any] | None:
        net = self.net
        a = ev.action
        if a in (EventAction.LINK_DOWN, EventAction.LINK_UP):
            assert ev.link is not None
            set_link_state(net, ev.link, ev.node, up=a is EventAction.LINK_UP)
            return None
        if a is EventAction.SET_LINK:
            net.apply([Change("set", link=ev.link, delay_ms=ev.delay_ms, rate_mbps=ev.rate_mbps,
                              rate_back_mbps=ev.rate_back_mbps, loss_pct=ev.loss_pct)])
            return None
        if a is EventAction.MOVE:
            assert ev.position is not None and ev.node is not None
            if self.driver is not None and ev.node in self.driver.world.tracks:
                # the node's links follow geometry: its new place applies at the next tick
                self.driver.world.place(ev.node, ev.position)
                return {"applied_by": "mobility driver"}
            net.apply([Change("position", node=ev.node, xyz=ev.position)])
            return None
        if a in (EventAction.NODE_CRASH, EventAction.NODE_RESTART):
            return self._crash(ev.node or "", up=a is EventAction.NODE_RESTART)
        if a is EventAction.START_FLOW:
            self.flows.start(ev.flow or "")
            return None
        if a is EventAction.STOP_FLOW:
            self.flows.stop(ev.flow or "")
            return None
        if a is EventAction.EXEC:
            assert ev.node is not None and ev.command is not None
            log = self.sup.log_dir / ev.node / f"exec-{ev.at_s:g}s.log"
            # `python` in a scenario command is the testbed's own interpreter (its venv)
            path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"
            env = {"PATH": path, "SAGIN_RUN_DIR": str(self.run_dir.resolve()),
                   "SAGIN_RUN_TOKEN": self.token, "SAGIN_NODE": ev.node,
                   "SAGIN_T_ZERO": f"{self.t_zero_wall or time.time():.6f}"}
            if net.sdn is not None and net.sdn.api_socket is not None:
                env[SOCKET_ENV] = str(net.sdn.api_socket)
            self.sup.start(f"exec-{ev.node}-{ev.at_s:g}", ["sh", "-c", ev.command],
                           netns=net.plan.namespaces[ev.node], log=log, env=env,
                           cgroup=net.cgroups.get(ev.node), critical=ev.restart is not None,
                           restart=ev.restart or 0)
            return {"log": str(log)}
        raise ValueError(f"unhandled action {a}")

    def _crash(self, node: str, up: bool) -> dict[str, Any]:
        """A crash silences every interface of the node (radios off, links down) and kills its
        processes; a restart brings the interfaces back (processes are not restarted)."""
        net = self.net
        changes = []
        for ep in net.plan.endpoints(node):
            medium = net.plan.segment_of(ep.link).medium
            per_member = medium is Medium.WIFI or len(net.plan.segment_of(ep.link).members) > 2
            changes.append(Change("set", link=ep.link, node=node if per_member else None, up=up))
        net.apply(changes)
        killed = 0
        if not up:
            # the node is dead: its services are not restarted and do not fail the run
            self.sup.abandon(net.plan.namespaces[node])
            pids = subprocess.run(["ip", "netns", "pids", net.plan.namespaces[node]],
                                  capture_output=True, text=True).stdout.split()
            for pid in pids:
                subprocess.run(["kill", "-9", pid], capture_output=True)
                killed += 1
        return {"interfaces": len(changes), "killed_processes": killed}


def set_link_state(net: Network, link: str, node: str | None, up: bool) -> None:
    """A link (or one member's side of it) down or up; a whole link's change re-routes."""
    net.apply([Change("set", link=link, node=node, up=up)])
    if node is None:
        with net.lock:
            (net.down_links.discard if up else net.down_links.add)(link)
        net.reroute()


def _fields(ev: Event) -> dict[str, Any]:
    out: dict[str, Any] = {"action": ev.action.value}
    for k in ("link", "node", "flow", "delay_ms", "rate_mbps", "rate_back_mbps", "loss_pct"):
        v = getattr(ev, k)
        if v is not None:
            out[k] = v
    return out


def _describe(ev: Event) -> str:
    parts = [ev.action.value]
    for k in ("link", "node", "flow", "delay_ms", "rate_mbps", "rate_back_mbps", "loss_pct",
              "position", "command"):
        v = getattr(ev, k)
        if v is not None:
            parts.append(f"{k}={v}")
    return " ".join(parts)
