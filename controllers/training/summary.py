"""A training run's numbers, from every node's training/<node>.jsonl and the timeline's
events.jsonl: written to results/<run>/training/ as summary.json, steps.csv, events.csv,
transfers.csv and cluster.png.

Times are seconds from the run's time zero (manifest.json).  What each number means:

- scale-out delay: the joiner's join request -> its first step computed with the cluster's
  state (for the checkpoint baseline that includes the admin's go after every restart);
  `from_process_s` adds the joiner's own start-up (python, torch, the data set).
- event handling (control path): the coordinator's detection -> the new view committed, and
  for link events the route change seen by a node -> the ring decision (`decide_ms` is the
  decision alone).  Detection itself (`detect_s`: timeline event -> detection) is separate:
  a crash is seen after `suspect_after_ms` of silence, a link change when the routes move.
- idle: per node, the seconds it was parked by events (between a proposal and the resume).
- accuracy: on the 360 held-out images, every `eval_every` steps; time-to-accuracy is the
  first time it reaches the experiment's target.
"""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path
from typing import Any

import yaml


def _read(path: Path) -> list[dict[str, Any]]:
    out = []
    with open(path) as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line cut by a kill
    return out


def _timeline(run_dir: Path) -> tuple[float, float, list[dict[str, Any]]]:
    """(time zero, duration, timeline events with their times) of a run."""
    t0, duration = None, float("inf")
    man = run_dir / "manifest.json"
    if man.is_file():
        t0 = json.loads(man.read_text()).get("time_zero_wall")
    sc = run_dir / "scenario.resolved.yaml"
    if sc.is_file():
        duration = float((yaml.safe_load(sc.read_text()) or {}).get("duration_s", duration))
    events = _read(run_dir / "events.jsonl") if (run_dir / "events.jsonl").is_file() else []
    if t0 is None and events:
        t0 = events[0]["wall"] - events[0]["actual_s"]
    return float(t0 or 0.0), duration, events


def node_alive(recs: list[dict[str, Any]]) -> bool:
    """Its process did not exit (crashed nodes just stop logging: the timeline knows)."""
    return not any(r["k"] == "exit" for r in recs)


def _median(xs: list[float]) -> float | None:
    return round(statistics.median(xs), 4) if xs else None


def summarize(run_dir: Path, target: float | None = None) -> dict[str, Any]:
    out_dir = run_dir / "training"
    logs = {p.stem: _read(p) for p in sorted(out_dir.glob("*.jsonl"))}
    if not logs:
        return {}
    t0, duration, timeline = _timeline(run_dir)
    end = t0 + duration

    def rel(t: float | None) -> float | None:
        return None if t is None else round(t - t0, 4)

    starts = [r for recs in logs.values() for r in recs if r["k"] == "start"]
    method = next((r["method"] for r in starts), "?")
    if target is None:  # the experiment's, as every node logged it at start
        target = next((r["target"] for r in starts if "target" in r), 0.95)
    crashes: dict[str, list[float]] = {}  # node -> wall times the timeline crashed it
    for ev in timeline:
        if str(ev.get("event", "")).startswith("node_crash"):
            n = next((w.split("=", 1)[1] for w in ev["event"].split() if w.startswith("node=")),
                     "")
            crashes.setdefault(n, []).append(ev["wall"])
    nodes: dict[str, Any] = {}
    steps_rows: list[dict[str, Any]] = []
    acc: dict[int, tuple[float, float, float]] = {}
    changes, links, scale_outs, transfers, computing = [], [], [], [], []
    for node, recs in logs.items():
        recs = [r for r in recs if r["t"] <= end]
        if any(r["k"] == "start" and r.get("admin") for r in recs):
            nodes[node] = {"role": "store"}
        else:
            st = [r for r in recs if r["k"] == "step"]
            idle = [r["s"] for r in recs if r["k"] == "idle"]
            # parked by a proposal and never resumed before the end: idle until the end
            # (a process that exited or was killed is not parked)
            marks = [r for r in recs if r["k"] in ("propose", "idle", "exit", "restart",
                                                       "removed", "step")]
            open_park = bool(marks) and marks[-1]["k"] == "propose" and node_alive(recs)
            if open_park:
                crashed = [t for t in crashes.get(node, []) if t >= marks[-1]["t"]]
                idle.append(round(min([end, *crashed]) - marks[-1]["t"], 4))
            nodes[node] = {"role": "member", "steps": len(st),
                           "last_step": st[-1]["step"] if st else None,
                           "idle_s": round(sum(idle), 4), "idle_events": len(idle),
                           "parked_at_end": open_park,
                           "compute_ms_median": _median([r["compute_ms"] for r in st]),
                           "step_ms_median": _median([r["compute_ms"] + r["comm_ms"]
                                                      for r in st]),
                           "restarts": sum(r["k"] == "restart" for r in recs),
                           "errors": [r.get("error") for r in recs if r["k"] == "error"]}
            for r in st:
                steps_rows.append({"t_s": rel(r["t"]), "node": node, "step": r["step"],
                                   "view": r["v"], "members": r["n"], "loss": r["loss"],
                                   "compute_ms": r["compute_ms"], "comm_ms": r["comm_ms"]})
        for r in recs:
            k = r["k"]
            if k == "accuracy" and r["step"] not in acc:
                acc[r["step"]] = (r["t"], r["acc"], r["loss"])
            elif k == "change":
                changes.append({"t_s": rel(r["t_commit"]), "coordinator": node,
                                "reason": r["reason"], "view": r["v"], "members": len(r["m"]),
                                "add": r["add"], "remove": r["remove"], "step": r["step"],
                                "detect_t_s": rel(r["t_detect"]),
                                "handling_ms": r["handling_ms"], "decide_ms": r["decide_ms"],
                                "rounds": r["rounds"]})
            elif k == "link_handled":
                links.append({"t_s": rel(r["t_detect"]), "coordinator": node,
                              "reporter": r["reporter"], "peers": r["peers"],
                              "decide_ms": r["decide_ms"], "handled_ms": r["handled_ms"],
                              "relink": r["relink"]})
            elif k == "scale_out":
                scale_outs.append({"node": node, **{x: r.get(x) for x in (
                    "v", "step", "delay_s", "from_process_s", "state_bytes")},
                    "t_request_s": rel(r["t_request"])})
            elif k == "computing" and r.get("joined"):
                computing.append({"node": node, "t_s": rel(r["t"]),
                                  "t_request_s": rel(r.get("t_request")), "step": r["step"]})
            elif k == "pulled":
                transfers.append({"t_s": rel(r["t"]), "joiner": node, "source": r["source"],
                                  "bytes": r["bytes"], "seconds": r["seconds"],
                                  "mbps": round(r["bytes"] * 8 / 1e6 / r["seconds"], 2)
                                  if r["seconds"] else None, "interface": r.get("dev"),
                                  "error": r.get("error")})
            elif k == "state_check":
                transfers.append({"t_s": rel(r["t"]), "joiner": node, "source": "(all)",
                                  "sha256": r["sha256"][:16], "identical": r["identical"]})
    # the interface a pull left by -> the scenario's link (the run's network.json)
    links_of = _interfaces(run_dir)
    for t in transfers:
        if t.get("interface"):
            t["link"] = links_of.get((t["joiner"], t["interface"]))
    # the scale-out delay is join request -> first step computed with the state
    for so in scale_outs:
        first = next((c for c in computing if c["node"] == so["node"]
                      and c["t_request_s"] == so["t_request_s"]), None)
        so["computing_s"] = round(first["t_s"] - so["t_request_s"], 4) if first else None
    accuracy = [{"step": s, "t_s": rel(t), "acc": a, "loss": lo}
                for s, (t, a, lo) in sorted(acc.items())]
    reach = next((a for a in accuracy if a["acc"] >= target), None)
    # timeline events (exec of a node / leave, crash, links) and when the cluster saw them
    tl = []
    for ev in timeline:
        e = ev.get("event", "")
        kind = ("join" if "training.live node" in e else "leave" if "training.live leave" in e else
                "crash" if e.startswith("node_crash") else
                "link_down" if e.startswith("link_down") else
                "link_up" if e.startswith("link_up") else None)
        if kind is None or (ev.get("planned_s") == 0.0 and kind == "join"):
            continue
        node = next((w.split("=", 1)[1] for w in e.split() if w.startswith("node=")), None)
        tl.append({"at_s": ev.get("actual_s"), "kind": kind, "node": node, "event": e[:80]})
    for e in tl:  # the first detection after the event, by kind
        if e["kind"] in ("link_down", "link_up"):
            hit = [x for x in links if x["t_s"] is not None and x["t_s"] >= e["at_s"]]
            if hit:
                e["detect_s"] = round(hit[0]["t_s"] - e["at_s"], 4)
                e["handled_ms"] = hit[0]["handled_ms"]
                e["decide_ms"] = hit[0]["decide_ms"]
        else:
            want = {"join": "join", "leave": "leave", "crash": "crash"}[e["kind"]]
            hit = [c for c in changes if c["reason"] == want and c["detect_t_s"] is not None
                   and c["detect_t_s"] >= e["at_s"] - 0.5
                   and e["node"] in (c["add"] if want == "join" else c["remove"])]
            if hit:
                e["detect_s"] = round(hit[0]["detect_t_s"] - e["at_s"], 4)
                e["handling_ms"] = hit[0]["handling_ms"]
    idle_total = sum(n.get("idle_s", 0.0) for n in nodes.values())
    by_reason: dict[str, list[float]] = {}
    for c in changes:
        by_reason.setdefault(c["reason"], []).append(c["handling_ms"])
    summary = {
        "method": method, "target_accuracy": target,
        "steps": max((r["step"] for r in steps_rows), default=0),
        "final_accuracy": accuracy[-1]["acc"] if accuracy else None,
        "time_to_accuracy_s": reach["t_s"] if reach else None,
        "steps_to_accuracy": reach["step"] if reach else None,
        "idle_s_total": round(idle_total, 3),
        "scale_out": scale_outs,
        "scale_out_delay_s_median": _median([s["computing_s"] for s in scale_outs
                                             if s["computing_s"] is not None]),
        "handling_ms_median": {k: _median(v) for k, v in by_reason.items()},
        "link_decide_ms_median": _median([x["decide_ms"] for x in links]),
        "link_handled_ms_median": _median([x["handled_ms"] for x in links]),
        "state_identical": all(t.get("identical", True) for t in transfers),
        "transfers": transfers,
        "nodes": nodes, "timeline": tl, "changes": changes, "accuracy": accuracy,
    }
    out_dir.mkdir(exist_ok=True)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    _csv(out_dir / "steps.csv", steps_rows)
    _csv(out_dir / "events.csv", changes + [{"reason": "link", **x} for x in links])
    _csv(out_dir / "transfers.csv", transfers)
    try:
        plot(out_dir / "cluster.png", logs, t0, end, accuracy, tl)
    except Exception as exc:  # noqa: BLE001 - a plot never costs the numbers
        summary["plot_error"] = str(exc)
    return summary


def _interfaces(run_dir: Path) -> dict[tuple[str, str], str]:
    """(node, interface) -> link name, from the run's network plan."""
    path = run_dir / "network.json"
    if not path.is_file():
        return {}
    plan = json.loads(path.read_text())
    return {(m["node"], m["ifname"]): m["link"] for seg in plan.get("segments", [])
            for m in seg.get("members", [])}


def _csv(path: Path, rows: list[dict[str, Any]]) -> None:
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols or ["empty"])
        w.writeheader()
        for r in rows:
            w.writerow({k: json.dumps(v) if isinstance(v, list | dict) else v
                        for k, v in r.items()})


def plot(path: Path, logs: dict[str, list[dict[str, Any]]], t0: float, end: float,
         accuracy: list[dict[str, Any]], tl: list[dict[str, Any]]) -> None:
    """The cluster over time: each node's training (green), parked by an event (orange) and
    absent; the timeline's events; accuracy against time and against steps."""
    from testbed.analysis.plots import plt, to_png

    members = [n for n, recs in logs.items() if not any(r["k"] == "start" and r.get("admin")
                                                         for r in recs)]
    fig, (ax, ax2, ax3) = plt.subplots(3, 1, figsize=(10, 7.5),
                                       gridspec_kw={"height_ratios": [2, 1.2, 1.2]})
    for i, n in enumerate(members):
        st = [r["t"] - t0 for r in logs[n] if r["k"] == "step" and r["t"] <= end]
        if st:  # training spans: consecutive steps closer than 1 s
            spans, a, b = [], st[0], st[0]
            for t in st[1:]:
                if t - b > 1.0:
                    spans.append((a, b - a))
                    a = t
                b = t
            spans.append((a, max(b - a, 0.2)))
            ax.broken_barh(spans, (i - 0.35, 0.7), color="#2ca02c")
        for r in logs[n]:
            if r["k"] == "idle" and r["t"] <= end:
                ax.broken_barh([(r["t"] - t0 - r["s"], max(r["s"], 0.15))], (i - 0.35, 0.7),
                               color="#ff7f0e")
    for e in tl:
        for a in (ax, ax2):
            a.axvline(e["at_s"], color="grey", lw=0.8, ls="--")
        ax.text(e["at_s"], len(members) - 0.4, e["kind"], rotation=90, fontsize=7, va="top")
    ax.set_yticks(range(len(members)), members)
    ax.set_title("training (green), parked by an event (orange)")
    if accuracy:
        ax2.plot([a["t_s"] for a in accuracy], [a["acc"] for a in accuracy])
        ax3.plot([a["step"] for a in accuracy], [a["acc"] for a in accuracy])
    ax2.set_ylabel("accuracy")
    ax2.set_xlabel("time from time zero (s)")
    ax3.set_ylabel("accuracy")
    ax3.set_xlabel("step")
    for a in (ax, ax2):
        a.set_xlim(0, max(end - t0, 1) if end != float("inf") else None)
    fig.tight_layout()
    path.write_bytes(to_png(fig))
