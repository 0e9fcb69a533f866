"""Loading ns-3 into the ns-3 process: only the modules it uses, plus our C++ bridge.

`from ns import ns` (the wheel's loader) parses the headers of all 50 modules and takes
10-13 s on this machine; the links here need core, network and point-to-point (plus wifi,
mobility and propagation for Wi-Fi links), which load in about 2 s.  Our data and control
path (ns3_bridge.h, see there why not TapBridge) is compiled by cppyy in the same step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from testbed.engines.ns3setup import ns3_dir

HERE = Path(__file__).resolve().parent
VERSION = "3.44"
P2P_HEADERS = ["core-module.h", "network-module.h", "point-to-point-helper.h",
               "point-to-point-net-device.h", "point-to-point-channel.h", "error-model.h"]
WIFI_HEADERS = ["mobility-helper.h", "constant-position-mobility-model.h",
                "propagation-loss-model.h", "propagation-delay-model.h", "wifi-helper.h",
                "yans-wifi-helper.h", "wifi-mac-helper.h", "wifi-net-device.h", "wifi-phy.h"]
P2P_LIBS = ["core", "network", "point-to-point"]
WIFI_LIBS = ["mobility", "antenna", "propagation", "spectrum", "energy", "wifi"]


def load(wifi: bool) -> Any:
    """The `ns3` C++ namespace (as cppyy.gbl.ns3, with `sagin` beside it in cppyy.gbl)."""
    import cppyy
    import libcppyy

    libcppyy.AddSmartPtrType("Ptr")
    base = ns3_dir()
    cppyy.add_library_path(str(base / "lib64"))
    cppyy.add_include_path(str(base / "include"))
    for header in P2P_HEADERS + (WIFI_HEADERS if wifi else []):
        cppyy.include(f"ns3/{header}")
    for lib in P2P_LIBS + (WIFI_LIBS if wifi else []):
        cppyy.load_library(f"libns{VERSION}-{lib}.so")
    cppyy.include(str(HERE / "ns3_bridge.h"))
    if wifi:
        cppyy.include(str(HERE / "ns3_bridge_wifi.h"))
    ns = cppyy.gbl.ns3
    # As the wheel's loader does: a Python proxy of a Node must not delete it (the NodeList
    # owns every node until Simulator::Destroy).
    keep: list[Any] = []
    ns.Node.__del__ = lambda self: keep.append(self)
    ns.cppyy = cppyy
    # Run and Submit block for long: other Python threads must keep running meanwhile.
    ns.Simulator.Run.__release_gil__ = True
    cppyy.gbl.sagin.Engine.SubmitArrays.__release_gil__ = True
    return ns
