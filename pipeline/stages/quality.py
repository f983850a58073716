"""Stage `quality` (R4): keep meaningful, coherent dialogues; drop spam and garbage.

Hard rules reject a conversation (reason = the first rule that fails, detail = the message and
the measured value); soft signals only lower `meta.quality` (`quality` in [0, 1], plus the
signals themselves), which dedup (`keep: quality`) and mix (tiers) read.

| rule (reason)       | a message fails when (prose: code blocks removed)                          |
|---------------------|-----------------------------------------------------------------------------|
| `mojibake`          | >= `max_mojibake` replacement / control characters or UTF-8-as-Latin-1 pairs |
| `garbage_text`      | >= `garbage_min_chars` visible characters and letters < `min_letter_share`  |
| `repetitive`        | a letter repeated >= `max_letter_run` times, or distinct 3-grams < `min_distinct_3grams` |
| `spam`              | a user message with a solicitation cue (加微信, 代开发票, click here, whatsapp me ...) or >= `max_urls` links and little text around them |
| `empty_reply`       | an assistant message with no letter or digit ("...", "？")                  |
| `no_content`        | the user messages hold fewer than `min_user_letters` letters in all           |

Soft: assistant refusals / AI boilerplate (-0.3), reply language unlike the user's (-0.2),
replies averaging under `short_reply_letters` letters (-0.2).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..quality import message_signals
from ..schema import SCHEMA
from .base import ConfigError, MapStage, with_meta

RULES = ("mojibake", "garbage_text", "repetitive", "spam", "empty_reply", "no_content")


@dataclass
class QualityConfig:
    max_mojibake: int = 3
    garbage_min_chars: int = 8
    min_letter_share: float = 0.25
    max_letter_run: int = 30           # elongations ("noooo") are human; a loop of one letter is not
    min_distinct_3grams: float = 0.25
    max_urls: int = 4
    link_text_chars: int = 40         # link spam: >= max_urls links and < this many characters per link
    min_user_letters: int = 2
    short_reply_letters: int = 8
    rules: str | list = "all"          # which hard rules reject; "all" or a list / comma string

    def rule_list(self) -> list[str]:
        r = self.rules
        if r == "all":
            return list(RULES)
        return [x.strip() for x in (r.split(",") if isinstance(r, str) else r) if x.strip()]

    def check(self) -> None:
        bad = sorted(set(self.rule_list()) - set(RULES))
        if bad:
            raise ConfigError(f"quality.rules: unknown {bad}; known: {list(RULES)}")
        for name in ("min_letter_share", "min_distinct_3grams"):
            if not 0 <= float(getattr(self, name)) <= 1:
                raise ConfigError(f"quality.{name}: {getattr(self, name)!r} must be in [0, 1]")


def _record_min(values: np.ndarray, starts: np.ndarray, n: int, empty) -> np.ndarray:
    """Per record (message offsets ``starts``), the minimum of its messages' ``values``; a
    sentinel at the end keeps reduceat's indices in range."""
    return np.minimum.reduceat(np.r_[values, empty], np.minimum(starts, len(values)))[:n]


def _first(mask: np.ndarray, starts: np.ndarray, n: int) -> np.ndarray:
    """Per record, index in the record of its first True message, or -1."""
    big = np.iinfo(np.int64).max
    first = _record_min(np.where(mask, np.arange(len(mask)), big), starts, n, big)
    lens = np.diff(np.r_[starts, len(mask)])
    return np.where((lens > 0) & (first != big), first - starts, -1)


class Quality(MapStage):
    name = "quality"
    Config = QualityConfig

    def run(self, batches, ctx, cfg: QualityConfig):
        rules = cfg.rule_list()
        for batch in batches:
            msgs = batch.column("messages")
            offsets = msgs.offsets.to_numpy()
            starts = (offsets[:-1] - offsets[0]).astype(np.int64)
            flat = msgs.flatten()
            content = pc.struct_field(flat, "content")
            role = np.asarray(pc.struct_field(flat, "role").to_numpy(zero_copy_only=False), dtype=object)
            s = message_signals(content)
            n = batch.num_rows
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
            share_min = _record_min(s["letter_share"], starts, n, 1.0)
            distinct_min = _record_min(s["distinct_3grams"], starts, n, 1.0)

            recs = batch.to_pylist()
            kept, quality = [], []
            for k, rec in enumerate(recs):
                reason = detail = None
                for rule in rules:
                    if rule == "no_content":
                        if user_letters[k] < cfg.min_user_letters:
                            reason, detail = rule, f"user messages hold {int(user_letters[k])} letters < {cfg.min_user_letters}"
                            break
                        continue
                    i = first[rule][k]
                    if i >= 0:
                        g = starts[k] + i
                        reason, detail = rule, f"messages[{i}] ({role[g]}): " + _explain(rule, s, g, cfg)
                        break
                if reason:
                    meta = rec["meta"] or {}
                    ctx.reject(reason, record_id=rec["id"], detail=detail, source_file=meta.get("source_file"),
                               line=meta.get("source_line"), raw=json.dumps(rec, ensure_ascii=False, default=str))
                    continue
                ctx.keep()
                ctx.stats["refusal"] += int(refusal[k])
                ctx.stats["lang_mismatch"] += int(mismatch[k])
                ctx.stats["short_replies"] += int(short[k])
                old = [q for q in ((rec["meta"] or {}).get("quality") or [])
                       if q["name"] not in ("quality", "letter_share_min", "distinct_3grams_min", "reply_letters_mean")]
                quality.append(old + [{"name": "quality", "value": float(score[k])},
                                      {"name": "letter_share_min", "value": round(float(share_min[k]), 4)},
                                      {"name": "distinct_3grams_min", "value": round(float(distinct_min[k]), 4)},
                                      {"name": "reply_letters_mean", "value": round(float(reply_letters[k]), 1)}])
                kept.append(rec)
            if kept:
                yield pa.RecordBatch.from_pylist(with_meta(kept, "quality", quality=quality), schema=SCHEMA)


    def finalize(self, folder, cfg: QualityConfig, counts: dict) -> dict:
        st = counts.get("stats", {})
        kept = counts.get("kept", 0)
        return {"quality": {
            "rules": cfg.rule_list(), "conversations": counts.get("in", 0), "kept": kept,
            "rejected": {r: counts.get("rejected", {}).get(r, 0) for r in cfg.rule_list()},
            "reject_share": counts.get("rejected_total", 0) / counts["in"] if counts.get("in") else None,
            # soft signals among the kept conversations (they lower meta.quality, never reject)
            "refusal": st.get("refusal", 0), "lang_mismatch": st.get("lang_mismatch", 0),
            "short_replies": st.get("short_replies", 0),
        }}


def _explain(rule: str, s: dict, g: int, cfg: QualityConfig) -> str:
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
