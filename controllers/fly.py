"""Fly a simple pattern with N vehicles through MAVSDK (controllers/fleet.py).

    python -m controllers.fly --vehicles 2 --takeoff 30 --square 100 --land

Vehicle k (system id k) is reached at udpin://0.0.0.0:14540+k-1, as PX4 SITL instance k-1
(or the testbed's autopilot of the UAV with that id) sends there; run it in the controller
node of a scenario (a timeline `exec`, or `make exec NODE=gs1 CMD=...`).  Each vehicle takes
off, flies a square of the given side starting north-east of its home (offsets stagger the
vehicles), and lands if asked.  Prints a JSON line per vehicle: times and battery used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from controllers.fleet import Drone, Fleet, first, offset, px4_sitl_urls


async def square(d: Drone, side: float, alt: float, speed: float) -> dict[str, Any]:
    await d.action.set_current_speed(speed)
    home = await first(d.telemetry.subscribe_home())
    corners = [(side, 0.0), (side, side), (0.0, side), (0.0, 0.0)]
    legs = []
    for n, e in corners:
        lat, lon = offset(home.latitude_deg, home.longitude_deg, n, e)
        legs.append(round(await d.goto(lat, lon, alt, within_m=3.0), 2))
    return {"legs_s": legs}


async def main_async(args: argparse.Namespace) -> int:
    fleet = Fleet(px4_sitl_urls(args.vehicles, args.base_port))
    t0 = time.monotonic()
    await fleet.connect(timeout=args.timeout)
    await fleet.wait_healthy(args.timeout)
    batt0 = {d.sysid: (await first(d.telemetry.subscribe_battery())).remaining_percent
             for d in fleet.drones}
    await fleet.takeoff(args.takeoff)
    results = {}
    if args.square:
        outs = await asyncio.gather(*(square(d, args.square, args.takeoff, args.speed)
                                      for d in fleet.drones))
        results = {d.sysid: o for d, o in zip(fleet.drones, outs, strict=True)}
    if args.land:
        await fleet.land()
    for d in fleet.drones:
        batt = (await first(d.telemetry.subscribe_battery())).remaining_percent
        print(json.dumps({"sysid": d.sysid, "elapsed_s": round(time.monotonic() - t0, 2),
                          "battery_used_pct": round(batt0[d.sysid] - batt, 2),
                          **results.get(d.sysid, {})}), flush=True)
    await fleet.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m controllers.fly", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vehicles", type=int, default=1)
    ap.add_argument("--base-port", type=int, default=14540)
    ap.add_argument("--takeoff", type=float, default=20.0, help="metres above home")
    ap.add_argument("--square", type=float, default=0.0, help="side of the square, metres")
    ap.add_argument("--speed", type=float, default=8.0, help="m/s")
    ap.add_argument("--land", action="store_true")
    ap.add_argument("--timeout", type=float, default=30.0)
    return asyncio.run(main_async(ap.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
