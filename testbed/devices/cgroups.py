"""Per-node cgroups: the CPU quota and memory limit that make an emulated node as fast and as
big as the device its profile names (testbed/devices/profiles.py).

Every group of a run lives under ``sagin-<tag>`` at the top of each controller's hierarchy,
e.g. ``/sys/fs/cgroup/cpu/sagin-1a2b/edge1`` (cgroup v1) or ``/sys/fs/cgroup/sagin-1a2b/edge1``
(v2).  The run's tag in the name is what lets teardown of a SIGKILLed run, which has only the
ledger's tag to go on, find and remove them; nothing outside ``sagin-<tag>`` is ever touched.

cgroup v1 (separate ``cpu`` and ``memory`` hierarchies; ``cpu.cfs_quota_us``,
``memory.limit_in_bytes``) is what the development host has and what the tests exercise.
cgroup v2 (``cpu.max``, ``memory.max``; used when no v1 cpu hierarchy is mounted and a
cgroup2 mount lists ``cpu`` in ``cgroup.controllers``) is written to the kernel's documented
interface but NOT verified on a v2 host.  On a systemd v2 host the groups are created at the
root of the hierarchy, beside systemd's slices, as Mininet's CPULimitedHost does.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from testbed.devices.profiles import CpuQuota

TAG_PATTERN = re.compile(r"[0-9a-f]{4}")
NODE_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,31}")
MOUNTS = Path("/proc/self/mounts")


class CgroupError(RuntimeError):
    pass


@dataclass(frozen=True)
class Layout:
    """Where the controllers this module uses are mounted on this host."""

    version: int  # 1 or 2
    cpu: Path | None  # hierarchy root holding the cpu controller
    memory: Path | None  # hierarchy root holding the memory controller


def _mounts() -> list[tuple[str, str, list[str]]]:
    out = []
    for line in MOUNTS.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2] in ("cgroup", "cgroup2"):
            # /proc/mounts escapes spaces and tabs in paths as octal
            mnt = parts[1].encode().decode("unicode_escape")
            out.append((parts[2], mnt, parts[3].split(",")))
    return out


def detect() -> Layout | None:
    """v1 when a v1 hierarchy carries the cpu controller (a controller lives in one hierarchy
    only, so a hybrid host's empty cgroup2 mount is ignored), else v2 when a cgroup2 mount
    offers cpu; None when neither does."""
    v1: dict[str, Path] = {}
    v2: list[Path] = []
    for fstype, mnt, opts in _mounts():
        if fstype == "cgroup":
            for ctl in ("cpu", "memory"):
                if ctl in opts:
                    v1.setdefault(ctl, Path(mnt))
        else:
            v2.append(Path(mnt))
    if "cpu" in v1:
        return Layout(1, v1["cpu"], v1.get("memory"))
    for mnt in v2:
        try:
            ctls = (mnt / "cgroup.controllers").read_text().split()
        except OSError:
            continue
        if "cpu" in ctls:
            return Layout(2, mnt, mnt if "memory" in ctls else None)
    return None


def require() -> Layout:
    layout = detect()
    if layout is None:
        raise CgroupError(
            "no cgroup cpu controller on this host (no cgroup v1 hierarchy with 'cpu' in "
            f"{MOUNTS}, no cgroup2 mount listing cpu in cgroup.controllers): device profiles "
            "cannot be applied; remove `profile:` from the scenario's nodes, or mount the cpu "
            "controller (e.g. `mount -t cgroup -o cpu cgroup /sys/fs/cgroup/cpu`)")
    return layout


@dataclass(frozen=True)
class CgroupHandle:
    """One node's group: its directory in each controller hierarchy (one on v2)."""

    tag: str
    node: str
    version: int
    dirs: tuple[Path, ...]
    quota: CpuQuota | None
    memory_mb: int | None

    @property
    def procs_files(self) -> list[Path]:
        return [d / "cgroup.procs" for d in self.dirs]

    def pids(self) -> list[int]:
        found: set[int] = set()
        for f in self.procs_files:
            try:
                found.update(int(p) for p in f.read_text().split())
            except OSError:
                continue
        return sorted(found)


def _write(path: Path, value: str, what: str) -> None:
    try:
        path.write_text(value)
    except OSError as exc:
        raise CgroupError(f"cannot {what}: writing {value!r} to {path} failed: {exc}") from exc


def _run_roots(tag: str) -> list[Path]:
    """`sagin-<tag>` at the top of every mounted cgroup hierarchy (whatever the layout, so
    teardown finds groups even if the mounts changed since the run)."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", tag):
        return []  # cannot be one of ours: create() refuses such tags
    seen: set[Path] = set()
    out = []
    for _, mnt, _ in _mounts():
        p = Path(mnt) / f"sagin-{tag}"
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def create(tag: str, node: str, quota: CpuQuota | None, memory_mb: int | None = None,
           layout: Layout | None = None) -> CgroupHandle:
    """Make the node's group with its CPU quota (None: no limit) and memory limit (None: no
    limit).  Raises CgroupError naming the file that could not be written."""
    if not TAG_PATTERN.fullmatch(tag):
        raise ValueError(f"cgroup tag must be the run's 4 hex digits, got {tag!r}")
    if not NODE_PATTERN.fullmatch(node):
        raise ValueError(f"node name {node!r} is not a valid scenario node name")
    layout = layout or require()
    if memory_mb is not None and layout.memory is None:
        raise CgroupError(
            f"node {node}: a memory limit of {memory_mb} MB was asked for but the memory "
            "controller is not available on this host (not mounted, or not listed in the v2 "
            "cgroup.controllers)")
    if layout.version == 1:
        dirs = _create_v1(tag, node, quota, memory_mb, layout)
    else:
        dirs = _create_v2(tag, node, quota, memory_mb, layout)
    return CgroupHandle(tag, node, layout.version, tuple(dirs), quota, memory_mb)


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(exist_ok=True)
    except OSError as exc:
        raise CgroupError(f"cannot create cgroup {path}: {exc} (run as root; is the "
                          "hierarchy mounted read-write?)") from exc


def _create_v1(tag: str, node: str, quota: CpuQuota | None, memory_mb: int | None,
               layout: Layout) -> list[Path]:
    assert layout.cpu is not None
    dirs = []
    cpu = layout.cpu / f"sagin-{tag}" / node
    _mkdir(cpu.parent)
    _mkdir(cpu)
    dirs.append(cpu)
    if quota is not None:
        # period first: the kernel checks quota against the current period
        _write(cpu / "cpu.cfs_period_us", str(quota.period_us), f"set {node}'s CPU period")
        _write(cpu / "cpu.cfs_quota_us", str(quota.quota_us), f"set {node}'s CPU quota")
    if layout.memory is not None and layout.memory != layout.cpu:
        mem = layout.memory / f"sagin-{tag}" / node
        _mkdir(mem.parent)
        _mkdir(mem)
        dirs.append(mem)
    if memory_mb is not None:
        assert layout.memory is not None
        _write(layout.memory / f"sagin-{tag}" / node / "memory.limit_in_bytes",
               str(memory_mb * 1024 * 1024), f"set {node}'s memory limit")
    return dirs


def _enable(group: Path, controllers: Sequence[str]) -> None:
    have = (group / "cgroup.subtree_control").read_text().split()
    want = [c for c in controllers if c not in have]
    if want:
        _write(group / "cgroup.subtree_control", " ".join(f"+{c}" for c in want),
               f"enable {', '.join(want)} for the groups below {group}")


def _create_v2(tag: str, node: str, quota: CpuQuota | None, memory_mb: int | None,
               layout: Layout) -> list[Path]:
    """NOT verified on a v2 host (the development host is v1)."""
    assert layout.cpu is not None
    root = layout.cpu
    controllers = ["cpu", *(["memory"] if memory_mb is not None else [])]
    _enable(root, controllers)
    parent = root / f"sagin-{tag}"
    _mkdir(parent)
    _enable(parent, controllers)
    leaf = parent / node
    _mkdir(leaf)
    if quota is not None:
        _write(leaf / "cpu.max", f"{quota.quota_us} {quota.period_us}",
               f"set {node}'s CPU quota")
    if memory_mb is not None:
        _write(leaf / "memory.max", str(memory_mb * 1024 * 1024), f"set {node}'s memory limit")
    return [leaf]


def existing(tag: str, node: str) -> CgroupHandle | None:
    """The node's group of a running run, from its tag alone (for a command started from
    outside the run, e.g. `make exec`); None when the node has no group.  The quota and memory
    limit are not read back."""
    if not TAG_PATTERN.fullmatch(tag) or not NODE_PATTERN.fullmatch(node):
        return None
    layout = detect()
    if layout is None:
        return None
    roots = [layout.cpu] if layout.version == 2 else [layout.cpu, layout.memory]
    dirs = tuple(r / f"sagin-{tag}" / node for r in dict.fromkeys(roots) if r is not None)
    dirs = tuple(d for d in dirs if d.is_dir())
    return CgroupHandle(tag, node, layout.version, dirs, None, None) if dirs else None


def attach(handle: CgroupHandle, pid: int) -> None:
    """Move `pid` into the node's group in every hierarchy; its future children inherit it."""
    for f in handle.procs_files:
        _write(f, str(pid), f"move pid {pid} into node {handle.node}'s cgroup (was the run "
               "torn down already?)")


def join_argv(handle: CgroupHandle, argv: Sequence[str]) -> list[str]:
    """`argv` prefixed by a shell that moves itself into the group, then execs argv: the
    process is inside the group before its first instruction, so nothing it forks can escape
    (attaching after Popen leaves a window in which it may already have forked).  `sh` is on
    every host; `cgexec` is not, and it does not handle every v1/v2 layout.  If the group is
    gone the command is not run unlimited: it exits 125 with the reason in its log."""
    joins = " && ".join(f"echo $$ > {shlex.quote(str(f))}" for f in handle.procs_files)
    script = (f"{{ {joins}; }} || {{ echo \"sagin: cannot join cgroup of node "
              f"{handle.node} ({' '.join(str(d) for d in handle.dirs)}): is the run torn "
              f"down?\" >&2; exit 125; }}; exec \"$@\"")
    return ["sh", "-c", script, f"cgroup-{handle.node}", *argv]


def leftover_groups(tag: str) -> list[str]:
    """Every group of this run still on the host (the run's parents and their nodes)."""
    out = []
    for root in _run_roots(tag):
        if root.is_dir():
            out += [str(p) for p in sorted(root.iterdir()) if p.is_dir()]
            out.append(str(root))
    return out


def _procs(group: Path) -> list[int]:
    try:
        return [int(p) for p in (group / "cgroup.procs").read_text().split()]
    except OSError:
        return []


def remove(tag: str, timeout: float = 2.0) -> list[str]:
    """Remove the run's groups: kill what is still inside them (only the run's own processes
    can be there), move out what does not die in `timeout` (a process in uninterruptible
    sleep), then rmdir leaves and parents.  Returns the groups removed; what could not be
    removed stays listed by leftover_groups()."""
    roots = [r for r in _run_roots(tag) if r.is_dir()]
    groups = [leaf for r in roots for leaf in sorted(r.iterdir()) if leaf.is_dir()] + roots
    pids = {pid for g in groups for pid in _procs(g)}
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_procs(g) for g in groups):
        time.sleep(0.05)
    for g in groups:
        for pid in _procs(g):
            try:  # to the top of its hierarchy, which always accepts processes
                _hierarchy_root(g).joinpath("cgroup.procs").write_text(str(pid))
            except OSError:
                pass
    removed = []
    for g in groups:  # leaves first, then the run's parents
        try:
            g.rmdir()
            removed.append(str(g))
        except FileNotFoundError:
            pass
        except OSError:
            continue
    return removed


def _hierarchy_root(group: Path) -> Path:
    """The mount point above a `sagin-<tag>[/<node>]` group."""
    return group.parent if group.name.startswith("sagin-") else group.parent.parent
