"""The `kernel` mark: tests that need kernel modules this host may lack (sch_netem,
mac80211_hwsim, openvswitch).

Where this kernel has them (a researcher's stock kernel, or inside the VM) they run in place.
Where it does not (this build host), all of them run together in one boot of Debian's stock
kernel under qemu (testbed.vm), started in the background when collection ends, at the lowest
CPU priority (nice 19: the unit tests that run meanwhile, some with real processes and rate
probes, keep their CPU); the VM never overlaps a timing-sensitive emulation test (the first
one waits for it).  Each kernel test is reported on the host with the VM's outcome:
its failure text, its skip reason, and the VM's console log in results/kernel-vm/.
"""

from __future__ import annotations

import os
import subprocess
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LOG_DIR = REPO / "results" / "kernel-vm"
VM_TIMEOUT_S = 900.0


def kernel_here() -> str | None:
    """None when this kernel can run the kernel tests itself, else what it lacks."""
    if os.environ.get("SAGIN_IN_VM") == "1":
        return None
    from testbed.engines.features import kernel_lacks

    return ", ".join(kernel_lacks()) or None


@dataclass
class VmRun:
    """One VM boot that runs every delegated test; outcomes keyed by node id."""

    nodeids: list[str]
    outcomes: dict[str, tuple[str, str]] = field(default_factory=dict)
    error: str = ""
    done: threading.Event = field(default_factory=threading.Event)
    wall_s: float = 0.0
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        threading.Thread(target=self._run, name="kernel-vm", daemon=True).start()

    def _run(self) -> None:
        from testbed.vm import qemu

        try:
            LOG_DIR.mkdir(parents=True, exist_ok=True)
            junit = LOG_DIR / "junit.xml"
            junit.unlink(missing_ok=True)
            ids = " ".join(f"'{n}'" for n in self.nodeids)
            res = qemu.run(f".venv/bin/python -m pytest -p no:cacheprovider -q -rs "
                           f"--junitxml={junit} {ids}", rw=[LOG_DIR], timeout_s=VM_TIMEOUT_S,
                           started=lambda p: setattr(self, "proc", p), nice=19)
            self.wall_s = res.wall_s
            (LOG_DIR / "console.log").write_text(res.output)
            if junit.exists():
                self.outcomes = parse_junit(junit, REPO)
            if not self.outcomes:
                self.error = (f"the kernel VM ran no test (exit {res.rc}); console tail:\n"
                              + "\n".join(res.output.splitlines()[-40:]))
        except Exception as exc:  # noqa: BLE001 - reported on every delegated test
            self.error = f"the kernel VM could not run: {exc}"
        finally:
            self.done.set()


def parse_junit(path: Path, root: Path) -> dict[str, tuple[str, str]]:
    """node id -> (outcome, text) from pytest's junit XML."""
    out: dict[str, tuple[str, str]] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        module = case.get("classname", "").split(".")
        name = case.get("name", "")
        # classname is the dotted module path, plus the class when there is one
        for cut in range(len(module), 0, -1):
            candidate = root / ("/".join(module[:cut]) + ".py")
            if candidate.exists():
                parts = [str(candidate.relative_to(root)), *module[cut:], name]
                break
        else:
            continue
        nodeid = "::".join(parts)
        outcome, text = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                outcome = {"failure": "failed", "error": "failed"}.get(tag, "skipped")
                text = el.get("message", "") if tag == "skipped" else (
                    (el.get("message", "") + "\n" + (el.text or "")).strip())
                break
        out[nodeid] = (outcome, text)
    return out


_VM: VmRun | None = None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "kernel: needs sch_netem, mac80211_hwsim or openvswitch; runs in place "
        "where the kernel has them, else in one stock-kernel VM (testbed.vm)")


def _delegated_call(item: pytest.Item) -> None:
    assert _VM is not None
    _VM.done.wait()
    if _VM.error:
        pytest.fail(_VM.error, pytrace=False)
    outcome, text = _VM.outcomes.get(item.nodeid, ("missing", ""))
    if outcome == "failed":
        pytest.fail(f"in the stock-kernel VM ({LOG_DIR}/console.log):\n{text}", pytrace=False)
    if outcome == "skipped":
        pytest.skip(f"in the stock-kernel VM: {text}")
    if outcome == "missing":
        pytest.fail(f"the kernel VM did not report {item.nodeid}", pytrace=False)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    global _VM
    if "boards" not in (config.getoption("-m") or ""):
        lane = pytest.mark.skip(reason="the emulated-board lane runs on its own: make "
                                "test-boards (CI runs it after make test)")
        for item in items:
            if item.get_closest_marker("boards"):
                item.add_marker(lane)
    kernel_items = [i for i in items if i.get_closest_marker("kernel")]
    if not kernel_items:
        return
    lacking = kernel_here()
    if lacking is None:
        return
    from testbed.vm.qemu import available

    reason = available()
    if reason is not None:
        skip = pytest.mark.skip(reason=f"this kernel lacks {lacking} and the stock-kernel VM "
                                f"cannot run: {reason}")
        for item in kernel_items:
            item.add_marker(skip)
        return
    _VM = VmRun([i.nodeid for i in kernel_items])
    for item in kernel_items:
        # the test body and its fixtures run in the VM; here only its outcome is reported
        item.setup = lambda: None  # type: ignore[method-assign]
        item.runtest = lambda item=item: _delegated_call(item)  # type: ignore[method-assign]
    # host tests that are not timing-sensitive first, so they overlap the VM's boot and run
    kernel_ids = {id(i) for i in kernel_items}

    def order(item: pytest.Item) -> int:
        if id(item) in kernel_ids:
            return 2
        return 1 if item.get_closest_marker("emulation") or item.get_closest_marker("slow") \
            else 0
    items.sort(key=order)


def pytest_collection_finish(session: pytest.Session) -> None:
    if _VM is not None and not session.config.option.collectonly:
        _VM.start()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A session that ends early (-x, Ctrl-C) leaves no VM running."""
    if _VM is not None and _VM.proc is not None and _VM.proc.poll() is None:
        _VM.proc.kill()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if _VM is not None and not _VM.done.is_set() and (
            item.get_closest_marker("emulation") or item.get_closest_marker("slow")):
        _VM.done.wait()
