"""The quality rules: hard rules that reject a conversation and soft signals that only lower
its score, decided for a whole batch at once from the per-message signals (signals.py).

`cfg` is any object with the thresholds of the quality stage's config (QualityConfig in
pipeline/stages/quality.py; docs/stages/quality.md lists them).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .signals import message_signals

RULES = ("mojibake", "garbage_text", "repetitive", "spam", "empty_reply", "no_content")


def record_min(values: np.ndarray, starts: np.ndarray, n: int, empty) -> np.ndarray:
    """Per record (message offsets ``starts``), the minimum of its messages' ``values``; a
    sentinel at the end keeps reduceat's indices in range."""
    return np.minimum.reduceat(np.r_[values, empty], np.minimum(starts, len(values)))[:n]


def _first(mask: np.ndarray, starts: np.ndarray, n: int) -> np.ndarray:
    """Per record, index in the record of its first True message, or -1."""
    big = np.iinfo(np.int64).max
    first = record_min(np.where(mask, np.arange(len(mask)), big), starts, n, big)
    lens = np.diff(np.r_[starts, len(mask)])
    return np.where((lens > 0) & (first != big), first - starts, -1)


def assess(messages: pa.ListArray, cfg, rules: list[str]) -> dict:
    """Per conversation of a batch: `reason` (first rule of `rules` it breaks, or None) with its
    `detail`, the soft signals (`refusal`, `mismatch`, `short`), `score` and the per-record
    minima / means kept in meta.quality. Arrays of length len(messages), vectorised."""
    msgs = messages
    offsets = msgs.offsets.to_numpy()
    starts = (offsets[:-1] - offsets[0]).astype(np.int64)
    flat = msgs.flatten()
    content = pc.struct_field(flat, "content")
    role = np.asarray(pc.struct_field(flat, "role").to_numpy(zero_copy_only=False), dtype=object)
    s = message_signals(content)
    n = len(msgs)
    user, asst = role == "user", role == "assistant"
    fails = {
        "mojibake": s["mojibake"] >= cfg.max_mojibake,
        "garbage_text": ((s["prose_chars"] >= cfg.garbage_min_chars)
                         & (s["letter_share"] < cfg.min_letter_share)),
        "repetitive": (s["letter_run"] >= cfg.max_letter_run) | (s["distinct_3grams"] < cfg.min_distinct_3grams),
        # ads come from the user side of a log; a wall of links with little text is one too
        "spam": user & (s["spam"] | ((s["urls"] >= cfg.max_urls)
                                     & (s["prose_chars"] < cfg.link_text_chars * s["urls"]))),
        "empty_reply": asst & (s["letters"] == 0),
    }
    first = {k: _first(v, starts, n) for k, v in fails.items()}
    seg = np.repeat(np.arange(n), np.diff(offsets))
    user_letters = np.bincount(seg, weights=np.where(user, s["letters"], 0), minlength=n)
    # soft signals per record
    n_asst = np.bincount(seg, weights=asst, minlength=n)
    refusal = np.bincount(seg, weights=asst & s["refusal"], minlength=n) > 0
    reply_letters = np.bincount(seg, weights=np.where(asst, s["letters"], 0), minlength=n) / np.maximum(n_asst, 1)
    u_en = np.bincount(seg, weights=user & s["is_en"], minlength=n)
    u_zh = np.bincount(seg, weights=user & s["has_cjk"] & ~s["is_en"], minlength=n)
    a_en = np.bincount(seg, weights=asst & s["is_en"], minlength=n)
    a_zh = np.bincount(seg, weights=asst & s["has_cjk"] & ~s["is_en"], minlength=n)
    mismatch = ((u_zh > u_en) & (a_en > a_zh)) | ((u_en > u_zh) & (a_zh > a_en))
    short = reply_letters < cfg.short_reply_letters
    score = np.clip(1.0 - 0.3 * refusal - 0.2 * mismatch - 0.2 * short, 0.0, 1.0)

    reasons: list = [None] * n
    details: list = [None] * n
    for k in range(n):  # per record, not per message: the first rule broken, in the configured order
        for rule in rules:
            if rule == "no_content":
                if user_letters[k] < cfg.min_user_letters:
                    reasons[k] = rule
                    details[k] = f"user messages hold {int(user_letters[k])} letters < {cfg.min_user_letters}"
                    break
                continue
            i = first[rule][k]
            if i >= 0:
                g = starts[k] + i
                reasons[k], details[k] = rule, f"messages[{i}] ({role[g]}): " + explain(rule, s, g, cfg)
                break
    return {"reason": reasons, "detail": details, "refusal": refusal, "mismatch": mismatch, "short": short,
            "score": score, "letter_share_min": record_min(s["letter_share"], starts, n, 1.0),
            "distinct_3grams_min": record_min(s["distinct_3grams"], starts, n, 1.0),
            "reply_letters_mean": reply_letters}


def explain(rule: str, s: dict, g: int, cfg) -> str:
    if rule == "mojibake":
        return f"{int(s['mojibake'][g])} replacement/control/mis-decoded characters >= {cfg.max_mojibake}"
    if rule == "garbage_text":
        return f"letter share {s['letter_share'][g]:.2f} < {cfg.min_letter_share} over {int(s['prose_chars'][g])} characters"
    if rule == "repetitive":
        if s["letter_run"][g] >= cfg.max_letter_run:
            return f"one letter repeated {int(s['letter_run'][g])} times >= {cfg.max_letter_run}"
        return f"distinct 3-grams {s['distinct_3grams'][g]:.2f} < {cfg.min_distinct_3grams}"
    if rule == "spam":
        return "advertising / scam cue" if s["spam"][g] else f"{int(s['urls'][g])} links >= {cfg.max_urls}"
    return "assistant reply without a letter or digit"
