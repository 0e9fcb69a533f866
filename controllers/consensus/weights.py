"""WBFT's voting weights: response quality and trust, adapted from the committed history.

The paper (arXiv 2505.05103) combines a response-quality share A_j and a trust share B_j into a
voting weight W_j = alpha * A_j + beta * B_j with alpha + beta = 1, each share normalised over
the nodes; its update rule between rounds is not in the text we could read (docs/consensus.md),
so ours is stated here:

* quality Q_j - an exponential moving average of how good j's answers were: correct (1) or
  not (0) where the question's key is known, otherwise agreement with the committed answer.
  The client publishes a key with the next query, so it enters the committed record one
  decision later: decision k's update scores decision k-1's answers;
* trust T_j - an exponential moving average of j taking part: 1 when j's signed answer is in
  the committed answer set, 0 when it is missing (silent, crashed, too late);
* both start at `initial` and never fall below `floor`, so a node can earn its way back.

Every honest node updates the book from the same committed decisions in the same order, so all
of them hold the same weights at every height: that is what keeps weighted quorums safe.  The
safety condition is by weight: the Byzantine nodes' share of the committee's weight must stay
below 1/3, which can hold with more than a third of the nodes Byzantine once their weight fell.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field


@dataclass
class WeightBook:
    nodes: Sequence[str]
    alpha: float = 0.5  # quality share; beta = 1 - alpha is the trust share
    decay: float = 0.8  # EMA factor: weight of the past
    initial: float = 0.5
    floor: float = 0.02
    adaptive: bool = True  # False: equal, fixed weights (PBFT-style counting)
    quality: dict[str, float] = field(default_factory=dict)
    trust: dict[str, float] = field(default_factory=dict)
    height: int = 0
    pending: tuple[dict[str, str], str] | None = None  # the last decision, quality not scored
    _cache: dict[str, object] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError("alpha must be in 0..1")
        if not 0.0 <= self.decay < 1.0:
            raise ValueError("decay must be in 0..1 (1 would never adapt)")
        for n in self.nodes:
            self.quality.setdefault(n, self.initial)
            self.trust.setdefault(n, self.initial)

    def weights(self) -> dict[str, float]:
        """Normalised voting weights (they sum to 1); computed once per height."""
        got = self._cache.get("weights")
        if got is None:
            if not self.adaptive:
                got = {n: 1.0 / len(self.nodes) for n in self.nodes}
            else:
                sq = sum(self.quality.values())
                st = sum(self.trust.values())
                got = {n: self.alpha * self.quality[n] / sq + (1 - self.alpha) * self.trust[n]
                       / st for n in self.nodes}
            self._cache["weights"] = got
        return got  # type: ignore[return-value]

    def ranking(self) -> list[str]:
        """Nodes by weight, heaviest first (ties by name): leaders are taken in this order."""
        got = self._cache.get("ranking")
        if got is None:
            w = self.weights()
            got = sorted(self.nodes, key=lambda n: (-round(w[n], 12), n))
            self._cache["ranking"] = got
        return got  # type: ignore[return-value]

    def committee(self, share: float, minimum: int = 4) -> list[str]:
        """The core cluster: the heaviest nodes holding at least `share` of the weight (and at
        least `minimum` of them).  share >= 1 is every node.  Nodes as heavy as the last one
        taken come too: weight cannot tell them apart, so equal weights (a new network) mean
        everybody, and the cluster shrinks only as the history tells nodes apart."""
        ranked = self.ranking()
        if share >= 1.0 or not self.adaptive:
            return ranked
        key = f"committee:{share}:{minimum}"
        got = self._cache.get(key)
        if got is None:
            w = self.weights()
            out: list[str] = []
            held = 0.0
            for n in ranked:
                if held >= share - 1e-12 and len(out) >= minimum and \
                        w[n] < w[out[-1]] - 1e-9:
                    break
                out.append(n)
                held += w[n]
            got = self._cache[key] = out
        return got  # type: ignore[return-value]

    def update(self, answers: Mapping[str, str], committed: str,
               previous_key: str | None = None) -> None:
        """One committed decision: `answers` is its answer set (node -> answer), and
        `previous_key` the previous query's correct answer where the client published it."""
        self.height += 1
        if not self.adaptive:
            return
        self._cache.clear()
        d = self.decay
        if self.pending is not None:
            prev, prev_value = self.pending
            truth = previous_key if previous_key is not None else prev_value
            for n, ans in prev.items():
                if n in self.quality:
                    good = float(ans == truth)
                    self.quality[n] = max(self.floor, d * self.quality[n] + (1 - d) * good)
        for n in self.nodes:
            seen = 1.0 if n in answers else 0.0
            self.trust[n] = max(self.floor, d * self.trust[n] + (1 - d) * seen)
        self.pending = (dict(answers), committed)

    def snapshot(self) -> dict[str, float]:
        return {n: round(w, 6) for n, w in self.weights().items()}


def weighted_plurality(answers: Mapping[str, str], weights: Mapping[str, float]) -> str | None:
    """The answer with the most weight behind it (ties: the smallest answer), None if empty."""
    score: dict[str, float] = {}
    for node, ans in answers.items():
        score[ans] = score.get(ans, 0.0) + weights.get(node, 0.0)
    if not score:
        return None
    return min(score, key=lambda a: (-round(score[a], 12), a))


def weight_of(nodes: Iterable[str], weights: Mapping[str, float]) -> float:
    return sum(weights.get(n, 0.0) for n in set(nodes))
