"""Satellite-side UAV clustering (CMADDPG): K-means with k-means++ seeding, cluster heads.

CMADDPG lets the satellite, which sees every UAV, partition them into clusters; one UAV per
cluster, the cluster head (CH), takes the offloading decisions of its members' users, which
cuts intra-cluster signalling and decision conflicts.  Here the head is the member closest to
its cluster's centroid - the UAV with the shortest links to the others.

Plain numpy so the emulation can run it anywhere; deterministic under `seed`; the result is
canonical (cluster j is the one whose lowest-index member comes j-th), so equal inputs give
equal labels whatever the random seeding picked.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt


class Clustering(NamedTuple):
    labels: npt.NDArray[np.int64]  # (n,) cluster of each point
    centroids: npt.NDArray[np.float64]  # (k, d)
    heads: npt.NDArray[np.int64]  # (k,) index of each cluster's head; -1 for an empty cluster


def _sq_dist(x: npt.NDArray[np.float64], c: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    diff = x[:, None, :] - c[None, :, :]
    return np.einsum("nkd,nkd->nk", diff, diff)


def _plus_plus(x: npt.NDArray[np.float64], k: int,
               rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """k-means++ seeding (Arthur & Vassilvitskii, SODA 2007): D² sampling."""
    n = len(x)
    centres = [x[rng.integers(n)]]
    d2 = np.sum((x - centres[0]) ** 2, axis=1)
    for _ in range(1, k):
        total = d2.sum()
        idx = int(rng.choice(n, p=d2 / total)) if total > 0 else int(rng.integers(n))
        centres.append(x[idx])
        d2 = np.minimum(d2, np.sum((x - x[idx]) ** 2, axis=1))
    return np.array(centres)


def kmeans_clusters(positions: npt.ArrayLike, k: int, seed: int = 0,
                    max_iter: int = 100) -> Clustering:
    """Cluster points (n, d) into k groups (Lloyd iterations until the labels stop changing)."""
    x = np.asarray(positions, dtype=np.float64)
    if x.ndim != 2 or not 1 <= k <= len(x):
        raise ValueError(f"need an (n, d) array with 1 <= k <= n, got shape {x.shape}, k={k}")
    rng = np.random.default_rng(seed)
    centroids = _plus_plus(x, k, rng)
    labels = np.full(len(x), -1)
    for _ in range(max_iter):
        d2 = _sq_dist(x, centroids)
        new = d2.argmin(axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
        for j in range(k):
            members = labels == j
            # an emptied cluster restarts at the point worst served by the others
            centroids[j] = x[members].mean(axis=0) if members.any() else x[d2.min(axis=1).argmax()]
    return _canonical(x, labels, centroids, k)


def _canonical(x: npt.NDArray[np.float64], labels: npt.NDArray[np.int64],
               centroids: npt.NDArray[np.float64], k: int) -> Clustering:
    """Renumber clusters by first appearance and pick each cluster's head."""
    first = np.full(k, len(x))
    np.minimum.at(first, labels, np.arange(len(x)))
    order = np.argsort(first, kind="stable")  # new id j <- old id order[j]
    rename = np.empty(k, dtype=np.int64)
    rename[order] = np.arange(k)
    labels = rename[labels]
    centroids = centroids[order]
    d2 = _sq_dist(x, centroids)
    heads = np.full(k, -1, dtype=np.int64)
    for j in range(k):
        members = np.flatnonzero(labels == j)
        if members.size:
            heads[j] = members[np.argmin(d2[members, j])]
    return Clustering(labels, centroids, heads)
