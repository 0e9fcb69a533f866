"""Link engines side by side: tc netem vs ns-3 point-to-point, mac80211_hwsim vs ns-3 Wi-Fi,
the Open vSwitch kernel datapath vs the userspace one.

The kernel engines need sch_netem, mac80211_hwsim and the openvswitch module; where this
host's kernel lacks them (the build host) that half runs inside Debian's stock kernel under
qemu (testbed.vm), with software emulation: every figure measured there is relative (CPU-bound
work is ~11x slower, and each ping crosses an emulated CPU), which is why each comparison that
can be made inside the VM is made there, in one run: OVS kernel vs userspace.  ns-3 stays on
the host (in the VM it cannot keep real time), so netem-vs-ns-3 and hwsim-vs-ns-3 compare a
VM figure with a host figure: read their ratios as upper bounds of the kernel engines' error.

Per point-to-point link (one-way delay 5/25/50 ms x rate 10/50 Mbit/s): median RTT of 20
pings vs the configured 2 x delay, TCP goodput (iperf3, 6 s, first 1 s omitted) vs the rate,
and the CPU the whole machine spent per second of that transfer (/proc/stat).  Wi-Fi: UDP
throughput at 20..180 m (802.11a, 24 Mbit/s mode), the station's association time and its roam
time between two access points (hwsim only: the ns-3 engine has no infrastructure mode).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from testbed.engines.base import Change
from testbed.run.harness import Emulation, emulated
from testbed.scenario import parse
from testbed.scenario.model import Medium

P2P = [(d, r) for d in (5, 25, 50) for r in (10, 50)]
DISTANCES_M = [20, 60, 100, 140, 180, 300]
ROAMS = 4
TCP_S = 6


def cpu_busy_s() -> float:
    """Seconds of CPU the whole machine (all cores, kernel included) has been busy."""
    fields = [float(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / 100.0  # USER_HZ


def ping_median(emu: Emulation, src: str, dst_ip: str, count: int = 20) -> tuple[float, int]:
    res = emu.run(src, ["ping", "-n", "-c", str(count), "-i", "0.2", "-W", "2", dst_ip],
                  timeout=120)
    rtts = [float(x.split("time=")[1].split()[0]) for x in res.stdout.splitlines()
            if "time=" in x]
    return (statistics.median(rtts) if rtts else float("nan")), len(rtts)


def iperf(emu: Emulation, src: str, dst: str, dst_ip: str, *, udp_mbps: float = 0.0,
          seconds: int = TCP_S) -> tuple[float, float]:
    """(goodput Mbit/s, machine CPU seconds per second of transfer)."""
    server = emu.popen(dst, ["iperf3", "-s", "-1", "-p", "5302"])
    try:
        time.sleep(1.0)
        argv = ["iperf3", "-c", dst_ip, "-p", "5302", "-t", str(seconds), "-O", "1", "-J"]
        if udp_mbps:
            argv += ["-u", "-b", f"{udp_mbps}M"]
        c0, t0 = cpu_busy_s(), time.monotonic()
        res = emu.run(src, argv, timeout=seconds * 10 + 60)
        cpu = (cpu_busy_s() - c0) / (time.monotonic() - t0)
    finally:
        server.kill()
        server.wait()
    data = json.loads(res.stdout)
    if "error" in data:
        return 0.0, cpu
    end = data["end"]
    bps = end["sum"]["bits_per_second"] * (1 - end["sum"].get("lost_percent", 0) / 100) \
        if udp_mbps else end["sum_received"]["bits_per_second"]
    return bps / 1e6, cpu


def p2p_scenario(engine: str) -> dict[str, Any]:
    nodes: dict[str, Any] = {"gs": {"kind": "ground_station"}}
    links = []
    for i, (d, r) in enumerate(P2P):
        nodes[f"b{i}"] = {"kind": "cloud"}
        links.append({"name": f"l{i}", "kind": "satellite", "endpoints": ["gs", f"b{i}"],
                      "delay_ms": d, "rate_mbps": r})
    return {"name": f"bench-p2p-{engine}", "duration_s": 3600, "nodes": nodes, "links": links,
            "engines": {"p2p": engine, "delay_compensation": "off"},
            "capture": {"enabled": False}}


def p2p(engine: str, console: Console) -> list[dict[str, Any]]:
    out = []
    with emulated(parse(p2p_scenario(engine), f"bench-p2p-{engine}")) as emu:
        for i, (d, r) in enumerate(P2P):
            rtt, n = ping_median(emu, "gs", emu.ip(f"b{i}", f"l{i}"))
            mbps, cpu = iperf(emu, "gs", f"b{i}", emu.ip(f"b{i}", f"l{i}"))
            row = {"engine": engine, "one_way_delay_ms": d, "rate_mbps": r,
                   "rtt_median_ms": round(rtt, 3), "pings": n,
                   "rtt_error_ms": round(rtt - 2 * d, 3),
                   "rtt_ratio": round(rtt / (2 * d), 4),
                   "tcp_goodput_mbps": round(mbps, 3), "goodput_ratio": round(mbps / r, 4),
                   "cpu_per_s": round(cpu, 3)}
            console.print(row)
            out.append(row)
    return out


def wifi_scenario(engine: str, mode: str = "adhoc") -> dict[str, Any]:
    wifi: dict[str, Any] = {"standard": "802.11a", "data_mode": "OfdmRate24Mbps"}
    nodes: dict[str, Any] = {"uav": {"kind": "uav", "position": [0, 0, 50]}}
    ends = ["uav"]
    if mode == "ap":
        nodes["uav2"] = {"kind": "uav", "position": [300, 0, 50]}
        ends.append("uav2")
        wifi.update(mode="ap", aps=["uav", "uav2"])
        nodes["u0"] = {"kind": "ground_user", "position": [10, 0, 1.5]}
        ends.append("u0")
    else:
        for i, dist in enumerate(DISTANCES_M):
            nodes[f"u{i}"] = {"kind": "ground_user", "position": [dist, 0, 50]}
            ends.append(f"u{i}")
    return {"name": f"bench-wifi-{engine}-{mode}", "duration_s": 3600, "nodes": nodes,
            "links": [{"name": "cell", "kind": "air-to-ground", "endpoints": ends,
                       "wifi": wifi}],
            "engines": {"wifi": engine}, "capture": {"enabled": False}}


def wifi(engine: str, console: Console) -> list[dict[str, Any]]:
    out = []
    with emulated(parse(wifi_scenario(engine), f"bench-wifi-{engine}")) as emu:
        apart = emu.net.apart.get("cell", frozenset())
        for i, dist in enumerate(DISTANCES_M):
            if frozenset(("uav", f"u{i}")) in apart:  # hwsim: out of the model's range
                row = {"engine": engine, "distance_m": dist, "udp_goodput_mbps": 0.0,
                       "cpu_per_s": None, "out_of_range": True}
                console.print(row)
                out.append(row)
                continue
            mbps, cpu = iperf(emu, "uav", f"u{i}", emu.ip(f"u{i}", "cell"), udp_mbps=30.0,
                              seconds=5)
            row = {"engine": engine, "distance_m": dist, "udp_goodput_mbps": round(mbps, 3),
                   "cpu_per_s": round(cpu, 3)}
            console.print(row)
            out.append(row)
    return out


def roaming(console: Console) -> dict[str, Any]:
    with emulated(parse(wifi_scenario("hwsim", "ap"), "bench-wifi-hwsim-ap")) as emu:
        hw = emu.net.engines[Medium.WIFI]
        near, far = (-10.0, 0.0, 50.0), (300.0, 0.0, 50.0)
        for k in range(ROAMS):
            a, b = ("uav", "uav2") if k % 2 == 0 else ("uav2", "uav")
            emu.net.apply([Change("position", node=a, xyz=far),
                           Change("position", node=b, xyz=near)])
        stats = hw.stats()
    roam_s = [r["seconds"] for r in stats["roams"]]
    out = {"associations_s": [a["seconds"] for a in stats["associations"]],
           "roams": len(roam_s), "roam_s": roam_s,
           "roam_median_s": round(statistics.median(roam_s), 3) if roam_s else None}
    console.print(out)
    return out


def switch_scenario(datapath: str) -> dict[str, Any]:
    return {"name": f"bench-ovs-{datapath}", "duration_s": 3600,
            "nodes": {"a": {"kind": "edge_server"}, "b": {"kind": "cloud"},
                      "sw": {"kind": "switch"}},
            "links": [{"name": "la", "kind": "wired", "endpoints": ["a", "sw"]},
                      {"name": "lb", "kind": "wired", "endpoints": ["b", "sw"]}],
            "engines": {"switch": datapath}, "capture": {"enabled": False}}


def switching(console: Console) -> list[dict[str, Any]]:
    out = []
    for datapath in ("kernel", "userspace"):
        with emulated(parse(switch_scenario(datapath), f"bench-ovs-{datapath}")) as emu:
            rtt, _ = ping_median(emu, "a", emu.ip("b"))
            mbps, cpu = iperf(emu, "a", "b", emu.ip("b"))
        row = {"datapath": datapath, "rtt_median_ms": round(rtt, 3),
               "tcp_goodput_mbps": round(mbps, 1), "cpu_per_s": round(cpu, 3)}
        console.print(row)
        out.append(row)
    return out


def inside(out: Path) -> None:
    """The kernel half, run in a kernel that has the modules (the VM, or the host)."""
    console = Console()
    result = {"netem": p2p("netem", console), "hwsim": wifi("hwsim", console),
              "roaming": roaming(console), "ovs": switching(console)}
    out.write_text(json.dumps(result, indent=1))


def run(console: Console) -> dict[str, Any]:
    from testbed.bench import BENCH_DIR
    from testbed.engines.features import kernel_lacks
    from testbed.vm import qemu

    out: dict[str, Any] = {"ns3_host": {"p2p": p2p("ns3", console),
                                        "wifi": wifi("ns3", console)}}
    part = BENCH_DIR / "engines-kernel.json"
    part.unlink(missing_ok=True)
    lacking = kernel_lacks()
    if lacking:
        console.print(f"this kernel lacks {', '.join(lacking)}: the kernel engines run in the "
                      "stock-kernel VM (software emulation: relative figures)")
        res = qemu.run(f".venv/bin/python -m testbed.bench.engines --inside {part}",
                       rw=[BENCH_DIR], timeout_s=1800, echo=True)
        out["kernel_where"] = f"qemu TCG VM, Debian kernel {res.kernel}, 1 vCPU"
        if not res.ok:
            raise RuntimeError(f"the VM half failed (exit {res.rc})")
    else:
        inside(part)
        out["kernel_where"] = "this host's kernel"
    out.update(json.loads(part.read_text()))
    out["ratios"] = ratios(out)
    print_tables(out, console)
    return out


def ratios(out: dict[str, Any]) -> dict[str, Any]:
    """netem / ns-3 per p2p setting, hwsim / ns-3 per distance, OVS kernel / userspace."""
    ns3 = {(r["one_way_delay_ms"], r["rate_mbps"]): r for r in out["ns3_host"]["p2p"]}
    p2p_rows = []
    for r in out.get("netem", []):
        n = ns3[(r["one_way_delay_ms"], r["rate_mbps"])]
        p2p_rows.append({"one_way_delay_ms": r["one_way_delay_ms"], "rate_mbps": r["rate_mbps"],
                         "rtt_netem_over_ns3": round(r["rtt_median_ms"] / n["rtt_median_ms"], 4),
                         "goodput_netem_over_ns3": round(
                             r["tcp_goodput_mbps"] / max(n["tcp_goodput_mbps"], 1e-6), 4)})
    ns3w = {r["distance_m"]: r for r in out["ns3_host"]["wifi"]}
    wifi_rows = [{"distance_m": r["distance_m"], "hwsim_over_ns3": round(
        r["udp_goodput_mbps"] / max(ns3w[r["distance_m"]]["udp_goodput_mbps"], 1e-6), 4)}
        for r in out.get("hwsim", [])]
    ovs = {r["datapath"]: r for r in out.get("ovs", [])}
    ovs_ratio = round(ovs["kernel"]["tcp_goodput_mbps"] / max(
        ovs["userspace"]["tcp_goodput_mbps"], 1e-6), 3) if len(ovs) == 2 else None
    return {"p2p": p2p_rows, "wifi": wifi_rows, "ovs_kernel_over_userspace": ovs_ratio}


def print_tables(out: dict[str, Any], console: Console) -> None:
    t = Table(title=f"p2p: ns-3 (host) vs netem ({out.get('kernel_where')})")
    for c in ("delay/rate", "RTT ns-3", "RTT netem", "goodput ns-3", "goodput netem",
              "CPU/s ns-3", "CPU/s netem"):
        t.add_column(c, justify="right")
    netem = {(r["one_way_delay_ms"], r["rate_mbps"]): r for r in out.get("netem", [])}
    for n in out["ns3_host"]["p2p"]:
        key = (n["one_way_delay_ms"], n["rate_mbps"])
        m = netem.get(key, {})
        t.add_row(f"{key[0]} ms / {key[1]} Mbit/s", f"{n['rtt_median_ms']:.2f}",
                  f"{m.get('rtt_median_ms', float('nan')):.2f}",
                  f"{n['tcp_goodput_mbps']:.2f}", f"{m.get('tcp_goodput_mbps', float('nan')):.2f}",
                  f"{n['cpu_per_s']:.2f}", f"{m.get('cpu_per_s', float('nan')):.2f}")
    console.print(t)
    t = Table(title="Wi-Fi UDP goodput (Mbit/s), 802.11a 24 Mbit/s mode")
    for c in ("distance", "ns-3 (host)", "hwsim"):
        t.add_column(c, justify="right")
    hw = {r["distance_m"]: r for r in out.get("hwsim", [])}
    for n in out["ns3_host"]["wifi"]:
        h = hw.get(n["distance_m"], {})
        t.add_row(f"{n['distance_m']} m", f"{n['udp_goodput_mbps']:.2f}",
                  f"{h.get('udp_goodput_mbps', float('nan')):.2f}")
    console.print(t)
    console.print({"roaming": out.get("roaming"), "ovs": out.get("ovs")})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="the kernel half of the engines benchmark")
    p.add_argument("--inside", type=Path, required=True)
    args = p.parse_args(argv)
    inside(args.inside)
    return 0


if __name__ == "__main__":
    sys.exit(main())
