"""Autopilots inside the emulated network: one simulated vehicle (firmware.sitl) per UAV that
has `autopilot:`, started in that UAV's namespace, so its MAVLink crosses the emulated links
to the controller node; the vehicle's own position drives the UAV's links.

Ports follow PX4 SITL: the vehicle with system id S is instance S-1 and sends its API link
to the controller's UDP 14540+S-1 (MAVSDK `udpin://0.0.0.0:14540+S-1` there) and its
ground-station link to 14550.  Positions come back to the mobility driver over a Unix
datagram socket in the run's state folder (the management plane: host-local, never through
the emulated network), about 10 times a second.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from pathlib import Path

from testbed.mobility.geo import LocalFrame
from testbed.mobility.motion import TelemetryTrack
from testbed.scenario.model import Scenario
from testbed.supervisor import Supervisor

API_PORT = 14540
GCS_PORT = 14550


def api_url(sysid: int) -> str:
    """Where a controller listens for the vehicle with this system id."""
    return f"udpin://0.0.0.0:{API_PORT + sysid - 1}"


class Autopilots:
    def __init__(self, sc: Scenario, tracks: dict[str, TelemetryTrack], frame: LocalFrame,
                 addresses: dict[str, str], namespaces: dict[str, str], sup: Supervisor,
                 state_dir: Path) -> None:
        self.sc, self.tracks, self.frame = sc, tracks, frame
        self.addresses, self.namespaces, self.sup = addresses, namespaces, sup
        self.sock_path = state_dir / "autopilot-telemetry.sock"
        self.by_sysid = {sysid: name for name, (sysid, _) in sc.autopilots().items()}
        self.sock: socket.socket | None = None
        self.thread: threading.Thread | None = None
        self.stopping = False

    def start(self) -> None:
        self.sock_path.unlink(missing_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.sock_path))
        self.sock.settimeout(0.5)
        self.thread = threading.Thread(target=self._receive, name="autopilot-telemetry",
                                       daemon=True)
        self.thread.start()
        for name, (sysid, ap) in self.sc.autopilots().items():
            lat, lon, alt_km = (float(x) for x in self.frame.geodetic(self.tracks[name].xyz))
            argv = [sys.executable, "-m", "firmware.sitl", "--count", "1",
                    "--first-sysid", str(sysid),
                    *(["--flavour", ap.flavour] if ap.flavour != "px4" else []),
                    "--home", f"{lat:.8f},{lon:.8f},{alt_km * 1000:.2f}",
                    "--api-host", self.addresses[ap.controller],
                    "--api-port", str(API_PORT + sysid - 1), "--gcs-port", str(GCS_PORT),
                    "--rate-hz", f"{ap.telemetry_hz:g}", "--report-unix", str(self.sock_path)]
            for k, v in ap.params.items():
                argv += ["--param", f"{k}={v:g}"]
            self.sup.start(f"autopilot-{name}", argv, netns=self.namespaces[name],
                           log=self.sup.log_dir / name / "autopilot.log", critical=True)

    def _receive(self) -> None:
        assert self.sock is not None
        while not self.stopping:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                rep = json.loads(data)
                name = self.by_sysid.get(int(rep["sysid"]))
                if name is not None:
                    self.tracks[name].update(float(rep["lat"]), float(rep["lon"]),
                                             float(rep["alt"]))
            except (ValueError, KeyError, TypeError):
                continue

    def stop(self) -> None:
        self.stopping = True
        if self.sock is not None:
            self.sock.close()
        if self.thread is not None:
            self.thread.join(timeout=2)
        self.sock_path.unlink(missing_ok=True)
