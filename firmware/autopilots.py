"""Autopilots inside the emulated network, the drones workload's run-time service: one
simulated vehicle (firmware.sitl) per UAV that has `autopilot:`, started in that UAV's
namespace, so its MAVLink crosses the emulated links to the controller node; the vehicle's
own position drives the UAV's links (through the mobility world's telemetry track).

Flavour `px4-sitl` runs the real PX4 SITL binary instead (SIH quadrotor, no GUI) when
SAGIN_PX4_DIR points at a PX4-Autopilot checkout built with `make px4_sitl_default`: PX4
sends its API link to 127.0.0.1:14540+i inside the UAV's namespace, where firmware.udprelay
forwards it to the controller (and reports the positions it carries).  This path could not
be run here (no PX4 build on this machine): it is covered up to the relay, with the built-in
vehicle standing in for PX4.

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
import time
from pathlib import Path

from firmware.scenario import PX4_MISSING, autopilot_of, autopilots, find_px4
from testbed.lifecycle.supervisor import Supervisor
from testbed.mobility.geo import LocalFrame
from testbed.mobility.motion import TelemetryTrack
from testbed.scenario.model import Scenario
from testbed.workloads import RunContext

API_PORT = 14540
GCS_PORT = 14550


def api_url(sysid: int) -> str:
    """Where a controller listens for the vehicle with this system id."""
    return f"udpin://0.0.0.0:{API_PORT + sysid - 1}"


class Autopilots:
    """A testbed.workloads.Service: started once the network is built, checked while the
    timeline runs (the supervisor already watches the vehicles), stopped at teardown."""

    @classmethod
    def for_run(cls, ctx: RunContext) -> Autopilots | None:
        """The registered service factory: None for a scenario without autopilots."""
        names = autopilots(ctx.sc)
        if not names:
            return None
        tracks = {n: ctx.world.tracks[n] for n in names}
        return cls(ctx.sc, tracks, ctx.world.frame,  # type: ignore[arg-type]
                   ctx.net.plan.primary_ip, ctx.net.plan.namespaces, ctx.sup, ctx.state_dir,
                   ctx.run_dir / "logs" / "node-status.jsonl")

    def __init__(self, sc: Scenario, tracks: dict[str, TelemetryTrack], frame: LocalFrame,
                 addresses: dict[str, str], namespaces: dict[str, str], sup: Supervisor,
                 state_dir: Path, status_path: Path | None = None) -> None:
        self.sc, self.tracks, self.frame = sc, tracks, frame
        self.addresses, self.namespaces, self.sup = addresses, namespaces, sup
        self.sock_path = state_dir / "autopilot-telemetry.sock"
        self.by_sysid = {sysid: name for name, (sysid, _) in autopilots(sc).items()}
        self.sock: socket.socket | None = None
        self.thread: threading.Thread | None = None
        self.stopping = False
        # the vehicles' battery, mode and arming once a second, for the live view and its
        # replay (the core's node-status records: {"wall", "node", ...})
        self.status_path = status_path
        self.status_at: dict[str, float] = {}

    def _status(self, name: str, rep: dict[str, object]) -> None:
        now = time.time()
        if self.status_path is None or now - self.status_at.get(name, 0.0) < 1.0:
            return
        self.status_at[name] = now
        rec = {"wall": round(now, 3), "node": name, "armed": rep.get("armed"),
               "mode": rep.get("mode")}
        if isinstance(rep.get("battery"), (int, float)):
            rec["battery_pct"] = round(100.0 * float(rep["battery"]), 1)  # type: ignore[arg-type]
        try:
            with open(self.status_path, "a") as f:
                f.write(json.dumps(rec) + "\n")
        except OSError:
            self.status_path = None  # the view loses a number; the flight goes on

    def start(self) -> None:
        self.sock_path.unlink(missing_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.sock_path))
        self.sock.settimeout(0.5)
        self.thread = threading.Thread(target=self._receive, name="autopilot-telemetry",
                                       daemon=True)
        self.thread.start()
        for name, (sysid, ap) in autopilots(self.sc).items():
            if ap.flavour == "px4-sitl":
                self._start_px4(name, sysid)
                continue
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

    def _start_px4(self, name: str, sysid: int) -> None:
        px4 = find_px4()
        if px4 is None:
            raise RuntimeError(PX4_MISSING)
        i = sysid - 1
        work = self.sock_path.parent / f"px4-{name}"
        work.mkdir(parents=True, exist_ok=True)
        lat, lon, alt_km = (float(x) for x in self.frame.geodetic(self.tracks[name].xyz))
        env = {"PX4_SYS_AUTOSTART": "10040", "PX4_SIM_MODEL": "sihsim_quadx",
               "PX4_HOME_LAT": f"{lat:.8f}", "PX4_HOME_LON": f"{lon:.8f}",
               "PX4_HOME_ALT": f"{alt_km * 1000:.2f}"}
        etc = px4.parent.parent / "etc"
        self.sup.start(f"px4-{name}", [str(px4), "-i", str(i), "-d", "-w", str(work),
                                        str(etc)],
                       netns=self.namespaces[name], env=env, critical=True,
                       log=self.sup.log_dir / name / "px4.log")
        ap = autopilot_of(self.sc, name)
        assert ap is not None
        self.sup.start(f"mavlink-relay-{name}", [
            sys.executable, "-m", "firmware.udprelay", "--listen", str(API_PORT + i),
            "--to", f"{self.addresses[ap.controller]}:{API_PORT + i}",
            "--report-unix", str(self.sock_path)], netns=self.namespaces[name],
            critical=True, log=self.sup.log_dir / name / "mavlink-relay.log")

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
                    self._status(name, rep)
            except (ValueError, KeyError, TypeError):
                continue

    def check(self) -> None:
        """Vehicles are critical processes: the supervisor's check reports a dead one."""

    def stop(self) -> None:
        self.stopping = True
        if self.sock is not None:
            self.sock.close()
        if self.thread is not None:
            self.thread.join(timeout=2)
        self.sock_path.unlink(missing_ok=True)
