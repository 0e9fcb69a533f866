"""Task offloading in a Space-Air-Ground network: the shared system model and its simulators.

Modules, one job each:

* config - `OffloadConfig` (units, defaults and their sources), presets, JSON/YAML files.
* links - vectorised link rates from testbed.channels (A2G uplink, satellite, sharing).
* energy - UAV flight energy (firmware.dynamics power model) and CPU energy.
* model - `OffloadModel`: state, one slot of dynamics, metrics, profit (the definition).
* clustering - `kmeans_clusters`: the satellite's UAV clusters and cluster heads (CMADDPG).
* spaces - flat observation/action vectors for learners and their decoding.
* envs - `OffloadEnv` (gymnasium, central controller) and `OffloadParallelEnv` (pettingzoo,
  one agent per UAV); imported from controllers.offload.envs, since they pull in those
  libraries.
* baselines - reference policies and `evaluate`.
* learn - DDPG/MADDPG learners (torch), built on the above.

Use::

    from controllers.offload import OffloadConfig, OffloadModel
    from controllers.offload.baselines import evaluate, greedy_delay
    from controllers.offload.envs import OffloadEnv, OffloadParallelEnv

    model = OffloadModel(OffloadConfig.default(), seed=0)
    metrics, info = model.step(greedy_delay(model))      # one slot, structured decision
    evaluate(greedy_delay, OffloadConfig.large(), seed=0, episodes=5)
    env = OffloadEnv(objective="delay")                  # MUECRS-style, flat actions
    team = OffloadParallelEnv(association="cluster")     # CMADDPG-style, one agent per UAV
"""

from __future__ import annotations

from testbed.workloads import lazy_exports

# Imported on first use (PEP 562, testbed.workloads.lazy_exports): the testbed reads this
# package's registration module (workload.py) for every scenario it loads.
_EXPORTS = {
    "Clustering": "controllers.offload.clustering",
    "kmeans_clusters": "controllers.offload.clustering",
    "OffloadConfig": "controllers.offload.config",
    "load_config": "controllers.offload.config",
    "save_config": "controllers.offload.config",
    "Contention": "controllers.offload.model",
    "Counters": "controllers.offload.model",
    "Decision": "controllers.offload.model",
    "Modes": "controllers.offload.model",
    "OffloadModel": "controllers.offload.model",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(_EXPORTS)
