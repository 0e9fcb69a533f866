"""Channel models: formulas at known points, monotonicity, and specs that build channels."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError

from testbed.channels import ChannelSpec, LinkQuality, a2g, build_channel, rate, satellite
from testbed.channels.config import RateSpec
from testbed.channels.free_space import fspl_db, log_distance_db

pytestmark = pytest.mark.unit

SPEC = TypeAdapter(ChannelSpec)


def test_fspl_known_points() -> None:
    assert fspl_db(1000.0, 2.4e9) == pytest.approx(100.05, abs=0.05)
    assert fspl_db(550e3, 12e9) == pytest.approx(168.8, abs=0.1)
    assert fspl_db(0.0, 2.4e9) == fspl_db(1.0, 2.4e9)  # clamped, no -inf


def test_log_distance_with_exponent_2_is_free_space() -> None:
    d = np.array([1.0, 10.0, 123.0, 5e3])
    np.testing.assert_allclose(log_distance_db(d, 5.8e9, 2.0), fspl_db(d, 5.8e9))
    assert log_distance_db(0.5, 5.8e9, 3.0, d0_m=2.0) == log_distance_db(2.0, 5.8e9, 3.0, d0_m=2.0)
    assert log_distance_db(100.0, 5.8e9, 3.0) - fspl_db(1.0, 5.8e9) == pytest.approx(60.0)


def test_al_hourani_los_probability() -> None:
    assert a2g.p_los(90.0, "suburban") == pytest.approx(1.0, abs=1e-3)
    assert a2g.p_los(10.0, "highrise-urban") < 0.05
    p = a2g.p_los(np.linspace(0, 90, 19), "urban")
    assert np.all(np.diff(p) > 0)


def test_a2g_path_loss_between_los_and_nlos_and_monotone() -> None:
    d = np.linspace(50, 5000, 50)
    pl = a2g.mean_path_loss_db(d, 30.0, 2e9, "urban")
    assert np.all(np.diff(pl) > 0)
    excess = pl - fspl_db(d, 2e9)
    assert np.all((excess >= 1.0) & (excess <= 20.0))


def test_satellite_snr_falls_with_range_rain_and_low_elevation() -> None:
    near, far = satellite.snr_db(550.0, 90.0), satellite.snr_db(1100.0, 90.0)
    assert far == pytest.approx(near - 20 * np.log10(2), abs=1e-9)
    assert satellite.snr_db(550.0, 90.0, rain_rate_mm_h=25.0) < near
    assert satellite.snr_db(550.0, 20.0) < near  # more atmosphere, same range
    assert satellite.rain_attenuation_db(30.0, 25.0, "Ka") > satellite.rain_attenuation_db(
        30.0, 25.0, "Ku")
    assert satellite.gaseous_loss_db(0.0) == satellite.gaseous_loss_db(5.0)  # clamped


def test_shannon_rate() -> None:
    assert rate.shannon_rate_bps(0.0, 20e6) == pytest.approx(20e6)
    assert rate.shannon_rate_bps(3.0, 20e6, gap_db=3.0) == pytest.approx(20e6)
    assert rate.shannon_rate_bps(40.0, 20e6, max_spectral_eff=6.0) == pytest.approx(120e6)


@pytest.mark.parametrize(("snr", "mbps"), [
    (8.99, 0.0), (9.0, 6.5), (11.9, 6.5), (12.0, 13.0), (33.99, 78.0), (34.0, 86.7), (60, 86.7),
])
def test_mcs_wifi_boundaries(snr: float, mbps: float) -> None:
    assert rate.mcs_rate_bps(snr, 20e6, "802.11ac") / 1e6 == pytest.approx(mbps)


def test_mcs_dvbs2_takes_best_entry_met_and_vectorises() -> None:
    # 6.42 dB meets QPSK 9/10 (1.7886) and 8PSK 3/5 (1.7800): the better one wins
    assert rate.mcs_rate_bps(6.42, 1.0, "dvb-s2") == pytest.approx(1.788612)
    assert rate.mcs_rate_bps(6.41, 1.0, "dvb-s2") == pytest.approx(1.779991)
    got = rate.mcs_rate_bps(np.array([-3.0, -2.35, 16.05]), 1.0, "dvb-s2")
    np.testing.assert_allclose(got, [0.0, 0.490243, 4.453027])


def test_packet_loss_logistic() -> None:
    assert rate.packet_loss(5.0, 5.0) == pytest.approx(0.5)
    assert rate.packet_loss(-1e4, 0.0) == 1.0  # no overflow
    assert rate.packet_loss(1e4, 0.0) == 0.0
    per = rate.packet_loss(np.linspace(-10, 10, 21), 0.0, 2.0)
    assert np.all(np.diff(per) < 0) and np.all((per >= 0) & (per <= 1))


@pytest.mark.parametrize("spec", [
    {"model": "free-space"},
    {"model": "log-distance", "exponent": 2.7},
    {"model": "a2g", "environment": "dense-urban"},
    {"model": "satellite", "band": "Ka", "rain_rate_mm_h": 10},
    {"model": "free-space", "rate": {"method": "mcs", "table": "802.11ac"}},
])
def test_build_channel_for_each_spec(spec: dict) -> None:
    channel = build_channel(SPEC.validate_python(spec))
    near = channel.sample(100.0 if spec["model"] != "satellite" else 550e3, 60.0)
    far = channel.sample(1e4 if spec["model"] != "satellite" else 2000e3, 60.0)
    assert isinstance(near, LinkQuality)
    assert near.snr_db > far.snr_db and near.rate_mbps >= far.rate_mbps
    assert 0.0 <= near.loss_pct <= far.loss_pct <= 100.0


def test_default_numbers() -> None:
    sat = build_channel({"model": "satellite"})
    q = sat.sample(550e3, 90.0)
    assert q.snr_db == pytest.approx(20.7, abs=0.1)
    assert q.rate_mbps == pytest.approx(4.453027 * 250)  # 32APSK 9/10
    assert q.loss_pct < 1e-6
    assert sat.sample(1100e3, 25.0).snr_db == pytest.approx(14.3, abs=0.1)
    assert build_channel({"model": "a2g"}).sample(200.0, 30.0).snr_db == pytest.approx(
        23.4, abs=0.1)


def test_rate_floor_cap_and_dead_link() -> None:
    weak = build_channel({"model": "free-space", "tx_power_dbm": -60})
    q = weak.sample(1e4, 0.0)
    assert q.rate_mbps == 0.01 and q.loss_pct > 99.9  # Shannon never reaches 0
    capped = build_channel({"model": "free-space", "rate": {"max_rate_mbps": 50,
                                                            "efficiency": 0.5}})
    assert capped.sample(10.0, 0.0).rate_mbps == 50.0
    mcs = build_channel({"model": "free-space", "tx_power_dbm": -40,
                         "rate": {"method": "mcs"}})
    dead = mcs.sample(1e4, 0.0)  # below MCS0: nothing gets through
    assert (dead.rate_mbps, dead.loss_pct) == (0.0, 100.0)


def test_loss_threshold_defaults() -> None:
    at_threshold = build_channel({"model": "free-space", "tx_power_dbm": 20,
                                  "rate": {"loss_threshold_db": 26.2734}}).sample(100.0, 0.0)
    assert at_threshold.loss_pct == pytest.approx(50.0, abs=0.01)
    sat = build_channel({"model": "satellite", "eirp_dbw": 36 - 20.68 - 2.35})
    assert sat.sample(550e3, 90.0).loss_pct == pytest.approx(50.0, abs=0.5)


@pytest.mark.parametrize("bad", [
    {"model": "two-ray"},
    {"model": "free-space", "freq": 2.4e9},
    {"model": "satellite", "band": "X"},
    {"model": "log-distance", "exponent": 7},
    {"model": "a2g", "rate": {"method": "mcs", "table": "lte"}},
    {"freq_hz": 2.4e9},
])
def test_invalid_specs_raise(bad: dict) -> None:
    with pytest.raises(ValidationError):
        SPEC.validate_python(bad)


def test_specs_are_frozen_and_tables_match() -> None:
    spec = SPEC.validate_python({"model": "a2g"})
    assert spec.freq_hz == 2.0e9 and spec.environment == "urban"
    with pytest.raises(ValidationError):
        spec.freq_hz = 5e9
    assert set(RateSpec.model_fields["table"].annotation.__args__) == set(rate.MCS_TABLES)
    assert set(satellite.BANDS) == {"S", "Ku", "Ka"}
