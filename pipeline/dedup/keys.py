"""Exact and prefix keys of a conversation, its text, and the score that picks the record a
duplicate cluster keeps."""
from __future__ import annotations

import hashlib
import math
import unicodedata

import numpy as np


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
