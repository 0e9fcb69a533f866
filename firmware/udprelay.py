"""A two-way MAVLink UDP relay that also reports the vehicle's position.

    python -m firmware.udprelay --listen 14540 --to 198.19.255.254:14540 \\
        --report-unix /run/sagin-hil/<run>/autopilot-telemetry.sock

Why: real PX4 SITL sends its API link to 127.0.0.1:14540+i.  Run inside the UAV's
namespace, this relay takes those packets and sends them on to the controller node, so they
cross the emulated links, and sends the controller's replies back to PX4 (to whatever local
address PX4 last sent from).  On the way it decodes GLOBAL_POSITION_INT and reports the
position to the testbed's mobility driver (JSON datagrams on a host-local Unix socket), so a
vehicle the testbed cannot look into still moves its UAV's links.  Two sockets: the vehicle
side listens on 127.0.0.1:--listen, the controller side talks to --to from a port of its
own (the controller answers whoever sent), so no address needs guessing.
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import sys

from pymavlink.dialects.v20 import ardupilotmega as mav


def parse_addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return (host or "127.0.0.1", int(port))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m firmware.udprelay")
    ap.add_argument("--listen", type=int, required=True, help="UDP port the vehicle sends to")
    ap.add_argument("--to", required=True, help="controller host:port")
    ap.add_argument("--report-unix", default=None)
    args = ap.parse_args(argv)
    to = parse_addr(args.to)
    near = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    near.bind(("127.0.0.1", args.listen))
    far = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    far.bind(("0.0.0.0", 0))
    sel = selectors.DefaultSelector()
    sel.register(near, selectors.EVENT_READ)
    sel.register(far, selectors.EVENT_READ)
    report = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) if args.report_unix else None
    if report is not None:
        report.setblocking(False)  # a full receiver must never stall the MAVLink path
    parser = mav.MAVLink(None)
    parser.robust_parsing = True
    vehicle: tuple[str, int] | None = None
    print(f"udprelay: 127.0.0.1:{args.listen} <-> {to[0]}:{to[1]}", flush=True)
    while True:
        for key, _ in sel.select():
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            data, addr = sock.recvfrom(65535)
            if sock is far:
                if vehicle is not None:
                    near.sendto(data, vehicle)
                continue
            vehicle = addr
            try:
                far.sendto(data, to)
            except OSError:
                pass  # the emulated link is down: dropped, as on a radio
            if report is not None and args.report_unix:
                _report(parser, data, report, args.report_unix)


def _report(parser: mav.MAVLink, data: bytes, report: socket.socket, path: str) -> None:
    for m in parser.parse_buffer(data) or []:
        if m.get_type() == "GLOBAL_POSITION_INT":
            msg = json.dumps({"sysid": m.get_srcSystem(), "lat": m.lat / 1e7,
                              "lon": m.lon / 1e7, "alt": m.alt / 1000.0})
            try:
                report.sendto(msg.encode(), path)
            except OSError:
                pass


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        sys.exit(0)
