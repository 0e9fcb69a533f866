"""Run N simulated vehicles with PX4 SITL's network conventions, in one process.

    python -m firmware.sitl --count 3            # or: make sitl N=3
    python -m firmware.sitl --flavour arducopter # ArduCopter 4.x vehicles (DroneKit, MAVProxy)

Instance i (0-based) is MAVLink system 1+i and behaves like `px4 -i i`: it listens on UDP
14580+i and sends to 127.0.0.1:14540+i (the API/offboard link: MAVSDK `udp://:14540`), and
listens on 18570+i and sends to 127.0.0.1:14550 (the ground-station link: QGroundControl,
MAVProxy).  It answers whoever last talked to it on each link, like PX4's MAVLink module.
One selector loop steps every vehicle at `--physics-hz` on absolute deadlines; a tick that
starts more than half a period late is counted, and the counts are printed (and written
with --stats) at exit.

The flavour picks the autopilot the vehicles present: `px4` (firmware/vehicle.py, the default)
or `arducopter` (firmware/ardupilot.py; --param then takes ArduCopter names).  ArduPilot's own
SITL serves TCP 5760 and friends, but with --flavour arducopter the vehicles still use the PX4
SITL UDP ports so the same tools connect (DroneKit: `connect("udpin:127.0.0.1:14540")`).
"""

from __future__ import annotations

import argparse
import json
import math
import selectors
import signal
import socket
import sys
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pymavlink.dialects.v20 import ardupilotmega as mav

from firmware.ardupilot import ArduCopterVehicle
from firmware.vehicle import Home, Vehicle, VehicleConfig

FLAVOURS: dict[str, type[Vehicle]] = {"px4": Vehicle, "arducopter": ArduCopterVehicle}
PX4_HOME = (47.397742, 8.545594, 488.0)  # PX4 SITL's default home (Zurich)
MAX_VEHICLES = 255


class UdpLink:
    """One MAVLink-over-UDP channel of one vehicle."""

    def __init__(self, bind: tuple[str, int], remote: tuple[str, int], sysid: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(bind)
        self.sock.setblocking(False)
        self.remote = remote
        self.mav = mav.MAVLink(None, srcSystem=sysid, srcComponent=1)
        self.mav.robust_parsing = True
        self.sent = 0
        self.received = 0

    def send(self, msg: Any) -> None:
        try:
            self.sock.sendto(msg.pack(self.mav), self.remote)
            self.sent += 1
        except OSError:
            pass  # nobody listening yet, or the emulated link is down: as on a radio

    def receive(self) -> list[Any]:
        out: list[Any] = []
        while True:
            try:
                data, addr = self.sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return out
            except OSError:
                return out
            self.remote = addr
            msgs = self.mav.parse_buffer(data) or []
            self.received += len(msgs)
            out += msgs

    def close(self) -> None:
        self.sock.close()


@dataclass
class Stats:
    ticks: int = 0
    late: int = 0
    max_late_ms: float = 0.0
    lateness: list[float] = field(default_factory=list)


class Fleet:
    def __init__(self, count: int, home: tuple[float, float, float] = PX4_HOME,
                 spacing_m: float = 3.0, api_host: str = "127.0.0.1", api_port: int = 14540,
                 gcs_port: int = 14550, bind_host: str = "0.0.0.0", first_sysid: int = 1,
                 telemetry_hz: float = 20.0, physics_hz: float = 50.0,
                 params: dict[str, float] | None = None, gcs: bool = True,
                 report_unix: str | None = None, report_hz: float = 10.0,
                 flavour: str = "px4", local_port: int = 14580) -> None:
        if flavour not in FLAVOURS:
            raise ValueError(f"unknown flavour {flavour!r}: choose from {', '.join(FLAVOURS)}")
        if not count >= 1 or first_sysid + count - 1 > MAX_VEHICLES:
            raise ValueError(f"system ids {first_sysid}..{first_sysid + count - 1} do not fit "
                             f"MAVLink's 1..{MAX_VEHICLES}")
        self.period = 1.0 / physics_hz
        self.sel = selectors.DefaultSelector()
        self.vehicles: list[Vehicle] = []
        self.links: dict[int, list[UdpLink]] = {}
        self.stats = Stats()
        lat0, lon0, alt0 = home
        for i in range(count):
            sysid = first_sysid + i
            # vehicles stand in a row, spacing_m apart to the east
            lon = lon0 + math.degrees(i * spacing_m / (6378137.0 * math.cos(
                math.radians(lat0))))
            links: list[UdpLink] = []  # bound after the vehicle: bad parameters bind nothing
            v = FLAVOURS[flavour](VehicleConfig(sysid, Home(lat0, lon, alt0), telemetry_hz,
                                                dict(params or {})), self._sender(links))
            links.append(UdpLink((bind_host, local_port + i), (api_host, api_port + i), sysid))
            if gcs:
                links.append(UdpLink((bind_host, 18570 + i), (api_host, gcs_port), sysid))
            self.vehicles.append(v)
            self.links[sysid] = links
            for link in links:
                self.sel.register(link.sock, selectors.EVENT_READ, (v, link))
        self.stopping = False
        self.errors: list[str] = []
        # positions for the testbed's mobility driver, over a host-local Unix socket
        self.report_path = report_unix
        self.report_period = 1.0 / report_hz
        self.report_due = 0.0
        self.report_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) \
            if report_unix else None
        if self.report_sock is not None:
            self.report_sock.setblocking(False)  # never let a slow reader stall the vehicles

    @staticmethod
    def _sender(links: list[UdpLink]) -> Any:
        def send(msg: Any, link: UdpLink | None) -> None:
            for target in ([link] if link is not None else links):
                target.send(msg)
        return send

    def run(self, duration_s: float | None = None) -> Stats:
        t0 = time.monotonic()
        k = 0
        while not self.stopping:
            due = t0 + k * self.period
            while True:
                wait = due - time.monotonic()
                for key, _ in self.sel.select(timeout=max(0.0, wait)):
                    vehicle, link = key.data
                    for msg in link.receive():
                        try:
                            vehicle.handle(msg, link)
                        except Exception as exc:  # noqa: BLE001 - bad input never kills it
                            self.errors.append(f"{msg.get_type()}: {exc!r}")
                            vehicle.status(f"rejected {msg.get_type()}")
                if time.monotonic() >= due:
                    break
            now = time.monotonic()
            late = now - due
            if late > self.period / 2:
                self.stats.late += 1
            self.stats.max_late_ms = max(self.stats.max_late_ms, late * 1e3)
            self.stats.lateness.append(late * 1e3)
            for v in self.vehicles:
                v.tick(now)
            if self.report_sock is not None and now >= self.report_due:
                self.report_due = now + self.report_period
                self._report()
            self.stats.ticks += 1
            k += 1
            if late > self.period:  # fell behind by whole periods: skip them (counted late)
                skipped = int(late / self.period)
                k += skipped
                self.stats.late += skipped
                self.stats.ticks += skipped
            if duration_s is not None and now - t0 >= duration_s:
                break
        return self.stats

    def _report(self) -> None:
        assert self.report_sock is not None and self.report_path is not None
        for v in self.vehicles:
            lat, lon, alt = v.ned_to_global(v.body.pos)
            data = json.dumps({"sysid": v.sysid, "lat": lat, "lon": lon, "alt": alt,
                               "armed": v.armed, "mode": v.mode_name,
                               "battery": round(v.battery.remaining, 4),
                               "power_w": round(v.body.power_w, 2)}).encode()
            try:
                self.report_sock.sendto(data, self.report_path)
            except OSError:
                pass  # the testbed is not listening (yet): positions are best effort

    def close(self) -> None:
        if self.report_sock is not None:
            self.report_sock.close()
        for links in self.links.values():
            for link in links:
                self.sel.unregister(link.sock)
                link.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m firmware.sitl", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", "-n", type=int, default=1)
    ap.add_argument("--flavour", choices=sorted(FLAVOURS), default="px4",
                    help="autopilot the vehicles present (default px4); arducopter keeps the "
                    "PX4 SITL UDP ports")
    ap.add_argument("--home", default=",".join(map(str, PX4_HOME)),
                    help="lat,lon,alt_amsl of instance 0 (default PX4 SITL's Zurich home)")
    ap.add_argument("--spacing", type=float, default=3.0, help="metres between vehicles")
    ap.add_argument("--api-host", default="127.0.0.1",
                    help="where the API (14540+i) and GCS (14550) links send")
    ap.add_argument("--api-port", type=int, default=14540)
    ap.add_argument("--local-port", type=int, default=14580,
                    help="where instance i listens for the API link (PX4: 14580+i)")
    ap.add_argument("--gcs-port", type=int, default=14550)
    ap.add_argument("--first-sysid", type=int, default=1)
    ap.add_argument("--rate-hz", type=float, default=20.0, help="position/attitude telemetry")
    ap.add_argument("--physics-hz", type=float, default=50.0)
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--duration", type=float, default=None)
    ap.add_argument("--stats", type=Path, default=None, help="write tick statistics (JSON)")
    ap.add_argument("--report-unix", default=None,
                    help="send each vehicle's position 10 times a second to this Unix "
                    "datagram socket (the testbed's mobility driver listens there)")
    args = ap.parse_args(argv)
    tracemalloc.start()  # Python-level memory of building the fleet, per vehicle
    try:
        lat, lon, alt = (float(x) for x in args.home.split(","))
        params = {k: float(v) for k, v in (p.split("=", 1) for p in args.param)}
        fleet = Fleet(args.count, (lat, lon, alt), args.spacing, args.api_host, args.api_port,
                      args.gcs_port, first_sysid=args.first_sysid, telemetry_hz=args.rate_hz,
                      physics_hz=args.physics_hz, params=params,
                      report_unix=args.report_unix, flavour=args.flavour,
                      local_port=args.local_port)
    except (ValueError, KeyError, OSError) as exc:
        print(f"firmware.sitl: {exc}", file=sys.stderr)
        return 2
    finally:
        mem = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()  # never left on: it slows everything after it ~15x

    def stop(signum: int, frame: Any) -> None:
        fleet.stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print(f"firmware.sitl: {args.count} {args.flavour}-flavour vehicles, sysid {args.first_sysid}.."
          f"{args.first_sysid + args.count - 1}, API -> {args.api_host}:{args.api_port}+i, "
          f"GCS -> {args.api_host}:{args.gcs_port}", flush=True)
    cpu0 = time.process_time()
    t0 = time.monotonic()
    st = fleet.run(args.duration)
    wall = time.monotonic() - t0
    lat_sorted = sorted(st.lateness)
    out = {"vehicles": args.count, "ticks": st.ticks, "late_ticks": st.late,
           "late_fraction": round(st.late / st.ticks, 5) if st.ticks else None,
           "lateness_ms_p99": round(lat_sorted[int(0.99 * (len(lat_sorted) - 1))], 3)
           if lat_sorted else None, "max_late_ms": round(st.max_late_ms, 3),
           "cpu_fraction": round((time.process_time() - cpu0) / wall, 4) if wall else None,
           "memory_per_vehicle_kb": round(mem / args.count / 1024, 1),
           "messages_sent": sum(link.sent for ls in fleet.links.values() for link in ls),
           "handler_errors": fleet.errors[:20]}
    fleet.close()
    print(json.dumps(out), flush=True)
    if args.stats:
        args.stats.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
