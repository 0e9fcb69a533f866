"""Size-independent features of the offloading state, for learned controllers.

The flat observation of controllers.offload.spaces grows with the number of users and UAVs, so
a policy trained on one size is useless on another.  The learners here instead score every
(user, mode) pair and steer every UAV from fixed-length feature vectors, with one set of
network weights shared across users and UAVs: a policy trained on the default preset runs on
the large one, in the live emulation, or on a user's own configuration.

Delays enter as ratios to the task's deadline (1 = just in time), clipped at `RATIO_CAP`; an
unavailable mode (empty battery, no relay) gets the cap.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from controllers.offload.model import FloatArray, OffloadModel
from controllers.offload.spaces import SNR_FLOOR_DB, SNR_SPAN_DB

RATIO_CAP = 3.0
PAIR_FEATURES = ("is_local", "is_uav", "is_satellite", "is_cloud", "delay_ratio", "feasible",
                 "backlog", "contention", "snr", "bits", "cycles", "deadline", "in_cluster",
                 "battery")
UAV_FEATURES = ("x", "y", "height", "battery", "backlog", "own_dx", "own_dy", "own_share",
                "all_dx", "all_dy", "peer_dx", "peer_dy", "peer_dist", "own_snr", "own_dist",
                "task_share", "satellite_backlog", "cloud_backlog")


def delay_ratios(model: OffloadModel, table: FloatArray | None = None) -> FloatArray:
    """(U, K+3) contention-free delay / deadline, capped; users without a task get the cap."""
    table = model.delay_table() if table is None else table
    deadline = np.where(model.task_active, model.task_deadline_s, 1.0)
    ratio = np.minimum(table / deadline[:, None], RATIO_CAP)
    ratio[~model.task_active] = RATIO_CAP
    return ratio


def pair_features(model: OffloadModel, ratio: FloatArray,
                  in_cluster: npt.NDArray[np.bool_] | None = None) -> npt.NDArray[np.float32]:
    """(U, K+3, len(PAIR_FEATURES)) features of sending user i's task to mode m.

    contention: the slot's tasks competing for the same resource (the UAV's band for a UAV
    mode, the relay's backhaul for the cloud, the satellite band), as a fraction of the users.
    in_cluster: (U, K) whether UAV k belongs to the cluster that decides for user i (1 for the
    other modes); all ones when omitted.
    """
    cfg = model.config
    k, u = model.n_uavs, model.n_users
    m = k + 3
    f = np.zeros((u, m, len(PAIR_FEATURES)), dtype=np.float32)
    f[:, 0, 0] = 1.0
    f[:, 1:k + 1, 1] = 1.0
    f[:, k + 1, 2] = 1.0
    f[:, k + 2, 3] = 1.0
    f[:, :, 4] = ratio / RATIO_CAP
    f[:, :, 5] = ratio <= 1.0
    d_max = cfg.tasks.deadline_s[1]
    busy = np.minimum(model.busy_s / d_max, 1.0)
    f[:, 0, 6] = busy[k + 2:]
    f[:, 1:k + 1, 6] = busy[:k]
    f[:, k + 1, 6] = busy[k]
    f[:, k + 2, 6] = busy[k + 1]
    active = model.task_active
    nearest = model.nearest_uav
    per_uav = np.bincount(nearest, weights=active, minlength=k) / u
    f[:, 1:k + 1, 7] = per_uav
    f[:, k + 1, 7] = np.count_nonzero(active) / u
    f[:, k + 2, 7] = per_uav[nearest]
    snr = np.clip((model.snr_db - SNR_FLOOR_DB) / SNR_SPAN_DB, 0.0, 1.0)
    f[:, 0, 8] = 1.0
    f[:, 1:k + 1, 8] = snr
    f[:, k + 1, 8] = 1.0
    f[:, k + 2, 8] = snr[np.arange(u), nearest]
    t = cfg.tasks
    f[:, :, 9] = np.minimum(model.task_bits / t.bits[1], 1.0)[:, None]
    f[:, :, 10] = np.minimum(model.task_cycles / (t.bits[1] * t.cycles_per_bit[1]), 1.0)[:, None]
    f[:, :, 11] = (model.task_deadline_s / d_max)[:, None]
    f[:, :, 12] = 1.0
    if in_cluster is not None:
        f[:, 1:k + 1, 12] = in_cluster
    f[:, :, 13] = 1.0
    f[:, 1:k + 1, 13] = model.battery_j / (cfg.uav.battery_wh * 3600.0)
    return f


def uav_features(model: OffloadModel) -> npt.NDArray[np.float32]:
    """(K, len(UAV_FEATURES)) what a UAV needs to steer: where its own users' demand is, where
    all demand is, where its nearest peer is, how well it hears its users.

    "own" users are those whose nearest UAV it is; demand is weighted by task bits (users
    without a task weigh a little, so an idle UAV still drifts toward its users).
    """
    cfg = model.config
    k, u = model.n_uavs, model.n_users
    area = cfg.area_m
    h_lo, h_hi = cfg.uav.altitude_m
    xyz = model.uav_xyz
    f = np.zeros((k, len(UAV_FEATURES)), dtype=np.float32)
    f[:, 0:2] = xyz[:, :2] / area
    f[:, 2] = (xyz[:, 2] - h_lo) / max(h_hi - h_lo, 1e-9)
    f[:, 3] = model.battery_j / (cfg.uav.battery_wh * 3600.0)
    d_max = cfg.tasks.deadline_s[1]
    f[:, 4] = np.minimum(model.busy_s[:k] / d_max, 1.0)
    weight = model.task_bits / cfg.tasks.bits[1] + 0.05
    nearest = model.nearest_uav
    own_w = np.bincount(nearest, weights=weight, minlength=k)
    for axis in (0, 1):
        own = np.bincount(nearest, weights=weight * model.user_xy[:, axis], minlength=k)
        centre = np.where(own_w > 0, own / np.maximum(own_w, 1e-12), xyz[:, axis])
        f[:, 5 + axis] = (centre - xyz[:, axis]) / area
        every = float(np.dot(weight, model.user_xy[:, axis]) / weight.sum())
        f[:, 8 + axis] = (every - xyz[:, axis]) / area
    f[:, 7] = own_w / weight.sum()
    if k > 1:
        gap = xyz[None, :, :2] - xyz[:, None, :2]
        dist = np.hypot(gap[..., 0], gap[..., 1])
        np.fill_diagonal(dist, np.inf)
        peer = dist.argmin(axis=1)
        f[:, 10:12] = gap[np.arange(k), peer] / area
        f[:, 12] = dist[np.arange(k), peer] / area
    else:
        f[:, 12] = 1.0
    users = np.arange(u)
    own_snr = np.bincount(nearest, weights=model.snr_db[users, nearest], minlength=k)
    own_dist = np.bincount(nearest, weights=model.distance_m[users, nearest], minlength=k)
    n_own = np.maximum(np.bincount(nearest, minlength=k), 1)
    f[:, 13] = np.clip((own_snr / n_own - SNR_FLOOR_DB) / SNR_SPAN_DB, 0.0, 1.0)
    f[:, 14] = own_dist / n_own / area
    f[:, 15] = np.bincount(nearest, weights=model.task_active, minlength=k) / u
    f[:, 16] = min(model.busy_s[k] / d_max, 1.0)
    f[:, 17] = min(model.busy_s[k + 1] / d_max, 1.0)
    return f
