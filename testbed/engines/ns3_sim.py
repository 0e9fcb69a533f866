"""The ns-3 real-time process: carries the Wi-Fi and point-to-point links of one shard.

Run as `python -m testbed.engines.ns3_sim <spec.json> [--wifi]` by the Ns3Engine.  It loads
the ns-3 modules it needs first (about 2 s, overlapped with the host building namespaces;
`--wifi` adds the Wi-Fi ones), then waits for the spec file to appear (the host writes it once
every namespace exists), opens every tap directly inside its node's namespace
(testbed.engines.taps), builds one ns-3 ghost node per link endpoint, hands taps and devices
to the C++ engine (ns3_bridge.h), writes the device MACs and runs the real-time simulator.

Threads: the simulator runs in its own thread, in C++ only (Run releases the interpreter
lock); the main thread serves the control channel and signals, so Python never delays a
simulated packet.  Control: a TCP server on 127.0.0.1 speaking JSON lines.  Ops: set
(delay/rate/loss/up on a link or one Wi-Fi member), position, batch (several ops applied in
one simulator event; with "at", a wall-clock time, the event is scheduled then), status,
stop.  Every applied change is appended with wall and simulator
time to the changes log; the real-time lag is sampled every 5 ms by the C++ engine and
summarised once per simulated second in the lag log.
"""

from __future__ import annotations

import json
import math
import os
import resource
import selectors
import signal
import socket
import sys
import threading
import time
from array import array
from pathlib import Path
from typing import Any

from testbed.engines import ns3_native
from testbed.engines.taps import open_taps

TICK_S = 0.005
LAG_BINS_MS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0)  # kLagBinMs in ns3_bridge.h
NAN = math.nan


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


def raise_fd_limit() -> None:
    """One descriptor per tap: lift the soft limit (1024 by default) to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Sim:
    """Builds the links and turns JSON ops into the C++ engine's batch of changes."""

    def __init__(self, ns: Any, spec: dict[str, Any], fds: dict[str, int]) -> None:
        self.ns = ns
        self.sagin = ns.cppyy.gbl.sagin
        self.engine = self.sagin.Engine()
        self.spec = spec
        self.fds = fds
        self.p2p: dict[str, int] = {}  # link -> engine index
        self.radios: dict[str, dict[str, int]] = {}  # Wi-Fi link -> node -> hook index
        self.positions: dict[str, list[int]] = {}  # node -> hook indices
        self.macs: dict[str, str] = {}
        self.keep: list[Any] = []

    # ---- construction -------------------------------------------------------------------
    def build(self) -> None:
        ns = self.ns
        ns.GlobalValue.Bind("SimulatorImplementationType",
                            ns.StringValue("ns3::RealtimeSimulatorImpl"))
        ns.GlobalValue.Bind("ChecksumEnabled", ns.BooleanValue(True))
        ns.RngSeedManager.SetSeed(max(1, int(self.spec.get("seed", 1))))
        for link in self.spec.get("p2p", []):
            self._build_p2p(link)
        for link in self.spec.get("wifi", []):
            self._build_wifi(link)

    def _attach(self, dev: Any, tap_name: str, ip_only: bool) -> None:
        if not self.engine.AddTap(self.fds[tap_name], dev, ip_only):
            raise RuntimeError(f"cannot watch tap {tap_name} (epoll)")
        self.macs[tap_name] = str(self.ns.Mac48Address.ConvertFrom(dev.GetAddress()))

    def _build_p2p(self, link: dict[str, Any]) -> None:
        ns = self.ns
        nodes = ns.NodeContainer()
        nodes.Create(2)
        helper = ns.PointToPointHelper()
        helper.SetQueue("ns3::DropTailQueue<Packet>", "MaxSize",
                        ns.StringValue(f"{int(link['queue_packets'])}p"))
        devs = helper.Install(nodes)
        self.keep.append(nodes)
        index = self.engine.AddP2p(devs.Get(0), devs.Get(1))
        self.p2p[link["name"]] = index
        for i in range(2):
            self._attach(devs.Get(i), link["ends"][i]["tap"], ip_only=True)
        self.engine.ApplyOne(self._op(0, index, link["delay_ms"], link["rate_mbps"],
                                      link.get("loss_pct", 0.0), -1,
                                      link.get("rate_back_mbps")))

    def _build_wifi(self, link: dict[str, Any]) -> None:
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
        radios = self.radios.setdefault(link["name"], {})
        for i, end in enumerate(link["ends"]):
            model = nodes.Get(i).GetObject[ns.MobilityModel]()
            model.SetPosition(ns.Vector(*map(float, end["position"])))
            self.positions.setdefault(end["node"], []).append(
                self.engine.AddHook(self.sagin.PositionHook(model)))
            dev = devs.Get(i)
            radios[end["node"]] = self.engine.AddHook(
                self.sagin.RadioHook(dev.GetObject[ns.WifiNetDevice]().GetPhy()))
            self._attach(dev, end["tap"], ip_only=False)
        self.keep += [nodes, devs, wifi, chan, phy, mac, mob]

    # ---- runtime changes ------------------------------------------------------------------
    def _op(self, kind: int, index: int, a: float | None = None, b: float | None = None,
            c: float | None = None, up: int = -1, d: float | None = None) -> Any:
        op = self.sagin.Op()
        op.kind, op.index, op.up = kind, index, up
        op.a = NAN if a is None else float(a)
        op.b = NAN if b is None else float(b)
        op.c = NAN if c is None else float(c)
        op.d = NAN if d is None else float(d)
        return op

    def ops(self, op: dict[str, Any], out: Batch) -> None:
        """Append the engine ops of one JSON op to `out` (raises on a bad op, before anything
        of its batch is applied)."""
        kind = op.get("op")
        if kind == "batch":
            for o in op.get("ops", []):
                self.ops(o, out)
            return
        if kind == "set":
            link = op["link"]
            up = -1 if op.get("up") is None else int(bool(op["up"]))
            if link in self.p2p:
                out.add(0, self.p2p[link], op.get("delay_ms"), op.get("rate_mbps"),
                        op.get("loss_pct"), up, op.get("rate_back_mbps"))
            elif link in self.radios:
                if any(op.get(k) is not None for k in ("delay_ms", "rate_mbps", "rate_back_mbps",
                                                       "loss_pct")):
                    raise ValueError(f"Wi-Fi link {link}: only up/down and positions change")
                radios = self.radios[link]
                targets = [op["node"]] if op.get("node") else list(radios)
                for node in targets:
                    if node not in radios:
                        raise KeyError(f"{node} is not on Wi-Fi link {link}")
                    if up >= 0:
                        out.add(1, radios[node], None, None, None, up)
            else:
                raise KeyError(f"no link named {link} in the ns-3 engine")
            return
        if kind == "position":
            hooks = self.positions.get(op["node"])
            if not hooks:
                raise KeyError(f"{op['node']} has no Wi-Fi interface in the ns-3 engine")
            x, y, z = map(float, op["xyz"])
            for h in hooks:
                out.add(1, h, x, y, z, -1)
            return
        raise ValueError(f"unknown op {kind!r}")


class Batch:
    """A batch of engine ops as parallel arrays: a thousand ops cost a thousand appends here
    and one call into C++ (Engine::SubmitArrays), not a C++ object each."""

    def __init__(self) -> None:
        self.kind, self.index, self.up = array("i"), array("i"), array("i")
        self.a, self.b, self.c, self.d = array("d"), array("d"), array("d"), array("d")

    def add(self, kind: int, index: int, a: float | None, b: float | None, c: float | None,
            up: int, d: float | None = None) -> None:
        self.kind.append(kind)
        self.index.append(index)
        self.a.append(NAN if a is None else a)
        self.b.append(NAN if b is None else b)
        self.c.append(NAN if c is None else c)
        self.up.append(up)
        self.d.append(NAN if d is None else d)

    def submit(self, engine: Any, at: float | None = None) -> tuple[float, float]:
        """Apply in the simulator thread, at wall time `at` (now when None or past); returns
        the (simulator time, wall time) it was applied at."""
        when = engine.SubmitArrays(len(self.kind), self.kind, self.index, self.a, self.b,
                                   self.c, self.up, self.d, float(at or 0.0))
        return float(when.first), float(when.second)


class Control:
    """Non-blocking JSON-lines server on loopback, in the main thread."""

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

    @property
    def port(self) -> int:
        return self.server.getsockname()[1]

    def poll(self, timeout: float) -> None:
        for key, _ in self.sel.select(timeout=timeout):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if sock is self.server:
                conn, _ = self.server.accept()
                conn.setblocking(False)
                self.sel.register(conn, selectors.EVENT_READ)
                self.buffers[conn] = b""
                continue
            try:
                data = sock.recv(1 << 20)
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
                    sock.setblocking(True)
                    sock.sendall(json.dumps(reply).encode() + b"\n")
                    sock.setblocking(False)
                except OSError:
                    pass

    def handle(self, line: bytes) -> dict[str, Any]:
        received = time.time()
        engine = self.sim.engine
        try:
            op = json.loads(line)
            if op.get("op") == "status":
                return {"ok": True, "sim": engine.SimNow(), "lag_ms": engine.LagNowMs(),
                        "max_lag_ms": engine.MaxLagMs()}
            if op.get("op") == "stop":
                self.stop_requested = True
                return {"ok": True}
            batch = Batch()
            self.sim.ops(op, batch)
            now, applied = batch.submit(engine, op.get("at"))
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the caller
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        self.changes.write(json.dumps({"wall": applied, "sim": now, "received": received,
                                       "op": op}) + "\n")
        return {"ok": True, "sim": now, "applied": applied}


def raise_priority(nice: int = -10) -> None:
    """Real-time emulation: the simulator must get a core the moment an event is due, before
    probes, loggers and the testbed's own Python.  A higher CFS weight (nice -10, root only;
    the process's threads, created after, inherit it) keeps its lag low on a busy host
    without the starvation risk of a real-time scheduling class."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    except OSError:
        pass  # not root: runs at normal priority


def main(argv: list[str]) -> int:
    t0 = time.monotonic()
    raise_fd_limit()
    raise_priority()
    ns = ns3_native.load(wifi="--wifi" in argv[1:])
    print(f"ns3_sim: ns-3 loaded in {time.monotonic() - t0:.1f} s", flush=True)
    spec = _wait_for(Path(argv[0]), timeout=float(os.environ.get("SAGIN_SPEC_TIMEOUT", "300")))
    out = Path(spec["state_dir"])
    t_taps = time.monotonic()
    ends = [(e["tap"], e["netns"]) for kind in ("p2p", "wifi") for link in spec.get(kind, [])
            for e in link["ends"]]
    fds = open_taps(ends)
    taps_s = time.monotonic() - t_taps
    sim = Sim(ns, spec, fds)
    built = threading.Event()
    failure: list[BaseException] = []

    def simulate() -> None:
        # Every ns-3 object is made and run in this one thread (the real-time simulator
        # belongs to the thread that first used it).
        try:
            sim.build()
            sim.engine.Start(TICK_S)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failure.append(exc)
            built.set()
            return
        built.set()
        ns.Simulator.Run()
        sim.engine.Join()
        ns.Simulator.Destroy()

    thread = threading.Thread(target=simulate, name="simulator")
    thread.start()
    built.wait()
    if failure:
        raise failure[0]
    build_s = time.monotonic() - t_taps
    control = Control(sim, Path(spec["changes_log"]))
    _write_atomic(Path(spec.get("macs_file", out / "ns3-macs.json")),
                  {"macs": sim.macs, "port": control.port})
    print(f"ns3_sim: {len(sim.p2p)} p2p and {len(sim.radios)} Wi-Fi links, {len(fds)} taps "
          f"opened in {taps_s:.2f} s, built in {build_s:.2f} s; control on "
          f"127.0.0.1:{control.port}", flush=True)

    def on_term(signum: int, frame: Any) -> None:
        control.stop_requested = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    lag_log = open(spec["lag_log"], "a", buffering=1)  # noqa: SIM115
    ready = False
    while not control.stop_requested and thread.is_alive():
        control.poll(timeout=0.1)
        if not ready and sim.engine.Ticks() > 0:
            ready = True
            _write_atomic(Path(spec.get("ready_file", out / "ns3-ready.json")),
                          {"wall": time.time(), "sim": sim.engine.SimNow(),
                           "attach_s": round(build_s, 4)})
        for s in sim.engine.DrainLag():
            lag_log.write(json.dumps({"sim_s": s.second, "max_lag_ms": s.maxLagMs,
                                      "ticks": s.ticks, "late_ticks": s.lateTicks,
                                      "over_ms": {f"{b:g}": int(s.over[i])
                                                  for i, b in enumerate(LAG_BINS_MS)},
                                      "wall": s.wall}) + "\n")
    sim.engine.RequestStop()
    thread.join()
    lag_log.close()
    for fd in fds.values():
        os.close(fd)
    print("ns3_sim: stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
