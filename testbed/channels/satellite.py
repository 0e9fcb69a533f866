"""Satellite link budget: free space at slant range, gases, rain, and C/N from EIRP and G/T.

Carrier-to-noise ratio of the forward (satellite → user terminal) link, the standard
budget (e.g. Maral & Bousquet, "Satellite Communications Systems", ch. 5)::

    C/N = EIRP - FSPL(range, f) - L_gas - L_rain - L_extra + G/T - k - 10·log10(B)

with k = -228.6 dBW/K/Hz (Boltzmann's constant).  Only the downlink is modelled, so each
band has one centre frequency, its downlink one: S 2.2 GHz, Ku 12 GHz (of 12/14 GHz),
Ka 20 GHz (of 20/30 GHz).

Gaseous absorption - a simplified ITU-R P.676 (Annex 2): a per-band zenith loss scaled
by the cosecant of the elevation (flat-layer air mass), elevation clamped at ≥ 5° where
the cosecant law stops holding::

    L_gas = A_zenith / sin(max(θ, 5°))

Rain - a simplified ITU-R P.618-13 §2.2.1.1 with the rain rate taken as given (an
instantaneous rate, not the 0.01 %-of-time statistic).  Specific attenuation from
ITU-R P.838-3, horizontal polarisation, coefficients at the band's frequency (S uses the
2 GHz entry)::

    gamma_R = k * R^alpha                  (dB/km)
    L_S = (h_R - h_s) / sin(θ)             slant path below the rain height (P.618 eq. 2)
    L_G = L_S * cos(θ)                     its horizontal projection
    r   = 1 / (1 + 0.78*sqrt(L_G*gamma_R/f) - 0.38*(1 - exp(-2*L_G)))   (step 7, f in GHz)
    A   = gamma_R * L_S * r

The P.618 vertical adjustment factor is taken as 1 (it matters only for the statistical
prediction) and h_R defaults to 3 km, a mid-latitude rain height.  Rain raising the
antenna noise temperature is not modelled.

Defaults describe a LEO user terminal in Ku band: EIRP 36 dBW per beam, G/T 9.2 dB/K,
250 MHz channel - the ballpark of SpaceX's Starlink Ku user-downlink FCC filings as
tabulated by del Portillo, Cameron & Crawley, "A technical comparison of three low earth
orbit satellite constellation systems", Acta Astronautica 159, 2019.  Order of magnitude,
not a calibrated Starlink model.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from testbed.channels.free_space import FloatOrArray, fspl_db

BOLTZMANN_DBW_K_HZ = -228.6
MIN_ELEVATION_DEG = 5.0


class Band(NamedTuple):
    freq_hz: float  # downlink centre frequency
    zenith_gas_db: float  # zenith gaseous absorption, standard atmosphere
    rain_k: float  # ITU-R P.838-3 k_H
    rain_alpha: float  # ITU-R P.838-3 alpha_H


BANDS: dict[str, Band] = {
    "S": Band(2.2e9, 0.05, 0.0000847, 1.0664),  # P.838 entry at 2 GHz
    "Ku": Band(12e9, 0.3, 0.02386, 1.1825),  # P.838 entry at 12 GHz
    "Ka": Band(20e9, 0.7, 0.09164, 1.0568),  # P.838 entry at 20 GHz
}


def _sin_el(elevation_deg: FloatOrArray) -> FloatOrArray:
    return np.sin(np.radians(np.maximum(elevation_deg, MIN_ELEVATION_DEG)))


def gaseous_loss_db(elevation_deg: FloatOrArray, band: str = "Ku") -> FloatOrArray:
    """Gaseous absorption in dB: zenith loss / sin(elevation), elevation clamped at 5°."""
    return BANDS[band].zenith_gas_db / _sin_el(elevation_deg)


def rain_attenuation_db(elevation_deg: FloatOrArray, rain_rate_mm_h: FloatOrArray,
                        band: str = "Ku", rain_height_km: float = 3.0,
                        station_height_km: float = 0.0) -> FloatOrArray:
    """Rain attenuation in dB along the slant path (simplified ITU-R P.618 / P.838)."""
    b = BANDS[band]
    gamma = b.rain_k * np.power(rain_rate_mm_h, b.rain_alpha)
    sin_el = _sin_el(elevation_deg)
    slant_km = max(rain_height_km - station_height_km, 0.0) / sin_el
    ground_km = slant_km * np.sqrt(1.0 - sin_el * sin_el)
    r = 1.0 / (1.0 + 0.78 * np.sqrt(ground_km * gamma / (b.freq_hz / 1e9))
               - 0.38 * (1.0 - np.exp(-2.0 * ground_km)))
    return gamma * slant_km * r


def snr_db(range_km: FloatOrArray, elevation_deg: FloatOrArray, *, band: str = "Ku",
           eirp_dbw: float = 36.0, g_over_t_dbk: float = 9.2, bandwidth_hz: float = 250e6,
           rain_rate_mm_h: float = 0.0, extra_loss_db: float = 0.0) -> FloatOrArray:
    """Downlink C/N in dB at a slant range (km) and elevation (degrees)."""
    b = BANDS[band]
    loss = fspl_db(np.multiply(range_km, 1e3), b.freq_hz) + gaseous_loss_db(elevation_deg, band)
    if rain_rate_mm_h > 0:
        loss = loss + rain_attenuation_db(elevation_deg, rain_rate_mm_h, band)
    noise_db = BOLTZMANN_DBW_K_HZ + 10.0 * np.log10(bandwidth_hz)
    return eirp_dbw - loss - extra_loss_db + g_over_t_dbk - noise_db
