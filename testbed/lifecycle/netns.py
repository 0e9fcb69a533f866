"""Work inside named network namespaces without a process per namespace.

setns changes only the calling thread, and Python 3.11 has no os.setns: a thread enters a
namespace through libc.  Whatever that thread opens there (a /proc/sys/net file, a socket,
/proc/thread-self/net/dev) belongs to the namespace it was in at the open, and stays so after
it leaves.  The work runs in a short-lived thread of its own, never one the run uses for
anything else, so that a failure to come back cannot leave a worker in a node's namespace.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from testbed.lifecycle.sh import CommandError

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")
_libc = ctypes.CDLL(None, use_errno=True)

# linux/sockios.h, linux/if.h, linux/ethtool.h
SIOCGIFFLAGS, SIOCSIFFLAGS, SIOCETHTOOL = 0x8913, 0x8914, 0x8946
IFF_UP = 0x1
ETHTOOL_STXCSUM = 0x17

T = TypeVar("T")


@contextmanager
def inside(netns_file: str) -> Iterator[None]:
    """The calling thread in another network namespace for the block's duration."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(netns_file, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if _libc.setns(target, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns {netns_file}")
        finally:
            os.close(target)
        try:
            yield
        finally:
            if _libc.setns(home, CLONE_NEWNET) != 0:  # pragma: no cover - would be fatal
                raise OSError(ctypes.get_errno(), "setns back to the host namespace")
    finally:
        os.close(home)


def in_thread(fn: Callable[[], T], name: str = "netns") -> T:
    """fn() in a short-lived thread; its result, or its exception raised here."""
    result: list[T] = []
    error: list[BaseException] = []

    def body() -> None:
        try:
            result.append(fn())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            error.append(exc)

    t = threading.Thread(target=body, name=name)
    t.start()
    t.join()
    if error:
        raise error[0]
    return result[0]


def parse_sysctls(text: str) -> dict[str, str]:
    """'a.b=1 c.d=0' (sysctl -w arguments) -> {'a.b': '1', 'c.d': '0'}."""
    return dict(kv.split("=", 1) for kv in text.split())


def _flags(sock: socket.socket, ifname: str) -> int:
    req = struct.pack("16sH22x", ifname.encode(), 0)
    return int(struct.unpack("16sH22x", fcntl.ioctl(sock, SIOCGIFFLAGS, req))[1])


def _up(sock: socket.socket, ifname: str) -> None:
    flags = _flags(sock, ifname)
    if not flags & IFF_UP:
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH22x", ifname.encode(), flags | IFF_UP))


def _tx_checksum_off(sock: socket.socket, ifname: str) -> None:
    """`ethtool -K <ifname> tx off`: the kernel clears every tx checksum feature (and what
    depends on them, TSO/GSO) exactly as for ethtool."""
    value = ctypes.create_string_buffer(struct.pack("II", ETHTOOL_STXCSUM, 0))
    req = ctypes.create_string_buffer(struct.pack("16sP16x", ifname.encode(),
                                                  ctypes.addressof(value)))
    fcntl.ioctl(sock, SIOCETHTOOL, req)


def prepare(namespaces: Iterable[str], sysctls: dict[str, str],
            netns_dir: Path = NETNS_DIR) -> None:
    """In each namespace: `sysctl -w` each of sysctls, then `ip link set lo up`; one thread
    for all of them.  Raises CommandError naming the namespace and what failed."""
    paths = {key: "/proc/sys/" + key.replace(".", "/") for key in sysctls}

    def work() -> None:
        for ns in namespaces:
            step = "setns"
            try:
                with inside(str(netns_dir / ns)):
                    for key, value in sysctls.items():
                        step = f"sysctl -w {key}={value}"
                        fd = os.open(paths[key], os.O_WRONLY | os.O_CLOEXEC)
                        try:
                            os.write(fd, value.encode())
                        finally:
                            os.close(fd)
                    step = "ip link set lo up"
                    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                        _up(sock, "lo")
            except OSError as exc:
                raise CommandError(["netns", ns, step], exc.errno or 1,
                                   exc.strerror or str(exc)) from exc

    in_thread(work, name="netns-prepare")


def tx_checksum_off(devices: dict[str, list[str]], netns_dir: Path = NETNS_DIR) -> None:
    """`ethtool -K <dev> tx off` for {namespace: [dev, ...]}; one thread for all of them.
    Raises CommandError naming the namespace and device that failed."""
    def work() -> None:
        for ns, names in devices.items():
            if not names:
                continue
            name = ""
            try:
                with inside(str(netns_dir / ns)), \
                        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                    for name in names:
                        _tx_checksum_off(sock, name)
            except OSError as exc:
                raise CommandError(["netns", ns, "ethtool", "-K", name, "tx", "off"],
                                   exc.errno or 1, exc.strerror or str(exc)) from exc

    in_thread(work, name="netns-ethtool")


def pids(namespaces: Iterable[str], netns_dir: Path = NETNS_DIR) -> dict[str, list[int]]:
    """{namespace: the processes in it} - `ip netns pids` for many namespaces in one walk of
    /proc.  Namespaces already gone are left out."""
    ids: dict[tuple[int, int], str] = {}
    for ns in namespaces:
        try:
            st = os.stat(netns_dir / ns)
        except OSError:
            continue
        ids[(st.st_dev, st.st_ino)] = ns
    out: dict[str, list[int]] = {}
    if not ids:
        return out
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:  # gone meanwhile, or a kernel thread
            continue
        ns = ids.get((st.st_dev, st.st_ino))
        if ns is not None:
            out.setdefault(ns, []).append(int(entry))
    return out


def batches(tool: str, lines: dict[str, list[str]], netns_dir: Path = NETNS_DIR) -> None:
    """`<tool> -n <ns> -batch -` (ip or tc) for {namespace: its lines}, without the cost of
    -n: for -n the tool unshares a mount namespace, a copy of every mount of the host, the
    /run/netns bind mounts included, so each call grows with the number of namespaces (~10 ms
    each beside 1,000 of them).  Here one thread enters each namespace in turn and starts the
    tool there (a child starts in the namespace of the thread that forks it).  Stops at the
    first error: CommandError, as from sh.ip_batch(lines, ns)."""
    def work() -> None:
        for ns, text in lines.items():
            if not text:
                continue
            with inside(str(netns_dir / ns)):
                proc = subprocess.run([tool, "-batch", "-"], input="\n".join(text) + "\n",
                                      capture_output=True, text=True, timeout=120)
            if proc.returncode != 0:
                raise CommandError([tool, "-n", ns, "-batch", "-"], proc.returncode,
                                   proc.stderr + "\n(batch input:\n" + "\n".join(text) + ")")

    in_thread(work, name=f"netns-{tool}")
