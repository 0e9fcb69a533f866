"""An LLM node's answer to a multiple-choice question, with the shipped SmolLM2-135M.

Cloze scoring: the model reads "Question: ...\nAnswer:" and each option's text is scored by
its log-probability as the continuation; the node answers the letter of the best-scored option
(or samples among them at its temperature).  Measured on the project's 60 questions: 38/60
right this way, against 12/60 when the model is asked for a letter (SmolLM2-135M picks "A"
most of the time, the position bias of small models).  Heterogeneity between nodes comes from
knobs stated per node in the experiment file: a persona line before the question, the
sampling temperature over the four options (a node's sampler is seeded: a rerun answers the
same), and layers dropped from the forward pass (a weaker, cheaper model).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

import yaml

LETTERS = ("A", "B", "C", "D")
QUESTIONS = Path(__file__).with_name("questions.yaml")


@dataclass(frozen=True)
class Question:
    id: str
    topic: str
    question: str
    choices: dict[str, str]
    answer: str  # the key


def load_questions(path: Path = QUESTIONS) -> list[Question]:
    data = yaml.safe_load(path.read_text())
    out = [Question(q["id"], q.get("topic", ""), q["question"],
                    {k: str(v) for k, v in q["choices"].items()}, q["answer"])
           for q in data["questions"]]
    bad = [q.id for q in out if q.answer not in q.choices or set(q.choices) != set(LETTERS)]
    if bad:
        raise ValueError(f"{path}: questions {bad} need choices A-D and a key among them")
    return out


class Answerer:
    """The model, loaded once per node (about 540 MB as float32, a few seconds to load)."""

    def __init__(self, model_path: str | Path | None = None, persona: str = "",
                 temperature: float = 0.0, drop_layers: tuple[int, ...] = (),
                 seed: int = 0) -> None:
        from payloads.llm.runtime import local_window
        from payloads.llm.tokenizer import load_tokenizer

        self.window = local_window(model_path)
        self.tok = load_tokenizer(model_path)
        self.persona, self.temperature = persona, temperature
        self.layers = [i for i in self.window.layers if i not in set(drop_layers)]
        self.rng = random.Random(seed)

    def _logp(self, prefix: list[int], cont: list[int]) -> float:
        import numpy as np

        ids = prefix + cont
        w = self.window
        cache = w.new_cache(len(ids))
        h = w.embed(ids)
        for i in self.layers:
            h = w.forward_layer(i, h, 0, cache)
        lg = w.logits(h[len(prefix) - 1:len(ids) - 1])
        lg = lg - lg.max(axis=1, keepdims=True)
        lp = lg - np.log(np.exp(lg).sum(axis=1, keepdims=True))
        return float(sum(lp[i, t] for i, t in enumerate(cont)))

    def scores(self, q: Question) -> dict[str, float]:
        """Log-probability of each option's text as the answer."""
        head = f"{self.persona}\n" if self.persona else ""
        prefix = self.tok.encode(f"{head}Question: {q.question}\nAnswer:", parse_special=False)
        return {k: self._logp(prefix, self.tok.encode(" " + q.choices[k], parse_special=False))
                for k in LETTERS}

    def answer(self, q: Question) -> str:
        s = self.scores(q)
        if self.temperature <= 0:
            return max(LETTERS, key=lambda k: s[k])
        top = max(s.values())
        w = [math.exp((s[k] - top) / self.temperature) for k in LETTERS]
        return self.rng.choices(LETTERS, weights=w)[0]
