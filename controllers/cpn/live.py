"""Run CPN service mapping live: map arriving services with ABS (or any mapper) on the emulated
backbone and have the os-ken steering app enact each decision (scenario `cpn-mapping`).

    python -m controllers.cpn.live --config topologies/cpn-mapping.cpn.yaml --duration 34

Started by the scenario's timeline on the node where the users are (the `ingress`), with
$SAGIN_SDN_API pointing at the steering app's API and $SAGIN_RUN_DIR at the run's results.

1. The CPN view of the network: the switches, trunks and hosts the app discovered (GET
   /v1/topology), with compute capacities from the config for the nodes that have them.
2. Requests (graphs of components with CPU, memory and bandwidth demands, a latency bound)
   are drawn from the config's seed and arrive in real time.  Each is mapped by the chosen
   algorithm on the residual state; an accepted service's virtual address (VIP) is steered to
   the node hosting its entry component (PUT /v1/services/<name>), with the entry bandwidth
   as its meter and the latency bound as its path constraint.  Departed services are removed.
3. Probes: every active VIP gets a datagram every 1/probe_hz s; the answer names the node
   that served it (controllers/cpn/endpoint.py runs on every compute node).
4. At the end, from the captures on the instances' access links and the app's event log:
   request -> first packet at the chosen instance, and for every link cut the outage of each
   rerouted service.  The same request sequence is replayed offline with every baseline, so
   the run also reports ABS against them on this network.

Results in $SAGIN_RUN_DIR/cpn/: summary.json, services.csv, probes.csv.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import dataclasses
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from controllers.cpn.instances import PRESETS, Instance, generate_requests
from controllers.cpn.mappers import BASELINES, MAPPERS, make_mapper
from controllers.cpn.model import Infrastructure, Mapping, ServiceRequest, State
from controllers.cpn.online import simulate
from controllers.cpn.sdn.api import ApiClient, ApiError
from controllers.cpn.sdn.plan import HOP_COST_MS
from controllers.cpn.traces import arrivals, first_after, outage
from testbed.scenario.experiment import load_model

VIP_PORT_BASE = 8000
INSTANCE_PORTS = range(9000, 9064)  # what controllers.cpn.endpoint serves by default


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Capacity(_Strict):
    cpu: float = Field(gt=0, description="cores")
    mem: float = Field(gt=0, description="GiB")


class RequestMix(_Strict):
    count: int = Field(default=30, ge=1, le=1000)
    seed: int = 7
    components: tuple[int, int] = (2, 4)
    cpu: tuple[float, float] = (1.0, 6.0)
    mem: tuple[float, float] = (1.0, 8.0)
    vlink_mbps: tuple[float, float] = (2.0, 10.0)
    latency_ms: tuple[float, float] = (0.15, 0.3)
    mean_duration_s: float = Field(default=12.0, gt=0)
    offered_load: float = Field(default=1.2, gt=0, description="mean offered CPU / total CPU")


class LiveConfig(_Strict):
    compute: dict[str, Capacity]
    ingress: str
    algorithm: str = "abs"
    compare: list[str] = Field(default_factory=lambda: list(BASELINES))
    access_mbps: float = Field(default=1000.0, gt=0)
    requests: RequestMix = RequestMix()
    probe_hz: float = Field(default=20.0, gt=0, le=200)
    arrivals_until_s: float = Field(default=17.0, gt=0,
                                    description="compress arrivals into this window")


def load_config(path: Path) -> LiveConfig:
    """The bounded reader (size, encoding, depth, finite numbers) and the model's validation;
    every problem names the file and the field."""
    cfg = load_model(path, LiveConfig, SystemExit, "LiveConfig in controllers/cpn/live.py")
    for name in [cfg.algorithm, *cfg.compare]:
        if name not in MAPPERS:
            raise SystemExit(f"{path}: algorithm {name!r} is unknown; use one of "
                             f"{', '.join(MAPPERS)}")
    return cfg


def infrastructure(topo: dict[str, Any], cfg: LiveConfig) -> tuple[Infrastructure, dict[str, str]]:
    """The CPN graph of the emulated backbone, with the latencies the steering app uses (trunk
    delay + its per-hop cost), so a bound ABS honours is one the app can honour too."""
    names = sorted(topo["switches"]) + sorted(h["node"] for h in topo["hosts"])
    index = {n: i for i, n in enumerate(names)}
    unknown = [n for n in cfg.compute if n not in index]
    if unknown or cfg.ingress not in index:
        bad = unknown or [cfg.ingress]
        raise SystemExit(f"config: {bad} are not hosts on the switched network "
                         f"({', '.join(sorted(h['node'] for h in topo['hosts']))})")
    cpu = [cfg.compute[n].cpu if n in cfg.compute else 0.0 for n in names]
    mem = [cfg.compute[n].mem if n in cfg.compute else 0.0 for n in names]
    links = [(index[t["a"]], index[t["b"]], float(t["rate_mbps"]),
              float(t["delay_ms"] or 0.0) + HOP_COST_MS) for t in topo["trunks"]]
    links += [(index[h["node"]], index[h["switch"]], cfg.access_mbps, 0.0)
              for h in topo["hosts"]]
    ips = {h["node"]: h["ip"] for h in topo["hosts"]}
    return Infrastructure(names, cpu, mem, links), ips


def requests_for(infra: Infrastructure, cfg: LiveConfig) -> list[ServiceRequest]:
    """The generator's request model with this network's sizes; every service's users are at
    the ingress, and arrivals are compressed into the run's window."""
    mix = cfg.requests
    preset = dataclasses.replace(
        PRESETS["simple"], name="live", services=mix.components, comp_cpu=mix.cpu,
        comp_mem=mix.mem, vlink_bw=mix.vlink_mbps, latency_bound_ms=mix.latency_ms,
        ingress_p=1.0, n_requests=mix.count, mean_duration_s=mix.mean_duration_s,
        offered_load=mix.offered_load)
    req_ss, time_ss = np.random.SeedSequence(mix.seed).spawn(2)
    reqs = generate_requests(preset, infra, np.random.default_rng(req_ss),
                             np.random.default_rng(time_ss))
    span = max(r.arrival for r in reqs) or 1.0
    scale = cfg.arrivals_until_s / span
    ingress = infra.index[cfg.ingress]
    return [dataclasses.replace(r, ingress=ingress, arrival=round(r.arrival * scale, 3),
                                duration=round(r.duration * scale, 3)) for r in reqs]


@dataclasses.dataclass
class Active:
    request: ServiceRequest
    mapping: Mapping
    name: str
    instance: str
    vip: str
    vip_port: int
    instance_port: int
    requested_at: float
    installed_at: float
    install_ms: float
    followed_path: bool = False
    removed_at: float | None = None


class Prober(asyncio.DatagramProtocol):
    """Datagrams to every active VIP; the endpoint's answer names the node that served it."""

    def __init__(self) -> None:
        self.sent: dict[tuple[str, int], float] = {}
        self.rows: list[dict[str, Any]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (the selector loop's UDP transport is not a DatagramTransport subclass)
        self.transport = transport  # type: ignore[assignment]

    def send(self, svc: Active, seq: int) -> None:
        assert self.transport is not None
        self.sent[(svc.name, seq)] = time.time()
        self.transport.sendto(f"{svc.name} {seq}".encode(), (svc.vip, svc.vip_port))

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        t = time.time()
        try:
            node, _port, name, seq = data.decode().split()
            key = (name, int(seq))
        except ValueError:
            return
        t0 = self.sent.pop(key, None)
        if t0 is not None:
            self.rows.append({"service": name, "seq": key[1], "t_send": t0,
                              "rtt_ms": round((t - t0) * 1000, 3), "served_by": node,
                              "from": addr[0]})


class Orchestrator:
    def __init__(self, cfg: LiveConfig, api: ApiClient, out: Path, run_dir: Path) -> None:
        self.cfg, self.api, self.out, self.run_dir = cfg, api, out, run_dir
        topo = self.wait_ready()
        self.topology = topo
        self.infra, self.ips = infrastructure(topo, cfg)
        self.requests = requests_for(self.infra, cfg)
        self.state = State(self.infra)
        self.mapper = make_mapper(cfg.algorithm)
        self.rng = np.random.default_rng(cfg.requests.seed)
        self.active: dict[str, Active] = {}
        self.done: list[Active] = []
        self.rejected: list[dict[str, Any]] = []
        self.free_ports = {n: list(INSTANCE_PORTS) for n in cfg.compute}

    def wait_ready(self, timeout: float = 30.0) -> dict[str, Any]:
        t0 = time.monotonic()
        while True:
            topo = self.api.topology()
            if set(topo["ready"]) == set(topo["switches"]):
                return topo
            if time.monotonic() - t0 > timeout:
                raise SystemExit(f"SDN app not ready after {timeout:.0f} s: {topo['ready']}")
            time.sleep(0.2)

    def arrive(self, req: ServiceRequest) -> Active | None:
        self.state.observe(req)
        t0 = time.perf_counter()
        mapping = self.mapper.map(self.state, req, self.rng)
        decide_ms = (time.perf_counter() - t0) * 1000
        if mapping is None:
            self.rejected.append({"request": req.id, "reason": "no feasible mapping",
                                  "decide_ms": round(decide_ms, 2)})
            return None
        problems = self.state.check(mapping)
        if problems:
            raise RuntimeError(f"{self.mapper.name} returned an infeasible mapping: {problems}")
        entry = req.entry if req.entry is not None else 0
        instance = self.infra.names[mapping.nodes[entry]]
        ports = self.free_ports.get(instance)
        if not ports:
            self.rejected.append({"request": req.id, "reason": f"no free port on {instance}"})
            return None
        name = f"svc{req.id}"
        # the switches of the mapping's own ingress path: the app follows it while it works
        walk = self.infra.walk(req.ingress, mapping.ingress_path) \
            if req.ingress is not None else None
        path = [self.infra.names[n] for n in walk or []
                if self.infra.names[n] in self.topology["switches"]] or None
        t_req = time.time()
        try:
            svc = self.api.put_service(
                name, instance=instance, port=VIP_PORT_BASE + req.id, instance_port=ports[0],
                bandwidth_mbps=round(req.entry_bandwidth, 3), latency_ms=req.latency_bound,
                protocols=["udp", "tcp"], clients=[self.cfg.ingress], path=path)
        except ApiError as exc:
            # the app's view (live link state) can be stricter than the model's
            self.rejected.append({"request": req.id, "reason": str(exc)})
            return None
        self.state.allocate(mapping)
        ports.pop(0)
        act = Active(req, mapping, name, instance, svc["vip"], VIP_PORT_BASE + req.id,
                     svc["instance_port"], t_req, svc["installed_at"], svc["install_ms"],
                     bool(svc.get("follows_requested_path")))
        self.active[name] = act
        return act

    def depart(self, name: str) -> None:
        act = self.active.pop(name)
        self.api.delete_service(name)
        self.state.release(act.mapping)
        self.free_ports[act.instance].insert(0, act.instance_port)
        act.removed_at = time.time()
        self.done.append(act)

    async def run(self, duration: float) -> Prober:
        loop = asyncio.get_running_loop()
        _, prober = await loop.create_datagram_endpoint(Prober, family=socket.AF_INET)
        t0 = time.monotonic()
        end = t0 + duration
        pending = sorted(self.requests, key=lambda r: r.arrival)
        seq = 0
        period = 1.0 / self.cfg.probe_hz
        next_probe = t0
        while time.monotonic() < end:
            now = time.monotonic() - t0
            for name, act in list(self.active.items()):
                if act.request.departure <= now:
                    await asyncio.to_thread(self.depart, name)
            while pending and pending[0].arrival <= now:
                act = await asyncio.to_thread(self.arrive, pending.pop(0))
                if act is not None:
                    prober.send(act, seq)  # the first packet goes out the moment flows are in
            if time.monotonic() >= next_probe:
                seq += 1
                for act in self.active.values():
                    prober.send(act, seq)
                next_probe += period
            await asyncio.sleep(max(0.0, min(next_probe - time.monotonic(), 0.01)))
        for name in list(self.active):
            await asyncio.to_thread(self.depart, name)
        self.unmapped = len(pending)
        await asyncio.sleep(0.5)  # last answers
        return prober

    # -- analysis ----------------------------------------------------------------------------
    def analyse(self, prober: Prober) -> dict[str, Any]:
        services = self.done
        wanted = {(self.ips[a.instance], a.instance_port) for a in services}
        seen = arrivals(sorted((self.run_dir / "pcaps").glob("*.pcap")), wanted)
        setup = []
        for a in services:
            t_first = first_after(seen.get((self.ips[a.instance], a.instance_port), []),
                                  a.requested_at)
            a_first = (t_first - a.requested_at) * 1000 if t_first is not None else None
            setup.append(a_first)
        by_service: dict[str, list[dict[str, Any]]] = {}
        for row in prober.rows:
            by_service.setdefault(row["service"], []).append(row)
        chosen = {a.name: a.instance for a in services}
        answered = len(prober.rows)
        right = sum(1 for r in prober.rows if chosen.get(r["service"]) == r["served_by"])
        reroutes = self.reroutes(services, seen)
        measured = [s for s in setup if s is not None]
        offline = self.compare_offline()
        return {
            "algorithm": self.cfg.algorithm, "requests": len(self.requests),
            "arrived": len(self.requests) - getattr(self, "unmapped", 0),
            "accepted": len(services), "rejected": len(self.rejected),
            "acceptance_live": round(len(services) / max(1, len(services) + len(self.rejected)),
                                     4),
            "probes_answered": answered, "probes_sent_unanswered": len(prober.sent),
            "served_by_chosen_node": round(right / answered, 4) if answered else None,
            "installed_on_mapper_path": sum(a.followed_path for a in services),
            "rtt_ms_median": round(float(np.median([r["rtt_ms"] for r in prober.rows])), 3)
            if prober.rows else None,
            "setup_ms": {"request_to_flows_confirmed_median": round(float(np.median(
                [(a.installed_at - a.requested_at) * 1000 for a in services])), 2)
                if services else None,
                "request_to_first_packet_median": round(float(np.median(measured)), 2)
                if measured else None,
                "request_to_first_packet_max": round(max(measured), 2) if measured else None,
                "first_packets_seen": len(measured), "target": 100},
            "reroutes": reroutes,
            "offline_same_requests": offline,
            "rejections": self.rejected,
        }, setup

    def reroutes(self, services: list[Active], seen: dict[Any, list[float]]
                 ) -> list[dict[str, Any]]:
        log = self.run_dir / "logs" / "sdn-events.jsonl"
        if not log.exists():
            return []
        events = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        out = []
        for ev in events:
            if ev.get("reason") != "link_down" or not ev.get("rerouted"):
                continue
            t_cut = ev["t"] - ev["install_ms"] / 1000  # when the controller started acting
            for name in ev["rerouted"]:
                act = next((a for a in services if a.name == name), None)
                if act is None:
                    continue
                o = outage(seen.get((self.ips[act.instance], act.instance_port), []), t_cut)
                if o is not None and not o["recovered"] and act.removed_at is not None \
                        and act.removed_at < t_cut + 1.0:
                    o = {"departed_within_window": True}  # no arrivals to expect: not a loss
                out.append({"service": name, "link": ev.get("link"),
                            "controller_install_ms": ev["install_ms"], **(o or {})})
        return out

    def compare_offline(self) -> dict[str, Any]:
        """ABS and every baseline on exactly this request sequence and network (simulated
        time, no emulation): the live run is one of these rows played for real."""
        inst = Instance("live", self.infra, self.requests)
        rows = {}
        for name in [self.cfg.algorithm, *self.cfg.compare]:
            m = simulate(inst, make_mapper(name), seed=self.cfg.requests.seed)
            rows[name] = {k: round(v, 4) if isinstance(v, float) else v
                          for k, v in m.as_dict().items()}
        return rows

    def write(self, summary: dict[str, Any], setup: list[float | None],
              prober: Prober) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "summary.json").write_text(json.dumps(summary, indent=1))
        with open(self.out / "services.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["service", "request", "components", "nodes", "instance", "vip",
                        "vip_port", "instance_port", "entry_mbps", "latency_bound_ms",
                        "requested_at", "install_ms", "first_packet_ms", "removed_at"])
            for a, s in zip(self.done, setup, strict=True):
                w.writerow([a.name, a.request.id, a.request.size,
                            " ".join(self.infra.names[n] for n in a.mapping.nodes), a.instance,
                            a.vip, a.vip_port, a.instance_port,
                            round(a.request.entry_bandwidth, 3), a.request.latency_bound,
                            round(a.requested_at, 6), a.install_ms,
                            round(s, 2) if s is not None else "", a.removed_at])
        with open(self.out / "probes.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["service", "seq", "t_send", "rtt_ms", "served_by",
                                              "from"])
            w.writeheader()
            w.writerows(prober.rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m controllers.cpn.live", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--duration", type=float, default=30.0, help="seconds from start")
    p.add_argument("--algorithm", help="override the config's algorithm")
    p.add_argument("--run-dir", type=Path, default=os.environ.get("SAGIN_RUN_DIR"))
    p.add_argument("--api", default=None, help="API socket (default: $SAGIN_SDN_API)")
    args = p.parse_args(argv)
    if args.run_dir is None:
        p.error("--run-dir (or SAGIN_RUN_DIR) is needed")
    cfg = load_config(args.config)
    if args.algorithm:
        cfg.algorithm = args.algorithm
    orch = Orchestrator(cfg, ApiClient(args.api), Path(args.run_dir) / "cpn", Path(args.run_dir))
    prober = asyncio.run(orch.run(args.duration))
    summary, setup = orch.analyse(prober)
    orch.write(summary, setup, prober)
    print(json.dumps({k: v for k, v in summary.items()
                      if k not in ("rejections", "offline_same_requests")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
