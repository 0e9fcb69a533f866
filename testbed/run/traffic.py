"""Traffic flows of a scenario: ping, and TCP/UDP through iperf3, each in its node's namespace
with its raw output kept in the run folder (flows/<name>.*) and parsed into metrics."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Any

from testbed.lifecycle.supervisor import Managed, Supervisor
from testbed.net.network import Network
from testbed.scenario.model import Flow, FlowKind

BASE_PORT = 5201


class Flows:
    def __init__(self, net: Network, sup: Supervisor, out_dir: Path) -> None:
        self.net, self.sup, self.dir = net, sup, out_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.running: dict[str, Managed] = {}
        self.servers: dict[str, Managed] = {}
        self.ports = {f.name: BASE_PORT + i for i, f in enumerate(net.sc.traffic)}

    def prepare(self) -> None:
        """iperf3 servers start before time zero so that a flow's first second is real."""
        for flow in self.net.sc.traffic:
            if flow.kind is FlowKind.PING or flow.dst not in self.net.plan.namespaces:
                continue  # (a destination on another host: its server starts there)
            self.servers[flow.name] = self.sup.start(
                f"iperf3-server-{flow.name}",
                # per-second lines flushed as they come: the live view's goodput
                ["iperf3", "-s", "-p", str(self.ports[flow.name]), "-i", "1", "--forceflush"],
                netns=self.net.plan.namespaces[flow.dst],
                log=self.sup.log_dir / flow.dst / f"iperf3-server-{flow.name}.log",
                cgroup=self.net.cgroups.get(flow.dst))  # a node's traffic uses its own CPU

    def argv(self, flow: Flow, duration: float) -> list[str]:
        dst = self.net.plan.primary_ip[flow.dst]
        if flow.kind is FlowKind.PING:
            return ["ping", "-D", "-n", "-i", f"{flow.interval_s:g}", "-w", f"{duration:.0f}",
                    dst]
        argv = ["iperf3", "-c", dst, "-p", str(self.ports[flow.name]), "-J",
                "-t", f"{max(1, round(duration))}"]
        if flow.rate_mbps:
            argv += ["-b", f"{flow.rate_mbps:g}M"]
        if flow.kind is FlowKind.UDP:
            argv += ["-u", "-l", str(flow.packet_bytes)]
        return argv

    def start(self, name: str, remaining: float | None = None) -> None:
        flow = self.net.sc.flow(name)
        if flow.src not in self.net.plan.namespaces:
            return  # a source on another host (multi-host run): started there
        duration = min(flow.duration_s, remaining) if remaining else flow.duration_s
        ext = "ping.txt" if flow.kind is FlowKind.PING else "iperf3.json"
        self.running[name] = self.sup.start(
            f"flow-{name}", self.argv(flow, duration), netns=self.net.plan.namespaces[flow.src],
            log=self.sup.log_dir / flow.src / f"flow-{name}.log",
            stdout=self.dir / f"{name}.{ext}", cgroup=self.net.cgroups.get(flow.src))

    def stop(self, name: str) -> None:
        if name in self.running:
            self.sup.stop(self.running[name])

    def results(self) -> dict[str, Any]:
        out = {}
        for flow in self.net.sc.traffic:
            path = self.dir / (f"{flow.name}.ping.txt" if flow.kind is FlowKind.PING
                               else f"{flow.name}.iperf3.json")
            summary: dict[str, Any] = {"kind": flow.kind.value, "src": flow.src,
                                       "dst": flow.dst}
            if not path.exists():
                summary["status"] = "not started"
            elif flow.kind is FlowKind.PING:
                summary.update(parse_ping(path.read_text()))
            else:
                summary.update(parse_iperf3(path.read_text(), flow))
            out[flow.name] = summary
        return out


_PING_REPLY = re.compile(r"^\[(\d+\.\d+)\].*icmp_seq=(\d+).*time=([\d.]+) ms")
_PING_TX = re.compile(r"(\d+) packets transmitted, (\d+) received")


def parse_ping(text: str) -> dict[str, Any]:
    rtts = [float(m.group(3)) for line in text.splitlines() if (m := _PING_REPLY.match(line))]
    tx = _PING_TX.search(text)
    sent = int(tx.group(1)) if tx else None
    recv = int(tx.group(2)) if tx else len(rtts)
    res: dict[str, Any] = {"status": "ok" if rtts else "no replies", "sent": sent,
                           "received": recv}
    if sent:
        res["loss_pct"] = round(100.0 * (sent - recv) / sent, 2)
    if rtts:
        rtts.sort()
        res.update(rtt_ms_median=round(statistics.median(rtts), 3),
                   rtt_ms_p95=round(rtts[min(len(rtts) - 1, int(0.95 * len(rtts)))], 3),
                   rtt_ms_min=round(rtts[0], 3), rtt_ms_max=round(rtts[-1], 3))
    return res


def parse_iperf3(text: str, flow: Flow) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return {"status": "incomplete (run interrupted or iperf3 failed)"}
    if "error" in data and not data.get("end"):
        return {"status": f"error: {data['error']}"}
    end = data.get("end", {})
    res: dict[str, Any] = {"status": "ok", "configured_mbps": flow.rate_mbps}
    if flow.kind is FlowKind.TCP:
        recv = end.get("sum_received", {})
        sent = end.get("sum_sent", {})
        res.update(goodput_mbps=round(recv.get("bits_per_second", 0) / 1e6, 3),
                   retransmits=sent.get("retransmits"))
    else:
        s = end.get("sum_received") or end.get("sum", {})
        res.update(goodput_mbps=round(s.get("bits_per_second", 0) / 1e6, 3),
                   loss_pct=round(s.get("lost_percent", 0.0), 3),
                   jitter_ms=round(s.get("jitter_ms", 0.0), 3))
    return res
