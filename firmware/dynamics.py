"""Multirotor flight and energy: what the autopilot simulation moves and drains.

Flight is a point mass in a local north/east/down frame tracking a velocity command, with
PX4's limits (parameters MPC_XY_VEL_MAX, MPC_Z_VEL_MAX_UP/DN, MPC_ACC_HOR/VERT,
MPC_YAWRAUTO_MAX) applied to the command and its rate of change: enough to reproduce
realistic flight times, speeds and positions for networking and offloading studies, not
attitude dynamics.

Energy uses the rotary-wing propulsion power model of Zeng, Xu and Zhang, "Energy
Minimization for Wireless Communication With Rotary-Wing UAV", IEEE TWC 18(4), 2019, eq. (12):

    P(V) = P0 (1 + 3 V^2 / U_tip^2) + Pi sqrt( sqrt(1 + V^4 / (4 v0^4)) - V^2 / (2 v0^2) )
           + 1/2 d0 rho s A V^3

with V the airspeed (ground velocity minus wind) and the paper's parameters (P0 = 79.86 W
blade profile, Pi = 88.63 W induced power in hover, U_tip = 120 m/s, v0 = 4.03 m/s mean
rotor induced velocity, d0 = 0.6, rho = 1.225 kg/m^3, s = 0.05, A = 0.503 m^2), plus a
climb term (weight x climb rate / efficiency), avionics and the payload's compute power.
The battery is an energy reservoir with a linear open-circuit voltage between empty and
full (4S LiPo by default); the MEC controllers read the same figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Limits:
    xy_vel: float = 12.0  # MPC_XY_VEL_MAX
    z_vel_up: float = 3.0  # MPC_Z_VEL_MAX_UP
    z_vel_down: float = 1.5  # MPC_Z_VEL_MAX_DN
    acc_xy: float = 3.0  # MPC_ACC_HOR
    acc_z: float = 4.0  # MPC_ACC_UP_MAX
    yaw_rate: float = math.radians(45.0)  # MPC_YAWRAUTO_MAX
    pos_gain: float = 0.95  # MPC_XY_P / MPC_Z_P: position error (m) -> velocity (m/s)


@dataclass(frozen=True)
class PowerModel:
    p0: float = 79.86
    pi: float = 88.63
    u_tip: float = 120.0
    v0: float = 4.03
    d0: float = 0.6
    rho: float = 1.225
    s: float = 0.05
    area: float = 0.503
    mass_kg: float = 2.0
    climb_efficiency: float = 0.7
    avionics_w: float = 5.0

    def propulsion_w(self, airspeed: float, climb_rate: float = 0.0) -> float:
        v = airspeed
        blade = self.p0 * (1.0 + 3.0 * v * v / (self.u_tip * self.u_tip))
        ratio = v * v / (2.0 * self.v0 * self.v0)
        induced = self.pi * math.sqrt(max(0.0, math.sqrt(1.0 + ratio * ratio) - ratio))
        parasite = 0.5 * self.d0 * self.rho * self.s * self.area * v ** 3
        climb = max(0.0, climb_rate) * self.mass_kg * 9.81 / self.climb_efficiency
        return blade + induced + parasite + climb


@dataclass
class Battery:
    capacity_wh: float = 74.0  # 4S 5000 mAh
    cells: int = 4
    v_full: float = 4.2
    v_empty: float = 3.5
    used_wh: float = 0.0

    @property
    def remaining(self) -> float:
        return max(0.0, 1.0 - self.used_wh / self.capacity_wh)

    @property
    def voltage(self) -> float:
        return self.cells * (self.v_empty + (self.v_full - self.v_empty) * self.remaining)

    def drain(self, watts: float, dt: float) -> None:
        self.used_wh = min(self.capacity_wh, self.used_wh + watts * dt / 3600.0)


@dataclass
class Body:
    """State in the local NED frame (metres, m/s, radians)."""

    pos: np.ndarray = field(default_factory=lambda: np.zeros(3))
    vel: np.ndarray = field(default_factory=lambda: np.zeros(3))
    yaw: float = 0.0
    power_w: float = 0.0


def velocity_for(body: Body, target: np.ndarray, limits: Limits,
                 max_xy: float | None = None) -> np.ndarray:
    """Velocity command toward a position target (P controller, saturated)."""
    cmd = limits.pos_gain * (target - body.pos)
    return saturate(cmd, limits, max_xy)


def saturate(cmd: np.ndarray, limits: Limits, max_xy: float | None = None) -> np.ndarray:
    out = np.array(cmd, dtype=float)
    xy = float(np.hypot(out[0], out[1]))
    cap = min(limits.xy_vel, max_xy) if max_xy else limits.xy_vel
    if xy > cap:
        out[:2] *= cap / xy
    out[2] = min(max(out[2], -limits.z_vel_up), limits.z_vel_down)  # NED: up is negative
    return out


def step(body: Body, vel_cmd: np.ndarray, yaw_cmd: float | None, dt: float, limits: Limits,
         power: PowerModel, wind: np.ndarray, flying: bool, compute_w: float = 0.0) -> None:
    """Advance the body by dt toward the commanded velocity; update its power draw."""
    dv = vel_cmd - body.vel
    dxy = float(np.hypot(dv[0], dv[1]))
    max_xy = limits.acc_xy * dt
    if dxy > max_xy:
        dv[:2] *= max_xy / dxy
    dv[2] = min(max(dv[2], -limits.acc_z * dt), limits.acc_z * dt)
    body.vel = body.vel + dv
    body.pos = body.pos + body.vel * dt
    if body.pos[2] > 0.0:  # the ground (home altitude) stops a descent
        body.pos[2] = 0.0
        body.vel[2] = min(body.vel[2], 0.0)
    if yaw_cmd is not None:
        err = (yaw_cmd - body.yaw + math.pi) % (2 * math.pi) - math.pi
        body.yaw += max(-limits.yaw_rate * dt, min(limits.yaw_rate * dt, err))
    if flying:
        air = body.vel - wind
        body.power_w = power.propulsion_w(float(np.hypot(air[0], air[1])),
                                          -float(body.vel[2])) + power.avionics_w + compute_w
    else:
        body.power_w = power.avionics_w + compute_w
