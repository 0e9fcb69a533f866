"""The coordinating side of a multi-host run: place, split, start every host's share over SSH,
exchange the engines' MACs, release all shares at one wall-clock time zero, gather their run
folders into one, and make sure every share stops.

    placement (min-cut)  ->  cluster.json + scenario copied to each host (SFTP)
      -> `python -m testbed.cluster.share` on each host (SSH, one process per host)
      -> every share: "attached" (its MACs)  -> coordinator: all MACs to all
      -> every share: "ready" (health checks passed, cross-host pairs included)
      -> coordinator: "go" at now + GO_AHEAD_S (one wall-clock time zero for all)
      -> every share holds for the duration, tears down, "done"
      -> run folders gathered into results/<scenario>/<run>/hosts/<host>/ (SFTP),
         one manifest.json and metrics.json (per-host timings, which host ran each node)

Before the first share starts, the run is recorded under /run/sagin-hil/cluster/ (hosts and
their SSH targets): `make clean` (python -m testbed clean) then also runs the clean on every
host of a record whose coordinator died (clean_hosts).  Ctrl-C or a failure sends `stop` to
every share; a share whose SSH connection drops stops by itself (end of its input).

The shares need the project at the same version on every host (Host.project, default this
checkout's path; its .venv Python): the stand-in hosts share this machine's filesystem, real
hosts need `make setup` of the same commit.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shlex
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.cluster import placement as placer
from testbed.cluster import split
from testbed.cluster.hosts import project_of, python_of, target
from testbed.cluster.share import PREFIX
from testbed.lifecycle.ledger import LEDGER_DIR, proc_start_ticks
from testbed.net import plan as planner
from testbed.run.results import RESULTS, new_run, write_json
from testbed.scenario import Scenario, dump, load
from testbed.scenario.cluster import Cluster, Host

RECORDS = LEDGER_DIR / "cluster"
GO_AHEAD_S = 0.5  # time zero this long after the last share is ready: the "go" reaches all


class ClusterError(RuntimeError):
    pass


@dataclass
class ShareProc:
    host: Host
    conn: Any = None
    proc: Any = None
    events: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    log: list[str] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    async def send(self, msg: dict[str, Any]) -> None:
        if self.proc is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.write(json.dumps(msg) + "\n")

    async def expect(self, event: str, timeout: float) -> dict[str, Any]:
        try:
            async with asyncio.timeout(timeout):
                while True:
                    ev = await self.events.get()
                    if ev["event"] == event:
                        return ev
                    if ev["event"] in ("done", "eof"):
                        raise ClusterError(f"host {self.host.name}: the share ended before "
                                           f"'{event}': {ev.get('error') or ''}\n"
                                           + "\n".join(self.log[-15:]))
        except TimeoutError:
            raise ClusterError(f"host {self.host.name}: no '{event}' within {timeout:g} s\n"
                               + "\n".join(self.log[-15:])) from None


@dataclass
class ClusterResult:
    run_dir: Path
    status: str
    timings: dict[str, Any]
    ready: dict[str, dict[str, Any]]  # host -> its "ready" event (namespaces, timings)
    done: dict[str, dict[str, Any]]
    placement: dict[str, str]


def _record(run_id: str, cluster: Cluster, work: str) -> Path:
    RECORDS.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    path = RECORDS / f"{run_id}.json"
    path.write_text(json.dumps({"run_id": run_id, "owner_pid": pid,
                                "owner_start": proc_start_ticks(pid), "work": work,
                                "cluster": cluster.model_dump()}))
    return path


def run_split(scenario: Path, cluster: Cluster, *, duration_s: float | None = None,
              results_base: Path = RESULTS, placement: dict[str, str] | None = None,
              during: Callable[[dict[str, dict[str, Any]]], Any] | None = None,
              log: Callable[[str], None] = print, sc: Scenario | None = None) -> ClusterResult:
    """One scenario on the hosts of `cluster`.  `placement` overrides the partitioner (tests:
    everything on one host, the single-host baseline through the same code); `during` is
    called once all shares passed time zero, with each host's ready event.  The hosts get the
    resolved scenario (scenario.resolved.yaml: overrides and --duration applied), so every
    share builds exactly what the coordinator planned."""
    t_cmd = time.monotonic()
    if sc is None:
        sc = load(scenario, cut_to_s=duration_s)
    duration_s = None  # already applied to sc
    hosts = [h.name for h in cluster.hosts]
    place = placement or placer.partition(sc, hosts, cluster.placement.pins,
                                          cluster.placement.balance)
    global_tag = secrets.token_hex(2)
    sp = split.split(sc, planner.build(sc, global_tag), cluster, place)  # checks, early
    run_id, _, run_dir = new_run(sc.name, results_base)
    scenario = run_dir / "scenario.resolved.yaml"
    scenario.write_text(dump(sc))
    work = f"/tmp/sagin-cluster/{run_id}"
    info = {"run_id": run_id, "global_tag": global_tag, "placement": place,
            "cluster": cluster.model_dump(), "duration_s": duration_s, "work": work}
    record = _record(run_id, cluster, work)
    man: dict[str, Any] = {"scenario": sc.name, "run_id": run_id, "status": "starting",
                           "hosts": hosts, "placement": sp.placement,
                           "emulated_on": sp.emulated_on,
                           "cross_host_ends": [c.__dict__ for c in sp.cross]}
    write_json(run_dir / "manifest.json", man)
    timings: dict[str, Any] = {"plan_and_split_s": round(time.monotonic() - t_cmd, 3)}
    log(f"multi-host run {sc.name} on {', '.join(hosts)} -> {run_dir}")
    try:
        ready, done = asyncio.run(_drive(scenario, sc.duration_s, info, cluster, t_cmd,
                                         timings, during, log))
        status = "done" if all(d.get("status") == "done" for d in done.values()) else "failed"
    except BaseException:
        man["status"] = "failed"
        write_json(run_dir / "manifest.json", man)
        raise
    finally:
        t = time.monotonic()
        try:
            asyncio.run(_gather(cluster, info, run_dir))
        except Exception as exc:  # noqa: BLE001 - what was gathered stays
            log(f"gathering the hosts' folders failed: {exc}")
        timings["gather_s"] = round(time.monotonic() - t, 3)
        record.unlink(missing_ok=True)
    man.update(status=status, time_zero_wall=timings.get("time_zero_wall"),
               shares={h: {"run_dir": d.get("run_dir"), "status": d.get("status"),
                           "error": d.get("error")} for h, d in done.items()})
    write_json(run_dir / "manifest.json", man)
    metrics = {"status": status, "timings_s": timings,
               "hosts": {h: {"ready": ready.get(h, {}).get("timings"),
                             "done": done[h].get("timings")} for h in done},
               "nodes_by_host": {h: s.nodes for h, s in sp.shares.items()},
               "cross_host_ends": len(sp.cross)}
    metrics.update(_combined(run_dir, sp))
    write_json(run_dir / "metrics.json", metrics)
    return ClusterResult(run_dir, status, timings, ready, done, sp.placement)


def _combined(run_dir: Path, sp: split.Split) -> dict[str, Any]:
    """The hosts' measurements as one: each flow from the host of its source, each node's
    interface counters and probes from its host."""
    flows: dict[str, Any] = {}
    per_host: dict[str, Any] = {}
    for h, share in sp.shares.items():
        try:
            m = json.loads((run_dir / "hosts" / h / "metrics.json").read_text())
        except (OSError, ValueError):
            continue
        per_host[h] = {"status": m.get("status"), "timings_s": m.get("timings_s")}
        for name, f in (m.get("flows") or {}).items():
            if f.get("src") in share.nodes:
                flows[name] = {**f, "host": h}
    return {"flows": flows, "host_metrics": per_host}


async def _start(s: ShareProc, scenario: Path, info: dict[str, Any]) -> None:
    from testbed.hil.boards import connect

    h = s.host
    s.conn = await connect(target(h))
    remote_dir = f"{info['work']}/{h.name}"
    await s.conn.run(f"mkdir -p {shlex.quote(remote_dir)}", check=True)
    async with s.conn.start_sftp_client() as sftp:
        await sftp.put(str(scenario), f"{remote_dir}/{scenario.name}")
        async with sftp.open(f"{remote_dir}/cluster.json", "w") as f:
            await f.write(json.dumps(info))
    cmd = (f"cd {shlex.quote(project_of(h))} && exec {shlex.quote(python_of(h))} -u -m "
           f"testbed.cluster.share {shlex.quote(remote_dir + '/' + scenario.name)} "
           f"{shlex.quote(remote_dir + '/cluster.json')} {shlex.quote(h.name)}")
    s.proc = await s.conn.create_process(cmd, stderr=asyncio.subprocess.STDOUT)

    async def read() -> None:
        async for line in s.proc.stdout:
            line = line.rstrip("\n")
            if line.startswith(PREFIX):
                await s.events.put(json.loads(line[len(PREFIX):]))
            else:
                s.log.append(line)
        await s.events.put({"event": "eof"})

    s.reader = asyncio.create_task(read())


async def _drive(scenario: Path, duration: float, info: dict[str, Any], cluster: Cluster,
                 t_cmd: float, timings: dict[str, Any],
                 during: Callable[[dict[str, dict[str, Any]]], Any] | None,
                 log: Callable[[str], None]) -> tuple[dict[str, Any], dict[str, Any]]:
    shares = [ShareProc(h) for h in cluster.hosts]
    done: dict[str, dict[str, Any]] = {}
    ready: dict[str, dict[str, Any]] = {}
    try:
        await asyncio.gather(*(_start(s, scenario, info) for s in shares))
        attached = await asyncio.gather(*(s.expect("attached", 300) for s in shares))
        macs: dict[str, str] = {}
        for a in attached:
            macs.update(a["macs"])
        for s in shares:
            await s.send({"macs": macs})
        for s, ev in zip(shares, await asyncio.gather(*(s.expect("ready", 180)
                                                         for s in shares)), strict=True):
            ready[s.host.name] = ev
        go = time.time() + GO_AHEAD_S
        for s in shares:
            await s.send({"go": go})
        timings["command_to_time_zero_s"] = round(time.monotonic() - t_cmd + GO_AHEAD_S, 3)
        timings["time_zero_wall"] = go
        log(f"time zero after {timings['command_to_time_zero_s']:.1f} s on every host")
        if during is not None:
            await asyncio.sleep(max(0.0, go - time.time()))
            await asyncio.to_thread(during, ready)
        for s, ev in zip(shares, await asyncio.gather(*(s.expect("done", duration + 120)
                                                         for s in shares)), strict=True):
            done[s.host.name] = ev
    except BaseException:
        for s in shares:  # every share stops and tears down itself
            try:
                await s.send({"cmd": "stop"})
            except Exception:  # noqa: BLE001 - a dead connection: the share stops anyway
                pass
        for s in shares:
            if s.host.name not in done and s.proc is not None:
                try:
                    done[s.host.name] = await s.expect("done", 60)
                except ClusterError:
                    pass
        raise
    finally:
        for s in shares:
            if s.conn is not None:
                s.conn.close()
    return ready, done


async def _gather(cluster: Cluster, info: dict[str, Any], run_dir: Path) -> None:
    """Each host's share folder into hosts/<host>/, then its work folder removed."""
    from testbed.hil.boards import connect

    async def one(h: Host) -> None:
        conn = await connect(target(h))
        try:
            remote_dir = f"{info['work']}/{h.name}/results"
            local = run_dir / "hosts" / h.name  # the share's folder, renamed after its host
            local.parent.mkdir(parents=True, exist_ok=True)
            async with conn.start_sftp_client() as sftp:
                if await sftp.exists(remote_dir):
                    for scen in await sftp.listdir(remote_dir):
                        if scen in (".", ".."):
                            continue
                        for run in await sftp.listdir(f"{remote_dir}/{scen}"):
                            if run in (".", "..", "latest"):
                                continue
                            await sftp.get(f"{remote_dir}/{scen}/{run}", str(local.parent),
                                           recurse=True, preserve=False)
                            (local.parent / run).rename(local)
            await conn.run(f"rm -rf {shlex.quote(info['work'] + '/' + h.name)}", check=False)
        finally:
            conn.close()

    await asyncio.gather(*(one(h) for h in cluster.hosts))
    if Path(info["work"]).is_dir() and not any(Path(info["work"]).iterdir()):
        shutil.rmtree(info["work"], ignore_errors=True)


def clean_hosts() -> list[str]:
    """`make clean` on every host of a multi-host run whose coordinator died."""
    from testbed.cluster import remote

    out = []
    for path in sorted(RECORDS.glob("*.json")) if RECORDS.is_dir() else []:
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if proc_start_ticks(rec["owner_pid"]) == rec["owner_start"]:
            continue
        cluster = Cluster.model_validate(rec["cluster"])
        for h in cluster.hosts:
            try:
                # the run cleanup only (not `python -m testbed clean`, which would read this
                # very record again where hosts share a filesystem, as the stand-ins do)
                remote.sh(h, f"cd {shlex.quote(project_of(h))} && "
                          f"{shlex.quote(python_of(h))} -c 'from testbed.run.cleanup import "
                          "clean; clean()'; "
                          f"rm -rf {shlex.quote(rec['work'] + '/' + h.name)}", timeout=120,
                          what="make clean")
                out.append(f"{rec['run_id']}@{h.name}")
            except Exception as exc:  # noqa: BLE001 - the record stays for the next clean
                out.append(f"{rec['run_id']}@{h.name}: {exc}")
                break
        else:
            path.unlink(missing_ok=True)
            work = Path(rec["work"])
            if work.is_dir() and not any(work.iterdir()):
                work.rmdir()  # (where the coordinator is a host too, e.g. the stand-ins)
    return out
