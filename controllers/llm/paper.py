"""TPI-LLM in its own regime (`make bench BENCH=llm-paper`): devices whose memory is far below a
pipeline stage's weights, so every method must stream weights from storage, on LAN-class links.

TPI-LLM (arXiv 2410.00531) claims over 80 % lower time-to-first-token and token latency than
Accelerate and over 90 % lower than Transformers (and Galaxy) - with 70B-scale models on edge
devices (emulated on Klonet, and laptops on Wi-Fi) whose memory holds a small fraction of the
weights: the baselines offload to disk, and TPI's sliding-window scheduler overlaps its disk
reads with computation and communication.  `make bench BENCH=llm` measures tensor parallelism
where everything fits in memory, and there the pipeline wins everywhere.  This bench builds the
paper's regime with the same network approach (a hub and four shard nodes, each on its own ns-3
point-to-point link, node-to-node RTT = four link delays; the driver runs in the hub's
namespace) and the same model, scaled down:

  devices   4 x 0.4 host core; 32 MiB for layers each (the master also holds the 108 MiB
            embedding/head): an even pipeline stage needs 95-108 MiB, a TP rank's share 101 MiB;
            every node runs with --llm-offload and an emulated disk (--llm-disk-mb-s)
  methods   tpi             tensor parallel over 4, slices streamed from each rank's own slice
                            files, memory window 2 (the next slice loads while one computes)
            tpi-noprefetch  the same, one buffer, every slice read when needed (the ablation)
            accelerate      even pipeline over 4, blocking loads (Accelerate's disk offload)
            transformers    the master alone, blocking loads (Transformers with a memory limit)
            halda           the project's pipeline: Halda's plan on the measured profiles
                            (disk cost included), one prefetched buffer
            galaxy          tensor parallel without offload: infeasible (OOM), not run
  settings  RTT 1 ms and 5 ms at DISK_MB_S, and RTT 1 ms at FAST_DISK_MB_S (how the margin
            depends on the disk), every method in each

Every row checks its greedy tokens against the single-device reference.  Writes
results/bench/llm-paper.json and prints each claim as three lines and a verdict.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

PROMPT = "What is the capital of France?"
NEW_TOKENS = 8
N_NODES = 4
SPEED = 0.4  # host cores per device (the llm bench's Jetson Orin Nano)
LAYER_MEM_MB = 32  # memory for layers per device; the master adds the embedding/head
EMBED_HEAD_MB = 108
DISK_MB_S = 250.0  # eMMC / SD-card class storage of an edge board
FAST_DISK_MB_S = 2000.0  # NVMe-class (a laptop's SSD): the ablation
METHODS = ("tpi", "tpi-noprefetch", "accelerate", "transformers", "halda", "galaxy")
SETTINGS = (  # (RTT ms, disk MB/s, methods)
    (1.0, DISK_MB_S, METHODS),
    (5.0, DISK_MB_S, METHODS),
    (1.0, FAST_DISK_MB_S, METHODS),
)
CLAIM_ACCELERATE = 80.0  # % lower TTFT and token latency than Accelerate
CLAIM_TRANSFORMERS = 90.0  # % lower than Transformers (and Galaxy)
TOLERANCE = 0.20  # "reproduced" when within 20 % of the claimed margin
PAPER_SETTING = ("Llama-2 7B-70B on 8 devices emulated on Klonet and 4 laptops on Wi-Fi, each "
                 "with memory far below its pipeline stage (baselines offload to disk)")
TPI = {"window": 2, "prefetch": True}
BLOCKING = {"window": 1, "prefetch": False}


def scenario() -> dict[str, Any]:
    from controllers.llm.bench import scenario as star

    return star(N_NODES, SETTINGS[0][0], "bench-llm-paper")


# ------------------------------------------------------------------------ driver (in the hub)

async def _drive(spec: dict[str, Any]) -> dict[str, Any]:
    from dataclasses import replace

    from controllers.llm.assign import even_split
    from controllers.llm.bench import start_driver
    from controllers.llm.experiment import MethodPlan, plan_for, serve

    names = list(spec["nodes"])
    master = names[0]
    drv = await start_driver(spec, PROMPT, NEW_TOKENS, step_timeout_s=120)
    cluster, out, devices, links, shape = drv.cluster, drv.out, drv.devices, drv.links, drv.shape
    ids, eos, ref = drv.ids, drv.eos, drv.ref
    try:
        for method in spec["methods"]:
            if method in ("tpi", "tpi-noprefetch"):
                opts = TPI if method == "tpi" else BLOCKING
                plan = plan_for("tensor", devices, shape, links, master, window=opts["window"])
                plan.method, plan.options = method, dict(opts)
            elif method == "galaxy":  # Galaxy: tensor parallel, all weights in memory
                plan = plan_for("tensor", [replace(d, disk_ms_per_layer=None)
                                           for d in devices], shape, links, master)
                plan.method = method
            elif method == "accelerate":
                plan = MethodPlan(method, "pipeline", master,
                                  # the even split's stages, used whether or not
                                  # they fit: Accelerate streams what does not
                                  stages=list(even_split(devices, shape, links,
                                                         master=master).stages()),
                                  options=dict(BLOCKING))
            elif method == "transformers":
                plan = MethodPlan(method, "pipeline", master,
                                  stages=[(master, 0, shape.n_layers)], options=dict(BLOCKING))
            elif method == "halda":
                plan = plan_for("halda", devices, shape, links, master)
            else:
                raise ValueError(f"unknown method {method!r}")
            t0 = time.perf_counter()
            # tensor parallel twice (median): its rows are short and the ablation compares two
            # of them; a pipeline's token here is seconds of disk waits, steadier
            reps = 2 if plan.mode == "tensor" else 1
            row = await serve(cluster, plan, [ids] * reps, NEW_TOKENS, eos, [ref] * reps,
                              tag=f"-{len(out['rows'])}")
            gens = row.pop("generations", None) or []
            row["streamed"] = {n: st.get("streamed") for g in gens[:1]
                               for n, st in (g.get("node_stats") or {}).items()
                               if st.get("streamed")}
            row |= {"rtt_ms": spec["rtt_ms"], "disk_mb_s": spec["disk_mb_s"],
                    "n_nodes": len(plan.members), "wall_s": round(time.perf_counter() - t0, 2)}
            out["rows"].append(row)
            print(json.dumps({k: row.get(k) for k in ("rtt_ms", "disk_mb_s", "method",
                                                      "ttft_ms", "ms_per_token",
                                                      "tokens_equal", "reason")}),
                  file=sys.stderr, flush=True)
    finally:
        await cluster.close()
    return out


# ------------------------------------------------------------------------ outer loop (root)

def _start_agents(emu: Any, token_file: Path, disk_mb_s: float) -> list[Any]:
    from controllers.llm.bench import agent_argv

    procs = []
    for i in range(1, N_NODES + 1):
        mem = LAYER_MEM_MB + (EMBED_HEAD_MB if i == 1 else 0)
        procs.append(emu.popen(f"n{i}", agent_argv(
            f"n{i}", SPEED, token_file, "--llm-mem-mb", str(mem), "--llm-offload",
            "--llm-disk-mb-s", str(disk_mb_s))))
    return procs


def run(console: Console) -> dict[str, Any]:
    from controllers.llm.bench import drive, stop_agents, token_file_of
    from testbed.engines.base import Change
    from testbed.run.harness import emulated
    from testbed.scenario import parse

    sc = parse(scenario(), "bench-llm-paper")
    rows: list[dict[str, Any]] = []
    measured: dict[str, Any] = {}
    t_all = time.monotonic()
    with emulated(sc) as emu:
        token_file = token_file_of(emu)
        for disk in dict.fromkeys(d for _, d, _ in SETTINGS):
            agents = _start_agents(emu, token_file, disk)
            try:
                for rtt, d, methods in SETTINGS:
                    if d != disk:
                        continue
                    emu.net.apply([Change("set", link=f"l{i}", delay_ms=rtt / 4)
                                   for i in range(1, N_NODES + 1)])
                    spec = {"rtt_ms": rtt, "disk_mb_s": disk, "methods": list(methods),
                            "nodes": [f"n{i}" for i in range(1, N_NODES + 1)],
                            "token_file": str(token_file)}
                    console.print(f"[bold]llm-paper[/] RTT {rtt:g} ms, disk {disk:g} MB/s: "
                                  f"{', '.join(methods)}")
                    got = drive(emu, "controllers.llm.paper", spec,
                                emu.run_dir / f"llm-paper-{rtt:g}-{disk:g}.json",
                                f"RTT {rtt}, disk {disk}")
                    rows += got["rows"]
                    measured[f"{rtt:g}ms/{disk:g}MBs"] = {k: got[k] for k in (
                        "profiles", "probe_rtt_ms", "probe_mbps")}
            finally:
                stop_agents(agents)
    result: dict[str, Any] = {
        "rows": rows, "measured": measured, "wall_s": round(time.monotonic() - t_all, 1),
        "setup": {"nodes": N_NODES, "speed": SPEED, "layer_mem_mb": LAYER_MEM_MB,
                  "master_extra_mb": EMBED_HEAD_MB, "settings": [list(s) for s in SETTINGS],
                  "prompt": PROMPT, "new_tokens": NEW_TOKENS},
        "paper": {"source": "arXiv 2410.00531 (abstract); github.com/Lizonghang/TPI-LLM README",
                  "claim_vs_accelerate_pct": CLAIM_ACCELERATE,
                  "claim_vs_transformers_pct": CLAIM_TRANSFORMERS,
                  "setting": PAPER_SETTING}}
    result["claims"] = claims(rows, measured)
    _print(console, rows, result["claims"])
    return result


def _row(rows: list[dict[str, Any]], method: str, rtt: float, disk: float) -> dict[str, Any]:
    return next((r for r in rows if r["method"] == method and r["rtt_ms"] == rtt
                 and r["disk_mb_s"] == disk and r.get("ok") and r.get("tokens_equal")), {})


def _lower(ours: Any, base: Any) -> float | None:
    if isinstance(ours, int | float) and isinstance(base, int | float) and base > 0:
        return round(100.0 * (1.0 - ours / base), 1)
    return None


def claims(rows: list[dict[str, Any]],
           measured: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Per setting and metric (TTFT, ms/token): TPI's reduction against Accelerate-style and
    Transformers-style offloading and against the best pipeline measured, the ablations, and
    a verdict against the paper's margin (within TOLERANCE of it, or the shortfall)."""
    out = []
    for rtt, disk, _ in SETTINGS:
        tpi = _row(rows, "tpi", rtt, disk)
        if not tpi:
            continue
        for metric, label in (("ttft_ms", "TTFT"), ("ms_per_token", "token latency")):
            acc = _row(rows, "accelerate", rtt, disk).get(metric)
            tra = _row(rows, "transformers", rtt, disk).get(metric)
            pipes = {m: _row(rows, m, rtt, disk).get(metric)
                     for m in ("halda", "accelerate", "transformers")}
            pipes = {m: v for m, v in pipes.items() if isinstance(v, int | float)}
            best = min(pipes, key=lambda m: pipes[m]) if pipes else None
            nopf = _row(rows, "tpi-noprefetch", rtt, disk).get(metric)
            c = {"rtt_ms": rtt, "disk_mb_s": disk, "metric": metric, "label": label,
                 "tpi": tpi.get(metric), "accelerate": acc, "transformers": tra,
                 "best_pipeline": best, "best_pipeline_value": pipes.get(best or ""),
                 "tpi_noprefetch": nopf,
                 "vs_accelerate_pct": _lower(tpi.get(metric), acc),
                 "vs_transformers_pct": _lower(tpi.get(metric), tra),
                 "vs_best_pipeline_pct": _lower(tpi.get(metric), pipes.get(best or "")),
                 "prefetch_gain_pct": _lower(tpi.get(metric), nopf)}
            c["tpi_bytes_per_token"] = tpi.get("bytes_per_token")
            c["accelerate_bytes_per_token"] = _row(rows, "accelerate", rtt, disk).get(
                "bytes_per_token")
            mbps = [v for peers in ((measured or {}).get(f"{rtt:g}ms/{disk:g}MBs", {})
                                    .get("probe_mbps") or {}).values()
                    for v in peers.values()
                    # above the links' 1000 Mbit/s: the bulk echo ended within the RTT's noise
                    if isinstance(v, int | float) and v <= 1000]
            c["probe_mbps_median"] = sorted(mbps)[len(mbps) // 2] if mbps else None
            x = c["vs_accelerate_pct"]
            c["reproduced"] = x is not None and x >= (1 - TOLERANCE) * CLAIM_ACCELERATE
            out.append(c)
    return out


def claim_lines(c: dict[str, Any], fast: dict[str, Any] | None) -> list[str]:
    """The claim in words: the paper, ours against its baselines, ours against our best, and
    the verdict with what explains the difference."""
    def pct(v: Any) -> str:
        return "n/a" if v is None else f"{v:.0f} %"

    lines = [f"paper: >{CLAIM_ACCELERATE:.0f} % lower {c['label']} than Accelerate "
             f"(>{CLAIM_TRANSFORMERS:.0f} % vs Transformers) in {PAPER_SETTING}",
             f"ours in the paper's setting vs its baselines (RTT {c['rtt_ms']:g} ms, disk "
             f"{c['disk_mb_s']:g} MB/s, 4 x {LAYER_MEM_MB} MiB): {pct(c['vs_accelerate_pct'])} "
             f"(Accelerate-style), {pct(c['vs_transformers_pct'])} (Transformers-style)",
             f"ours vs the best baseline we have: {pct(c['vs_best_pipeline_pct'])} "
             f"({c['best_pipeline'] or 'none measured'})"]
    x = c["vs_accelerate_pct"]
    why = (f"memory window 2 (prefetch) buys {pct(c['prefetch_gain_pct'])} of TPI's own "
           f"{c['label']}")
    if fast and fast.get("vs_accelerate_pct") is not None:
        why += (f"; with a {fast['disk_mb_s']:g} MB/s disk the margin is "
                f"{pct(fast['vs_accelerate_pct'])}")
    if x is None:
        verdict = "verdict: not measured (a row failed or its tokens differ)"
    elif c["reproduced"]:
        verdict = (f"verdict: reproduced - {x:.0f} % is within {TOLERANCE:.0%} of the claimed "
                   f">{CLAIM_ACCELERATE:.0f} %: with every device streaming, the 4 ranks read "
                   f"1/4 of each layer in parallel while the pipeline's stages read whole layers "
                   f"one after another ({why})")
    elif c["metric"] == "ttft_ms":
        mb = (c.get("tpi_bytes_per_token") or 0) * (NEW_TOKENS + 1) / 1e6
        verdict = (f"verdict: NOT reproduced - {x:.0f} % against >{CLAIM_ACCELERATE:.0f} %, "
                   f"short by {CLAIM_ACCELERATE - x:.0f} points: TPI's prefill all-reduces "
                   f"carry the whole prompt's hidden states (~{mb:.0f} MB between nodes per "
                   f"prompt against the pipeline's "
                   f"{(c.get('accelerate_bytes_per_token') or 0) * (NEW_TOKENS + 1) / 1e6:.1f}"
                   f" MB) through emulated links measured at ~{c.get('probe_mbps_median') or 0:.0f}"
                   f" Mbit/s goodput on this shared host, so bandwidth, not the disk, sets its "
                   f"TTFT ({why})")
    else:
        verdict = (f"verdict: NOT reproduced - {x:.0f} % against >{CLAIM_ACCELERATE:.0f} %, "
                   f"short by {CLAIM_ACCELERATE - x:.0f} points: the margin is the disk's share "
                   f"of the pipeline's token; TPI pays 2 x {N_NODES - 1} round trips per layer "
                   f"on top, which slower links (RTT {c['rtt_ms']:g} ms) or a faster disk "
                   f"make a larger share ({why})")
    return [*lines, verdict]


def _print(console: Console, rows: list[dict[str, Any]], cl: list[dict[str, Any]]) -> None:
    t = Table(title="TPI-LLM in its own regime: 4 devices x 32 MiB for layers, all offloading "
                    "(SmolLM2-135M, greedy)")
    for col in ("RTT ms", "disk MB/s", "method", "nodes", "TTFT ms", "ms/token", "predicted",
                "peak weights MiB master / others", "RSS MiB max", "tokens ok"):
        t.add_column(col, justify="right")
    for r in rows:
        mem = r.get("memory") or {}
        rss = max((v.get("rss_bytes", 0) for v in mem.values()), default=0)
        if not r.get("feasible", True):
            t.add_row(f"{r['rtt_ms']:g}", f"{r['disk_mb_s']:g}", r["method"], "",
                      "OOM" if "OOM" in (r.get("reason") or "") else "infeasible",
                      "", "", "", "", "")
            continue
        t.add_row(f"{r['rtt_ms']:g}", f"{r['disk_mb_s']:g}", r["method"], str(r["n_nodes"]),
                  _f(r.get("ttft_ms")), _f(r.get("ms_per_token")),
                  _f(r.get("predicted_ms_per_token")),
                  _peaks(r),
                  _f(rss / 2**20, 0), str(r.get("tokens_equal")))
    console.print(t)
    for c in cl:
        fast = next((f for f in cl if f["metric"] == c["metric"] and f["rtt_ms"] == c["rtt_ms"]
                     and f["disk_mb_s"] != c["disk_mb_s"]), None)
        if c["disk_mb_s"] != DISK_MB_S:
            continue
        for line in claim_lines(c, fast):
            console.print(line)
        console.print()


def _peaks(r: dict[str, Any]) -> str:
    """Weights alive at most on the master (embedding + head + its layers) / on the busiest
    other member (its layers only)."""
    mem = r.get("memory") or {}
    m = mem.get(r.get("master"), {}).get("peak_weight_bytes")
    others = [v.get("peak_weight_bytes", 0) for n, v in mem.items() if n != r.get("master")]
    return (f"{_f((m or 0) / 2**20)} / "
            + (_f(max(others) / 2**20) if others else "-"))


def _f(v: Any, nd: int = 1) -> str:
    return f"{v:.{nd}f}" if isinstance(v, int | float) else ""


def main(argv: list[str]) -> int:
    from controllers.llm.bench import driver_main

    return driver_main(argv, _drive, "controllers.llm.paper", "llm-paper")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
