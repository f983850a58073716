"""Tokenise conversations and pack them into fixed-length rows.

Rendering: the conversation is rendered to text with a chat template (the tokenizer's own, or a
named one such as `chatml`), each message's content is located in the rendered text, and the
text is tokenised once with character offsets. Tokens that start inside an assistant message's
content, plus the end-of-turn token right after it, are supervised; everything else (system,
user, tool, template markup) gets label -100 (docs/design.md#label-mask). Every supervised token carries its turn id.
One code path serves any template, because labels come from character spans, not from
re-tokenising pieces.

Truncation keeps the tail: whole early turns are dropped until the conversation fits
`max_len` (leading system messages stay). A conversation whose last turn alone does not fit is
rejected (`too_long`), never cut mid-answer.

Packing: best-fit-decreasing over a window of documents; position ids restart at 0 for every
document, turn ids are renumbered 0..T-1 per row so no two documents share a turn,
and per-document lengths are stored so attention can be kept inside documents.
"""
from __future__ import annotations

import bisect
import json
import os
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa

from pipeline import integrity, shards
from pipeline.schema import REJECTED_SCHEMA, rejected_row

PACKED_SCHEMA = pa.schema(
    [
        pa.field("input_ids", pa.list_(pa.int32())),
        pa.field("labels", pa.list_(pa.int32())),  # -100 = not supervised
        pa.field("position_ids", pa.list_(pa.int32())),  # restart at 0 per document
        pa.field("turn_ids", pa.list_(pa.int32())),  # -1 = not supervised; else 0..n_turns-1 in this row
        pa.field("doc_lens", pa.list_(pa.int32())),
        pa.field("doc_ids", pa.list_(pa.string())),
        pa.field("domains", pa.list_(pa.string())),
        pa.field("n_turns", pa.int32()),
        pa.field("n_supervised", pa.int32()),
    ],
    metadata={"turnforge.kind": "packed"},
)


@dataclass
class PackConfig:
    model: str = "tiny"  # tokenizer source: `tiny` or a local Hugging Face path
    template: str = "auto"  # auto (tokenizer's own, else chatml) | chatml | a Jinja string
    max_len: int = 1024
    window: int = 20_000  # documents per best-fit-decreasing window (bounds memory)
    packing: bool = True  # False: one conversation per row (padded batches)
    rows_per_part: int = 20_000
    extra: dict = field(default_factory=dict)


def load_tokenizer(model: str):
    from .tiny import load_tokenizer as _load

    return _load(None if model == "tiny" else model)


def resolve_template(tokenizer, template: str) -> str:
    from pipeline.templates import TEMPLATES

    if template == "auto":
        return tokenizer.chat_template or TEMPLATES["chatml"]
    return TEMPLATES.get(template, template)


def end_of_turn_id(tokenizer) -> int | None:
    for t in ("<|im_end|>", "<|eot_id|>", "<|end|>"):
        i = tokenizer.convert_tokens_to_ids(t)
        if isinstance(i, int) and i != tokenizer.unk_token_id and i is not None and i >= 0:
            return i
    return tokenizer.eos_token_id


class Encoder:
    """Conversation (list of {role, content, turn}) -> input_ids, labels, turn_ids."""

    def __init__(self, tokenizer, template: str = "auto", max_len: int = 1024):
        self.tok = tokenizer
        self.template = resolve_template(tokenizer, template)
        self.max_len = max_len
        self.eot = end_of_turn_id(tokenizer)

    def render(self, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
        """Rendered text and each message's content span in it. The template is rendered with
        unique placeholders for the contents, so markup can never be mistaken for content; the
        result must equal the real rendering (content verbatim, or stripped, as some templates
        do), else the conversation is rejected as `template_mismatch`."""
        msgs = [{"role": m["role"], "content": m["content"]} for m in messages]
        real = self.tok.apply_chat_template(msgs, tokenize=False, chat_template=self.template)
        marks = [f"\ue000{i}\ue001" for i in range(len(msgs))]
        skel = self.tok.apply_chat_template([{"role": m["role"], "content": k} for m, k in zip(msgs, marks)],
                                            tokenize=False, chat_template=self.template)
        for fix in (lambda c: c, str.strip):
            parts, spans, pos, cur = [], [], 0, 0
            for m, k in zip(msgs, marks):
                i = skel.find(k, pos)
                if i < 0:
                    raise ValueError("template_mismatch")
                parts.append(skel[pos:i])
                cur += i - pos
                c = fix(m["content"])
                spans.append((cur, cur + len(c)))
                parts.append(c)
                cur += len(c)
                pos = i + len(k)
            parts.append(skel[pos:])
            if "".join(parts) == real:
                return real, spans
        raise ValueError("template_mismatch")

    def _labels(self, messages, spans, ids: np.ndarray, starts: np.ndarray):
        labels = np.full(len(ids), -100, dtype=np.int32)
        turns = np.full(len(ids), -1, dtype=np.int32)
        for m, (s, e) in zip(messages, spans):
            if m["role"] != "assistant":
                continue
            lo = int(np.searchsorted(starts, s, "left"))
            hi = int(np.searchsorted(starts, e, "left"))
            if hi < len(ids) and self.eot is not None and ids[hi] == self.eot:
                hi += 1  # the model must learn to end its turn
            labels[lo:hi] = ids[lo:hi]
            turns[lo:hi] = m["turn"]
        return labels, turns

    def _tokenize(self, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(ids, char start of each token) per text, one batched call into the Rust tokenizer."""
        enc = self.tok(texts, add_special_tokens=False, return_offsets_mapping=True)
        return [(np.asarray(ids, dtype=np.int32), np.asarray(off, dtype=np.int64).reshape(-1, 2)[:, 0])
                for ids, off in zip(enc["input_ids"], enc["offset_mapping"])]

    def encode_many(self, convs: list[list[dict]]) -> list[dict | str]:
        """Each conversation -> {input_ids, labels, turn_ids, dropped_turns} or a reject reason."""
        rendered = []
        for msgs in convs:
            try:
                rendered.append(self.render(msgs))
            except ValueError as e:
                rendered.append(str(e))
        toks = iter(self._tokenize([r[0] for r in rendered if not isinstance(r, str)]))
        out = []
        for msgs, r in zip(convs, rendered):
            if isinstance(r, str):
                out.append(r)
                continue
            ids, starts = next(toks)
            if len(ids) > self.max_len:
                out.append(self._truncate(msgs, r[1], starts))
                continue
            labels, turns = self._labels(msgs, r[1], ids, starts)
            out.append({"input_ids": ids, "labels": labels, "turn_ids": turns, "dropped_turns": 0})
        return out

    def _truncate(self, msgs: list[dict], spans, starts: np.ndarray) -> dict | str:
        """Drop whole early turns until it fits (keep the tail, docs/design.md#extraction). The first try is
        the earliest turn whose tail fits by the full rendering's token counts, so a long
        conversation is re-tokenised about once, not once per dropped turn."""
        n_sys = 0
        while n_sys < len(msgs) and msgs[n_sys]["role"] == "system":
            n_sys += 1
        system, body = msgs[:n_sys], msgs[n_sys:]
        turns = sorted({m["turn"] for m in body})
        if len(turns) < 2:
            return "too_long"
        # token index where each turn's first message content starts, in the full rendering
        first_msg = {}
        for i in range(n_sys, len(msgs)):
            first_msg.setdefault(msgs[i]["turn"], i)
        tok_at = {t: int(np.searchsorted(starts, spans[i][0])) for t, i in first_msg.items()}
        sys_tokens = int(np.searchsorted(starts, spans[n_sys - 1][1])) if n_sys else 0
        n = len(starts)
        k = next((j for j, t in enumerate(turns[1:], 1) if sys_tokens + n - tok_at[t] <= self.max_len), len(turns))
        for drop in range(k, len(turns)):
            sub = system + [m for m in body if m["turn"] >= turns[drop]]
            text, sub_spans = self.render(sub)
            ((ids, st),) = self._tokenize([text])
            if len(ids) <= self.max_len:
                labels, tids = self._labels(sub, sub_spans, ids, st)
                return {"input_ids": ids, "labels": labels, "turn_ids": tids, "dropped_turns": drop}
        return "too_long"


def best_fit_decreasing(lengths: list[int], capacity: int) -> list[list[int]]:
    """Bins of document indices; each bin's total length <= capacity.

    >>> best_fit_decreasing([5, 3, 4, 2, 6], 8)
    [[4, 3], [0, 1], [2]]
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    space: list[tuple[int, int]] = []  # (remaining, bin index), sorted
    for i in order:
        L = lengths[i]
        j = bisect.bisect_left(space, (L, -1))
        if j < len(space):
            rem, b = space.pop(j)
            bins[b].append(i)
            bisect.insort(space, (rem - L, b))
        else:
            bins.append([i])
            bisect.insort(space, (capacity - L, len(bins) - 1))
    return bins


def make_row(docs: list[dict]) -> dict:
    """Concatenate documents into one packed row with per-row turn ids 0..T-1."""
    ids = np.concatenate([d["input_ids"] for d in docs])
    labels = np.concatenate([d["labels"] for d in docs])
    pos = np.concatenate([np.arange(len(d["input_ids"]), dtype=np.int32) for d in docs])
    turn_parts, offset = [], 0
    for d in docs:
        t = d["turn_ids"].astype(np.int64)
        sup = t >= 0
        uniq, inv = np.unique(t[sup], return_inverse=True)
        tt = np.full(len(t), -1, dtype=np.int32)
        tt[sup] = inv + offset
        offset += len(uniq)
        turn_parts.append(tt)
    starts = np.cumsum([0] + [len(d["input_ids"]) for d in docs[:-1]])
    labels[starts] = -100  # a document's first token is never predicted from the previous one
    turns = np.concatenate(turn_parts)
    turns[starts] = -1
    return {"input_ids": ids, "labels": labels, "position_ids": pos, "turn_ids": turns,
            "doc_lens": [len(d["input_ids"]) for d in docs], "doc_ids": [d["id"] for d in docs],
            "domains": [d["domain"] for d in docs], "n_turns": offset, "n_supervised": int((labels != -100).sum())}


def _rows_batch(rows: list[dict]) -> pa.RecordBatch:
    def lst(key, typ):
        return pa.ListArray.from_arrays(
            pa.array(np.cumsum([0] + [len(r[key]) for r in rows]), pa.int32()),
            pa.array(np.concatenate([np.asarray(r[key]) for r in rows]) if rows else [], typ))
    return pa.RecordBatch.from_arrays(
        [lst("input_ids", pa.int32()), lst("labels", pa.int32()), lst("position_ids", pa.int32()),
         lst("turn_ids", pa.int32()), pa.array([r["doc_lens"] for r in rows], pa.list_(pa.int32())),
         pa.array([r["doc_ids"] for r in rows], pa.list_(pa.string())),
         pa.array([r["domains"] for r in rows], pa.list_(pa.string())),
         pa.array([r["n_turns"] for r in rows], pa.int32()), pa.array([r["n_supervised"] for r in rows], pa.int32())],
        schema=PACKED_SCHEMA)


def pack_records(records: Iterable[dict], encoder: Encoder, window: int, stats: dict,
                 reject, packing: bool = True) -> Iterator[dict]:
    """Stream conversation records -> packed rows (best-fit-decreasing per window), or one
    conversation per row when `packing` is off."""
    def flush(docs):
        if not packing:
            for d in docs:
                yield make_row([d])
            return
        for b in best_fit_decreasing([len(d["input_ids"]) for d in docs], encoder.max_len):
            yield make_row([docs[i] for i in b])

    buf: list[dict] = []
    chunk: list[dict] = []

    def encode_chunk():
        res = encoder.encode_many([c["messages"] for c in chunk])
        for rec, r in zip(chunk, res):
            stats["docs_in"] += 1
            if isinstance(r, str):
                reject(rec, r)
                continue
            if not (r["labels"] != -100).any():
                reject(rec, "no_supervised_tokens")
                continue
            stats["docs_packed"] += 1
            stats["dropped_turns"] += r["dropped_turns"]
            buf.append({**r, "id": rec["id"], "domain": rec["domain"]})
        chunk.clear()

    for rec in records:
        chunk.append(rec)
        if len(chunk) >= 256:
            encode_chunk()
        if len(buf) >= window:
            yield from flush(buf)
            buf = []
    if chunk:
        encode_chunk()
    if buf:
        yield from flush(buf)


def pack_folder(inp: str, out: str, cfg: PackConfig, tokenizer=None) -> dict:
    """Pack one shard folder of conversations into a packed shard folder; returns the manifest.
    Finished output (with _SUCCESS and the same settings) is reused, read-only (every rank of a
    training run does); writing it is one run per `out` at a time (docs/integrity.md)."""
    if shards.is_complete(out):
        return _pack_folder(inp, out, cfg, tokenizer)
    with integrity.FolderLock(out, "pack"):
        return _pack_folder(inp, out, cfg, tokenizer)


def _pack_folder(inp: str, out: str, cfg: PackConfig, tokenizer=None) -> dict:
    settings = {"model": cfg.model, "template": cfg.template, "max_len": cfg.max_len, "window": cfg.window,
                "packing": cfg.packing, "input": os.path.abspath(inp)}
    if shards.is_complete(out):
        m = shards.load_manifest(out)
        if m.get("settings") == settings:
            return m
        raise ValueError(f"{out} holds packed data made with other settings; delete it or choose another --out")
    if not shards.is_complete(inp):
        raise ValueError(f"{inp}: not a finished shard folder (_SUCCESS missing)")
    tok = tokenizer or load_tokenizer(cfg.model)
    enc = Encoder(tok, cfg.template, cfg.max_len)
    shards.prepare(out)
    for old in shards.data_files(out) + shards.data_files(out, "rejected"):
        os.remove(old)
    stats = {"docs_in": 0, "docs_packed": 0, "dropped_turns": 0, "rejected": {}}
    rej_rows: list[dict] = []

    def reject(rec, reason):
        stats["rejected"][reason] = stats["rejected"].get(reason, 0) + 1
        rej_rows.append(rejected_row("pack", reason, record_id=rec["id"], raw=json.dumps(
            rec["messages"], ensure_ascii=False, default=str),
            detail=f"messages: {reason} (max_len={cfg.max_len})"))

    w = shards.RollingWriter(os.path.join(out, "data"), "part-00000", PACKED_SCHEMA, cfg.rows_per_part)
    n_rows = tokens = supervised = turns = 0
    pending: list[dict] = []
    for row in pack_records(shards.iter_records(inp), enc, cfg.window, stats, reject, cfg.packing):
        n_rows += 1
        tokens += len(row["input_ids"])
        supervised += row["n_supervised"]
        turns += row["n_turns"]
        pending.append(row)
        if len(pending) >= 512:
            w.write(_rows_batch(pending))
            pending = []
    if pending:
        w.write(_rows_batch(pending))
    w.close()
    if rej_rows:
        rw = shards.RollingWriter(os.path.join(out, "rejected"), "part-00000", REJECTED_SCHEMA, None)
        rw.write(pa.RecordBatch.from_pylist(rej_rows, schema=REJECTED_SCHEMA))
        rw.close()
    manifest = {"kind": "packed", "settings": settings, "docs_in": stats["docs_in"],
                "docs_packed": stats["docs_packed"], "rejected": stats["rejected"],
                "dropped_early_turns": stats["dropped_turns"], "rows": n_rows, "tokens": tokens,
                "supervised_tokens": supervised, "turns": turns,
                "packing_efficiency": tokens / (n_rows * cfg.max_len) if n_rows else 0.0,
                "accounting_ok": stats["docs_in"] == stats["docs_packed"] + sum(stats["rejected"].values())}
    shards.mark_complete(out, manifest)
    return manifest
