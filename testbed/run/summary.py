"""The short summary printed at the end of a run (and saved as summary.txt).

Tables of what the core measured (links, flows, timings, boards), then one headline per
workload that ran: the numbers the run was for (edge-llm's ms/token per method, offloading's
delay and deadline hits, CPN's acceptance and reroute outage, ...).  Workloads provide their
headline through the registry's ``headline`` hook, a function of the run folder that reads
the files the workload wrote there; the core calls every registered one and never imports a
workload (a workload with nothing in this run folder returns no lines).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2f}{unit}"
    return f"{v}{unit}"


def tables(metrics: dict[str, Any]) -> list[Table]:
    links = Table(title="Links: configured vs measured (link probes)")
    for col in ("link", "medium", "delay ms", "rate Mbit/s", "RTT cfg ms", "RTT meas ms",
                "probe loss %", "avg tx Mbit/s"):
        links.add_column(col, justify="right" if col not in ("link", "medium") else "left")
    for name, m in metrics.get("links", {}).items():
        cfg, meas = m["configured"], m["measured"]
        peers = [v for k, v in meas.items() if k != "throughput"]
        rtt = [p["rtt_ms"].get("median") for p in peers if p.get("rtt_ms")]
        loss = [p.get("loss_pct") for p in peers if p.get("loss_pct") is not None]
        tput = meas.get("throughput", {})
        tx = max((v["tx_mbps_avg"] for v in tput.values()), default=None)
        links.add_row(name, cfg["medium"], _fmt(cfg["delay_ms"]), _fmt(cfg["rate_mbps"]),
                      _fmt(cfg["rtt_ms"]), _fmt(max(rtt) if rtt else None),
                      _fmt(max(loss) if loss else None), _fmt(tx))
    flows = Table(title="Traffic flows")
    for col in ("flow", "kind", "path", "result"):
        flows.add_column(col)
    for name, f in metrics.get("flows", {}).items():
        if f["kind"] == "ping" and "rtt_ms_median" in f:
            res = (f"RTT median {f['rtt_ms_median']:.2f} ms, p95 {f['rtt_ms_p95']:.2f} ms, "
                   f"loss {f.get('loss_pct', 0):.1f} %")
        elif "goodput_mbps" in f:
            res = f"goodput {f['goodput_mbps']:.2f} Mbit/s"
            if f.get("configured_mbps"):
                res += f" of {f['configured_mbps']:g}"
            if f["kind"] == "udp":
                res += f", loss {f['loss_pct']:.2f} %, jitter {f['jitter_ms']:.2f} ms"
            elif f.get("retransmits") is not None:
                res += f", {f['retransmits']} retransmits"
        else:
            res = f.get("status", "-")
        flows.add_row(name, f["kind"], f"{f['src']} -> {f['dst']}", res)
    timing = Table(title="Run")
    timing.add_column("what")
    timing.add_column("value", justify="right")
    t = metrics.get("timings_s", {})
    for key in ("command_to_time_zero_s", "ns3_tap_attach_s", "health_s", "teardown_s"):
        if key in t:
            timing.add_row(key, f"{t[key]:.2f}")
    rt = metrics.get("ns3_realtime", {})
    if rt:
        timing.add_row("ns-3 max real-time lag ms", f"{rt['max_lag_ms']:.2f}")
    timing.add_row("status", str(metrics.get("status")))
    out = [links, flows, timing]
    if metrics.get("hardware"):
        from testbed.hil.report import COLS

        hw = Table(title="Hardware in the loop: these nodes were boards")
        for col in COLS:
            hw.add_column(col.replace("_", " "))
        for r in metrics["hardware"]:
            hw.add_row(*(_fmt(r.get(c)) for c in COLS))
        out.append(hw)
    return out


def core_headline(metrics: dict[str, Any]) -> list[str]:
    """The core's own headline, for runs that move nodes (leo-handover, wifi-roaming, the
    SUMO scenarios): handovers, outage, measured vs predicted RTT, route installs."""
    m = metrics.get("mobility") or {}
    if not m or not (m.get("handovers") or m.get("median_abs_rtt_error_ms") is not None):
        return []
    parts = [f"{m.get('handovers') or 0} handovers"]
    if m.get("max_outage_s") is not None:
        parts.append(f"outage max {_fmt(m['max_outage_s'], ' s')} "
                     f"(median {_fmt(m.get('median_outage_s'), ' s')})")
    if m.get("median_abs_rtt_error_ms") is not None:
        parts.append(f"RTT vs prediction: median error {_fmt(m['median_abs_rtt_error_ms'])} ms")
    if m.get("route_install_ms_median") is not None:
        parts.append(f"route install median {_fmt(m['route_install_ms_median'])} ms")
    return ["mobility: " + ", ".join(parts)]


Hook = tuple[str, Callable[[Path], list[str]]]


def _registered() -> list[Hook]:
    from testbed.workloads import Registry

    return [(w.name, fn) for w, fn in Registry.installed().calls("headline")]


def headlines(run_dir: Path, console: Console | None = None,
              hooks: Iterable[Hook] | None = None) -> list[str]:
    """Every workload's headline for this run, in registry order.  A hook that raises is
    reported in yellow and skipped: a headline must never fail a finished run.  `hooks`
    (name, function) replaces the installed workloads' (tests)."""
    out: list[str] = []
    for name, fn in _registered() if hooks is None else hooks:
        try:
            out += [str(line) for line in fn(run_dir) or []]
        except Exception as exc:  # noqa: BLE001 - a headline must never fail a finished run
            if console is not None:
                console.print(f"[yellow]{name} headline failed: {type(exc).__name__}: {exc}[/]")
    return out


def render(metrics: dict[str, Any], console: Console, run_dir: Path | None = None,
           hooks: Iterable[Hook] | None = None) -> str:
    """Print the summary and return its text (for summary.txt): the tables, then the core's
    and, given the run folder, every workload's headline as the last lines, so the result a
    run was made for is what the console ends with."""
    with console.capture() as cap:
        for t in tables(metrics):
            console.print(t)
    text = cap.get()
    console.print(text, end="", markup=False, highlight=False)
    lines = core_headline(metrics)
    if run_dir is not None:
        lines += headlines(run_dir, console, hooks)
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    return text + "".join(f"{line}\n" for line in lines)
