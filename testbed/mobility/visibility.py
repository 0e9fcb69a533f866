"""Which satellites a ground site sees: elevation grids and rise/set windows above a mask.

Ground-to-satellite links exist only above an elevation mask, so scenarios need both the
instantaneous elevations (per tick) and the pass windows (to plan handovers and to check a
run against expectations).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from testbed.mobility.geo import geodetic_to_ecef, jd_from_unix, look_angles, teme_to_ecef
from testbed.mobility.orbits import Constellation

RISE_SET_TOL_S = 0.05
"""Final rise/set bracket width; the reported midpoint is within half of it."""
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
_PEAK_ITERATIONS = 24


@dataclass(frozen=True)
class Window:
    """A pass of satellite row `sat` above the mask; clipped to the searched interval."""

    sat: int
    rise_unix: float
    set_unix: float
    max_elevation_deg: float


def elevations(
    const_positions: ArrayLike, site_lat: float, site_lon: float, site_alt_km: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """(elevation_deg, range_km) of ECEF positions (T,N,3) or (N,3) from a WGS84 site.

    Both outputs have the positions' leading shape; NaN positions give NaN elevations,
    which compare False against any mask.
    """
    obs = geodetic_to_ecef(site_lat, site_lon, site_alt_km)
    el, _az, rng = look_angles(obs, site_lat, site_lon, const_positions)
    return np.asarray(el, dtype=float), np.asarray(rng, dtype=float)


class _SiteElevation:
    """Elevation of chosen satellites at chosen times, one SGP4 call per satellite involved.

    Refining many windows at once would otherwise propagate the whole constellation at every
    probe time; grouping by satellite keeps the cost proportional to the windows.
    """

    def __init__(self, const: Constellation, lat: float, lon: float, alt_km: float) -> None:
        self.const = const
        self.lat, self.lon = lat, lon
        self.obs = geodetic_to_ecef(lat, lon, alt_km)

    def __call__(self, sats: np.ndarray, times: np.ndarray) -> np.ndarray:
        out = np.full(len(sats), np.nan)
        for s in np.unique(sats):
            mask = sats == s
            jd, fr = jd_from_unix(times[mask])
            err, r, _v = self.const.satrecs[int(s)].sgp4_array(jd, fr)
            r[err != 0] = np.nan
            el, _az, _rng = look_angles(self.obs, self.lat, self.lon, teme_to_ecef(r, jd, fr))
            out[mask] = el
        return out


def _bisect(
    elev: _SiteElevation, sats: np.ndarray, inside: np.ndarray, outside: np.ndarray, mask: float
) -> np.ndarray:
    """Shrink [inside, outside] brackets (elevation >= mask at `inside` only) to the crossing."""
    a, b = inside.astype(float), outside.astype(float)
    while a.size and np.max(np.abs(b - a)) > RISE_SET_TOL_S:
        mid = 0.5 * (a + b)
        up = elev(sats, mid) >= mask
        a = np.where(up, mid, a)
        b = np.where(up, b, mid)
    return 0.5 * (a + b)


def _peak(elev: _SiteElevation, sats: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Golden-section maximum of elevation on [lo, hi] (unimodal there, cusp at zenith ok)."""
    lo, hi = lo.astype(float), hi.astype(float)
    c = hi - _GOLDEN * (hi - lo)
    d = lo + _GOLDEN * (hi - lo)
    fc, fd = elev(sats, c), elev(sats, d)
    for _ in range(_PEAK_ITERATIONS):
        left = fc > fd  # the maximum lies in [lo, d]
        hi = np.where(left, d, hi)
        lo = np.where(left, lo, c)
        new_c = np.where(left, hi - _GOLDEN * (hi - lo), d)
        new_d = np.where(left, c, lo + _GOLDEN * (hi - lo))
        probe = np.where(left, new_c, new_d)
        fp = elev(sats, probe)
        fc, fd = np.where(left, fp, fd), np.where(left, fc, fp)
        c, d = new_c, new_d
    return np.fmax(fc, fd)


def visibility_windows(
    const: Constellation,
    lat: float,
    lon: float,
    alt_km: float,
    t0_unix: float,
    t1_unix: float,
    min_elevation_deg: float,
    step_s: float = 10.0,
) -> list[Window]:
    """Passes above `min_elevation_deg` between t0 and t1, sorted by rise time.

    Elevations are sampled every `step_s` (plus t1), then each crossing is bisected to
    within RISE_SET_TOL_S and each peak refined by golden-section search.  A pass that is
    already up at t0 or still up at t1 is clipped to it.  A pass that rises and sets
    entirely between two samples is missed: keep `step_s` well below the shortest pass
    of interest (10 s is fine for LEO above a 10-40 deg mask).
    """
    if not t1_unix > t0_unix:
        raise ValueError(f"need t1 > t0, got [{t0_unix}, {t1_unix}]")
    if not step_s > 0:
        raise ValueError(f"step_s must be positive, got {step_s}")
    n = math.ceil((t1_unix - t0_unix) / step_s)
    times = np.append(t0_unix + step_s * np.arange(n), t1_unix)
    el, _rng = elevations(const.positions_ecef(times), lat, lon, alt_km)  # (T,N)
    up = (el >= min_elevation_deg).T  # (N,T)
    n_t = len(times)
    edges = np.diff(np.pad(up, ((0, 0), (1, 1))).astype(np.int8), axis=1)  # (N, T+1)
    rise_sat, first = np.nonzero(edges == 1)  # first sample above the mask
    _set_sat, after = np.nonzero(edges == -1)  # first sample below it again (n_t: never)
    if rise_sat.size == 0:
        return []
    last = after - 1
    elev = _SiteElevation(const, lat, lon, alt_km)

    rise = times[first].copy()
    refine = first > 0
    rise[refine] = _bisect(
        elev, rise_sat[refine], times[first[refine]], times[first[refine] - 1], min_elevation_deg
    )
    set_ = times[last].copy()
    refine = after < n_t
    set_[refine] = _bisect(
        elev, rise_sat[refine], times[last[refine]], times[after[refine]], min_elevation_deg
    )

    el_sat = el.T  # (N,T)
    peak_idx = np.array(
        [f + int(np.argmax(el_sat[s, f:a])) for s, f, a in zip(rise_sat, first, after, strict=True)]
    )
    sampled_max = el_sat[rise_sat, peak_idx]
    lo = np.maximum(rise, times[peak_idx] - step_s)
    hi = np.minimum(set_, times[peak_idx] + step_s)
    refined = _peak(elev, rise_sat, lo, hi)
    peak = np.fmax(sampled_max, refined)

    order = np.lexsort((rise_sat, rise))
    return [Window(int(rise_sat[i]), float(rise[i]), float(set_[i]), float(peak[i])) for i in order]
