"""Command round trip to a vehicle: COMMAND_LONG -> COMMAND_ACK, timed, N times.

    python -m firmware.cmdping --listen 14540 --count 50

Listens where the vehicle sends its API link (PX4 SITL convention), waits for its
HEARTBEAT, then sends MAV_CMD_REQUEST_MESSAGE (AUTOPILOT_VERSION, harmless in any state)
every 100 ms and prints the round-trip times as JSON.  Used by the drones benchmark across
an emulated link; works the same against real PX4 SITL.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import time

from pymavlink.dialects.v20 import ardupilotmega as mav


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m firmware.cmdping")
    ap.add_argument("--listen", type=int, default=14540)
    ap.add_argument("--count", type=int, default=50)
    ap.add_argument("--timeout", type=float, default=30.0)
    args = ap.parse_args(argv)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", args.listen))
    sock.settimeout(1.0)
    link = mav.MAVLink(None, srcSystem=255, srcComponent=190)
    link.robust_parsing = True
    deadline = time.monotonic() + args.timeout
    peer = None
    sysid = 0
    while peer is None:
        if time.monotonic() > deadline:
            print(json.dumps({"error": "no heartbeat"}))
            return 1
        try:
            data, addr = sock.recvfrom(65535)
        except TimeoutError:
            continue
        for m in link.parse_buffer(data) or []:
            if m.get_type() == "HEARTBEAT":
                peer, sysid = addr, m.get_srcSystem()
    rtts = []
    lost = 0
    for _ in range(args.count):
        cmd = link.command_long_encode(sysid, 1, mav.MAV_CMD_REQUEST_MESSAGE, 0,
                                       mav.MAVLINK_MSG_ID_AUTOPILOT_VERSION, 0, 0, 0, 0, 0, 0)
        t0 = time.monotonic()
        sock.sendto(cmd.pack(link), peer)
        got = False
        while time.monotonic() - t0 < 2.0 and not got:
            try:
                data, _ = sock.recvfrom(65535)
            except TimeoutError:
                break
            for m in link.parse_buffer(data) or []:
                if m.get_type() == "COMMAND_ACK" and m.command == mav.MAV_CMD_REQUEST_MESSAGE:
                    rtts.append((time.monotonic() - t0) * 1e3)
                    got = True
        lost += not got
        time.sleep(0.1)
    out = {"sysid": sysid, "count": args.count, "lost": lost,
           "median_ms": round(statistics.median(rtts), 3) if rtts else None,
           "p95_ms": round(sorted(rtts)[int(0.95 * (len(rtts) - 1))], 3) if rtts else None}
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
