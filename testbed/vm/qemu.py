"""Boot the stock kernel under qemu and run one command in it.

Software emulation (`-accel tcg`) on purpose: this build host's KVM runs only specially built
guest kernels (a stock kernel aborts on an MSR or crawls), and one vCPU is faster than two
under TCG.  CPU-bound code runs ~11x slower than on the host, so callers keep heavy work
(ns-3) out of the VM and treat timings measured inside as relative.

The guest sees the host's root filesystem read-only (9p), with throw-away writable layers over
the directories programs write to, and the host directories the caller lists in `rw` mounted
read-write at the same paths: that is how results come back.  Nothing in the guest has a
network path out of it: qemu gets no network device at all.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from testbed.vm.image import SETUP_HINT, VmUnavailable, find_kernel, initramfs

REPO = Path(__file__).resolve().parents[2]
# host directories the guest may write to (throw-away overlays); /tmp and /run are fresh tmpfs
OVERLAYS = ("/etc", "/var", "/root", "/home", "/opt", "/srv", "/usr/local", str(REPO))
MEMORY_MB = 2048

STAGE2 = """\
{env}
mkdir -p /dev/pts /dev/shm /run/netns
mount -t devpts devpts /dev/pts
mount -t tmpfs shm /dev/shm
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
ip link set lo up
modprobe -q tun  # /dev/net/tun (OVS userspace datapath, ns-3 taps): no udev here to make it
hostname sagin-vm
echo 1 > /proc/sys/kernel/printk_ratelimit 2>/dev/null
echo "4 4 1 7" > /proc/sys/kernel/printk
cd {cwd} || exit 1
echo "vm: up in $(cut -d' ' -f1 /proc/uptime) s (kernel $(uname -r))"
/bin/sh /run/sagin-ctl/cmd.sh < /dev/null
echo $? > /run/sagin-ctl/rc
sync
echo 1 > /proc/sys/kernel/printk
echo o > /proc/sysrq-trigger
"""


@dataclass
class VmResult:
    rc: int
    output: str
    wall_s: float
    kernel: str

    @property
    def ok(self) -> bool:
        return self.rc == 0


def qemu_binary() -> str:
    exe = shutil.which("qemu-system-x86_64")
    if exe is None:
        raise VmUnavailable(f"qemu-system-x86_64 is not installed: {SETUP_HINT}")
    return exe


def available() -> str | None:
    """None when a VM can boot here, else the reason it cannot (for skips)."""
    try:
        qemu_binary()
        initramfs(find_kernel())
    except (VmUnavailable, OSError, subprocess.CalledProcessError) as exc:
        return str(exc)
    if os.geteuid() != 0:
        return "the stock-kernel VM shares / with qemu and runs as root: run as root"
    return None


def run(command: str, *, cwd: Path = REPO, rw: list[Path] | tuple[Path, ...] = (),
        env: dict[str, str] | None = None, memory_mb: int = MEMORY_MB,
        timeout_s: float = 1200.0, echo: bool = False,
        started: Callable[[subprocess.Popen[bytes]], None] | None = None,
        nice: int = 0) -> VmResult:
    """Run `command` (a shell command line) as root in the stock kernel; return its exit code
    and its console output.  rc is -1 when the guest died or timed out before reporting.
    `started` receives the qemu process (a caller that may exit first can kill it); an
    exception or Ctrl-C here kills it too: no VM outlives its caller.  `nice`: the VM's CPU
    priority, for a VM that runs beside other work (19: it only takes idle CPU)."""
    kernel = find_kernel()
    initrd = initramfs(kernel)
    exe = qemu_binary()
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sagin-vm-") as ctl_dir:
        ctl = Path(ctl_dir)
        environment = {"HOME": "/root", "SAGIN_IN_VM": "1", "MPLCONFIGDIR": "/tmp/mpl",
                       "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                       "LANG": "C.UTF-8", "TERM": "dumb", **(env or {})}
        exports = "\n".join(f"export {k}={shlex.quote(v)}" for k, v in environment.items())
        (ctl / "stage2.sh").write_text(STAGE2.format(env=exports, cwd=shlex.quote(str(cwd))))
        (ctl / "cmd.sh").write_text(command + "\n")
        (ctl / "overlays").write_text("\n".join(d for d in OVERLAYS if Path(d).is_dir()) + "\n")
        shares = [Path(p).resolve() for p in rw]
        for p in shares:
            p.mkdir(parents=True, exist_ok=True)
        (ctl / "shares").write_text("".join(f"rw{i} {p}\n" for i, p in enumerate(shares)))
        argv = [*(["nice", "-n", str(nice)] if nice else []), exe, "-accel", "tcg",
                "-cpu", "max", "-smp", "1", "-m", str(memory_mb),
                "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
                "-no-reboot", "-kernel", str(kernel.vmlinuz), "-initrd", str(initrd),
                "-append", "console=ttyS0 quiet loglevel=3 panic=-1 tsc=reliable",
                "-virtfs", "local,path=/,mount_tag=root,security_model=none,readonly=on,"
                           "multidevs=remap",
                "-virtfs", f"local,path={ctl},mount_tag=sagin-ctl,security_model=none"]
        for i, p in enumerate(shares):
            argv += ["-virtfs", f"local,path={p},mount_tag=rw{i},security_model=none,"
                                "multidevs=remap"]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        chunks: list[bytes] = []

        def pump() -> None:
            assert proc.stdout is not None
            for line in iter(proc.stdout.readline, b""):
                chunks.append(line)
                if echo:
                    sys.stdout.write(line.decode(errors="replace").replace("\r", ""))
                    sys.stdout.flush()

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        if started is not None:
            started(proc)
        timed_out = False
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        reader.join(timeout=5)
        output = b"".join(chunks).decode(errors="replace").replace("\r", "")
        rc_file = ctl / "rc"
        rc = int(rc_file.read_text().strip()) if rc_file.exists() else -1
        if timed_out:
            output += f"\nvm: killed after {timeout_s:.0f} s\n"
        elif rc == -1:
            output += "\nvm: the guest stopped without reporting an exit code\n"
    return VmResult(rc=rc, output=output, wall_s=round(time.monotonic() - t0, 2),
                    kernel=kernel.release)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m testbed.vm.qemu", description=(
        "run a command as root inside Debian's stock kernel (netem, mac80211_hwsim, "
        "openvswitch), on this host's files"))
    p.add_argument("--rw", action="append", default=[], type=Path,
                   help="host folder the guest may write to (repeatable)")
    p.add_argument("--timeout", type=float, default=1200.0)
    p.add_argument("command", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    cmd = " ".join(shlex.quote(a) for a in args.command if a != "--") or "uname -a"
    try:
        res = run(cmd, rw=args.rw, timeout_s=args.timeout, echo=True)
    except VmUnavailable as exc:
        print(f"vm: {exc}", file=sys.stderr)
        return 2
    print(f"vm: exit {res.rc} after {res.wall_s:.1f} s (kernel {res.kernel})", file=sys.stderr)
    return res.rc if res.rc >= 0 else 1


if __name__ == "__main__":
    sys.exit(main())
