"""The one Arrow schema every stage reads and writes (docs/design.md#record).

One row per conversation. `meta` is a typed struct so later stages (pii, dedup, quality,
topic) fill known fields without a schema change; `meta.extra` keeps input fields the
readers do not understand, as JSON, so provenance is never thrown away.

Validation returns every problem of a record as a message that names the record and the
field, e.g. ``record 'a1b2' (data.jsonl:12): messages[3].role: unknown role 'moderator'``.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable

import pyarrow as pa

SCHEMA_VERSION = 1

ROLES = ("system", "user", "assistant", "tool")
LANGS = ("zh", "en", "mixed", "other")

MESSAGE = pa.struct(
    [
        pa.field("role", pa.string(), nullable=False),
        pa.field("content", pa.string(), nullable=False),
        pa.field("turn", pa.int32(), nullable=False),
        # P(same topic as the previous turn); null until the topic stage scores it.
        pa.field("topic_continuity", pa.float32()),
        pa.field("synthetic", pa.bool_(), nullable=False),
    ]
)

NAMED_SCORE = pa.struct([pa.field("name", pa.string()), pa.field("value", pa.float64())])

PII_SPAN = pa.struct([pa.field("message", pa.int32()), pa.field("start", pa.int32()), pa.field("end", pa.int32()),
                      pa.field("entity", pa.string())])

META = pa.struct(
    [
        pa.field("session_id", pa.string()),
        pa.field("user_hash", pa.string()),  # salted HMAC of the user id, never the raw id
        pa.field("start_time", pa.timestamp("ms", tz="UTC")),
        pa.field("end_time", pa.timestamp("ms", tz="UTC")),
        pa.field("source_file", pa.string()),
        pa.field("source_line", pa.int64()),
        pa.field("trimmed_turns", pa.int32()),  # early turns dropped by tail selection
        pa.field("flags", pa.list_(pa.string())),  # repairs applied, markup flagged, ...
        pa.field("stages", pa.list_(pa.string())),  # stage trail
        pa.field("pii_counts", pa.list_(NAMED_SCORE)),
        # where the pii stage wrote pseudonyms (offsets only): audits skip these look-alikes
        pa.field("pii_spans", pa.list_(PII_SPAN)),
        pa.field("dedup_cluster", pa.string()),
        pa.field("quality", pa.list_(NAMED_SCORE)),
        pa.field("extra", pa.string()),  # JSON object of unrecognised input fields
    ]
)

SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("domain", pa.string(), nullable=False),
        pa.field("lang", pa.string(), nullable=False),
        pa.field("messages", pa.list_(MESSAGE), nullable=False),
        pa.field("meta", META),
    ],
    metadata={"turnforge.schema_version": str(SCHEMA_VERSION)},
)

# Every dropped record, from any stage, lands in `rejected/` with this schema.
REJECTED_SCHEMA = pa.schema(
    [
        pa.field("stage", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string()),
        pa.field("record_id", pa.string()),
        pa.field("kept_id", pa.string()),  # dedup: the record this one duplicates
        pa.field("source_file", pa.string()),
        pa.field("line", pa.int64()),
        # How many input units (lines, events, records) this row accounts for; 0 for an
        # archived part of a record that was kept (e.g. the head cut by tail selection).
        pa.field("n_inputs", pa.int64(), nullable=False),
        pa.field("raw", pa.string()),  # the record or line as JSON/text, for recovery
    ]
)

META_FIELDS = [f.name for f in META]


def empty_meta(**kw: Any) -> dict:
    m = {name: None for name in META_FIELDS}
    m.update(kw)
    return m


def content_id(source: str, messages: Iterable[dict]) -> str:
    """Stable id: hash of source + content, 16 bytes hex."""
    h = hashlib.blake2b(digest_size=16)
    h.update(source.encode())
    for m in messages:
        h.update(b"\x00" + m["role"].encode() + b"\x01" + m["content"].encode())
    return h.hexdigest()


def describe(record: dict, where: str | None = None) -> str:
    rid = record.get("id") if isinstance(record, dict) else None
    s = f"record {rid!r}" if rid is not None else "record"
    return f"{s} ({where})" if where else s


def validate_record(record: Any, where: str | None = None) -> list[str]:
    """All schema problems of one record, each naming the record and the field."""
    if not isinstance(record, dict):
        return [f"{describe({}, where)}: expected an object, got {type(record).__name__}"]
    who = describe(record, where)
    errs: list[str] = []
    for key in ("id", "source", "domain", "lang"):
        v = record.get(key)
        if not isinstance(v, str) or not v:
            errs.append(f"{who}: {key}: must be a non-empty string, got {v!r}")
    if isinstance(record.get("lang"), str) and record["lang"] not in LANGS:
        errs.append(f"{who}: lang: {record['lang']!r} not in {LANGS}")
    msgs = record.get("messages")
    if not isinstance(msgs, list) or not msgs:
        errs.append(f"{who}: messages: must be a non-empty list")
        return errs
    prev_turn = 0
    for i, m in enumerate(msgs):
        f = f"messages[{i}]"
        if not isinstance(m, dict):
            errs.append(f"{who}: {f}: expected an object, got {type(m).__name__}")
            continue
        if m.get("role") not in ROLES:
            errs.append(f"{who}: {f}.role: unknown role {m.get('role')!r}")
        if not isinstance(m.get("content"), str):
            errs.append(f"{who}: {f}.content: must be a string, got {type(m.get('content')).__name__}")
        t = m.get("turn")
        if not isinstance(t, int) or isinstance(t, bool) or t < prev_turn:
            errs.append(f"{who}: {f}.turn: must be a non-decreasing int, got {t!r}")
        else:
            prev_turn = t
        tc = m.get("topic_continuity")
        if tc is not None and not (isinstance(tc, (int, float)) and 0.0 <= tc <= 1.0):
            errs.append(f"{who}: {f}.topic_continuity: must be null or in [0, 1], got {tc!r}")
        if not isinstance(m.get("synthetic"), bool):
            errs.append(f"{who}: {f}.synthetic: must be a bool, got {m.get('synthetic')!r}")
    meta = record.get("meta")
    if meta is not None and not isinstance(meta, dict):
        errs.append(f"{who}: meta: must be an object or null")
    elif isinstance(meta, dict):
        unknown = set(meta) - set(META_FIELDS)
        if unknown:
            errs.append(f"{who}: meta: unknown fields {sorted(unknown)}")
    return errs


def to_batch(records: list[dict]) -> pa.RecordBatch:
    """Records (already valid) -> one RecordBatch of SCHEMA."""
    return pa.RecordBatch.from_pylist(records, schema=SCHEMA)


def rejected_row(stage: str, reason: str, *, detail: str | None = None, record_id: str | None = None,
                 source_file: str | None = None, line: int | None = None, n_inputs: int = 1,
                 raw: Any = None, kept_id: str | None = None) -> dict:
    if raw is not None and not isinstance(raw, str):
        raw = json.dumps(raw, ensure_ascii=False, default=str)
    return {"stage": stage, "reason": reason, "detail": detail, "record_id": record_id, "kept_id": kept_id,
            "source_file": source_file, "line": line, "n_inputs": n_inputs, "raw": raw}


def with_stage(meta: pa.Array, stage: str, **columns: pa.Array) -> pa.StructArray:
    """`meta` with `stage` appended to every row's stage trail and the named fields replaced
    by `columns`, vectorised over the Arrow buffers (the columnar form of a stage's meta update)."""
    import numpy as np
    import pyarrow.compute as pc

    meta = meta.combine_chunks() if isinstance(meta, pa.ChunkedArray) else meta
    fields = {f.name: pc.struct_field(meta, f.name) for f in meta.type}
    st = fields["stages"]
    lens = pc.fill_null(pc.list_value_length(st), 0).to_numpy().astype(np.int64)
    vals = pa.concat_arrays([pc.list_flatten(st), pa.array([stage], pa.string())])
    idx = np.insert(np.arange(len(vals) - 1), np.cumsum(lens), len(vals) - 1)
    offs = np.concatenate([[0], np.cumsum(lens + 1)]).astype(np.int32)
    fields["stages"] = pa.ListArray.from_arrays(pa.array(offs), vals.take(pa.array(idx)))
    for name, col in columns.items():
        fields[name] = col
    return pa.StructArray.from_arrays(list(fields.values()), fields=list(meta.type), mask=meta.is_null())
