"""Satellite constellations propagated with SGP4: synthetic Walker-Delta shells or real TLEs.

All satellites of a constellation sit in one `sgp4.api.SatrecArray`, so a tick is a single
C call over every satellite plus one numpy rotation to ECEF; that is what keeps 300
satellites at 10 Hz cheap.  Satellite names double as emulated node names, hence the
strict `NAME_RE` (lower-case, Linux-friendly, at most 32 characters).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike
from sgp4.api import WGS72, WGS84, Satrec, SatrecArray

from testbed.mobility.geo import (
    A_KM,
    MU_KM3_S2,
    jd_from_unix,
    teme_to_ecef,
    unix_from_jd,
)
from testbed.scenario.files import text_of

NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
NAME_MAX = 32
SGP4_EPOCH_JD = 2433281.5
"""Julian date of 1949-12-31 00:00 UT, the zero of `Satrec.sgp4init`'s epoch argument."""
MIN_ECC = 1e-7
"""SGP4 divides by eccentricity in a few terms; 'circular' orbits get this instead of 0."""


@dataclass(frozen=True)
class Satellite:
    """One satellite's identity; `plane`/`index` are set for Walker shells (ISL wiring)."""

    name: str
    satnum: int
    plane: int | None = None
    index: int | None = None


@dataclass(frozen=True)
class WalkerShape:
    """The i:T/P/F parameters a Walker-Delta constellation was built from."""

    planes: int
    per_plane: int
    phasing: int
    altitude_km: float
    inclination_deg: float
    raan_spread_deg: float


class Constellation:
    """Satellites plus their SGP4 records, propagated together to TEME or ECEF positions."""

    def __init__(
        self,
        satellites: Sequence[Satellite],
        satrecs: Sequence[Satrec],
        walker: WalkerShape | None = None,
    ) -> None:
        if len(satellites) != len(satrecs):
            raise ValueError(f"{len(satellites)} satellites but {len(satrecs)} SGP4 records")
        if not satellites:
            raise ValueError("a constellation needs at least one satellite")
        index: dict[str, int] = {}
        for i, sat in enumerate(satellites):
            if not NAME_RE.match(sat.name):
                raise ValueError(f"satellite name {sat.name!r} does not match {NAME_RE.pattern}")
            if sat.name in index:
                raise ValueError(f"duplicate satellite name {sat.name!r}")
            index[sat.name] = i
        self.satellites: tuple[Satellite, ...] = tuple(satellites)
        self.satrecs: tuple[Satrec, ...] = tuple(satrecs)
        self.walker = walker
        self._index = index
        self._array = SatrecArray(list(self.satrecs))

    # ------------------------------------------------------------------ construction

    @classmethod
    def walker_delta(
        cls,
        planes: int,
        per_plane: int,
        altitude_km: float,
        inclination_deg: float,
        phasing: int,
        epoch_unix: float,
        raan_spread_deg: float = 360.0,
        name_prefix: str = "sat",
    ) -> Constellation:
        """A Walker-Delta i:T/P/F shell of circular orbits, T = planes * per_plane.

        Plane p has RAAN p*spread/P; satellite s of plane p has mean anomaly
        s*360/S + p*F*360/T (argument of perigee 0, so that is its argument of latitude).
        Mean motion is Keplerian, n = sqrt(mu/a^3) with a = A_KM + altitude, and the records
        use SGP4's WGS84 constants to match; SGP4 still applies J2, so the radius wobbles
        by a few km around a and the planes regress (about -4.6 deg/day at 550 km, 53 deg),
        as real shells do.  bstar = 0: no drag, the shell never decays.
        """
        if planes < 1 or per_plane < 1:
            raise ValueError(f"need planes >= 1 and per_plane >= 1, got {planes}x{per_plane}")
        if not 0 <= phasing < planes:
            raise ValueError(f"Walker phasing F must be in [0, {planes - 1}], got {phasing}")
        if altitude_km <= 0:
            raise ValueError(f"altitude must be positive, got {altitude_km} km")
        if not 0.0 <= inclination_deg <= 180.0:
            raise ValueError(f"inclination must be in [0, 180] deg, got {inclination_deg}")
        if not 0.0 < raan_spread_deg <= 360.0:
            raise ValueError(f"raan_spread_deg must be in (0, 360], got {raan_spread_deg}")

        total = planes * per_plane
        a_km = A_KM + altitude_km
        n_rad_min = math.sqrt(MU_KM3_S2 / a_km**3) * 60.0
        jd, fr = jd_from_unix(epoch_unix)
        epoch = (float(jd) - SGP4_EPOCH_JD) + float(fr)
        inc = math.radians(inclination_deg)

        sats: list[Satellite] = []
        recs: list[Satrec] = []
        for p in range(planes):
            raan = math.radians((p * raan_spread_deg / planes) % 360.0)
            for s in range(per_plane):
                name = f"{name_prefix}{p}-{s:02d}"
                if not NAME_RE.match(name):
                    raise ValueError(
                        f"name_prefix {name_prefix!r} gives {name!r}, which does not match "
                        f"{NAME_RE.pattern}"
                    )
                mean_anomaly = (s * 360.0 / per_plane + p * phasing * 360.0 / total) % 360.0
                rec = Satrec()
                rec.sgp4init(
                    WGS84,
                    "i",
                    len(recs) + 1,
                    epoch,
                    0.0,  # bstar
                    0.0,  # ndot
                    0.0,  # nddot
                    MIN_ECC,
                    0.0,  # argument of perigee
                    inc,
                    math.radians(mean_anomaly),
                    n_rad_min,
                    raan,
                )
                sats.append(Satellite(name, len(recs) + 1, plane=p, index=s))
                recs.append(rec)
        shape = WalkerShape(
            planes, per_plane, phasing, altitude_km, inclination_deg, raan_spread_deg
        )
        return cls(sats, recs, walker=shape)

    @classmethod
    def from_tle(
        cls, path: str | Path, names: list[str] | None = None, limit: int | None = None
    ) -> Constellation:
        """Load a 2-line or 3-line (name + 2 lines) TLE file.

        Names are sanitised with `sanitize_name` and de-duplicated file-wide (`-2`, `-3`...
        suffixes), so a satellite keeps its node name whatever is selected.  `names`
        selects and orders satellites (TLE or sanitised names); `limit` keeps the first
        `limit`.  Records use WGS72, the model TLEs are fitted with.  Any malformed line,
        checksum included, raises ValueError naming the file and line.
        """
        path = Path(path)
        entries = parse_tle_file(path)
        if not entries:
            raise ValueError(f"{path}: no TLE entries found")
        if names is not None:
            by_name = {e.name: e for e in entries}
            wanted = [sanitize_name(n) for n in names]
            missing = [n for n, w in zip(names, wanted, strict=True) if w not in by_name]
            if missing:
                raise ValueError(f"{path}: no satellite named {', '.join(map(repr, missing))}")
            entries = [by_name[w] for w in dict.fromkeys(wanted)]
        if limit is not None:
            if limit < 1:
                raise ValueError(f"limit must be >= 1, got {limit}")
            entries = entries[:limit]
        sats = [Satellite(e.name, e.satrec.satnum) for e in entries]
        return cls(sats, [e.satrec for e in entries])

    # ------------------------------------------------------------------ queries

    def __len__(self) -> int:
        return len(self.satellites)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.satellites]

    def index_of(self, name: str) -> int:
        """Row of `name` in position arrays; KeyError if absent."""
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(f"no satellite named {name!r}") from None

    @property
    def epochs_unix(self) -> np.ndarray:
        """Element-set epoch of every satellite, unix seconds (UTC)."""
        jd = np.array([r.jdsatepoch for r in self.satrecs])
        fr = np.array([r.jdsatepochF for r in self.satrecs])
        return np.asarray(unix_from_jd(jd, fr), dtype=float)

    # ------------------------------------------------------------------ propagation

    def _teme(self, t_unix: float | ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        t = np.asarray(t_unix, dtype=float)
        if t.ndim > 1:
            raise ValueError(f"times must be a scalar or 1-D, got shape {t.shape}")
        jd, fr = jd_from_unix(np.atleast_1d(t))
        err, r, _v = self._array.sgp4(jd, fr)  # (N,T), (N,T,3)
        r = r.transpose(1, 0, 2)
        bad = err.T != 0
        if bad.any():
            # Decayed or diverged orbits: NaN rows, so geometry marks them invisible.
            r = r.copy()
            r[bad] = np.nan
        return r, jd, fr, t.ndim == 0

    def positions_teme(self, t_unix: float | ArrayLike) -> np.ndarray:
        """SGP4 TEME positions, km: (N,3) for a scalar time, (T,N,3) for a 1-D array."""
        r, _jd, _fr, scalar = self._teme(t_unix)
        return r[0] if scalar else r

    def positions_ecef(self, t_unix: float | ArrayLike, ut1_utc_s: float = 0.0) -> np.ndarray:
        """ECEF positions, km: (N,3) for a scalar time, (T,N,3) for a 1-D array; NaN on error.

        `ut1_utc_s` is the IERS UT1-UTC (see `geo.teme_to_ecef`); 0 is within ~0.5 km.
        """
        r, jd, fr, scalar = self._teme(t_unix)
        if scalar:
            return teme_to_ecef(r[0], jd[0], fr[0], ut1_utc_s)
        return teme_to_ecef(r, jd[:, None], fr[:, None], ut1_utc_s)


# ---------------------------------------------------------------------- Walker ISLs


def walker_isl_pairs(const: Constellation) -> list[tuple[int, int, str]]:
    """The +Grid inter-satellite links of a Walker shell as (i, j, kind), i < j.

    "intra": ring neighbours within a plane (s, s+1 mod S).  "inter": the same index in the
    next plane (p, p+1); last-to-first only when the planes span 360 deg.  The seam's
    phasing offset is deliberately ignored (same-index pairing, not the nearest satellite):
    simple, stable links are what the emulator needs, and the ISL range is computed anyway.
    """
    shape = const.walker
    if shape is None or any(s.plane is None or s.index is None for s in const.satellites):
        raise ValueError("walker_isl_pairs needs a Walker constellation (plane/index set)")
    row = {(s.plane, s.index): i for i, s in enumerate(const.satellites)}
    planes, per_plane = shape.planes, shape.per_plane
    pairs: dict[tuple[int, int], str] = {}

    def add(a: tuple[int, int], b: tuple[int, int], kind: str) -> None:
        i, j = row[a], row[b]
        if i != j:
            pairs.setdefault((min(i, j), max(i, j)), kind)

    for p in range(planes):
        for s in range(per_plane):
            add((p, s), (p, (s + 1) % per_plane), "intra")
    wrap = math.isclose(shape.raan_spread_deg, 360.0)
    for p in range(planes if wrap else planes - 1):
        for s in range(per_plane):
            add((p, s), ((p + 1) % planes, s), "inter")
    return [(i, j, kind) for (i, j), kind in pairs.items()]


# ---------------------------------------------------------------------- TLE files


@dataclass(frozen=True)
class TleEntry:
    """One parsed element set: sanitised unique name, raw name, the lines, and the record."""

    name: str
    raw_name: str
    line1: str
    line2: str
    lineno: int
    satrec: Satrec


def sanitize_name(raw: str) -> str:
    """A TLE name as a node name: lower-case, runs of other chars -> '-', letter first, <= 32."""
    name = re.sub(r"[^a-z0-9_-]+", "-", raw.strip().lower()).strip("-_")
    if not name:
        name = "sat"
    if not name[0].isalpha():
        name = f"sat-{name}"
    return name[:NAME_MAX].rstrip("-_")


def tle_checksum(line: str) -> int:
    """Mod-10 checksum of the first 68 columns: digits count their value, '-' counts 1."""
    return sum(int(c) if c.isdigit() else c == "-" for c in line[:68]) % 10


def _unique(name: str, taken: set[str]) -> str:
    if name not in taken:
        return name
    k = 2
    while True:
        suffix = f"-{k}"
        candidate = name[: NAME_MAX - len(suffix)].rstrip("-_") + suffix
        if candidate not in taken:
            return candidate
        k += 1


def _check_line(path: Path, lineno: int, line: str, number: str) -> None:
    where = f"{path}:{lineno}"
    if not line.startswith(f"{number} "):
        raise ValueError(f"{where}: expected TLE line {number}, got {line[:24]!r}")
    if len(line) != 69:
        raise ValueError(f"{where}: TLE line {number} has {len(line)} characters, expected 69")
    last = line[68]
    if not last.isdigit():
        raise ValueError(f"{where}: TLE line {number} checksum column is {last!r}, not a digit")
    computed = tle_checksum(line)
    if computed != int(last):
        raise ValueError(
            f"{where}: bad checksum on TLE line {number}: file says {last}, computed {computed}"
        )


# Celestrak's whole active catalogue (~10k objects) is ~1.6 MB
MAX_TLE_BYTES = 16 << 20


def parse_tle_file(path: str | Path) -> list[TleEntry]:
    """Every element set of a 2-line or 3-line TLE file, in file order, checked line by line."""
    path = Path(path)
    text = text_of(path, MAX_TLE_BYTES, "TLE", encoding="ascii")
    rows = [(i, line.rstrip()) for i, line in enumerate(text.splitlines(), start=1)]
    rows = [(i, line) for i, line in rows if line]
    entries: list[TleEntry] = []
    taken: set[str] = set()
    k = 0
    while k < len(rows):
        lineno, line = rows[k]
        if line.startswith("1 "):
            raw_name = ""
        elif line.startswith("2 ") and len(line) == 69:
            raise ValueError(f"{path}:{lineno}: TLE line 2 without a line 1 before it")
        else:
            # Space-Track's 3LE prefixes names with "0 ".
            raw_name = (line[2:] if line.startswith("0 ") else line).strip()
            k += 1
            if k >= len(rows):
                raise ValueError(f"{path}:{lineno}: name line {raw_name!r} without TLE lines")
        if k + 1 >= len(rows):
            ln, l1 = rows[k]
            _check_line(path, ln, l1, "1")
            raise ValueError(f"{path}:{ln}: TLE line 1 without a line 2 after it")
        (ln1, l1), (ln2, l2) = rows[k], rows[k + 1]
        _check_line(path, ln1, l1, "1")
        _check_line(path, ln2, l2, "2")
        if l1[2:7] != l2[2:7]:
            raise ValueError(
                f"{path}:{ln2}: satellite number {l2[2:7].strip()!r} on line 2 does not match "
                f"{l1[2:7].strip()!r} on line 1"
            )
        try:
            rec = Satrec.twoline2rv(l1, l2, WGS72)
        except (ValueError, IndexError) as exc:
            raise ValueError(f"{path}:{ln1}: unreadable TLE: {exc}") from None
        # rec.error != 0 (e.g. decayed at epoch) is left to propagation: NaN rows.
        name = _unique(sanitize_name(raw_name or f"sat-{l1[2:7].strip()}"), taken)
        taken.add(name)
        entries.append(TleEntry(name, raw_name, l1, l2, ln1, rec))
        k += 2
    return entries


def mean_motion_rev_per_day(rec: Satrec) -> float:
    """Kozai mean motion of a record in revolutions per day (the TLE line-2 unit)."""
    return rec.no_kozai * 1440.0 / (2.0 * math.pi)


def orbital_period_s(altitude_km: float) -> float:
    """Keplerian period of a circular orbit at `altitude_km` above the WGS84 equator radius."""
    return 2.0 * math.pi * math.sqrt((A_KM + altitude_km) ** 3 / MU_KM3_S2)
