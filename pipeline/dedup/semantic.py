"""SemDeDup: k-means over conversation embeddings, then, within each cluster, the pairs whose
cosine is >= 1 - eps. Cost ~ n * cluster size, never an n x n matrix."""
from __future__ import annotations

import math

import numpy as np


def n_clusters(n: int, clusters: int = 0) -> int:
    """`clusters`, or ceil(n / 300) when 0; never more than n."""
    k = clusters or max(1, math.ceil(n / 300))
    return min(k, n)


def kmeans_labels(X: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    if k <= 1:
        return np.zeros(len(X), dtype=np.int64)
    return KMeans(n_clusters=k, n_init=1, random_state=seed, max_iter=50).fit_predict(X)


def cluster_pairs(X: np.ndarray, labels: np.ndarray, k: int, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """(pairs (m, 2) of row indices of X, their cosines), cluster by cluster. Rows of X are
    unit vectors, so the dot product is the cosine."""
    pairs, sims = [], []
    for c in range(k):
        mem = np.flatnonzero(labels == c)
        if len(mem) < 2:
            continue
        S = X[mem] @ X[mem].T  # cluster-local: ~ n * cluster size overall
        a, b = np.nonzero(np.triu(S >= 1 - eps, 1))
        for x, y in zip(a, b):
            pairs.append((mem[x], mem[y]))
            sims.append(float(S[x, y]))
    return np.array(pairs, dtype=np.int64).reshape(-1, 2), np.array(sims, dtype=np.float64)


def streamed_labels(get, n: int, k: int, seed: int, sample: int, chunk: int = 16384) -> np.ndarray:
    """k-means labels of n rows whose vectors `get(rows)` returns, without holding them all:
    fitted on all rows when n <= sample (then equal to `kmeans_labels`), else on a seeded
    sample of `sample` rows, and every row assigned to its nearest centre chunk by chunk."""
    if k <= 1:
        return np.zeros(n, dtype=np.int64)
    if n <= sample:
        return kmeans_labels(get(np.arange(n)), k, seed)
    from sklearn.cluster import KMeans

    rows = np.sort(np.random.default_rng(seed).choice(n, size=sample, replace=False))
    km = KMeans(n_clusters=k, n_init=1, random_state=seed, max_iter=50).fit(get(rows))
    return np.concatenate([km.predict(get(np.arange(a, min(a + chunk, n)))) for a in range(0, n, chunk)])


def cluster_pairs_by(get, labels: np.ndarray, k: int, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """`cluster_pairs` reading one cluster's vectors at a time through `get(rows)`."""
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(k + 1))
    pairs, sims = [], []
    for c in range(k):
        mem = order[bounds[c]:bounds[c + 1]]
        if len(mem) < 2:
            continue
        X = get(mem)
        S = X @ X.T
        a, b = np.nonzero(np.triu(S >= 1 - eps, 1))
        pairs.append(np.stack([mem[a], mem[b]], axis=1))
        sims.append(S[a, b].astype(np.float64))
    if not pairs:
        return np.zeros((0, 2), np.int64), np.zeros(0)
    return np.concatenate(pairs).astype(np.int64), np.concatenate(sims)
