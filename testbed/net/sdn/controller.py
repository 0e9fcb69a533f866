"""The SDN controller service: os-ken with an OpenFlow 1.3 app, on the loopback of the run's
switch namespace (beside ovs-vswitchd).

The app is the scenario's `services.sdn.app`, looked up in the registry: the core's
l2-proactive (testbed/net/sdn/l2_proactive.py) or one a workload registers.  It gets the switch
topology from the plan as a JSON file and reports each switch's readiness on a line of the
ready file, which is what the health check waits for.  An app registered with `api=True`
also gets a Unix socket for its API and an event log (testbed/net/sdn/__init__.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from testbed.lifecycle.supervisor import ServiceDied, Supervisor
from testbed.net.plan import NetworkPlan
from testbed.scenario import Scenario
from testbed.workloads import Registry

OPENFLOW_PORT = 6653


def topology_json(plan: NetworkPlan, sc: Scenario | None = None) -> dict:
    """The switches as the apps see them: ports with the host (MAC, IP) behind each, and the
    configured trunks (rate, delay) that path computation may assume."""
    ips = {m.root_name: m.ip for seg in plan.segments for m in seg.members}
    trunks = []
    for tr in plan.trunks:
        link = sc.link(tr.link) if sc is not None else None
        trunks.append({"link": tr.link, "a": tr.a, "b": tr.b, "rate_mbps": tr.rate_mbps,
                       "delay_ms": link.delay_ms if link is not None else None})
    return {"switches": [
        {"name": sw.name, "dpid": sw.dpid,
         "ports": [{"port_no": p.port_no, "peer": p.peer, "peer_mac": p.peer_mac,
                    "peer_ip": ips.get(p.root_name)} for p in sw.ports]}
        for sw in plan.switches.values()], "trunks": trunks}


RESTARTS = 3  # controller restarts per run before the run fails


class SdnController:
    def __init__(self, supervisor: Supervisor, state_dir: Path, netns: str) -> None:
        self.sup = supervisor
        self.state_dir = state_dir
        self.netns = netns
        self.port = OPENFLOW_PORT  # loopback of the run's own switch namespace: always free
        self.ready_file = state_dir / "osken-ready.txt"
        self.app = "l2-proactive"
        self.api_socket: Path | None = None
        """The app's API socket (apps registered with api=True); None for other apps."""
        self.event_log = supervisor.log_dir / "sdn-events.jsonl"

    def start(self, plan: NetworkPlan, app: str = "l2-proactive",
              sc: Scenario | None = None) -> None:
        topo = self.state_dir / "sdn-topology.json"
        topo.write_text(json.dumps(topology_json(plan, sc), indent=1))
        self.ready_file.unlink(missing_ok=True)
        self.app = app
        spec = Registry.installed().sdn_apps()[app]
        argv = [sys.executable, "-m", "testbed.net.sdn.launch", "--topology", str(topo),
                "--port", str(self.port), "--ready-file", str(self.ready_file),
                "--log-file", str(self.sup.log_dir / "osken.log"), "--app", spec.module]
        if spec.api:
            self.api_socket = self.state_dir / "sdn-api.sock"
            argv += ["--api-socket", str(self.api_socket), "--event-log", str(self.event_log)]
        # restarted if it dies, as systemd would: the switches keep their flows (fail_mode
        # secure) and reconnect; the apps reinstall their tables when a switch connects
        self.sup.start("osken", argv, critical=True, netns=self.netns, restart=RESTARTS)

    def wait_listening(self, timeout: float = 30.0) -> None:
        """Bridges added before the controller listens back off for up to 8 s: wait first."""
        t0 = time.monotonic()
        while True:
            self.sup.check()
            out = subprocess.run(["ip", "netns", "exec", self.netns, "ss", "-Hltn",
                                  f"sport = :{self.port}"], capture_output=True, text=True)
            if out.stdout.strip():
                return
            if time.monotonic() - t0 > timeout:
                raise ServiceDied(f"os-ken did not listen within {timeout:.0f} s; see "
                                  f"{self.sup.log_dir / 'osken.log'}")
            time.sleep(0.05)

    def wait_ready(self, plan: NetworkPlan, timeout: float = 30.0) -> float:
        want = {sw.dpid for sw in plan.switches.values()}
        t0 = time.monotonic()
        while True:
            self.sup.check()
            text = self.ready_file.read_text() if self.ready_file.exists() else ""
            done = {d for d in want if f"dpid {d} ready" in text}
            if done == want:
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                missing = sorted(want - done)
                raise ServiceDied(f"os-ken did not program switches {missing} within "
                                  f"{timeout:.0f} s; see {self.sup.log_dir / 'osken.log'}")
            time.sleep(0.05)
