"""`turnforge scan`, `turnforge pii detect`, `turnforge pii eval`: PII detection as a tool.

Findings are reported as entity type, record/line and character offsets, never the value.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from typing import Iterator, TextIO


def _analyzer(entities=None, spacy=True, min_score=0.4):
    from .pii import get_analyzer

    return get_analyzer(entities, spacy, min_score)


def scan_folder(folder: str, out: TextIO, limit: int = 20, entities=None) -> int:
    """Scan every message of a shard folder, a build's last stage, or raw input files (a file,
    a folder of them or a glob, read as extract reads them); return #findings."""
    folder, batches, dropped = _what_to_scan(folder)
    an = _analyzer(entities)
    counts: Counter = Counter()
    shown = n_msgs = skipped = 0
    for b in batches:
        recs = b.to_pylist()
        texts = [m["content"] for r in recs for m in r["messages"]]
        langs = [r["lang"] for r in recs for _ in r["messages"]]
        where = [(r["id"], i, [(s["start"], s["end"]) for s in ((r["meta"] or {}).get("pii_spans") or [])
                                 if s["message"] == i]) for r in recs for i in range(len(r["messages"]))]
        n_msgs += len(texts)
        for (rid, mi, fake), fs in zip(where, an.analyze_batch(texts, langs)):
            for f in fs:
                if any(f.start < e and s < f.end for s, e in fake):
                    skipped += 1  # a pseudonym the pii stage wrote, not PII
                    continue
                counts[f.entity_type] += 1
                if shown < limit:
                    print(f"{rid} messages[{mi}] {f.entity_type} {f.start}-{f.end} score {f.score:.2f}", file=out)
                    shown += 1
    total = sum(counts.values())
    print(f"{folder}: {n_msgs} messages scanned, {total} PII findings {dict(sorted(counts.items()))}"
          f" ({skipped} pseudonyms written by the pii stage skipped)", file=out)
    if dropped:
        print(f"{folder}: not scanned: {sum(dropped.values())} input units, message runs or files extract drops "
              f"{dict(sorted(dropped.items()))}; `turnforge validate {folder}` lists them", file=out)
    return total


def _what_to_scan(path: str) -> tuple[str, Iterator, Counter]:
    """(what is scanned, its record batches, what extract dropped unscanned, by reason). A path
    that is not a shard folder or build is read as raw input; one that holds neither is an
    error, never "0 messages scanned"."""
    from . import shards
    from .config import ConfigError
    from .io.readers import expand_paths

    if not os.path.exists(path) and not any(c in path for c in "*?["):
        raise ConfigError(f"{path}: no such file or folder")
    try:
        folder = shards.shard_folder(path)
        return folder, shards.iter_batches(folder), Counter()
    except ConfigError as not_shards:
        try:
            expand_paths(path)
        except FileNotFoundError:
            raise ConfigError(f"{not_shards}; nor does it hold input files (.jsonl/.json/.csv/.parquet) "
                              "to scan") from None
    dropped: Counter = Counter()
    return path, _raw_batches(path, dropped), dropped


def _raw_batches(path: str, dropped: Counter) -> Iterator:
    """Raw input as extract reads it, whole: no tail is trimmed away unscanned."""
    from .validate import extract_in_memory

    for _, ctx, batches in extract_in_memory(path, {"tail_turns": 0, "tail_chars": 0}):
        yield from batches
        dropped.update(ctx.rejected)
        dropped.update(ctx.archived)
        dropped.update(f"skipped file ({s['reason']})" for s in ctx.skipped_files)


def _read_json_or_jsonl(path: str) -> Iterator[dict]:
    with open(path, encoding="utf-8-sig") as f:
        head = f.read(1)
        f.seek(0)
        if head == "[":
            yield from json.load(f)
        else:
            for line in f:
                if line.strip():
                    yield json.loads(line)


def detect_file(inp: str, out_path: str, lang: str = "auto") -> int:
    """Add `pii: [{entity_type, start, end, score}]` to every line that has a `text`."""
    from .text import detect_lang
    import pyarrow as pa

    an = _analyzer()
    n = 0
    with open(out_path, "w", encoding="utf-8") as out:
        for rec in _read_json_or_jsonl(inp):
            text = rec.get("text")
            if isinstance(text, str):
                lg = lang
                if lang == "auto":
                    msgs = pa.array([[{"content": text}]], pa.list_(pa.struct([("content", pa.string())])))
                    lg = detect_lang(msgs)[0]
                rec["pii"] = [{"entity_type": f.entity_type, "start": f.start, "end": f.end,
                               "score": round(float(f.score), 4)} for f in an.analyze(text, lg)]
                n += 1
            out.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return n


# gold labels of other tag sets that mean what our LOCATION means (a street-level address)
GOLD_ALIASES = {"STREET_ADDRESS": "LOCATION", "ADDRESS": "LOCATION"}


def evaluate(data: str, entities=None) -> dict:
    """Per-entity precision / recall / F1 of the analyzer against gold `spans`
    ({entity_type, start_position, end_position}); text in `text` or `full_text`. A prediction
    is a true positive when it overlaps an unmatched gold span of the same type."""
    an = _analyzer(entities)
    known = set(an.entity_types)
    tp, fp, fn = Counter(), Counter(), Counter()
    n = 0
    for rec in _read_json_or_jsonl(data):
        text = rec.get("text", rec.get("full_text"))
        if not isinstance(text, str):
            continue
        n += 1
        gold = [(GOLD_ALIASES.get(s["entity_type"], s["entity_type"]), s["start_position"], s["end_position"])
                for s in rec.get("spans", [])]
        used = [False] * len(gold)
        for f in an.analyze(text, "en"):
            hit = next((i for i, (t, s, e) in enumerate(gold)
                        if not used[i] and t == f.entity_type and f.start < e and s < f.end), None)
            if hit is None:
                fp[f.entity_type] += 1
            else:
                used[hit] = True
                tp[f.entity_type] += 1
        for (t, _, _), u in zip(gold, used):
            if not u:
                fn[t] += 1
    out = {}
    for t in sorted(set(tp) | set(fp) | set(fn)):
        p = tp[t] / (tp[t] + fp[t]) if tp[t] + fp[t] else None
        r = tp[t] / (tp[t] + fn[t]) if tp[t] + fn[t] else None
        f1 = 2 * p * r / (p + r) if p and r else (0.0 if p is not None and r is not None else None)
        out[t] = {"precision": p, "recall": r, "f1": f1, "tp": tp[t], "fp": fp[t], "fn": fn[t],
                  "detected_by_us": t in known}
    return {"records": n, "entities": out}


def print_eval(res: dict, out: TextIO) -> None:
    fmt = lambda x: "   -  " if x is None else f"{x:6.3f}"  # noqa: E731
    print(f"{res['records']} records", file=out)
    print(f"{'entity':<20} {'prec':>6} {'recall':>6} {'f1':>6} {'tp':>5} {'fp':>5} {'fn':>5}", file=out)
    for t, r in res["entities"].items():
        note = "" if r["detected_by_us"] else "  (not detected by this configuration)"
        print(f"{t:<20} {fmt(r['precision'])} {fmt(r['recall'])} {fmt(r['f1'])} {r['tp']:>5} {r['fp']:>5} "
              f"{r['fn']:>5}{note}", file=out)
