"""The run folder: results/<scenario>/<run-id>/ with a manifest, the resolved scenario and the
network plan written first, so that even a run that dies at once leaves valid files."""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from testbed.engines import features
from testbed.scenario.files import RESULTS


def new_run(scenario: str, base: Path = RESULTS) -> tuple[str, str, Path]:
    tag = secrets.token_hex(2)
    run_id = time.strftime("%Y%m%d-%H%M%S") + f"-{tag}"
    path = base / scenario / run_id
    path.mkdir(parents=True, exist_ok=False)
    latest = base / scenario / "latest"
    tmp = latest.with_name(".latest.tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(run_id)
    tmp.replace(latest)
    return run_id, tag, path


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
        return out.splitlines()[0].strip() if out else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"


def _pkg(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def manifest(scenario: str, run_id: str, seed: int, source: str) -> dict[str, Any]:
    root = Path(__file__).resolve().parents[2]
    commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
    dirty = bool(subprocess.run(["git", "-C", str(root), "status", "--porcelain"],
                                capture_output=True, text=True).stdout.strip())
    return {
        "scenario": scenario, "run_id": run_id, "source": source, "seed": seed,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "status": "starting",
        # setup, health, running, teardown, analysis, ended: where a killed run stopped
        "phase": "setup",
        "project_commit": commit + ("-dirty" if dirty else ""),
        "versions": {
            "sagin-hil": _pkg("sagin-hil"), "ns3": _pkg("ns3"), "os-ken": _pkg("os-ken"),
            "openvswitch": _version(["ovs-vswitchd", "--version"]),
            "iperf3": _version(["iperf3", "--version"]),
            "tcpdump": _version(["tcpdump", "--version"]),
            "python": _version(["python3", "--version"]),
        },
        "host": features.report(),
    }
