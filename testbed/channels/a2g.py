"""Air-to-ground path loss with a probabilistic line of sight (Al-Hourani et al.).

A. Al-Hourani, S. Kandeepan, S. Lardner, "Optimal LAP Altitude for Maximum Coverage",
IEEE Wireless Communications Letters 3(6), 2014.  Why this model: it captures the one
effect that matters for a UAV or HAP talking to the ground - the higher the elevation,
the likelier a clear line of sight - with two fitted constants per environment and no
map.  The LoS probability (eq. 5, θ in degrees)::

    P_LoS(θ) = 1 / (1 + a·exp(-b·(θ - a)))

and the mean path loss (eq. 3-4): free space plus an excess loss η averaged over the
LoS and NLoS groups::

    PL = FSPL(d, f) + P_LoS·η_LoS + (1 - P_LoS)·η_NLoS

The (a, b, η_LoS, η_NLoS) values below are the published ones, fitted to ray-tracing at
2 GHz using the ITU-R P.1410 urban geometry statistics; at other frequencies FSPL scales
correctly and the excess losses are kept (an approximation the paper also makes).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from testbed.channels.free_space import FloatOrArray, fspl_db


class A2GEnvironment(NamedTuple):
    a: float
    b: float
    eta_los_db: float
    eta_nlos_db: float


ENVIRONMENTS: dict[str, A2GEnvironment] = {
    "suburban": A2GEnvironment(4.88, 0.43, 0.1, 21.0),
    "urban": A2GEnvironment(9.61, 0.16, 1.0, 20.0),
    "dense-urban": A2GEnvironment(12.08, 0.11, 1.6, 23.0),
    "highrise-urban": A2GEnvironment(27.23, 0.08, 2.3, 34.0),
}


def p_los(elevation_deg: FloatOrArray, env: str) -> FloatOrArray:
    """Probability of line of sight at an elevation angle in degrees (Al-Hourani eq. 5)."""
    e = ENVIRONMENTS[env]
    return 1.0 / (1.0 + e.a * np.exp(-e.b * (elevation_deg - e.a)))


def mean_path_loss_db(distance_m: FloatOrArray, elevation_deg: FloatOrArray, freq_hz: float,
                      env: str) -> FloatOrArray:
    """Mean air-to-ground path loss in dB: FSPL plus the LoS/NLoS-weighted excess loss."""
    e = ENVIRONMENTS[env]
    p = p_los(elevation_deg, env)
    return fspl_db(distance_m, freq_hz) + e.eta_nlos_db + p * (e.eta_los_db - e.eta_nlos_db)
