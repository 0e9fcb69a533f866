"""Flat observation and action vectors for learners, and their structured meaning.

Observation (float32, every entry in [0, 1]; `Observer.layout` names the slices, in order):

  uav_xyz (K*3)      x / area, y / area, (height - lowest) / (highest - lowest)
  battery (K)        remaining / full
  backlog (K+2+U)    busy time / longest deadline, capped at 1, of every server in the
                     model's order: UAVs, satellite, cloud, then each user's own CPU
  user_xy (U*2)      x / area, y / area
  task (4*U)         rows: has a task, bits / max bits, cycles / max cycles, deadline / max
                     (sizes capped at 1; merged Poisson arrivals can exceed the max)
  uplink_snr (U*K)   full-band SNR to each UAV, (dB + 10) / 60 clipped: -10..50 dB
  satellite (2)      a lone user's satellite rate / (band x 4.5 bit/s/Hz), elevation / 90
  time (1)           slot / episode length

Action (float32 in [-1, 1]; `ActionCodec` decodes and encodes):

  modes     "argmax": U*(K+3) scores, row-major per user, mode = argmax of the user's row -
            the usual relaxation of a discrete choice for DDPG-style actors, and MUECRS's
            discrete half of its mixed action.  "bin": U values, mode = floor((a+1)/2 * (K+3))
            (compact, but it imposes an order on the modes).
  shares    U values, share weight = (a + 1) / 2 (normalised per node by the model).
  velocity  K*3 values (east, north, up) times (v_max, v_max, v_vertical); the model caps
            the horizontal speed at v_max, so the corners of the box fly at v_max too.

The per-agent (UAV) action of the parallel env is the same with one velocity (3 values); the
rows of users an agent is not responsible for are ignored (`ActionCodec.decode_joint`).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

from controllers.offload.config import OffloadConfig
from controllers.offload.model import Decision, OffloadModel

ModeEncoding = Literal["argmax", "bin"]
SNR_FLOOR_DB, SNR_SPAN_DB = -10.0, 60.0
MAX_SPECTRAL_EFFICIENCY = 4.5  # bit/s/Hz, about DVB-S2's top entry


class Observer:
    """Writes the observation of a model into a reused buffer; returns copies."""

    def __init__(self, config: OffloadConfig) -> None:
        k, u = config.n_uavs, config.n_users
        sizes = {"uav_xyz": 3 * k, "battery": k, "backlog": k + 2 + u, "user_xy": 2 * u,
                 "task": 4 * u, "uplink_snr": u * k, "satellite": 2, "time": 1}
        self.layout: dict[str, slice] = {}
        start = 0
        for name, size in sizes.items():
            self.layout[name] = slice(start, start + size)
            start += size
        self.size = start
        self._buf = np.zeros(start, dtype=np.float32)
        v = {name: self._buf[sl] for name, sl in self.layout.items()}
        self._uav_xyz = v["uav_xyz"].reshape(k, 3)
        self._battery, self._backlog, self._snr = v["battery"], v["backlog"], v["uplink_snr"]
        self._user_xy = v["user_xy"].reshape(u, 2)
        self._task = v["task"].reshape(4, u)
        self._size_rows = self._task[1:3]  # bits and cycles: the rows that need a cap
        self._satellite, self._time = v["satellite"], v["time"]
        h_lo, h_hi = config.uav.altitude_m
        self._xyz_scale = 1.0 / np.array([config.area_m, config.area_m, max(h_hi - h_lo, 1e-9)])
        self._xyz_offset = (-h_lo * self._xyz_scale[2] * np.array([0.0, 0.0, 1.0])
                            ).astype(np.float32)
        self._battery_scale = 1.0 / (config.uav.battery_wh * 3600.0)
        self._busy_scale = 1.0 / config.tasks.deadline_s[1]
        t = config.tasks
        self._bits_scale = 1.0 / t.bits[1]
        self._cycles_scale = 1.0 / (t.bits[1] * t.cycles_per_bit[1])
        self._deadline_scale = 1.0 / t.deadline_s[1]
        self._area_scale = 1.0 / config.area_m
        self._sat_scale = 1.0 / (config.satellite.link.bandwidth_hz * MAX_SPECTRAL_EFFICIENCY)
        self._episode = config.episode_slots
        self._last_user_xy: npt.NDArray[np.float64] | None = None
        self._last_elevation = float("nan")

    def __call__(self, model: OffloadModel) -> npt.NDArray[np.float32]:
        # ufuncs write straight into float32 views of the buffer: one operation per piece
        mul, minimum = np.multiply, np.minimum
        xyz = mul(model.uav_xyz, self._xyz_scale, out=self._uav_xyz)
        xyz += self._xyz_offset
        mul(model.battery_j, self._battery_scale, out=self._battery)
        minimum(mul(model.busy_s, self._busy_scale, out=self._backlog), 1.0, out=self._backlog)
        if model.user_xy is not self._last_user_xy:  # the model replaces it when users move
            mul(model.user_xy, self._area_scale, out=self._user_xy)
            self._last_user_xy = model.user_xy
        task = self._task
        task[0] = model.task_active
        mul(model.task_bits, self._bits_scale, out=task[1])
        mul(model.task_cycles, self._cycles_scale, out=task[2])
        mul(model.task_deadline_s, self._deadline_scale, out=task[3])
        minimum(self._size_rows, 1.0, out=self._size_rows)
        snr = mul(model.snr_db.ravel(), 1.0 / SNR_SPAN_DB, out=self._snr)
        snr -= SNR_FLOOR_DB / SNR_SPAN_DB
        np.maximum(minimum(snr, 1.0, out=snr), 0.0, out=snr)
        if model.sat_elevation_deg != self._last_elevation:  # drawn once per episode
            self._satellite[0] = min(model.satellite_rate_bps(1) * self._sat_scale, 1.0)
            self._satellite[1] = model.sat_elevation_deg / 90.0
            self._last_elevation = model.sat_elevation_deg
        self._time[0] = min(model.t / self._episode, 1.0)
        return self._buf.copy()


class ActionCodec:
    """Flat [-1, 1] actions <-> `Decision`s, for one central controller or per-UAV agents."""

    def __init__(self, config: OffloadConfig, encoding: ModeEncoding = "argmax") -> None:
        if encoding not in ("argmax", "bin"):
            raise ValueError(f"unknown mode encoding {encoding!r}")
        self.encoding = encoding
        k, u = config.n_uavs, config.n_users
        self._k, self._u, self._m = k, u, k + 3
        self.mode_size = u * self._m if encoding == "argmax" else u
        self.size = self.mode_size + u + 3 * k  # central controller
        self.agent_size = self.mode_size + u + 3  # one UAV agent
        uav = config.uav
        self._vel_scale = np.array([uav.max_speed_m_s, uav.max_speed_m_s,
                                    uav.max_vertical_speed_m_s])

    def _modes(self, block: npt.NDArray) -> npt.NDArray[np.int64]:
        """Modes from a mode block: (..., U*M) scores or (..., U) bins -> (..., U)."""
        if self.encoding == "argmax":
            return block.reshape(*block.shape[:-1], self._u, self._m).argmax(axis=-1)
        bins = ((block + 1.0) * (0.5 * self._m)).astype(np.int64)
        return np.minimum(np.maximum(bins, 0), self._m - 1)

    def decode(self, action: npt.ArrayLike) -> Decision:
        """A central controller's flat action -> Decision."""
        a = np.asarray(action)
        ms, u = self.mode_size, self._u
        block = a[:ms]
        mode = (block.reshape(u, self._m).argmax(axis=1) if self.encoding == "argmax"
                else self._modes(block))
        return Decision(mode, a[ms:ms + u] * 0.5 + 0.5,
                        a[ms + u:].reshape(self._k, 3) * self._vel_scale)

    def decode_joint(self, actions: npt.ArrayLike,
                     responsible: npt.NDArray[np.int64]) -> Decision:
        """Per-agent actions (K, agent_size) -> Decision: user i's mode and share come from
        agent responsible[i]'s row, each agent's velocity from its own row."""
        a = np.asarray(actions)
        ms, u = self.mode_size, self._u
        users = np.arange(u)
        if self.encoding == "argmax":
            scores = a[:, :ms].reshape(self._k, u, self._m)[responsible, users]
            mode = scores.argmax(axis=-1)
        else:
            mode = self._modes(a[responsible, users])
        share = a[responsible, ms + users] * 0.5 + 0.5
        return Decision(mode, share, a[:, ms + u:] * self._vel_scale)

    def encode(self, decision: Decision) -> npt.NDArray[np.float32]:
        """Decision -> a central action that decodes back to it (shares clipped to [0, 1])."""
        mode = np.asarray(decision.mode)
        if self.encoding == "argmax":
            block = -np.ones((self._u, self._m))
            block[np.arange(self._u), mode] = 1.0
        else:
            block = (mode + 0.5) * (2.0 / self._m) - 1.0
        share = np.clip(np.asarray(decision.share, dtype=np.float64), 0.0, 1.0) * 2.0 - 1.0
        vel = np.clip(np.asarray(decision.velocity) / self._vel_scale, -1.0, 1.0)
        return np.concatenate([block.ravel(), share, vel.ravel()]).astype(np.float32)
