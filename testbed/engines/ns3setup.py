"""The ns-3 wheel's helper-path fix.

The PyPI `ns3` wheel was built under /gcl-builds and its libraries exec their helper programs
(tap-creator and friends) at that hard-coded build path, while the binaries actually ship in
`site-packages/ns3/libexec/ns3/` and need `LD_LIBRARY_PATH=site-packages/ns3/lib64`.  We put
small wrapper scripts at the hard-coded paths, so that ns-3 programs of the user's own using
TapBridge or FdNetDevice work with the wheel (the testbed's engine opens its taps itself:
testbed.engines.taps).

Run as `python -m testbed.engines.ns3setup` (the Makefile does); it is idempotent.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BUILD_ROOT = Path("/gcl-builds/build/src")
HELPERS = {
    "tap-bridge/ns3.44-tap-creator": "ns3.44-tap-creator",
    "fd-net-device/ns3.44-tap-device-creator": "ns3.44-tap-device-creator",
    "fd-net-device/ns3.44-raw-sock-creator": "ns3.44-raw-sock-creator",
}

_WRAPPER = """#!/bin/sh
# Installed by sagin-hil (testbed/engines/ns3setup.py): ns-3 wheel helper-path fix.
NS3DIR="${{SAGIN_NS3_DIR:-{ns3dir}}}"
LD_LIBRARY_PATH="$NS3DIR/lib64${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}" \\
  "$NS3DIR/libexec/ns3/{binary}" "$@"
rc=$?
exit $rc
"""



def ns3_dir() -> Path:
    """Where the ns3 wheel lives in the current interpreter's environment."""
    spec = importlib.util.find_spec("ns3")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the ns3 wheel is not installed in this environment (make setup)")
    return Path(next(iter(spec.submodule_search_locations)))


def wrapper_text(binary: str, ns3dir: Path) -> str:
    return _WRAPPER.format(ns3dir=ns3dir, binary=binary)


def install(build_root: Path = BUILD_ROOT) -> list[Path]:
    """Write the wrappers that differ from what is there; return the paths written."""
    base = ns3_dir()
    written = []
    for rel, binary in HELPERS.items():
        real = base / "libexec" / "ns3" / binary
        if not real.exists():
            raise RuntimeError(f"ns-3 helper {real} is missing: reinstall the ns3 wheel")
        target = build_root / rel
        text = wrapper_text(binary, base)
        if target.exists() and target.read_text() == text:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(0o755)
        written.append(target)
    return written


def main() -> int:
    try:
        written = install()
    except (RuntimeError, OSError) as exc:
        print(f"[setup] ns-3 helper-path fix failed: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(f"[setup] ns-3 helper wrapper installed: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
