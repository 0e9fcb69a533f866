"""A spec's runs: grid (every combination), random (N seeded draws) or list (as written),
each crossed with the seeds.  Pure and deterministic: the same file gives the same runs in
the same order, and each run's key (its folder name) depends only on its parameters and
seed, so a resumed sweep finds the runs it already has even if the file was reordered."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
import re
from dataclasses import dataclass
from typing import Any

from testbed.sweep.spec import Span, Spec


@dataclass(frozen=True)
class Config:
    """One run: parameter values (dotted path -> value) and a seed."""

    params: dict[str, Any]
    seed: int

    @property
    def config_id(self) -> str:
        """The configuration without the seed: runs with the same id are replicates."""
        blob = json.dumps(self.params, sort_keys=True, default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:8]

    @property
    def key(self) -> str:
        """The run's folder name: readable values, then the id (unique), then the seed."""
        short = "_".join(f"{_tail(k)}-{_slug(v)}"
                         for k, v in sorted(self.params.items()))[:60]
        return f"{short + '_' if short else ''}{self.config_id}_s{self.seed}"

    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.params.items()) or "(defaults)"


def _tail(path: str) -> str:
    return _slug(path.lstrip("-").split(".")[-1])


def _slug(v: Any) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "", str(v).replace(" ", ""))[:20] or "x"


def configurations(spec: Spec) -> list[dict[str, Any]]:
    """The distinct parameter sets, seeds not yet applied."""
    if spec.mode == "list":
        return [dict(r) for r in spec.runs]
    if spec.mode == "grid":
        keys = list(spec.parameters)
        values = [spec.parameters[k] for k in keys]
        return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]
    rng = random.Random(spec.sample_seed)
    out = []
    for _ in range(spec.samples or 0):
        out.append({k: _draw(rng, v) for k, v in spec.parameters.items()})
    return out


def _draw(rng: random.Random, v: list[Any] | Span) -> Any:
    if isinstance(v, list):
        return rng.choice(v)
    if v.log:
        x = math.exp(rng.uniform(math.log(v.min), math.log(v.max)))
    else:
        x = rng.uniform(v.min, v.max)
    return int(round(x)) if v.int else round(x, 6)


def expand(spec: Spec) -> list[Config]:
    """Every run, configuration-major (all seeds of the first configuration first)."""
    runs = [Config(params, seed) for params in configurations(spec) for seed in spec.seeds]
    return list({c.key: c for c in runs}.values())  # random draws may repeat a configuration
