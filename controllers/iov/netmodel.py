"""Message delivery over a city drive, mirroring the iov-drdst emulated network.

Why a model and not ns-3: the simulator replays the DRDST protocol for 50..500 vehicles and
calls `deliver` 10^5..10^6 times; it needs the emulation's *structure* (who can reach whom,
via which RSU, at what rate and loss) at microseconds a message, not packet-level fidelity.

What is mirrored (topologies/iov-drdst.yaml):
  * V2I: every vehicle attaches to the RSU with the strongest signal of the scenario's V2X
    channel (3GPP TR 37.885 urban, 802.11p MCS ladder x 0.6) within 450 m (3-D range, 6 m
    masts, 1.5 m vehicle antennas), switching only when another RSU is better by 3 dB - the
    same rule as testbed.mobility.handover.choose, vectorised over all vehicles.  The hop's
    rate and loss are the channel's at the distance; its delay is distance / c (the
    emulator sets the p2p link's delay from the geometry the same way).
  * backbone: RSUs hang off one switch ("core") over 1 Gbit/s wires: rsuA -> core -> rsuB,
    0.05 ms and serialisation at 1 Gbit/s per hop, no loss, no queue.
  * V2V: the 802.11p ad hoc channel (ns-3: 6 Mbit/s, log-distance exponent 2.7, 23 dBm),
    used only when an end has no RSU in reach; range and loss from the same link budget
    ns-3 computes (`default_v2v_range_m`).
Routing prefers V2I (vehicle -> RSU -> backbone -> RSU -> vehicle), as the emulation does.

What is not: TCP/retransmissions (a message is lost on a hop with the hop's loss, drawn
once per message), 802.11 contention between neighbouring radios (only a node's own radio
is a queue: `busy_until`, which is what makes a flat broadcast from one node slow), and
fragmentation (a message is one frame of `size_bytes`).

Time: geometry, attachment and per-pair routes are computed once per 0.5 s bucket (at the
bucket's start) for all vehicles at once and cached; presence is checked at the exact time.
Attachment is computed bucket by bucket from the start, so it is a pure function of t (the
call order does not matter).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from controllers.iov.traces import CityDrive
from testbed.channels import build_channel
from testbed.channels.model import Channel

C_M_PER_MS = 299_792.458  # speed of light, metres per millisecond
V2X_CHANNEL: dict[str, Any] = {"model": "v2x", "environment": "urban",
                               "rate": {"method": "mcs", "table": "802.11p", "efficiency": 0.6}}
RSU_HEIGHT_M = 6.0  # the scenario's masts
ANTENNA_HEIGHT_M = 1.5  # Roads.antenna_height_m default
CORE = "core"
BUCKET_S = 0.5

# ns-3's LogDistancePropagationLossModel defaults (ReferenceDistance 1 m, ReferenceLoss
# 46.6777 dB) and YansWifiPhy's receiver (noise figure 7 dB) over a 10 MHz 802.11p channel
NS3_REFERENCE_LOSS_DB = 46.6777
V2V_NOISE_DBM = -174.0 + 10.0 * math.log10(10e6) + 7.0
V2V_REQUIRED_SNR_DB = 6.0  # edge of reach for OfdmRate6MbpsBW10MHz (QPSK 1/2)
V2V_LOSS_THRESHOLD_DB = 5.0  # 50 % frame loss here (logistic, 1 dB slope, as channels.rate)


def v2v_snr_db(distance_m: float, tx_power_dbm: float = 23.0, exponent: float = 2.7) -> float:
    """Mean SNR of the V2V ad hoc channel at a distance, as ns-3 computes it."""
    pl = NS3_REFERENCE_LOSS_DB + 10.0 * exponent * math.log10(max(distance_m, 1.0))
    return tx_power_dbm - pl - V2V_NOISE_DBM


def default_v2v_range_m(tx_power_dbm: float = 23.0, exponent: float = 2.7,
                required_snr_db: float = V2V_REQUIRED_SNR_DB) -> float:
    """Distance at which the V2V SNR falls to what 6 Mbit/s needs (~311 m for the scenario's
    23 dBm, n = 2.7): beyond it ns-3 decodes next to nothing, so no V2V route."""
    budget = tx_power_dbm - V2V_NOISE_DBM - required_snr_db - NS3_REFERENCE_LOSS_DB
    return float(10.0 ** (budget / (10.0 * exponent)))


def v2v_loss(distance_m: float, tx_power_dbm: float = 23.0, exponent: float = 2.7) -> float:
    """Frame loss probability of the V2V channel (logistic around 5 dB SNR)."""
    x = (v2v_snr_db(distance_m, tx_power_dbm, exponent) - V2V_LOSS_THRESHOLD_DB) / 1.0
    p = 0.5 * (1.0 - math.tanh(x / 2.0))
    return 0.0 if p < 1e-6 else p


class Hop(NamedTuple):
    """One link a message crosses: kind 'v2i' | 'v2v' | 'backbone', from a to b."""

    kind: str
    a: str
    b: str
    rate_mbps: float
    delay_ms: float  # propagation (or the wire's fixed delay)
    loss: float  # probability in [0, 1]


@dataclass
class _Bucket:
    xy: np.ndarray  # (V, 2) vehicle positions at the bucket's start (clamped when absent)
    serving: np.ndarray  # (V,) RSU index or -1
    dist: np.ndarray  # (V,) 3-D distance to the serving RSU (nan when none)
    up: list[Hop | None]  # per vehicle: its hop to the serving RSU
    down: list[Hop | None]  # per vehicle: the serving RSU's hop to it
    v2v: dict[tuple[int, int], tuple[Hop, ...]]  # V2V pairs asked for in this bucket


class RadioNet:
    """Who reaches whom over the drive, and when a message arrives (see the module doc)."""

    def __init__(self, drive: CityDrive, *, v2i_range_m: float = 450.0,
                 hysteresis_db: float = 3.0, v2v_range_m: float | None = None,
                 backbone_delay_ms: float = 0.05, backbone_mbps: float = 1000.0,
                 v2v_mbps: float = 6.0, v2v_tx_power_dbm: float = 23.0,
                 v2v_exponent: float = 2.7,
                 channel: Mapping[str, Any] | None = None, seed: int = 0,
                 rsu_height_m: float = RSU_HEIGHT_M,
                 antenna_height_m: float = ANTENNA_HEIGHT_M) -> None:
        self.drive = drive
        self.v2i_range_m, self.hysteresis_db = v2i_range_m, hysteresis_db
        self.v2v_tx_power_dbm, self.v2v_exponent = v2v_tx_power_dbm, v2v_exponent
        self.v2v_range_m = (v2v_range_m if v2v_range_m is not None
                            else default_v2v_range_m(v2v_tx_power_dbm, v2v_exponent))
        self.backbone_delay_ms, self.backbone_mbps = backbone_delay_ms, backbone_mbps
        self.v2v_mbps = v2v_mbps
        self.rng = random.Random(seed)
        self.channel: Channel = build_channel(dict(channel or V2X_CHANNEL))
        self._dh2 = (rsu_height_m - antenna_height_m) ** 2
        self._vidx = drive.index
        self._rsus = drive.rsu_names
        self._ridx = {r: j for j, r in enumerate(self._rsus)}
        # presence windows as plain floats: checked on every deliver
        half = drive.step_s / 2
        self._span: dict[str, tuple[float, float]] = {
            v: (float(drive.t_first[i]) - 1e-9, float(drive.t_last[i]) + half)
            for v, i in self._vidx.items()}
        for r in self._rsus:
            self._span[r] = (-math.inf, math.inf)
        self._table()
        self._buckets: dict[int, _Bucket] = {}
        self._serving: list[np.ndarray] = []  # bucket -> RSU index per vehicle (or -1)
        self._bb = {(a, b): self._backbone(a, b) for a in self._rsus for b in self._rsus}
        self.busy_until: dict[tuple[str, str], float] = {}  # (node, radio kind) -> ms
        self.counters: Counter[str] = Counter()

    # ---- the V2I channel, tabulated --------------------------------------------------------
    _RES_M = 0.1

    def _table(self) -> None:
        """Rate and loss of the V2I channel every 0.1 m up to past the cell edge (a few tens
        of ms once), so a hop's quality is an index, not a channel evaluation (~15 us)."""
        top = max(self.v2i_range_m, 10.0) * 1.1 + 10.0
        d = np.arange(0.0, top + self._RES_M, self._RES_M)
        qs = [self.channel.sample(float(x), 0.0) for x in d]
        self._q_snr = np.array([q.snr_db for q in qs])
        self._q_rate = np.array([q.rate_mbps for q in qs])
        loss = np.array([q.loss_pct for q in qs]) / 100.0
        self._q_loss = np.where(loss < 1e-6, 0.0, loss)
        self._q_up = (self._q_rate > 0.0) & (loss < 1.0)
        ch = self.channel
        # exact, vectorised SNR for the handover decision when the channel exposes it
        self._snr_fn = ((lambda x: ch.link_budget_db - ch.path_loss_db(x, 0.0))
                        if hasattr(ch, "link_budget_db") and hasattr(ch, "path_loss_db")
                        else None)

    # ---- attachment --------------------------------------------------------------------------
    def _bucket(self, b: int) -> _Bucket:
        bk = self._buckets.get(b)
        if bk is not None:
            return bk
        # attachment has memory (hysteresis): decide the buckets in order from the start,
        # keeping every decision (V ints a bucket), so the answer does not depend on the
        # call order; the geometry of a bucket is recomputed when it was evicted
        b = max(b, 0)
        hist = self._serving
        while len(hist) <= b:
            k = len(hist)
            prev = hist[-1] if hist else np.full(len(self.drive.vehicles), -1, dtype=int)
            bk = self._decide(k, prev)
            hist.append(bk.serving)
            if k >= b - 4:
                self._buckets[k] = bk
        bk = self._buckets.get(b)
        if bk is None:
            bk = self._buckets[b] = self._decide(b, hist[b - 1] if b else hist[0], hist[b])
        if len(self._buckets) > 64:  # callers move forward in time, mostly
            for old in [k for k in self._buckets if abs(k - b) > 16]:
                del self._buckets[old]
        return bk

    def _decide(self, b: int, prev: np.ndarray, known: np.ndarray | None = None) -> _Bucket:
        """handover.choose('strongest-signal') for every vehicle at once; vehicles off the
        map at the bucket's start choose afresh (their links went down).  `known`: the
        decision already taken for this bucket (only the geometry is wanted)."""
        t = b * BUCKET_S
        xy, present = self.drive.vehicle_arrays(t)
        n, r = len(xy), len(self._rsus)
        if r == 0 or n == 0:
            return _Bucket(xy, np.full(n, -1, dtype=int), np.full(n, np.nan), [None] * n,
                           [None] * n, {})
        diff = xy[:, None, :] - self.drive.rsu_xy[None, :, :]
        d3 = np.sqrt((diff ** 2).sum(axis=2) + self._dh2)  # (V, R)
        idx = np.minimum((d3 / self._RES_M + 0.5).astype(int), len(self._q_rate) - 1)
        ok = (d3 <= self.v2i_range_m) & self._q_up[idx]
        snr = self._snr_fn(d3) if self._snr_fn is not None else self._q_snr[idx]
        snr = np.where(ok, snr, -np.inf)
        rows = np.arange(n)
        best = np.argmax(snr, axis=1)  # first of equals: deterministic, as choose()
        cur = np.where(present, prev, -1)
        cur_c = np.maximum(cur, 0)
        cur_ok = (cur >= 0) & ok[rows, cur_c]
        switch = snr[rows, best] > snr[rows, cur_c] + self.hysteresis_db
        serving = np.where(ok.any(axis=1), np.where(cur_ok & ~switch, cur, best), -1)
        if known is not None:
            serving = known
        s_c = np.maximum(serving, 0)
        dist = np.where(serving >= 0, d3[rows, s_c], np.nan)
        qi = idx[rows, s_c]
        # the V2I hops of every vehicle, built once a bucket: routes are then lookups
        up: list[Hop | None] = [None] * n
        down: list[Hop | None] = [None] * n
        names, rsus = self.drive.vehicles, self._rsus
        for i, s, d, rate, loss in zip(np.flatnonzero(serving >= 0).tolist(),
                                       serving[serving >= 0].tolist(),
                                       dist[serving >= 0].tolist(),
                                       self._q_rate[qi[serving >= 0]].tolist(),
                                       self._q_loss[qi[serving >= 0]].tolist(), strict=True):
            delay = d / C_M_PER_MS
            up[i] = Hop("v2i", names[i], rsus[s], rate, delay, loss)
            down[i] = Hop("v2i", rsus[s], names[i], rate, delay, loss)
        return _Bucket(xy, serving, dist, up, down, {})

    def _present(self, name: str, t: float) -> bool:
        span = self._span.get(name)
        return span is not None and span[0] <= t <= span[1]

    def serving(self, vehicle: str, t: float) -> str | None:
        """The RSU the vehicle is attached to at t (None: off the map or no RSU in reach)."""
        if vehicle not in self._vidx or not self._present(vehicle, t):
            return None
        s = int(self._bucket(int(t // BUCKET_S)).serving[self._vidx[vehicle]])
        return self._rsus[s] if s >= 0 else None

    # ---- routes ------------------------------------------------------------------------------
    def route(self, src: str, dst: str, t: float) -> list[Hop]:
        """The hops src -> dst at t (seconds); [] when unreachable (or src == dst)."""
        return list(self._route(src, dst, t))

    def _route(self, src: str, dst: str, t: float) -> tuple[Hop, ...]:
        if src == dst:
            return ()
        sa, sb = self._span.get(src), self._span.get(dst)
        if sa is None or sb is None or not sa[0] <= t <= sa[1] or not sb[0] <= t <= sb[1]:
            return ()
        b = int(t // BUCKET_S)
        bk = self._buckets.get(b) or self._bucket(b)
        si, di = self._vidx.get(src), self._vidx.get(dst)
        if si is None:  # from an RSU
            if di is None:
                return self._bb[(src, dst)]
            down = bk.down[di]
            return self._bb[(src, down.a)] + (down,) if down is not None else ()
        up = bk.up[si]
        if di is None:
            return (up, *self._bb[(up.b, dst)]) if up is not None else ()
        down = bk.down[di]
        if up is not None and down is not None:
            return (up, *self._bb[(up.b, down.a)], down)
        hops = bk.v2v.get((si, di))
        if hops is None:
            hops = bk.v2v[(si, di)] = self._v2v(bk, src, dst, si, di)
        return hops

    def _v2v(self, bk: _Bucket, src: str, dst: str, si: int, di: int) -> tuple[Hop, ...]:
        """An end without an RSU: the V2V ad hoc channel, one hop, if in reach."""
        pa, pb = bk.xy[si], bk.xy[di]
        d = math.hypot(float(pa[0] - pb[0]), float(pa[1] - pb[1]))
        if d > self.v2v_range_m:
            return ()
        return (Hop("v2v", src, dst, self.v2v_mbps, d / C_M_PER_MS,
                    v2v_loss(d, self.v2v_tx_power_dbm, self.v2v_exponent)),)

    def _backbone(self, a: str, b: str) -> tuple[Hop, ...]:
        """rsuA -> core -> rsuB over the wired star (nothing between an RSU and itself)."""
        if a == b:
            return ()
        return (Hop("backbone", a, CORE, self.backbone_mbps, self.backbone_delay_ms, 0.0),
                Hop("backbone", CORE, b, self.backbone_mbps, self.backbone_delay_ms, 0.0))

    # ---- delivery ----------------------------------------------------------------------------
    def deliver(self, src: str, dst: str, size_bytes: int, t_ms: float,
                rng: random.Random | None = None) -> float | None:
        """When a message of size_bytes sent at t_ms arrives (ms), or None (lost on a hop or
        unreachable).  Wireless hops wait for the sender's radio (one frame at a time, per
        node and radio kind) and occupy it for the serialisation time, lost or not."""
        if src == dst:
            self.counters["delivered"] += 1
            return t_ms
        hops = self._route(src, dst, t_ms / 1000.0)
        c = self.counters
        if not hops:
            c["unreachable"] += 1
            return None
        rand = (rng or self.rng).random
        bits_k = size_bytes * 8e-3  # kbit: / Mbit/s gives ms
        t = t_ms
        busy = self.busy_until
        for h in hops:
            ser = bits_k / h.rate_mbps
            if h.kind == "backbone":
                t += ser + h.delay_ms
            else:
                key = (h.a, h.kind)
                start = busy.get(key, t)
                if start < t:
                    start = t
                busy[key] = start + ser
                t = start + ser + h.delay_ms
            c[h.kind] += 1
            if h.loss > 0.0 and rand() < h.loss:
                c["lost"] += 1
                c[f"lost_{h.kind}"] += 1
                return None
        c["delivered"] += 1
        return t

    def latency_ms(self, a: str, b: str, t: float, size_bytes: int = 300) -> float:
        """Expected one-way latency at t (seconds) without queueing or loss: propagation plus
        serialisation over the route; inf when unreachable (0 to itself)."""
        if a == b:
            return 0.0 if self._present(a, t) else math.inf
        hops = self._route(a, b, t)
        if not hops:
            return math.inf
        bits_k = size_bytes * 8e-3
        return sum(bits_k / h.rate_mbps + h.delay_ms for h in hops)

    def stats(self) -> dict[str, int]:
        """delivered, lost, unreachable; hops crossed per kind (v2i, v2v, backbone) and
        losses per kind (lost_v2i, lost_v2v)."""
        out = {k: 0 for k in ("delivered", "lost", "unreachable", "v2i", "v2v", "backbone",
                              "lost_v2i", "lost_v2v")}
        out.update(self.counters)
        return out

    def reset(self) -> None:
        """Clears the radio queues and counters (attachment and routes are kept)."""
        self.busy_until.clear()
        self.counters.clear()
