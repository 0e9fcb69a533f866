"""What this host can do, detected (never assumed): netem, mac80211_hwsim, the OVS kernel
module, Mininet-WiFi.  Results go into every run's manifest."""

from __future__ import annotations

import functools
import importlib.util
import os
import platform
import shutil
import subprocess
import uuid
from pathlib import Path


def _try(argv: list[str]) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@functools.cache
def has_netem() -> bool:
    """Probe in a throw-away namespace: the only reliable test on kernels without modules."""
    if os.geteuid() != 0 or not shutil.which("tc"):
        return False
    ns = f"shprobe-{uuid.uuid4().hex[:6]}"
    if not _try(["ip", "netns", "add", ns]):
        return False
    try:
        return _try(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "lo", "root",
                     "netem", "delay", "1ms"])
    finally:
        _try(["ip", "netns", "del", ns])


@functools.cache
def has_hwsim() -> bool:
    return Path("/sys/module/mac80211_hwsim").exists() or _try(
        ["modprobe", "-n", "mac80211_hwsim"])


@functools.cache
def has_ovs_kernel() -> bool:
    """Loaded, or loadable (then loaded: the kernel datapath needs it anyway)."""
    return Path("/sys/module/openvswitch").exists() or (
        os.geteuid() == 0 and _try(["modprobe", "-q", "openvswitch"]))


@functools.cache
def has_mininet_wifi() -> bool:
    return importlib.util.find_spec("mn_wifi") is not None


def kernel_lacks() -> list[str]:
    """The kernel features the netem, hwsim and OVS-kernel paths need that this host lacks
    (where any is missing, tests and benchmarks of those paths run in testbed.vm)."""
    return [name for name, ok in (("sch_netem", has_netem()), ("mac80211_hwsim", has_hwsim()),
                                  ("openvswitch", has_ovs_kernel())) if not ok]


def report() -> dict[str, object]:
    return {
        "kernel": platform.release(),
        "sch_netem": has_netem(),
        "mac80211_hwsim": has_hwsim(),
        "openvswitch_kernel_module": has_ovs_kernel(),
        "mininet_wifi": has_mininet_wifi(),
        "cpus": os.cpu_count(),
    }
