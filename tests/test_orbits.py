"""Orbits and geodesy against independent references: Vallado's SGP4 case and skyfield.

skyfield is a test-only dependency (never imported by testbed/); its built-in timescale
carries UT1-UTC but no polar motion, so our ECEF may differ from its ITRS by |UT1-UTC|
times Earth rotation (a few metres for the 2023 element sets used here) unless we pass
the same UT1-UTC, in which case agreement is at the centimetre level.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sgp4.api import WGS72, Satrec
from sgp4.propagation import gstime
from skyfield.api import EarthSatellite, load, wgs84
from skyfield.framelib import itrs

from testbed.mobility import geo
from testbed.mobility.orbits import (
    NAME_RE,
    Constellation,
    orbital_period_s,
    parse_tle_file,
    sanitize_name,
    tle_checksum,
    walker_isl_pairs,
)
from testbed.mobility.visibility import elevations, visibility_windows

pytestmark = pytest.mark.unit

TLE_DIR = Path(__file__).resolve().parents[1] / "topologies" / "tle"
STATIONS = TLE_DIR / "stations.tle"
STARLINK = TLE_DIR / "starlink-sample.tle"
IRIDIUM = TLE_DIR / "iridium.tle"

VALLADO_L1 = "1 00005U 58002B   00179.78495062  .00000023  00000-0  28098-4 0  4753"
VALLADO_L2 = "2 00005  34.2682 348.7242 1859667 331.7664  19.3264 10.82419157413667"
VALLADO_R0 = (7022.46529266, -1400.08296755, 0.03995155)

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z
SITE = (48.137, 11.575, 0.52)  # Munich


@pytest.fixture(scope="module")
def ts():
    return load.timescale(builtin=True)


@pytest.fixture(scope="module")
def shell() -> Constellation:
    return Constellation.walker_delta(6, 11, 550.0, 53.0, 1, T0)


def sky_time(ts, t_unix: float):
    """Skyfield time of a unix instant (ts.utc(1970, ..., seconds) would add leap seconds)."""
    whole = math.floor(t_unix)
    d = datetime.fromtimestamp(whole, tz=UTC)
    return ts.utc(d.year, d.month, d.day, d.hour, d.minute, d.second + (t_unix - whole))


def sky_sat(ts, path: Path, name: str) -> EarthSatellite:
    entry = next(e for e in parse_tle_file(path) if e.name == name)
    return EarthSatellite(entry.line1, entry.line2, entry.raw_name, ts)


# --------------------------------------------------------------------------- (a) SGP4


def test_vallado_reference_teme(tmp_path: Path) -> None:
    f = tmp_path / "vallado.tle"
    f.write_text(f"{VALLADO_L1}\n{VALLADO_L2}\n")
    const = Constellation.from_tle(f)
    assert const.names == ["sat-00005"]
    assert const.satellites[0].satnum == 5
    r = const.positions_teme(const.epochs_unix[0])
    assert r.shape == (1, 3)
    assert np.max(np.abs(r[0] - VALLADO_R0)) < 1e-3  # 1 m
    # And sgp4 itself at tsince = 0 (the record the file path built).
    _e, r_direct, _v = Satrec.twoline2rv(VALLADO_L1, VALLADO_L2, WGS72).sgp4_tsince(0.0)
    assert np.allclose(r_direct, VALLADO_R0, atol=1e-6)


def test_gmst_matches_sgp4_gstime() -> None:
    for t in (946_684_800.0, T0, T0 + 12_345.678, 1_900_000_000.0):
        jd, fr = geo.jd_from_unix(t)
        assert math.isclose(geo.unix_from_jd(jd, fr), t, abs_tol=1e-6)
        ours = geo.gmst_rad(jd, fr)
        ref = gstime(jd + fr)
        assert abs((ours - ref + math.pi) % (2 * math.pi) - math.pi) < 1e-9
    jd_a, fr_a = geo.jd_from_unix(np.array([T0, T0 + 1.0]))
    assert np.asarray(geo.gmst_rad(jd_a, fr_a)).shape == (2,)


def test_teme_to_ecef_is_a_z_rotation() -> None:
    r = np.array([[7000.0, 100.0, 1234.0], [-10.0, 6900.0, -500.0]])
    jd, fr = geo.jd_from_unix(T0)
    out = geo.teme_to_ecef(r, jd, fr)
    assert np.allclose(np.linalg.norm(out, axis=1), np.linalg.norm(r, axis=1))
    assert np.allclose(out[:, 2], r[:, 2])
    theta = geo.gmst_rad(jd, fr)
    assert np.allclose(
        out[0, :2],
        [
            r[0, 0] * math.cos(theta) + r[0, 1] * math.sin(theta),
            -r[0, 0] * math.sin(theta) + r[0, 1] * math.cos(theta),
        ],
    )
    # The vectorised path (array times) agrees with the scalar one.
    jd_a, fr_a = geo.jd_from_unix(np.array([T0, T0]))
    stacked = geo.teme_to_ecef(np.stack([r, r]), jd_a[:, None], fr_a[:, None])
    assert np.allclose(stacked[1], out, atol=1e-9)


# --------------------------------------------------------------------------- (b) skyfield


@pytest.mark.parametrize(("path", "name"), [(STATIONS, "iss-zarya"), (IRIDIUM, "iridium-106")])
def test_ecef_matches_skyfield_itrs(ts, path: Path, name: str) -> None:
    const = Constellation.from_tle(path, names=[name])
    sat = sky_sat(ts, path, name)
    epoch = float(const.epochs_unix[0])
    for dt in (0.0, 1800.0, 7200.0, 86400.0, 3 * 86400.0 + 0.37):
        t = epoch + dt
        st = sky_time(ts, t)
        ref = sat.at(st).frame_xyz(itrs).km
        ours = const.positions_ecef(t)[0]
        assert np.linalg.norm(ours - ref) < 0.050  # UT1 = UTC: |dUT1| * omega * r
        exact = const.positions_ecef(t, ut1_utc_s=float(st.dut1))[0]
        assert np.linalg.norm(exact - ref) < 1e-5  # 1 cm: same UT1, same GMST82 rotation


def test_positions_shapes_and_nan_rows() -> None:
    const = Constellation.from_tle(STARLINK)
    assert len(const) == 60
    epoch = float(const.epochs_unix.max())
    assert const.positions_ecef(epoch).shape == (60, 3)
    times = epoch + np.array([0.0, 10.0, 20.0])
    many = const.positions_ecef(times)
    assert many.shape == (3, 60, 3)
    assert np.allclose(many[1], const.positions_ecef(epoch + 10.0), atol=1e-9)
    # STARLINK-1031 was de-orbiting (ndot 0.076): decayed within days, NaN row, others fine.
    late = const.positions_ecef(epoch + 10 * 86400.0)
    bad = np.isnan(late).any(axis=1)
    assert [const.names[i] for i in np.nonzero(bad)[0]] == ["starlink-1031"]
    assert const.index_of("starlink-1031") == int(np.nonzero(bad)[0][0])
    with pytest.raises(KeyError):
        const.index_of("nope")


# --------------------------------------------------------------------------- (c) geodesy


def test_geodetic_known_points() -> None:
    assert np.allclose(geo.geodetic_to_ecef(0.0, 0.0, 0.0), [geo.A_KM, 0.0, 0.0], atol=1e-12)
    assert np.allclose(geo.geodetic_to_ecef(0.0, 90.0, 1.0), [0.0, geo.A_KM + 1.0, 0.0])
    assert np.allclose(geo.geodetic_to_ecef(90.0, 0.0, 0.0), [0.0, 0.0, geo.B_KM], atol=1e-9)
    lat, _lon, alt = geo.ecef_to_geodetic([0.0, 0.0, -geo.B_KM - 2.0])
    assert (lat, alt) == pytest.approx((-90.0, 2.0), abs=1e-9)


def test_geodetic_round_trip() -> None:
    rng = np.random.default_rng(7)
    lat = np.concatenate([rng.uniform(-90, 90, 2000), [90.0, -90.0, 0.0, 89.9999]])
    lon = np.concatenate([rng.uniform(-180, 180, 2000), [0.0, 45.0, -180.0, 10.0]])
    alt = np.concatenate([rng.uniform(-5, 40_000, 2000), [0.0, 550.0, 0.0, 35_786.0]])
    xyz = geo.geodetic_to_ecef(lat, lon, alt)
    lat2, lon2, alt2 = geo.ecef_to_geodetic(xyz)
    assert np.max(np.abs(alt2 - alt)) < 1e-6  # 1 mm
    back = geo.geodetic_to_ecef(lat2, lon2, alt2)
    assert np.max(np.linalg.norm(back - xyz, axis=-1)) < 1e-6
    away = np.abs(lat) < 89.0  # longitude is meaningless at the poles
    assert np.max(np.abs(((lon2 - lon + 180) % 360 - 180)[away])) < 1e-9


def test_enu_and_local_frame() -> None:
    rot = geo.enu_matrix(*SITE[:2])
    assert np.allclose(rot @ rot.T, np.eye(3), atol=1e-12)
    assert np.allclose(geo.enu_matrix([0.0, 10.0], [0.0, 20.0])[1], geo.enu_matrix(10.0, 20.0))
    frame = geo.LocalFrame(*SITE)
    assert np.allclose(frame.to_ecef([0.0, 0.0, 0.0]), geo.geodetic_to_ecef(*SITE))
    lat, lon, alt = frame.geodetic([0.0, 0.0, 1000.0])
    assert (lat, lon, alt) == pytest.approx((SITE[0], SITE[1], SITE[2] + 1.0), abs=1e-9)
    lat, lon, _alt = frame.geodetic([1000.0, 2000.0, 0.0])
    assert lon > SITE[1] and lat > SITE[0]
    enu = np.array([[0.0, 0.0, 0.0], [1500.0, -250.0, 120.0], [-3e4, 4e4, 1e3]])
    assert np.allclose(frame.from_ecef(frame.to_ecef(enu)), enu, atol=1e-6)
    assert frame.to_ecef(enu).shape == (3, 3)


# --------------------------------------------------------------------------- (d) look angles


def test_look_angles_zenith_and_horizon() -> None:
    lat, lon, alt = SITE
    obs = geo.geodetic_to_ecef(lat, lon, alt)
    el, _az, rng = geo.look_angles(obs, lat, lon, geo.geodetic_to_ecef(lat, lon, alt + 550.0))
    assert el == pytest.approx(90.0, abs=1e-9)
    assert rng == pytest.approx(550.0, abs=1e-9)
    north = geo.LocalFrame(*SITE).to_ecef([[0.0, 10_000.0, 0.0], [10_000.0, 0.0, 0.0]])
    el, az, rng = geo.look_angles(obs, lat, lon, north)
    assert np.allclose(el, 0.0, atol=1e-9)
    assert np.allclose((az - [0.0, 90.0] + 180.0) % 360.0 - 180.0, 0.0, atol=1e-9)
    assert np.allclose(rng, 10.0)


def test_look_angles_match_skyfield(ts) -> None:
    const = Constellation.from_tle(STATIONS, names=["ISS (ZARYA)"])
    sat = sky_sat(ts, STATIONS, "iss-zarya")
    epoch = float(const.epochs_unix[0])
    checked = 0
    for k, dt in enumerate(np.linspace(0.0, 86400.0, 9)):
        t = epoch + dt
        sub_lat, sub_lon, _ = geo.ecef_to_geodetic(const.positions_ecef(t)[0])
        # Sites offset from the sub-satellite point so elevations span the sky.
        lat = float(np.clip(sub_lat + (-1) ** k * 6.0, -85, 85))
        lon = float(sub_lon + 3.0 * (k % 3 - 1))
        obs = geo.geodetic_to_ecef(lat, lon, 0.3)
        el, az, rng = geo.look_angles(obs, lat, lon, const.positions_ecef(t)[0])
        alt_ref, az_ref, dist_ref = (
            (sat - wgs84.latlon(lat, lon, 300.0)).at(sky_time(ts, t)).altaz()
        )
        assert abs(el - alt_ref.degrees) < 0.05
        assert abs((az - az_ref.degrees + 180.0) % 360.0 - 180.0) < 0.05
        assert abs(rng - dist_ref.km) < 0.1
        checked += el > 10.0
    assert checked >= 5


# --------------------------------------------------------------------------- (e) Walker


def test_walker_shell_geometry(shell: Constellation) -> None:
    assert len(shell) == 66
    names = shell.names
    assert len(set(names)) == 66 and all(NAME_RE.match(n) for n in names)
    assert names[0] == "sat0-00" and names[-1] == "sat5-10"
    period = orbital_period_s(550.0)
    assert period / 60.0 == pytest.approx(95.65, abs=0.05)
    for rec in shell.satrecs:
        assert 2 * math.pi / rec.no_kozai == pytest.approx(period / 60.0, rel=1e-9)
    times = T0 + np.linspace(0.0, period, 40)
    radii = np.linalg.norm(shell.positions_ecef(times), axis=-1)
    assert np.all(np.abs(radii - (geo.A_KM + 550.0)) < 15.0)  # J2 short-period wobble
    # One period later each satellite is back, up to J2 nodal regression (~0.3 deg/orbit).
    back = np.linalg.norm(shell.positions_teme(T0 + period) - shell.positions_teme(T0), axis=1)
    assert back.max() < 50.0


def test_walker_planes_and_phasing(shell: Constellation) -> None:
    jd, fr = geo.jd_from_unix(T0)
    raans, incs = [], []
    for p in range(6):
        i = shell.index_of(f"sat{p}-00")
        assert shell.satellites[i].plane == p and shell.satellites[i].index == 0
        _e, r, v = shell.satrecs[i].sgp4(jd, fr)
        h = np.cross(r, v)
        raans.append(math.degrees(math.atan2(h[0], -h[1])) % 360.0)
        incs.append(math.degrees(math.acos(h[2] / np.linalg.norm(h))))
    spacing = np.diff(np.unwrap(np.radians(raans)))
    assert np.allclose(np.degrees(spacing), 60.0, atol=0.01)
    assert np.allclose(incs, 53.0, atol=0.05)  # osculating: J2 short-period terms
    # Walker F=1: plane p is shifted by p * 360/T in mean anomaly.
    assert math.degrees(shell.satrecs[shell.index_of("sat1-00")].mo) == pytest.approx(360 / 66)
    assert math.degrees(shell.satrecs[shell.index_of("sat0-01")].mo) == pytest.approx(360 / 11)


def test_walker_isl_pairs(shell: Constellation) -> None:
    pairs = walker_isl_pairs(shell)
    kinds = [k for _i, _j, k in pairs]
    assert kinds.count("intra") == 66 and kinds.count("inter") == 66
    assert len({(i, j) for i, j, _k in pairs}) == len(pairs)
    assert all(i < j for i, j, _k in pairs)
    degree = np.bincount([x for i, j, _k in pairs for x in (i, j)], minlength=66)
    assert np.all(degree == 4)
    half = Constellation.walker_delta(6, 11, 550.0, 86.4, 0, T0, raan_spread_deg=180.0)
    kinds = [k for _i, _j, k in walker_isl_pairs(half)]
    assert kinds.count("intra") == 66 and kinds.count("inter") == 55
    with pytest.raises(ValueError, match="Walker"):
        walker_isl_pairs(Constellation.from_tle(STATIONS, limit=3))


def test_walker_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="phasing"):
        Constellation.walker_delta(6, 11, 550.0, 53.0, 6, T0)
    with pytest.raises(ValueError, match="name_prefix"):
        Constellation.walker_delta(2, 2, 550.0, 53.0, 0, T0, name_prefix="Sat")


# --------------------------------------------------------------------------- (f) visibility


def test_elevations_shapes(shell: Constellation) -> None:
    el, rng = elevations(shell.positions_ecef(T0), *SITE)
    assert el.shape == rng.shape == (66,)
    el, rng = elevations(shell.positions_ecef(T0 + np.arange(5.0)), *SITE)
    assert el.shape == rng.shape == (5, 66)
    assert np.all(rng > 540.0)


def test_visibility_windows(shell: Constellation) -> None:
    mask, t1 = 25.0, T0 + 7200.0
    windows = visibility_windows(shell, *SITE, T0, t1, mask)
    assert len(windows) >= 5
    assert [w.rise_unix for w in windows] == sorted(w.rise_unix for w in windows)
    for w in windows:
        assert T0 <= w.rise_unix < w.set_unix <= t1
        assert w.max_elevation_deg >= mask
        for edge in (w.rise_unix, w.set_unix):
            if edge not in (T0, t1):  # clipped edges sit wherever the interval ends
                el, _ = elevations(shell.positions_ecef(edge)[w.sat], *SITE)
                assert abs(el - mask) < 0.2
    # Dense 1 s sampling: every visible sample lies in a window, peaks agree.
    times = T0 + np.arange(0.0, 7201.0)
    dense, _ = elevations(shell.positions_ecef(times), *SITE)
    covered = np.zeros_like(dense, dtype=bool)
    for w in windows:
        inside = (times >= w.rise_unix) & (times <= w.set_unix)
        covered[inside, w.sat] = True
        assert dense[inside, w.sat].max() <= w.max_elevation_deg + 1e-6
        # 1 s apart, samples can miss a zenith peak by up to ~0.4 deg/s * 0.5 s.
        assert dense[inside, w.sat].max() > w.max_elevation_deg - 0.5
    assert not np.any((dense > mask + 0.05) & ~covered)


def test_visibility_windows_clip_at_interval(shell: Constellation) -> None:
    full = visibility_windows(shell, *SITE, T0, T0 + 7200.0, 25.0)
    w = next(w for w in full if w.rise_unix > T0 and w.set_unix < T0 + 7200.0)
    mid = 0.5 * (w.rise_unix + w.set_unix)
    clipped = visibility_windows(shell, *SITE, mid, T0 + 7200.0, 25.0)
    first = next(c for c in clipped if c.sat == w.sat)
    assert first.rise_unix == mid
    assert first.set_unix == pytest.approx(w.set_unix, abs=0.1)


# --------------------------------------------------------------------------- (g) TLE files


def test_shipped_tle_files() -> None:
    stations = Constellation.from_tle(STATIONS)
    assert len(stations) == 29
    assert stations.names[0] == "iss-zarya"
    assert "iss-deb" in stations.names and "iss-deb-2" in stations.names
    assert "sat-1998-067vp" in stations.names
    assert len(Constellation.from_tle(IRIDIUM)) == 80
    assert len(Constellation.from_tle(STARLINK)) == 60
    picked = Constellation.from_tle(STATIONS, names=["CSS (TIANHE)", "iss-zarya"])
    assert picked.names == ["css-tianhe", "iss-zarya"]
    assert Constellation.from_tle(STARLINK, limit=5).names[-1] == "starlink-1011"
    with pytest.raises(ValueError, match="no satellite named 'HUBBLE'"):
        Constellation.from_tle(STATIONS, names=["HUBBLE"])


def test_sanitize_name() -> None:
    assert sanitize_name("ISS (ZARYA)") == "iss-zarya"
    assert sanitize_name("  1998-067VP ") == "sat-1998-067vp"
    assert sanitize_name("***") == "sat"
    long = sanitize_name("A" * 40 + " B")
    assert len(long) == 32 and NAME_RE.match(long)


def _write(tmp_path: Path, lines: list[str]) -> Path:
    f = tmp_path / "bad.tle"
    f.write_text("\n".join(lines) + "\n")
    return f


def test_tle_bad_checksum_names_file_and_line(tmp_path: Path) -> None:
    entry = parse_tle_file(STATIONS)[0]
    wrong = (tle_checksum(entry.line2) + 1) % 10
    f = _write(tmp_path, ["ISS (ZARYA)", entry.line1, entry.line2[:68] + str(wrong)])
    with pytest.raises(ValueError, match=r"bad\.tle:3: bad checksum on TLE line 2"):
        Constellation.from_tle(f)


@pytest.mark.parametrize(
    ("lines", "match"),
    [
        (["NAME", VALLADO_L1], r"bad\.tle:2: TLE line 1 without a line 2"),
        (["NAME", VALLADO_L1[:60], VALLADO_L2], r"bad\.tle:2: TLE line 1 has 60 characters"),
        (["NAME", VALLADO_L2, VALLADO_L1], r"bad\.tle:2: expected TLE line 1"),
        ([VALLADO_L2], r"bad\.tle:1: TLE line 2 without a line 1"),
        (["NAME"], r"bad\.tle:1: name line 'NAME' without TLE lines"),
        ([], r"bad\.tle: no TLE entries"),
    ],
)
def test_tle_structural_errors(tmp_path: Path, lines: list[str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Constellation.from_tle(_write(tmp_path, lines))


def test_tle_satnum_mismatch(tmp_path: Path) -> None:
    l2 = "2 00006" + VALLADO_L2[7:68]
    l2 += str(tle_checksum(l2))
    with pytest.raises(ValueError, match=r"bad\.tle:2: satellite number"):
        Constellation.from_tle(_write(tmp_path, [VALLADO_L1, l2]))
