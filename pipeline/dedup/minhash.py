"""MinHash signatures bit-identical to datasketch, and LSH banding, candidates and union-find.

datasketch's `MinHash.update` hashes every shingle with SHA-1 in a Python call and applies
the permutations one shingle at a time; that is the whole cost of MinHash dedup. Here the
shingle hashes of a whole batch come from `pipeline.shingles` at once, and the permutations of
datasketch's default scheme ("affine32": MurmurHash3 fmix32 pre-mix, then a*h + b mod 2^32
with seed-drawn odd a) are applied to the whole batch with a segmented minimum per text.

Bit-identity: `signatures(texts, langs)` equals, for every text,
``datasketch.MinHash(num_perm, seed, hashfunc=shingle_hash32)`` updated with
``[s.encode() for s in shingles(text, lang)]`` (tests/test_minhash.py checks it). With
``hash="sha1"`` the shingles are hashed with datasketch's default `sha1_hash32` instead (a
Python loop, kept for interoperability with sketches made by plain datasketch), and then the
signature equals a default ``datasketch.MinHash(num_perm, seed)``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..shingles import MIX, Q, sha1_hash32, shingle_hashes, shingles

FMIX32 = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35), np.uint32(16))
MAX32 = np.uint32(0xFFFFFFFF)


class MinHasher:
    """Signatures for batches of texts, bit-identical to datasketch (see module doc)."""

    def __init__(self, num_perm: int = 128, seed: int = 1, n_char: int = 3, n_word: int = 3, hash: str = "poly",
                 chunk: int = 1 << 16):
        if hash not in ("poly", "sha1"):
            raise ValueError(f"hash {hash!r} not in poly|sha1")
        gen = np.random.RandomState(seed)  # datasketch's affine32 permutation draw
        self.a = (gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1))
        self.b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
        self.num_perm, self.seed, self.n_char, self.n_word, self.hash = num_perm, seed, n_char, n_word, hash
        self.chunk = chunk

    def hashes(self, texts, langs):
        if self.hash == "poly":
            return shingle_hashes(texts, langs, self.n_char, self.n_word)
        hv, idx = [], []
        for i, (t, lg) in enumerate(zip(texts, langs)):
            sh = shingles(t, lg, self.n_char, self.n_word)
            hv += [sha1_hash32(s.encode()) for s in sh]
            idx += [i] * len(sh)
        return np.array(hv, dtype=np.uint32), np.array(idx, dtype=np.int64)

    def signatures(self, texts: Sequence[str], langs: Sequence[str]) -> np.ndarray:
        """(len(texts), num_perm) uint32; a text without shingles gets all 0xFFFFFFFF."""
        hv, idx = self.hashes(texts, langs)
        sig = np.full((len(texts), self.num_perm), MAX32, dtype=np.uint32)
        if len(hv) == 0:
            return sig
        s1, m1, s2, m2, s3 = FMIX32
        with np.errstate(over="ignore"):
            hv = hv ^ (hv >> s1)
            hv = hv * m1
            hv = hv ^ (hv >> s2)
            hv = hv * m2
            hv = hv ^ (hv >> s3)
            # Chunks of whole texts keep the (num_perm x shingles) matrix small; that layout
            # makes the per-text minimum a contiguous reduceat (about 4x faster than rows).
            bounds = np.searchsorted(idx, np.arange(0, len(texts) + 1))
            buf = np.empty((self.num_perm, self.chunk), dtype=np.uint32)
            lo = 0
            while lo < len(texts):
                hi = int(np.searchsorted(bounds, bounds[lo] + self.chunk, "right")) - 1
                hi = max(hi, lo + 1)
                a, b = bounds[lo], bounds[hi]
                if b > a:
                    x = hv[a:b]
                    o = buf[:, :len(x)] if len(x) <= self.chunk else np.empty((self.num_perm, len(x)), np.uint32)
                    np.multiply(self.a[:, None], x[None, :], out=o)
                    np.add(o, self.b[:, None], out=o)
                    seg = idx[a:b]
                    starts = np.flatnonzero(np.r_[True, seg[1:] != seg[:-1]])
                    sig[seg[starts]] = np.minimum.reduceat(o, starts, axis=1).T
                lo = hi
        return sig


# ------------------------------------------------------------------ LSH

def candidate_probability(s: float, b: int, r: int) -> float:
    return 1.0 - (1.0 - s ** r) ** b


def choose_bands(num_perm: int, threshold: float, margin: float = 0.05, recall: float = 0.99) -> tuple[int, int]:
    """(bands, rows) with b*r <= num_perm that catch pairs at `threshold - margin` with
    probability >= `recall` while making the fewest candidates below that (verified later by
    estimated Jaccard, so a false candidate costs time, a missed pair costs recall).
    datasketch's default balances the two at the threshold itself (~44% recall there)."""
    low = max(threshold - margin, 0.01)
    grid = np.linspace(0, low * 0.8, 41)
    best, best_key = None, None
    for r in range(1, num_perm + 1):
        b = num_perm // r
        p = candidate_probability(low, b, r)
        fp = float(np.mean([candidate_probability(s, b, r) for s in grid]))
        key = (p < recall, fp if p >= recall else -p)
        if best_key is None or key < best_key:
            best, best_key = (b, r), key
    return best


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n, bands) uint64 bucket keys: the map step of LSH. Records sharing a key in any band
    are candidates; grouping these keys by hash partition is the reduce (pipeline/dedup/reduce.py),
    so a distributed engine can run it as it is."""
    n = sig.shape[0]
    v = sig[:, :bands * rows].reshape(n, bands, rows).astype(np.uint64)
    with np.errstate(over="ignore"):
        h = np.zeros((n, bands), dtype=np.uint64)
        for j in range(rows):
            h = h * Q + v[:, :, j]
        h = h * MIX + np.arange(bands, dtype=np.uint64)[None, :]  # bands never collide
    return h


def bucket_pairs(keys: np.ndarray, rec: np.ndarray, max_bucket: int = 64) -> np.ndarray:
    """(i, j), i < j, for records `rec` sharing a key in `keys` (one row per record and band),
    vectorised: a bucket of k <= max_bucket members gives its k(k-1)/2 pairs, a larger one
    (near-empty texts, boilerplate) each member paired with its smallest member only, which keeps
    the pair count linear while still letting the components join them. May repeat a pair."""
    order = np.lexsort((rec, keys))
    fk, fr = keys[order], rec[order]
    first = np.r_[True, (fk[1:] != fk[:-1]) | (fr[1:] != fr[:-1])]  # a record once per bucket
    fk, fr = fk[first], fr[first]
    starts = np.flatnonzero(np.r_[True, fk[1:] != fk[:-1]])
    sizes = np.diff(np.r_[starts, len(fk)])
    small = (sizes > 1) & (sizes <= max_bucket)
    # all pairs of the small buckets: member at offset o of a bucket of size k pairs with the
    # k - 1 - o members after it
    s0, k0 = starts[small], sizes[small]
    member = np.repeat(s0, k0) + (np.arange(int(k0.sum())) - np.repeat(np.cumsum(k0) - k0, k0))
    after = np.repeat(s0 + k0, k0) - member - 1
    a = np.repeat(member, after)
    b = a + 1 + (np.arange(int(after.sum())) - np.repeat(np.cumsum(after) - after, after))
    big = sizes > max_bucket
    s1, k1 = starts[big], sizes[big]
    head = np.repeat(s1, k1 - 1)
    rest = head + 1 + (np.arange(int((k1 - 1).sum())) - np.repeat(np.cumsum(k1 - 1) - (k1 - 1), k1 - 1))
    i = np.concatenate([fr[a], fr[head]])
    j = np.concatenate([fr[b], fr[rest]])
    keep = i != j
    return np.stack([np.minimum(i, j)[keep], np.maximum(i, j)[keep]], axis=1).astype(np.int64)


def unique_pairs(pairs: np.ndarray) -> np.ndarray:
    """Sorted unique rows of an (m, 2) array of non-negative int pairs."""
    if not len(pairs):
        return np.zeros((0, 2), dtype=np.int64)
    code = np.unique(pairs[:, 0].astype(np.int64) << np.int64(32) | pairs[:, 1].astype(np.int64))
    return np.stack([code >> np.int64(32), code & np.int64(0xFFFFFFFF)], axis=1)


def candidate_pairs(keys: np.ndarray, max_bucket: int = 64) -> np.ndarray:
    """Unique (i, j), i < j, sharing a bucket in some band of `keys` (n, bands): the LSH
    candidates (see `bucket_pairs`)."""
    n, bands = keys.shape
    return unique_pairs(bucket_pairs(keys.reshape(-1), np.repeat(np.arange(n), bands), max_bucket))


def datasketch_pairs(sig: np.ndarray, bands: int, rows: int, seed: int) -> np.ndarray:
    """The candidate pairs of datasketch's in-memory MinHashLSH over the same signatures (the
    peer `candidate_pairs` is checked against; everything held in memory)."""
    from datasketch import MinHash, MinHashLSH

    num_perm = sig.shape[1]
    lsh = MinHashLSH(num_perm=num_perm, params=(bands, rows))
    ms = [MinHash(num_perm=num_perm, seed=seed, hashvalues=s, scheme="affine32") for s in sig]
    for i, m in enumerate(ms):
        lsh.insert(i, m)
    pairs = {tuple(sorted((i, j))) for i, m in enumerate(ms) for j in lsh.query(m) if j != i}
    return np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2)
