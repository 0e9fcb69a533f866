"""UAV energy per slot: rotary-wing propulsion (firmware.dynamics) plus CPU energy.

Propulsion is `firmware.dynamics.PowerModel.propulsion_w` (Zeng, Xu & Zhang, IEEE TWC 2019,
eq. 12, plus a climb term) - the model the simulated vehicles drain their batteries with.  That
method is scalar; a slot needs it for every UAV, so it is tabulated once on a fine airspeed
grid and read with `np.interp` (the curve is smooth: linear interpolation on a 0.05 m/s grid is
within 1e-3 W of the formula).  The climb term is linear and computed exactly.

Computation draws kappa·f²·cycles joules (dynamic CMOS power kappa·f³ for cycles/f seconds),
independent of the share of the CPU a task holds, since a share is a fraction of CPU time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from firmware.dynamics import PowerModel

FloatArray = npt.NDArray[np.float64]

GRAVITY_M_S2 = 9.81
GRID_STEP_M_S = 0.05


@dataclass(frozen=True)
class PropulsionTable:
    """`PowerModel.propulsion_w` tabulated up to `max_speed_m_s`, plus avionics."""

    max_speed_m_s: float
    power: PowerModel = field(default_factory=PowerModel)
    speeds: FloatArray = field(init=False, repr=False)
    watts: FloatArray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n = int(np.ceil(self.max_speed_m_s / GRID_STEP_M_S)) + 2
        speeds = np.arange(n) * GRID_STEP_M_S
        watts = np.array([self.power.propulsion_w(float(v)) for v in speeds])
        object.__setattr__(self, "speeds", speeds)
        object.__setattr__(self, "watts", watts + self.power.avionics_w)

    @property
    def climb_j_per_m(self) -> float:
        """Energy of climbing one metre: weight / climb efficiency (descents cost nothing)."""
        return self.power.mass_kg * GRAVITY_M_S2 / self.power.climb_efficiency

    def flight_w(self, airspeed_m_s: FloatArray, climb_m_s: FloatArray) -> FloatArray:
        """Electrical power (W) of flying at these airspeeds and climb rates, avionics included."""
        climb = np.maximum(climb_m_s, 0.0) * self.climb_j_per_m
        return np.interp(airspeed_m_s, self.speeds, self.watts) + climb

    def slot_energy_j(self, slot_s: float) -> SlotEnergy:
        """The same model in joules per slot, indexed by the distance flown in the slot."""
        return SlotEnergy(self.speeds * slot_s, self.watts * slot_s, self.climb_j_per_m)


class SlotEnergy(NamedTuple):
    """Flight energy of one slot as a function of the metres flown (fewer array operations)."""

    metres: FloatArray  # horizontal distance flown in the slot
    joules: FloatArray  # flight energy of the slot at that distance, avionics included
    climb_j_per_m: float

    def __call__(self, horizontal_m: FloatArray, climb_m: FloatArray) -> FloatArray:
        return (np.interp(horizontal_m, self.metres, self.joules)
                + np.maximum(climb_m, 0.0) * self.climb_j_per_m)


def compute_energy_j(kappa: float, cpu_hz: float | FloatArray, cycles: FloatArray) -> FloatArray:
    """CPU energy kappa·f²·cycles in joules."""
    return kappa * np.square(cpu_hz) * cycles
