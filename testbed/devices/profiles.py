"""Device profiles: what kind of computer an emulated compute node stands for, and the cgroup CPU
quota that makes one host process group about as fast as that computer.

Two kinds of numbers live here and must not be confused:

* **Hardware facts** - core count, core type, clock, memory - are copied from the vendors'
  specifications named in each profile's ``sources`` (NVIDIA Jetson module data sheets,
  Raspberry Pi product briefs, Intel and AWS product pages).
* **Per-core speed** (``cpu_speed``) is a MODEL, not a measurement: clock / 3.0 GHz times an
  assumed relative-IPC factor for the core's microarchitecture (`RELATIVE_IPC`).  The reference
  core (speed 1.0) is one x86-64 server core of the Ice Lake / Zen 3 generation at 3.0 GHz.
  The factors are rough estimates; nobody measured these boards for this file.  Where the
  speed matters to a result, measure the real board (e.g. `payloads.agent.calibrate_kernel` on
  it and on the host) and put the measured ratio in ``cpu_speed``.

The quota (`quota_for`) emulates a device's *aggregate* compute, cores x cpu_speed, in host
cores, the way Mininet's CPULimitedHost limits a host to a fraction of the machine: a CFS
bandwidth limit on the node's cgroup.  It is a ceiling on the whole group, not a per-thread
speed: one thread on a node whose quota is 2.4 host cores still runs at full host-core speed.
It is exact for a node that keeps all its cores busy, and for any single-threaded workload
when the quota is at most one host core.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

REFERENCE_CLOCK_GHZ = 3.0
REFERENCE_CORE = "x86-64 server core, Ice Lake / Zen 3 generation, at 3.0 GHz"

# Assumed instructions-per-clock of each core type relative to the reference core (MODEL:
# rough estimates for integer/hashing code, not measured on these devices).
RELATIVE_IPC: dict[str, float] = {
    "cortex-a57": 0.45,
    "cortex-a72": 0.55,
    "cortex-a76": 0.75,
    "cortex-a78ae": 0.80,
    "ice-lake-sp": 1.00,
}
# A cloud vCPU is one hyperthread: two of them on a core give about 1.2x one thread's work
# (MODEL, assumed), so each counts as 0.6 of a core.
SMT_THREAD_SHARE = 0.6

CFS_PERIOD_US = 100_000  # the kernel's default period, as Mininet's CPULimitedHost uses
MIN_QUOTA_US = 1_000  # the kernel refuses cfs_quota_us / cpu.max quotas under 1 ms


def modelled_speed(core: str, clock_ghz: float, smt_share: float = 1.0) -> float:
    """Per-core speed relative to the reference core: clock ratio x assumed relative IPC."""
    return round(clock_ghz / REFERENCE_CLOCK_GHZ * RELATIVE_IPC[core] * smt_share, 4)


@dataclass(frozen=True)
class DeviceProfile:
    """A computer an emulated node stands for.  `cores`, `core_type`, `clock_ghz` and
    `memory_mb` are vendor facts (see `sources`); `cpu_speed` is modelled (see the module
    docstring) unless a profile says it was measured."""

    name: str
    description: str
    cores: int
    cpu_speed: float  # per core, relative to the reference core (1.0)
    memory_mb: int
    core_type: str = ""
    clock_ghz: float = 0.0
    sources: list[str] = field(default_factory=list)

    @property
    def total_speed(self) -> float:
        """The whole device in reference cores: what the quota reproduces."""
        return self.cores * self.cpu_speed


def _speed_note(core: str, clock_ghz: float, smt_share: float = 1.0) -> str:
    smt = f" x {smt_share} (one SMT thread)" if smt_share != 1.0 else ""
    return (f"MODEL, not measured: cpu_speed = {clock_ghz} GHz / {REFERENCE_CLOCK_GHZ} GHz x "
            f"relative IPC {RELATIVE_IPC[core]} ({core}, assumed){smt} "
            f"= {modelled_speed(core, clock_ghz, smt_share)} of a reference core")


def _profile(name: str, description: str, cores: int, core: str, clock_ghz: float,
             memory_mb: int, facts: list[str], smt_share: float = 1.0) -> DeviceProfile:
    return DeviceProfile(
        name=name, description=description, cores=cores,
        cpu_speed=modelled_speed(core, clock_ghz, smt_share), memory_mb=memory_mb,
        core_type=core, clock_ghz=clock_ghz,
        sources=[*facts, _speed_note(core, clock_ghz, smt_share)])


PROFILES: dict[str, DeviceProfile] = {p.name: p for p in (
    _profile(
        "jetson-nano", "NVIDIA Jetson Nano module (4 GB): a small UAV or roadside AI board",
        4, "cortex-a57", 1.43, 4096,
        ["NVIDIA Jetson Nano System-on-Module Data Sheet: quad-core Arm Cortex-A57 MPCore at "
         "1.43 GHz, 4 GB 64-bit LPDDR4 (shared with the GPU)"]),
    _profile(
        "jetson-orin-nano", "NVIDIA Jetson Orin Nano 8GB module: an on-board UAV AI computer",
        6, "cortex-a78ae", 1.5, 8192,
        ["NVIDIA Jetson Orin Nano Series Data Sheet: 6-core Arm Cortex-A78AE v8.2 64-bit CPU "
         "at up to 1.5 GHz, 8 GB 128-bit LPDDR5 (shared with the GPU); JetPack 6.1's 'Super' "
         "power mode raises the CPU to 1.7 GHz (not modelled here)"]),
    _profile(
        "raspberry-pi-4", "Raspberry Pi 4 Model B, 4 GB: a ground sensor or IoT gateway",
        4, "cortex-a72", 1.8, 4096,
        ["Raspberry Pi 4 Model B product brief: Broadcom BCM2711, quad-core Cortex-A72 "
         "(Arm v8) 64-bit SoC at 1.8 GHz (boards before the 2021 C0 stepping: 1.5 GHz), "
         "1/2/4/8 GB LPDDR4-3200 (the 4 GB variant here)"]),
    _profile(
        "raspberry-pi-5", "Raspberry Pi 5, 8 GB: a ground station or field gateway",
        4, "cortex-a76", 2.4, 8192,
        ["Raspberry Pi 5 product brief: Broadcom BCM2712, 2.4 GHz quad-core 64-bit Arm "
         "Cortex-A76, LPDDR4X-4267 SDRAM in 2/4/8 GB variants (the 8 GB variant here)"]),
    _profile(
        "uav-mec", "UAV-mounted MEC server: NVIDIA Jetson Orin NX 16GB module",
        8, "cortex-a78ae", 2.0, 16384,
        ["NVIDIA Jetson Orin NX Series Data Sheet: Orin NX 16GB, 8-core Arm Cortex-A78AE "
         "v8.2 64-bit CPU at up to 2.0 GHz, 16 GB 128-bit LPDDR5 (shared with the GPU)"]),
    _profile(
        "edge-server", "Ground edge server: one Intel Xeon Silver 4314, 64 GB",
        16, "ice-lake-sp", 2.4, 65536,
        ["Intel product specifications (ark.intel.com), Xeon Silver 4314: 16 cores / 32 "
         "threads, 2.40 GHz base, 3.40 GHz max turbo (Ice Lake-SP); the base clock is used "
         "and SMT is not counted",
         "64 GB of memory is a chosen configuration, not a vendor fact"]),
    _profile(
        "cloud", "Cloud VM: AWS EC2 c6i.8xlarge (32 vCPU, 64 GiB)",
        32, "ice-lake-sp", 3.5, 65536,
        ["Amazon EC2 C6i instance page: c6i.8xlarge has 32 vCPUs and 64 GiB; 3rd generation "
         "Intel Xeon Scalable (Ice Lake 8375C), all-core turbo up to 3.5 GHz; a vCPU is one "
         "hyperthread of a physical core"],
        smt_share=SMT_THREAD_SHARE),
)}

# Profiles a node kind would naturally get.  Never applied automatically: a scenario sets
# `profile:` on a node explicitly, so that no run is throttled without saying so.
DEFAULT_PROFILE_BY_KIND: dict[str, str] = {
    "uav": "uav-mec",
    "ground_station": "raspberry-pi-5",
    "ground_user": "raspberry-pi-4",
    "edge_server": "edge-server",
    "cloud": "cloud",
}


def lookup(name: str) -> DeviceProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown device profile {name!r}; known profiles: "
                         f"{', '.join(sorted(PROFILES))} (defined in testbed/devices/profiles.py)"
                         ) from None


@dataclass(frozen=True)
class CpuQuota:
    """A CFS bandwidth limit: the group may run `quota_us` of CPU time per `period_us`,
    summed over all host cores, i.e. `cores` host cores' worth."""

    period_us: int
    quota_us: int
    wanted_cores: float  # what the profile asks for, in host cores
    host_cores: int
    capped: bool = False  # the quota is not what the profile asks for: see `reason`
    reason: str = ""

    @property
    def cores(self) -> float:
        return self.quota_us / self.period_us


def quota_for(profile: DeviceProfile, host_cores: int, reference_speed: float = 1.0,
              period_us: int = CFS_PERIOD_US) -> CpuQuota:
    """The quota that emulates `profile` on a host with `host_cores` cores.

    `reference_speed` is one host core's speed in reference cores.  Left at 1.0 the host core
    is taken to be a reference core.  Raising it scales every device down by the same factor
    (relative speeds kept, absolute times stretched): the way to fit a cloud VM and a Jetson
    into a 2-core host side by side.
    """
    if host_cores < 1:
        raise ValueError(f"host_cores must be at least 1, got {host_cores}")
    if reference_speed <= 0:
        raise ValueError(f"reference_speed must be positive, got {reference_speed}")
    wanted = profile.total_speed / reference_speed
    cores, capped, reason = wanted, False, ""
    if wanted > host_cores:
        cores, capped = float(host_cores), True
        reason = (f"{profile.name} needs {wanted:.2f} host cores "
                  f"({profile.cores} x {profile.cpu_speed} / {reference_speed}) and this host "
                  f"has {host_cores}: capped at {host_cores}, so the node runs slower than the "
                  f"device; raise reference_speed to scale all devices down together")
    quota = math.floor(cores * period_us)
    if quota < MIN_QUOTA_US:
        quota, capped = MIN_QUOTA_US, True
        reason = (f"{profile.name} needs {wanted:.4f} host cores, under the kernel's minimum "
                  f"quota of {MIN_QUOTA_US} us per {period_us} us: raised to it, so the node "
                  "runs faster than the device; lower reference_speed")
    return CpuQuota(period_us=period_us, quota_us=quota, wanted_cores=round(wanted, 4),
                    host_cores=host_cores, capped=capped, reason=reason)
