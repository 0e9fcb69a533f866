"""The mobility driver: at `mobility.rate_hz` it moves the world, applies what changed to the
emulated links as one batch, hands terminals over, and keeps routes following.

One thread, absolute deadlines (tick k is due at time zero + k / rate_hz, so a slow tick
never shifts the schedule; tick k+1 is computed as soon as tick k is applied, so at a deadline
only the apply is left), and per tick: snapshot of the geometry -> handover decisions ->
a batch of link changes (only links whose delay moved by >= 1 us, rate by >= 0.5 %, loss by
>= 0.05 points, or whose state flipped) -> Wi-Fi node positions -> routes when the set of
usable links changed (and every `reroute_interval_s` to follow changing delays; only
differences are installed).

Handover is make-before-break: the new access link goes up, routes move to it, and the old
link stays up `handover_guard_ms` longer so that packets already on it still arrive.

Everything lands in the run folder's `mobility/`: link-state.csv (every link once per
second and at every change of state), handovers.jsonl (with the route install time),
predicted.csv (the RTT that geometry predicts for each ping flow, every tick),
positions.csv (once per second), and the tick timing statistics in metrics.json.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import math
import os
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from testbed.engines.base import Change
from testbed.mobility.association import Associator, reason
from testbed.mobility.geo import C_KM_S, ecef_to_geodetic
from testbed.mobility.world import LinkStates, Snapshot, World
from testbed.net.network import Network
from testbed.scenario.model import FlowKind, Medium

LATE_MS = 20.0
# a tick's changes leave this long before they are due (applied at the due time)
LEAD_S = 0.06
PING_BYTES = 84 + 2  # ICMP echo with 56 bytes of data, IP header, PPP framing


@dataclass
class Applied:
    up: bool
    delay_ms: float
    rate_mbps: float
    loss_pct: float
    rate_back_mbps: float | None = None  # the second endpoint's rate, where it differs


@dataclass
class _AppliedColumns:
    """`Applied` of every dynamic link as columns (row k = World.link_names[k])."""

    known: np.ndarray
    up: np.ndarray
    delay_ms: np.ndarray
    rate_mbps: np.ndarray
    loss_pct: np.ndarray
    rate_back_mbps: np.ndarray  # NaN: the same as rate_mbps


@dataclass
class Prepared:
    """One tick computed ahead of its deadline (MobilityDriver.prepare)."""

    snap: Snapshot
    events: list[dict[str, Any]]
    desired: LinkStates
    unroutable: set[str]
    changes: list[Change]
    flipped: list[str]


@dataclass
class TickStats:
    ticks: int = 0
    late: int = 0
    lateness_ms: list[float] = field(default_factory=list)
    changes: int = 0
    compute_ms: list[float] = field(default_factory=list)
    cpu_s: float = 0.0
    late_at_s: list[float] = field(default_factory=list)  # when the late ones were due


class MobilityDriver:
    def __init__(self, world: World, net: Network, out_dir: Path) -> None:
        self.world, self.net = world, net
        self.dir = out_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.rate_hz = world.sc.mobility.rate_hz
        # a delay is re-sent once it moved by this much (1 us by default)
        self.delay_resolution = world.sc.mobility.delay_resolution_ms
        self.guard_s = world.sc.mobility.handover_guard_ms / 1000.0
        self._applied: _AppliedColumns | None = None
        self.assoc = Associator(world)
        self.leaving: dict[str, float] = {}  # access link -> real time it goes down
        self.handovers: list[dict[str, Any]] = []
        self.stats = TickStats()
        self.t_zero: float | None = None
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        self.state_lock = threading.Lock()
        self.rerouter = _Rerouter(self)
        self.error: str | None = None
        self.last_reroute = 0.0
        self.last_log = -1.0
        self.graph: nx.Graph | None = None
        self.pings = [f for f in world.sc.traffic if f.kind is FlowKind.PING]
        self.on_map: set[str] = set()  # vehicles on the road map (testbed.mobility.roads)
        self.road_events = 0
        self._files: dict[str, Any] = {}
        self._path_memo: tuple[nx.Graph | None,
                               dict[tuple[str, str], tuple[list[str], list[str]] | None]] = \
            (None, {})
        self._writers: dict[str, Any] = {}

    # ---- output -----------------------------------------------------------------------------
    def _csv(self, name: str, header: list[str]) -> Any:
        if name not in self._writers:
            f = open(self.dir / name, "w", newline="", buffering=1)  # noqa: SIM115
            w = csv.writer(f)
            w.writerow(header)
            self._files[name], self._writers[name] = f, w
        return self._writers[name]

    def close(self) -> None:
        if self.world.roads is not None and self.stats.ticks:
            self.world.roads.save(self.dir / "drive.csv")
        for f in self._files.values():
            f.close()
        self._files.clear()
        self._writers.clear()

    # ---- decisions ----------------------------------------------------------------------------
    def _associate(self, snap: Snapshot, now: float) -> list[dict[str, Any]]:
        """Run every access group's policy; schedule the old links' release (after the
        guard when make-before-break and the old candidate still qualifies)."""
        events = []
        for d in self.assoc.decide(snap):
            spec = next(g.spec for g in self.world.groups if g.spec.name == d.group)
            ev: dict[str, Any] = {"group": d.group, "terminal": d.terminal, "from": d.old,
                                  "to": d.new, "t_mobility_s": round(snap.t, 3),
                                  "reason": reason(d, self.t_zero is None)}
            with self.state_lock:
                if d.old_link is not None:
                    if spec.make_before_break and d.old_still_eligible:
                        # stays up until the routes have moved, then the guard runs
                        self.leaving[d.old_link] = math.inf
                        ev["_release"] = d.old_link
                    else:
                        self.leaving[d.old_link] = now
                if d.new_link is not None:
                    self.leaving.pop(d.new_link, None)
            events.append(ev)
        return events

    def _desired(self, snap: Snapshot, now: float) -> tuple[LinkStates, set[str]]:
        """Physical state of every dynamic link, and the links routes must avoid: an access
        link is up only while chosen (or in its make-before-break grace), and routable only
        while chosen; any other link is routable while up.  All links in numpy columns."""
        tab = snap.table
        access = self.world.access_mask
        keep = np.zeros(len(tab.names), dtype=bool)  # chosen, or still in its grace time
        chosen = np.zeros(len(tab.names), dtype=bool)
        chosen[[tab.index[n] for n in self.assoc.chosen_links()]] = True
        keep[[tab.index[n] for n, t in self.leaving.items() if now < t]] = True
        up = np.where(access, tab.up & (chosen | keep), tab.up)
        unroutable_rows = np.flatnonzero(np.where(access, ~chosen, ~tab.up))
        down = [tab.index[n] for n in self.net.down_links if n in tab.index]
        if down:
            up[down] = False
        with self.state_lock:
            for name in [n for n, t in self.leaving.items() if now >= t]:
                del self.leaving[name]
        names = tab.names
        return (LinkStates(dataclasses.replace(tab, up=up)),
                {names[k] for k in unroutable_rows.tolist()})

    def _changes(self, desired: LinkStates) -> tuple[list[Change], list[str]]:
        """The links whose applied state must change (delay by >= 1 us, a direction's rate by
        >= 0.5 %, loss by >= 0.05 points, or up/down), compared in numpy against what was
        applied.  A change carries rate_mbps (both directions) and, on an asymmetric link,
        rate_back_mbps after it, so the engine never keeps a stale back rate."""
        tab = desired.table
        if self._applied is None:
            n = len(tab.names)
            self._applied = _AppliedColumns(np.zeros(n, dtype=bool), np.zeros(n, dtype=bool),
                                            np.zeros(n), np.zeros(n), np.zeros(n),
                                            np.full(n, np.nan))
        ap = self._applied
        rate = np.maximum(tab.rate_mbps, 0.01)
        back = tab.rate_back_mbps
        both_nan = np.isnan(back) & np.isnan(ap.rate_back_mbps)
        same = ap.known & (ap.up == tab.up) & \
            (np.abs(ap.delay_ms - tab.delay_ms) < self.delay_resolution) & \
            (np.abs(ap.rate_mbps - rate) <= 0.005 * ap.rate_mbps) & \
            (both_nan | (np.abs(ap.rate_back_mbps - back) <= 0.005 * ap.rate_back_mbps)) & \
            (np.abs(ap.loss_pct - tab.loss_pct) < 0.05)
        rows = np.flatnonzero(~same)
        flip = rows[~ap.known[rows] | (ap.up[rows] != tab.up[rows])]
        names = tab.names
        changes = [Change("set", link=names[k], delay_ms=round(d, 6), rate_mbps=round(r, 4),
                          rate_back_mbps=None if math.isnan(b) else round(b, 4),
                          loss_pct=round(loss, 4), up=u)
                   for k, d, r, b, loss, u in zip(
                       rows.tolist(), tab.delay_ms[rows].tolist(), rate[rows].tolist(),
                       back[rows].tolist(), tab.loss_pct[rows].tolist(), tab.up[rows].tolist(),
                       strict=True)]
        ap.known[rows] = True
        ap.up[rows] = tab.up[rows]
        ap.delay_ms[rows] = tab.delay_ms[rows]
        ap.rate_mbps[rows] = rate[rows]
        ap.rate_back_mbps[rows] = back[rows]
        ap.loss_pct[rows] = tab.loss_pct[rows]
        return changes, [names[k] for k in flip.tolist()]

    @property
    def applied(self) -> dict[str, Applied]:
        """What was last sent to the link engine, per link."""
        ap = self._applied
        if ap is None:
            return {}
        names = self.world.link_names
        return {names[k]: Applied(bool(ap.up[k]), float(ap.delay_ms[k]),
                                  float(ap.rate_mbps[k]), float(ap.loss_pct[k]),
                                  None if np.isnan(ap.rate_back_mbps[k])
                                  else float(ap.rate_back_mbps[k]))
                for k in np.flatnonzero(ap.known).tolist()}

    # ---- one tick ----------------------------------------------------------------------------
    def prepare(self, t_mob: float, now: float) -> Prepared:
        """Everything of the tick at mobility time t_mob that can be known before it is due:
        geometry, handover decisions, the batch of link changes.  The loop computes tick k+1
        right after applying tick k, so at its deadline only the apply is left."""
        c0 = time.perf_counter()
        snap = self.world.snapshot(t_mob)
        events = self._associate(snap, now)
        _apply_overrides(snap, self.assoc.overrides(snap))
        desired, unroutable = self._desired(snap, now)
        changes, flipped = self._changes(desired)
        changes += [Change("position", node=n, xyz=self.world.enu(n, t_mob))
                    for n in self.world.wifi_moving]
        self.stats.compute_ms.append((time.perf_counter() - c0) * 1e3)
        return Prepared(snap, events, desired, unroutable, changes, flipped)

    def commit(self, p: Prepared, now: float, deadline: float | None,
               log: bool = True) -> None:
        """Apply a prepared tick (at its due time), then routes and (with `log`) the record;
        the loop writes the record itself, after preparing the next tick."""
        applied = self.net.apply(p.changes, at=deadline) if p.changes else None
        self.stats.changes += len(p.changes)
        if deadline is not None and applied is not None:
            late = (applied - deadline) * 1e3
            self.stats.lateness_ms.append(late)
            self.stats.late += late > LATE_MS
            if late > LATE_MS:
                self.stats.late_at_s.append(self._rel(now))
        self.stats.ticks += 1
        rel = self._rel(now)
        for ev in p.events:
            ev["t_s"] = round(rel, 4)
        for name, st in p.snap.links.items():
            self.net.segment_cost[name] = st.delay_ms + 0.2
        topology = p.unroutable != self.net.mobility_down
        if topology:
            self.net.mobility_down = set(p.unroutable)
        if topology or p.events or now - self.last_reroute >= \
                self.world.sc.mobility.reroute_interval_s:
            self.last_reroute = now
            release = [e["_release"] for e in p.events if e.get("_release")]
            if self.thread is None:  # prime: synchronously, before time zero
                self._reroute(p.events, release, now)
            else:
                self.rerouter.request(p.events, release, now)
        if log:
            self._log(p.snap, p.desired, p.unroutable, p.flipped, rel)

    def step(self, t_mob: float, now: float, deadline: float | None) -> None:
        self.commit(self.prepare(t_mob, now), now, deadline)

    def _reroute(self, events: list[dict[str, Any]], release: list[str],
                 requested: float) -> None:
        """Recompute and install routes; then stamp the handovers with the convergence time
        (request -> every namespace updated) and start the old links' guard timers."""
        report = self.net.reroute()
        if self.net.graph is not None and self.pings:
            self.remember_paths(self.net.graph)
        self.graph = self.net.graph
        done = time.monotonic()
        with self.state_lock:
            for link in release:
                if link in self.leaving:
                    self.leaving[link] = done + self.guard_s
        with open(self.dir / "handovers.jsonl", "a") as f:
            for ev in events:
                ev.pop("_release", None)
                ev.update(route_convergence_ms=round((done - requested) * 1e3, 2),
                          route_install_ms=round(report.seconds * 1e3, 2),
                          namespaces_updated=report.namespaces,
                          routes_changed=report.added_or_changed + report.removed)
                f.write(json.dumps(ev) + "\n")
                self.handovers.append(ev)

    def _rel(self, now: float) -> float:
        return now - self.t_zero if self.t_zero is not None else 0.0

    def _log(self, snap: Snapshot, desired: LinkStates, unroutable: set[str],
             flipped: list[str], rel: float) -> None:
        w = self._csv("link-state.csv", ["t_s", "t_mobility_s", "link", "role", "up", "routed",
                                         "delay_ms", "rate_mbps", "loss_pct", "range_km",
                                         "elevation_deg", "snr_db", "rate_back_mbps"])
        full = rel - self.last_log >= 1.0 or self.last_log < 0
        tab = desired.table
        rows = range(len(tab.names)) if full else [tab.index[n] for n in flipped]
        if rows:
            rows = np.asarray(rows, dtype=int)
            t_s, t_mob = f"{rel:.3f}", f"{snap.t:.3f}"
            dyn = self.world.dyn
            back = tab.rate_back_mbps[rows].tolist()
            w.writerows(
                [t_s, t_mob, name, dyn[name].role, int(up), int(name not in unroutable),
                 f"{d:.6f}", f"{r:.3f}", f"{loss:.4f}", f"{rng:.3f}", f"{el:.3f}", f"{snr:.2f}",
                 "" if math.isnan(rb) else f"{rb:.3f}"]
                for name, up, d, r, loss, rng, el, snr, rb in zip(
                    [tab.names[k] for k in rows.tolist()], tab.up[rows].tolist(),
                    tab.delay_ms[rows].tolist(), tab.rate_mbps[rows].tolist(),
                    tab.loss_pct[rows].tolist(), tab.range_km[rows].tolist(),
                    tab.elevation_deg[rows].tolist(), tab.snr_db[rows].tolist(), back,
                    strict=True))
        if self.world.vehicles:
            on_map = set(self.world.vehicles) - snap.absent
            if on_map != self.on_map:
                vw = self._csv("vehicles.csv", ["t_s", "t_mobility_s", "vehicle", "event"])
                for v in sorted(on_map ^ self.on_map):
                    vw.writerow([f"{rel:.3f}", f"{snap.t:.3f}", v,
                                 "enter" if v in on_map else "leave"])
                    self.road_events += 1
                self.on_map = on_map
        if full:
            self.last_log = rel
            pw = self._csv("positions.csv", ["t_s", "node", "lat_deg", "lon_deg", "alt_km"])
            pos = snap.positions if len(snap.positions) == len(snap.ecef) else \
                np.array(list(snap.ecef.values()), dtype=float).reshape(-1, 3)
            lat, lon, alt = (np.atleast_1d(x).tolist() for x in ecef_to_geodetic(pos))
            t_s = f"{rel:.3f}"
            pw.writerows([t_s, node, f"{la:.6f}", f"{lo:.6f}", f"{al:.4f}"]
                         for node, la, lo, al in zip(snap.ecef, lat, lon, alt, strict=True)
                         if node not in snap.absent)
        if self.pings and self.t_zero is not None:
            rw = self._csv("predicted.csv", ["t_s", "flow", "rtt_ms", "path"])
            for flow in self.pings:
                rtt, path = self.predict_rtt(flow.src, flow.dst, snap)
                rw.writerow([f"{rel:.3f}", flow.name,
                             "" if rtt is None else f"{rtt:.4f}", ">".join(path)])

    # ---- prediction --------------------------------------------------------------------------
    def predict_rtt(self, src: str, dst: str, snap: Snapshot) -> tuple[float | None, list[str]]:
        """Round-trip time that geometry predicts along the installed routes: propagation
        plus serialisation of a ping at each hop's rate, both directions (ns-3's and the
        kernel's processing are not in it)."""
        g = self.graph
        if g is None:
            return None, []
        paths = self._paths(g, src, dst)
        if paths is None:
            return None, []
        fwd, back = paths
        total = 0.0
        for path in (fwd, back):
            for u, v in itertools.pairwise(path):
                total += self._hop_ms(g[u][v]["segment"], u, v, snap)
        return total, fwd

    def _paths(self, g: nx.Graph, src: str, dst: str) -> tuple[list[str], list[str]] | None:
        """Both directions' shortest paths on the routing graph: from the memo that the route
        thread fills for every ping flow when it makes a graph (routes change only then),
        else computed here."""
        memo_g, memo = self._path_memo
        if memo_g is g and (src, dst) in memo:
            return memo[(src, dst)]
        try:
            return (nx.dijkstra_path(g, src, dst, weight="weight"),
                    nx.dijkstra_path(g, dst, src, weight="weight"))
        except (nx.NetworkXNoPath, nx.NodeNotFound):
            return None

    def remember_paths(self, g: nx.Graph) -> None:
        """Compute every ping flow's paths on a new routing graph (off the tick thread)."""
        memo: dict[tuple[str, str], tuple[list[str], list[str]] | None] = {}
        self._path_memo = (None, {})
        for f in self.pings:
            memo[(f.src, f.dst)] = self._paths(g, f.src, f.dst)
        self._path_memo = (g, memo)

    def _hop_ms(self, segment: str, u: str, v: str, snap: Snapshot) -> float:
        tab = snap.table
        k = tab.index.get(segment)
        if k is not None:
            rate = float(tab.rate_mbps[k])
            if u == self.world.dyn[segment].b and not math.isnan(tab.rate_back_mbps[k]):
                rate = float(tab.rate_back_mbps[k])  # sent by the second endpoint
            return float(tab.delay_ms[k]) + PING_BYTES * 8 / (max(rate, 0.01) * 1e3)
        seg = self.net.plan.segment_of(segment) if ":" not in segment else None
        if seg is None or seg.medium is Medium.ETHERNET:
            return 0.0
        link = self.world.sc.link(segment)
        if seg.medium is Medium.P2P:
            rate = link.rate_back_mbps if link.rate_back_mbps and u == link.endpoints[1] \
                else link.rate_mbps
            return (link.delay_ms or 0.0) + PING_BYTES * 8 / ((rate or 1e3) * 1e3)
        pu, pv = snap.ecef.get(u), snap.ecef.get(v)
        if pu is None or pv is None:
            return 0.0
        return float(math.dist(pu, pv)) / C_KM_S * 1e3

    # ---- lifecycle ----------------------------------------------------------------------------
    def prime(self) -> None:
        """State of mobility time 0, applied before the health checks: attachments chosen,
        links up/down, routes installed."""
        self.step(0.0, time.monotonic(), None)

    def start(self, t_zero: float) -> None:
        self.t_zero = t_zero
        # The route thread computes for tens of milliseconds at a time; a short GIL switch
        # interval (default 5 ms) lets the tick thread in between without waiting.
        sys.setswitchinterval(0.0005)
        self.rerouter.start()
        self.thread = threading.Thread(target=self._loop, name="mobility", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        assert self.t_zero is not None
        period = 1.0 / self.rate_hz
        lead = min(LEAD_S, 0.4 * period)
        k = 1
        try:  # the tick is due at a wall time: ahead of the run's loggers on a busy host
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), -5)
        except OSError:
            pass  # not root
        cpu0 = time.thread_time()
        mono_to_wall = time.time() - time.monotonic()
        done: tuple[Prepared, float] | None = None  # the last tick applied, not yet logged
        try:
            while not self.stop_event.is_set():
                due = self.t_zero + k * period
                ahead = self.prepare((due - self.t_zero) * self.world.time_scale, due)
                if done is not None:  # the record waits until the next tick is ready
                    p, rel = done
                    self._log(p.snap, p.desired, p.unroutable, p.flipped, rel)
                # sent `lead` ahead, stamped with its due time: the engine applies it then
                # (ns-3 schedules it in its own timeline), so the host's path to the engine
                # does not make it late
                wait = due - lead - time.monotonic()
                if wait > 0 and self.stop_event.wait(wait):
                    break
                self.commit(ahead, due, due + mono_to_wall, log=False)
                done = (ahead, self._rel(due))
                now = time.monotonic()
                if now - due > period:  # fell behind by whole periods: skip, count as late
                    skipped = int((now - due) / period)
                    self.stats.late += skipped
                    self.stats.ticks += skipped
                    k += skipped
                k += 1
            if done is not None:
                p, rel = done
                self._log(p.snap, p.desired, p.unroutable, p.flipped, rel)
        except Exception as exc:  # noqa: BLE001 - reported by check(), the run stops cleanly
            self.error = f"{type(exc).__name__}: {exc}"
            traceback.print_exc(file=sys.stderr)
        finally:
            self.stats.cpu_s = time.thread_time() - cpu0

    def check(self) -> None:
        error = self.error or self.rerouter.error
        if error:
            raise RuntimeError(f"mobility driver failed: {error}")

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
        self.rerouter.stop()
        self.close()

    def summary(self) -> dict[str, Any]:
        s = self.stats
        late = sorted(s.lateness_ms)
        comp = sorted(s.compute_ms)

        def pct(xs: list[float], q: float) -> float | None:
            return round(xs[min(len(xs) - 1, int(q * len(xs)))], 3) if xs else None

        run_s = (time.monotonic() - self.t_zero) if self.t_zero else 0.0
        return {"rate_hz": self.rate_hz, "time_scale": self.world.time_scale,
                "dynamic_links": len(self.world.dyn), "ticks": s.ticks,
                "late_ticks_over_20ms": s.late,
                "late_fraction": round(s.late / s.ticks, 5) if s.ticks else None,
                "late_ticks_by_10s": _bins(s.late_at_s, 10.0),
                "lateness_ms_p50": pct(late, 0.5), "lateness_ms_p99": pct(late, 0.99),
                "compute_ms_p50": pct(comp, 0.5), "compute_ms_p99": pct(comp, 0.99),
                "changes_sent": s.changes, "cpu_s": round(s.cpu_s, 3),
                "cpu_fraction_of_core": round(s.cpu_s / run_s, 4) if run_s else None,
                "reroute_cpu_s": round(self.rerouter.cpu_s, 3),
                "handovers": len([h for h in self.handovers if h["reason"] != "initial"]),
                "vehicle_events": self.road_events if self.world.vehicles else None,
                "routes": self.net.routes.summary()}


def _apply_overrides(snap: Snapshot, ov: tuple[np.ndarray, ...] | None) -> None:
    """An access scheduler's slot parameters on the chosen links of this snapshot (in
    place: the applied batch, the link-state log and the predicted RTT all see them)."""
    if ov is None or not len(ov[0]):
        return
    rows, delay, up, down, loss = ov
    tab = snap.table
    tab.delay_ms[rows] += delay
    radio = tab.rate_mbps[rows]  # what the channel allows, either way
    tab.rate_mbps[rows] = np.maximum(np.minimum(radio, up), 0.01)
    tab.rate_back_mbps[rows] = np.maximum(np.minimum(radio, down), 0.01)
    tab.loss_pct[rows] = np.maximum(tab.loss_pct[rows], loss)


def _bins(times: list[float], width: float) -> dict[str, int]:
    """How many of `times` fall in each `width`-second bin ("0-10": 3, ...)."""
    out: dict[str, int] = {}
    for t in times:
        lo = int(t // width * width)
        key = f"{lo}-{lo + int(width)}"
        out[key] = out.get(key, 0) + 1
    return out


class _Rerouter:
    """Routes are recomputed off the tick thread (tens of milliseconds for a 100-satellite
    network), so the 10 Hz link updates keep their deadlines; requests that arrive while a
    computation runs are merged into the next one."""

    def __init__(self, driver: MobilityDriver) -> None:
        self.d = driver
        self.cv = threading.Condition()
        self.events: list[dict[str, Any]] = []
        self.release: list[str] = []
        self.requested: float | None = None
        self.stopping = False
        self.error: str | None = None
        self.thread: threading.Thread | None = None
        self.cpu_s = 0.0

    def start(self) -> None:
        self.thread = threading.Thread(target=self._loop, name="rerouter", daemon=True)
        self.thread.start()

    def request(self, events: list[dict[str, Any]], release: list[str], now: float) -> None:
        with self.cv:
            self.events += events
            self.release += release
            if self.requested is None:
                self.requested = now
            self.cv.notify()

    def _loop(self) -> None:
        cpu0 = time.thread_time()
        try:
            while True:
                self.cpu_s = time.thread_time() - cpu0
                with self.cv:
                    while self.requested is None and not self.stopping:
                        self.cv.wait()
                    if self.requested is None:
                        return
                    events, release, requested = self.events, self.release, self.requested
                    self.events, self.release, self.requested = [], [], None
                self.d._reroute(events, release, requested)
        except Exception as exc:  # noqa: BLE001 - surfaced by MobilityDriver.check
            self.error = f"{type(exc).__name__}: {exc}"

    def stop(self) -> None:
        with self.cv:
            self.stopping = True
            self.cv.notify()
        if self.thread is not None:
            self.thread.join(timeout=10)
