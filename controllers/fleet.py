"""A thin fleet layer over MAVSDK 4.x (`mavsdk.asyncio`): connect N vehicles, wait until they
are healthy, arm, take off, fly (goto, offboard velocity, missions) and land.

Controllers use only this and MAVSDK, so the same code flies the testbed's built-in
vehicles (firmware/), real PX4 SITL, or a Pixhawk on a radio: only the connection URL
changes (`udpin://0.0.0.0:14540` for PX4 SITL instance 0, `serial:///dev/ttyACM0:57600`
for a flight controller).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mavsdk.asyncio import ComponentType, Configuration, Mavsdk
from mavsdk.asyncio.plugins.action import ActionAsync
from mavsdk.asyncio.plugins.mission import MissionAsync
from mavsdk.asyncio.plugins.offboard import OffboardAsync
from mavsdk.asyncio.plugins.param import ParamAsync
from mavsdk.asyncio.plugins.telemetry import TelemetryAsync
from mavsdk.plugins.mission import MissionItem, MissionPlan
from mavsdk.plugins.offboard import VelocityNedYaw

EARTH_R = 6378137.0


def px4_sitl_urls(count: int, base_port: int = 14540, host: str = "0.0.0.0") -> list[str]:
    """Where PX4 SITL instance i sends its API link: udpin://host:base_port+i."""
    return [f"udpin://{host}:{base_port + i}" for i in range(count)]


def offset(lat: float, lon: float, north_m: float, east_m: float) -> tuple[float, float]:
    """A point north_m / east_m away (flat Earth: fine over a few km)."""
    return (lat + math.degrees(north_m / EARTH_R),
            lon + math.degrees(east_m / (EARTH_R * math.cos(math.radians(lat)))))


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    n = math.radians(lat2 - lat1) * EARTH_R
    e = math.radians(lon2 - lon1) * EARTH_R * math.cos(math.radians(lat1))
    return math.hypot(n, e)


@dataclass
class Drone:
    url: str
    mavsdk: Mavsdk
    system: Any
    sysid: int
    action: ActionAsync = field(init=False)
    telemetry: TelemetryAsync = field(init=False)
    offboard: OffboardAsync = field(init=False)
    mission: MissionAsync = field(init=False)
    param: ParamAsync = field(init=False)
    velocity_sp: tuple[float, float, float] = (0.0, 0.0, 0.0)  # see stream_velocity
    last_position: Any = None  # see track_position

    def __post_init__(self) -> None:
        self.action = ActionAsync(self.system)
        self.telemetry = TelemetryAsync(self.system)
        self.offboard = OffboardAsync(self.system)
        self.mission = MissionAsync(self.system)
        self.param = ParamAsync(self.system)

    async def position(self) -> Any:
        return await first(self.telemetry.subscribe_position())

    async def wait_healthy(self, timeout: float = 30.0) -> None:
        async def ok() -> None:
            async for h in self.telemetry.subscribe_health():
                if h.is_global_position_ok and h.is_home_position_ok and h.is_armable:
                    return
        await asyncio.wait_for(ok(), timeout)

    async def takeoff(self, altitude_m: float, timeout: float = 60.0) -> None:
        """Arm (if needed), take off to altitude_m above home and wait until there."""
        await self.action.set_takeoff_altitude(altitude_m)
        await self.action.arm()
        await self.action.takeoff()
        await self.wait_altitude(altitude_m - 0.5, timeout)

    async def wait_altitude(self, rel_m: float, timeout: float = 60.0) -> None:
        async def up() -> None:
            async for p in self.telemetry.subscribe_position():
                if p.relative_altitude_m >= rel_m:
                    return
        await asyncio.wait_for(up(), timeout)

    async def goto(self, lat: float, lon: float, rel_alt_m: float, within_m: float = 2.0,
                   timeout: float = 120.0) -> float:
        """Fly to a point (altitude above home) and wait until within_m; returns seconds."""
        home = await first(self.telemetry.subscribe_home())
        t0 = time.monotonic()
        await self.action.goto_location(lat, lon, home.absolute_altitude_m + rel_alt_m,
                                        float("nan"))

        async def there() -> None:
            async for p in self.telemetry.subscribe_position():
                if distance_m(p.latitude_deg, p.longitude_deg, lat, lon) <= within_m:
                    return
        await asyncio.wait_for(there(), timeout)
        return time.monotonic() - t0

    async def fly_velocity(self, north: float, east: float, down: float, seconds: float,
                           rate_hz: float = 10.0) -> None:
        """Offboard velocity control for `seconds`, then back to hold (offboard stopped)."""
        sp = VelocityNedYaw(north, east, down, 0.0)
        await self.offboard.set_velocity_ned(sp)
        await self.offboard.start()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await self.offboard.set_velocity_ned(sp)
            await asyncio.sleep(1.0 / rate_hz)
        await self.offboard.set_velocity_ned(VelocityNedYaw(0.0, 0.0, 0.0, 0.0))
        await self.offboard.stop()

    async def stream_velocity(self, rate_hz: float = 5.0) -> None:
        """Keep sending `self.velocity_sp` (north, east, down m/s) as offboard setpoints until
        cancelled: PX4 leaves OFFBOARD when the stream stops (COM_OF_LOSS_T), so a controller
        that decides once a second still needs a steady stream."""
        await self.offboard.set_velocity_ned(VelocityNedYaw(*self.velocity_sp, 0.0))
        await self.offboard.start()
        try:
            while True:
                await self.offboard.set_velocity_ned(VelocityNedYaw(*self.velocity_sp, 0.0))
                await asyncio.sleep(1.0 / rate_hz)
        finally:
            self.velocity_sp = (0.0, 0.0, 0.0)

    async def track_position(self) -> None:
        """Keep `self.last_position` current (MAVSDK Position) until cancelled."""
        async for p in self.telemetry.subscribe_position():
            self.last_position = p

    async def run_mission(self, waypoints: Sequence[tuple[float, float, float]],
                          speed_m_s: float = 5.0, timeout: float = 300.0) -> None:
        """Upload waypoints (lat, lon, altitude above home), start, wait until finished."""
        items = [MissionItem(latitude_deg=lat, longitude_deg=lon, relative_altitude_m=alt,
                             speed_m_s=speed_m_s, is_fly_through=True,
                             acceptance_radius_m=2.0) for lat, lon, alt in waypoints]
        await self.mission.upload_mission(MissionPlan(items))
        await self.mission.start_mission()

        async def done() -> None:
            async for prog in self.mission.subscribe_mission_progress():
                if prog.total and prog.current >= prog.total:
                    return
        await asyncio.wait_for(done(), timeout)

    async def land(self, timeout: float = 120.0) -> None:
        """Land and wait until the vehicle disarms itself."""
        await self.action.land()

        async def disarmed() -> None:
            async for armed in self.telemetry.subscribe_armed():
                if not armed:
                    return
        await asyncio.wait_for(disarmed(), timeout)


async def first(gen: Any) -> Any:
    async for x in gen:
        await gen.aclose()
        return x
    raise RuntimeError("subscription ended")


class Fleet:
    """One MAVSDK instance per vehicle (each URL is one vehicle's link)."""

    def __init__(self, urls: Sequence[str]) -> None:
        self.urls = list(urls)
        self.drones: list[Drone] = []

    async def connect(self, timeout: float = 30.0) -> list[Drone]:
        async def one(url: str) -> Drone:
            m = Mavsdk(Configuration.create_with_component_type(ComponentType.GROUND_STATION))
            await m.add_any_connection(url)
            system = await m.first_autopilot(timeout_s=timeout)
            if system is None:
                m.destroy()
                raise TimeoutError(f"no autopilot on {url} within {timeout:.0f} s")
            return Drone(url, m, system, await system.get_system_id())
        self.drones = list(await asyncio.gather(*(one(u) for u in self.urls)))
        return self.drones

    async def wait_healthy(self, timeout: float = 30.0) -> None:
        await asyncio.gather(*(d.wait_healthy(timeout) for d in self.drones))

    async def takeoff(self, altitude_m: float) -> None:
        await asyncio.gather(*(d.takeoff(altitude_m) for d in self.drones))

    async def land(self) -> None:
        await asyncio.gather(*(d.land() for d in self.drones))

    async def close(self) -> None:
        for d in self.drones:
            d.mavsdk.destroy()
        self.drones = []
