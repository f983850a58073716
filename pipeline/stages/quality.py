"""Stage `quality`: keep meaningful, coherent dialogues; drop spam and garbage.

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

import pyarrow as pa

from ..config import ConfigError
from ..quality.rules import RULES, assess
from ..schema import SCHEMA
from .base import MapStage, with_meta

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


class Quality(MapStage):
    name = "quality"
    Config = QualityConfig

    def run(self, batches, ctx, cfg: QualityConfig):
        rules = cfg.rule_list()
        for batch in batches:
            a = assess(batch.column("messages"), cfg, rules)
            kept, quality = [], []
            for k, rec in enumerate(batch.to_pylist()):
                if a["reason"][k]:
                    meta = rec["meta"] or {}
                    ctx.reject(a["reason"][k], record_id=rec["id"], detail=a["detail"][k],
                               source_file=meta.get("source_file"), line=meta.get("source_line"),
                               raw=json.dumps(rec, ensure_ascii=False, default=str))
                    continue
                ctx.keep()
                ctx.stats["refusal"] += int(a["refusal"][k])
                ctx.stats["lang_mismatch"] += int(a["mismatch"][k])
                ctx.stats["short_replies"] += int(a["short"][k])
                old = [q for q in ((rec["meta"] or {}).get("quality") or [])
                       if q["name"] not in ("quality", "letter_share_min", "distinct_3grams_min", "reply_letters_mean")]
                quality.append(old + [{"name": "quality", "value": float(a["score"][k])},
                                      {"name": "letter_share_min", "value": round(float(a["letter_share_min"][k]), 4)},
                                      {"name": "distinct_3grams_min",
                                       "value": round(float(a["distinct_3grams_min"][k]), 4)},
                                      {"name": "reply_letters_mean", "value": round(float(a["reply_letters_mean"][k]), 1)}])
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

