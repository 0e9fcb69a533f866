"""Packet capture on every emulated link endpoint: tcpdump inside the node's namespace,
packet-buffered (-U) so a killed run still leaves readable pcaps."""

from __future__ import annotations

from pathlib import Path

from testbed.lifecycle.supervisor import Managed, Supervisor
from testbed.net.network import Network


class Captures:
    def __init__(self, net: Network, sup: Supervisor, out_dir: Path) -> None:
        self.net, self.sup, self.dir = net, sup, out_dir
        self.procs: list[Managed] = []

    def start(self) -> list[Path]:
        cfg = self.net.sc.capture
        if not cfg.enabled:
            return []
        self.dir.mkdir(parents=True, exist_ok=True)
        wanted = None if cfg.links == "all" else set(cfg.links)
        files = []
        for ep in self.net.plan.endpoints():
            if wanted is not None and ep.link not in wanted:
                continue
            if ep.node not in self.net.plan.namespaces:
                continue  # another host's node (multi-host run): captured there
            pcap = self.dir / f"{ep.link}--{ep.node}.pcap"
            self.procs.append(self.sup.start(
                f"tcpdump-{ep.link}-{ep.node}",
                ["tcpdump", "-i", ep.ifname, "-n", "-U", "-Z", "root", "-s", str(cfg.snaplen),
                 "-w", str(pcap)],
                netns=self.net.plan.namespaces[ep.node], watch=True,
                log=self.sup.log_dir / ep.node / f"tcpdump-{ep.ifname}.log"))
            files.append(pcap)
        return files

    def stop(self) -> None:
        self.sup.stop_many(self.procs)
