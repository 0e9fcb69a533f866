"""Run an offloading controller live, inside an emulated SAGIN (scenario `sagin-offload`).

Two roles, each started by the scenario's timeline in its node's namespace:

    python -m controllers.offload.live user      # on every ground user
    python -m controllers.offload.live run --algo muecrs --slots 60   # on the ground station

`user`: a payload agent for the user's own CPU (on loopback) and a decision listener (UDP
USER_PORT).  For each decision it sends the task's input bytes over the emulated network to
the chosen node's payload agent (TCP AGENT_PORT; 127.0.0.1 for local execution), waits for
the result and reports the measured timestamps to the controller (UDP REPORT_PORT).

`run`: the controller.  It flies the UAVs through MAVLink (MAVSDK, controllers.fleet: take
off, then one offboard velocity setpoint per slot, streamed at 5 Hz), and every slot:

1. reads the UAVs' positions from their MAVLink telemetry into a mirror `OffloadModel` whose
   users stand where the scenario puts them and whose tasks are drawn from the seed;
2. runs the policy (a trained MUECRS / CMADDPG / MADDPG / DDPG policy, or a heuristic) on it;
3. steps the mirror, which predicts every task's delay and drops those it predicts late
   (admission, as in the simulator), and sends each admitted task's decision to its user over
   the emulated links;
4. commands the UAVs' velocities.

At the end it writes, under $SAGIN_RUN_DIR/offload/: tasks.csv (every task: decision,
predicted and measured delay, control latency), slots.csv, summary.json - measured mean delay,
deadline hits and profit next to the mirror's per-slot prediction and to a pure simulation of
the same policy and seed from the same start (the sim-to-emulation gap) - and delay.png.
While it runs it appends to tasks.jsonl (the same fields as tasks.csv) every task as soon as
its fate is known - reported by its user, or dropped by admission - so that the live view can
plot delays and deadline hits as they happen.

Measured profit uses the model's formula with measured quantities where the emulation has them
(tasks served within their deadline; effective delay: measured delay, or deadline + penalty
when late or lost; load balance: Jain's index of the cycles served in time per UAV over the
run, charged every slot) and the mirror's values for UAV energy and queues (the emulation
measures no joules).

What the emulation adds to the model: real packets on ns-3 links (A2G access with handovers,
a shared Wi-Fi backhaul, satellite and WAN links) with their queueing and TCP dynamics; routes
via the user's attached UAV (the model lets a user reach any UAV directly); decisions and
results crossing the network; processor sharing among all tasks present at an agent (the
model queues slots FIFO); flight by an autopilot's controller rather than the ideal velocity.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from controllers.offload.baselines import cycle_shares
from controllers.offload.config import OffloadConfig, load_config
from controllers.offload.model import OffloadModel, jain_index

AGENT_PORT = 7700
USER_PORT = 7800
REPORT_PORT = 7801
HEAD_PORT = 7802  # cluster-head services on the UAVs: slot states in
SAT_PORT = 7803  # the satellite's clustering service


# ------------------------------------------------------------------------------- user side
class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, queue: asyncio.Queue[tuple[dict[str, Any], Any]]) -> None:
        self.queue = queue

    def datagram_received(self, data: bytes, addr: Any) -> None:
        with contextlib.suppress(ValueError):
            self.queue.put_nowait((json.loads(data), addr))


async def _user(name: str, token: str, cpu_hz: float) -> None:
    from payloads.agent import PayloadAgent
    from payloads.client import AgentConnection

    agent = PayloadAgent(name, cpu_hz, token, mode="emulated")
    await agent.start("127.0.0.1", AGENT_PORT)
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[tuple[dict[str, Any], Any]] = asyncio.Queue()
    transport, _ = await loop.create_datagram_endpoint(lambda: _Datagrams(inbox),
                                                       local_addr=("0.0.0.0", USER_PORT))
    print(f"user {name}: decisions on udp/{USER_PORT}, own CPU {cpu_hz:.3g} Hz", flush=True)

    # idle connections per agent: like any real client, users keep their TCP connections
    # open (opened when the controller says hello), so a task pays no handshake
    idle: dict[str, list[AgentConnection]] = {}

    async def connection(host: str) -> AgentConnection:
        pool = idle.setdefault(host, [])
        return pool.pop() if pool else await AgentConnection(host, AGENT_PORT, token,
                                                             timeout=15.0).open()

    async def warm(hosts: list[str]) -> None:
        for host in hosts:
            if not idle.get(host):
                with contextlib.suppress(OSError, TimeoutError):
                    idle.setdefault(host, []).append(await connection(host))

    async def run(msg: dict[str, Any], addr: Any, got: float) -> None:
        host = "127.0.0.1" if msg["target"] == "local" else msg["target"]
        report = {"kind": "report", "id": msg["id"], "user": name, "t_got": got}
        conn = None
        try:
            conn = await connection(host)
            res = await conn.submit(msg["id"], bytes(int(msg["bytes"])), float(msg["cycles"]),
                                    float(msg["share"]))
            report |= {k: res.get(k) for k in ("ok", "error", "t_sent", "t_recv", "t_queued",
                                               "t_start", "t_done", "t_result", "node")}
            idle.setdefault(host, []).append(conn)
        except (OSError, TimeoutError) as exc:
            report |= {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            if conn is not None:
                await conn.close()
        transport.sendto(json.dumps(report).encode(),
                         (msg.get("report_to") or addr[0], REPORT_PORT))

    tasks: set[asyncio.Task[None]] = set()
    while True:
        msg, addr = await inbox.get()
        got = time.time()
        if msg.get("token") != token:
            continue  # not from this run's controller
        if msg.get("kind") == "hello":
            t = asyncio.create_task(warm(["127.0.0.1", *msg.get("servers", [])]))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
            transport.sendto(json.dumps({"kind": "hello", "user": name}).encode(),
                             (addr[0], REPORT_PORT))
        elif msg.get("kind") == "task":
            t = asyncio.create_task(run(msg, addr, got))
            tasks.add(t)
            t.add_done_callback(tasks.discard)


# -------------------------------------------------------------- distributed CMADDPG services
def model_state(model: OffloadModel) -> dict[str, Any]:
    """What a cluster head needs to rebuild the slot's state (JSON-able, ~2 kB for 20 users)."""
    return {"t": model.t, "user_xy": model.user_xy.tolist(), "uav_xyz": model.uav_xyz.tolist(),
            "battery_j": model.battery_j.tolist(), "busy_s": model.busy_s.tolist(),
            "bits": model.task_bits.tolist(), "cycles": model.task_cycles.tolist(),
            "deadline_s": model.task_deadline_s.tolist(),
            "elevation_deg": model.sat_elevation_deg}


def apply_state(model: OffloadModel, state: dict[str, Any]) -> None:
    model.t = int(state["t"])
    model.set_batteries(state["battery_j"])
    model.set_positions(users_xy=state["user_xy"], uavs_xyz=state["uav_xyz"])
    model.set_tasks(state["bits"], state["cycles"], state["deadline_s"])
    model.busy_s[:] = state["busy_s"]
    if state["elevation_deg"] != model.sat_elevation_deg:
        model.set_satellite_elevation(state["elevation_deg"])


def clustering_from(msg: dict[str, Any]) -> Any:
    from controllers.offload.clustering import Clustering

    return Clustering(np.array(msg["labels"], dtype=np.int64), np.array(msg["centroids"]),
                      np.array(msg["heads"], dtype=np.int64))


class SatelliteClusters:
    """The satellite's side of CMADDPG: K-means over the UAV positions the controller sends,
    with local maintenance between re-clusterings (agents.team.ClusterState)."""

    def __init__(self) -> None:
        from controllers.offload.agents.team import ClusterState

        self._state_cls = ClusterState
        self.states: dict[tuple[int, int], Any] = {}

    def reply(self, msg: dict[str, Any]) -> dict[str, Any]:
        key = (int(msg["n_clusters"]), int(msg["every"]))
        state = self.states.setdefault(key, self._state_cls(*key))
        c = state.update(np.array(msg["uav_xy"], dtype=np.float64), int(msg["t"]))
        return {"kind": "clusters", "t": msg["t"], "labels": c.labels.tolist(),
                "centroids": c.centroids.tolist(), "heads": c.heads.tolist()}


async def _satellite(token: str) -> None:
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[tuple[dict[str, Any], Any]] = asyncio.Queue()
    transport, _ = await loop.create_datagram_endpoint(lambda: _Datagrams(inbox),
                                                       local_addr=("0.0.0.0", SAT_PORT))
    clusters = SatelliteClusters()
    print(f"satellite: clustering service on udp/{SAT_PORT}", flush=True)
    while True:
        msg, addr = await inbox.get()
        if msg.get("token") == token and msg.get("kind") == "cluster":
            reply = {"token": token, **clusters.reply(msg)}
            transport.sendto(json.dumps(reply).encode(), (addr[0], REPORT_PORT))


async def _head(name: str, token: str, args: argparse.Namespace, run_dir: Path) -> None:
    """A UAV's cluster-head service: on each slot's state, decide for the users this UAV is
    responsible for with its own actor, send those decisions straight to the users, and tell
    the controller what was decided."""
    from controllers.offload.agents.team import TeamController
    from controllers.offload.evaluate import policy_for

    layout = Layout.from_scenario(run_dir / "scenario.resolved.yaml", args.satellite, args.cloud)
    if name not in layout.uavs:
        raise SystemExit(f"{name} is not an autopilot UAV of the scenario")
    agent = layout.uavs.index(name)
    base = load_config(args.config) if args.config else OffloadConfig.default()
    config = live_config(base, layout, 1)
    team, source = policy_for(args.algo, config, "default", Path(args.policies))
    if not isinstance(team, TeamController):
        raise SystemExit(f"--algo {args.algo}: a cluster head runs cmaddpg or maddpg ({source})")
    model = OffloadModel(config)
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[tuple[dict[str, Any], Any]] = asyncio.Queue()
    transport, _ = await loop.create_datagram_endpoint(lambda: _Datagrams(inbox),
                                                       local_addr=("0.0.0.0", HEAD_PORT))
    addr = {u: socket.gethostbyname(u) for u in layout.users}
    print(f"head {name}: agent {agent} of {args.algo} ({source}) on udp/{HEAD_PORT}", flush=True)
    while True:
        msg, src = await inbox.get()
        if msg.get("token") != token or msg.get("kind") != "state":
            continue
        apply_state(model, msg["state"])
        clustering = clustering_from(msg["clustering"]) if msg.get("clustering") else None
        mode, delay = team.decide_as(model, agent, clustering)
        shares = cycle_shares(model)
        sent = []
        for i in np.flatnonzero((mode >= 0) & model.task_active):
            if delay[i] > model.task_deadline_s[i]:
                continue  # admission: predicted late, dropped at once
            task = {"token": token, "kind": "task", "id": f"{msg['slot']}-{i}",
                    "target": layout.target(model, int(mode[i])),
                    "bytes": int(model.task_bits[i] // 8), "cycles": model.task_cycles[i],
                    "share": float(shares[i]), "deadline": model.task_deadline_s[i],
                    "report_to": msg["report_to"]}
            transport.sendto(json.dumps(task).encode(), (addr[layout.users[i]], USER_PORT))
            sent.append(int(i))
        reply = {"token": token, "kind": "decided", "slot": msg["slot"], "agent": agent,
                 "mode": mode.tolist(), "sent": sent}
        transport.sendto(json.dumps(reply).encode(), (src[0], REPORT_PORT))


# ------------------------------------------------------------------------ controller side
@dataclass
class Layout:
    """Which scenario node plays which part of the model, and where it stands (m, the
    scenario's east/north frame = the model's x/y)."""

    users: list[str]
    uavs: list[str]
    satellite: str
    cloud: str
    user_xy: np.ndarray
    uav_home: np.ndarray
    sysids: list[int]
    origin: tuple[float, float]
    frame: Any  # testbed.mobility.geo.LocalFrame: the scenario's own east/north/up frame

    @classmethod
    def from_scenario(cls, path: Path, satellite: str, cloud: str) -> Layout:
        from firmware.scenario import autopilots as autopilots_of
        from testbed.mobility.geo import LocalFrame
        from testbed.scenario import load
        from testbed.scenario.model import NodeKind

        sc = load(path)
        autopilots = autopilots_of(sc)
        users = [n for n, node in sc.nodes.items() if node.kind is NodeKind.GROUND_USER]
        uavs = [n for n in sc.nodes if n in autopilots]
        for role, node in (("satellite", satellite), ("cloud", cloud)):
            if node not in sc.nodes:
                raise SystemExit(f"{path}: no node {node!r} to act as the {role} (--{role})")
        if not users or not uavs:
            raise SystemExit(f"{path}: needs ground users and UAVs with an autopilot")
        xy = [sc.nodes[n].position for n in users]
        home = [sc.nodes[n].position for n in uavs]
        if any(p is None for p in xy + home):
            raise SystemExit(f"{path}: users and UAVs need a position (the model's x, y)")
        o = sc.mobility.origin
        frame = LocalFrame(o.lat_deg, o.lon_deg, o.alt_m / 1000.0)  # as testbed.mobility.world
        return cls(users, uavs, satellite, cloud, np.array([p[:2] for p in xy]),  # type: ignore[index]
                   np.array([p[:2] for p in home]), [autopilots[n][0] for n in uavs],  # type: ignore[index]
                   (o.lat_deg, o.lon_deg), frame)

    def target(self, model: OffloadModel, mode: int) -> str:
        k = model.n_uavs
        if mode == 0:
            return "local"
        if mode <= k:
            return self.uavs[mode - 1]
        return self.satellite if mode == k + 1 else self.cloud

    def local_xyz(self, lat: float, lon: float, rel_alt: float) -> tuple[float, float, float]:
        """Telemetry -> the model's (x, y, height): the same WGS84 frame the testbed placed
        the UAVs' homes with; height above home."""
        from testbed.mobility.geo import geodetic_to_ecef

        east, north, _ = self.frame.from_ecef(geodetic_to_ecef(lat, lon, self.frame.alt_km))
        return float(east), float(north), float(rel_alt)


def live_config(base: OffloadConfig, layout: Layout, slots: int) -> OffloadConfig:
    data = base.model_dump()
    data.update(n_users=len(layout.users), n_uavs=len(layout.uavs), episode_slots=slots,
                n_clusters=min(base.n_clusters, len(layout.uavs)))
    return OffloadConfig.model_validate(data)


def _start(model: OffloadModel, layout: Layout, altitude: float) -> None:
    k = model.n_uavs
    model.set_positions(users_xy=layout.user_xy,
                        uavs_xyz=np.column_stack([layout.uav_home, np.full(k, altitude)]))


def simulate(policy: Any, config: OffloadConfig, seed: int, layout: Layout,
             altitude: float) -> dict[str, float]:
    """The same policy and seed from the same start, in the simulator alone."""
    model = OffloadModel(config, seed)
    _start(model, layout, altitude)
    tot = dict.fromkeys(("tasks", "admitted", "delay_sum_s", "effective_delay_sum_s",
                         "profit"), 0.0)
    while not model.done:
        metrics, _ = model.step(policy(model))
        for key in tot:
            tot[key] += metrics[key]
    return _figures(tot)


def _figures(t: dict[str, float]) -> dict[str, float]:
    tasks, served = max(t["tasks"], 1.0), max(t["admitted"], 1.0)
    return {"tasks": t["tasks"], "served": t["admitted"],
            "deadline_ratio": t["admitted"] / tasks, "mean_delay_s": t["delay_sum_s"] / served,
            "mean_effective_delay_s": t["effective_delay_sum_s"] / tasks, "profit": t["profit"]}


async def _controller(args: argparse.Namespace, token: str, run_dir: Path) -> dict[str, Any]:
    from controllers.fleet import Fleet
    from controllers.offload.evaluate import policy_for
    from firmware.autopilots import api_url
    from payloads.client import health

    layout = Layout.from_scenario(run_dir / "scenario.resolved.yaml", args.satellite,
                                  args.cloud)
    base = load_config(args.config) if args.config else OffloadConfig.default()
    config = live_config(base, layout, args.slots)
    policy, source = policy_for(args.algo, config, "default", Path(args.policies))
    twin, _ = policy_for(args.algo, config, "default", Path(args.policies))
    if policy is None or twin is None:
        raise SystemExit(f"--algo {args.algo}: {source}")
    out = run_dir / "offload"
    out.mkdir(parents=True, exist_ok=True)
    predicted_sim = simulate(twin, config, args.seed, layout, args.altitude)
    print(f"controller: {args.algo} ({source}); simulator predicts {predicted_sim}", flush=True)

    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[tuple[dict[str, Any], Any]] = asyncio.Queue()
    transport, _ = await loop.create_datagram_endpoint(lambda: _Datagrams(inbox),
                                                       local_addr=("0.0.0.0", REPORT_PORT))
    addr = {u: socket.gethostbyname(u) for u in layout.users}

    def send(user: str, msg: dict[str, Any]) -> None:
        transport.sendto(json.dumps({"token": token, **msg}).encode(), (addr[user], USER_PORT))

    # --- everyone up: agents answer health, users answer hello
    deadline = time.monotonic() + args.wait_s
    servers = [*layout.uavs, layout.satellite, layout.cloud]
    for node in servers:
        while True:
            try:
                await health(node, AGENT_PORT, token)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"payload agent on {node} not reachable") from None
                await asyncio.sleep(0.5)
    waiting = set(layout.users)
    while waiting:
        for u in waiting:
            send(u, {"kind": "hello", "servers": servers})
        with contextlib.suppress(asyncio.TimeoutError):
            while waiting:
                msg, _ = await asyncio.wait_for(inbox.get(), 0.5)
                waiting.discard(msg.get("user", ""))
        if time.monotonic() > deadline and waiting:
            raise SystemExit(f"user clients not answering: {sorted(waiting)}")
    print(f"controller: {len(servers)} agents and {len(layout.users)} users ready", flush=True)

    # --- take off through MAVLink
    fleet = Fleet([api_url(s) for s in layout.sysids])
    drones = await fleet.connect(timeout=args.wait_s)
    by_sysid = {d.sysid: d for d in drones}
    drones = [by_sysid[s] for s in layout.sysids]
    await fleet.wait_healthy(timeout=args.wait_s)
    t_takeoff = time.monotonic()
    await fleet.takeoff(args.altitude)
    print(f"controller: {len(drones)} UAVs at {args.altitude:g} m after "
          f"{time.monotonic() - t_takeoff:.1f} s", flush=True)
    background = [asyncio.create_task(d.track_position()) for d in drones]
    background += [asyncio.create_task(d.stream_velocity()) for d in drones]

    model = OffloadModel(config, args.seed)
    _start(model, layout, args.altitude)
    others: list[dict[str, Any]] = []
    counts = {"clustering_fallbacks": 0, "undecided_tasks": 0}
    me = socket.gethostbyname(os.environ.get("SAGIN_NODE", socket.gethostname()))
    uav_addr = [socket.gethostbyname(u) for u in layout.uavs]
    sat_addr = socket.gethostbyname(layout.satellite)
    team = policy if args.distributed else None
    clustering: Any = None

    async def collect(pred: Any, n: int, timeout: float) -> list[dict[str, Any]]:
        """Up to n messages matching pred, within timeout seconds."""
        got: list[dict[str, Any]] = []
        end = loop.time() + timeout
        while len(got) < n and loop.time() < end:
            _drain(inbox, rows, others, progress)
            got += [m for m in others if pred(m)]
            others[:] = [m for m in others if not pred(m)]
            if len(got) < n:
                await asyncio.sleep(0.005)
        return got

    async def distributed(s: int) -> tuple[Any, set[int]]:
        """CMADDPG as deployed: the satellite clusters, each UAV's head service decides for
        its users and sends them the decisions; returns what they decided and sent."""
        from controllers.offload.model import Decision

        nonlocal clustering
        if team.clustered:  # type: ignore[union-attr]
            ask = {"token": token, "kind": "cluster", "t": model.t,
                   "uav_xy": model.uav_xyz[:, :2].tolist(), "n_clusters": config.n_clusters,
                   "every": config.recluster_every}
            transport.sendto(json.dumps(ask).encode(), (sat_addr, SAT_PORT))
            got = await collect(lambda m: m.get("kind") == "clusters" and m["t"] == model.t,
                                1, 0.3)
            if got:
                clustering = got[0]
            else:
                counts["clustering_fallbacks"] += 1
        if team.clustered and clustering is None:  # type: ignore[union-attr]
            raise SystemExit("the satellite's clustering service does not answer")
        state = {"token": token, "kind": "state", "slot": s, "state": model_state(model),
                 "clustering": clustering, "report_to": me}
        data = json.dumps(state).encode()
        for a in uav_addr:
            transport.sendto(data, (a, HEAD_PORT))
        if clustering is not None:
            c = clustering_from(clustering)
            resp = c.heads[c.labels[model.nearest_uav]]
        else:
            resp = model.nearest_uav
        deciders = {int(r) for r in resp[model.task_active]}
        got = await collect(lambda m: m.get("kind") == "decided" and m["slot"] == s
                            and m["agent"] in deciders, len(deciders), 0.5)
        mode = np.zeros(model.n_users, dtype=np.int64)
        sent: set[int] = set()
        answered = set()
        for m in got:
            mine = np.array(m["mode"]) >= 0
            mode[mine] = np.array(m["mode"])[mine]
            sent |= set(m["sent"])
            answered.add(m["agent"])
        counts["undecided_tasks"] += int(np.count_nonzero(
            model.task_active & ~np.isin(resp, list(answered))))
        return Decision(mode, cycle_shares(model), np.zeros((model.n_uavs, 3))), sent

    lo = np.array([0.0, 0.0, config.uav.altitude_m[0]])
    hi = np.array([config.area_m, config.area_m, config.uav.altitude_m[1]])
    rows: dict[str, dict[str, Any]] = {}
    slot_rows: list[dict[str, Any]] = []
    progress = (out / "tasks.jsonl").open("a", buffering=1)
    t0 = loop.time()
    try:
        for s in range(args.slots):
            await asyncio.sleep(max(0.0, t0 + s * config.slot_s - loop.time()))
            _drain(inbox, rows, others, progress)
            xyz = [layout.local_xyz(p.latitude_deg, p.longitude_deg, p.relative_altitude_m)
                   if (p := d.last_position) is not None else None for d in drones]
            if all(x is not None for x in xyz):
                model.set_positions(uavs_xyz=np.array(xyz))
            now = time.time()
            if args.distributed:
                decision, sent = await distributed(s)
            else:
                decision, sent = policy(model), None
            bits, cycles = model.task_bits.copy(), model.task_cycles.copy()
            deadline_s = model.task_deadline_s.copy()
            metrics, info = model.step(decision)
            if sent is None:
                now = time.time()
            for i in np.flatnonzero(info["active"]):
                tid = f"{s}-{i}"
                mode = int(info["mode"][i])
                row = {"id": tid, "slot": s, "user": layout.users[i],
                       "target": layout.target(model, mode), "mode": mode,
                       "bits": bits[i], "cycles": cycles[i], "deadline_s": deadline_s[i],
                       "admitted": bool(info["admitted"][i]) if sent is None else i in sent,
                       "mirror_admitted": bool(info["admitted"][i]),
                       "predicted_delay_s": float(info["delay_s"][i]), "t_decided": now}
                rows[tid] = row
                if not row["admitted"]:  # dropped by admission: a miss, known now
                    _log_task(progress, row)
                if row["admitted"] and sent is None:
                    send(layout.users[i], {"kind": "task", "id": tid, "target": row["target"],
                                           "bytes": int(bits[i] // 8), "cycles": cycles[i],
                                           "share": float(decision.share[i]),
                                           "deadline": deadline_s[i]})
            slot_rows.append({"slot": s, **metrics})
            # fly: the model's velocity in east/north/up, kept inside the area and band
            v = np.asarray(decision.velocity, dtype=float)
            here = model.uav_xyz
            v = np.where((here <= lo) & (v < 0) | (here >= hi) & (v > 0), 0.0, v)
            for d, (e, n, u) in zip(drones, v, strict=True):
                d.velocity_sp = (float(n), float(e), float(-u))
        for d in drones:
            d.velocity_sp = (0.0, 0.0, 0.0)
        end = time.monotonic() + config.tasks.deadline_s[1] + args.grace_s
        while time.monotonic() < end and not _all_reported(rows):
            await asyncio.sleep(0.2)
            _drain(inbox, rows, others, progress)
    finally:
        for t in background:
            t.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await fleet.close()
        transport.close()
        progress.close()
    summary = _report(out, config, rows, slot_rows, predicted_sim, args, source)
    if args.distributed:
        summary["distributed"] = counts
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _drain(inbox: asyncio.Queue[tuple[dict[str, Any], Any]],
           rows: dict[str, dict[str, Any]], others: list[dict[str, Any]],
           progress: TextIO | None = None) -> None:
    """Task reports into their rows; anything else from this run into `others`.  Each task
    reported is also appended to `progress` (tasks.jsonl): tasks.csv is only written at the
    end, and the live view wants the delays while the run goes on."""
    while not inbox.empty():
        msg, _ = inbox.get_nowait()
        if msg.get("kind") != "report":
            others.append(msg)
            continue
        row = rows.get(msg.get("id", ""))
        if row is not None and "ok" not in row:
            row.update({k: v for k, v in msg.items() if k not in ("kind", "id", "user")})
            if progress is not None:
                _log_task(progress, row)


def _log_task(progress: TextIO, row: dict[str, Any]) -> None:
    """One task whose fate is known, measured, as a line of tasks.jsonl; a write that fails
    costs the live view a point, never the run."""
    _measure(row)
    with contextlib.suppress(OSError, TypeError, ValueError):
        progress.write(json.dumps(row, default=str) + "\n")


def _measure(r: dict[str, Any]) -> None:
    """A task's measured delay (result back at the user - task handed to the user), control
    latency and deadline hit, from its reported times (one formula for tasks.jsonl and
    tasks.csv)."""
    done = r.get("ok") is True and r.get("t_result") is not None and r.get("t_got") is not None
    r["measured_delay_s"] = r["t_result"] - r["t_got"] if done else None
    r["control_s"] = r["t_got"] - r["t_decided"] if r.get("t_got") else None
    r["met"] = bool(done and r["measured_delay_s"] <= r["deadline_s"])


def _all_reported(rows: dict[str, dict[str, Any]]) -> bool:
    return all("ok" in r for r in rows.values() if r["admitted"])


def _report(out: Path, config: OffloadConfig, rows: dict[str, dict[str, Any]],
            slot_rows: list[dict[str, Any]], predicted_sim: dict[str, float],
            args: argparse.Namespace, source: str) -> dict[str, Any]:
    w = config.profit
    k = config.n_uavs
    tasks = list(rows.values())
    for r in tasks:
        _measure(r)
    fields = ["id", "slot", "user", "target", "mode", "bits", "cycles", "deadline_s", "admitted",
              "predicted_delay_s", "measured_delay_s", "control_s", "met", "ok", "error", "node",
              "t_decided", "t_got", "t_sent", "t_recv", "t_queued", "t_start", "t_done",
              "t_result"]
    with open(out / "tasks.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(tasks)
    with open(out / "slots.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, list(slot_rows[0]) if slot_rows else ["slot"])
        writer.writeheader()
        writer.writerows(slot_rows)
    n = len(tasks)
    met = [r for r in tasks if r["met"]]
    measured_eff = sum(r["measured_delay_s"] if r["met"] else r["deadline_s"] + w.drop_penalty_s
                       for r in tasks)
    loads = np.zeros(k)
    for r in met:
        if 1 <= r["mode"] <= k:
            loads[r["mode"] - 1] += r["cycles"]
    other_costs = sum(w.energy_weight * s["uav_energy_j"] + w.queue_weight * s["queue_s"]
                      for s in slot_rows)
    measured = {"tasks": n, "served": len(met), "deadline_ratio": len(met) / max(n, 1),
                "mean_delay_s": (sum(r["measured_delay_s"] for r in met) / max(len(met), 1)),
                "mean_effective_delay_s": measured_eff / max(n, 1),
                "profit": (w.revenue_per_task * len(met) - w.delay_weight * measured_eff
                           - other_costs - w.load_weight * (1.0 - jain_index(loads))
                           * len(slot_rows)),
                "lost": sum(1 for r in tasks if r["admitted"] and r.get("ok") is not True),
                "mean_control_s": float(np.mean([r["control_s"] for r in tasks
                                                 if r["control_s"] is not None] or [0.0]))}
    mirror = _figures({"tasks": sum(s["tasks"] for s in slot_rows),
                       "admitted": sum(s["admitted"] for s in slot_rows),
                       "delay_sum_s": sum(s["delay_sum_s"] for s in slot_rows),
                       "effective_delay_sum_s": sum(s["effective_delay_sum_s"] for s in slot_rows),
                       "profit": sum(s["profit"] for s in slot_rows)})
    pairs = [(r["predicted_delay_s"], r["measured_delay_s"]) for r in tasks
             if r["admitted"] and r["measured_delay_s"] is not None]
    gap = np.array([m - p for p, m in pairs]) if pairs else np.zeros(0)
    summary = {"algo": args.algo, "policy": source, "seed": args.seed, "slots": len(slot_rows),
               "config": config.model_dump(mode="json"), "measured": measured,
               "mirror_predicted": mirror, "simulated": predicted_sim,
               "delay_gap_s": {"median": float(np.median(gap)) if gap.size else None,
                               "p95": float(np.percentile(gap, 95)) if gap.size else None,
                               "n": int(gap.size)},
               "by_mode": _mode_counts(tasks, k)}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    _plot(out / "delay.png", pairs)
    return summary


def _mode_counts(tasks: list[dict[str, Any]], k: int) -> dict[str, int]:
    kinds = ["local", *["uav"] * k, "satellite", "cloud"]
    counts = dict.fromkeys(("local", "uav", "satellite", "cloud"), 0)
    for r in tasks:
        counts[kinds[r["mode"]]] += 1
    return counts


def _plot(path: Path, pairs: list[tuple[float, float]]) -> None:
    if not pairs:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p, m = np.array(pairs).T
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(p, m, s=10, alpha=0.6)
    top = float(max(p.max(), m.max())) * 1.05
    ax.plot([0, top], [0, top], "k--", linewidth=1)
    ax.set_xlabel("predicted delay (s, mirror model)")
    ax.set_ylabel("measured delay (s, emulation)")
    ax.set_title("task delay: emulation vs model")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m controllers.offload.live", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="role", required=True)
    u = sub.add_parser("user", help="a ground user: own CPU agent + decision listener")
    u.add_argument("--name", default=os.environ.get("SAGIN_NODE"))
    u.add_argument("--cpu-hz", type=float, default=OffloadConfig().users.cpu_hz)
    sub.add_parser("satellite", help="CMADDPG's clustering service, on the satellite")
    h = sub.add_parser("head", help="a UAV's cluster-head service (CMADDPG/MADDPG agent)")
    r = sub.add_parser("run", help="the controller, on the ground station")
    for p in (h, r):
        p.add_argument("--algo", default="muecrs" if p is r else "cmaddpg")
        p.add_argument("--policies", default=str(Path(__file__).parent / "policies"))
        p.add_argument("--config", default=None, help="offload config file (default preset)")
        p.add_argument("--satellite", default="sat1")
        p.add_argument("--cloud", default="cloud1")
        p.add_argument("--run-dir", default=os.environ.get("SAGIN_RUN_DIR"))
    h.add_argument("--name", default=os.environ.get("SAGIN_NODE"))
    r.add_argument("--distributed", action="store_true",
                   help="cmaddpg/maddpg: decisions by the UAVs' head services, clusters by the "
                   "satellite's service (start them with `head` and `satellite`)")
    r.add_argument("--slots", type=int, default=60)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--altitude", type=float, default=50.0)
    r.add_argument("--wait-s", type=float, default=60.0)
    r.add_argument("--grace-s", type=float, default=3.0)
    args = ap.parse_args(argv)
    token = os.environ.get("SAGIN_RUN_TOKEN")
    if not token:
        ap.error("SAGIN_RUN_TOKEN is not set: start this from a scenario's timeline")
    if args.role == "user":
        if not args.name:
            ap.error("--name (or SAGIN_NODE) is needed")
        asyncio.run(_user(args.name, token, args.cpu_hz))
        return
    if args.role == "satellite":
        asyncio.run(_satellite(token))
        return
    if not args.run_dir:
        ap.error("--run-dir (or SAGIN_RUN_DIR) is needed")
    if args.role == "head":
        if not args.name:
            ap.error("--name (or SAGIN_NODE) is needed")
        asyncio.run(_head(args.name, token, args, Path(args.run_dir)))
        return
    if args.distributed and args.algo not in ("cmaddpg", "maddpg"):
        ap.error("--distributed is for cmaddpg and maddpg (agents on the UAVs)")
    summary = asyncio.run(_controller(args, token, Path(args.run_dir)))
    print(json.dumps({k: summary[k] for k in ("measured", "mirror_predicted", "simulated",
                                               "delay_gap_s")}), flush=True)


if __name__ == "__main__":
    main()
