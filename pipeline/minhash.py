"""Vectorised shingling and MinHash signatures, bit-identical to datasketch (SPEC R2).

datasketch's `MinHash.update` hashes every shingle with SHA-1 in a Python call and applies
the permutations one shingle at a time; that is the whole cost of MinHash dedup. Here a batch
of texts becomes one array of code points, shingle hashes are computed for all shingles at
once with a polynomial hash over uint64 (no Python loop per shingle or token), and the
permutations of datasketch's default scheme ("affine32": MurmurHash3 fmix32 pre-mix, then
a*h + b mod 2^32 with seed-drawn odd a) are applied to the whole batch with a segmented
minimum per text.

Bit-identity: `signatures(texts, langs)` equals, for every text,
``datasketch.MinHash(num_perm, seed, hashfunc=shingle_hash32)`` updated with
``[s.encode() for s in shingles(text, lang)]`` (tests/test_minhash.py checks it). With
``hash="sha1"`` the shingles are hashed with datasketch's default `sha1_hash32` instead (a
Python loop, kept for interoperability with sketches made by plain datasketch), and then the
signature equals a default ``datasketch.MinHash(num_perm, seed)``.

Shingles (Chinese and English alike, no `\\b`): text is NFKC-normalised and case-folded, and
only letters, digits and CJK characters are kept. `zh`/`mixed`/`other` records use character
n-grams over what is left (whitespace and punctuation dropped, so full-width and punctuation
variants collide); `en` records use word n-grams (words = runs of letters/digits). A text
shorter than n units yields one shingle of all its units.
"""
from __future__ import annotations

import hashlib
import struct
import unicodedata
from functools import lru_cache
from typing import Sequence

import numpy as np

P = np.uint64(0x100000001B3)  # FNV-64 prime: polynomial base over code points
Q = np.uint64(0x9E3779B97F4A7C15 | 1)  # base over word hashes
MIX = np.uint64(0xD6E8FEB86659FD93)  # final multiplicative fold to 32 bits
U64 = np.uint64
FMIX32 = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35), np.uint32(16))
MAX32 = np.uint32(0xFFFFFFFF)


@lru_cache(maxsize=1)
def _keep_table() -> np.ndarray:
    """Per BMP code point: is it a letter, a digit or a CJK character (kept in shingles)?"""
    t = np.zeros(0x10000, dtype=bool)
    for cp in range(0x10000):
        t[cp] = _is_kept(chr(cp))
    return t


def normalise(text: str) -> str:
    if text.isascii():  # NFKC is the identity on ASCII, and casefold is lower
        return text.lower()
    return unicodedata.normalize("NFKC", text).casefold()


def _codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def _is_kept(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "LN"


def _kept(cp: np.ndarray) -> np.ndarray:
    keep = np.zeros(len(cp), dtype=bool)
    bmp = cp < 0x10000
    keep[bmp] = _keep_table()[cp[bmp]]
    if not bmp.all():  # rare: astral planes (emoji, CJK extension B...) by category
        astral = np.flatnonzero(~bmp)
        vals = np.unique(cp[astral])
        ok = {int(v): _is_kept(chr(int(v))) for v in vals}
        keep[astral] = [ok[int(v)] for v in cp[astral]]
    return keep


def _fold32(h: np.ndarray) -> np.ndarray:
    return ((h * MIX) >> U64(32)).astype(np.uint32)


def _pow_table(base: np.uint64, n: int) -> np.ndarray:
    out = np.ones(max(n, 1), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for i in range(1, n):
            out[i] = out[i - 1] * base
    return out


# ------------------------------------------------------------------ reference (per shingle)

def shingles(text: str, lang: str, n_char: int = 3, n_word: int = 3) -> list[str]:
    """The shingles of one text, as strings (reference definition; the vectorised path
    produces the hashes of exactly these). Word shingles end with a space, char shingles
    contain none, so `shingle_hash32` knows which is which."""
    t = normalise(text)
    if lang == "en":
        words, cur = [], []
        for ch in t:
            if _is_kept(ch):
                cur.append(ch)
            elif cur:
                words.append("".join(cur))
                cur = []
        if cur:
            words.append("".join(cur))
        if not words:
            return []
        if len(words) < n_word:
            return [" ".join(words) + " "]
        return [" ".join(words[i:i + n_word]) + " " for i in range(len(words) - n_word + 1)]
    chars = [ch for ch in t if _is_kept(ch)]
    if not chars:
        return []
    if len(chars) < n_char:
        return ["".join(chars)]
    return ["".join(chars[i:i + n_char]) for i in range(len(chars) - n_char + 1)]


def _poly(vals: Sequence[int], base: np.uint64) -> np.uint64:
    h = U64(0)
    with np.errstate(over="ignore"):
        for v in vals:
            h = h * base + U64(v)
    return h


def _word_hash(word: str) -> np.uint64:
    """sum_j c_j * P^j (+1 so no word hashes to 0); the vectorised path gets the same value
    from prefix powers, without knowing where a word starts."""
    h = U64(0)
    with np.errstate(over="ignore"):
        for c in reversed(word):
            h = h * P + U64(ord(c))
    return h + U64(1)


def shingle_hash32(data: bytes) -> int:
    """32-bit hash of one shingle; a `hashfunc` for datasketch.MinHash."""
    s = data.decode("utf-8")
    with np.errstate(over="ignore"):
        if s.endswith(" "):
            h = _poly([int(_word_hash(w)) for w in s[:-1].split(" ")], Q)
        else:
            h = _poly([ord(c) for c in s], P)
        return int(_fold32(np.array([h], dtype=np.uint64))[0])


def sha1_hash32(data: bytes) -> int:
    """datasketch's default hash function (same definition)."""
    return struct.unpack("<I", hashlib.sha1(data).digest()[:4])[0]


# ------------------------------------------------------------------ vectorised

def _segmented_ngrams(vals: np.ndarray, seg: np.ndarray, n_seg: int, n: int, base: np.uint64) -> tuple:
    """Polynomial n-gram hashes over `vals` that never cross segment boundaries.
    Segments shorter than n give one hash of all their values. Returns (hashes, seg ids)."""
    if len(vals) == 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    counts = np.bincount(seg, minlength=n_seg)
    with np.errstate(over="ignore"):
        m = len(vals) - n + 1
        hs, ids = [], []
        if m > 0:
            h = np.zeros(m, dtype=np.uint64)
            for k in range(n):
                h = h * base + vals[k:k + m]
            ok = seg[:m] == seg[n - 1:n - 1 + m]
            hs.append(h[ok])
            ids.append(seg[:m][ok])
        short = np.flatnonzero((counts > 0) & (counts < n))
        if len(short):
            sel = np.isin(seg, short)
            sv, ss = vals[sel], seg[sel]
            starts = np.flatnonzero(np.r_[True, ss[1:] != ss[:-1]])
            pos = np.arange(len(ss)) - np.repeat(starts, np.diff(np.r_[starts, len(ss)]))
            lens = np.diff(np.r_[starts, len(ss)])
            pw = _pow_table(base, n)
            terms = sv * pw[np.repeat(lens, lens) - 1 - pos]
            hs.append(np.add.reduceat(terms, starts))
            ids.append(ss[starts])
    return np.concatenate(hs), np.concatenate(ids)


def _inverse_mod64(x: int) -> int:
    return pow(x, -1, 1 << 64)


def _concat(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Code points of all texts joined by NUL (never kept, so nothing crosses a text), and
    the start offset of each text."""
    lens = np.fromiter((len(t) + 1 for t in texts), dtype=np.int64, count=len(texts))
    starts = np.r_[0, np.cumsum(lens)[:-1]]
    return _codepoints("\x00".join(texts) + "\x00"), starts


def _char_hashes(texts: list[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    cp, starts = _concat(texts)
    pos = np.flatnonzero(_kept(cp))
    seg = np.searchsorted(starts, pos, "right") - 1
    return _segmented_ngrams(cp[pos].astype(np.uint64), seg, len(texts), n, P)


def _word_hashes(texts: list[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    cp, starts = _concat(texts)
    keep = _kept(cp)
    wstart = np.flatnonzero(keep & ~np.r_[False, keep[:-1]])
    if len(wstart) == 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    with np.errstate(over="ignore"):
        # word hash = sum_j c_j P^j = (sum over the word of c_g P^g) * P^-start, g global
        ppow = np.cumprod(np.full(len(cp), P, dtype=np.uint64)) * _inv_p_one()
        terms = np.where(keep, cp.astype(np.uint64) * ppow, U64(0))
        sums = np.add.reduceat(terms, wstart)
        inv = np.cumprod(np.full(len(cp), U64(_inverse_mod64(int(P))), dtype=np.uint64)) * U64(int(P))
        whash = sums * inv[wstart] + U64(1)
    seg = np.searchsorted(starts, wstart, "right") - 1
    return _segmented_ngrams(whash, seg, len(texts), n, Q)


@lru_cache(maxsize=1)
def _inv_p_one() -> np.uint64:
    """cumprod gives P^(g+1); multiplying by P^-1 makes it P^g."""
    return U64(_inverse_mod64(int(P)))


def shingle_hashes(texts: Sequence[str], langs: Sequence[str], n_char: int = 3, n_word: int = 3
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(uint32 shingle hashes, text index of each) for a batch, without a per-shingle loop."""
    norm = [normalise(t) for t in texts]
    is_en = np.array([lg == "en" for lg in langs], dtype=bool)
    out_h, out_i = [], []
    for sel, fn, n in ((np.flatnonzero(~is_en), _char_hashes, n_char), (np.flatnonzero(is_en), _word_hashes, n_word)):
        if len(sel):
            h, i = fn([norm[k] for k in sel], n)
            out_h.append(h)
            out_i.append(sel[i])
    if not out_h:
        return np.zeros(0, np.uint32), np.zeros(0, np.int64)
    h = np.concatenate(out_h)
    i = np.concatenate(out_i)
    order = np.argsort(i, kind="stable")
    return _fold32(h[order]), i[order]


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
    are candidates; group-by + union-find over these keys is the reduce, so a distributed
    engine can run it as it is."""
    n = sig.shape[0]
    v = sig[:, :bands * rows].reshape(n, bands, rows).astype(np.uint64)
    with np.errstate(over="ignore"):
        h = np.zeros((n, bands), dtype=np.uint64)
        for j in range(rows):
            h = h * Q + v[:, :, j]
        h = h * MIX + np.arange(bands, dtype=np.uint64)[None, :]  # bands never collide
    return h


def candidate_pairs(keys: np.ndarray, max_bucket: int = 64) -> np.ndarray:
    """Unique (i, j), i < j, sharing a bucket in some band. A bucket larger than `max_bucket`
    (near-empty texts, boilerplate) contributes each member paired with its first member only,
    which keeps the pair count linear while still letting union-find join them."""
    n, bands = keys.shape
    flat = keys.reshape(-1)
    rec = np.repeat(np.arange(n), bands)
    order = np.lexsort((rec, flat))
    fk, fr = flat[order], rec[order]
    starts = np.flatnonzero(np.r_[True, fk[1:] != fk[:-1]])
    sizes = np.diff(np.r_[starts, len(fk)])
    out = []
    for s, k in zip(starts[sizes > 1], sizes[sizes > 1]):  # one step per shared bucket
        m = np.unique(fr[s:s + k])
        if len(m) < 2:
            continue
        if len(m) <= max_bucket:
            i, j = np.triu_indices(len(m), 1)
            out.append(np.stack([m[i], m[j]], axis=1))
        else:
            out.append(np.stack([np.full(len(m) - 1, m[0]), m[1:]], axis=1))
    if not out:
        return np.zeros((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(out), axis=0)


class UnionFind:
    def __init__(self, n: int):
        self.p = np.arange(n)

    def find(self, x: int) -> int:
        p = self.p
        root = x
        while p[root] != root:
            root = p[root]
        while p[x] != root:
            p[x], x = root, p[x]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.p[max(ra, rb)] = min(ra, rb)
