"""A firmware vehicle on a fake clock with its outgoing MAVLink captured: the harness the
flight-logic tests of both flavours (PX4, ArduCopter) drive their vehicles with."""

from __future__ import annotations

from typing import Any

from pymavlink.dialects.v20 import ardupilotmega as mav

from firmware.vehicle import Home, Vehicle, VehicleConfig


class FakeClockVehicle:
    """`vehicle_cls` at `home`, ticked by `run`; a GCS (system 255) talks to it by `send`."""

    vehicle_cls: type[Vehicle] = Vehicle
    home = Home(47.397742, 8.545594, 488.0)

    def __init__(self, **params: float) -> None:
        self.t = 0.0
        self.out: list[tuple[Any, Any]] = []
        self.v = self.vehicle_cls(VehicleConfig(1, self.home, params=dict(params)),
                                  lambda m, link: self.out.append((m, link)),
                                  clock=lambda: self.t)
        self.gcs = mav.MAVLink(None, srcSystem=255, srcComponent=190)

    def run(self, seconds: float, dt: float = 0.02, heartbeat: bool = True) -> None:
        end = self.t + seconds
        while self.t < end:
            self.t += dt
            if heartbeat and int(self.t / dt) % 50 == 0:
                self.send(mav.MAVLink_heartbeat_message(mav.MAV_TYPE_GCS, 8, 0, 0, 0, 3))
            self.v.tick(self.t)

    def run_until(self, cond: Any, limit: float, dt: float = 0.02) -> float:
        start = self.t
        while not cond():
            assert self.t - start < limit, "condition not reached in time"
            self.run(dt, dt)
        return self.t - start

    def send(self, msg: Any, link: Any = "gcs") -> None:
        msg.pack(self.gcs)  # sets the source system/component as on the wire
        self.v.handle(self.gcs.decode(msg.get_msgbuf()), link)

    def command(self, cmd: int, *params: float) -> int:
        p = list(params) + [0.0] * (7 - len(params))
        self.out.clear()
        self.send(mav.MAVLink_command_long_message(1, 1, cmd, 0, *p))
        acks = self.sent("COMMAND_ACK")
        assert acks and acks[0].command == cmd
        assert acks[0].target_system == 255  # the ack goes back to the sender
        return acks[0].result

    def sent(self, kind: str) -> list[Any]:
        return [m for m, _ in self.out if m.get_type() == kind]
