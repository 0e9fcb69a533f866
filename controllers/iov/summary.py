"""A live IoV run's chain results: results/<run>/chain/ gets summary.json, transactions.csv
(every transaction: submit -> commit latency or failure), shards.csv (who was in which shard
in every epoch), traffic.csv (per node), rounds.csv (success per epoch) and chain.png.

Made from the nodes' own records (controllers.iov.live), with the same metrics code as the
simulator (controllers.iov.metrics), so live and simulated numbers compare directly.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import yaml


def read_run(folder: Path) -> tuple[list[dict[str, Any]], dict[str, dict[str, int]], str]:
    records: list[dict[str, Any]] = []
    method = "?"
    for p in sorted(folder.glob("*.jsonl")):
        node = p.stem
        for line in p.read_text().splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue  # a line cut by a kill
            r.setdefault("node", node)
            if r.get("ev") == "start":
                method = r.get("method", method)
            records.append(r)
    traffic = {}
    for p in sorted(folder.glob("*.traffic.json")):
        try:
            traffic[p.name.removesuffix(".traffic.json")] = json.loads(p.read_text())
        except ValueError:
            continue
    return records, traffic, method


def summarize(run_dir: Path) -> dict[str, Any]:
    from controllers.iov.chain import ChainConfig
    from controllers.iov.config import LIVE, load_experiment
    from controllers.iov.metrics import summarize as metrics

    folder = run_dir / "chain"
    records, traffic, method = read_run(folder)
    sc = yaml.safe_load((run_dir / "scenario.resolved.yaml").read_text())
    duration = float(sc.get("duration_s", 60.0))
    cfg = ChainConfig()
    for ev in sc.get("timeline") or []:
        args = str(ev.get("command") or "").split()
        if LIVE in args and "--config" in args:
            try:
                cfg = load_experiment(args[args.index("--config") + 1]).chain
            except Exception:  # noqa: BLE001 - the defaults are good enough for a summary
                pass
            break
    # the same window as the simulator's: transactions start with the first epoch
    m = metrics(records, traffic, duration, cfg.tx_timeout_ms, warmup_s=cfg.first_epoch_s)
    rounds = [r for r in records if r.get("ev") == "round"]
    out = {"method": method, "nodes": len({r["node"] for r in records}),
           "vehicle_events": _vehicle_events(run_dir), **m,
           "shards_over_time": [{"e": r["e"], "t_s": round(r["t_ms"] / 1000, 1),
                                 "sizes": [len(v) for v in r["members"].values()],
                                 "left": r.get("left", []), "fitness": r.get("fitness"),
                                 "shard_cpu_ms": r.get("shard_cpu_ms")} for r in rounds]}
    _tables(folder, records, traffic, rounds)
    _plot(folder / "chain.png", records, traffic, m)
    (folder / "summary.json").write_text(json.dumps(out, indent=1))
    return out


def _vehicle_events(run_dir: Path) -> dict[str, int]:
    p = run_dir / "mobility" / "vehicles.csv"
    out = {"enter": 0, "leave": 0}
    if p.is_file():
        with open(p) as f:
            for row in csv.DictReader(f):
                out[row["event"]] = out.get(row["event"], 0) + 1
    return out


def _tables(folder: Path, records: list[dict[str, Any]], traffic: dict[str, dict[str, int]],
            rounds: list[dict[str, Any]]) -> None:
    commits = {r["tx"]: r for r in records if r.get("ev") == "commit"}
    fails = {r["tx"] for r in records if r.get("ev") == "failed"}
    with open(folder / "transactions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["tx", "node", "epoch", "shards", "submit_ms", "commit_ms", "latency_ms",
                    "status"])
        for r in records:
            if r.get("ev") != "submit":
                continue
            c = commits.get(r["tx"])
            status = "committed" if c else ("failed" if r["tx"] in fails else "unresolved")
            w.writerow([r["tx"], r["node"], r.get("e"), "+".join(map(str, r["shards"])),
                        r["t_ms"], c["t_ms"] if c else "", c["latency_ms"] if c else "",
                        status])
    with open(folder / "shards.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "t_s", "node", "shard"])
        for r in rounds:
            for s, names in r["members"].items():
                for n in names:
                    w.writerow([r["e"], round(r["t_ms"] / 1000, 2), n, s])
    with open(folder / "traffic.csv", "w", newline="") as f:
        w = csv.writer(f)
        keys = ["bytes_sent", "bytes_recv", "msgs_sent", "msgs_recv", "dropped_local"]
        w.writerow(["node", *keys])
        for n, t in sorted(traffic.items()):
            w.writerow([n, *(t.get(k, 0) for k in keys)])


def _plot(path: Path, records: list[dict[str, Any]], traffic: dict[str, dict[str, int]],
          m: dict[str, Any]) -> None:
    from testbed.analysis.plots import plt, to_png

    lat = sorted(r["latency_ms"] for r in records if r.get("ev") == "commit")
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    if lat:
        ax[0].plot(lat, [(i + 1) / len(lat) for i in range(len(lat))])
    ax[0].set(xlabel="submit -> commit (ms)", ylabel="CDF", title="commit latency")
    rounds = m.get("rounds", [])
    ax[1].bar([r["e"] for r in rounds], [r["committed"] for r in rounds], label="committed")
    ax[1].bar([r["e"] for r in rounds], [r["failed"] for r in rounds],
              bottom=[r["committed"] for r in rounds], label="failed")
    ax[1].set(xlabel="epoch", ylabel="transactions", title="per round")
    ax[1].legend(fontsize=8)
    names = sorted(traffic, key=lambda n: -(traffic[n].get("bytes_sent", 0)
                                            + traffic[n].get("bytes_recv", 0)))
    ax[2].bar(range(len(names)), [(traffic[n].get("bytes_sent", 0)
                                   + traffic[n].get("bytes_recv", 0)) / 1e6 for n in names])
    ax[2].set_xticks(range(len(names)), names, rotation=90, fontsize=6)
    ax[2].set(ylabel="MB sent + received", title="node traffic load")
    fig.tight_layout()
    path.write_bytes(to_png(fig))
