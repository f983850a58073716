"""Mixture arithmetic: weights, exact integer counts, sampling plans.

Pure numpy functions over per-source record counts and row indices; no I/O. The mix stage
(pipeline/stages/mix.py) plans on these arrays and copies rows by index afterwards, so no
text is held while planning.

Every function raises `MixError` (a ValueError) for impossible requests, with a message that
names the source or field; the stage turns it into a ConfigError.
"""
from __future__ import annotations

import zlib
from fractions import Fraction
from typing import Sequence

import numpy as np

DEFAULT_K = ("1", "1/2", "1/4", "1/8", "1/16", "1/32")  # DMT grid (docs/design.md#sft-strategies 4)


class MixError(ValueError):
    pass


# ----------------------------------------------------------------------------- weights

def proportional(n: Sequence[float]) -> np.ndarray:
    """docs/design.md#mixture-weights: p_i = n_i / sum_j n_j.

    >>> proportional([1, 3]).tolist()
    [0.25, 0.75]
    """
    return temperature(n, 1.0)


def temperature(n: Sequence[float], alpha: float) -> np.ndarray:
    """docs/design.md#mixture-weights: p_i = n_i^a / sum_j n_j^a, a in [0, 1]; a = 0 is uniform, a = 1 proportional.

    >>> temperature([100, 400], 0.5).round(4).tolist()
    [0.3333, 0.6667]
    >>> temperature([100, 400], 0.0).tolist()
    [0.5, 0.5]
    """
    n = np.asarray(n, dtype=np.float64)
    if not 0.0 <= alpha <= 1.0:
        raise MixError(f"alpha: {alpha} not in [0, 1]")
    if len(n) == 0 or (n <= 0).any():
        raise MixError("temperature weights need at least one source and n_i > 0 for every source")
    w = n ** alpha  # a = 0 gives exactly 1 per source, a = 1 exactly n_i
    return w / w.sum()


def explicit(weights: Sequence[float]) -> np.ndarray:
    """Given weights, normalised; every weight must be >= 0 and their sum > 0.

    >>> explicit([2, 1, 1]).tolist()
    [0.5, 0.25, 0.25]
    """
    w = np.asarray(weights, dtype=np.float64)
    if (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
        raise MixError(f"weights: need finite values >= 0 with a positive sum, got {w.tolist()}")
    return w / w.sum()


def tier_decay(p: np.ndarray, tiers: Sequence[int], decay: float) -> np.ndarray:
    """Quality tiers (docs/design.md#mixture-weights): tier 0 keeps its weight, tier t is scaled by decay^t, renormalised.

    >>> tier_decay(np.array([0.5, 0.5]), [0, 1], 0.5).round(4).tolist()
    [0.6667, 0.3333]
    """
    if not 0.0 < decay <= 1.0:
        raise MixError(f"decay: {decay} not in (0, 1]")
    t = np.asarray(tiers, dtype=np.float64)
    if (t < 0).any():
        raise MixError(f"tiers: must be >= 0, got {t.tolist()}")
    w = np.asarray(p, dtype=np.float64) * decay ** t
    return w / w.sum()


# ----------------------------------------------------------------------------- counts

def largest_remainder(total: int, p: Sequence[float]) -> np.ndarray:
    """Integer counts summing exactly to `total`, each floor(total * p_i) or one more
    (Hamilton's method). The largest fractional parts get the extra records; ties go to the
    lower index, so the result never depends on anything but (total, p).

    >>> largest_remainder(10, [1/3, 1/3, 1/3]).tolist()
    [4, 3, 3]
    >>> largest_remainder(7, [0.5, 0.5]).tolist()
    [4, 3]
    """
    p = np.asarray(p, dtype=np.float64)
    if total < 0:
        raise MixError(f"total: {total} < 0")
    if len(p) == 0:
        if total:
            raise MixError("no sources to draw from")
        return np.zeros(0, dtype=np.int64)
    if (p < 0).any() or p.sum() <= 0:
        raise MixError(f"shares must be >= 0 with a positive sum, got {p.tolist()}")
    quota = total * (p / p.sum())
    counts = np.floor(quota).astype(np.int64)
    frac = quota - counts
    short = int(total - counts.sum())
    if short > 0:
        order = np.lexsort((np.arange(len(p)), -frac))  # largest remainder first, then index
        counts[order[:short]] += 1
    return counts


def split_total(total: int, lam: float) -> tuple[int, int]:
    """(new, replay) for docs/design.md#sft-strategies 2, p(t) = (1 - lambda) p_new + lambda p_replay: replay is
    total * lambda rounded, so the realised share is within one record of lambda.

    >>> split_total(101, 0.1)
    (91, 10)
    """
    if not 0 <= lam <= 1:
        raise MixError(f"replay share {lam} not in [0, 1]")
    new, rep = largest_remainder(total, [1.0 - lam, lam])
    return int(new), int(rep)


def replay_for(n_new: int, lam: float) -> int:
    """Replay records to add to `n_new` new ones so that replay / (new + replay) = lambda
    within one record: round(lambda * n_new / (1 - lambda)).

    >>> replay_for(900, 0.1)
    100
    """
    if not 0 <= lam < 1:
        raise MixError(f"replay share {lam} not in [0, 1)")
    return int(np.floor(lam * n_new / (1.0 - lam) + 0.5))


def check_repeats(counts: np.ndarray, pool: np.ndarray, max_repeat: float, names: Sequence[str],
                  what: str = "") -> None:
    """Refuse a plan in which some record would appear more than `max_repeat` times."""
    counts, pool = np.asarray(counts), np.asarray(pool)
    for c, n, name in zip(counts.tolist(), pool.tolist(), names):
        if c and n == 0:
            raise MixError(f"source {name!r}{what}: {c} records requested but it has none left to draw from")
        if n and c > max_repeat * n:
            raise MixError(f"source {name!r}{what}: {c} records requested from {n} ({c / n:.2f} passes) "
                           f"but max_repeat={max_repeat}; lower its weight or the total, or raise max_repeat")


# ----------------------------------------------------------------------------- sampling

def rng_for(seed: int, *tags: str) -> np.random.Generator:
    """A generator per (seed, purpose): stable across runs and Python versions (crc32, not hash())."""
    return np.random.default_rng([int(seed)] + [zlib.crc32(t.encode()) for t in tags])


def sample(pool: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` items of `pool`: whole shuffled passes first (without replacement), then the
    rest without replacement, so every item appears floor(count/n) or ceil(count/n) times.

    >>> r = sample(np.arange(4), 10, np.random.default_rng(0))
    >>> sorted(np.bincount(r).tolist())
    [2, 2, 3, 3]
    """
    pool = np.asarray(pool)
    n = len(pool)
    if count == 0:
        return pool[:0]
    if n == 0:
        raise MixError(f"cannot draw {count} records from an empty pool")
    full, rest = divmod(int(count), n)
    parts = [pool[rng.permutation(n)] for _ in range(full)]
    if rest:
        parts.append(pool[rng.permutation(n)[:rest]])
    return np.concatenate(parts)


def choose_groups(groups: np.ndarray, target: int, rng: np.random.Generator) -> np.ndarray:
    """Mask over `groups` (group id per candidate record) choosing whole groups in random
    order until at least `target` records are chosen: a near-duplicate cluster is never cut.

    >>> g = np.array([0, 0, 1, 2, 3])
    >>> m = choose_groups(g, 2, np.random.default_rng(1))
    >>> int(m.sum()) >= 2 and bool(m[0] == m[1])
    True
    """
    if target <= 0 or len(groups) == 0:
        return np.zeros(len(groups), dtype=bool)
    uniq, inv, sizes = np.unique(groups, return_inverse=True, return_counts=True)
    order = rng.permutation(len(uniq))
    cum = np.cumsum(sizes[order])
    n_take = int(np.searchsorted(cum, target, side="left")) + 1
    chosen = np.zeros(len(uniq), dtype=bool)
    chosen[order[:n_take]] = True
    return chosen[inv]


def holdout_size(spec: float, n: int, cap: int) -> int:
    """Validation size from a setting: < 1 is a fraction of n (at least one record when n >= 2),
    >= 1 a number of records; at most `cap` (0: no cap).

    >>> holdout_size(0.1, 55, 0), holdout_size(0.01, 10, 0), holdout_size(30, 1000, 20)
    (6, 1, 20)
    """
    if spec < 0:
        raise MixError(f"validation size {spec} < 0")
    if spec == 0 or n == 0:
        return 0
    if spec < 1:
        k = int(np.floor(spec * n + 0.5))
        k = max(k, 1) if n >= 2 else 0
    else:
        k = int(spec)
    return min(k, cap) if cap else k


# ----------------------------------------------------------------------------- DMT k

def parse_k(values) -> list[Fraction]:
    """DMT ratios from `1,1/2,0.25` / a list; each > 0.

    >>> [str(k) for k in parse_k("1,1/2,0.125")]
    ['1', '1/2', '1/8']
    """
    if values is None:
        values = list(DEFAULT_K)
    if isinstance(values, (int, float, Fraction)):
        values = [values]
    if isinstance(values, str):
        values = [v for v in values.split(",") if v.strip()]
    out = []
    for v in values:
        try:
            k = Fraction(str(v).strip()).limit_denominator(1 << 20)
        except (ValueError, ZeroDivisionError):
            raise MixError(f"k: {v!r} is not a number or fraction like 1/8") from None
        if k <= 0:
            raise MixError(f"k: {v!r} must be > 0")
        if k not in out:
            out.append(k)
    if not out:
        raise MixError("k: no values given")
    return out


def k_label(k: Fraction) -> str:
    """Folder name of a DMT stage-2 run: k=1, k=1_8, k=3_10.

    >>> k_label(Fraction(1, 8)), k_label(Fraction(1))
    ('k=1_8', 'k=1')
    """
    return f"k={k.numerator}" if k.denominator == 1 else f"k={k.numerator}_{k.denominator}"
