"""Analyse one capture or a whole run and write analysis/{analysis.json,*.csv,*.png,report.html}.

The work goes to a process pool sized by the total work: whole captures, byte ranges of
captures large enough to be split (testbed.analysis.parallel), and one-way delay pairs, the
largest first; timelines come from the run's own logs.  A capture that cannot be read at all
becomes an entry with an `error` sentence instead of stopping the analysis.
"""

from __future__ import annotations

import contextlib
import html
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress

from testbed.analysis import report, timeline, wlan
from testbed.analysis.delay import pairs_in_run
from testbed.analysis.names import Names, capture_name, pair_name
from testbed.analysis.parallel import (
    SPLIT_MIN,
    WARMUP,
    Part,
    capture_job,
    combine,
    delay_job,
    part_job,
    parts_for,
    plan,
)
from testbed.hil import report as hil_report
from testbed.workloads import Registry, ReportPart

CAPTURE_GLOBS = ("*.pcap", "*.pcapng", "*.cap")
FLOW_COLS = ["capture", "flow", "flow_name", "proto", "src", "src_name", "sport", "dst",
             "dst_name", "dport", "packets", "bytes",
             "first", "last", "duration_s", "mean_bps", "retransmissions", "rtt_n",
             "rtt_median_ms", "rtt_p95_ms", "rtt_max_ms", "echo_requests", "echo_replies",
             "echo_loss_pct"]
CONV_COLS = ["capture", "a", "a_name", "b", "b_name", "frames_a_to_b", "bytes_a_to_b",
             "frames_b_to_a", "bytes_b_to_a", "frames", "bytes", "first", "duration_s"]
DELAY_COLS = ["from", "to", "matched", "lost", "loss_pct", "median_ms", "p95_ms", "max_ms",
              "mean_ms", "min_ms"]
# Series and samples go to CSV files, never to analysis.json (which keeps summaries)
SERIES_KEYS = ("throughput", "rtt_series_ms")
RTT_COLS = ["capture", "flow", "flow_name", "t_s", "rtt_ms"]
THR_COLS = ["capture", "flow", "flow_name", "t_s", "bytes", "mbps"]
OWD_COLS = ["from", "to", "t_s", "delay_ms"]
ACK_COLS = ["capture", "t_s", "sysid", "command", "latency_ms"]


def die_with(parent: int) -> None:
    """A pool worker ends when the process that made it does: a runner SIGKILLed during its
    analysis would otherwise leave its workers waiting on the call queue forever (found by
    `make bench BENCH=resilience`).  PR_SET_PDEATHSIG, then a check that the parent did not
    die before it took effect."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


def analyze_pcap(path: str | Path, out: str | Path | None = None, bin_s: float = 1.0,
                 write: bool = True, workers: int | None = None, split_min: int = SPLIT_MIN,
                 warmup: int = WARMUP) -> dict[str, Any]:
    """Statistics and MAVLink of one capture; writes outputs when `write` (default next to it).

    A capture larger than `split_min` bytes is read by `workers` processes (default: CPUs).
    """
    caps, _ = analyze_captures([Path(path)], [], bin_s=bin_s, workers=workers,
                               split_min=split_min, warmup=warmup)
    res = caps[0]
    if write:
        out_dir = Path(out) if out else Path(path).with_name(Path(path).stem + ".analysis")
        doc = {"kind": "capture", "source": str(path), "captures": [res], "delay": [],
               "markers": [], "tasks": [], "t0": res.get("first"),
               "names": Names.near(path).to_dict()}
        write_outputs(doc, out_dir)
        doc["out"] = str(out_dir)
        return doc | {"capture": res}
    return res


def _capture_job(path: str, bin_s: float) -> dict[str, Any]:
    """One capture's statistics, split over the CPUs when large (the earlier API's name)."""
    return analyze_pcap(path, bin_s=bin_s, write=False)


def analyze_captures(pcaps: list[Path], pairs: list[tuple[Path, Path]], bin_s: float = 1.0,
                     workers: int | None = None, window_s: float = 5.0,
                     nat_robust: bool = False, split_min: int = SPLIT_MIN,
                     warmup: int = WARMUP, done: Callable[[], None] | None = None,
                     ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Capture results (in `pcaps` order) and delay results (in `pairs` order).

    Each worker's share is the total bytes to read over `workers`; a capture larger than
    both that share and `split_min` is read in ranges.  One job runs in this process; more
    go to a pool of forked processes: they start at once and, unlike spawned ones, do not
    re-import the caller's main module (a script without a __main__ guard keeps working).
    """
    workers = max(1, workers or os.cpu_count() or 1)
    size = {p: (p.stat().st_size if p.is_file() else 0) for p in pcaps}
    for a, b in pairs:
        for x in (a, b):
            size.setdefault(x, x.stat().st_size if x.is_file() else 0)
    share = (sum(size[p] for p in pcaps) + sum(size[a] + size[b] for a, b in pairs)) / workers
    jobs: list[tuple[int, Callable[..., Any], tuple, tuple]] = []  # (weight, fn, args, tag)
    ranges: dict[int, list[Part]] = {}
    for i, p in enumerate(pcaps):
        parts = plan(p, parts_for(size[p], share, workers, split_min), warmup)
        if parts is None:
            jobs.append((size[p], capture_job, (str(p), bin_s), ("cap", i)))
            continue
        ranges[i] = parts
        for j, part in enumerate(parts):
            weight = (part.end or size[p]) - part.warm
            jobs.append((weight, part_job, (part, bin_s), ("part", i, j)))
    for k, (a, b) in enumerate(pairs):
        jobs.append((size[a] + size[b], delay_job, (str(a), str(b), window_s, nat_robust),
                     ("delay", k)))
    jobs.sort(key=lambda j: -j[0])
    caps: list[dict[str, Any] | None] = [None] * len(pcaps)
    delays: list[dict[str, Any] | None] = [None] * len(pairs)
    t0 = time.perf_counter()

    def finish(tag: tuple, result: Any) -> None:
        kind, i = tag[0], tag[1]
        if kind == "part":
            if caps[i] is not None:  # a range failed and the capture was read whole
                return
            ranges[i][tag[2]] = result
            if any(part.cap is None for part in ranges[i]):
                return
            result = combine(ranges[i], bin_s, time.perf_counter() - t0)
        (delays if kind == "delay" else caps)[i] = result
        if done is not None:
            done()

    if len(jobs) <= 1 or workers == 1:
        for _, fn, args, tag in jobs:
            finish(tag, fn(*args))
    else:
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx,
                                 initializer=die_with, initargs=(os.getpid(),)) as pool:
            futs: dict[Future, tuple] = {pool.submit(fn, *args): tag for _, fn, args, tag in jobs}
            for fut in as_completed(futs):
                tag = futs[fut]
                try:
                    result = fut.result()
                except Exception:  # a range failed: read that capture whole
                    if tag[0] != "part":
                        raise
                    if caps[tag[1]] is None:
                        finish(("cap", tag[1]), capture_job(str(pcaps[tag[1]]), bin_s))
                    continue
                finish(tag, result)
    return [c for c in caps if c is not None], [d for d in delays if d is not None]


def find_captures(run_dir: Path) -> list[Path]:
    base = run_dir / "pcaps" if (run_dir / "pcaps").is_dir() else run_dir
    found: set[Path] = set()
    for g in CAPTURE_GLOBS:
        found.update(base.glob(g))
    return sorted(found)


def analyze_run(run_dir: str | Path, out: str | Path | None = None, bin_s: float = 1.0,
                workers: int | None = None, window_s: float = 5.0, nat_robust: bool = False,
                pairs: list[tuple[str, str]] | None = None, console: Console | None = None,
                write: bool = True, split_min: int = SPLIT_MIN,
                warmup: int = WARMUP) -> dict[str, Any]:
    """Every capture of a run, delay between capture points of each link, timelines."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run folder")
    console = console or Console(stderr=True)
    pcaps = find_captures(run_dir)
    pair_list = ([(Path(a), Path(b)) for a, b in pairs] if pairs else pairs_in_run(pcaps))
    with Progress(console=console, transient=True) as prog:
        task = prog.add_task(f"analysing {len(pcaps)} captures, {len(pair_list)} pairs",
                             total=len(pcaps) + len(pair_list))
        caps, delays = analyze_captures(pcaps, pair_list, bin_s=bin_s, workers=workers,
                                        window_s=window_s, nat_robust=nat_robust,
                                        split_min=split_min, warmup=warmup,
                                        done=lambda: prog.advance(task))
    caps.sort(key=lambda c: c["file"])
    delays.sort(key=lambda d: (d["a"], d["b"]))
    firsts = [c["first"] for c in caps if c.get("first")]
    t0 = timeline.run_t0(run_dir) or (min(firsts) if firsts else 0.0)
    parts = workload_parts(run_dir, t0, console)
    if (hw := hil_report.part(run_dir)) is not None:
        parts["hardware"] = hw
    doc = {"kind": "run", "source": str(run_dir), "t0": t0, "captures": caps,
           "delay": delays, "markers": timeline.markers(run_dir),
           "names": Names.of_run(run_dir).to_dict(),
           "workloads": {name: part.numbers for name, part in parts.items()}}
    radio = run_dir / "wlan" / "hwsim0.pcap"  # real 802.11 frames (engines.wifi: hwsim)
    wlan_doc = wlan.analyse_pcap(radio).to_dict() if radio.is_file() else None
    if wlan_doc is not None:
        doc["wlan"] = wlan.summary(wlan_doc)
    if write:
        out_dir = Path(out) if out else run_dir / "analysis"
        write_outputs(doc, out_dir, parts)
        if wlan_doc is not None:
            report.write_json(out_dir / "wlan.json", wlan_doc)
        doc["out"] = str(out_dir)
    return doc


def workload_parts(run_dir: Path, t0: float, console: Console) -> dict[str, ReportPart]:
    """Each registered workload's share of the report (its outputs in the run folder:
    sections, figures, numbers for `make compare`); one that fails is reported and left out."""
    parts: dict[str, ReportPart] = {}
    for w, report_fn in Registry.installed().calls("report"):
        try:
            part = report_fn(run_dir, t0)
        except Exception as exc:  # noqa: BLE001 - a workload's report must not sink the rest
            console.print(f"[yellow]{w.name} report of {run_dir} failed: "
                          f"{type(exc).__name__}: {exc}[/]")
            continue
        if part is not None:
            parts[w.name] = part
    return parts


def on_run_finished(run_dir: str | Path, console: Console | None = None) -> dict[str, Any] | None:
    """End-of-scenario hook: never raises, so a failed analysis cannot fail a finished run."""
    console = console or Console(stderr=True)
    try:
        doc = analyze_run(run_dir, console=console)
    except Exception as exc:  # noqa: BLE001 - the run itself succeeded; report and move on
        console.print(f"[yellow]analysis of {run_dir} failed: {type(exc).__name__}: {exc}[/]")
        return None
    console.print(f"analysis: {doc['out']}/report.html")
    return doc


# ---------------------------------------------------------------------------- outputs

def _cap_name(c: dict[str, Any]) -> str:
    return Path(c["file"]).stem


def flow_names(doc: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Per capture: the address label of each flow (the key its series have) -> its name
    ("ping-cloud: user1 → cloud1"), from the run's network.json and scenario flows."""
    names = Names.from_dict(doc.get("names"))
    return {_cap_name(c): {f["flow"]: names.flow_row(f) for f in c.get("flows", [])}
            for c in doc["captures"]}


def flow_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    names = Names.from_dict(doc.get("names"))
    rows = []
    for c in doc["captures"]:
        for f in c.get("flows", []):
            r = {k: v for k, v in f.items() if not isinstance(v, dict)}
            r["capture"] = _cap_name(c)
            r |= {"flow_name": names.flow_row(f), "src_name": names.node(f.get("src")),
                  "dst_name": names.node(f.get("dst"))}
            rtt = f.get("rtt") or (f.get("echo") or {}).get("rtt") or {}
            r |= {"rtt_n": rtt.get("n"), "rtt_median_ms": rtt.get("median_ms"),
                  "rtt_p95_ms": rtt.get("p95_ms"), "rtt_max_ms": rtt.get("max_ms")}
            if "echo" in f:
                r |= {"echo_requests": f["echo"]["requests"],
                      "echo_replies": f["echo"]["replies"],
                      "echo_loss_pct": f["echo"]["loss_pct"]}
            rows.append(r)
    return rows


def delay_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for d in doc["delay"]:
        for di in d.get("directions", []):
            rows.append({k: v for k, v in di.items() if k not in ("delay", "series_ms")}
                        | {k: v for k, v in di["delay"].items() if k != "n"})
    return rows


def distinct_first(items: list[Any], name: Callable[[Any], str]) -> list[Any]:
    """`items` (largest first) with each flow's largest capture point first and its other
    capture points after all flows: the plots show the top few series, which would otherwise
    be one big flow seen at eight capture points.  `name` gives "flow [capture point]"."""
    seen: set[str] = set()
    first, rest = [], []
    for it in items:
        flow = name(it).rsplit(" [", 1)[0]
        (rest if flow in seen else first).append(it)
        seen.add(flow)
    return first + rest


def write_outputs(doc: dict[str, Any], out_dir: Path,
                  parts: dict[str, ReportPart] | None = None) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = doc.get("t0") or 0.0
    names = Names.from_dict(doc.get("names"))
    named = flow_names(doc)

    def series_name(c: dict[str, Any], label: str) -> str:
        """A plotted series: the flow's name and where it was captured."""
        return f"{named[_cap_name(c)].get(label, label)} [{capture_name(_cap_name(c))}]"

    flows = flow_rows(doc)
    report.write_csv(out_dir / "flows.csv", flows, FLOW_COLS)
    convs = [r | {"capture": _cap_name(c), "a_name": names.node(r.get("a")),
                  "b_name": names.node(r.get("b"))}
             for c in doc["captures"] for r in c.get("conversations", [])]
    report.write_csv(out_dir / "conversations.csv", convs, CONV_COLS)
    thr_rows = []
    series: list[tuple[int, str, dict[str, int]]] = []
    for c in doc["captures"]:
        tp = c.get("throughput", {})
        bin_s = tp.get("bin_s", 1.0)
        for label, bins in tp.get("bytes_per_bin", {}).items():
            series.append((sum(bins.values()), series_name(c, label), bins))
            name = named[_cap_name(c)].get(label, label)
            for b, v in bins.items():
                thr_rows.append({"capture": _cap_name(c), "flow": label, "flow_name": name,
                                 "t_s": round(int(b) * bin_s - t0, 3), "bytes": v,
                                 "mbps": round(v * 8 / bin_s / 1e6, 6)})
    report.write_csv(out_dir / "throughput.csv", thr_rows, THR_COLS)
    drows = delay_rows(doc)
    report.write_csv(out_dir / "delay.csv", drows, DELAY_COLS)
    report.write_csv(out_dir / "rtt.csv", (
        {"capture": _cap_name(c), "flow": label,
         "flow_name": named[_cap_name(c)].get(label, label), "t_s": round(t - t0, 6),
         "rtt_ms": ms}
        for c in doc["captures"] for label, pts in c.get("rtt_series_ms", {}).items()
        for t, ms in pts), RTT_COLS)
    report.write_csv(out_dir / "one_way_delay.csv", (
        {"from": di["from"], "to": di["to"], "t_s": round(t - t0, 6), "delay_ms": ms}
        for d in doc["delay"] for di in d.get("directions", [])
        for t, ms in di.get("series_ms", [])), OWD_COLS)
    report.write_csv(out_dir / "command_ack.csv", (
        {"capture": _cap_name(c)} | a | {"t_s": round(a["t"] - t0, 6)}
        for c in doc["captures"]
        for a in (c.get("mavlink") or {}).get("command_ack_samples", [])), ACK_COLS)
    bin_s = next((c["throughput"]["bin_s"] for c in doc["captures"] if "throughput" in c), 1.0)
    series.sort(key=lambda s: -s[0])
    series = distinct_first(series, lambda s: s[1])
    # RTT is end to end where the sender captures (at the receiver, an echo's RTT is ~0):
    # each flow's series from its source node first
    src_of = {(_cap_name(c), f["flow"]): names.node(f.get("src")) for c in doc["captures"]
              for f in c.get("flows", [])}
    rtt = [(series_name(c, lbl), pts) for _, _, lbl, pts, c in sorted(
        ((src_of.get((_cap_name(c), lbl)) != _cap_name(c).partition("--")[2], -len(pts), lbl,
          pts, c) for c in doc["captures"] for lbl, pts in c.get("rtt_series_ms", {}).items()),
        key=lambda s: s[:2])]
    rtt = distinct_first(rtt, lambda s: s[0])
    owd = [(pair_name(di["from"], di["to"]), di["series_ms"]) for d in doc["delay"]
           for di in d.get("directions", []) if di.get("series_ms")]
    owd.sort(key=lambda s: -len(s[1]))
    from testbed.analysis import plots  # deferred: matplotlib costs 0.4 s and 60 MB

    figs = {
        "throughput.png": plots.throughput([(lbl, b) for _, lbl, b in series], bin_s, t0),
        "rtt.png": plots.timeseries(rtt, t0, "RTT (ms)", "RTT over time (TCP data->ack, ping)",
                                    doc.get("markers")),
        "one_way_delay.png": plots.timeseries(owd, t0, "one-way delay (ms)",
                                              "One-way delay between capture points",
                                              doc.get("markers")),
    }
    for part in (parts or {}).values():
        figs |= part.files
    for name, png in figs.items():
        if png:
            (out_dir / name).write_bytes(png)
    report.write_json(out_dir / "analysis.json", json_summary(doc))
    (out_dir / "report.html").write_text(render_html(doc, flows, drows, figs, parts or {}))


def json_summary(doc: dict[str, Any]) -> dict[str, Any]:
    """The document without its series (throughput bins, RTT and one-way delay samples, command
    latencies): those live in the CSV files, and in the JSON they made it tens of MB."""
    out = {k: v for k, v in doc.items() if k not in ("out", "captures", "delay")}
    out["captures"] = []
    for c in doc["captures"]:
        s = {k: v for k, v in c.items() if k not in SERIES_KEYS}
        s["bin_s"] = c.get("throughput", {}).get("bin_s")
        if c.get("mavlink"):
            s["mavlink"] = {k: v for k, v in c["mavlink"].items() if k != "command_ack_samples"}
        out["captures"].append(s)
    out["delay"] = [d | {"directions": [{k: v for k, v in di.items() if k != "series_ms"}
                                        for di in d.get("directions", [])]}
                    for d in doc["delay"]]
    return out


def render_html(doc: dict[str, Any], flows: list[dict[str, Any]],
                drows: list[dict[str, Any]], figs: dict[str, bytes | None],
                parts: dict[str, ReportPart]) -> str:
    caps = doc["captures"]
    cap_rows = [{"capture": _cap_name(c), "packets": c.get("packets"), "bytes": c.get("bytes"),
                 "duration_s": c.get("duration_s"), "flows": len(c.get("flows", [])),
                 "packets/s analysed": c.get("packets_per_s"), "error": c.get("error")}
                for c in caps]
    errors = [c["error"] for c in caps if c.get("error")] + [
        e for d in doc["delay"] for e in d.get("errors", [])]
    sections = [("Captures", report.table_html(
        cap_rows, ["capture", "packets", "bytes", "duration_s", "flows", "packets/s analysed",
                   "error"], limit=500))]
    if errors:
        sections.append(("Problems", "<ul>" + "".join(
            f"<li class='err'>{html.escape(e)}</li>" for e in errors) + "</ul>"))
    # names in the cells, the addresses on hover (and in flows.csv)
    shown = [r | {"flow": r["flow_name"], "src": r["src_name"], "dst": r["dst_name"],
                  "flow_addr": r["flow"], "src_addr": r["src"], "dst_addr": r["dst"]}
             for r in sorted(flows, key=lambda r: -(r.get("bytes") or 0))]
    hidden = ("first", "last", "flow_name", "src_name", "dst_name")
    sections.append(("Flows (largest first; hover a name for its address)", report.table_html(
        shown, [c for c in FLOW_COLS if c not in hidden],
        tips={"flow": "flow_addr", "src": "src_addr", "dst": "dst_addr"})))
    sections.append(("Throughput", report.img_html(figs.get("throughput.png"), "throughput")))
    sections.append(("RTT", report.img_html(figs.get("rtt.png"), "rtt")
                     + ("<p>Vertical lines: link changes and handovers.</p>"
                        if doc.get("markers") else "")))
    if drows:
        sections.append(("One-way delay between capture points", report.table_html(
            drows, DELAY_COLS) + report.img_html(figs.get("one_way_delay.png"), "delay")))
    mav_rows = []
    for c in caps:
        m = c.get("mavlink") or {}
        for sysid, v in m.get("vehicles", {}).items():
            for mtype, s in v["messages"].items():
                gap = v["gaps"].get(mtype, {}).get("max_gap_s")
                mav_rows.append({"capture": _cap_name(c), "sysid": sysid, "message": mtype,
                                 "count": s["count"], "rate_hz": s["rate_hz"],
                                 "max_gap_s": gap})
    if mav_rows:
        acks = [{"capture": _cap_name(c)} | (c["mavlink"]["command_ack"])
                | {"unanswered": c["mavlink"]["commands_unanswered"]}
                for c in caps if (c.get("mavlink") or {}).get("command_ack", {}).get("n")]
        sections.append(("MAVLink", report.table_html(
            mav_rows, ["capture", "sysid", "message", "count", "rate_hz", "max_gap_s"], 200)
            + "<h3>COMMAND_LONG to COMMAND_ACK</h3>" + report.table_html(
                acks, ["capture", "n", "median_ms", "p95_ms", "max_ms", "unanswered"])))
    for part in parts.values():
        sections += part.sections
    return report.page(f"Packet analysis: {doc['source']}", sections)
