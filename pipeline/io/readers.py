"""Streaming readers for the input formats turnforge accepts.

Every reader yields `Item`s, one per input unit (a JSONL line, a JSON array element, a CSV or
Parquet row), without loading the file: memory stays flat as input grows. A unit that cannot
be parsed is yielded with `error` set (and its raw text), never raised, so the extract stage can
put it in `rejected/` with the file and line that produced it. Where the container gives a unit
its own text (a JSONL line, a JSON array element), `raw` holds it as it was in the file, so a
rejected unit is archived as the input said it, not re-serialised.

Conversation formats (auto-detected from the first parseable unit, overridable):
- ``openai``   ``{"messages": [{"role", "content"}]}``
- ``sharegpt`` ``{"conversations": [{"from", "value"}]}``
- ``alpaca``   ``{"instruction", "input", "output", "history": [[q, a], ...]}``
- ``events``   flat rows of session_id / user_id / timestamp / role / text, any column names
  (mapped in config or recognised from common aliases).
Containers: ``.jsonl``, ``.json`` (a JSON array or one object per line), ``.csv``, ``.parquet``.
"""
from __future__ import annotations

import csv
import glob
import json
import os
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterator

FORMATS = ("openai", "sharegpt", "alpaca", "events")

# Column aliases for event logs; config `fields:` overrides any of them.
EVENT_ALIASES = {
    "session_id": ("session_id", "session", "sid", "conversation_id", "conv_id", "dialog_id", "chat_id"),
    "user_id": ("user_id", "uid", "user", "customer_id", "account_id"),
    "timestamp": ("timestamp", "ts", "time", "created_at", "datetime", "date"),
    "role": ("role", "speaker", "sender", "from", "author"),
    "text": ("text", "content", "msg", "message", "value", "utterance"),
}


@dataclass
class Item:
    """One input unit. `obj` is the parsed record, or None with `error` set. `raw`: the unit's
    text as it was in the file (a JSONL line without its line break, a JSON array element); for
    a CSV row that cannot be read, the row as JSON; else None (CSV and Parquet rows have no text
    of their own)."""
    file: str
    line: int  # 1-based line (JSONL, JSON), row + header offset (CSV), row index + 1 (Parquet)
    obj: Any = None
    error: str | None = None  # reason code: malformed_json, invalid_utf8, ...
    detail: str | None = None
    raw: str | None = None


def expand_paths(path: str) -> list[str]:
    """A file, a directory (every supported file under it) or a glob, sorted for determinism."""
    exts = (".jsonl", ".json", ".csv", ".parquet")
    if os.path.isdir(path):
        out = [os.path.join(r, f) for r, _, fs in os.walk(path) for f in fs if f.endswith(exts)]
    elif any(c in path for c in "*?["):
        out = [p for p in glob.glob(path, recursive=True) if os.path.isfile(p)]
    elif os.path.isfile(path):
        out = [path]
    else:
        raise FileNotFoundError(f"input path {path!r}: no such file, directory or glob match")
    if not out:
        raise FileNotFoundError(f"input path {path!r}: no .jsonl/.json/.csv/.parquet files")
    return sorted(out)


# ---------------------------------------------------------------------------- containers

BOM = b"\xef\xbb\xbf"  # UTF-8 byte-order mark some editors (Notepad, Excel exports) write first


def _json_error(e: json.JSONDecodeError) -> str:
    """The whole decoder message: `e.msg` alone can end mid-sentence ("Invalid control character at")."""
    return f"{e.msg}: column {e.colno} (char {e.pos})"


def _iter_jsonl(path: str) -> Iterator[Item]:
    with open(path, "rb") as f:
        for n, b in enumerate(f, 1):
            if n == 1 and b.startswith(BOM):
                b = b[len(BOM):]
            if not b.strip():
                continue
            try:
                s = b.decode("utf-8")
            except UnicodeDecodeError as e:
                yield Item(path, n, error="invalid_utf8", detail=f"byte {e.start}: {e.reason}",
                           raw=b.decode("utf-8", "backslashreplace").rstrip("\n"))
                continue
            text = s.rstrip("\r\n")
            try:
                yield Item(path, n, json.loads(s), raw=text)
            except json.JSONDecodeError as e:
                yield Item(path, n, error="malformed_json", detail=_json_error(e), raw=text)


def _iter_json_array(path: str, chunk: int = 1 << 20) -> Iterator[Item]:
    """Elements of a top-level JSON array, decoded one at a time from a growing buffer."""
    dec = json.JSONDecoder()
    with open(path, "r", encoding="utf-8-sig", errors="strict") as f:
        buf, pos, line, eof = "", 0, 1, False

        def fill() -> bool:
            nonlocal buf, pos, eof
            data = f.read(chunk)
            if not data:
                eof = True
                return False
            buf = buf[pos:] + data
            pos = 0
            return True

        def skip(chars: str) -> None:
            nonlocal pos, line
            while True:
                while pos < len(buf) and buf[pos] in chars:
                    line += buf[pos] == "\n"
                    pos += 1
                if pos < len(buf) or not fill():
                    return

        fill()
        skip(" \t\r\n")
        if buf[pos:pos + 1] != "[":
            raise ValueError(f"{path}: not a JSON array")
        pos += 1
        while True:
            skip(" \t\r\n,")
            if pos >= len(buf) or buf[pos] == "]":
                return
            while True:
                try:
                    obj, end = dec.raw_decode(buf, pos)
                    break
                except json.JSONDecodeError as e:
                    if eof or not fill():
                        rest = buf[pos:]
                        yield Item(path, line, error="malformed_json",
                                   detail=f"array element: {e.msg} (char {e.pos - pos} of the element); "
                                          "rest of file unreadable",
                                   raw=rest)
                        return
            yield Item(path, line, obj, raw=buf[pos:end])
            line += buf.count("\n", pos, end)
            pos = end


def _iter_json(path: str) -> Iterator[Item]:
    with open(path, "rb") as f:
        head = f.read(4096)
    if head.removeprefix(BOM).lstrip().startswith(b"["):
        try:
            yield from _iter_json_array(path)
        except UnicodeDecodeError as e:
            yield Item(path, 0, error="invalid_utf8", detail=f"byte {e.start}: {e.reason}; file unreadable",
                       raw=None)
    else:  # a .json file holding one object per line
        yield from _iter_jsonl(path)


def _iter_csv(path: str) -> Iterator[Item]:
    # surrogateescape keeps reading past bad bytes; such rows are reported as invalid_utf8.
    # utf-8-sig: a byte-order mark would otherwise become part of the first column's name.
    with open(path, "r", encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None:  # reads the header; empty file
            return
        start = reader.line_num
        for row in reader:
            line = start + 1
            start = reader.line_num
            if None in row:
                yield Item(path, line, error="malformed_csv", detail="more fields than the header",
                           raw=json.dumps(row, ensure_ascii=False, default=str))
                continue
            try:
                for v in row.values():
                    if v is not None:
                        v.encode("utf-8")
            except UnicodeEncodeError:
                yield Item(path, line, error="invalid_utf8", detail="row holds bytes that are not UTF-8",
                           raw=json.dumps({k: (v or "").encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
                                           for k, v in row.items()}, ensure_ascii=False))
                continue
            yield Item(path, line, row)


def _iter_parquet(path: str, batch_size: int = 4096) -> Iterator[Item]:
    import pyarrow.parquet as pq

    n = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size):
        for row in batch.to_pylist():
            n += 1
            yield Item(path, n, row)


def iter_items(path: str) -> Iterator[Item]:
    """Raw units of one file, by extension."""
    if path.endswith(".jsonl"):
        return _iter_jsonl(path)
    if path.endswith(".json"):
        return _iter_json(path)
    if path.endswith(".csv"):
        return _iter_csv(path)
    if path.endswith(".parquet"):
        return _iter_parquet(path)
    raise ValueError(f"{path}: unsupported file type (use .jsonl, .json, .csv or .parquet)")


# ---------------------------------------------------------------------------- formats

def detect_format(obj: Any, fields: dict | None = None) -> str | None:
    """Format of one parsed unit, or None when it is not recognisable."""
    if not isinstance(obj, dict):
        return None
    if "messages" in obj:
        return "openai"
    if "conversations" in obj:
        return "sharegpt"
    if "instruction" in obj and "output" in obj:
        return "alpaca"
    cols = resolve_event_fields(obj.keys(), fields)
    if cols.get("role") and cols.get("text"):
        return "events"
    return None


# What each format is recognised by, for the message of a file none of them matches.
FORMAT_SHAPES = ("openai (a `messages` list)", "sharegpt (a `conversations` list)",
                 "alpaca (`instruction` and `output`)", "events (a role and a text column)")


@dataclass
class FileProblem:
    """Why a whole input file cannot be read: `reason` is a code (empty_file, binary_file,
    missing_columns, unknown_format, unreadable_file), `detail` says what is wrong and what to do."""
    reason: str
    detail: str


def probe_file(path: str, fmt: str = "auto", fields: dict | None = None,
               max_units: int = 50) -> tuple[str | None, FileProblem | None]:
    """(format, None) for a file the readers can go through, else (None, the problem), from its
    first KB, its columns and its first `max_units` units: one unusable file is skipped with a
    reason instead of stopping the others (docs/stages/extract.md#unusable-files)."""
    problem = _empty_or_binary(path) or _column_problem(path, fmt, fields)
    if problem is not None or fmt != "auto":
        return (None if problem else fmt), problem
    return _sniff(path, fields, max_units)


def sniff_format(path: str, fields: dict | None = None, max_units: int = 50) -> str:
    """Format of a file from its first parseable units; ValueError says why there is none."""
    fmt, problem = probe_file(path, "auto", fields, max_units)
    if problem is not None:
        raise ValueError(f"{path}: {problem.reason}: {problem.detail}")
    return fmt


def _empty_or_binary(path: str, head_bytes: int = 1024) -> FileProblem | None:
    size = os.path.getsize(path)
    if size == 0:
        return FileProblem("empty_file", "the file is empty (0 bytes); remove it or export it again")
    if path.endswith(".parquet"):
        return None  # binary by design; its reader says when it is not Parquet
    with open(path, "rb") as f:
        head = f.read(head_bytes)
    if size <= head_bytes and not head.removeprefix(BOM).strip():
        return FileProblem("empty_file", f"the file holds only whitespace ({size} bytes)")
    nul = head.find(b"\x00")
    if nul >= 0:
        return FileProblem("binary_file", f"a NUL byte at offset {nul} of the first KB: "
                           "a binary file, not UTF-8 text; remove it from the input")
    # A stray bad byte only costs its line (rejected as invalid_utf8); many mean a binary file
    # or another encoding (GBK, Latin-1), whose every line would be rejected.
    bad = head.decode("utf-8", "replace").count("\ufffd")
    if bad * 32 > len(head):
        return FileProblem("binary_file", f"{bad} of the first {len(head)} bytes are not UTF-8: a binary file or "
                           "another encoding; convert it to UTF-8 or remove it from the input")
    return None


def _column_problem(path: str, fmt: str, fields: dict | None) -> FileProblem | None:
    """A CSV or Parquet file whose columns hold no format (no role or text column)."""
    if fmt not in ("auto", "events") or not path.endswith((".csv", ".parquet")):
        return None
    try:
        cols = _columns(path)
    except Exception as e:  # pyarrow raises several types for a file that is not Parquet
        return FileProblem("unreadable_file", f"not a Parquet file ({e}); export it again or remove it")
    if fmt == "auto" and detect_format(dict.fromkeys(cols), fields) is not None:
        return None
    found = resolve_event_fields(cols, fields)
    missing = [k for k in ("role", "text") if not found[k]]
    return FileProblem("missing_columns", _columns_detail(path, cols, missing, fields)) if missing else None


def _columns(path: str) -> list[str]:
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq
        return pq.read_schema(path).names
    with open(path, "r", encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
        return next(csv.reader(f), [])


def _columns_detail(path: str, cols: list[str], missing: list[str], fields: dict | None) -> str:
    def need(k: str) -> str:
        if fields and fields.get(k):
            return f"{k} (fields.{k} names {fields[k]!r}, which it does not have)"
        return f"{k} (a column named one of {', '.join(EVENT_ALIASES[k])})"

    shown = ", ".join(repr(c) for c in cols[:12]) + (f" and {len(cols) - 12} more" if len(cols) > 12 else "")
    header = "; if its first row is data, add a header row" if path.endswith(".csv") else ""
    return (f"has columns {shown}; an event log needs {' and '.join(need(k) for k in missing)}: name them "
            f"with the input's `fields:` setting, e.g. fields: {{role: <column>, text: <column>}}{header}")


def _sniff(path: str, fields: dict | None, max_units: int) -> tuple[str | None, FileProblem | None]:
    """Format of a file from its first parseable units."""
    seen, unread = 0, Counter()
    for item in iter_items(path):
        seen += 1
        if item.error is not None:
            unread[item.error] += 1
        elif fmt := detect_format(item.obj, fields):
            return fmt, None
        if seen >= max_units:
            break
    if not seen:
        return None, FileProblem("empty_file", "no records in it (only a header, or an empty JSON array)")
    why = (f"; {sum(unread.values())} of them could not be read ({', '.join(sorted(unread))})" if unread else "")
    return None, FileProblem("unknown_format", f"cannot detect the input format from its first {seen} records{why}; "
                             f"tried {', '.join(FORMAT_SHAPES)}; set the input's `format:` to one of "
                             f"{'|'.join(FORMATS)}, or name event columns with `fields:`")


def resolve_event_fields(columns, fields: dict | None = None) -> dict:
    """Map canonical event fields to the file's column names (config first, then aliases)."""
    cols = list(columns)
    out = {}
    for canon, aliases in EVENT_ALIASES.items():
        if fields and fields.get(canon):
            out[canon] = fields[canon] if fields[canon] in cols else None
            continue
        out[canon] = next((a for a in aliases if a in cols), None)
    return out


def parse_timestamp(v: Any) -> float | None:
    """Epoch seconds from an epoch number (s or ms) or an ISO-8601 string; naive means UTC."""
    if v is None or v == "":
        return None
    if isinstance(v, bool):
        raise ValueError(f"timestamp must be a number or ISO-8601 string, got {v!r}")
    if isinstance(v, (int, float)):
        x = float(v)
    elif isinstance(v, datetime):
        d = v if v.tzinfo else v.replace(tzinfo=timezone.utc)
        return d.timestamp()
    elif isinstance(v, str):
        s = v.strip()
        try:
            x = float(s)
        except ValueError:
            d = datetime.fromisoformat(s.replace("Z", "+00:00"))
            d = d if d.tzinfo else d.replace(tzinfo=timezone.utc)
            return d.timestamp()
    else:
        raise ValueError(f"timestamp must be a number or ISO-8601 string, got {type(v).__name__}")
    return x / 1000.0 if x > 1e11 else x  # 1e11 s is year 5138: larger values are milliseconds
