"""The offloading system's parameters: validated, immutable, loadable from JSON or YAML.

One `OffloadConfig` describes a whole Space-Air-Ground task-offloading scenario: ground users
with tasks, UAVs with edge servers, one LEO satellite with a server, a cloud behind a gateway,
and the weights of the profit the controllers maximise.  Every learner, baseline and the live
emulation read the same object, so a result always names the exact system it was obtained on.

Units are SI throughout (m, s, Hz = CPU cycles/s, bit, bit/s, J, W) unless a field name says
otherwise (`_dbm`, `_dbw`, `_deg`, `_wh`).  Ranges are ``(low, high)`` pairs sampled uniformly.

Sources of the defaults (the rest is marked "assumed" on the field):

* MUECRS - arXiv 2409.17882 (multi-UAV MEC, mixed discrete/continuous actions, task delay).
* CMADDPG - arXiv 2412.10700 (SAGIN, satellite-driven UAV clustering, profit with queue
  delay and load balance).
* Al-Hourani et al., IEEE WCL 2014 - air-to-ground channel (testbed.channels.a2g).
* PX4 / firmware.dynamics - UAV speed limits, rotary-wing power model (Zeng et al. 2019) and
  the 74 Wh battery of the testbed's simulated vehicles.
* kappa = 1e-28: the effective switched capacitance common in the MEC literature (e.g. Mao,
  Zhang & Letaief, "Dynamic computation offloading for mobile-edge computing with energy
  harvesting devices", IEEE JSAC 34(12), 2016).

File format (`load_config` / `save_config`): a JSON or YAML mapping whose keys are the field
names below, nested exactly like the models (``tasks: {deadline_s: [0.5, 2.0]}``); omitted
keys keep their defaults, unknown keys are errors.  The channel blocks (``uav.link``,
``satellite.link``) are `testbed.channels` specs and carry their ``model`` discriminator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from testbed.channels.config import A2GSpec, RateSpec, SatelliteSpec
from testbed.scenario.files import FileProblem, read_json, read_yaml

_FROZEN = ConfigDict(extra="forbid", frozen=True)


def _ordered(value: tuple[float, float]) -> tuple[float, float]:
    if value[0] > value[1]:
        raise ValueError(f"range low {value[0]} exceeds high {value[1]}")
    return value


Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
PositiveRange = Annotated[tuple[Positive, Positive], AfterValidator(_ordered)]


class UserConfig(BaseModel):
    """Ground users: their CPU and how they move."""

    model_config = _FROZEN

    cpu_hz: Positive = 1e9  # local CPU; ~1 GHz handset/IoT class (brief, common in MEC papers)
    mobility: Literal["static", "waypoint"] = "static"  # waypoint: random waypoint in the area
    speed_m_s: PositiveRange = (0.5, 1.5)  # pedestrian walking speeds, assumed


class TaskConfig(BaseModel):
    """Task arrivals and sizes.  A user holds at most one task per slot."""

    model_config = _FROZEN

    # bernoulli: a task with probability arrival_rate per user per slot.
    # poisson: n ~ Poisson(arrival_rate) arrivals per user per slot, merged into one task of
    # n times the drawn size (the slot's data is offloaded together).
    arrival: Literal["bernoulli", "poisson"] = "bernoulli"
    arrival_rate: NonNegative = 0.7  # assumed: loads the default preset near the UAVs' capacity
    bits: PositiveRange = (5e5, 2e6)  # input size, 62.5-250 kB (an image, a sensor batch), assumed
    cycles_per_bit: PositiveRange = (500.0, 1500.0)  # around the common 1000 cycles/bit
    deadline_s: PositiveRange = (0.5, 2.0)  # assumed

    @model_validator(mode="after")
    def _probability(self) -> TaskConfig:
        if self.arrival == "bernoulli" and self.arrival_rate > 1.0:
            raise ValueError("a Bernoulli arrival_rate is a probability: at most 1")
        return self


def _uav_link() -> A2GSpec:
    # Al-Hourani urban constants at 2 GHz; 23 dBm = 3GPP UE power class 3; 10 MHz per UAV
    # shared by the users it serves (assumed); 7 dB noise figure; Shannon with a 3 dB gap.
    return A2GSpec(model="a2g", environment="urban", freq_hz=2e9, tx_power_dbm=23.0,
                   bandwidth_hz=10e6, noise_figure_db=7.0, rate=RateSpec(gap_db=3.0))


class UavConfig(BaseModel):
    """UAVs: flight envelope, battery, edge server and the user uplink."""

    model_config = _FROZEN

    cpu_hz: Positive = 5e9  # edge server; 5-10 GHz is the usual UAV-MEC range (brief)
    altitude_m: PositiveRange = (50.0, 120.0)  # 120 m: EU/FAA open-category ceiling; low assumed
    max_speed_m_s: Positive = 12.0  # horizontal; PX4 MPC_XY_VEL_MAX (firmware.dynamics.Limits)
    max_vertical_speed_m_s: Positive = 3.0  # PX4 MPC_Z_VEL_MAX_UP, used both ways (assumed)
    # where the UAVs are at an episode's start: "uniform" anywhere in the area and altitude
    # band (the shared presets), "corner" together at the area's (0, 0) corner at the band's
    # lowest height, a launch site they must fly out from (the MUECRS paper preset)
    start: Literal["uniform", "corner"] = "uniform"
    battery_wh: Positive = 74.0  # firmware.dynamics.Battery: 4S 5000 mAh LiPo
    kappa: Positive = 1e-28  # effective switched capacitance: E = kappa f^2 cycles (see top)
    link: A2GSpec = Field(default_factory=_uav_link)  # user -> UAV uplink, per UAV band

    @model_validator(mode="after")
    def _altitude(self) -> UavConfig:
        if self.altitude_m[0] < 10.0:
            raise ValueError("UAVs fly at 10 m or higher (the A2G model's range of validity)")
        return self


def _satellite_link() -> SatelliteSpec:
    # The budget of testbed.channels.satellite read as an uplink: eirp = user terminal EIRP
    # (10 dBW, a small flat-panel terminal, assumed), g_over_t = satellite receiver (testbed
    # default 9.2 dB/K), 20 MHz shared by the satellite's users (assumed), DVB-S2 ladder.
    return SatelliteSpec(model="satellite", band="Ku", eirp_dbw=10.0, g_over_t_dbk=9.2,
                         bandwidth_hz=20e6)


class SatelliteConfig(BaseModel):
    """The LEO satellite overhead: orbit height, elevation, server and the user link."""

    model_config = _FROZEN

    altitude_m: Positive = 550e3  # Starlink's 550 km shell
    # elevation seen from the area, drawn once per episode (a pass lasts ~10 min, an episode a
    # few minutes); equal bounds fix it.  Starlink's minimum is 25 deg; range assumed.
    elevation_deg: Annotated[tuple[float, float], AfterValidator(_ordered)] = (40.0, 90.0)
    cpu_hz: Positive = 10e9  # on-board server, assumed
    # False: no satellite server (a UAV-only MEC network such as MUECRS's): the satellite
    # mode is unavailable, its delay infinite and a task sent there is dropped
    enabled: bool = True
    link: SatelliteSpec = Field(default_factory=_satellite_link)

    @model_validator(mode="after")
    def _elevation(self) -> SatelliteConfig:
        if not (self.elevation_deg[0] > 0.0 and self.elevation_deg[1] <= 90.0):
            raise ValueError("elevation must lie in (0, 90] degrees")
        return self


class CloudConfig(BaseModel):
    """The cloud, reached through the user's nearest UAV, its gateway backhaul and the WAN."""

    model_config = _FROZEN

    cpu_hz: Positive = 50e9  # the slice of a data-centre server, assumed
    wan_rtt_s: NonNegative = 0.05  # gateway <-> data centre round trip, assumed (20-100 ms)
    backhaul_bps: Positive = 10e6  # each UAV's relay link to the gateway, assumed
    enabled: bool = True  # False: no cloud (as `SatelliteConfig.enabled`)


class ProfitConfig(BaseModel):
    """Weights of the CMADDPG-style system profit (see controllers.offload.model)."""

    model_config = _FROZEN

    revenue_per_task: NonNegative = 1.0  # per task served within its deadline, assumed
    delay_weight: NonNegative = 1.0  # per second of (effective) task delay, assumed
    energy_weight: NonNegative = 1e-3  # per joule drawn by the UAVs, assumed
    queue_weight: NonNegative = 0.1  # per second of server backlog (queue delay), assumed
    load_weight: NonNegative = 0.5  # per unit of (1 - Jain's index of UAV loads), assumed
    drop_penalty_s: NonNegative = 1.0  # a dropped task counts as deadline + this delay, assumed


class OffloadConfig(BaseModel):
    """A complete offloading scenario; `default()` and `large()` are the shared presets."""

    model_config = _FROZEN

    area_m: Positive = 1000.0  # side of the square service area, assumed (1 km^2 is common)
    n_users: int = Field(20, ge=1, le=10_000)  # bounds: a typo'd 10^9 is refused, not allocated
    n_uavs: int = Field(4, ge=1, le=1_000)
    slot_s: Positive = 1.0  # decision slot, assumed
    episode_slots: int = Field(200, ge=1, le=10_000_000)  # assumed
    n_clusters: int = Field(2, ge=1)  # CMADDPG UAV clusters formed by the satellite, assumed
    recluster_every: int = Field(10, ge=1)  # slots between re-clusterings, assumed
    users: UserConfig = UserConfig()
    tasks: TaskConfig = TaskConfig()
    uav: UavConfig = UavConfig()
    satellite: SatelliteConfig = SatelliteConfig()
    cloud: CloudConfig = CloudConfig()
    profit: ProfitConfig = ProfitConfig()

    @model_validator(mode="after")
    def _clusters(self) -> OffloadConfig:
        if self.n_clusters > self.n_uavs:
            raise ValueError(f"n_clusters {self.n_clusters} exceeds n_uavs {self.n_uavs}")
        return self

    @classmethod
    def default(cls) -> OffloadConfig:
        """20 users, 4 UAVs, 2 clusters over 1 km^2: the preset results are quoted on."""
        return cls()

    @classmethod
    def large(cls) -> OffloadConfig:
        """60 users, 10 UAVs, 3 clusters over 1.5 km x 1.5 km: the scaling preset."""
        return cls(area_m=1500.0, n_users=60, n_uavs=10, n_clusters=3)

    # The papers' own settings (docs/offload-papers.md).  Only the papers' abstracts and
    # system-model outlines could be read from this project's sandbox, not their parameter
    # tables: a value is sourced where that text states it and marked "assumed" (keeping the
    # shared default) where it does not.  "abstract" = the arXiv abstract; "sys. model" = the
    # paper's system-model section as summarised in the retrievable text.
    @classmethod
    def muecrs_paper(cls) -> OffloadConfig:
        """MUECRS (arXiv 2409.17882): a UAV-only MEC network (UMEC) - users compute locally or
        on a UAV's edge server, there is no satellite and no cloud - whose UAVs start together
        and must fly out to cover the terminals; MUECRS minimises task delay."""
        d = cls()
        return cls(
            area_m=1000.0,  # assumed (default)
            n_users=20,  # assumed (default): the paper's count was not retrievable
            n_uavs=4,  # assumed (default); "multi-UAV" (abstract)
            slot_s=1.0,  # assumed (default); "divided into time slots" (sys. model)
            episode_slots=200,  # assumed (default)
            n_clusters=2,  # unused by MUECRS (CMADDPG's); default kept
            users=d.users,  # static users, 1 GHz CPU: assumed (default)
            tasks=d.tasks,  # sizes, cycles/bit, deadlines, Bernoulli 0.7: assumed (default)
            uav=d.uav.model_copy(update={
                # "3D flight trajectories ... enabling rapid terminal coverage" (abstract):
                # the UAVs start from one launch site (assumed: the (0, 0) corner) and must fly
                # out; with the shared presets' uniform start they already cover the area
                "start": "corner",
            }),  # CPU 5 GHz, A2G G2A uplink 10 MHz / 23 dBm, flight limits: assumed (default)
            # "computation model ... local and edge computation modes" (sys. model): the
            # UMEC network is users and UAVs only (abstract: "multi-UAV communication network
            # equipped with edge computing nodes")
            satellite=d.satellite.model_copy(update={"enabled": False}),
            cloud=d.cloud.model_copy(update={"enabled": False}),
            profit=d.profit,  # MUECRS is scored on delay, not profit (abstract); default kept
        )

    @classmethod
    def cmaddpg_paper(cls) -> OffloadConfig:
        """CMADDPG (arXiv 2412.10700): a SAGIN - satellite, UAVs with MEC servers, ground
        users, a cloud behind the ground segment - with enough UAVs that clustering them
        matters; CMADDPG maximises the system profit (queue delay and load balance in it)."""
        d = cls()
        return cls(
            area_m=1500.0,  # assumed: room for 8 UAVs (the large preset's density)
            n_users=40,  # assumed: 5 users per UAV, the default preset's ratio
            n_uavs=8,  # assumed: "multi-UAV" (abstract); 8 so 2 clusters hold 4 UAVs each
            slot_s=1.0,  # assumed (default)
            episode_slots=200,  # assumed (default)
            # "partition UAVs into clusters, each managed by a Cluster Head" (abstract),
            # K-means at the satellite (KMDUC, sys. model); 2 clusters: assumed
            n_clusters=2,
            recluster_every=10,  # assumed (default): the satellite's re-clustering period
            users=d.users,  # assumed (default)
            tasks=d.tasks,  # assumed (default)
            uav=d.uav,  # uniform start, hovering UAVs (CMADDPG schedules, it does not fly)
            satellite=d.satellite,  # "satellites and aerial nodes assist ... offloading" (abstract)
            cloud=d.cloud,  # assumed (default)
            # "maximizing overall system profit", "minimizes queue delays, maintains balanced
            # load distribution" (abstract): the profit's terms; the weights: assumed (default)
            profit=d.profit,
        )


PRESETS = {"default": OffloadConfig.default, "large": OffloadConfig.large,
           "muecrs-paper": OffloadConfig.muecrs_paper,
           "cmaddpg-paper": OffloadConfig.cmaddpg_paper}
# which proposed method each paper preset is the setting of
PAPER_PRESETS = {"muecrs": "muecrs-paper", "cmaddpg": "cmaddpg-paper"}


def load_config(path: str | Path) -> OffloadConfig:
    """Read a config from .json, .yaml or .yml (see the module docstring for the format)."""
    path = Path(path)
    try:
        data: Any = (read_yaml(path) if path.suffix in (".yaml", ".yml") else read_json(path))
    except FileProblem as exc:  # a ValueError, worded with where and the fix
        where = f" ({exc.where})" if exc.where else ""
        raise ValueError(f"{where.strip()} {exc.message}; {exc.fix}".strip()) from None
    return OffloadConfig.model_validate(data or {})


def save_config(config: OffloadConfig, path: str | Path) -> None:
    """Write every field (defaults included) as .json, or .yaml/.yml by the file suffix."""
    path = Path(path)
    if path.suffix in (".yaml", ".yml"):
        path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    else:
        path.write_text(config.model_dump_json(indent=2) + "\n")
