"""The ns-3 real-time process: one per run, carrying every Wi-Fi and point-to-point link.

Run as `python -m testbed.engines.ns3_sim <spec.json>` by the Ns3Engine.  It imports ns-3
first (about 10 s, overlapped with the host building namespaces), then waits for the spec file
to appear (the host writes it once every namespace exists), builds one ns-3 ghost node per
link endpoint with a TapBridge in UseLocal mode, writes the device MACs, and runs the
real-time simulator.  The tap-creator wrapper (testbed.engines.ns3setup) moves each tap into its
node's namespace as it is created.

Runtime control: a TCP server on 127.0.0.1 speaking JSON lines, polled from inside the
simulator thread every 5 ms (so every change is applied by the simulator thread itself, never
concurrently with it).  Ops: set (delay/rate/loss/up on a link or one Wi-Fi member), position,
batch (several ops in one tick), status, stop.  Every applied change is appended with wall and
simulator time to the changes log; the real-time lag is sampled every tick and summarised once
per simulated second in the lag log.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

TICK_S = 0.005


def _wait_for(path: Path, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"ns3_sim: spec {path} did not appear within {timeout:.0f} s")
        time.sleep(0.02)
    return json.loads(path.read_text())


def _write_atomic(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


class Sim:
    """Holds every ns-3 object the runtime commands touch (and keeps them alive)."""

    def __init__(self, ns: Any, spec: dict[str, Any]) -> None:
        self.ns = ns
        self.spec = spec
        self.p2p: dict[str, dict[str, Any]] = {}
        self.wifi: dict[str, dict[str, Any]] = {}
        self.mobility: dict[str, list[Any]] = {}
        self.macs: dict[str, str] = {}
        self.keep: list[Any] = []

    # ---- construction -------------------------------------------------------------------
    def build(self) -> None:
        ns = self.ns
        ns.GlobalValue.Bind("SimulatorImplementationType",
                            ns.StringValue("ns3::RealtimeSimulatorImpl"))
        ns.GlobalValue.Bind("ChecksumEnabled", ns.BooleanValue(True))
        ns.RngSeedManager.SetSeed(max(1, int(self.spec.get("seed", 1))))
        tap = ns.TapBridgeHelper()
        tap.SetAttribute("Mode", ns.StringValue("UseLocal"))
        for link in self.spec.get("p2p", []):
            self._build_p2p(link, tap)
        for link in self.spec.get("wifi", []):
            self._build_wifi(link, tap)

    def _attach(self, tap: Any, node: Any, dev: Any, tap_name: str) -> None:
        ns = self.ns
        tap.SetAttribute("DeviceName", ns.StringValue(tap_name))
        self.keep.append(tap.Install(node, dev))
        self.macs[tap_name] = str(ns.Mac48Address.ConvertFrom(dev.GetAddress()))

    def _build_p2p(self, link: dict[str, Any], tap: Any) -> None:
        ns = self.ns
        nodes = ns.NodeContainer()
        nodes.Create(2)
        helper = ns.PointToPointHelper()
        helper.SetQueue("ns3::DropTailQueue<Packet>", "MaxSize",
                        ns.StringValue(f"{int(link['queue_packets'])}p"))
        devs = helper.Install(nodes)
        errors = []
        for i in range(2):
            em = ns.CreateObject[ns.RateErrorModel]()
            em.SetUnit(ns.RateErrorModel.ERROR_UNIT_PACKET)
            devs.Get(i).SetAttribute("ReceiveErrorModel", ns.PointerValue(em))
            errors.append(em)
            self._attach(tap, nodes.Get(i), devs.Get(i), link["ends"][i]["tap"])
        state = {"devs": [devs.Get(0), devs.Get(1)], "channel": devs.Get(0).GetChannel(),
                 "errors": errors, "nodes": nodes, "up": True, "loss_pct": 0.0}
        self.p2p[link["name"]] = state
        self._set_p2p(link["name"], link["delay_ms"], link["rate_mbps"], link.get("loss_pct", 0.0),
                      None)

    def _build_wifi(self, link: dict[str, Any], tap: Any) -> None:
        ns = self.ns
        n = len(link["ends"])
        nodes = ns.NodeContainer()
        nodes.Create(n)
        standard = {"802.11a": ns.WIFI_STANDARD_80211a, "802.11g": ns.WIFI_STANDARD_80211g,
                    "802.11n-5GHz": ns.WIFI_STANDARD_80211n,
                    "802.11p": ns.WIFI_STANDARD_80211p}[link["standard"]]
        wifi = ns.WifiHelper()
        wifi.SetStandard(standard)
        control = "ErpOfdmRate6Mbps" if link["standard"] == "802.11g" else "OfdmRate6Mbps"
        if link["data_mode"].startswith("HtMcs"):
            control = "HtMcs0"
        if link["standard"] == "802.11p":
            control = "OfdmRate6MbpsBW10MHz"
        wifi.SetRemoteStationManager("ns3::ConstantRateWifiManager",
                                     "DataMode", ns.StringValue(link["data_mode"]),
                                     "ControlMode", ns.StringValue(control))
        chan = ns.YansWifiChannelHelper()
        chan.SetPropagationDelay("ns3::ConstantSpeedPropagationDelayModel")
        if link["propagation"] == "friis":
            freq = {"802.11g": 2.437e9, "802.11p": 5.9e9}.get(link["standard"], 5.18e9)
            chan.AddPropagationLoss("ns3::FriisPropagationLossModel",
                                    "Frequency", ns.DoubleValue(freq))
        else:
            chan.AddPropagationLoss("ns3::LogDistancePropagationLossModel",
                                    "Exponent", ns.DoubleValue(float(link["exponent"])))
        phy = ns.YansWifiPhyHelper()
        phy.SetChannel(chan.Create())
        phy.Set("TxPowerStart", ns.DoubleValue(float(link["tx_power_dbm"])))
        phy.Set("TxPowerEnd", ns.DoubleValue(float(link["tx_power_dbm"])))
        mac = ns.WifiMacHelper()
        mac.SetType("ns3::AdhocWifiMac")
        devs = wifi.Install(phy, mac, nodes)
        mob = ns.MobilityHelper()
        mob.SetMobilityModel("ns3::ConstantPositionMobilityModel")
        mob.Install(nodes)
        members = {}
        for i, end in enumerate(link["ends"]):
            node = nodes.Get(i)
            model = node.GetObject[ns.MobilityModel]()
            model.SetPosition(ns.Vector(*map(float, end["position"])))
            self.mobility.setdefault(end["node"], []).append(model)
            dev = devs.Get(i)
            members[end["node"]] = dev.GetObject[ns.WifiNetDevice]().GetPhy()
            self._attach(tap, node, dev, end["tap"])
        self.wifi[link["name"]] = {"nodes": nodes, "devs": devs, "phys": members,
                                   "keep": [wifi, chan, phy, mac, mob]}

    # ---- runtime changes ------------------------------------------------------------------
    def _set_p2p(self, name: str, delay_ms: float | None, rate_mbps: float | None,
                 loss_pct: float | None, up: bool | None) -> None:
        ns = self.ns
        st = self.p2p[name]
        if delay_ms is not None:
            st["channel"].SetAttribute("Delay", ns.TimeValue(ns.NanoSeconds(
                int(round(delay_ms * 1e6)))))
        if rate_mbps is not None:
            for dev in st["devs"]:
                dev.SetAttribute("DataRate", ns.DataRateValue(ns.DataRate(
                    int(round(rate_mbps * 1e6)))))
        if loss_pct is not None:
            st["loss_pct"] = loss_pct
        if up is not None:
            st["up"] = up
        rate = 1.0 if not st["up"] else st["loss_pct"] / 100.0
        for em in st["errors"]:
            em.SetRate(rate)
            if rate > 0:
                em.Enable()
            else:
                em.Disable()

    def apply(self, op: dict[str, Any]) -> dict[str, Any]:
        kind = op.get("op")
        if kind == "batch":
            return {"results": [self.apply(o) for o in op.get("ops", [])]}
        if kind == "set":
            link = op["link"]
            if link in self.p2p:
                self._set_p2p(link, op.get("delay_ms"), op.get("rate_mbps"), op.get("loss_pct"),
                              op.get("up"))
            elif link in self.wifi:
                if any(op.get(k) is not None for k in ("delay_ms", "rate_mbps", "loss_pct")):
                    raise ValueError(f"Wi-Fi link {link}: only up/down and positions change")
                phys = self.wifi[link]["phys"]
                targets = [op["node"]] if op.get("node") else list(phys)
                for node in targets:
                    if node not in phys:
                        raise KeyError(f"{node} is not on Wi-Fi link {link}")
                    if op.get("up") is False:
                        phys[node].SetOffMode()
                    elif op.get("up") is True and phys[node].IsStateOff():
                        phys[node].ResumeFromOff()
            else:
                raise KeyError(f"no link named {link} in the ns-3 engine")
            return {}
        if kind == "position":
            models = self.mobility.get(op["node"])
            if not models:
                raise KeyError(f"{op['node']} has no Wi-Fi interface in the ns-3 engine")
            for m in models:
                m.SetPosition(self.ns.Vector(*map(float, op["xyz"])))
            return {}
        raise ValueError(f"unknown op {kind!r}")


class Control:
    """Non-blocking JSON-lines server on loopback, serviced from the simulator's tick."""

    def __init__(self, sim: Sim, changes_log: Path) -> None:
        self.sim = sim
        self.sel = selectors.DefaultSelector()
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(8)
        self.server.setblocking(False)
        self.sel.register(self.server, selectors.EVENT_READ)
        self.buffers: dict[socket.socket, bytes] = {}
        self.changes = open(changes_log, "a", buffering=1)  # noqa: SIM115
        self.stop_requested = False
        self.status: dict[str, Any] = {}

    @property
    def port(self) -> int:
        return self.server.getsockname()[1]

    def poll(self) -> None:
        for key, _ in self.sel.select(timeout=0):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if sock is self.server:
                conn, _ = self.server.accept()
                conn.setblocking(False)
                self.sel.register(conn, selectors.EVENT_READ)
                self.buffers[conn] = b""
                continue
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                self.sel.unregister(sock)
                self.buffers.pop(sock, None)
                sock.close()
                continue
            self.buffers[sock] += data
            while b"\n" in self.buffers[sock]:
                line, self.buffers[sock] = self.buffers[sock].split(b"\n", 1)
                reply = self.handle(line)
                try:
                    sock.sendall(json.dumps(reply).encode() + b"\n")
                except OSError:
                    pass

    def handle(self, line: bytes) -> dict[str, Any]:
        received = time.time()
        try:
            op = json.loads(line)
            if op.get("op") == "status":
                return {"ok": True, **self.status}
            if op.get("op") == "stop":
                self.stop_requested = True
                return {"ok": True}
            result = self.sim.apply(op)
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the caller
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        now = self.sim.ns.Simulator.Now().GetSeconds()
        applied = time.time()
        self.changes.write(json.dumps({"wall": applied, "sim": now, "received": received,
                                       "op": op}) + "\n")
        return {"ok": True, "sim": now, "applied": applied, **result}


def main(spec_path: str) -> int:
    t0 = time.monotonic()
    from ns import ns  # the ~10 s import happens while the host builds namespaces

    ns.cppyy.cppdef("""
    #include <functional>
    namespace sagin {
    inline void every(double period, std::function<void()> fn) {
      ns3::Simulator::Schedule(ns3::Seconds(period), [period, fn]() { fn(); every(period, fn); });
    }
    }""")
    print(f"ns3_sim: ns-3 imported in {time.monotonic() - t0:.1f} s", flush=True)
    spec_file = Path(spec_path)
    spec = _wait_for(spec_file, timeout=float(os.environ.get("SAGIN_SPEC_TIMEOUT", "300")))
    out = Path(spec["state_dir"])
    sim = Sim(ns, spec)
    sim.build()
    control = Control(sim, Path(spec["changes_log"]))
    _write_atomic(Path(spec.get("macs_file", out / "ns3-macs.json")),
                  {"macs": sim.macs, "port": control.port})
    print(f"ns3_sim: built {len(sim.p2p)} p2p and {len(sim.wifi)} Wi-Fi links, "
          f"{len(sim.macs)} taps; control on 127.0.0.1:{control.port}", flush=True)

    lag_log = open(spec["lag_log"], "a", buffering=1)  # noqa: SIM115
    state: dict[str, Any] = {"origin": None, "second": 0, "max": 0.0, "ticks": 0, "late": 0,
                             "attached": False, "overall_max": 0.0}

    def on_term(signum: int, frame: Any) -> None:
        control.stop_requested = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    def tick() -> None:
        now_sim = ns.Simulator.Now().GetSeconds()
        wall = time.monotonic()
        if not state["attached"]:
            # First tick: every TapBridge (all start at t=0) has created and moved its tap.
            # Real time restarts here, after the attach freeze.
            state["attached"] = True
            state["origin"] = wall - now_sim
            state["attach_end"] = now_sim
            # TapBridges attach one by one at t=0, freezing the simulator clock meanwhile.
            attach = wall - state["run_wall"] - now_sim
            _write_atomic(Path(spec.get("ready_file", out / "ns3-ready.json")),
                          {"wall": time.time(), "sim": now_sim,
                                                   "attach_s": round(attach, 4)})
        # The simulator never runs ahead of the wall clock, so the smallest (wall - sim) seen
        # is its real-time origin; after the attach freeze it catches up within milliseconds.
        state["origin"] = min(state["origin"], wall - now_sim)
        lag = (wall - state["origin"]) - now_sim
        sec = int(now_sim)
        if sec != state["second"]:
            lag_log.write(json.dumps({"sim_s": state["second"], "max_lag_ms": state["max"] * 1e3,
                                      "ticks": state["ticks"], "late_ticks": state["late"],
                                      "wall": time.time()}) + "\n")
            state.update(second=sec, max=0.0, ticks=0, late=0)
        state["max"] = max(state["max"], lag)
        state["overall_max"] = max(state["overall_max"], lag)
        state["ticks"] += 1
        state["late"] += lag > 0.002
        control.status = {"sim": now_sim, "lag_ms": lag * 1e3,
                          "max_lag_ms": state["overall_max"] * 1e3}
        control.poll()
        if control.stop_requested:
            ns.Simulator.Stop()

    sim.keep.append(tick)
    ns.cppyy.gbl.sagin.every(TICK_S, tick)
    state["run_wall"] = time.monotonic()
    ns.Simulator.Run()
    lag_log.close()
    print("ns3_sim: stopped", flush=True)
    ns.Simulator.Destroy()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
