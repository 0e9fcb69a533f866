"""The short summary printed at the end of a run (and saved as summary.txt)."""

from __future__ import annotations

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


def render(metrics: dict[str, Any], console: Console) -> str:
    with console.capture() as cap:
        for t in tables(metrics):
            console.print(t)
    text = cap.get()
    console.print(text, end="", markup=False, highlight=False)
    return text
