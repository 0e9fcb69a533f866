"""Running a sweep: every run a Ray task, its folder brought back, one table at the end.

Why Ray and not a pool of our own: the same code runs on this machine and on any cluster
(`--ray-address`), Ray places the tasks, and its custom resources say what a run needs.  An
emulation needs a whole host (namespaces, ns-3's real-time clock, OVS): it holds one
`emulation_slot`, and every node advertises exactly one (`ray start --resources
'{"emulation_slot": 1}'`), so two emulations never share a host while evaluations, which hold
only CPUs, fill the rest.

A task runs the real command as a subprocess - `python -m testbed run --file F --set ...
--results DIR` or `python -m testbed eval NAME ...` - so a run's start, cleanup and files are
exactly those of a run by hand; the subprocess gets SIGTERM if the Ray worker dies (the
runner then tears its network down).  The task tars its run folder and returns the bytes
through Ray's object store, so the folder lands in the submitting machine's results/
whichever node ran it; the folder's sweep-run.json (and the run's manifest.json) say which
host and Ray node ran it, and when.

Resumable: a run's folder gets done.json last, after everything else is in place; a rerun
skips every run that has one and redoes the others.
"""

from __future__ import annotations

import argparse
import ctypes
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from testbed.scenario.files import RESULTS
from testbed.sweep import table
from testbed.sweep.expand import Config, expand
from testbed.sweep.load import load_spec
from testbed.sweep.procs import descendants, kill, runs_among, until
from testbed.sweep.rayenv import LOOPBACK_ENV, RAY_ENV, SLOT, require_ray
from testbed.sweep.spec import Spec

ROOT = Path(__file__).resolve().parents[2]
OBJECT_STORE_BYTES = 100 * 2**20  # runs return kilobytes to megabytes; Ray's default is 30 %
RECORD = "sweep-run.json"


# ---- on the worker ---------------------------------------------------------------------------
def _die_with_parent() -> None:
    """In the run's subprocess: SIGTERM when the Ray worker that started it dies (a killed
    sweep), so the runner tears its network down instead of running on unowned."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    os.setpgid(0, 0)


def command(spec: Spec, scenario: Path | None, cfg: Config, where: Path) -> list[str]:
    """The exact command line of one run (also what a person would type to redo it)."""
    py = [sys.executable, "-m", "testbed"]
    if spec.scenario:
        argv = [*py, "run", "--file", str(scenario), "--results", str(where)]
        duration = cfg.params.get("duration", spec.duration)
        if duration is not None:
            argv += ["--duration", str(duration)]
        for k, v in cfg.params.items():
            if k != "duration":
                argv += ["--set", f"{k}={json.dumps(v)}"]
        return [*argv, "--set", f"seed={cfg.seed}"]
    argv = [*py, "eval", str(spec.eval)]
    for k, v in cfg.params.items():
        argv += [f"{k}={v}"] if not k.startswith("--") else [k, str(v)]
    if spec.seed_flag:
        argv += [spec.seed_flag, str(cfg.seed)]
    return [*argv, *spec.args, spec.out_flag, str(where / "out")]


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    """A Ray task: run one command, return its record and its folder as a tar.gz."""
    import ray

    ctx = ray.get_runtime_context()
    scratch = Path(tempfile.mkdtemp(prefix=f"{job['key']}-", dir=_scratch_root(job["sweep"])))
    rec: dict[str, Any] = {
        "key": job["key"], "config_id": job["config_id"], "params": job["params"],
        "seed": job["seed"], "kind": job["kind"], "host": socket.gethostname(),
        "node_id": ctx.get_node_id(), "worker_pid": os.getpid(),
        "command": [str(a).replace(str(job["where"]), "<run>") for a in job["argv"]],
        "started": time.time()}
    argv = [str(a).replace(str(job["where"]), str(scratch)) for a in job["argv"]]
    log = (scratch / "sweep-run.log").open("wb")
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
    try:
        rec["rc"] = proc.wait(timeout=job["timeout_s"])
    except subprocess.TimeoutExpired:
        rec["error"] = f"timed out after {job['timeout_s']:.0f} s"
        rec["rc"] = _stop(proc)
    except BaseException:  # a cancelled task (KeyboardInterrupt): the run cleans up first
        _stop(proc)
        raise
    finally:
        log.close()
    rec["ended"] = time.time()
    rec["run_dir"] = _run_dir(scratch, job["kind"])
    _stamp_manifest(scratch, rec)
    (scratch / RECORD).write_text(json.dumps(rec, indent=1))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(scratch, arcname=".")
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        scratch.parent.rmdir()  # the sweep's scratch folder, once its last run is home
    except OSError:
        pass
    return {"record": rec, "tar": buf.getvalue()}


def _scratch_root(sweep: str) -> Path:
    root = Path(tempfile.gettempdir()) / f"sagin-sweep-{os.getuid()}" / sweep
    root.mkdir(parents=True, exist_ok=True)
    return root


def _stop(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM (the runner tears down), then SIGKILL if it does not end in a minute."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def _run_dir(scratch: Path, kind: str) -> str | None:
    """The runner's folder (<scenario>/<run-id>) or the evaluation's --out, relative."""
    if kind == "eval":
        return "out" if (scratch / "out").is_dir() else None
    found = sorted(p.parent for p in scratch.glob("*/*/manifest.json")
                   if not p.parent.is_symlink())
    return str(found[-1].relative_to(scratch)) if found else None


def _stamp_manifest(scratch: Path, rec: dict[str, Any]) -> None:
    """The host and Ray node that ran it, in the run's own manifest.json too."""
    if rec["run_dir"] is None:
        return
    man = scratch / rec["run_dir"] / "manifest.json"
    if man.is_file():
        data = json.loads(man.read_text())
        data["sweep"] = {k: rec[k] for k in ("key", "host", "node_id", "params", "seed")}
        tmp = man.with_name(".manifest.json.tmp")
        tmp.write_text(json.dumps(data, indent=2, default=str))
        tmp.replace(man)


# ---- on the submitting machine ----------------------------------------------------------------
def pending(configs: list[Config], runs_dir: Path) -> tuple[list[Config], list[Config]]:
    """(finished, to run): a run is finished when its folder has done.json."""
    done = [c for c in configs if (runs_dir / c.key / table.DONE).is_file()]
    keys = {c.key for c in done}
    return done, [c for c in configs if c.key not in keys]


def land(result: dict[str, Any], spec: Spec, runs_dir: Path) -> dict[str, Any]:
    """Unpack a returned run into runs/<key>/ and write done.json last (only for a run that
    ended well: a failed one stays without it and is redone on the next attempt)."""
    rec = result["record"]
    final = runs_dir / rec["key"]
    part = runs_dir / f".{rec['key']}.partial"
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(result["tar"]), mode="r:gz") as tar:
        tar.extractall(part, filter="data")
    data: dict[str, Any] = {}
    name = "metrics.json" if rec["kind"] == "emulation" else spec.results_file
    src = part / rec["run_dir"] / name if rec["run_dir"] else None
    if src is not None and src.is_file():
        data = json.loads(src.read_text())
    rec["metrics"] = table.extract(spec, rec["params"], data)
    status = data.get("status", "done") if rec["kind"] == "emulation" else "done"
    rec["status"] = "done" if rec["rc"] == 0 and src is not None and src.is_file() \
        and status == "done" else "failed"
    if final.exists():
        shutil.rmtree(final)  # an earlier failed or interrupted attempt
    part.rename(final)
    if rec["status"] == "done":
        table.write_json(final / table.DONE, rec)
    else:
        table.write_json(final / "failed.json", rec)
    return rec


def main(args: argparse.Namespace, con: Console) -> int:
    spec, scenario = load_spec(args.spec)
    out = Path(args.out) if args.out else RESULTS / "sweeps" / spec.name
    configs = expand(spec)
    runs_dir = out / "runs"
    done, todo = pending(configs, runs_dir)
    con.print(f"sweep [bold]{spec.name}[/]: {len(configs)} runs "
              f"({len({c.config_id for c in configs})} configurations x {len(spec.seeds)} "
              f"seeds), {len(done)} already finished, {len(todo)} to run -> {out}")
    if args.dry_run:
        for c in configs:
            con.print(f"  {'done ' if c not in todo else 'to do'}  {c.key}  "
                      f"{' '.join(command(spec, scenario, c, runs_dir / c.key))}",
                      highlight=False)
        return 0
    out.mkdir(parents=True, exist_ok=True)
    (out / "spec.yaml").write_text(Path(args.spec).read_text())
    failed: list[dict[str, Any]] = []
    t0 = time.monotonic()
    if todo:
        # SIGTERM (a job scheduler, kill) ends the sweep like Ctrl-C: runs cancelled, each
        # tearing down, and a Ray started here stopped. SIGINT is set too, as the runner does:
        # a shell starts background commands with it ignored, and Python keeps that
        old = {s: signal.signal(s, signal.default_int_handler)
               for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            failed = submit(spec, scenario, todo, runs_dir, args.ray_address, con)
        except KeyboardInterrupt:
            done, todo = pending(configs, runs_dir)
            con.print(f"[yellow]sweep interrupted[/]: {len(done)} of {len(configs)} runs "
                      "finished and kept; the same command resumes it")
            return 130
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
    records = table.read_runs(runs_dir)
    rows = table.aggregate(spec, configs, records)
    files = table.write(out, spec, rows)
    table.write_json(out / "index.json", {
        "sweep": spec.name, "kind": spec.kind, "scenario": str(scenario) if scenario else None,
        "eval": spec.eval, "wall_s": round(time.monotonic() - t0, 2),
        "runs": [{k: r.get(k) for k in ("key", "config_id", "params", "seed", "status",
                                        "host", "node_id", "started", "ended", "rc",
                                        "run_dir", "metrics")} for r in records],
        "failed": [{k: r.get(k) for k in ("key", "params", "seed", "rc", "error", "host")}
                   for r in failed]})
    con.print((out / "table.md").read_text(), highlight=False)
    con.print(f"{len(records)}/{len(configs)} runs finished in {time.monotonic() - t0:.1f} s; "
              f"{', '.join(str(f.relative_to(out)) for f in files)}, index.json under {out}")
    if failed:
        con.print(f"[red]{len(failed)} runs failed[/] (their folders keep the logs; rerun the "
                  "same command to retry only them): " + ", ".join(r["key"] for r in failed))
    return 1 if failed or len(records) < len(configs) else 0


def submit(spec: Spec, scenario: Path | None, todo: list[Config], runs_dir: Path,
           address: str | None, con: Console) -> list[dict[str, Any]]:
    """Every run as a Ray task; returns the records of the runs that failed."""
    ray_env(address)
    ray = require_ray(address)
    runs_dir.mkdir(parents=True, exist_ok=True)
    with ray_session(ray, address):
        opts: dict[str, Any] = {"num_cpus": spec.cpus, "max_retries": 0}
        if spec.kind == "emulation":
            opts["resources"] = {SLOT: 1}
            if not ray.cluster_resources().get(SLOT):
                raise SystemExit(f"the Ray cluster at {address} advertises no '{SLOT}': start "
                                 f"each node with ray start --resources '{{\"{SLOT}\": 1}}'")
        task = ray.remote(run_one).options(**opts)
        refs = {}
        for c in todo:
            where = runs_dir / c.key
            refs[task.remote({
                "sweep": spec.name, "key": c.key, "config_id": c.config_id, "params": c.params,
                "seed": c.seed, "kind": spec.kind, "where": str(where),
                "argv": command(spec, scenario, c, where), "timeout_s": spec.run_timeout()})] = c
        failed: list[dict[str, Any]] = []
        columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TextColumn("{task.fields[last]}"))
        with Progress(*columns, console=con) as bar:
            job = bar.add_task(spec.name, total=len(refs), last="")
            waiting = list(refs)
            try:
                while waiting:
                    ready, waiting = ray.wait(waiting, num_returns=1, timeout=1.0)
                    for ref in ready:
                        c = refs[ref]
                        try:
                            rec = land(ray.get(ref), spec, runs_dir)
                        except (ray.exceptions.RayError, OSError, tarfile.TarError,
                                ValueError) as exc:  # the worker died, the task raised
                            rec = {"key": c.key, "params": c.params, "seed": c.seed,
                                   "status": "failed", "error": f"{type(exc).__name__}: "
                                   f"{str(exc).splitlines()[0] if str(exc) else ''}"}
                        if rec["status"] != "done":
                            failed.append(rec)
                        bar.update(job, advance=1, last=f"{c.key} {rec['status']}"
                                   f" on {rec.get('host', '?')}")
            except KeyboardInterrupt:
                con.print("[yellow]interrupted: cancelling the runs (each tears down)...[/]")
                for ref in waiting:
                    ray.cancel(ref)
                ray.wait(waiting, num_returns=len(waiting), timeout=90)
                raise
    return failed


def ray_env(address: str | None) -> None:
    """Ray's settings from the environment, before ray is first imported (it reads some of
    them at import): the in-process Ray on loopback only, runs' teardown never cut short."""
    for k, v in {**RAY_ENV, **({} if address else LOOPBACK_ENV)}.items():
        os.environ.setdefault(k, v)


class ray_session:
    """Connected to `address`, or a local cluster started in-process (listening on 127.0.0.1
    only, no dashboard, its temp dir under /tmp, one emulation slot) and stopped again on
    exit, Ctrl-C included; its processes are this process's children and die with it."""

    def __init__(self, ray: Any, address: str | None) -> None:
        self.ray, self.address = ray, address

    def __enter__(self) -> ray_session:
        if self.address:
            self.ray.init(address=self.address, log_to_driver=False,
                          logging_level="warning")
        else:
            self.ray.init(num_cpus=os.cpu_count() or 1, resources={SLOT: 1},
                          object_store_memory=OBJECT_STORE_BYTES, include_dashboard=False,
                          log_to_driver=False,
                          logging_level="warning",
                          _temp_dir=str(Path(tempfile.gettempdir()) / f"ray-sagin-{os.getuid()}"))
        return self

    def __exit__(self, *exc: object) -> None:
        self.ray.shutdown()
        if not self.address:  # what Ray of ours is still there: runs finish, the rest goes
            me = os.getpid()
            until(lambda: not descendants(me), 10.0)
            runs = runs_among(descendants(me))
            kill(pid for pid in descendants(me) if pid not in runs)
            until(lambda: not runs_among(descendants(me)), 120.0)
            kill(descendants(me))
