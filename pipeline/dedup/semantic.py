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
