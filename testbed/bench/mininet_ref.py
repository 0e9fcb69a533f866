"""Mininet reference for the scale curve (issue 23): the same bring-up measured with Mininet.

Why: the testbed's scale numbers mean little alone; next to Mininet's own API on a comparable
topology they show what our emulation costs.  This side builds n hosts hanging off
ceil(n/25) Open vSwitch bridges (in a line, or a star around one core bridge), with no link
emulation, and times each phase Mininet's API lets us separate: hosts (one shell in fresh
namespaces per host), switches (objects), links (veth pairs), host IP configuration, switch
start (the batched ovs-vsctl), then the first ping between the two hosts farthest apart, a
pingAll on a sample of hosts, and net.stop().

measure_plan(n) is the same-topology reference: it builds in Mininet the network our testbed
builds for the generated SAGIN (testbed.scenario.generated) of n nodes (its NetworkPlan: one
host per node, a veth pair per point-to-point link, one userspace OVS bridge per Wi-Fi cell, the
plan's interface names, addresses, node address on lo and routes by one `ip -batch` per
host), without link emulation, and times hosts, switches, links, addresses, routes, switch
start, the first ping user0 -> last edge server, 10 seeded node pairs, net.stop().  The
plan is computed here (the venv) and handed to the helper as a JSON file.

Choices, and why:
- Open vSwitch runs the userspace datapath (datapath_type=netdev) because this kernel has no
  openvswitch module; the bridges are Mininet's OVSBridge (fail-mode standalone, MAC
  learning) and there is no controller: none is installed (no `controller`,
  `ovs-testcontroller`), and a learning controller would add a process and flow set-up
  latency that our side does not have.  The topology is loop-free, so no STP either.
- Mininet is installed for Debian's /usr/bin/python3, which the venv (pyenv 3.11) cannot
  import, so the measurement runs in a helper script under /usr/bin/python3 and prints JSON.
- If ovsdb-server / ovs-vswitchd are not running, they are started for each measurement on a
  throw-away database (the system's /etc/openvswitch/conf.db is not touched) and stopped
  afterwards, so every size starts from a fresh daemon and its CPU and peak RSS (read from
  /proc before it stops) belong to that size alone.
- Clean-up is unconditional: net.stop() in a finally in the helper, `mn -c` from here when the
  helper failed or timed out, and a before/after count of namespaces, veths, bridges and
  mininet/OVS processes that is part of the result.

CPU is user+system seconds: the helper's own, its reaped children's (host shells, ip, ovs-vsctl;
getrusage RUSAGE_CHILDREN after net.stop() reaps them) and the OVS daemons'.  Memory, sampled
once the network is up and has been pinged: the PSS of the helper, every host/switch shell and
the OVS daemons (their RSS too, but RSS counts bash's shared pages once per shell) and the drop
in MemAvailable (kernel memory included); plus the helper's ru_maxrss and OVS's VmHWM.

    python -m testbed.bench.mininet_ref --sizes 25,50,100 --out results/bench/mininet-ref.json
    python -m testbed.bench.mininet_ref --topo plan --sizes 25,50,100   # -plan.json
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from testbed.run.loadlog import process_cpu
from testbed.scenario.generated import sagin

SYSTEM_PYTHON = "/usr/bin/python3"
OVS_RUN = Path("/var/run/openvswitch")
OVS_SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
HOSTS_PER_SWITCH = 25
PING_SAMPLE_HOSTS = 10
CLK_TCK = os.sysconf("SC_CLK_TCK")

# The helper runs under Debian's python3, which has Mininet; it prints one JSON line.  It is
# HELPER_HEAD + one topology's body (HELPER_SWITCHED or HELPER_PLAN: build() and probe()) +
# HELPER_MAIN (memory, idle CPU, net.stop(), rusage), so both measurements share everything
# but the topology.  argv: ovs_pids (comma-separated, may be empty) params(JSON)
HELPER_HEAD = r'''
import time
T_PROC = time.monotonic()
import json, os, random, re, resource, sys
from functools import partial
T_IMPORT = time.monotonic()
from mininet.log import setLogLevel
from mininet.net import Mininet
from mininet.node import OVSBridge
T_IMPORT = time.monotonic() - T_IMPORT

ovs_pids = [int(p) for p in sys.argv[1].split(",") if p]
params = json.loads(sys.argv[2])
setLogLevel("warning")


def proc_kb(pid, name, key):
    """A kB figure of /proc/<pid>/<name> (status VmRSS:, smaps_rollup Pss:), 0 if gone."""
    try:
        with open("/proc/%d/%s" % (pid, name)) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        return 0
    return 0


def rss_kb(pid):
    return proc_kb(pid, "status", "VmRSS:")


def pss_kb(pid):
    return proc_kb(pid, "smaps_rollup", "Pss:")


def mem_available_kb():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    return 0


def cpu_ticks(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return 0


def phase(ph, name, t):
    """Record a phase, and say so on stderr: a helper killed by its timeout leaves them."""
    ph[name] = time.monotonic() - t
    sys.stderr.write("PHASE %s %.3f\n" % (name, ph[name]))
    sys.stderr.flush()


def first_packet(host, ip, timeout):
    """ping -c1 -W1 until one reply or timeout: (seconds or None, attempts)."""
    t = time.monotonic()
    tries = 0
    while time.monotonic() - t < timeout:
        tries += 1
        r = host.cmd("ping -c1 -W1 %s" % ip)
        if re.search(r" 1 received", r):
            return time.monotonic() - t, tries
    return None, tries
'''

# n hosts on ceil(n/per_switch) OVS bridges, in a line or a star (measure())
HELPER_SWITCHED = r'''
n, topo = params["n"], params["topo"]
per_switch, sample = params["per_switch"], params["sample"]
AUTO_MACS = True


def build(net, out, ph, t_start):
    t = time.monotonic()
    hosts = [net.addHost("h%d" % (i + 1)) for i in range(n)]
    phase(ph, "hosts", t)
    n_sw = max(1, -(-n // per_switch))
    t = time.monotonic()
    switches = [net.addSwitch("s%d" % (i + 1), batch=True) for i in range(n_sw)]
    core = None
    if topo == "star" and n_sw > 1:
        core = net.addSwitch("s%d" % (n_sw + 1), batch=True)
    phase(ph, "switches_add", t)
    out["switches"] = len(net.switches)
    t = time.monotonic()
    for i, h in enumerate(hosts):
        net.addLink(h, switches[i // per_switch])
    for i in range(1, n_sw):
        if core is not None:
            net.addLink(switches[i - 1], core)
        else:
            net.addLink(switches[i - 1], switches[i])
    if core is not None:
        net.addLink(switches[-1], core)
    phase(ph, "links", t)
    out["links"] = len(net.links)
    t = time.monotonic()
    net.build()
    phase(ph, "host_config", t)
    t = time.monotonic()
    net.start()
    phase(ph, "switch_start", t)
    ph["controller"] = 0.0
    out["start_total_s"] = time.monotonic() - t_start


def probe(net, out, t_start):
    # first packet: the two hosts farthest apart (first and last, across every bridge)
    hosts = net.hosts
    a, b = hosts[0], hosts[-1]
    s, tries = first_packet(a, b.IP(), params["first_timeout"])
    out["first_packet_s"] = s
    out["first_packet_tries"] = tries
    out["command_to_first_packet_s"] = time.monotonic() - t_start if s is not None else None
    # pingAll on a sample: Mininet's own net.ping over every ordered pair of the sample
    rnd = random.Random(23)
    pick = hosts if n <= sample else [hosts[0], hosts[-1]] + rnd.sample(hosts[1:-1], sample - 2)
    t = time.monotonic()
    loss = net.ping(hosts=pick, timeout="1")
    out["pingall_sample"] = {"hosts": len(pick), "pairs": len(pick) * (len(pick) - 1),
                             "loss_pct": loss, "s": time.monotonic() - t}
'''

# the testbed's own network for a scenario, from its plan (measure_plan())
HELPER_PLAN = r'''
with open(params["plan"]) as f:
    P = json.load(f)
AUTO_MACS = False
SYSCTLS = ("net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 "
           "net.ipv4.conf.default.rp_filter=0")


def build(net, out, ph, t_start):
    t = time.monotonic()
    # ip=None: no address from Mininet's 10.0.0.0/8 on the first interface
    hosts = {name: net.addHost(name, ip=None) for name in P["nodes"]}
    phase(ph, "hosts", t)
    shared = [seg for seg in P["segments"] if len(seg) > 2]
    t = time.monotonic()
    switches = [net.addSwitch("s%d" % (i + 1), batch=True) for i in range(len(shared))]
    phase(ph, "switches", t)
    out["switches"] = len(switches)
    t = time.monotonic()
    sw = iter(switches)
    for seg in P["segments"]:
        if len(seg) == 2:  # point to point: a veth pair between the two hosts
            (a, ifa, _, _), (b, ifb, _, _) = seg
            net.addLink(hosts[a], hosts[b], intfName1=ifa, intfName2=ifb)
        else:  # a Wi-Fi cell: one bridge, a veth from each member
            s = next(sw)
            for node, ifname, _, _ in seg:
                net.addLink(hosts[node], s, intfName1=ifname)
    phase(ph, "links", t)
    out["links"] = len(net.links)
    t = time.monotonic()
    net.build()  # Mininet's host configuration (lo up; no addresses: ip=None)
    for seg in P["segments"]:
        for node, ifname, ip, prefixlen in seg:
            hosts[node].intf(ifname).setIP(ip, prefixlen)
    for name, h in hosts.items():
        ifs = " ".join("net.ipv4.conf.%s.rp_filter=0" % i for i in h.intfNames() if i != "lo")
        h.cmd("ip addr add %s/32 dev lo && sysctl -qw %s %s" % (P["nodes"][name], SYSCTLS, ifs))
    phase(ph, "addresses", t)
    t = time.monotonic()
    errors = {}
    for name, h in hosts.items():
        lines = P["routes"][name]
        if not lines:
            continue
        path = os.path.join(params["dir"], name + ".routes")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        r = h.cmd("ip -batch " + path)
        if r.strip():
            errors[name] = r.strip()[-300:]
    phase(ph, "routes", t)
    out["route_errors"] = {"hosts": len(errors), "first": dict(list(errors.items())[:3])}
    t = time.monotonic()
    net.start()
    phase(ph, "switch_start", t)
    out["start_total_s"] = time.monotonic() - t_start


def probe(net, out, t_start):
    src, dst = net[P["src"]], P["dst"]
    s, tries = first_packet(src, P["nodes"][dst], params["first_timeout"])
    out["first_packet"] = {"src": P["src"], "dst": dst, "dst_ip": P["nodes"][dst]}
    out["first_packet_s"] = s
    out["first_packet_tries"] = tries
    # from the helper's start, Mininet's import included
    out["command_to_first_packet_s"] = time.monotonic() - T_PROC if s is not None else None
    t = time.monotonic()
    lost = []
    for a, b in P["pairs"]:
        # TTL 255: paths around the satellite ring are longer than the default 64 hops
        r = net[a].cmd("ping -c1 -W1 -t 255 %s" % P["nodes"][b])
        if not re.search(r" 1 received", r):
            lost.append([a, b, r.strip().splitlines()[-3:]])
    out["ping_sample"] = {"pairs": len(P["pairs"]), "lost": lost,
                          "loss_pct": 100.0 * len(lost) / max(1, len(P["pairs"])),
                          "s": time.monotonic() - t}
    # routes the kernels hold (not timed): the plan's, plus each interface's connected one
    counts = [int(h.cmd("ip -4 route show | wc -l").strip() or 0) for h in net.hosts]
    out["routes_installed"] = {"total": sum(counts), "max_per_host": max(counts)}
'''

HELPER_MAIN = r'''
avail0 = mem_available_kb()
out = dict(params.get("echo", {}))
out["phases_s"] = {}
ph = out["phases_s"]
net = Mininet(topo=None, build=False, controller=None,
              switch=partial(OVSBridge, datapath="user"), autoSetMacs=AUTO_MACS)
t_start = time.monotonic()
out["mininet_import_s"] = T_IMPORT
try:
    build(net, out, ph, t_start)
    probe(net, out, t_start)
    pids = [os.getpid()] + [h.pid for h in net.hosts] + [s.pid for s in net.switches]
    out["rss_up_mb"] = {
        "helper": rss_kb(os.getpid()) / 1024,
        "host_and_switch_shells": sum(rss_kb(p) for p in pids[1:]) / 1024,
        "ovs_daemons": sum(rss_kb(p) for p in ovs_pids) / 1024,
    }
    out["rss_up_mb"]["total"] = sum(out["rss_up_mb"].values())
    # RSS counts shared pages (bash, libc) once per shell; PSS splits them, so it sums right
    out["pss_up_mb"] = sum(pss_kb(p) for p in pids + ovs_pids) / 1024
    out["mem_available_drop_mb"] = (avail0 - mem_available_kb()) / 1024
    # the network idle, no traffic: how busy is the userspace switch just polling its ports?
    tick = os.sysconf("SC_CLK_TCK")
    c0, w0 = sum(cpu_ticks(p) for p in ovs_pids), time.monotonic()
    time.sleep(3)
    out["ovs_idle_cpu_pct"] = round(100.0 * (sum(cpu_ticks(p) for p in ovs_pids) - c0)
                                    / tick / (time.monotonic() - w0), 1)
finally:
    t = time.monotonic()
    net.stop()
    phase(ph, "teardown", t)
    for node in net.hosts + net.switches:
        try:
            node.shell.wait(timeout=5)
        except Exception:
            pass
for k in list(ph):
    ph[k] = round(ph[k], 3)
s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
out["cpu_s"] = {"helper": s.ru_utime + s.ru_stime, "children": c.ru_utime + c.ru_stime}
out["maxrss_mb"] = {"helper": s.ru_maxrss / 1024, "largest_child": c.ru_maxrss / 1024}
print("RESULT " + json.dumps(out))
'''


def _sh(cmd: list[str], timeout: float = 30) -> str:
    """Run a command for state or clean-up; never raise, because a census must not fail."""
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        return r.stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def census() -> dict[str, int]:
    """What Mininet and OVS leave behind: compared before and after every measurement."""
    links = _sh(["ip", "-o", "link"])
    procs = _sh(["pgrep", "-af", "mininet:"]).splitlines()
    return {
        "netns": len(_sh(["ip", "netns", "list"]).splitlines()),
        "veth": len(_sh(["ip", "-o", "link", "show", "type", "veth"]).splitlines()),
        "links": len(links.splitlines()),
        "ovs_bridges": len(_sh(["ovs-vsctl", "-t", "2", "list-br"], 5).splitlines()),
        "mininet_procs": sum("pgrep" not in p for p in procs),
        "ovs_procs": len(_sh(["pgrep", "-x", "ovs-vswitchd|ovsdb-server"]).splitlines()),
    }


def _proc_cpu_s(pid: int) -> float:
    """User+system seconds of a process that is not our child (the OVS daemons detach)."""
    got = process_cpu(str(pid))
    return got[1] / CLK_TCK if got is not None else 0.0


def _proc_hwm_mb(pid: int) -> float:
    """Peak resident set (VmHWM) of a process that is not our child."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


class Ovs:
    """ovsdb-server + ovs-vswitchd for one measurement, started only if none is running."""

    def __init__(self) -> None:
        self.tmp: Path | None = None
        self.pids: dict[str, int] = {}
        self.owned = False
        self.made_run_dir = False

    def __enter__(self) -> Ovs:
        if subprocess.run(["ovs-vsctl", "-t", "1", "show"], capture_output=True,
                          check=False).returncode == 0:
            for name in ("ovsdb-server", "ovs-vswitchd"):
                pid = _sh(["pgrep", "-xo", name]).strip()
                if pid:
                    self.pids[name] = int(pid)
            return self
        self.owned = True
        self.tmp = Path(tempfile.mkdtemp(prefix="mnref-ovs-"))
        try:
            self._start()
        except BaseException:
            self.__exit__()  # a half-started pair (ovsdb up, vswitchd failed) must not linger
            raise
        return self

    def _start(self) -> None:
        """Fresh database, ovsdb-server on the default socket (Mininet's ovs-vsctl uses it)."""
        assert self.tmp is not None
        if not OVS_RUN.exists():
            OVS_RUN.mkdir(parents=True)
            self.made_run_dir = True
        db = self.tmp / "conf.db"
        subprocess.run(["ovsdb-tool", "create", str(db), str(OVS_SCHEMA)], check=True)
        subprocess.run(["ovsdb-server", str(db), f"--remote=punix:{OVS_RUN}/db.sock",
                        f"--pidfile={self.tmp}/ovsdb-server.pid", "--detach",
                        f"--log-file={self.tmp}/ovsdb-server.log"], check=True,
                       capture_output=True)
        self.pids["ovsdb-server"] = int((self.tmp / "ovsdb-server.pid").read_text())
        subprocess.run(["ovs-vsctl", "--no-wait", "init"], check=True, timeout=10)
        subprocess.run(["ovs-vswitchd", f"unix:{OVS_RUN}/db.sock",
                        f"--pidfile={self.tmp}/ovs-vswitchd.pid", "--detach",
                        f"--log-file={self.tmp}/ovs-vswitchd.log"], check=True, timeout=30,
                       capture_output=True)
        self.pids["ovs-vswitchd"] = int((self.tmp / "ovs-vswitchd.pid").read_text())

    def usage(self) -> dict[str, Any]:
        """CPU seconds and peak RSS of the daemons so far (fresh daemons: this size's own)."""
        return {name: {"cpu_s": round(_proc_cpu_s(pid), 3),
                       "peak_rss_mb": round(_proc_hwm_mb(pid), 1)}
                for name, pid in self.pids.items()}

    def log_warnings(self, keep: int = 8) -> dict[str, Any]:
        """WARN/ERR lines of the daemons we started: where a size starts to hurt OVS."""
        found: dict[str, Any] = {}
        for name in ("ovs-vswitchd", "ovsdb-server"):
            log = self.tmp / f"{name}.log" if self.tmp else None
            if log is None or not log.exists():
                continue
            bad = [ln for ln in log.read_text(errors="replace").splitlines()
                   if "|WARN|" in ln or "|ERR|" in ln or "|EMER|" in ln]
            found[name] = {"count": len(bad), "first": bad[:keep], "last": bad[-keep:]}
        return found

    def __exit__(self, *exc: object) -> None:
        if not self.owned:
            return
        for name in ("ovs-vswitchd", "ovsdb-server"):
            pid = self.pids.get(name)
            if pid is None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            with contextlib.suppress(ProcessLookupError):
                if Path(f"/proc/{pid}").exists():
                    os.kill(pid, signal.SIGKILL)
        # userspace datapath leaves its internal tap behind
        _sh(["ip", "link", "del", "ovs-netdev"])
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
        if self.made_run_dir:
            shutil.rmtree(OVS_RUN, ignore_errors=True)


def _run_helper(body: str, params: dict[str, Any], out: dict[str, Any],
                timeout_s: float) -> dict[str, Any]:
    """Run one helper (HELPER_HEAD + body + HELPER_MAIN) on fresh OVS daemons, and account for
    it: census before/after and leftovers, OVS CPU/RSS and log warnings, `mn -c` when the
    helper failed or left something, the CPU total.  Both measurements go through here."""
    before = census()
    out.update({"load_before": os.getloadavg()[0], "census_before": before})
    t0 = time.monotonic()
    cleaned_with_mn = False
    with tempfile.TemporaryDirectory(prefix="mnref-") as tmp, Ovs() as ovs:
        helper = Path(tmp) / "helper.py"
        helper.write_text(HELPER_HEAD + body + HELPER_MAIN)
        cmd = [SYSTEM_PYTHON, str(helper), ",".join(str(p) for p in ovs.pids.values()),
               json.dumps({**params, "dir": tmp})]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                               check=False, start_new_session=True)
            lines = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
            if lines:
                out.update(json.loads(lines[-1][len("RESULT "):]))
            if r.returncode or not lines:
                out["error"] = f"helper exit {r.returncode}: {r.stderr.strip()[-2000:]}"
        except subprocess.TimeoutExpired as exc:
            out["error"] = f"helper timed out after {timeout_s:.0f} s"
            err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) \
                else exc.stderr or ""
            out["phases_s_before_timeout"] = {
                m[0]: float(m[1]) for m in re.findall(r"^PHASE (\w+) ([\d.]+)$", err, re.M)}
        except BaseException as exc:  # Ctrl-C, bad JSON: still clean up, then re-raise
            out["error"] = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            out["ovs"] = ovs.usage()
            out["ovs_log_warnings"] = ovs.log_warnings()
            now = census()
            if "error" in out or now["mininet_procs"] or now["ovs_bridges"]:
                _sh(["mn", "-c"], timeout=300)
                cleaned_with_mn = True
    out["wall_s"] = round(time.monotonic() - t0, 2)
    out["cleaned_with_mn_c"] = cleaned_with_mn
    after = census()
    out["census_after"] = after
    out["leftovers"] = {k: after[k] - before[k] for k in after if after[k] != before[k]}
    cpu = out.get("cpu_s", {})
    if cpu:
        cpu["ovs_daemons"] = sum(v["cpu_s"] for v in out["ovs"].values())
        cpu["total"] = round(sum(cpu.values()), 3)
    out["load_after"] = os.getloadavg()[0]
    return out


def measure(n_hosts: int, topo: str = "line", timeout_s: float | None = None,
            first_packet_timeout_s: float = 60.0) -> dict[str, Any]:
    """Bring up n_hosts on Mininet + userspace OVS, time the phases, tear down, check leftovers.

    topo: "line" (bridges in a chain, like Mininet's LinearTopo) or "star" (leaf bridges around
    one core bridge).  timeout_s bounds the whole helper (default grows with n).
    """
    if topo not in ("line", "star"):
        raise ValueError(f"topo must be line or star, not {topo!r}")
    out: dict[str, Any] = {"n_hosts": n_hosts, "topo": topo,
                           "switches": math.ceil(n_hosts / HOSTS_PER_SWITCH)}
    params = {"n": n_hosts, "topo": topo, "per_switch": HOSTS_PER_SWITCH,
              "sample": PING_SAMPLE_HOSTS, "first_timeout": first_packet_timeout_s,
              "echo": {"n_hosts": n_hosts, "topo": topo}}
    return _run_helper(HELPER_SWITCHED, params, out, timeout_s or 120 + 1.5 * n_hosts)


Generator = Callable[[int], dict[str, Any]]


def plan_for(n: int, scenario: Generator | None = None,
             tag: str = "0000") -> tuple[Any, Any]:
    """(Scenario, NetworkPlan): what our testbed builds for scenario(n) (default: the
    generated SAGIN of the scale curve, testbed.scenario.generated.sagin)."""
    from testbed.net.plan import build
    from testbed.scenario import parse

    data = (scenario or sagin)(n)
    sc = parse(data, f"{data.get('name', n)} (generated)")
    return sc, build(sc, tag)


def route_hops(sc: Any, plan: Any, pairs: list[list[str]]) -> list[int]:
    """Links on the routed (shortest by the plan's metric) path of each pair: past 64 a
    default-TTL ping dies on the way (the satellite ring of the 1,000-node scenario has 200
    satellites), so the sample pings use TTL 255 and record this."""
    import networkx as nx

    from testbed.net.plan import host_graph

    g = host_graph(sc, plan)
    return [len(nx.shortest_path(g, a, b, weight="weight")) - 1 for a, b in pairs]


def plan_helper_input(plan: Any, pairs: int = PING_SAMPLE_HOSTS,
                      seed: int = 23) -> dict[str, Any]:
    """What the helper needs of a plan, in plain JSON: node addresses (in the plan's order),
    each segment's members (node, ifname, ip, prefixlen), each node's `ip -batch` route lines
    (Route.line()), the first-packet pair (user0 to the last edge server, as our bench) and a
    seeded sample of node pairs."""
    nodes = list(plan.primary_ip)
    edges = sorted((n for n in nodes if n.startswith("edge")), key=lambda n: int(n[4:]))
    rnd = random.Random(seed)
    sample = [rnd.sample(nodes, 2) for _ in range(pairs)]
    return {"nodes": dict(plan.primary_ip),
            "segments": [[[m.node, m.ifname, m.ip, m.prefixlen] for m in seg.members]
                         for seg in plan.segments if seg.members],
            "routes": {n: [r.line() for r in plan.routes.get(n, [])] for n in nodes},
            "src": "user0", "dst": edges[-1], "pairs": sample}


def measure_plan(n: int, timeout_s: float | None = None, first_packet_timeout_s: float = 60.0,
                 scenario: Generator | None = None) -> dict[str, Any]:
    """Build in Mininet the network our testbed builds for scale.scenario(n), without link
    emulation: one Host per node, a veth pair per 2-member segment, one userspace OVSBridge
    per Wi-Fi cell with a veth to each member, the plan's interface names and addresses, node
    address on lo, ip_forward=1 and rp_filter off, the plan's routes by one `ip -batch` per
    host.  Then the first ping user0 -> last edge server and 10 seeded node pairs (by node
    address), net.stop().  Same accounting as measure()."""
    scenario = scenario or sagin
    t = time.monotonic()
    sc, plan = plan_for(n, scenario)
    data = plan_helper_input(plan)
    plan_s = time.monotonic() - t
    hops = route_hops(sc, plan, data["pairs"])
    routes = [len(v) for v in data["routes"].values()]
    segs = data["segments"]
    out: dict[str, Any] = {
        "n_hosts": n, "topo": "plan", "plan_s": round(plan_s, 3),
        "plan": {"nodes": len(data["nodes"]), "segments": len(segs),
                 "p2p_links": sum(len(s) == 2 for s in segs),
                 "cells": sum(len(s) > 2 for s in segs),
                 "interfaces": sum(len(s) for s in segs),
                 "routes_total": sum(routes), "routes_max_per_host": max(routes, default=0),
                 # which scale.scenario(n) this was (the generator may change)
                 "scenario_links": len(sc.links),
                 "scenario_sha1": hashlib.sha1(json.dumps(
                     scenario(n), sort_keys=True).encode()).hexdigest()[:12]},
        "ping_pairs": data["pairs"], "ping_pairs_hops": hops,
        "first_packet_hops": route_hops(sc, plan, [[data["src"], data["dst"]]])[0]}
    with tempfile.NamedTemporaryFile("w", prefix="mnref-plan-", suffix=".json") as f:
        json.dump(data, f)
        f.flush()
        os.chmod(f.name, 0o644)
        params = {"plan": f.name, "first_timeout": first_packet_timeout_s,
                  "echo": {"n_hosts": n, "topo": "plan"}}
        return _run_helper(HELPER_PLAN, params, out, timeout_s or 120 + 1.5 * n)


def _row(r: dict[str, Any]) -> str:
    """One line of the printed table (the JSON keeps everything)."""
    ph = r.get("phases_s", {})
    def f(v: Any) -> str:
        return "-" if v is None else f"{v:.2f}" if isinstance(v, float) else str(v)
    rss = r.get("pss_up_mb")
    if r.get("topo") == "plan":
        loss = r.get("ping_sample", {}).get("loss_pct")
        build = (f"hosts {f(ph.get('hosts'))} links {f(ph.get('links'))} addr "
                 f"{f(ph.get('addresses'))} routes {f(ph.get('routes'))} "
                 f"({r.get('plan', {}).get('routes_total')}) sw {f(ph.get('switch_start'))}")
    else:
        loss = r.get("pingall_sample", {}).get("loss_pct")
        build = (f"hosts {f(ph.get('hosts'))} links {f(ph.get('links'))} cfg "
                 f"{f(ph.get('host_config'))} sw {f(ph.get('switch_start'))}")
    return (f"{r['n_hosts']:>5} {r['topo']:<5} {build}"
            f" | up {f(r.get('start_total_s'))} first-pkt {f(r.get('first_packet_s'))} "
            f"(cmd->pkt {f(r.get('command_to_first_packet_s'))}) stop {f(ph.get('teardown'))} "
            f"| cpu {f(r.get('cpu_s', {}).get('total'))} s pss {f(rss)} MB "
            f"ovs idle {f(r.get('ovs_idle_cpu_pct'))}% loss {f(loss)}% "
            f"| left {r.get('leftovers') or 'none'} {r.get('error', '')}")


def sweep(sizes: list[int], topo: str = "line", timeout_s: float | None = None,
          repeat: int = 1, out_path: Path | None = None,
          echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure each size in turn (repeat times, interleaved); with out_path, the JSON is
    written after each so a later crash keeps the rest.  topo: "line" or "star" (measure(),
    n hosts on bridges) or "plan" (measure_plan(), our network for scale.scenario(n))."""
    if topo not in ("line", "star", "plan"):
        raise ValueError(f"topo must be line, star or plan, not {topo!r}")
    doc: dict[str, Any] = {"bench": "mininet-ref", "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                           "cpus": os.cpu_count(), "kernel": os.uname().release,
                           "mininet": _sh([SYSTEM_PYTHON, "-c",
                                           "import mininet.net as m; print(m.VERSION)"]).strip(),
                           "ovs": _sh(["ovs-vsctl", "--version"]).splitlines()[:1],
                           "datapath": "userspace (netdev)", "controller": None,
                           "topo": topo,
                           "rusage_self_start": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                           "runs": []}
    for n in [n for _ in range(repeat) for n in sizes]:
        r = measure_plan(n, timeout_s) if topo == "plan" else measure(n, topo, timeout_s)
        doc["runs"].append(r)
        if out_path is not None:
            out_path.write_text(json.dumps(doc, indent=1) + "\n")
        echo(_row(r))
    return doc


def run(console: Console) -> dict[str, Any]:
    """`make bench BENCH=mininet_ref`: the reference side of the scale curve, once per size."""
    if os.geteuid() != 0:
        raise RuntimeError("Mininet needs root")
    return sweep([25, 50, 100, 200, 500, 1000], echo=lambda line: console.print(
        line, highlight=False))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="25,50,100,200")
    p.add_argument("--topo", default="line", choices=("line", "star", "plan"),
                   help="plan: our network for testbed.scenario.generated.sagin(n)")
    p.add_argument("--out", default=None,
                   help="default results/bench/mininet-ref.json (-plan.json for --topo plan)")
    p.add_argument("--timeout", type=float, default=None, help="per size, seconds")
    p.add_argument("--repeat", type=int, default=1, help="measurements per size")
    a = p.parse_args(argv)
    if os.geteuid() != 0:
        print("Mininet needs root", file=sys.stderr)
        return 2
    out_path = Path(a.out or ("results/bench/mininet-ref-plan.json" if a.topo == "plan"
                              else "results/bench/mininet-ref.json"))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    doc = sweep([int(s) for s in a.sizes.split(",") if s], a.topo, a.timeout, a.repeat,
                out_path, lambda line: print(line, flush=True))
    print(f"-> {out_path}")
    return 1 if any("error" in r for r in doc["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
