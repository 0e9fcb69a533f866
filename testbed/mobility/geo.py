"""Geodesy for the emulator: WGS84 <-> ECEF, local east/north/up frames, look angles, TEME->ECEF.

Everything is vectorised over leading axes because link geometry is recomputed at 10 Hz for
hundreds of satellites; a Python loop per satellite would dominate the emulation tick.
Distances are km (ECEF, altitudes, ranges) except local ENU offsets, which are metres
because that is how aerial/ground node motion is written in scenarios.

Time: SGP4 propagates in UTC (TLE epochs are UTC), and Earth rotation is applied with GMST
of UTC unless a UT1-UTC offset is passed.  |UT1-UTC| < 0.9 s, i.e. up to ~0.5 km of
along-rotation error at LEO radius; pass the IERS value (`ut1_utc_s`) when that matters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

C_KM_S = 299792.458
"""Speed of light in vacuum, km/s (propagation delay = range / C_KM_S)."""
A_KM = 6378.137
"""WGS84 equatorial radius, km."""
F = 1.0 / 298.257223563
"""WGS84 flattening."""
MU_KM3_S2 = 398600.4418
"""WGS84 gravitational parameter GM, km^3/s^2."""
EARTH_RADIUS_KM = 6371.0
"""Mean Earth radius, km, for spherical approximations (coverage cones, rough horizons)."""

B_KM = A_KM * (1.0 - F)
E2 = F * (2.0 - F)
"""First eccentricity squared."""
EP2 = E2 / (1.0 - E2)
"""Second eccentricity squared."""

UNIX_EPOCH_JD = 2440587.5
J2000_JD = 2451545.0
DAY_S = 86400.0
_TWO_PI = 2.0 * np.pi


def _out(x: np.ndarray) -> Any:
    """0-d arrays become numpy scalars (float subclasses), so scalar inputs give scalars."""
    return x[()] if x.ndim == 0 else x


# --------------------------------------------------------------------------- geodetic


def geodetic_to_ecef(lat_deg: ArrayLike, lon_deg: ArrayLike, alt_km: ArrayLike = 0.0) -> np.ndarray:
    """WGS84 geodetic -> ECEF km, shape broadcast(lat, lon, alt) + (3,)."""
    lat = np.radians(np.asarray(lat_deg, dtype=float))
    lon = np.radians(np.asarray(lon_deg, dtype=float))
    alt = np.asarray(alt_km, dtype=float)
    sin_lat, cos_lat = np.sin(lat), np.cos(lat)
    n = A_KM / np.sqrt(1.0 - E2 * sin_lat * sin_lat)
    x = (n + alt) * cos_lat * np.cos(lon)
    y = (n + alt) * cos_lat * np.sin(lon)
    z = (n * (1.0 - E2) + alt) * sin_lat
    return np.stack(np.broadcast_arrays(x, y, z), axis=-1)


def ecef_to_geodetic(xyz_km: ArrayLike) -> tuple[Any, Any, Any]:
    """ECEF km (...,3) -> (lat_deg, lon_deg, alt_km), each of shape (...).

    Bowring's method iterated three times: sub-millimetre from below the surface out past
    GEO (one iteration is already ~0.1 mm at the surface), and branch-free, so it
    vectorises; the height formula stays well conditioned at the poles.
    """
    xyz = np.asarray(xyz_km, dtype=float)
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    p = np.hypot(x, y)
    lon = np.arctan2(y, x)
    beta = np.arctan2(z, (1.0 - F) * p)
    for _ in range(3):
        sb, cb = np.sin(beta), np.cos(beta)
        lat = np.arctan2(z + EP2 * B_KM * sb**3, p - E2 * A_KM * cb**3)
        beta = np.arctan2((1.0 - F) * np.sin(lat), np.cos(lat))
    sin_lat, cos_lat = np.sin(lat), np.cos(lat)
    n = A_KM / np.sqrt(1.0 - E2 * sin_lat * sin_lat)
    alt = p * cos_lat + (z + E2 * n * sin_lat) * sin_lat - n
    return _out(np.degrees(lat)), _out(np.degrees(lon)), _out(alt)


def enu_matrix(lat_deg: ArrayLike, lon_deg: ArrayLike) -> np.ndarray:
    """Rows are the east, north, up unit vectors in ECEF; (3,3), or (...,3,3) for arrays.

    `enu = R @ d_ecef` and `d_ecef = R.T @ enu` (R is orthonormal).
    """
    lat = np.radians(np.asarray(lat_deg, dtype=float))
    lon = np.radians(np.asarray(lon_deg, dtype=float))
    sl, cl = np.sin(lat), np.cos(lat)
    so, co = np.sin(lon), np.cos(lon)
    zero = np.zeros_like(sl * so)
    east = np.stack(np.broadcast_arrays(-so, co, zero), axis=-1)
    north = np.stack(np.broadcast_arrays(-sl * co, -sl * so, cl), axis=-1)
    up = np.stack(np.broadcast_arrays(cl * co, cl * so, sl), axis=-1)
    return np.stack([east, north, up], axis=-2)


@dataclass(frozen=True)
class LocalFrame:
    """A flat-ish local tangent frame at a geodetic origin, for ground/air node offsets in metres.

    Scenario motion (UAV paths, vehicles) is naturally written as east/north/up metres from
    a site; this converts it exactly (no flat-Earth approximation) to ECEF km.
    """

    lat_deg: float
    lon_deg: float
    alt_km: float = 0.0
    origin_ecef_km: np.ndarray = field(init=False, repr=False, compare=False)
    rotation: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Cached once: frames are built at scenario load and used every tick.
        object.__setattr__(
            self, "origin_ecef_km", geodetic_to_ecef(self.lat_deg, self.lon_deg, self.alt_km)
        )
        object.__setattr__(self, "rotation", enu_matrix(self.lat_deg, self.lon_deg))

    def to_ecef(self, enu_m: ArrayLike) -> np.ndarray:
        """(3,) or (N,3) metres east/north/up from the origin -> ECEF km, same shape."""
        enu = np.asarray(enu_m, dtype=float)
        return self.origin_ecef_km + (enu / 1000.0) @ self.rotation

    def from_ecef(self, ecef_km: ArrayLike) -> np.ndarray:
        """ECEF km (3,) or (N,3) -> metres east/north/up from the origin, same shape."""
        d = np.asarray(ecef_km, dtype=float) - self.origin_ecef_km
        return (d @ self.rotation.T) * 1000.0

    def geodetic(self, enu_m: ArrayLike) -> tuple[Any, Any, Any]:
        """ENU metres -> (lat_deg, lon_deg, alt_km) on WGS84."""
        return ecef_to_geodetic(self.to_ecef(enu_m))


def look_angles(
    observer_ecef_km: ArrayLike,
    observer_lat_deg: float,
    observer_lon_deg: float,
    targets_ecef_km: ArrayLike,
) -> tuple[Any, Any, Any]:
    """Elevation/azimuth (deg) and range (km) of targets (N,3) or (3,) seen from one observer.

    Elevation is measured from the plane normal to the geodetic vertical (what an antenna
    mask means), azimuth clockwise from north in [0, 360).  Pure geometry: no refraction.
    """
    rot = enu_matrix(observer_lat_deg, observer_lon_deg)
    d = np.asarray(targets_ecef_km, dtype=float) - np.asarray(observer_ecef_km, dtype=float)
    enu = d @ rot.T
    rng = np.linalg.norm(enu, axis=-1)
    horiz = np.hypot(enu[..., 0], enu[..., 1])
    el = np.degrees(np.arctan2(enu[..., 2], horiz))
    az = np.degrees(np.arctan2(enu[..., 0], enu[..., 1])) % 360.0
    az = np.where(az >= 360.0, 0.0, az)  # -1e-15 % 360 rounds to 360.0
    return _out(el), _out(az), _out(rng)


# --------------------------------------------------------------------------- time, TEME


def jd_from_unix(t_unix: ArrayLike) -> tuple[Any, Any]:
    """Unix seconds (UTC) -> split Julian date (jd, fr), as `sgp4.api` wants it.

    `jd` is whole-day + .5 and `fr` in [0, 1): keeping the fraction separate preserves
    ~microsecond resolution that a single float JD (~40 us at today's dates) would lose.
    """
    t = np.asarray(t_unix, dtype=float)
    days = np.floor(t / DAY_S)
    fr = (t - days * DAY_S) / DAY_S
    return _out(UNIX_EPOCH_JD + days), _out(fr)


def unix_from_jd(jd: ArrayLike, fr: ArrayLike = 0.0) -> Any:
    """Split Julian date (UTC) -> unix seconds; inverse of `jd_from_unix`."""
    jd_a = np.asarray(jd, dtype=float)
    fr_a = np.asarray(fr, dtype=float)
    return _out((jd_a - UNIX_EPOCH_JD) * DAY_S + fr_a * DAY_S)


def gmst_rad(jd: ArrayLike, fr: ArrayLike = 0.0) -> Any:
    """Greenwich mean sidereal time (IAU 1982) in radians [0, 2pi), for the split JD of UT1.

    The same polynomial as Vallado's `gstime`/teme2ecef used by sgp4, but evaluated as
    day fraction + polynomial/86400 (the 876600 h/century term is exactly one turn per
    day) so the split JD's precision is not thrown away.
    """
    if np.ndim(jd) == 0 and np.ndim(fr) == 0:
        # Scalar fast path (one tick of the emulator): plain floats beat 0-d numpy by ~10x.
        return _gmst_turns(float(jd), float(fr)) * _TWO_PI
    jd_a = np.asarray(jd, dtype=float)
    fr_a = np.asarray(fr, dtype=float)
    return _gmst_turns(jd_a, fr_a) * _TWO_PI


def _gmst_turns(jd: Any, fr: Any) -> Any:
    t = ((jd - J2000_JD) + fr) / 36525.0
    g = 67310.54841 + (8640184.812866 + (0.093104 + (-6.2e-6) * t) * t) * t
    return (jd % 1.0 + fr + (g / DAY_S) % 1.0) % 1.0


def teme_to_ecef(
    r_teme_km: ArrayLike, jd: ArrayLike, fr: ArrayLike = 0.0, ut1_utc_s: float = 0.0
) -> np.ndarray:
    """Rotate SGP4's TEME positions (...,3) into ECEF (ITRF) km by GMST about z.

    `jd`/`fr` (UTC) must broadcast against `r_teme_km.shape[:-1]`; for (T,N,3) positions
    pass (T,1) times.  Polar motion is ignored (x_p, y_p < ~0.5 arcsec: < ~15 m at LEO
    radius), and UT1 = UTC + `ut1_utc_s` (default 0, see the module docstring).
    """
    r = np.asarray(r_teme_km, dtype=float)
    theta = gmst_rad(jd, np.asarray(fr, dtype=float) + ut1_utc_s / DAY_S)
    if np.ndim(theta) == 0:
        c, s = math.cos(theta), math.sin(theta)
        # Row vectors: r @ m gives x' = c x + s y, y' = c y - s x.
        m = np.array(((c, -s, 0.0), (s, c, 0.0), (0.0, 0.0, 1.0)))
        return r @ m
    c, s = np.cos(theta), np.sin(theta)
    x, y = r[..., 0], r[..., 1]
    out = np.empty(np.broadcast_shapes(r.shape, (*theta.shape, 1)), dtype=float)
    out[..., 0] = c * x + s * y
    out[..., 1] = c * y - s * x
    out[..., 2] = r[..., 2]
    return out
