"""Open vSwitch, one private instance per run, with the kernel datapath where the openvswitch
module loads (engines.switch: auto) and the userspace one elsewhere.

Each run starts its own ovsdb-server and ovs-vswitchd with their database and sockets in the
run's state directory, ovs-vswitchd inside the run's switch namespace (the userspace datapath
holds one persistent `ovs-netdev` tap per namespace, which goes away with the
namespace), so a run never touches a system OVS and two runs never share bridges.
Bridges use `datapath_type=netdev` (no openvswitch kernel module needed) or `system` (the
module's datapath, created inside the switch namespace, so it dies with it), speak OpenFlow 1.3
only, are `fail_mode=secure` (no traffic until the controller has installed flows) and point
at the os-ken controller on loopback.
"""

from __future__ import annotations

import time
from pathlib import Path

from testbed.lifecycle.sh import CommandError, ip_batch, run
from testbed.lifecycle.supervisor import ServiceDied, Supervisor
from testbed.net.plan import NetworkPlan

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")


class OvsSwitches:
    def __init__(self, supervisor: Supervisor, state_dir: Path, netns: str,
                 datapath: str = "netdev") -> None:
        self.sup = supervisor
        self.datapath = datapath
        self.netns = netns
        self.dir = state_dir / "ovs"
        self.env = {"OVS_RUNDIR": str(self.dir), "OVS_DBDIR": str(self.dir),
                    "OVS_LOGDIR": str(self.dir)}
        self.db = f"unix:{self.dir}/db.sock"

    def vsctl(self, *args: str, wait: bool = False) -> str:
        argv = ["ovs-vsctl", f"--db={self.db}", "--timeout=20"]
        if not wait:
            argv.append("--no-wait")
        return run([*argv, *args], env=self.env).stdout

    def start(self) -> None:
        if not SCHEMA.exists():
            raise ServiceDied(f"{SCHEMA} is missing: install openvswitch-switch (make setup)")
        self.dir.mkdir(parents=True, exist_ok=True)
        run(["ovsdb-tool", "create", str(self.dir / "conf.db"), str(SCHEMA)])
        self.sup.start("ovsdb-server", [
            "ovsdb-server", str(self.dir / "conf.db"), f"--remote=punix:{self.dir}/db.sock",
            f"--unixctl={self.dir}/ovsdb.ctl", f"--pidfile={self.dir}/ovsdb.pid",
            f"--log-file={self.dir}/ovsdb-server.log"], critical=True, env=self.env)
        self._wait_socket(self.dir / "db.sock")
        self.vsctl("init")
        self.sup.start("ovs-vswitchd", [
            "ovs-vswitchd", self.db, f"--unixctl={self.dir}/vswitchd.ctl",
            f"--pidfile={self.dir}/vswitchd.pid", f"--log-file={self.dir}/ovs-vswitchd.log"],
            critical=True, env=self.env, netns=self.netns)
        self._wait_socket(self.dir / "vswitchd.ctl")

    def _wait_socket(self, path: Path, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not path.exists():
            self.sup.check()
            if time.monotonic() > deadline:
                raise ServiceDied(f"Open vSwitch did not create {path} within {timeout:.0f} s")
            time.sleep(0.02)

    def build(self, plan: NetworkPlan, controller_port: int) -> None:
        """Create bridges and ports in one ovs-vsctl transaction."""
        args: list[str] = []
        for sw in plan.switches.values():
            args += ["--", "add-br", sw.bridge, "--", "set", "bridge", sw.bridge,
                     f"datapath_type={self.datapath}", "protocols=OpenFlow13", "fail_mode=secure",
                     f"other-config:datapath-id={sw.dpid}", "other-config:disable-in-band=true",
                     "--", "set-controller", sw.bridge, f"tcp:127.0.0.1:{controller_port}",
                     # a restarted controller is found within a second (default backoff: 8 s)
                     "--", "set", "controller", sw.bridge, "max_backoff=1000"]
            for port in sw.ports:
                args += ["--", "add-port", sw.bridge, port.root_name, "--", "set", "Interface",
                         port.root_name, f"ofport_request={port.port_no}"]
        if args:
            self.vsctl(*args[1:], wait=True)
        # The bridges' own internal ports stay down and unaddressed: the root namespace gets
        # no route into the emulated network.
        ip_batch([f"link set dev {sw.bridge} down" for sw in plan.switches.values()],
                 self.netns, force=True)

    def bridge_mgmt(self, bridge: str) -> str:
        return f"unix:{self.dir}/{bridge}.mgmt"

    def dump_flows(self, bridge: str) -> str:
        try:
            return run(["ovs-ofctl", "-O", "OpenFlow13", "dump-flows",
                        self.bridge_mgmt(bridge)]).stdout
        except CommandError as exc:
            return str(exc)

    def connected(self) -> dict[str, bool]:
        out = self.vsctl("--columns=_uuid,is_connected", "--format=csv", "--data=bare",
                         "--no-headings", "list", "Controller")
        return {line.split(",")[0]: line.endswith("true") for line in out.splitlines() if line}
