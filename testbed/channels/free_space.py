"""Distance-only path loss: free space (Friis) and the log-distance model.

Free-space path loss, Friis transmission equation as written in ITU-R P.525-4 eq. (1)::

    FSPL(dB) = 20·log10(4·π·d·f / c)

It is the floor every other model here builds on: the air-to-ground model adds an excess
loss to it and the satellite budget adds atmospheric and rain loss.  The formula is a
far-field result, so distances below 1 m are clamped to 1 m (co-located nodes would
otherwise give log10(0)).

Log-distance model (Rappaport, "Wireless Communications", 2nd ed., eq. 4.68)::

    PL(d) = FSPL(d0) + 10·n·log10(d / d0),   d ≥ d0

The exponent n summarises the environment (2 = free space, ~2.7-3.5 urban, 4-6
obstructed indoor) without needing a map, which is what an emulator wants.  Below d0 the
loss is held at PL(d0).

Both functions take floats or numpy arrays (broadcasting) and return the same shape.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

SPEED_OF_LIGHT_M_S = 299_792_458.0
MIN_DISTANCE_M = 1.0

FloatOrArray = float | npt.NDArray[np.float64]

# 20·log10(4π/c): FSPL = this + 20·log10(d·f), one log10 per call instead of two
_FSPL_CONST_DB = 20.0 * float(np.log10(4.0 * np.pi / SPEED_OF_LIGHT_M_S))


def fspl_db(distance_m: FloatOrArray, freq_hz: FloatOrArray) -> FloatOrArray:
    """Free-space path loss in dB (ITU-R P.525); distances below 1 m count as 1 m."""
    d = np.maximum(distance_m, MIN_DISTANCE_M)
    return _FSPL_CONST_DB + 20.0 * np.log10(d * freq_hz)


def log_distance_db(distance_m: FloatOrArray, freq_hz: FloatOrArray, exponent: float,
                    d0_m: float = 1.0) -> FloatOrArray:
    """Log-distance path loss in dB: free space up to d0, then slope 10·n dB/decade."""
    d = np.maximum(distance_m, d0_m)
    return fspl_db(d0_m, freq_hz) + 10.0 * exponent * np.log10(d / d0_m)
