"""Channels: a validated spec turned into an object that maps geometry to link quality.

`build_channel(spec)` returns a `Channel`; `sample(distance_m, elevation_deg)` gives the
`LinkQuality` the emulator applies to a link (netem rate and loss).  Elevation is that of
the higher end seen from the lower end; only the a2g and satellite models use it.

Rate is the Shannon or MCS rate times the spec's efficiency, capped by max_rate_mbps.
Loss is the logistic PER of testbed.channels.rate, and 100 % when the rate is 0.  A link
that still delivers packets gets at least 0.01 Mbit/s, so a rate can always be set.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from pydantic import TypeAdapter

from testbed.channels import a2g, rate, satellite, v2x
from testbed.channels.config import (
    A2GSpec,
    ChannelSpec,
    FreeSpaceSpec,
    LogDistanceSpec,
    RateSpec,
    SatelliteSpec,
    V2XSpec,
)
from testbed.channels.free_space import fspl_db, log_distance_db

MIN_RATE_MBPS = 0.01
THERMAL_NOISE_DBM_HZ = -174.0


@dataclass(frozen=True)
class LinkQuality:
    snr_db: float
    rate_mbps: float
    loss_pct: float


class Channel(Protocol):
    def sample(self, distance_m: float, elevation_deg: float) -> LinkQuality: ...

    def sample_many(self, distance_m: np.ndarray, elevation_deg: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class LinkAdapter:
    """SNR → rate and loss, per a RateSpec, for one bandwidth."""

    spec: RateSpec
    bandwidth_hz: float

    @property
    def loss_threshold_db(self) -> float:
        if self.spec.loss_threshold_db is not None:
            return self.spec.loss_threshold_db
        return rate.min_threshold_db(self.spec.table) if self.spec.method == "mcs" else 0.0

    def quality(self, snr_db: float) -> LinkQuality:
        mbps, loss = self.quality_many(np.array([float(snr_db)]))
        return LinkQuality(float(snr_db), float(mbps[0]), float(loss[0]))

    def quality_many(self, snr_db: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rate Mbit/s, loss %) for an array of SNRs: the rate of the method, capped, and a
        link that carries nothing (rate 0) loses everything."""
        snr = np.asarray(snr_db, dtype=float)
        if self.spec.method == "mcs":
            bps = rate.mcs_rate_bps(snr, self.bandwidth_hz, self.spec.table)
        else:
            bps = rate.shannon_rate_bps(snr, self.bandwidth_hz, self.spec.gap_db)
        mbps = np.asarray(bps, dtype=float) * self.spec.efficiency / 1e6
        if self.spec.max_rate_mbps is not None:
            mbps = np.minimum(mbps, self.spec.max_rate_mbps)
        per = rate.packet_loss(snr, self.loss_threshold_db, self.spec.loss_slope_db)
        dead = mbps <= 0.0
        return (np.where(dead, 0.0, np.maximum(mbps, MIN_RATE_MBPS)),
                np.where(dead, 100.0, 100.0 * per))


@dataclass(frozen=True)
class TerrestrialChannel:
    """Transmit power, antenna gains and receiver noise around a path-loss function."""

    path_loss_db: Callable[[float, float], float]  # (distance_m, elevation_deg) -> dB
    link_budget_db: float  # P_tx + G - N: SNR = this - PL
    link: LinkAdapter

    def sample(self, distance_m: float, elevation_deg: float) -> LinkQuality:
        return self.link.quality(self.link_budget_db - self.path_loss_db(distance_m,
                                                                          elevation_deg))

    def sample_many(self, distance_m: np.ndarray, elevation_deg: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Many links at once (the path-loss formulas are numpy): (SNR dB, rate, loss %)."""
        snr = self.link_budget_db - np.asarray(self.path_loss_db(distance_m, elevation_deg),
                                               dtype=float)
        mbps, loss = self.link.quality_many(snr)
        return snr, mbps, loss


@dataclass(frozen=True)
class SatelliteChannel:
    spec: SatelliteSpec
    link: LinkAdapter

    def sample(self, distance_m: float, elevation_deg: float) -> LinkQuality:
        s = self.spec
        snr = satellite.snr_db(distance_m / 1e3, elevation_deg, band=s.band, eirp_dbw=s.eirp_dbw,
                               g_over_t_dbk=s.g_over_t_dbk, bandwidth_hz=s.bandwidth_hz,
                               rain_rate_mm_h=s.rain_rate_mm_h, extra_loss_db=s.extra_loss_db)
        return self.link.quality(snr)

    def sample_many(self, distance_m: np.ndarray, elevation_deg: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Many links at once (the link budget is numpy): (SNR dB, rate, loss %)."""
        s = self.spec
        snr = np.asarray(satellite.snr_db(
            np.asarray(distance_m, dtype=float) / 1e3, np.asarray(elevation_deg, dtype=float),
            band=s.band, eirp_dbw=s.eirp_dbw, g_over_t_dbk=s.g_over_t_dbk,
            bandwidth_hz=s.bandwidth_hz, rain_rate_mm_h=s.rain_rate_mm_h,
            extra_loss_db=s.extra_loss_db), dtype=float)
        mbps, loss = self.link.quality_many(snr)
        return snr, mbps, loss


Terrestrial = FreeSpaceSpec | LogDistanceSpec | A2GSpec | V2XSpec


def _path_loss(spec: Terrestrial) -> Callable[[float, float], float]:
    match spec:
        case V2XSpec():
            return lambda d, _el: v2x.path_loss_db(d, spec.freq_hz, spec.environment)
        case LogDistanceSpec():
            return lambda d, _el: log_distance_db(d, spec.freq_hz, spec.exponent, spec.d0_m)
        case A2GSpec():
            return lambda d, el: a2g.mean_path_loss_db(d, el, spec.freq_hz, spec.environment)
        case _:
            return lambda d, _el: fspl_db(d, spec.freq_hz)


def _terrestrial(spec: Terrestrial) -> TerrestrialChannel:
    noise_dbm = THERMAL_NOISE_DBM_HZ + 10.0 * math.log10(spec.bandwidth_hz) + spec.noise_figure_db
    return TerrestrialChannel(path_loss_db=_path_loss(spec),
                              link_budget_db=spec.tx_power_dbm + spec.antenna_gain_dbi - noise_dbm,
                              link=LinkAdapter(spec.rate, spec.bandwidth_hz))


_SPEC_ADAPTER: TypeAdapter[Any] = TypeAdapter(ChannelSpec)


def build_channel(spec: ChannelSpec | Mapping[str, Any]) -> Channel:
    """A Channel for a spec (a validated model, or a mapping validated here)."""
    if isinstance(spec, Mapping):
        spec = _SPEC_ADAPTER.validate_python(spec)
    if isinstance(spec, SatelliteSpec):
        return SatelliteChannel(spec, LinkAdapter(spec.rate, spec.bandwidth_hz))
    return _terrestrial(spec)
