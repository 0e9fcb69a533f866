"""Channel specifications as validated, immutable data (pydantic), selected by `model`.

A scenario names a channel model and its parameters; these classes check them once, at
load time, so the per-tick code never has to.  `ChannelSpec` is a discriminated union on
the `model` field, so a wrong name or a stray field fails with a pointed error.

Terrestrial models (free-space, log-distance, a2g) share the radio fields and compute::

    N   = -174 dBm/Hz + 10·log10(B) + NF         (thermal noise at 290 K plus noise figure)
    SNR = P_tx + G - PL - N                      (G: sum of both antenna gains)

The satellite model works from EIRP and G/T instead (see testbed.channels.satellite).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

_FROZEN = ConfigDict(extra="forbid", frozen=True)


class RateSpec(BaseModel):
    """How SNR becomes rate and loss (see testbed.channels.rate)."""

    model_config = _FROZEN

    method: Literal["shannon", "mcs"] = "shannon"
    gap_db: float = Field(3.0, ge=0)  # Shannon SNR gap
    table: Literal["dvb-s2", "802.11ac", "802.11p"] = "802.11ac"  # for method "mcs"
    efficiency: float = Field(1.0, gt=0, le=1)  # fraction of the PHY rate left as IP goodput
    max_rate_mbps: float | None = Field(None, gt=0)
    # PER is 50 % here; None: the table's lowest threshold (mcs) or 0 dB (shannon)
    loss_threshold_db: float | None = None
    loss_slope_db: float = Field(1.0, gt=0)


class _RadioSpec(BaseModel):
    model_config = _FROZEN

    freq_hz: float = Field(5.8e9, gt=0)
    tx_power_dbm: float = 20.0
    antenna_gain_dbi: float = 0.0  # sum of both ends
    noise_figure_db: float = Field(7.0, ge=0)
    bandwidth_hz: float = Field(20e6, gt=0)
    rate: RateSpec = RateSpec()


class FreeSpaceSpec(_RadioSpec):
    model: Literal["free-space"]


class LogDistanceSpec(_RadioSpec):
    model: Literal["log-distance"]
    exponent: float = Field(3.0, gt=1, le=6)
    d0_m: float = Field(1.0, gt=0)


class A2GSpec(_RadioSpec):
    model: Literal["a2g"]
    environment: Literal["suburban", "urban", "dense-urban", "highrise-urban"] = "urban"
    freq_hz: float = Field(2.0e9, gt=0)  # the frequency the environment constants fit


class V2XSpec(_RadioSpec):
    """Vehicle-to-vehicle and vehicle-to-RSU radio (ITS-G5 / DSRC, 802.11p at 5.9 GHz in a
    10 MHz channel) with 3GPP TR 37.885 path loss (testbed.channels.v2x)."""

    model: Literal["v2x"]
    environment: Literal["highway", "urban", "urban-nlos"] = "urban"
    freq_hz: float = Field(5.9e9, gt=0)
    tx_power_dbm: float = 23.0
    bandwidth_hz: float = Field(10e6, gt=0)
    rate: RateSpec = RateSpec(method="mcs", table="802.11p")


class SatelliteSpec(BaseModel):
    model_config = _FROZEN

    model: Literal["satellite"]
    band: Literal["S", "Ku", "Ka"] = "Ku"
    eirp_dbw: float = 36.0
    g_over_t_dbk: float = 9.2
    bandwidth_hz: float = Field(250e6, gt=0)
    rain_rate_mm_h: float = Field(0.0, ge=0)
    extra_loss_db: float = 0.0
    rate: RateSpec = RateSpec(method="mcs", table="dvb-s2")


ChannelSpec = Annotated[FreeSpaceSpec | LogDistanceSpec | A2GSpec | V2XSpec | SatelliteSpec,
                        Field(discriminator="model")]
