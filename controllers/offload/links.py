"""Link rates of the offloading model, vectorised over users, from testbed.channels formulas.

The emulator's `Channel.sample` maps one (distance, elevation) pair to a rate; a controller
slot needs every user-UAV pair at once, thousands of times a second.  These functions apply
the same formulas (a2g path loss, satellite budget, Shannon/MCS rate, efficiency, cap and
floor of testbed.channels.model.LinkAdapter) to whole numpy arrays, so the model and the live
emulation agree on what a link carries.  Packet loss is not charged: link-layer ARQ is assumed
to recover it, at the cost the SNR gap already stands for.

Sharing: a band of B Hz used by n transmitters is split equally (OFDMA).  Each keeps its full
transmit power on B/n Hz, so its SNR rises by 10·log10(n) dB while its bandwidth falls n-fold.
Bands of different UAVs are orthogonal (no inter-UAV interference, assumed).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from testbed.channels import a2g, rate, satellite
from testbed.channels.config import A2GSpec, RateSpec, SatelliteSpec
from testbed.channels.free_space import fspl_db
from testbed.channels.model import MIN_RATE_MBPS, THERMAL_NOISE_DBM_HZ

FloatArray = npt.NDArray[np.float64]

SPEED_OF_LIGHT_M_S = 299_792_458.0
EARTH_RADIUS_M = 6_371_000.0
MIN_RATE_BPS = MIN_RATE_MBPS * 1e6


def link_rate_bps(snr_db: FloatArray | float, bandwidth_hz: FloatArray | float,
                  spec: RateSpec) -> FloatArray:
    """IP goodput in bit/s as LinkAdapter computes it, elementwise.

    A link below the lowest MCS threshold gets the emulator's floor (0.01 Mbit/s) instead of
    0: tasks on it miss their deadline without inf arithmetic.
    """
    if spec.method == "mcs":
        phy = rate.mcs_rate_bps(snr_db, 1.0, spec.table) * bandwidth_hz
    else:
        phy = rate.shannon_rate_bps(snr_db, 1.0, spec.gap_db) * bandwidth_hz
    bps = np.multiply(phy, spec.efficiency)
    if spec.max_rate_mbps is not None:
        bps = np.minimum(bps, spec.max_rate_mbps * 1e6)
    return np.maximum(bps, MIN_RATE_BPS)


def sharing_gain_db(max_users: int) -> FloatArray:
    """10·log10(n) for n = 0..max_users (entry 0 = entry 1): the SNR gain of a 1/n sub-band."""
    n = np.arange(max_users + 1, dtype=np.float64)
    return 10.0 * np.log10(np.maximum(n, 1.0))


class SharedBand:
    """Per-user rate on a band split equally among n transmitters, from full-band SNRs.

    `prepare` turns full-band SNRs (dB) into the per-link quantity `rate` needs; `rate` takes
    those quantities and each user's sharer count n (0 counts as 1).  For an uncapped Shannon
    link the quantity is the linear SNR over the gap, since
    (B/n)·log2(1 + 10^((SNR + 10·log10 n - Γ)/10)) = (B/n)·log2(1 + n·SNR_lin/Γ_lin):
    no dB conversion per slot.  Other rate specs go through `link_rate_bps` in dB.
    """

    def __init__(self, spec: RateSpec, bandwidth_hz: float, max_users: int) -> None:
        self._spec = spec
        n = np.maximum(np.arange(max_users + 1, dtype=np.float64), 1.0)
        self._bw = bandwidth_hz / n
        self._gain_db = sharing_gain_db(max_users)
        self._linear = spec.method == "shannon" and spec.max_rate_mbps is None
        self._inv_gap = 10.0 ** (-spec.gap_db / 10.0)
        self._log_scale = self._bw * (spec.efficiency / math.log(2.0))
        self._n = n

    def prepare(self, snr_db: FloatArray) -> FloatArray:
        return np.power(10.0, snr_db * 0.1) * self._inv_gap if self._linear else snr_db

    def rate(self, prepared: FloatArray, n: npt.NDArray[np.intp]) -> FloatArray:
        if self._linear:
            return np.maximum(self._log_scale[n] * np.log1p(prepared * self._n[n]), MIN_RATE_BPS)
        return link_rate_bps(prepared + self._gain_db[n], self._bw[n], self._spec)


def a2g_budget_db(spec: A2GSpec) -> float:
    """P_tx + G - N over the whole band (dB): SNR = budget - path loss, as TerrestrialChannel."""
    noise_dbm = THERMAL_NOISE_DBM_HZ + 10.0 * math.log10(spec.bandwidth_hz) + spec.noise_figure_db
    return spec.tx_power_dbm + spec.antenna_gain_dbi - noise_dbm


class A2GUplink:
    """Full-band uplink SNR of every user-UAV pair, Al-Hourani constants folded in.

    The same formulas as `a2g.mean_path_loss_db` (FSPL of testbed.channels.free_space plus
    the LoS-weighted excess loss) and TerrestrialChannel's budget, rearranged so that a slot
    costs about fifteen array operations instead of thirty::

        P_LoS = 1 / (1 + exp(c1·θ_rad + c2)),  c1 = -b·180/π,  c2 = a·b + ln a
        SNR   = budget - FSPL(1 m, f) - η_NLoS - 10·log10(d²) - (η_LoS - η_NLoS)·P_LoS

    Distances are >= 1 m here (UavConfig keeps UAVs at >= 10 m), so FSPL's 1 m clamp never
    acts.
    """

    def __init__(self, spec: A2GSpec) -> None:
        env = a2g.ENVIRONMENTS[spec.environment]
        self._c1 = -env.b * 180.0 / math.pi
        self._c2 = env.a * env.b + math.log(env.a)
        self._neg_delta = -(env.eta_los_db - env.eta_nlos_db)
        self._base = a2g_budget_db(spec) - float(fspl_db(1.0, spec.freq_hz)) - env.eta_nlos_db

    def __call__(self, users_xy: FloatArray,
                 uavs_xyz: FloatArray) -> tuple[FloatArray, FloatArray]:
        """(distance m, SNR dB), each (U, K), users on the ground, UAVs at (x, y, height)."""
        # x + iy views (no copies): |user - uav| is the horizontal distance, in one operation
        horizontal = np.abs(np.ascontiguousarray(users_xy).view(np.complex128)
                            - uavs_xyz[:, :2].view(np.complex128).T)
        h = uavs_xyz[:, 2]
        d2 = horizontal * horizontal + h * h
        los = self._neg_delta / (np.exp(np.arctan2(h, horizontal) * self._c1 + self._c2) + 1.0)
        snr = (los + self._base) - 10.0 * np.log10(d2)
        return np.sqrt(d2), snr


def slant_range_m(altitude_m: float, elevation_deg: float) -> float:
    """Ground-to-satellite distance at an elevation, spherical Earth."""
    el = math.radians(elevation_deg)
    r = EARTH_RADIUS_M
    return math.sqrt((r + altitude_m) ** 2 - (r * math.cos(el)) ** 2) - r * math.sin(el)


def satellite_rate_table(spec: SatelliteSpec, range_m: float, elevation_deg: float,
                         max_users: int) -> FloatArray:
    """Per-user rate (bit/s) when n users share the satellite band, n = 0..max_users.

    Entry 0 equals entry 1 (a lone user), so indexing with a count is always valid.
    """
    snr = satellite.snr_db(range_m / 1e3, elevation_deg, band=spec.band, eirp_dbw=spec.eirp_dbw,
                           g_over_t_dbk=spec.g_over_t_dbk, bandwidth_hz=spec.bandwidth_hz,
                           rain_rate_mm_h=spec.rain_rate_mm_h, extra_loss_db=spec.extra_loss_db)
    n = np.maximum(np.arange(max_users + 1, dtype=np.float64), 1.0)
    return link_rate_bps(snr + 10.0 * np.log10(n), spec.bandwidth_hz / n, spec.rate)
