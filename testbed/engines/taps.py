"""Tap devices opened directly inside their nodes' namespaces, by the ns-3 process.

A tun/tap device is created in the network namespace of the task that *opens*
/dev/net/tun, so the opening thread enters each node's namespace (setns, namespace by
namespace), opens the device there and comes back: the tap never exists in the root
namespace, and thousands of taps take a fraction of a second instead of a helper process each
(ns-3's TapBridge forks its tap-creator per tap).

The taps are persistent (TUNSETPERSIST): closing a non-persistent tap unregisters its device
there and then, one RCU grace period each, serialised on the kernel's rtnl lock (3,500 taps:
86 s on this machine); a persistent one stays in its namespace when the ns-3 process exits,
and deleting the run's namespaces (teardown, `make clean`: they are in the ledger) removes
all of them in one batch (0.2 s).  A tap never outlives its namespace.
"""

from __future__ import annotations

import fcntl
import os
import struct
from collections.abc import Iterable

from testbed.lifecycle.netns import inside

TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000


class TapError(RuntimeError):
    pass


def open_taps(ends: Iterable[tuple[str, str]]) -> dict[str, int]:
    """Open one tap per (name, netns) and return name -> non-blocking file descriptor.

    Runs in the calling thread, which is back in its own namespace when this returns (also
    on error, when the descriptors already opened are closed)."""
    by_ns: dict[str, list[str]] = {}
    for name, netns in ends:
        by_ns.setdefault(netns, []).append(name)
    fds: dict[str, int] = {}
    try:
        for netns, names in by_ns.items():
            if not os.path.exists(f"/run/netns/{netns}"):
                raise TapError(f"no network namespace {netns!r} for taps {names}")
            with inside(f"/run/netns/{netns}"):
                for name in names:
                    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
                    fds[name] = fd
                    try:
                        fcntl.ioctl(fd, TUNSETIFF,
                                    struct.pack("16sH22x", name.encode(), IFF_TAP | IFF_NO_PI))
                        fcntl.ioctl(fd, TUNSETPERSIST, 1)
                    except OSError as exc:
                        raise TapError(f"tap {name} in {netns}: {exc.strerror}") from None
    except BaseException:
        for fd in fds.values():
            os.close(fd)
        raise
    return fds
