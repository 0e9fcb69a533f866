"""The shared SAGIN task-offloading system model: one slot at a time, vectorised numpy.

What is modelled (every learner, baseline and the live emulation read this one definition):

* Nodes.  U ground users (static, or random waypoint) with a CPU each; K UAVs in 3D with an
  edge server and a battery; one LEO satellite overhead with a server; a cloud reached through
  the user's nearest UAV, that UAV's gateway backhaul and the WAN.
* Tasks.  At the start of each slot every user holds at most one task (bits, CPU cycles,
  deadline); the controller sees it and decides before anything happens.
* Decision (`Decision`).  Per task a computation mode - local, UAV k, satellite or cloud (see
  `Modes`) - and a CPU-share weight at the serving node; per UAV a velocity command.
* Servers.  Server indices: 0..K-1 the UAVs, K the satellite, K+1 the cloud, K+2+i user i's
  own CPU.  Each keeps `busy_s`, the time until its committed work is done, measured from the
  current slot start; the backlog in cycles is busy_s x its frequency.  A slot's new tasks at a
  server start after that backlog (FIFO between slots) and share the CPU among themselves in
  proportion to their share weights (fixed allocation within the slot, as in UAV-MEC
  resource-assignment papers: a share freed early is not handed on, so shares proportional to
  cycles finish the batch together and waste nothing).  A zero share next to positive ones
  starves its task; all-zero shares at a node are equal shares.
* Delay of a task, from the slot start::

      delay = tx + prop + max(0, busy - (tx + prop)) + cycles / (w · f) + prop
              (upload) (there) (queueing)             (computing)          (result back)

  tx: local 0; UAV bits / uplink rate; satellite bits / satellite rate; cloud bits / uplink
  rate to the nearest UAV + bits / (backhaul / n cloud tasks on that relay).  prop: distance
  / c; for the cloud plus half the WAN round trip.  Results are small: only their propagation
  is charged.  Links are split equally among a slot's transmitters (see links.py) and hold
  their share until done; the slot's rates use the positions at the slot start.
* Admission.  Service is deterministic, so a task whose delay would exceed its deadline, or
  whose node is down (UAV with an empty battery; cloud with no UAV left to relay; satellite or
  cloud disabled by the config, as in MUECRS's UAV-only network), is dropped
  at once and consumes nothing.  An admitted task is certain to finish in time; it counts as
  completed once its result is back.  `counters`: generated = waiting (this slot's, not yet
  decided) + dropped + completed + in_flight, and admitted = completed + in_flight.
* Energy per UAV and slot: flight (firmware.dynamics.PowerModel at the speed actually flown,
  climb and avionics) + kappa·f²·cycles for the cycles admitted to it; drawn from the battery,
  never below 0.  A UAV with an empty battery stops, serves nothing new and draws nothing.
* Metrics per slot.  Jain's index of the UAV loads (cycles admitted per UAV),
  J = (sum x)² / (K · sum x²), 1 when no UAV has work.  Effective task delay = delay if
  admitted, deadline + drop_penalty_s if dropped.  CMADDPG-style profit::

      profit = revenue · admitted - w_delay · sum(effective delay) - w_energy · UAV joules
               - w_queue · sum of busy_s over UAVs, satellite, cloud - w_load · (1 - J)

  busy_s taken at the slot's end: the queue delay the next slot's tasks will meet.

  Revenue is booked when a task is admitted (its completion in time is then certain), so the
  reward lands in the slot of the decision that earned it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np
import numpy.typing as npt

from controllers.offload.config import OffloadConfig
from controllers.offload.energy import PropulsionTable, compute_energy_j
from controllers.offload.links import (
    SPEED_OF_LIGHT_M_S,
    A2GUplink,
    SharedBand,
    satellite_rate_table,
    slant_range_m,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

SHARE_EPS = 1e-9  # floor of every share weight: all-zero shares become equal shares


class Decision(NamedTuple):
    """One slot's control: per-user mode and CPU-share weight, per-UAV velocity (m/s).

    mode: (U,) ints, see `Modes`; ignored for users without a task.
    share: (U,) weights >= 0, normalised over the tasks a node receives this slot.
    velocity: (K, 3) east, north, up; clipped to the UAV's horizontal and vertical limits.
    """

    mode: IntArray
    share: FloatArray
    velocity: FloatArray


@dataclass(frozen=True)
class Modes:
    """Mode numbering: 0 local, 1..K UAV 0..K-1, K+1 satellite, K+2 cloud."""

    n_uavs: int
    LOCAL: ClassVar[int] = 0

    def uav(self, k: int) -> int:
        return 1 + k

    @property
    def satellite(self) -> int:
        return self.n_uavs + 1

    @property
    def cloud(self) -> int:
        return self.n_uavs + 2

    @property
    def count(self) -> int:
        return self.n_uavs + 3

    def names(self) -> list[str]:
        return ["local", *(f"uav_{k}" for k in range(self.n_uavs)), "satellite", "cloud"]


class Counters(NamedTuple):
    """Cumulative task fates since reset: generated = waiting + dropped + completed + in_flight.

    waiting: this slot's tasks, still at their users awaiting the decision; admitted =
    completed + in_flight.
    """

    generated: int
    waiting: int
    admitted: int
    completed: int
    dropped: int
    in_flight: int


@dataclass
class Contention:
    """Shared resources already claimed by a slot's earlier assignments (for planners)."""

    uplink: IntArray  # (K,) transmitters on each UAV's band
    backhaul: IntArray  # (K,) cloud tasks relayed by each UAV
    satellite: int  # transmitters on the satellite band
    cycles: FloatArray  # (K+2,) cycles sent to each UAV, the satellite and the cloud

    @classmethod
    def empty(cls, n_uavs: int) -> Contention:
        return cls(np.zeros(n_uavs, dtype=np.int64), np.zeros(n_uavs, dtype=np.int64), 0,
                   np.zeros(n_uavs + 2))

    def claim(self, model: OffloadModel, user: int, mode: int) -> None:
        """Record that `user`'s task goes to `mode`."""
        k = model.n_uavs
        if mode == Modes.LOCAL:
            return
        cycles = float(model.task_cycles[user])
        if mode == k + 1:
            self.satellite += 1
            self.cycles[k] += cycles
            return
        relay = mode - 1 if mode <= k else int(model.nearest_uav[user])
        self.uplink[relay] += 1
        if mode == k + 2:
            self.backhaul[relay] += 1
        self.cycles[mode - 1] += cycles


def jain_index(loads: FloatArray, total: float | None = None) -> float:
    """Jain's fairness index of non-negative loads (their sum may be passed); 1 if all zero."""
    if total is None:
        total = float(np.add.reduce(loads))
    if total <= 0.0:
        return 1.0
    return total * total / (len(loads) * float(np.dot(loads, loads)))


class OffloadModel:
    """State and slot dynamics of the offloading system (see the module docstring).

    Public state (read it, do not resize it): t, user_xy (U, 2), uav_xyz (K, 3), battery_j
    (K,), alive (K,), busy_s (K+2+U,), task_active/bits/cycles/deadline_s (U,), distance_m and
    snr_db (U, K: full-band uplink SNR), nearest_uav (U,), sat_elevation_deg.
    """

    def __init__(self, config: OffloadConfig, seed: int | None = 0) -> None:
        self.config = config
        self.n_users = u = config.n_users
        self.n_uavs = k = config.n_uavs
        self.modes = Modes(k)
        m = k + 3
        self.n_servers = k + 2 + u
        self._users = np.arange(u)
        self._cpu = np.concatenate([np.full(k, config.uav.cpu_hz),
                                    [config.satellite.cpu_hz, config.cloud.cpu_hz],
                                    np.full(u, config.users.cpu_hz)])
        self._band = SharedBand(config.uav.link.rate, config.uav.link.bandwidth_hz, u)
        self._half_wan_s = config.cloud.wan_rtt_s / 2.0
        self._inv_backhaul = 1.0 / config.cloud.backhaul_bps
        self._cpu_j_per_cycle = float(compute_energy_j(config.uav.kappa, config.uav.cpu_hz, 1.0))
        self._flight = PropulsionTable(config.uav.max_speed_m_s
                                       + config.uav.max_vertical_speed_m_s
                                       ).slot_energy_j(config.slot_s)
        self._area_lo = np.array([0.0, 0.0, config.uav.altitude_m[0]])
        self._area_hi = np.array([config.area_m, config.area_m, config.uav.altitude_m[1]])
        self._uplink = A2GUplink(config.uav.link)
        t = config.tasks
        lows, highs = zip((0.0, 1.0), t.bits, t.cycles_per_bit, t.deadline_s, strict=True)
        self._task_lo = np.array(lows)[:, None]
        self._task_span = (np.array(highs) - np.array(lows))[:, None]
        self._move_lo = np.array([-np.inf, -np.inf, -config.uav.max_vertical_speed_m_s])
        self._move_hi = -self._move_lo
        self._move_scale = np.full((k, 3), config.slot_s)
        self._vmax_slot = config.uav.max_speed_m_s * config.slot_s
        # a slot's tasks finish within the longest deadline: older admissions are all done
        self._horizon = int(np.ceil(config.tasks.deadline_s[1] / config.slot_s)) + 1
        # per mode: [uses a UAV band (UAV, cloud), satellite, cloud]; per (user, mode) lookup
        # tables, flattened row-major
        self._mode_kind = np.zeros((3, m))
        self._mode_kind[0, 1:k + 1] = self._mode_kind[0, k + 2] = 1.0
        self._mode_kind[1, k + 1] = self._mode_kind[2, k + 2] = 1.0
        self._row_m = self._users * m
        self._row_k = self._users * k
        server = np.tile(np.arange(-1, m - 1), (u, 1))
        server[:, 0] = k + 2 + self._users
        self._server_tab = server.ravel()
        self._relay = np.tile(np.arange(-1, m - 1), (u, 1))  # nearest UAV for non-UAV modes
        self._prop = np.zeros((u, m))  # one-way propagation (s), cloud: + half the WAN RTT
        self.reset(seed)

    # ----------------------------------------------------------------------------- state
    def reset(self, seed: int | None = None) -> None:
        """New episode: positions, batteries, empty queues, the satellite pass, first tasks."""
        cfg = self.config
        k, u = self.n_uavs, self.n_users
        rng = self._rng = np.random.default_rng(seed)
        self.t = 0
        self.user_xy = rng.random((u, 2)) * cfg.area_m
        self._waypoint = rng.random((u, 2)) * cfg.area_m
        lo, hi = cfg.users.speed_m_s
        self._user_speed = lo + (hi - lo) * rng.random(u)
        uav = rng.random((k, 3))
        uav[:, :2] *= cfg.area_m
        h_lo, h_hi = cfg.uav.altitude_m
        uav[:, 2] = h_lo + (h_hi - h_lo) * uav[:, 2]
        if cfg.uav.start == "corner":  # drawn all the same, so the rest of the episode is too
            uav[:] = (0.0, 0.0, h_lo)
        self.uav_xyz = uav
        self.battery_j = np.full(k, cfg.uav.battery_wh * 3600.0)
        self.alive = np.ones(k, dtype=bool)
        self._n_alive = k
        self._available = np.ones(self.n_servers, dtype=bool)
        self._available[k] = cfg.satellite.enabled
        self._available[k + 1] = cfg.cloud.enabled
        # a disabled satellite or cloud: admission checks availability every slot
        self._restricted = not (cfg.satellite.enabled and cfg.cloud.enabled)
        self.busy_s = np.zeros(self.n_servers)
        e_lo, e_hi = cfg.satellite.elevation_deg
        self.set_satellite_elevation(e_lo + (e_hi - e_lo) * float(rng.random()))
        self._generated = self._admitted = self._dropped = 0
        self._recent: deque[tuple[float, FloatArray, BoolArray]] = deque(maxlen=self._horizon)
        self._update_geometry()
        self._new_tasks()

    def set_positions(self, users_xy: npt.ArrayLike | None = None,
                      uavs_xyz: npt.ArrayLike | None = None) -> None:
        """Overwrite positions (m; UAVs as x, y, height) - e.g. from the live emulation's
        telemetry, or a hand-made case - clamped into the area and altitude band, and refresh
        the link geometry."""
        if users_xy is not None:
            xy = np.array(users_xy, dtype=np.float64).reshape(self.n_users, 2)
            self.user_xy = np.clip(xy, 0.0, self.config.area_m)
        if uavs_xyz is not None:
            xyz = np.array(uavs_xyz, dtype=np.float64).reshape(self.n_uavs, 3)
            self.uav_xyz = np.clip(xyz, self._area_lo, self._area_hi)
        self._update_geometry()

    def set_tasks(self, bits: npt.ArrayLike, cycles: npt.ArrayLike,
                  deadline_s: npt.ArrayLike) -> None:
        """Replace this slot's tasks (a user with 0 bits has none), e.g. real arrivals."""
        u = self.n_users
        self.task_bits = np.array(bits, dtype=np.float64).reshape(u)
        self.task_cycles = np.array(cycles, dtype=np.float64).reshape(u)
        self.task_deadline_s = np.array(deadline_s, dtype=np.float64).reshape(u)
        self.task_active = self.task_bits > 0.0
        slots = int(np.ceil(float(self.task_deadline_s.max()) / self.config.slot_s)) + 1
        if slots > (self._recent.maxlen or 0):  # keep every admission that may be in flight
            self._recent = deque(self._recent, maxlen=slots)
        self._generated -= self._n_tasks
        self._n_tasks = int(np.count_nonzero(self.task_active))
        self._generated += self._n_tasks

    def set_batteries(self, joules: npt.ArrayLike) -> None:
        """Overwrite the UAVs' remaining energy (J), e.g. from another copy of the model; a
        UAV at 0 is down."""
        self.battery_j = np.array(joules, dtype=np.float64).reshape(self.n_uavs)
        alive = self.battery_j > 0.0
        if not np.array_equal(alive, self.alive):
            self._set_alive(alive)
            self._update_geometry()

    def set_satellite_elevation(self, elevation_deg: float) -> None:
        """Move the satellite (e.g. to the emulated constellation's current elevation)."""
        cfg = self.config
        self.sat_elevation_deg = float(elevation_deg)
        sat_range = slant_range_m(cfg.satellite.altitude_m, self.sat_elevation_deg)
        self._sat_prop_s = sat_range / SPEED_OF_LIGHT_M_S
        self._prop[:, self.n_uavs + 1] = self._sat_prop_s
        self._sat_rates = satellite_rate_table(cfg.satellite.link, sat_range,
                                               self.sat_elevation_deg, self.n_users)

    @property
    def counters(self) -> Counters:
        """Task fates so far; a task is in flight until its result is back."""
        now = self.t * self.config.slot_s
        in_flight = sum(int(np.count_nonzero(delay[ok] + start > now))
                        for start, delay, ok in self._recent)
        return Counters(self._generated, self._n_tasks, self._admitted,
                        self._admitted - in_flight, self._dropped, in_flight)

    @property
    def backlog_cycles(self) -> FloatArray:
        """(K+2,) committed work of the UAVs, the satellite and the cloud, in cycles."""
        k2 = self.n_uavs + 2
        return self.busy_s[:k2] * self._cpu[:k2]

    @property
    def cpu_hz(self) -> FloatArray:
        """(K+2+U,) CPU frequency of every server (see the module docstring for the order)."""
        return self._cpu

    @property
    def done(self) -> bool:
        return self.t >= self.config.episode_slots

    def satellite_rate_bps(self, n_sharing: int) -> float:
        """Per-user satellite rate when n users share the band."""
        return float(self._sat_rates[min(max(n_sharing, 1), self.n_users)])

    # ------------------------------------------------------------------------- dynamics
    def step(self, decision: Decision) -> tuple[dict[str, float], dict[str, npt.NDArray]]:
        """Serve this slot's tasks, fly, drain batteries, advance; returns (metrics, info).

        metrics: this slot's scalars, keys `METRIC_KEYS`.  info: arrays - per task: mode,
        active, admitted, delay_s (predicted, also for dropped tasks; meaningless without a
        task), deadline_s; mode_counts (K+3,) of tasks; server_cycles (K+2,) admitted to the
        UAVs, satellite and cloud; uav_energy_j (K,) drawn.
        """
        cfg = self.config
        k, ns = self.n_uavs, self.n_servers
        mode = np.asarray(decision.mode)
        share = np.asarray(decision.share)
        active, bits, cycles = self.task_active, self.task_bits, self.task_cycles
        # bincount rejects negative and non-integer modes; a mode > K+2 lengthens it
        mode_counts = np.bincount(mode, weights=active, minlength=k + 3)
        if len(mode_counts) != k + 3 or share.shape != active.shape:
            raise ValueError(f"need {len(active)} modes in 0..{k + 2} and as many shares")

        # --- links: who transmits on which band, and how fast
        flat = self._row_m + mode
        server = self._server_tab[flat]
        relay = self._relay.ravel()[flat]
        prop = self._prop.ravel()[flat]
        is_up, is_sat, is_cloud = self._mode_kind.take(mode, axis=1) * active  # tasks only
        n_up = np.bincount(relay, weights=is_up, minlength=k)[relay].astype(np.intp)
        n_bh = np.bincount(relay, weights=is_cloud, minlength=k)[relay]
        rate_up = self._band.rate(self._link_q[self._row_k + relay], n_up)
        s_per_bit = is_up / rate_up + (self._inv_backhaul * n_bh) * is_cloud
        n_sat = int(mode_counts[k + 1])
        if n_sat:
            s_per_bit += is_sat * (1.0 / self._sat_rates[n_sat])
        arrive = bits * s_per_bit + prop

        # --- servers: queue behind the backlog, CPU share, admission
        weight = np.maximum(share, SHARE_EPS)
        weight_sum = np.bincount(server, weights=weight * active, minlength=ns)[server]
        run = cycles * weight_sum / (weight * self._cpu[server])
        end = np.maximum(arrive, self.busy_s[server]) + run
        delay = end + prop
        ok = (delay <= self.task_deadline_s) & active
        if self._restricted or self._n_alive < k:
            ok &= self._available[server]
        served = server[ok]
        np.maximum.at(self.busy_s, served, end[ok])
        server_cycles = np.bincount(served, weights=cycles[ok], minlength=ns)[:k + 2]

        # --- task fates
        n_tasks = self._n_tasks
        n_ok = int(np.count_nonzero(ok))
        self._recent.append((self.t * cfg.slot_s, delay, ok))
        self._admitted += n_ok
        self._dropped += n_tasks - n_ok
        served_sum = float(np.dot(delay, ok))
        effective_sum = (served_sum + float(np.dot(self.task_deadline_s, active ^ ok))
                         + cfg.profit.drop_penalty_s * (n_tasks - n_ok))

        # --- flight and energy
        fly_j = self._fly(decision.velocity)
        cpu_j = server_cycles[:k] * self._cpu_j_per_cycle
        drawn = np.minimum(fly_j + cpu_j, self.battery_j)
        self.battery_j = self.battery_j - drawn
        alive = self.battery_j > 0.0
        if int(np.count_nonzero(alive)) != self._n_alive:
            self._set_alive(alive)

        # --- queues carry over into the next slot
        busy = self.busy_s
        np.subtract(busy, cfg.slot_s, out=busy)
        np.maximum(busy, 0.0, out=busy)
        queue_s = float(np.add.reduce(busy[:k + 2]))
        backlog = float(np.dot(busy[:k + 2], self._cpu[:k + 2]))
        uav_cycles = float(np.add.reduce(server_cycles[:k]))
        jain = jain_index(server_cycles[:k], uav_cycles)
        energy = float(np.add.reduce(drawn))
        w = cfg.profit
        revenue = w.revenue_per_task * n_ok
        profit = (revenue - w.delay_weight * effective_sum - w.energy_weight * energy
                  - w.queue_weight * queue_s - w.load_weight * (1.0 - jain))

        metrics = {
            "tasks": float(n_tasks),
            "admitted": float(n_ok),
            "dropped": float(n_tasks - n_ok),
            "deadline_ratio": n_ok / n_tasks if n_tasks else 1.0,
            "mean_delay_s": served_sum / n_ok if n_ok else 0.0,
            "mean_effective_delay_s": effective_sum / n_tasks if n_tasks else 0.0,
            "delay_sum_s": served_sum,
            "effective_delay_sum_s": effective_sum,
            "uav_energy_j": energy,
            "uav_compute_j": uav_cycles * self._cpu_j_per_cycle,
            "queue_s": queue_s,
            "backlog_gcycles": backlog / 1e9,
            "load_balance": jain,
            "revenue": revenue,
            "profit": profit,
        }
        info: dict[str, npt.NDArray] = {
            "mode": mode,
            "active": active,
            "admitted": ok,
            "delay_s": delay,
            "deadline_s": self.task_deadline_s,
            "mode_counts": mode_counts,
            "server_cycles": server_cycles,
            "uav_energy_j": drawn,
        }

        if cfg.users.mobility == "waypoint":
            self._walk()
        if self._geometry_stale:
            self._update_geometry()
        self.t += 1
        self._new_tasks()
        return metrics, info

    def mode_delays(self, user: int, contention: Contention | None = None) -> FloatArray:
        """(K+3,) delay `user`'s task would see in each mode; inf where the node is down.

        Uses the current backlogs and rates with `contention` (what this slot's earlier
        assignments hold) plus this task, and assumes cycle-proportional shares, under which a
        node's batch finishes together: compute time = (cycles already sent + own) / f.
        """
        k = self.n_uavs
        c = contention or Contention.empty(k)
        i = user
        b = float(self.task_bits[i])
        cyc = float(self.task_cycles[i])
        busy, cpu = self.busy_s, self._cpu
        out = np.empty(k + 3)
        out[0] = busy[k + 2 + i] + cyc / cpu[k + 2 + i]
        n = np.minimum(c.uplink + 1, self.n_users)
        rate = self._band.rate(self._link_q.reshape(self.snr_db.shape)[i], n)
        prop = self.distance_m[i] / SPEED_OF_LIGHT_M_S
        uav = np.maximum(b / rate + prop, busy[:k]) + (c.cycles[:k] + cyc) / cpu[:k] + prop
        out[1:k + 1] = np.where(self.alive, uav, np.inf)
        sp = self._sat_prop_s
        arrive = b / self.satellite_rate_bps(c.satellite + 1) + sp
        sat = max(arrive, busy[k]) + (c.cycles[k] + cyc) / cpu[k] + sp
        out[k + 1] = sat if self._available[k] else np.inf
        j = int(self.nearest_uav[i])
        pc = prop[j] + self._half_wan_s
        arrive = b / rate[j] + b * (c.backhaul[j] + 1) / self.config.cloud.backhaul_bps + pc
        cloud = max(arrive, busy[k + 1]) + (c.cycles[k + 1] + cyc) / cpu[k + 1] + pc
        out[k + 2] = cloud if self._available[k + 1] else np.inf
        return out

    def delay_table(self) -> FloatArray:
        """(U, K+3) delay each user's task would see in each mode if it were the slot's only
        task: `mode_delays` without contention, for every user at once (inf where the node is
        down).  Learners read it as a feature; they learn what contention adds."""
        k, u = self.n_uavs, self.n_users
        busy, cpu = self.busy_s, self._cpu
        b, cyc = self.task_bits, self.task_cycles
        out = np.empty((u, k + 3))
        out[:, 0] = busy[k + 2:] + cyc / cpu[k + 2:]
        rate = self._band.rate(self._link_q.reshape(u, k), np.ones((u, k), dtype=np.intp))
        prop = self.distance_m / SPEED_OF_LIGHT_M_S
        uav = (np.maximum(b[:, None] / rate + prop, busy[:k]) + cyc[:, None] / cpu[:k] + prop)
        out[:, 1:k + 1] = np.where(self.alive, uav, np.inf)
        sp = self._sat_prop_s
        arrive = b / self.satellite_rate_bps(1) + sp
        sat = np.maximum(arrive, busy[k]) + cyc / cpu[k] + sp
        out[:, k + 1] = sat if self._available[k] else np.inf
        j = self.nearest_uav
        pc = prop[self._users, j] + self._half_wan_s
        arrive = b / rate[self._users, j] + b / self.config.cloud.backhaul_bps + pc
        cloud = np.maximum(arrive, busy[k + 1]) + cyc / cpu[k + 1] + pc
        out[:, k + 2] = cloud if self._available[k + 1] else np.inf
        return out

    # ------------------------------------------------------------------------- internals
    def _fly(self, velocity: npt.ArrayLike) -> FloatArray:
        """Move the UAVs for one slot inside the area and altitude band; flight joules (K,)."""
        v = np.minimum(np.maximum(velocity, self._move_lo), self._move_hi)  # vertical limit
        vmax = self.config.uav.max_speed_m_s
        horizontal = np.maximum(np.hypot(v[:, 0], v[:, 1]), vmax)
        scale = self._move_scale  # (K, 3): slot length, horizontally times min(1, vmax/speed)
        scale[:, :2] = (self._vmax_slot / horizontal)[:, None]
        move = v * scale
        if self._n_alive < self.n_uavs:
            move *= self.alive[:, None]
        old = self.uav_xyz
        new = np.minimum(np.maximum(old + move, self._area_lo), self._area_hi)
        flown = new - old
        self.uav_xyz = new
        self._geometry_stale = True
        joules = self._flight(np.hypot(flown[:, 0], flown[:, 1]), flown[:, 2])
        return joules * self.alive if self._n_alive < self.n_uavs else joules

    def _set_alive(self, alive: BoolArray) -> None:
        k = self.n_uavs
        self.alive = alive
        self._n_alive = int(np.count_nonzero(alive))
        self._available[:k] = alive
        # the cloud needs a UAV to relay
        self._available[k + 1] = self._n_alive > 0 and self.config.cloud.enabled
        self._geometry_stale = True

    def _walk(self) -> None:
        """Random waypoint: walk toward the waypoint; on arrival draw the next one."""
        delta = self._waypoint - self.user_xy
        dist = np.hypot(delta[:, 0], delta[:, 1])
        reach = self._user_speed * self.config.slot_s
        arrived = dist <= reach
        frac = np.where(arrived, 1.0, reach / np.maximum(dist, 1e-12))
        self.user_xy = self.user_xy + delta * frac[:, None]
        fresh = self._rng.random((self.n_users, 2)) * self.config.area_m
        self._waypoint = np.where(arrived[:, None], fresh, self._waypoint)
        self._geometry_stale = True

    def _update_geometry(self) -> None:
        """Distances, full-band uplink SNR, nearest live UAV, and the lookup tables they feed."""
        k = self.n_uavs
        self.distance_m, self.snr_db = self._uplink(self.user_xy, self.uav_xyz)
        self._link_q = self._band.prepare(self.snr_db).ravel()
        dist = self.distance_m
        if self._n_alive < k:
            dist = np.where(self.alive, dist, np.inf)
        nearest = self.nearest_uav = dist.argmin(axis=1)
        relay = self._relay
        relay[:, 0] = relay[:, k + 1] = relay[:, k + 2] = nearest
        one_way = self.distance_m * (1.0 / SPEED_OF_LIGHT_M_S)
        self._prop[:, 1:k + 1] = one_way
        self._prop[:, k + 2] = one_way.ravel()[self._row_k + nearest] + self._half_wan_s
        self._geometry_stale = False

    def _new_tasks(self) -> None:
        """Draw the next slot's tasks (users without one get zero bits and cycles)."""
        cfg = self.config.tasks
        r = self._rng.random((4, self.n_users))
        if cfg.arrival == "bernoulli":
            active = r[0] < cfg.arrival_rate
            count: FloatArray | BoolArray = active
        else:
            count = self._rng.poisson(cfg.arrival_rate, self.n_users).astype(np.float64)
            active = count > 0.0
        draw = self._task_lo + self._task_span * r  # rows: -, bits, cycles/bit, deadline
        self.task_active = active
        self.task_bits = draw[1] * count
        self.task_cycles = self.task_bits * draw[2]
        self.task_deadline_s = draw[3]
        self._n_tasks = int(np.count_nonzero(active))
        self._generated += self._n_tasks


METRIC_KEYS = ("tasks", "admitted", "dropped", "deadline_ratio", "mean_delay_s",
               "mean_effective_delay_s", "delay_sum_s", "effective_delay_sum_s", "uav_energy_j",
               "uav_compute_j", "queue_s", "backlog_gcycles", "load_balance", "revenue", "profit")
