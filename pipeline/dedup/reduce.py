"""The dedup reduce on columns: whole-corpus decisions from fixed-width arrays (keys, scores,
signatures), with NumPy only, so memory is a few dozen bytes per conversation plus what is
memory-mapped. Every function takes and returns arrays indexed by global row number.

The keep policy is an integer rank, `pref` (lower is kept first): the keep score, then the
smaller id, so a choice never depends on input order. Functions index it as `pref[rows]`; the
dedup stage passes an object that ranks just the rows asked for, so no rank of the whole corpus
is held.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

def preference(scores: np.ndarray, id_rank: np.ndarray) -> np.ndarray:
    """Rank of each row in keep order: higher scores first (column 0, then 1, then 2), ties
    to the smaller id (`id_rank`: the rank of the id among all ids)."""
    order = np.lexsort((id_rank, -scores[:, 2], -scores[:, 1], -scores[:, 0]))
    pref = np.empty(len(order), dtype=np.int64)
    pref[order] = np.arange(len(order))
    return pref


def _runs(keys: np.ndarray) -> np.ndarray:
    """Start flags of runs of equal rows in a sorted (m, 2) key array."""
    return np.r_[True, (keys[1:] != keys[:-1]).any(axis=1)] if len(keys) else np.zeros(0, bool)


def best_of_groups(keys: np.ndarray, rows: np.ndarray, pref: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Rows sharing a key: (dropped rows, the kept row of each, number of groups > 1)."""
    if not len(rows):
        return np.zeros(0, np.int64), np.zeros(0, np.int64), 0
    k = keys[rows]
    order = np.lexsort((pref[rows], k[:, 1], k[:, 0]))
    srt = rows[order]
    start = _runs(k[order])
    gid = np.cumsum(start) - 1
    best = srt[start][gid]
    dropped = ~start
    sizes = np.bincount(gid)
    return srt[dropped], best[dropped], int((sizes > 1).sum())


def lookup(table: np.ndarray, query: np.ndarray) -> np.ndarray:
    """For each query key (q, 2), the row of `table` (m, 2; unique keys) holding it, or -1."""
    m, q = len(table), len(query)
    allk = np.concatenate([table, query])
    src = np.r_[np.zeros(m, np.int8), np.ones(q, np.int8)]
    pos = np.r_[np.arange(m), np.arange(q)]
    order = np.lexsort((src, allk[:, 1], allk[:, 0]))  # table entries first in a run
    start = _runs(allk[order])
    gid = np.cumsum(start) - 1
    first = np.flatnonzero(start)
    owner = np.where(src[order][first] == 0, pos[order][first], -1)
    out = np.full(q, -1, dtype=np.int64)
    isq = src[order] == 1
    out[pos[order][isq]] = owner[gid[isq]]
    return out


def prefix_owners(prefix_rows: np.ndarray, prefix: np.ndarray, owner_length: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per distinct prefix key, the conversation that has it and is longest (`owner_length`, the
    number of prefixes of each `prefix_rows` entry; on ties the smaller row): (unique keys (u, 2),
    owner row of each)."""
    if not len(prefix_rows):
        return np.zeros((0, 2), np.uint64), np.zeros(0, np.int64)
    order = np.lexsort((prefix_rows, -owner_length, prefix[:, 1], prefix[:, 0]))
    k = prefix[order]
    start = _runs(k)
    return k[start], prefix_rows[order][start]


def prefix_candidates(rows: np.ndarray, exact: np.ndarray, owner_keys: np.ndarray, owners: np.ndarray
                      ) -> np.ndarray:
    """Conversations (`rows`, their whole keys `exact`) whose whole key is a prefix key of a
    longer one: (row, owner) pairs. The owner must still be alive for the row to be dropped;
    the caller checks that, since the owner's own exact group may be decided elsewhere."""
    j = lookup(owner_keys, exact)
    hit = j >= 0
    rows, j = rows[hit], owners[j[hit]]
    ok = j != rows
    return np.stack([rows[ok], j[ok]], axis=1).astype(np.int64) if ok.any() else np.zeros((0, 2), np.int64)


def components(n: int, pairs: np.ndarray) -> np.ndarray:
    """Component label of each of n nodes under the edges `pairs` (m, 2); C speed (scipy)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if not len(pairs):
        return np.arange(n)
    g = coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return connected_components(g, directed=False)[1]


def forest(pairs: np.ndarray) -> np.ndarray:
    """(node, root) for every node of the edges `pairs` (m, 2; global rows): root is the smallest
    node of its component. Forests of disjoint edge sets merge by calling this again on their
    concatenation, so components are found partition by partition and then in merge rounds,
    never with every pair in one place."""
    if not len(pairs):
        return np.zeros((0, 2), np.int64)
    nodes, inv = np.unique(pairs, return_inverse=True)
    lab = components(len(nodes), inv.reshape(-1, 2))
    root = np.full(lab.max() + 1, len(nodes))
    np.minimum.at(root, lab, np.arange(len(nodes)))  # nodes are sorted: first index = smallest
    return np.stack([nodes, nodes[root[lab]]], axis=1).astype(np.int64)


def resolve(nodes: np.ndarray, pairs: np.ndarray, pref: np.ndarray,
            similarity: Callable[[np.ndarray, np.ndarray], np.ndarray], threshold: float
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Keep one row per cluster of verified pairs, without chaining.

    `nodes` are global rows, `pairs` (m, 2) index into `nodes`. In each connected component
    the row with the lowest `pref` is kept; a member is dropped only when `similarity(member,
    kept)` (global rows) is >= `threshold`. Members that are not that close to the kept row
    (they joined through a chain of neighbours) are clustered again on the pairs among
    themselves, and so on. Returns (dropped rows, kept row of each, similarity of each, stats).
    """
    g = np.asarray(nodes, np.int64)[pairs] if len(pairs) else np.zeros((0, 2), np.int64)
    return resolve_forest(forest(g), pref, similarity, threshold, lambda far: among(g, far))


def among(pairs: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The pairs with both ends in `rows` (sorted unique global rows)."""
    if not len(pairs) or not len(rows):
        return np.zeros((0, 2), np.int64)
    pos = np.searchsorted(rows, pairs)
    hit = rows[np.minimum(pos, len(rows) - 1)] == pairs
    return pairs[hit.all(axis=1)]


def resolve_forest(fr: np.ndarray, pref: np.ndarray,
                   similarity: Callable[[np.ndarray, np.ndarray], np.ndarray], threshold: float,
                   pairs_among: Callable[[np.ndarray], np.ndarray]
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """`resolve` from the components' forest `fr` ((node, root) rows, global rows; see `forest`)
    and `pairs_among(rows)`, the verified pairs with both ends in `rows`: only the members that
    are re-clustered are asked for their pairs again, so the pairs can stay where they were
    verified."""
    dropped, kept_by, sims, far_all = [], [], [], []
    stats = {"clusters": 0, "rounds": 0, "reclustered": 0}
    while len(fr):
        stats["rounds"] += 1
        member, lab = fr[:, 0], fr[:, 1]
        order = np.lexsort((pref[member], lab))
        srt = member[order]
        start = np.r_[True, lab[order][1:] != lab[order][:-1]]
        gid = np.cumsum(start) - 1
        best = srt[start][gid]
        others = ~start
        m, b = srt[others], best[others]
        s = similarity(m, b) if len(m) else np.zeros(0)
        close = s >= threshold
        dropped.append(m[close])
        kept_by.append(b[close])
        sims.append(s[close])
        stats["clusters"] += int(len(np.unique(b[close])))
        far = np.sort(m[~close])
        stats["reclustered"] += int(len(far))  # joined only through a chain: clustered again
        far_all.append(far)
        fr = forest(pairs_among(far))
    cat = (lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt))
    stats["reclustered_rows"] = np.unique(cat(far_all, np.int64))
    return cat(dropped, np.int64), cat(kept_by, np.int64), cat(sims, np.float64), stats
