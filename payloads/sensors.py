"""Board sensors for the agent's resource reports: temperatures and GPU load where the board
exposes them, nothing invented where it does not.

Sources, in order of preference: `tegrastats` on Jetson boards (GPU load as GR3D_FREQ and
every thermal rail; it prints a line per interval, so one long-lived child is read, not one
process per report), `vcgencmd measure_temp` on Raspberry Pi, and the kernel's
/sys/class/thermal zones everywhere else that has them.  An emulated node has none of these
and reports an empty dict, which is the truth.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

_TEMP = re.compile(r"\b([A-Za-z][\w]*)@(-?[\d.]+)C\b")
_GR3D = re.compile(r"GR3D_FREQ (\d+)%")
_RAM = re.compile(r"RAM (\d+)/(\d+)MB")
_VCGEN = re.compile(r"temp=(-?[\d.]+)'C")


def parse_tegrastats(line: str) -> dict[str, Any]:
    """One tegrastats line -> {"gpu_percent", "ram_used_mb", "ram_total_mb", "temps_c"}."""
    out: dict[str, Any] = {}
    if m := _GR3D.search(line):
        out["gpu_percent"] = float(m.group(1))
    if m := _RAM.search(line):
        out["ram_used_mb"], out["ram_total_mb"] = int(m.group(1)), int(m.group(2))
    temps = {name.lower(): float(v) for name, v in _TEMP.findall(line)}
    if temps:
        out["temps_c"] = temps
    return out


def parse_vcgencmd(text: str) -> dict[str, Any]:
    m = _VCGEN.search(text)
    return {"temps_c": {"soc": float(m.group(1))}} if m else {}


def thermal_zones(root: Path = Path("/sys/class/thermal")) -> dict[str, float]:
    """Every readable zone, by its type (millidegrees in the files)."""
    temps: dict[str, float] = {}
    for zone in sorted(root.glob("thermal_zone*")):
        with contextlib.suppress(OSError, ValueError):
            kind = (zone / "type").read_text().strip() or zone.name
            temps[kind.lower()] = int((zone / "temp").read_text().strip()) / 1000.0
    return temps


class Sensors:
    """What this board can tell; `read()` returns the latest values (possibly empty)."""

    def __init__(self, interval_ms: int = 1000) -> None:
        self._latest: dict[str, Any] = {}
        self._proc: subprocess.Popen[str] | None = None
        if shutil.which("tegrastats"):
            self.source = "tegrastats"
            self._proc = subprocess.Popen(["tegrastats", "--interval", str(interval_ms)],
                                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                          text=True)
            threading.Thread(target=self._follow, name="tegrastats", daemon=True).start()
        elif shutil.which("vcgencmd"):
            self.source = "vcgencmd"
        elif thermal_zones():
            self.source = "thermal_zones"
        else:
            self.source = "none"

    def _follow(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            self._latest = parse_tegrastats(line)

    def read(self) -> dict[str, Any]:
        if self.source == "tegrastats":
            return dict(self._latest)
        if self.source == "vcgencmd":
            try:
                res = subprocess.run(["vcgencmd", "measure_temp"], capture_output=True,
                                     text=True, timeout=2)
            except (OSError, subprocess.TimeoutExpired):
                return {}
            return parse_vcgencmd(res.stdout)
        if self.source == "thermal_zones":
            return {"temps_c": thermal_zones()}
        return {}

    def close(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=2)
            self._proc = None
