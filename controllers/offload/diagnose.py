"""Why CMADDPG's training did (not) beat its untrained policy: the measurements behind
docs/offload-learning.md, reproducible.

    python -m controllers.offload.diagnose headroom     # constant preference weights
    python -m controllers.offload.diagnose train [--slots 8000] [--legacy]

headroom: the validation profit (seeds 5_000-5_003) of every agent using one constant weight
vector, one preference at a time at -1, -0.5, 0.5, 1 (the weight itself): is there anything for a
learner to find, and where?
train: an instrumented CMADDPG training run on the default preset; every 1000 slots the
exploring policy's profit per slot, the (scaled) difference reward's mean and spread, the share
of slots whose explored decision differs from the zero-weight one, the critic's loss and R^2
on replayed rewards (gamma is 0, so Q should equal the expected reward), the share of the
deterministic actions within 0.05 of the box edge, and every 2000 slots the validation profit.
--legacy runs the learner as it was before issue 21 (uniform warm-up over the box, no actor
regulariser, weights within +-1).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch

from controllers.offload.agents.team import PREFERENCES, TeamConfig, TeamController
from controllers.offload.baselines import evaluate
from controllers.offload.config import OffloadConfig
from controllers.offload.model import OffloadModel
from controllers.offload.train import VALIDATION_EPISODES, VALIDATION_SEED

LEGACY = TeamConfig(learner=dataclasses.replace(TeamConfig().learner, warmup_uniform=True,
                                                action_reg=0.0), pref_scale=1.0)


def _validate(ctrl: TeamController, config: OffloadConfig) -> float:
    return evaluate(ctrl, config, seed=VALIDATION_SEED, episodes=VALIDATION_EPISODES)["profit"]


def constant(config: OffloadConfig, w: np.ndarray) -> TeamController:
    """A team whose every agent uses the weights `w` whatever it observes."""
    ctrl = TeamController(config.n_uavs, config.n_clusters, config.recluster_every, True,
                          TeamConfig(pref_scale=1.0))
    for actor in ctrl.team.actors:
        last = actor.net[-1]
        with torch.no_grad():
            last.weight.zero_()
            last.bias.copy_(torch.atanh(torch.as_tensor(np.clip(w, -0.999, 0.999),
                                                        dtype=torch.float32)))
    return ctrl


def headroom(config: OffloadConfig) -> None:
    base = _validate(constant(config, np.zeros(len(PREFERENCES))), config)
    print(f"zero weights: validation profit {base:.1f}")
    for i, name in enumerate(PREFERENCES):
        gains = []
        for v in (-1.0, -0.5, 0.5, 1.0):
            w = np.zeros(len(PREFERENCES))
            w[i] = v
            gains.append(f"{v:+.1f}: {_validate(constant(config, w), config) - base:+8.1f}")
        print(f"{name:12s} " + "  ".join(gains))


def instrumented(config: OffloadConfig, slots: int, cfg: TeamConfig) -> None:
    ctrl = TeamController(config.n_uavs, config.n_clusters, config.recluster_every, True, cfg)
    model = OffloadModel(config, 0)
    episode, rows, start = 0, [], time.perf_counter()
    buf = ctrl.team.buffer
    print(f"untrained validation profit {_validate(ctrl, config):.1f}")
    for slot in range(1, slots + 1):
        decision = ctrl.decide(model, explore=True)
        active = model.task_active
        changed = bool(np.any(decision.mode[active] != ctrl._last["plain"].mode[active]))
        metrics, info = model.step(decision)
        stats = ctrl.learn(model, metrics, info, model.done)
        rows.append((metrics["profit"], buf.rew[(buf.pos - 1) % buf.capacity][0], changed,
                     stats.get("critic_loss", np.nan)))
        if model.done:
            episode += 1
            model.reset(episode)
        if slot % 1000:
            continue
        a = np.array(rows[-1000:], dtype=float)
        with torch.no_grad():
            o, act, r, _, _ = (torch.as_tensor(x) for x in buf.sample(2000))
            b = o.shape[0]
            q = ctrl.team.critics[0](o.reshape(b, -1), act.reshape(b, -1))
            r2 = 1.0 - float(((q - r[:, 0]) ** 2).mean() / r[:, 0].var())
            pol = torch.stack([ctrl.team.actors[i](o[:, i]) for i in range(ctrl.n_uavs)], 1)
        print(f"slot {slot}: profit/slot {a[:, 0].mean():.2f} ± {a[:, 0].std():.2f}  "
              f"reward {a[:, 1].mean():+.3f} ± {a[:, 1].std():.3f}  changed {a[:, 2].mean():.2f}"
              f"  critic loss {np.nanmean(a[:, 3]):.4f} R2 {r2:.2f} Q {q.mean():+.3f}  "
              f"saturated {(pol.abs() > 0.95).float().mean():.2f}  "
              f"{time.perf_counter() - start:.0f} s", flush=True)
        if slot % 2000 == 0:
            print(f"  validation profit {_validate(ctrl, config):.1f}", flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m controllers.offload.diagnose",
                                 description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("headroom", "train"))
    ap.add_argument("--slots", type=int, default=8000)
    ap.add_argument("--legacy", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    config = OffloadConfig.default()
    if args.what == "headroom":
        headroom(config)
    else:
        instrumented(config, args.slots, LEGACY if args.legacy else TeamConfig())


if __name__ == "__main__":
    main()
