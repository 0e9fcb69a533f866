"""A hardware-free stand-in for a physical board, so that the hardware-in-the-loop code path
(testbed.hil.boards) is tested end to end on any host, without a Jetson.

`BoardSim` is what the testbed sees of a board, and nothing more: a separate network namespace
`sagin-board-<tag>-<name>` reached from the root namespace over a veth with a private
link-local /29 (169.254.x.y: nothing can leave the machine), and a real OpenSSH server
(`/usr/sbin/sshd -D`, key-only, root login by key) listening on the board's address.  The
preflight, deploy, tunnel and cleanup code runs against it unchanged: it connects over SSH,
copies files over SFTP, runs `ip` and the agent in the board's namespace.

What it does not reproduce: the board's own filesystem and Python.  The namespace shares this
host's filesystem, so "the board's" python3 is the host's, and the workdir is a directory
under the simulator's state directory.  Its kernel is the host's too: a tunnel type the host
lacks, the stand-in lacks as well.

With `data_nic=True` it also has a second veth, `data0` on the board and an address-less
`sgb<tag>d` in the root namespace: a stand-in for a spare NIC cabled to the board (join mode
nic).

Every simulator writes its state (owner process, namespace, veths) before creating them, and
`clean_stale()` removes those whose owner died, like the run ledger does for runs.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from testbed.lifecycle.ledger import proc_start_ticks

SSHD = Path("/usr/sbin/sshd")
SIM_BASE = Path(os.environ.get("SAGIN_BOARDSIM_DIR", "/run/sagin-boardsim"))
PRIVSEP_DIR = Path("/run/sshd")  # sshd (Debian) refuses to start without it
LINK_LOCAL = ipaddress.ip_network("169.254.0.0/16")
# never these: the cloud metadata address's /24, and the reserved first and last /24
AVOID = [ipaddress.ip_network(n) for n in ("169.254.169.0/24", "169.254.0.0/24",
                                           "169.254.255.0/24")]
FALLBACK_DEVICES = {"gre0", "gretap0", "erspan0", "ip_vti0", "tunl0", "sit0", "ip6tnl0",
                    "ip6gre0", "ip6_vti0"}  # created in every namespace by the tunnel modules


def _run(argv: list[str], check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, **kw)
    if check and proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}` failed: {proc.stderr.strip()}")
    return proc


def _host_networks() -> list[ipaddress.IPv4Network]:
    out = _run(["ip", "-j", "-4", "addr", "show"]).stdout
    return [ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False)
            for link in json.loads(out or "[]") for a in link.get("addr_info", [])]


class BoardSim:
    """One stand-in board; use as a context manager (`with BoardSim("b1") as board:`)."""

    user = "root"
    port = 22
    prefix = "sagin-board"  # of the namespace's name (a stand-in host says sagin-host)
    # sshd in the machine's mount namespace (nsenter --net) instead of `ip netns exec`'s own:
    # a stand-in host creates namespaces (ip netns add), which must be visible to all
    share_mounts = False
    board_data_interface = "data0"

    def __init__(self, name: str = "board", *, data_nic: bool = False,
                 base: Path = SIM_BASE) -> None:
        self.name = name
        self.tag = secrets.token_hex(2)
        self.netns = f"{self.prefix}-{self.tag}-{name}"
        self.dir = base / f"{self.tag}-{name}"
        self.mgmt_veth = f"sgb{self.tag}m"  # root-namespace end of the management link
        self.data_veth = f"sgb{self.tag}d" if data_nic else None  # the "spare NIC"
        self.key = self.dir / "client_key"
        self.known_hosts = self.dir / "known_hosts"
        self.workdir = self.dir / "home"
        self.host_address = self.address = self.spare_address = ""
        self.sshd: subprocess.Popen[bytes] | None = None

    # ---- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> BoardSim:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> BoardSim:
        if not SSHD.is_file():
            raise RuntimeError(f"openssh-server missing ({SSHD}): run make setup")
        self.dir.mkdir(parents=True, exist_ok=False, mode=0o700)
        self._save_state()  # before anything else exists
        subnet = self._pick_subnet()
        hosts = list(subnet.hosts())
        self.host_address, self.address = str(hosts[0]), str(hosts[1])
        self.spare_address = str(hosts[2])  # on the link, owned by nobody: never answers
        self._save_state()
        _run(["ip", "netns", "add", self.netns])
        _run(["ip", "-n", self.netns, "link", "set", "lo", "up"])
        _run(["ip", "link", "add", self.mgmt_veth, "type", "veth", "peer", "name", "mgmt0",
              "netns", self.netns])
        _run(["ip", "addr", "add", f"{self.host_address}/29", "dev", self.mgmt_veth])
        _run(["ip", "link", "set", "dev", self.mgmt_veth, "up"])
        _run(["ip", "-n", self.netns, "addr", "add", f"{self.address}/29", "dev", "mgmt0"])
        _run(["ip", "-n", self.netns, "link", "set", "dev", "mgmt0", "up"])
        if self.data_veth is not None:
            _run(["ip", "link", "add", self.data_veth, "type", "veth", "peer", "name",
                  self.board_data_interface, "netns", self.netns])
        self.workdir.mkdir(mode=0o700)
        self._keys_and_config()
        self._start_sshd()
        return self

    def _save_state(self) -> None:
        pid = os.getpid()
        state = {"owner_pid": pid, "owner_start": proc_start_ticks(pid), "netns": self.netns,
                 "links": [x for x in (self.mgmt_veth, self.data_veth) if x],
                 "address": self.address}
        (self.dir / "state.json").write_text(json.dumps(state))

    def _pick_subnet(self) -> ipaddress.IPv4Network:
        used = _host_networks()
        for _ in range(64):
            third, fourth = secrets.randbelow(256), secrets.randbelow(32) * 8
            net = ipaddress.ip_network(f"169.254.{third}.{fourth}/29")
            if not any(net.overlaps(n) for n in [*AVOID, *used]):
                return net
        raise RuntimeError("no free /29 in 169.254.0.0/16 on this host")

    def _keys_and_config(self) -> None:
        d = self.dir
        for path, comment in ((d / "ssh_host_ed25519_key", "boardsim-host"),
                              (self.key, "boardsim-client")):
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
        auth = d / "authorized_keys"
        auth.write_text((d / "client_key.pub").read_text())
        auth.chmod(0o600)
        host_pub = (d / "ssh_host_ed25519_key.pub").read_text().split()
        self.known_hosts.write_text(f"{self.address} {host_pub[0]} {host_pub[1]}\n")
        (d / "sshd_config").write_text("\n".join([
            f"ListenAddress {self.address}",
            f"Port {self.port}",
            f"HostKey {d / 'ssh_host_ed25519_key'}",
            f"PidFile {d / 'sshd.pid'}",
            f"AuthorizedKeysFile {auth}",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes yes",
            "UseDNS no",
            "PrintMotd no",
            "Subsystem sftp internal-sftp",
            "LogLevel VERBOSE",
            "",
        ]))
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        test = _run([str(SSHD), "-t", "-f", str(d / "sshd_config")], check=False)
        if test.returncode != 0:
            raise RuntimeError(f"sshd rejects its configuration: {test.stderr.strip()}")

    def _start_sshd(self, timeout: float = 5.0) -> None:
        log = self.dir / "sshd.log"
        self.sshd = subprocess.Popen(
            [*(["nsenter", f"--net=/run/netns/{self.netns}"] if self.share_mounts
               else ["ip", "netns", "exec", self.netns]), str(SSHD), "-D", "-f",
             str(self.dir / "sshd_config"), "-E", str(log)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.sshd.poll() is not None:
                raise RuntimeError(f"sshd exited ({self.sshd.returncode}): "
                                   f"{log.read_text(errors='replace')[-800:]}")
            try:
                with socket.create_connection((self.address, self.port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sshd does not listen on {self.address}:{self.port} "
                                       f"after {timeout:g} s (log {log})") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Everything goes: sshd and any process left in the board, the namespace (its veth
        ends take the root ends along), the state directory."""
        if self.sshd is not None and self.sshd.poll() is None:
            os.killpg(self.sshd.pid, signal.SIGTERM)
            try:
                self.sshd.wait(timeout=3)
            except subprocess.TimeoutExpired:
                os.killpg(self.sshd.pid, signal.SIGKILL)
                self.sshd.wait(timeout=3)
        _destroy(self.netns, [x for x in (self.mgmt_veth, self.data_veth) if x], self.dir)

    # ---- what tests and docs need -------------------------------------------------------------
    def run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        """A command on the board (in its namespace)."""
        return _run(["ip", "netns", "exec", self.netns, *argv], check=False)

    def inventory_entry(self, replaces: str, profile: str, join: dict[str, Any] | None = None,
                        **extra: Any) -> dict[str, Any]:
        """This board as an entry of an inventory file."""
        if join is None:
            join = {"mode": "vxlan"}
        if join.get("mode") == "nic" and self.data_veth is not None:
            join = {"mode": "nic", "interface": self.data_veth,
                    "board_interface": self.board_data_interface, **join}
        return {"name": self.name, "address": self.address,
                "ssh": {"user": self.user, "key": str(self.key), "port": self.port,
                        "known_hosts": str(self.known_hosts)},
                "profile": profile, "replaces": replaces, "join": join,
                "workdir": str(self.workdir), **extra}

    def leftovers(self) -> dict[str, list[str]]:
        """What a run left on the board: processes besides sshd's listener, interfaces and
        addresses besides the management link, policy rules besides the defaults, run files."""
        pids = _run(["ip", "netns", "pids", self.netns], check=False).stdout.split()
        listener = self.sshd.pid if self.sshd is not None else -1
        procs = []
        for pid in pids:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            state, ppid = stat.rsplit(")", 1)[1].split()[:2]
            if state != "Z" and int(pid) != listener and int(ppid) != listener \
                    and "sshd" not in cmd:
                procs.append(f"{pid} {cmd.strip()}")
        links = json.loads(self.run(["ip", "-j", "addr", "show"]).stdout or "[]")
        keep = {"lo", "mgmt0", self.board_data_interface, *FALLBACK_DEVICES}
        ifaces = [link["ifname"] for link in links if link["ifname"] not in keep]
        addrs = [f"{link['ifname']}:{a['local']}" for link in links
                 for a in link.get("addr_info", []) if a.get("family") == "inet"
                 and link["ifname"] not in ("lo", "mgmt0")]
        rules = [r for r in json.loads(self.run(["ip", "-j", "rule", "list"]).stdout or "[]")
                 if r.get("priority") not in (0, 32766, 32767)]
        run_dir = self.workdir / "sagin-hil-agent" / "run"
        files = [str(p) for p in run_dir.rglob("*")] if run_dir.exists() else []
        return {"processes": procs, "interfaces": ifaces, "addresses": addrs,
                "rules": [json.dumps(r) for r in rules], "files": files}


def _destroy(netns: str, links: list[str], state_dir: Path) -> None:
    pids = _run(["ip", "netns", "pids", netns], check=False).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    _run(["ip", "netns", "del", netns], check=False)
    for link in links:
        if Path(f"/sys/class/net/{link}").exists():
            _run(["ip", "link", "del", link], check=False)
    shutil.rmtree(state_dir, ignore_errors=True)


def clean_stale(base: Path = SIM_BASE) -> list[str]:
    """Remove the stand-ins whose owner process is gone (a test run killed midway)."""
    done = []
    for state_file in sorted(base.glob("*/state.json")) if base.is_dir() else []:
        try:
            st = json.loads(state_file.read_text())
        except (OSError, ValueError):
            continue
        if proc_start_ticks(st["owner_pid"]) == st["owner_start"]:
            continue
        _destroy(st["netns"], st["links"], state_file.parent)
        done.append(st["netns"])
    return done
