"""Stand-in hosts for multi-host runs, on one machine: each "host" is a network namespace
running a real OpenSSH server (a testbed.hil.boardsim.BoardSim, the boards' stand-in,
generalised by its namespace prefix), and the hosts share an *underlay* LAN - a Linux bridge
in a namespace of its own, one veth per host (`data0` in the host) - with private link-local
addresses (169.254.x.y/29: nothing leaves the machine).

    coordinator (root ns) --mgmt veth, 169.254.a.b/29--> sagin-host-<t1>-h1 (sshd)  data0 -.
                          --mgmt veth, 169.254.c.d/29--> sagin-host-<t2>-h2 (sshd)  data0 -+- br0
                                                                     sagin-hosts-<tag> ----'

SSH (management) reaches a host over its management veth, as a real cluster's SSH network;
VXLAN tunnels run over the underlay, as over a real data network.  What it cannot show: a
second machine's own CPUs, clock and NIC - the shares here compete for the same cores, their
clocks are one clock, and the underlay is a veth/bridge (no wire, no NIC offloads, no switch
queue).

`python -m testbed hosts sim up [N]` starts N of them held by a background process and writes
their inventory (`--hosts` file) to /run/sagin-boardsim/hosts.yaml; `... down` stops them.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from testbed.hil.boardsim import SIM_BASE, BoardSim, _destroy, _run
from testbed.lifecycle.ledger import proc_start_ticks
from testbed.scenario.cluster import Cluster

UNDERLAY_MTU = 1500
HOLD_FILE = SIM_BASE / "hosts.pid"
INVENTORY = SIM_BASE / "hosts.yaml"


class HostSim(BoardSim):
    """One stand-in host (a BoardSim whose namespace says sagin-host)."""

    prefix = "sagin-host"
    share_mounts = True  # its runs create namespaces that the whole machine must see


class StandInHosts:
    """N stand-in hosts on one underlay; a context manager (`with StandInHosts(2) as hs:`)."""

    def __init__(self, n: int = 2, base: Path = SIM_BASE) -> None:
        if not 1 <= n <= 6:
            raise ValueError("between 1 and 6 stand-in hosts (one /29 underlay)")
        self.tag = secrets.token_hex(2)
        self.netns = f"sagin-hosts-{self.tag}"
        self.dir = base / f"{self.tag}-underlay"
        self.base = base
        self.hosts = [HostSim(f"h{i + 1}", data_nic=True, base=base) for i in range(n)]
        self.underlay: dict[str, str] = {}  # host name -> its underlay address

    def __enter__(self) -> StandInHosts:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> StandInHosts:
        self.dir.mkdir(parents=True, exist_ok=False, mode=0o700)
        pid = os.getpid()
        # the same state format as a BoardSim's: boardsim.clean_stale removes it too
        (self.dir / "state.json").write_text(json.dumps(
            {"owner_pid": pid, "owner_start": proc_start_ticks(pid), "netns": self.netns,
             "links": [], "address": ""}))
        _run(["ip", "netns", "add", self.netns])
        _run(["ip", "-n", self.netns, "link", "set", "lo", "up"])
        _run(["ip", "-n", self.netns, "link", "add", "br0", "type", "bridge"])
        _run(["ip", "-n", self.netns, "link", "set", "br0", "up"])
        for h in self.hosts:
            h.start()
        subnet = self.hosts[0]._pick_subnet()  # after the hosts' management /29s exist
        addresses = list(subnet.hosts())
        for h, addr in zip(self.hosts, addresses, strict=False):
            assert h.data_veth is not None
            _run(["ip", "link", "set", "dev", h.data_veth, "netns", self.netns])
            _run(["ip", "-n", self.netns, "link", "set", "dev", h.data_veth, "master", "br0",
                  "mtu", str(UNDERLAY_MTU), "up"])
            _run(["ip", "-n", h.netns, "addr", "add", f"{addr}/{subnet.prefixlen}", "dev",
                  h.board_data_interface])
            _run(["ip", "-n", h.netns, "link", "set", "dev", h.board_data_interface, "mtu",
                  str(UNDERLAY_MTU), "up"])
            self.underlay[h.name] = str(addr)
        return self

    def stop(self) -> None:
        for h in self.hosts:
            h.stop()
        _destroy(self.netns, [], self.dir)

    def inventory(self, project: str | None = None) -> dict[str, Any]:
        """These hosts as a `--hosts` file's content (or a scenario's cluster: section)."""
        return {"hosts": [{"name": h.name, "address": h.address, "port": h.port,
                           "user": h.user, "key": str(h.key),
                           "known_hosts": str(h.known_hosts),
                           "underlay": self.underlay[h.name],
                           **({"project": project} if project else {})}
                          for h in self.hosts]}

    def cluster(self) -> Cluster:
        return Cluster.model_validate(self.inventory())

    def leftovers(self) -> dict[str, dict[str, list[str]]]:
        """What runs left on each host (processes, interfaces, addresses, rules)."""
        out = {}
        for h in self.hosts:
            left = {k: v for k, v in h.leftovers().items() if k != "files"}
            # the underlay address is the stand-in's own, not a run's
            left["addresses"] = [a for a in left["addresses"]
                                 if not a.startswith(f"{h.board_data_interface}:")]
            out[h.name] = left
        return out


# ---- `python -m testbed hosts sim up|down|status` --------------------------------------------
def _hold(n: int) -> None:
    """The background owner of `hosts sim up`'s stand-ins: keeps them until SIGTERM."""
    import yaml

    stop = False

    def on_term(signum: int, frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    with StandInHosts(n) as hs:
        INVENTORY.write_text(yaml.safe_dump(hs.inventory(), sort_keys=False))
        HOLD_FILE.write_text(str(os.getpid()))
        while not stop:
            time.sleep(0.2)
    INVENTORY.unlink(missing_ok=True)
    HOLD_FILE.unlink(missing_ok=True)


def _holder() -> int | None:
    try:
        pid = int(HOLD_FILE.read_text())
    except (OSError, ValueError):
        return None
    return pid if proc_start_ticks(pid) is not None else None


def main(argv: list[str]) -> int:
    action = argv[0] if argv else "status"
    if action == "up":
        if _holder() is not None:
            print(f"stand-in hosts already up: {INVENTORY}")
            return 0
        n = int(argv[1]) if len(argv) > 1 else 2
        SIM_BASE.mkdir(parents=True, exist_ok=True)
        log = SIM_BASE / "hosts.log"
        with open(log, "w") as out:
            subprocess.Popen([sys.executable, "-m", "testbed.cluster.standin", "--hold", str(n)],
                             stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                             start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if _holder() is not None and INVENTORY.is_file():
                print(f"{n} stand-in hosts up; their inventory (--hosts): {INVENTORY}")
                print(INVENTORY.read_text())
                return 0
            time.sleep(0.2)
        print(f"the stand-in hosts did not come up: {log.read_text()[-800:]}")
        return 1
    if action == "down":
        pid = _holder()
        if pid is None:
            print("no stand-in hosts are up")
            return 0
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc_start_ticks(pid) is not None:
            time.sleep(0.1)
        print("stand-in hosts stopped")
        return 0
    if action == "status":
        pid = _holder()
        print(f"up (holder {pid}): {INVENTORY}" if pid else "down")
        return 0
    print("usage: python -m testbed hosts sim up [N] | down | status")
    return 2


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--hold":
        _hold(int(sys.argv[2]))
    else:
        sys.exit(main(sys.argv[1:]))
