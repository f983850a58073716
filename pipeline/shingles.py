"""Character and word n-gram ("shingle") hashes for Chinese and English text, vectorised.

The text features of dedup (MinHash), quality (repetition) and topic continuity (overlap) all
start from the same shingles, so their definition lives here, in the core.

Shingles (Chinese and English alike, no `\\b`): text is NFKC-normalised and case-folded, and
only letters, digits and CJK characters are kept. `zh`/`mixed`/`other` records use character
n-grams over what is left (whitespace and punctuation dropped, so full-width and punctuation
variants collide); `en` records use word n-grams (words = runs of letters/digits). A text
shorter than n units yields one shingle of all its units.

A batch of texts becomes one array of code points and the hashes of all its shingles are
computed at once with a polynomial hash over uint64: no Python loop per shingle or token.
`shingles()` is the per-text reference definition; `shingle_hash32` hashes one of its strings
to the value the vectorised path gives (tests/test_minhash.py checks both agree).
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


def kept_mask(cp: np.ndarray) -> np.ndarray:
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


def concat_codepoints(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Code points of all texts joined by NUL (never kept, so nothing crosses a text), and
    the start offset of each text."""
    lens = np.fromiter((len(t) + 1 for t in texts), dtype=np.int64, count=len(texts))
    starts = np.r_[0, np.cumsum(lens)[:-1]]
    return _codepoints("\x00".join(texts) + "\x00"), starts


def _char_hashes(texts: list[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    cp, starts = concat_codepoints(texts)
    pos = np.flatnonzero(kept_mask(cp))
    seg = np.searchsorted(starts, pos, "right") - 1
    return _segmented_ngrams(cp[pos].astype(np.uint64), seg, len(texts), n, P)


def _word_hashes(texts: list[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    cp, starts = concat_codepoints(texts)
    keep = kept_mask(cp)
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
