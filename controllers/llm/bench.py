"""Edge-LLM benchmark: ms/token of SmolLM2-135M split over payload-agent nodes on emulated links.

One network: a hub and five shard nodes n1..n5, each on its own ns-3 point-to-point link to
the hub, so every node-to-node path is two links and its RTT is four one-way link delays.
The links are re-set for each RTT (1, 10, 50 ms); agents are restarted for each device set:

  homogeneous    five devices of one speed (Jetson Orin Nano profile, 0.4 host core), memory
                 unlimited: ms/token of the even pipeline split and of tensor parallelism
                 over N = 1..5 nodes (the pipeline/TP crossover)
  heterogeneous  edge server 0.8 (master, 400 MiB for the model), Orin Nano 0.4, Raspberry
                 Pi 5 0.6, Raspberry Pi 4 0.33, Jetson Nano 0.21 (256 MiB each): single
                 device, even, proportional, Halda and tensor parallel on all five; Halda vs
                 even is the issue's target (>= 30 % lower ms/token)

Each configuration loads its plan on the nodes (profiles and link probes measured by the nodes
themselves feed the solver), generates one prompt greedily and checks the tokens against a
single-device reference.  The driver runs inside the hub's namespace, as a user's orchestrator
would; this module's `run` builds the network and collects the driver's JSON.
Writes results/bench/llm.json and results/bench/llm_ms_per_token.png.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[2]
RTTS_MS = (1.0, 10.0, 50.0)
PORT = 7700
PROMPT = "What is the capital of France?"
NEW_TOKENS = 12
TP_TOKENS_SLOW = 4  # tensor parallel at 50 ms RTT: 60 round trips per token
TARGET_HALDA_VS_EVEN = 0.70  # ms/token ratio: at least 30 % lower

HOMOGENEOUS = {f"n{i}": {"speed": 0.4, "mem_mb": None} for i in range(1, 6)}
HETEROGENEOUS = {
    "n1": {"speed": 0.8, "mem_mb": 400, "profile": "edge-server"},
    "n2": {"speed": 0.4, "mem_mb": 256, "profile": "jetson-orin-nano"},
    "n3": {"speed": 0.6, "mem_mb": 256, "profile": "raspberry-pi-5"},
    "n4": {"speed": 0.33, "mem_mb": 256, "profile": "raspberry-pi-4"},
    "n5": {"speed": 0.2145, "mem_mb": 256, "profile": "jetson-nano"},
}


def scenario(n_nodes: int = 5, rtt_ms: float = RTTS_MS[0],
             name: str = "bench-llm") -> dict[str, Any]:
    """A hub (the driver) and `n_nodes` shard nodes, each on its own 1000 Mbit/s link, so a
    node-to-node RTT is four link delays (also llm-paper's network)."""
    nodes: dict[str, Any] = {"hub": {"kind": "ground_station"}}
    links = []
    for i in range(1, n_nodes + 1):
        nodes[f"n{i}"] = {"kind": "edge_server"}
        links.append({"name": f"l{i}", "kind": "wired", "medium": "p2p",
                      "endpoints": ["hub", f"n{i}"], "delay_ms": rtt_ms / 4,
                      "rate_mbps": 1000})
    return {"name": name, "seed": 1, "duration_s": 3600, "nodes": nodes,
            "links": links, "capture": {"enabled": False}}


# ------------------------------------------------------------------------ driver (in the hub)

@dataclass
class Driver:
    """What both LLM benches' drivers start from: the cluster of agents, their measured
    profiles and links, the prompt and its single-device reference output."""

    cluster: Any
    out: dict[str, Any]
    devices: list[Any]
    links: Any
    shape: Any
    ids: list[int]
    eos: int
    ref: list[int]


async def start_driver(spec: dict[str, Any], prompt: str, new_tokens: int,
                       step_timeout_s: float) -> Driver:
    """Connect to the spec's agents, profile them and probe the links (recorded in `out`),
    and compute the reference; the caller closes `cluster`."""
    from controllers.llm.experiment import devices_from_profiles, links_from_probe, model_shape
    from payloads.llm.cluster import NodeAddr, ShardCluster
    from payloads.llm.model import load_config
    from payloads.llm.runtime import generate_local
    from payloads.llm.tokenizer import load_tokenizer

    token = Path(spec["token_file"]).read_text().strip()
    cluster = ShardCluster([NodeAddr(n, n, PORT) for n in spec["nodes"]], token, timeout=300,
                           step_timeout_s=step_timeout_s)
    try:
        await cluster.wait_ready(60)
        profiles = await cluster.profile()
        probe = await cluster.probe(count=3, bulk_bytes=64 * 1024)
        out: dict[str, Any] = {"rows": [], "profiles": {
            n: {k: p.get(k) for k in ("layer_ms", "head_ms", "speed", "disk_ms_per_layer",
                                      "mem_limit_bytes")} for n, p in profiles.items()},
            "probe_rtt_ms": {a: {b: m.get("rtt_ms") for b, m in peers.items()}
                             for a, peers in probe.items()},
            "probe_mbps": {a: {b: m.get("mbps") for b, m in peers.items()}
                           for a, peers in probe.items()}}
        ids = load_tokenizer().encode_chat([{"role": "user", "content": prompt}])
        return Driver(cluster, out, devices_from_profiles(profiles), links_from_probe(probe),
                      model_shape(), ids, load_config().eos_id,
                      generate_local(None, ids, new_tokens))
    except BaseException:
        await cluster.close()
        raise


async def _drive(spec: dict[str, Any]) -> dict[str, Any]:
    from controllers.llm.experiment import plan_for, serve

    drv = await start_driver(spec, PROMPT, NEW_TOKENS, step_timeout_s=60)
    cluster, out, devices, links, shape = drv.cluster, drv.out, drv.devices, drv.links, drv.shape
    ids, eos, ref = drv.ids, drv.eos, drv.ref
    try:
        if spec["set"] == "homogeneous":
            out["model_crossover_rtt_ms"] = model_crossover(devices, shape)
        for cfg in spec["configs"]:
            sub = [d for d in devices if d.name in cfg["nodes"]]
            plan = plan_for(cfg["method"], sub, shape, links, cfg["nodes"][0])
            tokens = cfg.get("tokens", NEW_TOKENS)
            t0 = time.perf_counter()
            # pipelines: the prompt twice, ms/token is the median (the first run on a fresh
            # plan pays page faults); tensor parallel once (it is slow and its spread small)
            reps = 1 if cfg["method"] == "tensor" else 2
            row = await serve(cluster, plan, [ids] * reps, tokens, eos, [ref[:tokens]] * reps,
                              tag=f"-{len(out['rows'])}")
            row.pop("generations", None)
            row |= {"set": spec["set"], "rtt_ms": spec["rtt_ms"], "n_nodes": len(sub),
                    "tokens": tokens, "wall_s": round(time.perf_counter() - t0, 2)}
            out["rows"].append(row)
            print(json.dumps({k: row.get(k) for k in ("set", "rtt_ms", "method", "n_nodes",
                                                      "ms_per_token", "tokens_equal")}),
                  file=sys.stderr, flush=True)
    finally:
        await cluster.close()
    return out


def model_crossover(devices: list[Any], shape: Any) -> dict[str, float | None]:
    """Per node count, the largest RTT at which the latency model (fed with the measured device
    profiles) still predicts tensor parallel faster than the even pipeline: the crossover."""
    from controllers.llm.experiment import plan_for
    from controllers.llm.latency import full_mesh

    out: dict[str, float | None] = {}
    for n in range(2, len(devices) + 1):
        sub = devices[:n]
        best = None
        for step in range(0, 201):
            rtt = step * 0.01
            links = full_mesh([d.name for d in sub], rtt / 2)
            tp = plan_for("tensor", sub, shape, links, sub[0].name).predicted_ms_per_token
            pp = plan_for("even", sub, shape, links, sub[0].name).predicted_ms_per_token
            if tp is not None and pp is not None and tp < pp:
                best = rtt
        out[str(n)] = best
    return out


def configs(devset: str, rtt_ms: float) -> list[dict[str, Any]]:
    names = [f"n{i}" for i in range(1, 6)]
    tp_tokens = TP_TOKENS_SLOW if rtt_ms >= 50 else NEW_TOKENS
    if devset == "homogeneous":
        out = []
        for n in range(1, 6):
            out.append({"method": "even", "nodes": names[:n]})
            if n > 1:
                out.append({"method": "tensor", "nodes": names[:n], "tokens": tp_tokens})
        return out
    return [{"method": m, "nodes": names} for m in ("single", "even", "proportional", "halda")
            ] + [{"method": "tensor", "nodes": names, "tokens": tp_tokens}]


# ------------------------------------------------------------------------ outer loop (root)

def agent_argv(node: str, speed: float, token_file: Path, *extra: str) -> list[str]:
    """A shard-hosting payload agent on the bench's port (this bench's and llm-paper's)."""
    return [sys.executable, "-m", "payloads.agent", "--node", node, "--cpu-hz", "1e9",
            "--port", str(PORT), "--token-file", str(token_file), "--llm",
            "--llm-speed", str(speed), *extra]


def token_file_of(emu: Any) -> Path:
    """The run's token where the agents and the driver read it (owner-only)."""
    path = emu.run_dir / "llm-token"
    path.write_text(emu.token)
    path.chmod(0o600)
    return path


def drive(emu: Any, module: str, spec: dict[str, Any], spec_file: Path,
          what: str) -> dict[str, Any]:
    """Run `module --driver spec_file` inside the hub (the driver talks to the agents over the
    emulated links) and return the JSON its last line prints."""
    spec_file.write_text(json.dumps(spec))
    res = emu.run("hub", [sys.executable, "-m", module, "--driver", str(spec_file)],
                  timeout=900)
    if res.returncode != 0:
        raise RuntimeError(f"driver failed ({what}): {res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _start_agents(emu: Any, devset: dict[str, Any], token_file: Path) -> list[Any]:
    procs = []
    for node, d in devset.items():
        mem = ["--llm-mem-mb", str(d["mem_mb"])] if d.get("mem_mb") else []
        procs.append(emu.popen(node, agent_argv(node, d["speed"], token_file, *mem)))
    return procs


def stop_agents(procs: list[Any]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except Exception:  # noqa: BLE001 - a stuck agent is killed; teardown checks the rest
            p.kill()


def run(console: Console) -> dict[str, Any]:
    from testbed.engines.base import Change
    from testbed.run.harness import emulated
    from testbed.scenario import parse

    sc = parse(scenario(), "bench-llm")
    rows: list[dict[str, Any]] = []
    extra: dict[str, Any] = {}
    t_all = time.monotonic()
    with emulated(sc) as emu:
        token_file = token_file_of(emu)
        for set_name, devset in (("heterogeneous", HETEROGENEOUS),
                                 ("homogeneous", HOMOGENEOUS)):
            agents = _start_agents(emu, devset, token_file)
            try:
                for rtt in RTTS_MS:
                    emu.net.apply([Change("set", link=f"l{i}", delay_ms=rtt / 4)
                                   for i in range(1, 6)])
                    spec = {"set": set_name, "rtt_ms": rtt, "nodes": list(devset),
                            "configs": configs(set_name, rtt), "token_file": str(token_file)}
                    console.print(f"[bold]llm[/] {set_name}, RTT {rtt:g} ms: "
                                  f"{len(spec['configs'])} configurations")
                    got = drive(emu, "controllers.llm.bench", spec,
                                emu.run_dir / f"llm-spec-{set_name}-{rtt:g}.json",
                                f"{set_name}, RTT {rtt}")
                    rows += got["rows"]
                    extra[f"{set_name}/{rtt:g}"] = {k: got[k] for k in (
                        "profiles", "probe_rtt_ms", "model_crossover_rtt_ms") if k in got}
            finally:
                stop_agents(agents)
    result = {"rows": rows, "measured": extra, "wall_s": round(time.monotonic() - t_all, 1),
              "devices": {"homogeneous": HOMOGENEOUS, "heterogeneous": HETEROGENEOUS},
              "prompt": PROMPT, "new_tokens": NEW_TOKENS}
    result["claims"] = claims(rows)
    result["crossover"] = crossover(rows)
    _print(console, rows, result)
    png = plot(rows)
    if png:
        from testbed.bench import BENCH_DIR

        BENCH_DIR.mkdir(parents=True, exist_ok=True)
        (BENCH_DIR / "llm_ms_per_token.png").write_bytes(png)
    return result


def claims(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for rtt in RTTS_MS:
        het = {r["method"]: r for r in rows if r["set"] == "heterogeneous" and r["rtt_ms"] == rtt}
        h, e = het.get("halda", {}).get("ms_per_token"), het.get("even", {}).get("ms_per_token")
        if h and e:
            out.append({"rtt_ms": rtt, "halda_ms_per_token": round(h, 2),
                        "even_ms_per_token": round(e, 2), "ratio": round(h / e, 3),
                        "lower_pct": round(100 * (1 - h / e), 1),
                        "target_met": h / e <= TARGET_HALDA_VS_EVEN})
    return out


def crossover(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per RTT and node count: tensor-parallel ms/token over the pipeline's (homogeneous)."""
    out = []
    for rtt in RTTS_MS:
        for n in range(2, 6):
            sel = {r["method"]: r.get("ms_per_token") for r in rows
                   if r["set"] == "homogeneous" and r["rtt_ms"] == rtt and r["n_nodes"] == n}
            if sel.get("even") and sel.get("tensor"):
                out.append({"rtt_ms": rtt, "n_nodes": n, "pipeline": round(sel["even"], 2),
                            "tensor": round(sel["tensor"], 2),
                            "tensor_over_pipeline": round(sel["tensor"] / sel["even"], 3)})
    return out


def _print(console: Console, rows: list[dict[str, Any]], result: dict[str, Any]) -> None:
    t = Table(title="edge LLM: ms/token (SmolLM2-135M, greedy, emulated devices and links)")
    for c in ("set", "RTT ms", "method", "nodes", "TTFT ms", "ms/token", "predicted",
              "bytes/token", "tokens ok"):
        t.add_column(c, justify="right")
    for r in rows:
        if not r.get("feasible", True):
            t.add_row(r["set"], f"{r['rtt_ms']:g}", r["method"], str(r["n_nodes"]),
                      "infeasible", "", "", "", "")
            continue
        t.add_row(r["set"], f"{r['rtt_ms']:g}", r["method"], str(r["n_nodes"]),
                  _f(r.get("ttft_ms")), _f(r.get("ms_per_token")),
                  _f(r.get("predicted_ms_per_token")), _f(r.get("bytes_per_token"), 0),
                  str(r.get("tokens_equal")))
    console.print(t)
    for c in result["claims"]:
        console.print(f"RTT {c['rtt_ms']:g} ms: Halda {c['halda_ms_per_token']} vs even "
                      f"{c['even_ms_per_token']} ms/token: {c['lower_pct']} % lower "
                      f"(target >= 30 %: {'met' if c['target_met'] else 'NOT met'})")


def _f(v: Any, nd: int = 1) -> str:
    return f"{v:.{nd}f}" if isinstance(v, int | float) else ""


def plot(rows: list[dict[str, Any]]) -> bytes | None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    homo = [r for r in rows if r["set"] == "homogeneous" and r.get("ms_per_token")]
    if not homo:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for rtt in RTTS_MS:
        for method, style in (("even", "-o"), ("tensor", "--s")):
            pts = sorted((r["n_nodes"], r["ms_per_token"]) for r in homo
                         if r["rtt_ms"] == rtt and r["method"] == method)
            if pts:
                axes[0].plot(*zip(*pts, strict=True), style,
                             label=f"{'pipeline' if method == 'even' else 'tensor'} {rtt:g} ms")
    axes[0].set(xlabel="nodes", ylabel="ms/token", yscale="log",
                title="homogeneous devices: pipeline vs tensor parallel")
    axes[0].legend(fontsize=7)
    het = [r for r in rows if r["set"] == "heterogeneous" and r.get("ms_per_token")]
    methods = [m for m in ("even", "proportional", "halda", "tensor")
               if any(r["method"] == m for r in het)]
    width = 0.8 / max(len(methods), 1)
    for i, m in enumerate(methods):
        xs = [k + i * width for k, rtt in enumerate(RTTS_MS)]
        ys = [next((r["ms_per_token"] for r in het if r["method"] == m and r["rtt_ms"] == rtt),
                   0) for rtt in RTTS_MS]
        axes[1].bar(xs, ys, width, label=m)
    axes[1].set_xticks([k + 0.4 - width / 2 for k in range(len(RTTS_MS))],
                       [f"RTT {r:g} ms" for r in RTTS_MS])
    axes[1].set(ylabel="ms/token", yscale="log", title="heterogeneous devices, 5 nodes")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def driver_main(argv: list[str], drive: Any, module: str, bench: str) -> int:
    """`python -m <module> --driver SPEC.json`: what `drive` returns, as the last line."""
    if len(argv) == 2 and argv[0] == "--driver":
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        spec = json.loads(Path(argv[1]).read_text())
        print(json.dumps(asyncio.run(drive(spec))))
        return 0
    print(f"usage: python -m {module} --driver SPEC.json (run by `make bench BENCH={bench}`)",
          file=sys.stderr)
    return 2


def main(argv: list[str]) -> int:
    return driver_main(argv, _drive, "controllers.llm.bench", "llm")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
