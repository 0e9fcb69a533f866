"""The hosts of a multi-host run: from the scenario's `cluster:` section or from an inventory
file (`--hosts FILE`, the same shape: `hosts: [...]`, optional `placement:`), checked before
anything is created, with errors naming the file, the field and the fix.

The inventory wins over the scenario's section when both are given (a scenario says what to
emulate; which machines run it belongs to the lab, like the boards' inventory).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from testbed.scenario.cluster import Cluster, Host
from testbed.scenario.errors import Problem, ScenarioError, field_path
from testbed.scenario.files import read_or_raise
from testbed.scenario.model import Scenario

PROJECT = Path(__file__).resolve().parents[2]  # this checkout: the default project on a host


class HostsError(ScenarioError):
    """An unusable host list: rendered like a scenario error (file, field, fix)."""


def parse(data: Any, source: Path | str) -> Cluster:
    if not isinstance(data, dict) or "hosts" not in data:
        raise HostsError(source, [Problem("", "the file must be a mapping with hosts: [...]",
                                          "see docs/multi-host.md (Hosts)")])
    try:
        return Cluster.model_validate(data)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            msg = str(e["msg"]).removeprefix("Value error, ")
            fix = ""
            if e["type"] == "extra_forbidden":
                msg, fix = f"unknown field '{e['loc'][-1]}'", \
                    f"allowed: {', '.join(Host.model_fields)}" if "hosts" in e["loc"] else ""
            elif e["type"] == "missing":
                fix = "add it (key: the private key file the coordinator logs in with)" \
                    if e["loc"][-1] == "key" else "add it"
            problems.append(Problem(field_path(tuple(e["loc"])), msg, fix))
        raise HostsError(source, problems) from None


def load_inventory(path: str | Path) -> Cluster:
    path = Path(path)
    data = read_or_raise(path, HostsError,
                         missing="give the path of a hosts YAML file (docs/multi-host.md)")
    return parse(data, path)


def resolve(sc: Scenario, source: str, inventory: str | Path | None = None) -> Cluster:
    """The cluster of this run, with local checks: the key files exist and are not readable by
    others (ssh refuses them otherwise), there are at least two hosts, and the pins name
    nodes of the scenario."""
    where: Path | str = inventory if inventory is not None else source
    cluster = load_inventory(inventory) if inventory is not None else sc.cluster
    prefix = "" if inventory is not None else "cluster."
    if cluster is None:
        raise HostsError(source, [Problem("cluster", "no hosts to run on", "add a cluster: "
                                          "section or give --hosts FILE")])
    problems: list[Problem] = []
    if len(cluster.hosts) < 2:
        problems.append(Problem(f"{prefix}hosts", "one host: nothing to split",
                                "name two hosts or more, or run without a cluster"))
    for i, h in enumerate(cluster.hosts):
        key = Path(h.key).expanduser()
        if not key.is_file():
            problems.append(Problem(f"{prefix}hosts[{i}].key", f"no such key file: {key}",
                                    "create one (ssh-keygen -t ed25519 -N '' -f FILE) and "
                                    "put FILE.pub into the host's authorized_keys"))
        elif key.stat().st_mode & 0o077:
            problems.append(Problem(f"{prefix}hosts[{i}].key", f"{key} is readable by others",
                                    f"chmod 600 {key}"))
        if h.known_hosts and not Path(h.known_hosts).expanduser().is_file():
            problems.append(Problem(f"{prefix}hosts[{i}].known_hosts",
                                    f"no such file: {h.known_hosts}",
                                    f"ssh-keyscan -p {h.port} {h.address} > FILE"))
    for node in cluster.placement.pins:
        if node not in sc.nodes:
            problems.append(Problem(f"{prefix}placement.pins.{node}", f"unknown node '{node}'",
                                    f"pin nodes of the scenario: {', '.join(list(sc.nodes)[:12])}"))
    if problems:
        raise HostsError(where, problems)
    return cluster


def project_of(h: Host) -> str:
    return h.project or str(PROJECT)


def python_of(h: Host) -> str:
    return h.python or f"{project_of(h)}/.venv/bin/python"


def target(h: Host) -> Any:
    """The SSH target of a host, in the boards' form (testbed.hil.boards.Target): the same
    key-only, host-key-checked login code serves boards and hosts."""
    from testbed.hil.boards import Target

    return Target(h.name, h.address, h.port, h.user, str(Path(h.key).expanduser()),
                  str(Path(h.known_hosts).expanduser()) if h.known_hosts else None,
                  python_of(h), h.connect_timeout_s)
