"""Mininet-WiFi path for Wi-Fi links: needs mac80211_hwsim and the mn_wifi package.

This host's kernel has no mac80211_hwsim, so the path cannot be exercised here.  The engine
detects both prerequisites and refuses with a message naming what is missing; Wi-Fi links then
run on ns-3 (the default).  The radio bring-up itself is not implemented yet (see README,
"Link engines"): selecting it explicitly on a host that has hwsim fails with that message
rather than pretending to work.
"""

from __future__ import annotations

from testbed.engines import features
from testbed.engines.base import EngineUnavailable


def require() -> None:
    missing = []
    if not features.has_hwsim():
        missing.append("the mac80211_hwsim kernel module")
    if not features.has_mininet_wifi():
        missing.append("the mn_wifi Python package (Mininet-WiFi)")
    if missing:
        raise EngineUnavailable(
            "engines.wifi: mininet-wifi needs " + " and ".join(missing) + " on this host; use "
            "engines: {wifi: ns3} (or auto), which emulates 802.11 in ns-3")
    raise EngineUnavailable(
        "engines.wifi: mininet-wifi prerequisites are present, but this testbed version does "
        "not drive Mininet-WiFi radios yet; use engines: {wifi: ns3}")
