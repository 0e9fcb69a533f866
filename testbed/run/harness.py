"""A built, health-checked network as a context manager, for benchmarks and tests that drive
the emulation themselves (instead of a scenario's timeline).  Teardown is the same ledger
walk as a run's, whatever happens inside the `with` block."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from testbed.lifecycle.ledger import Ledger
from testbed.lifecycle.sh import in_netns
from testbed.lifecycle.supervisor import Supervisor
from testbed.mobility.driver import MobilityDriver
from testbed.mobility.world import World
from testbed.net import plan as planner
from testbed.net.calibration import calibrate
from testbed.net.health import reachability, services
from testbed.net.network import Network, preflight
from testbed.run.cleanup import teardown
from testbed.run.results import RESULTS, new_run
from testbed.scenario import Scenario

if TYPE_CHECKING:
    from testbed.hil.boards import HardwareInTheLoop


class Emulation:
    def __init__(self, net: Network, run_dir: Path, ledger: Ledger,
                 world: World | None = None, driver: MobilityDriver | None = None,
                 token: str = "", hil: HardwareInTheLoop | None = None) -> None:
        self.net, self.run_dir, self.ledger = net, run_dir, ledger
        self.world, self.driver = world, driver
        self.token, self.hil = token, hil  # the run's token: the boards' agents require it

    def ip(self, node: str, link: str | None = None) -> str:
        if link is None:
            return self.net.plan.primary_ip[node]
        return self.net.plan.endpoint(link, node).ip

    def run(self, node: str, argv: Sequence[str], timeout: float = 120.0
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(in_netns(self.net.plan.namespaces[node], argv),
                              capture_output=True, text=True, timeout=timeout)

    def popen(self, node: str, argv: Sequence[str]) -> subprocess.Popen[str]:
        return subprocess.Popen(in_netns(self.net.plan.namespaces[node], argv),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def goodput_mbps(self, src: str, dst: str, seconds: int = 4) -> float:
        """TCP goodput src -> dst with iperf3 (receiver side, Mbit/s).  The first second is
        omitted (-O 1): slow start at tens of ms of RTT is not the link's rate."""
        server = self.popen(dst, ["iperf3", "-s", "-1", "-B", self.ip(dst)])
        try:
            time.sleep(1.0)
            res = self.run(src, ["iperf3", "-c", self.ip(dst), "-t", str(seconds), "-O", "1",
                                 "-J", "-B", self.ip(src)], timeout=60)
            data = json.loads(res.stdout)
            return float(data["end"]["sum_received"]["bits_per_second"]) / 1e6
        finally:
            server.kill()
            server.wait()


@contextmanager
def emulated(sc: Scenario, base: Path = RESULTS, mobility: bool = False,
             source: str = "", hil: HardwareInTheLoop | None = None) -> Iterator[Emulation]:
    """With `hil`, its boards are checked before anything is created and attached before
    the block runs (em.hil.address(node) is a board's agent address, em.token its token).
    With mobility=True the scenario's world is expanded and a mobility driver is primed
    (state of time 0); the caller starts it (`em.driver.start(time.monotonic())`)."""
    world = World.build(sc, source) if mobility else None
    if world is not None:
        sc = world.sc
    preflight(sc, sc.name)
    if hil is not None:
        hil.require(sc)  # InventoryError before anything exists
    run_id, tag, run_dir = new_run(sc.name, base)
    state_dir = Path("/run/sagin-hil") / run_id
    ledger = Ledger.create(run_id, tag, sc.name, run_dir)
    ledger.add("state_dirs", str(state_dir))
    state_dir.mkdir(parents=True, exist_ok=True)
    sup = Supervisor(ledger, run_dir / "logs")
    attached = hil.attached(sc) if hil is not None else None
    served = hil.served_by(sc) if hil is not None else None
    net = Network(sc, planner.build(sc, tag, attached, served), ledger, sup, state_dir)
    token = secrets.token_hex(16)
    t0 = time.monotonic()
    driver: MobilityDriver | None = None
    try:
        net.build()
        if world is not None:
            driver = MobilityDriver(world, net, run_dir / "mobility")
            driver.prime()
        services(net)
        net.timings.update(reachability(net))
        net.timings.update(calibrate(net))
        if hil is not None:
            hil.attach(net, ledger, token)
            net.timings.update(hil.timings)
        net.timings["ready_s"] = round(time.monotonic() - t0, 3)
        yield Emulation(net, run_dir, ledger, world, driver, token, hil)
    finally:
        if driver is not None:
            driver.stop()
        if hil is not None:
            try:
                hil.detach()
            except RuntimeError as exc:  # BoardError; teardown() retries from the record
                print(f"board detach: {exc}", file=sys.stderr)
        net.stop_engines()
        sup.stop_all()
        teardown(ledger)
