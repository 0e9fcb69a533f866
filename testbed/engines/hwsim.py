"""HwsimEngine: Wi-Fi links as real 802.11 radios (mac80211_hwsim), the Mininet-WiFi way.

Each endpoint of a Wi-Fi link gets its own hwsim radio, created for the run over generic
netlink (testbed.engines.hwsim_nl) and moved into the node's namespace, so the node's
interface is a real wireless device: IBSS (ad hoc) or 802.11s mesh join, or hostapd access
points and wpa_supplicant stations with WPA2, with real authentication, association and
management frames.

hwsim itself delivers every frame between radios on one channel, whatever the distance.  Link
quality therefore comes from the project's own model, as Mininet-WiFi's tc mode does, but per
station pair: each radio's egress has an htb class per peer (matched on the peer's MAC by a
flower filter) holding the pair's rate, with a netem child for its loss and propagation delay;
positions move them.  Management frames bypass the qdisc (they do not pass through the
interface's queue), so association is decided by the access policy here (strongest signal
with hysteresis), which drives wpa_supplicant's roaming; a per-frame medium (wmediumd) would
be needed to lose management frames too, and Debian has no wmediumd.

The channel: path loss from the link's wifi settings (friis or log-distance, at the standard's
frequency), SNR over 20 MHz (10 for 802.11p) thermal noise plus a 7 dB noise figure; rate is
the data mode's PHY rate times MAC_EFFICIENCY when the SNR clears the mode's threshold (a
constant-rate station manager, as the ns-3 engine uses), loss the logistic PER around it.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx

from testbed.channels.free_space import fspl_db, log_distance_db
from testbed.channels.rate import packet_loss
from testbed.engines import features
from testbed.engines.base import Change, EngineLink, EngineUnavailable, wait_until
from testbed.lifecycle.ledger import Ledger
from testbed.lifecycle.sh import run
from testbed.lifecycle.supervisor import Managed, Supervisor
from testbed.scenario.errors import Problem
from testbed.scenario.model import Medium, Scenario

MAX_RADIOS = 64  # per run: beyond this hwsim's single medium and hostapd start-up dominate
MAC_EFFICIENCY = 0.65  # IP goodput / PHY rate of 802.11a/g OFDM with 1500-byte frames
NOISE_FIGURE_DB = 7.0
LOSS_SLOPE_DB = 1.0
ROAM_HYSTERESIS_DB = 3.0
CHANNELS_24 = ((1, 2412), (6, 2437), (11, 2462))  # where hwsim cells live (world regdomain)
STANDARD_FREQ_HZ = {"802.11a": 5.18e9, "802.11n-5GHz": 5.18e9, "802.11g": 2.412e9,
                    "802.11p": 5.9e9}
# receiver sensitivities of the OFDM modes (IEEE 802.11-2016 Table 17-18, 20 MHz; 10 MHz
# for 802.11p is 3 dB better at half the rate)
SENSITIVITY_DBM = {6: -82, 9: -81, 12: -79, 18: -77, 24: -74, 36: -70, 48: -66, 54: -65}
OUT_OF_RANGE_LOSS_PCT = 50.0  # a pair this lossy is left out of routes
ASSOC_TIMEOUT_S = 60.0  # generous: under software emulation (the test VM) it takes ~10 s


def hwsim_problems(sc: Scenario) -> list[Problem]:
    """Named errors before anything is created: no hwsim here, or too many radios."""
    problems: list[Problem] = []
    if not features.has_hwsim():
        problems.append(Problem("engines.wifi", "hwsim asked for, but this kernel has no "
                                "mac80211_hwsim module", "use wifi: auto or ns3 (ns-3 "
                                "emulates 802.11), or run on a stock kernel (make test runs "
                                "one under qemu: python -m testbed.vm.qemu)"))
    radios = sum(len(link.endpoints) for link in sc.links if link.carried_by is Medium.WIFI)
    if radios > MAX_RADIOS:
        problems.append(Problem("links", f"{radios} Wi-Fi endpoints need {radios} hwsim radios; "
                                f"this engine creates at most {MAX_RADIOS} per run",
                                "use engines: {wifi: ns3} for large cells"))
    for tool in ("iw", "hostapd", "wpa_supplicant", "wpa_cli"):
        if shutil.which(tool) is None:
            problems.append(Problem("engines.wifi", f"hwsim needs {tool}, which is missing",
                                    "run make setup (installs iw, hostapd, wpasupplicant)"))
    return problems


def mode_rate_mbps(data_mode: str) -> tuple[float, bool]:
    """(PHY rate, 10 MHz?) of an ns-3 OFDM mode name such as OfdmRate24Mbps."""
    m = re.fullmatch(r"OfdmRate(\d+)(?:_5)?Mbps(BW10MHz)?", data_mode)
    if not m:
        raise ValueError(f"unknown Wi-Fi data mode {data_mode} (OfdmRate6Mbps ... 54Mbps)")
    return float(m.group(1)), m.group(2) is not None


@dataclass(frozen=True)
class PairQuality:
    snr_db: float
    rate_mbps: float
    loss_pct: float
    delay_ms: float


def pair_quality(wifi: dict[str, Any], distance_m: float) -> PairQuality:
    """One direction of one station pair, from the link's wifi settings."""
    freq = STANDARD_FREQ_HZ[wifi.get("standard", "802.11a")]
    d = max(distance_m, 1.0)
    if wifi.get("propagation") == "log-distance":
        pl = float(log_distance_db(d, freq, float(wifi.get("exponent", 3.0)), 1.0))
    else:
        pl = float(fspl_db(d, freq))
    phy, narrow = mode_rate_mbps(wifi.get("data_mode", "OfdmRate24Mbps"))
    bw = 10e6 if narrow else 20e6
    noise = -174.0 + 10 * math.log10(bw) + NOISE_FIGURE_DB
    snr = float(wifi.get("tx_power_dbm", 16.0)) - pl - noise
    sens = SENSITIVITY_DBM.get(int(phy * (2 if narrow else 1)), -74) - (3 if narrow else 0)
    threshold = sens - noise
    loss = 100.0 * float(packet_loss(snr, threshold, LOSS_SLOPE_DB))
    rate = phy * MAC_EFFICIENCY if loss < 99.9 else 0.0
    return PairQuality(snr, rate, min(loss, 100.0), d / 299_792_458.0 * 1e3)


_HEARD = PairQuality(0.0, 1.0, 0.0, 0.0)


@dataclass
class Radio:
    link: str
    node: str
    netns: str
    ifname: str  # inside the namespace (after the builder renamed it)
    root_name: str
    phy: str
    mac: str = ""
    klass: dict[str, int] = field(default_factory=dict)  # peer node -> htb minor


@dataclass
class Cell:
    link: EngineLink
    index: int
    radios: dict[str, Radio]
    up: dict[str, bool]
    assoc: dict[str, str] = field(default_factory=dict)  # station -> its access point
    apart: frozenset[frozenset[str]] | None = None  # as last told to the network
    procs: list[Managed] = field(default_factory=list)


class HwsimEngine:
    name = "hwsim"

    def __init__(self, sup: Supervisor, ledger: Ledger,
                 on_association: Callable[[str, frozenset[frozenset[str]]], None] | None = None,
                 capture: Path | None = None, snaplen: int = 256) -> None:
        """`capture`: where hwsim0, the monitor interface that sees every frame between the
        radios (with radiotap headers), is recorded from before the first radio exists."""
        self.sup, self.ledger, self.on_association = sup, ledger, on_association
        self.capture, self.snaplen = capture, snaplen
        self.cells: dict[str, Cell] = {}
        self.positions: dict[str, tuple[float, float, float]] = {}
        self.applied: dict[tuple[str, str, str], PairQuality] = {}
        self.roams: list[dict[str, Any]] = []
        self.associations: list[dict[str, Any]] = []
        self.dir = Path("/tmp")
        self.lock = threading.Lock()
        self.timings: dict[str, float] = {}
        self.sniffer: Managed | None = None

    # ---- LinkEngine -----------------------------------------------------------------------
    def carries(self) -> set[Medium]:
        return {Medium.WIFI}

    def static_neighbours(self) -> bool:
        return False

    def start(self, state_dir: Path) -> None:
        from testbed.engines import hwsim_nl

        try:
            hwsim_nl.ensure_module()
        except RuntimeError as exc:
            raise EngineUnavailable(f"engines.wifi: hwsim: {exc}") from exc
        self.dir = state_dir / "hwsim"
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.capture is not None:
            # hwsim0 is a monitor interface in the root namespace: no address, no route, so
            # it opens no path into the emulated network
            run(["ip", "link", "set", "dev", "hwsim0", "up"])
            self.capture.parent.mkdir(parents=True, exist_ok=True)
            self.sniffer = self.sup.start("tcpdump-hwsim0", [
                "tcpdump", "-i", "hwsim0", "-n", "-U", "-Z", "root", "-s", str(self.snaplen),
                "-w", str(self.capture)])
            deadline = time.monotonic() + 20
            while not self.capture.exists() and time.monotonic() < deadline:
                time.sleep(0.05)

    def attach(self, links: list[EngineLink], seed: int) -> dict[str, str]:
        from testbed.engines import hwsim_nl

        t0 = time.monotonic()
        k = 0
        for index, link in enumerate(links):
            radios: dict[str, Radio] = {}
            for end in link.ends:
                phy = f"sh{self.ledger.tag}w{k}"
                k += 1
                self.ledger.add("hwsim_radios", phy)
                hwsim_nl.new_radio(phy)
                dev = hwsim_nl.radio_netdevs(phy)[0]
                run(["iw", "phy", phy, "set", "netns", "name", end.netns])
                run(["ip", "-n", end.netns, "link", "set", "dev", dev, "name", end.root_name])
                mac = Path(f"/sys/class/net/{end.root_name}/address")
                out = run(["ip", "netns", "exec", end.netns, "cat", str(mac)]).stdout.strip()
                radios[end.node] = Radio(link.name, end.node, end.netns, end.ifname,
                                         end.root_name, phy, out)
                if end.position is not None:
                    self.positions.setdefault(end.node, end.position)
                mode = link.wifi.get("mode", "adhoc")
                iftype = {"adhoc": "ibss", "mesh": "mp"}.get(mode)
                if iftype:
                    run(["ip", "netns", "exec", end.netns, "iw", "dev", end.root_name, "set",
                         "type", iftype])
            self.cells[link.name] = Cell(link, index, radios, {n: True for n in radios})
        self.timings["hwsim_radios_s"] = round(time.monotonic() - t0, 3)
        return {}

    def configured(self) -> None:
        t0 = time.monotonic()
        for cell in self.cells.values():
            self._shape_all(cell)
            mode = cell.link.wifi.get("mode", "adhoc")
            if mode == "ap":
                self._start_ess(cell)
            else:
                self._join(cell, mode)
                self._tell_routes(cell)
        self.timings["hwsim_associated_s"] = round(time.monotonic() - t0, 3)

    def apply(self, changes: list[Change], at: float | None = None) -> float | None:
        wait_until(at)
        moved: set[str] = set()
        with self.lock:
            for ch in changes:
                if ch.kind == "position":
                    assert ch.node is not None and ch.xyz is not None
                    self.positions[ch.node] = ch.xyz
                    moved.add(ch.node)
                elif ch.kind == "set" and ch.link in self.cells:
                    if any(v is not None for v in (ch.delay_ms, ch.rate_mbps, ch.loss_pct)):
                        raise ValueError(f"Wi-Fi link {ch.link}: only up/down and positions "
                                         "change")
                    cell = self.cells[ch.link]
                    for node in [ch.node] if ch.node else list(cell.radios):
                        if node not in cell.radios:
                            raise KeyError(f"{node} is not on Wi-Fi link {ch.link}")
                        if ch.up is not None:
                            cell.up[node] = ch.up
                    self._shape_all(cell)
                else:
                    raise ValueError(f"hwsim engine cannot apply {ch}")
            for cell in self.cells.values():
                if moved & set(cell.radios):
                    self._shape_all(cell)
        for cell in self.cells.values():
            if cell.link.wifi.get("mode") == "ap" and moved & set(cell.radios):
                self._roam_if_better(cell)
            self._tell_routes(cell)
        return time.time()

    def check(self) -> None:
        return None  # hostapd and wpa_supplicant are critical processes of the supervisor

    def stats(self) -> dict[str, Any]:
        return {"radios": sum(len(c.radios) for c in self.cells.values()),
                "cells": {n: c.link.wifi.get("mode", "adhoc") for n, c in self.cells.items()},
                "associations": self.associations, "roams": self.roams}

    def stop(self) -> None:
        # the radios are deleted by teardown, from the ledger, once their namespaces are gone
        # and they have fallen back to the root namespace (also after a crash)
        self.sup.stop_many([p for c in self.cells.values() for p in c.procs]
                           + ([self.sniffer] if self.sniffer is not None else []))

    # ---- link quality ---------------------------------------------------------------------
    def _distance(self, a: str, b: str) -> float:
        pa, pb = self.positions.get(a), self.positions.get(b)
        if pa is None or pb is None:
            return 1.0
        return math.dist(pa, pb)

    def quality(self, cell: Cell, a: str, b: str) -> PairQuality:
        if not (cell.up[a] and cell.up[b]):
            return PairQuality(-math.inf, 0.0, 100.0, 0.0)
        return pair_quality(cell.link.wifi, self._distance(a, b))

    def _shape_all(self, cell: Cell) -> None:
        """(Re)write each radio's per-peer classes whose quality changed: one tc batch per
        namespace."""
        for a, radio in cell.radios.items():
            lines: list[str] = []
            if not radio.klass:
                lines += [f"qdisc replace dev {radio.ifname} root handle 1: htb default 1",
                          f"class add dev {radio.ifname} parent 1: classid 1:1 htb rate 1gbit"]
            for b, peer in cell.radios.items():
                if b == a:
                    continue
                q = self.quality(cell, a, b)
                key = (cell.link.name, a, b)
                if self.applied.get(key) == q:
                    continue
                self.applied[key] = q
                rate = max(q.rate_mbps, 0.01)
                new = b not in radio.klass
                minor = radio.klass.setdefault(b, 10 + len(radio.klass))
                verb = "add" if new else "change"
                lines.append(f"class {verb} dev {radio.ifname} parent 1: classid 1:{minor} htb "
                             f"rate {rate * 1000:.0f}kbit ceil {rate * 1000:.0f}kbit")
                lines.append(f"qdisc {'add' if new else 'change'} dev {radio.ifname} "
                             f"parent 1:{minor} handle {minor}: netem delay "
                             f"{q.delay_ms:.4f}ms loss {q.loss_pct:.4f}% limit 1000")
                if new:
                    lines.append(f"filter add dev {radio.ifname} parent 1: protocol all prio 1 "
                                 f"flower dst_mac {peer.mac} classid 1:{minor}")
            if lines:
                run(["tc", "-n", radio.netns, "-batch", "-"], input="\n".join(lines) + "\n")

    # ---- ad hoc and mesh ------------------------------------------------------------------
    def _frequency(self, cell: Cell) -> tuple[int, int]:
        return CHANNELS_24[cell.index % len(CHANNELS_24)]

    def _join(self, cell: Cell, mode: str) -> None:
        _, freq = self._frequency(cell)
        ssid = cell.link.name[:32]
        bssid = f"02:5a:{cell.index >> 8 & 0xff:02x}:{cell.index & 0xff:02x}:00:01"
        for radio in cell.radios.values():
            cmd = (["iw", "dev", radio.ifname, "ibss", "join", ssid, str(freq), "fixed-freq",
                    bssid] if mode == "adhoc" else
                   ["iw", "dev", radio.ifname, "mesh", "join", ssid, "freq", str(freq)])
            run(["ip", "netns", "exec", radio.netns, *cmd])

    # ---- access points and stations -------------------------------------------------------
    def _ctrl(self, radio: Radio) -> Path:
        return self.dir / f"ctrl-{radio.root_name}"

    def _start_ess(self, cell: Cell) -> None:
        wifi = cell.link.wifi
        channel, _ = self._frequency(cell)
        ssid, psk = cell.link.name[:32], wifi.get("passphrase", "sagin-hil-wpa2")
        aps = [n for n in cell.radios if n in wifi.get("aps", [])]
        for node in aps:
            radio = cell.radios[node]
            conf = self.dir / f"hostapd-{radio.root_name}.conf"
            conf.write_text("\n".join([
                f"interface={radio.ifname}", "driver=nl80211", f"ssid={ssid}", "hw_mode=g",
                f"channel={channel}", "wpa=2", f"wpa_passphrase={psk}",
                "wpa_key_mgmt=WPA-PSK", "rsn_pairwise=CCMP", f"ctrl_interface={self._ctrl(radio)}",
                "logger_stdout=-1", "logger_stdout_level=1", ""]))
            cell.procs.append(self.sup.start(f"hostapd-{node}", ["hostapd", str(conf)],
                                             netns=radio.netns, critical=True))
        for node in aps:
            self._wait_cli(cell.radios[node], "hostapd_cli", "state=ENABLED")
        for node, radio in cell.radios.items():
            if node in aps:
                continue
            best = self._best_ap(cell, node, current=None)
            conf = self.dir / f"wpa-{radio.root_name}.conf"
            conf.write_text("\n".join([
                f"ctrl_interface={self._ctrl(radio)}", "ap_scan=1", "network={",
                f'  ssid="{ssid}"', f'  psk="{psk}"', "  key_mgmt=WPA-PSK", "  proto=RSN",
                f"  bssid={cell.radios[best].mac}", f"  scan_freq={self._frequency(cell)[1]}",
                '  bgscan=""', "}", ""]))
            t0 = time.monotonic()
            cell.procs.append(self.sup.start(
                f"wpa_supplicant-{node}", ["wpa_supplicant", "-i", radio.ifname, "-D", "nl80211",
                                           "-c", str(conf)], netns=radio.netns, critical=True))
            cell.assoc[node] = best
            self._wait_cli(radio, "wpa_cli", f"bssid={cell.radios[best].mac}",
                           also="wpa_state=COMPLETED")
            self.associations.append({"t": time.time(), "link": cell.link.name,
                                      "station": node, "ap": best,
                                      "seconds": round(time.monotonic() - t0, 3)})
        self._tell_routes(cell)

    def _cli(self, radio: Radio, tool: str, *args: str) -> str:
        return subprocess.run(["ip", "netns", "exec", radio.netns, tool, "-p",
                               str(self._ctrl(radio)), "-i", radio.ifname, *args],
                              capture_output=True, text=True, timeout=20).stdout

    def _wait_cli(self, radio: Radio, tool: str, want: str, also: str = "",
                  timeout: float = ASSOC_TIMEOUT_S) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            self.sup.check()
            out = self._cli(radio, tool, "status")
            if want in out.splitlines() and (not also or also in out.splitlines()):
                return time.monotonic() - t0
            time.sleep(0.1)
        raise EngineUnavailable(f"{radio.node} on {radio.link}: {tool} did not reach "
                                f"'{want}' in {timeout:.0f} s (log: {self.sup.log_dir})")

    def _signal(self, cell: Cell, a: str, b: str) -> float:
        return self.quality(cell, a, b).snr_db

    def _best_ap(self, cell: Cell, station: str, current: str | None) -> str:
        aps = [n for n in cell.radios if n in cell.link.wifi.get("aps", [])]
        best = max(aps, key=lambda ap: self._signal(cell, ap, station))
        if current is not None and current != best and (
                self._signal(cell, best, station) - self._signal(cell, current, station)
                < ROAM_HYSTERESIS_DB):
            return current
        return best

    def _roam_if_better(self, cell: Cell) -> None:
        for station, current in list(cell.assoc.items()):
            best = self._best_ap(cell, station, current)
            if best == current:
                continue
            radio, target = cell.radios[station], cell.radios[best].mac
            t0 = time.monotonic()
            self._cli(radio, "wpa_cli", "set_network", "0", "bssid", target)
            self._cli(radio, "wpa_cli", "roam", target)
            took = self._wait_cli(radio, "wpa_cli", f"bssid={target}",
                                  also="wpa_state=COMPLETED")
            cell.assoc[station] = best
            self.roams.append({"t": time.time(), "link": cell.link.name, "station": station,
                               "from": current, "to": best, "seconds": round(took, 3),
                               "wall_s": round(time.monotonic() - t0, 3)})
            self._tell_routes(cell)

    def _tell_routes(self, cell: Cell) -> None:
        """Which members of the cell cannot reach each other directly now, so that routes
        (and health checks) go around them: pairs out of range (in a mesh, pairs with no
        in-range path: 802.11s forwards by itself) and, with access points, stations and
        the access points they are not associated with, stations of different access
        points, and access points among themselves (no WDS)."""
        if self.on_association is None:
            return
        mode = cell.link.wifi.get("mode", "adhoc")
        out_of_range = {frozenset((a, b)) for a in cell.radios for b in cell.radios
                        if a < b and (self.applied.get((cell.link.name, a, b), _HEARD).loss_pct
                                      >= OUT_OF_RANGE_LOSS_PCT)}
        apart: set[frozenset[str]] = out_of_range
        if mode == "mesh":
            # 802.11s forwards at layer 2 (HWMP): only members with no in-range path between
            # them are apart
            g = nx.Graph()
            g.add_nodes_from(cell.radios)
            g.add_edges_from((a, b) for a in cell.radios for b in cell.radios
                             if a < b and frozenset((a, b)) not in out_of_range)
            part = {n: i for i, comp in enumerate(nx.connected_components(g)) for n in comp}
            apart = {frozenset((a, b)) for a in cell.radios for b in cell.radios
                     if a < b and part[a] != part[b]}
        if mode == "ap":
            aps = set(cell.link.wifi.get("aps", []))
            apart |= {frozenset((a, b)) for a in aps for b in aps if a != b}
            for station in cell.radios:
                if station in aps:
                    continue
                ap = cell.assoc.get(station)
                for other in cell.radios:
                    peer_ap = other if other in aps else cell.assoc.get(other)
                    if other != station and (ap is None or peer_ap != ap):
                        apart.add(frozenset((station, other)))
        frozen = frozenset(apart)
        if frozen != cell.apart:
            cell.apart = frozen
            self.on_association(cell.link.name, frozen)
