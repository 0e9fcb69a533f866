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

from controllers.offload.clustering import Clustering, kmeans_clusters
from controllers.offload.config import OffloadConfig, load_config, save_config
from controllers.offload.model import Contention, Counters, Decision, Modes, OffloadModel

__all__ = ["Clustering", "Contention", "Counters", "Decision", "Modes", "OffloadConfig",
           "OffloadModel", "kmeans_clusters", "load_config", "save_config"]
