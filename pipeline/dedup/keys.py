"""Exact and prefix keys of a conversation, its text, and the score that picks the record a
duplicate cluster keeps."""
from __future__ import annotations

import hashlib
import math
import unicodedata

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def exact_text(s: str) -> str:
    """NFKC, case-folded, letters and digits only: spacing, punctuation and width variants of
    the same message give the same exact key."""
    s = unicodedata.normalize("NFKC", s).casefold()
    return "".join(ch for ch in s if unicodedata.category(ch)[0] in "LN")


def conversation_keys(rec: dict) -> tuple[bytes, list[bytes]]:
    """Exact key of the whole conversation and the keys of its proper prefixes at turn ends."""
    h = hashlib.blake2b(rec["source"].encode(), digest_size=16)
    prefixes = []
    msgs = rec["messages"]
    for i, m in enumerate(msgs):
        h.update(b"\x1e" + m["role"].encode() + b"\x1f" + exact_text(m["content"]).encode())
        nxt = msgs[i + 1] if i + 1 < len(msgs) else None
        if nxt is not None and nxt["role"] == "user" and m["role"] != "system":
            prefixes.append(h.copy().digest())
    return h.digest(), prefixes


def conversation_text(rec: dict) -> str:
    return "\n".join(m["content"] for m in rec["messages"])


def keep_score(rec: dict, keep: str) -> tuple:
    """Higher is kept: longest = (turns, characters), which favours session tails; newest and
    quality put the end time or the mean quality score first."""
    n_turns = max((m["turn"] for m in rec["messages"]), default=-1) + 1
    n_chars = sum(len(m["content"]) for m in rec["messages"])
    if keep == "newest":
        t = (rec["meta"] or {}).get("end_time")
        return (t.timestamp() if t is not None else -math.inf, n_turns, n_chars)
    if keep == "quality":
        q = (rec["meta"] or {}).get("quality") or []
        vals = [x["value"] for x in q if x.get("value") is not None]
        return (float(np.mean(vals)) if vals else -math.inf, n_turns, n_chars)
    return (n_turns, n_chars)


# ----------------------------------------------------------------------------- vectorised

_M64 = (1 << 64) - 1
# Two independent (base over code points, base over messages) pairs: 2 x 64 bits per key, so
# P(any collision) ~ n^2 / 2^129 (negligible at any corpus size).
_BASES = ((0x100000001B3, 0x9E3779B97F4A7C15 | 1), (0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9))
_U = np.uint64


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser (vectorised, wraps mod 2^64)."""
    h = h ^ (h >> _U(30))
    h = h * _U(0xBF58476D1CE4E5B9)
    h = h ^ (h >> _U(27))
    h = h * _U(0x94D049BB133111EB)
    return h ^ (h >> _U(31))


def _powers(base: int, n: int) -> np.ndarray:
    """base^0 .. base^(n-1) mod 2^64."""
    out = np.empty(max(n, 1), dtype=np.uint64)
    out[0] = 1
    if n > 1:
        out[1:] = np.cumprod(np.full(n - 1, base, dtype=np.uint64))
    return out[:n]


def _str_hash(values: list[str]) -> np.ndarray:
    """64-bit hash of a few strings (role names, sources): one Python call each."""
    return np.array([int.from_bytes(hashlib.blake2b(v.encode(), digest_size=8).digest(), "little")
                     for v in values], dtype=np.uint64)


def _codes(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(hash of each distinct value, code of each row)."""
    enc = pc.dictionary_encode(pc.fill_null(arr, ""))
    return _str_hash(enc.dictionary.to_pylist()), enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)


def batch_keys(messages: pa.ListArray, sources: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact and prefix keys of a batch of conversations, without a loop per character.

    Returns (exact (n, 2) uint64, prefix_row (m,) int64, prefix (m, 2) uint64). Two
    conversations share an exact key when they have the same source and the same messages up to
    `exact_text` (role by role); a prefix key is the exact key the conversation would have if it
    ended at a message that a user message follows (not a system message). Same equality as
    `conversation_keys`, computed as a rolling polynomial hash over message hashes."""
    from ..shingles import concat_codepoints, kept_mask, normalise

    n = len(messages)
    offs = messages.offsets.to_numpy().astype(np.int64)
    offs = offs - offs[0]
    flat = pc.list_flatten(messages)
    n_msg = len(flat)
    texts = [normalise(t) for t in pc.struct_field(flat, "content").to_pylist()]  # NFKC + casefold
    role_h, role_c = _codes(pc.struct_field(flat, "role"))
    src_h, src_c = _codes(sources)
    cp, starts = concat_codepoints(texts)
    pos = np.flatnonzero(kept_mask(cp))
    seg = np.searchsorted(starts, pos, "right") - 1  # message of each kept code point
    counts = np.bincount(seg, minlength=n_msg)
    first = np.r_[0, np.cumsum(counts)[:-1]]  # index in `pos` of each message's first kept point
    local = np.arange(len(pos)) - first[seg]
    vals = cp[pos].astype(np.uint64) + _U(1)
    rec_of = np.repeat(np.arange(n), np.diff(offs))
    msg_start = offs[:-1]
    roles = pc.struct_field(flat, "role")
    is_user = pc.equal(roles, "user").to_numpy(zero_copy_only=False)
    is_system = pc.equal(roles, "system").to_numpy(zero_copy_only=False)
    nxt_user = np.r_[is_user[1:], False] & (np.r_[rec_of[1:], -1] == rec_of)
    at = np.flatnonzero(nxt_user & ~is_system)
    exact = np.zeros((n, 2), dtype=np.uint64)
    prefix = np.zeros((len(at), 2), dtype=np.uint64)
    last = offs[1:] - 1
    nonempty = np.diff(offs) > 0
    with np.errstate(over="ignore"):
        for k, (b_char, b_msg) in enumerate(_BASES):
            powt = _powers(b_char, int(local.max(initial=0)) + 1)
            terms = vals * powt[local]
            h = np.zeros(n_msg, dtype=np.uint64)
            ne = counts > 0
            if len(pos):
                h[ne] = np.add.reduceat(terms, first[ne])
            m = _mix(h ^ _mix(counts.astype(np.uint64) + _U(k + 1)) ^ (role_h[role_c] * _U(0x9E3779B97F4A7C15)))
            # rolling P_g = P_(g-1) * C + m_g per conversation, P_(-1) = hash(source):
            # P_g = C^g * (src * C * C^-s + sum_(j=s..g) m_j C^-j) with s the conversation start
            cp_ = _powers(b_msg, n_msg + 1)
            inv = _powers(pow(b_msg, -1, 1 << 64), n_msg + 1)
            csum = np.cumsum(m * inv[:n_msg])
            before = np.r_[_U(0), csum][msg_start]  # S(s - 1)
            base = src_h[src_c] * _U(b_msg) * inv[msg_start] - before  # per conversation
            roll = cp_[:n_msg] * (csum + base[rec_of])
            exact[:, k] = np.where(nonempty, roll[np.maximum(last, 0)] if n_msg else _U(0), src_h[src_c])
            prefix[:, k] = roll[at]
    return exact, rec_of[at], prefix


def batch_scores(batch: pa.RecordBatch, keep: str) -> np.ndarray:
    """(n, 3) float64 keep scores, higher kept; the same order as `keep_score` (the shorter
    tuples of `longest` are padded with a constant first column)."""
    msgs = batch.column("messages")
    n = batch.num_rows
    offs = msgs.offsets.to_numpy().astype(np.int64)
    offs = offs - offs[0]
    flat = pc.list_flatten(msgs)
    turn = pc.struct_field(flat, "turn").to_numpy(zero_copy_only=False).astype(np.float64)
    chars = pc.utf8_length(pc.struct_field(flat, "content")).to_numpy(zero_copy_only=False).astype(np.float64)
    ne = np.diff(offs) > 0
    n_turns = np.zeros(n)
    n_chars = np.zeros(n)
    if ne.any():
        n_turns[ne] = np.maximum.reduceat(turn, offs[:-1][ne]) + 1
        n_chars[ne] = np.add.reduceat(chars, offs[:-1][ne])
    first = np.zeros(n)
    if keep == "newest":
        t = pc.struct_field(batch.column("meta"), "end_time")
        ms = pc.cast(t, pa.int64()).to_numpy(zero_copy_only=False)
        first = np.where(pc.is_null(t).to_numpy(zero_copy_only=False), -np.inf, ms / 1000.0)
    elif keep == "quality":
        q = pc.struct_field(batch.column("meta"), "quality")
        qo = pc.fill_null(pc.list_value_length(q), 0).to_numpy(zero_copy_only=False).astype(np.int64)
        vals = pc.struct_field(pc.list_flatten(q), "value")
        v = pc.fill_null(vals, 0.0).to_numpy(zero_copy_only=False).astype(np.float64)
        ok = pc.is_valid(vals).to_numpy(zero_copy_only=False)
        rec = np.repeat(np.arange(n), qo)
        cnt = np.bincount(rec[ok], minlength=n)
        tot = np.bincount(rec[ok], weights=v[ok], minlength=n)
        first = np.where(cnt > 0, tot / np.maximum(cnt, 1), -np.inf)
    return np.stack([first, n_turns, n_chars], axis=1)
