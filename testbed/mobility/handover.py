"""Handover policies: which candidate (satellite or UAV) a terminal attaches to.

Pure functions of the candidates' current metrics, so they are unit-tested without an
emulation and the same code decides in the live run and in offline predictions.

  highest-elevation   the candidate highest in the sky (shortest, least obstructed path);
                      switches when another is higher by `hysteresis` degrees
  longest-visibility  the candidate that stays above the mask longest from now; keeps it
                      until it sets (fewest handovers, the classic LEO policy)
  nearest             the closest candidate (UAV relays); switches when another is closer
                      by `hysteresis` km
  strongest-signal    the highest SNR from the channel model; `hysteresis` in dB
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Candidate:
    name: str
    eligible: bool  # above the elevation mask and within range
    elevation_deg: float
    range_km: float
    snr_db: float = float("nan")
    remaining_s: float = 0.0  # how long it stays eligible from now (longest-visibility)


def score(policy: str, c: Candidate) -> float:
    if policy == "highest-elevation":
        return c.elevation_deg
    if policy == "nearest":
        return -c.range_km
    if policy == "strongest-signal":
        return c.snr_db
    if policy == "longest-visibility":
        return c.remaining_s
    raise ValueError(f"unknown handover policy {policy!r}")


def choose(policy: str, candidates: list[Candidate], current: str | None,
           hysteresis: float = 0.0) -> str | None:
    """The candidate to be attached to now (None when no candidate is eligible)."""
    eligible = [c for c in candidates if c.eligible]
    if not eligible:
        return None
    # ties go to the first listed candidate: deterministic
    best = max(eligible, key=lambda c: score(policy, c))
    now = next((c for c in eligible if c.name == current), None)
    if now is None:
        return best.name
    if policy == "longest-visibility":
        return now.name
    if score(policy, best) > score(policy, now) + hysteresis:
        return best.name
    return now.name


def choose_scored(policy: str, names: list[str], eligible: np.ndarray, scores: np.ndarray,
                  current: str | None, hysteresis: float = 0.0) -> str | None:
    """`choose` on arrays (eligible flags and `score`s in the order of `names`): the same
    decision, in numpy, for terminals with many candidates (a mega-constellation)."""
    idx = np.flatnonzero(eligible)
    if not len(idx):
        return None
    s = scores[idx]
    if np.isnan(s).any():  # max() and argmax() disagree on NaN: take the reference path
        return choose(policy, [_candidate(policy, n, bool(ok), float(x)) for n, ok, x in
                               zip(names, eligible, scores, strict=True)], current, hysteresis)
    best = int(idx[int(np.argmax(s))])  # ties: the first listed, as choose
    try:
        now = names.index(current) if current is not None else -1
    except ValueError:
        now = -1
    if now < 0 or not eligible[now]:
        return names[best]
    if policy == "longest-visibility":
        return names[now]
    if float(scores[best]) > float(scores[now]) + hysteresis:
        return names[best]
    return names[now]



def _candidate(policy: str, name: str, eligible: bool, score_: float) -> Candidate:
    """A Candidate whose `score` under `policy` is score_."""
    if policy == "highest-elevation":
        return Candidate(name, eligible, score_, 0.0)
    if policy == "nearest":
        return Candidate(name, eligible, 0.0, -score_)
    if policy == "strongest-signal":
        return Candidate(name, eligible, 0.0, 0.0, snr_db=score_)
    return Candidate(name, eligible, 0.0, 0.0, remaining_s=score_)
