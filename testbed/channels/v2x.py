"""Vehicle-to-everything path loss: 3GPP TR 37.885 (V2X study, Rel-15) §6.2.1, Table 6.2.1-1.

Why this model: vehicles and roadside units sit a few metres above the road, so the
air-to-ground elevation statistics do not apply; 37.885 is what 3GPP and ETSI use to size
V2X links, with one formula per road environment and no map (d in metres, f_c in GHz)::

    highway (LOS):        PL = 32.4  + 20   log10(d) + 20   log10(f_c)
    urban (LOS):          PL = 38.77 + 16.7 log10(d) + 18.2 log10(f_c)
    urban-nlos (blocked): PL = 36.85 + 30   log10(d) + 18.9 log10(f_c)

The urban NLOS case is the UMi street-canyon NLOS formula 37.885 takes for V2V links with a
building in the way.  Shadowing (3-4 dB log-normal) is left out: links follow the mean, so a
rerun with the same seed sees the same links; the loss curve (testbed.channels.rate) smooths
the edge of coverage instead.
"""

from __future__ import annotations

import numpy as np

from testbed.channels.free_space import FloatOrArray

ENVIRONMENTS = ("highway", "urban", "urban-nlos")


def path_loss_db(distance_m: FloatOrArray, freq_hz: float, environment: str) -> FloatOrArray:
    """Mean path loss in dB at distance_m (clamped to 1 m, the models' lower limit)."""
    d = np.maximum(distance_m, 1.0)
    fc = freq_hz / 1e9
    if environment == "highway":
        return 32.4 + 20.0 * np.log10(d) + 20.0 * np.log10(fc)
    if environment == "urban":
        return 38.77 + 16.7 * np.log10(d) + 18.2 * np.log10(fc)
    if environment == "urban-nlos":
        return 36.85 + 30.0 * np.log10(d) + 18.9 * np.log10(fc)
    raise ValueError(f"unknown V2X environment {environment!r}: use one of {ENVIRONMENTS}")
