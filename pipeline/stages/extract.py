"""Extract stage: raw logs and SFT files -> conversations in the record schema.

Per conversation, in this order (each rule is counted in the manifest under `repairs` or
`rejected`):
 1. roles mapped to system/user/assistant/tool (configurable map; unknown -> rejected);
 2. chat markup: template tokens and a leading speaker label stripped (`markup: strip`), or
    only flagged (`flag`) or rejected (`reject`); a transcript pasted into one message
    (a later line starting "Human:" / "用户：") is flagged, or rejected by config;
 3. empty messages dropped (kept in rejected/ when they were input units of their own);
 4. consecutive messages of one role merged with a newline (not tool results); a message
    without text between two messages of the other party splits the conversation first, so
    a missing reply never merges two turns (_split_at_missing);
 5. structure: system messages only at the start; leading assistant messages and a trailing
    unanswered user message dropped; then user/assistant must alternate (tool results only
    after an assistant message);
 6. `turn` numbered per user->assistant exchange;
 7. tail selection: keep the last `tail_turns` turns and at most `tail_chars` characters
    (whole turns, at least one), with any leading system messages. The tail is preferred
    because users have clarified their question by then. The cut head goes to rejected/
    (reason `tail_trimmed`) so nothing is lost;
 8. messages longer than `max_message_chars` (after tail selection) reject the conversation.
Event logs are first grouped into sessions per session id (or user id), split where the user
was inactive for more than `session_gap_s`. User ids are replaced by a salted HMAC.

Accounting unit: one input unit = one line / array element / row. A conversation file record is
one unit; an event row is one unit, so a session is as many units as it had events. A file
that cannot be read at all (empty, binary, no usable columns, no format) has no units: it is
skipped with its reason and size in the manifest (docs/stages/extract.md#unusable-files).
"""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import sys
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterator

import pyarrow as pa

from .. import shards
from ..config import ConfigError, unknown_keys
from ..io.readers import (FORMATS, Item, expand_paths, iter_items, parse_timestamp, probe_file,
                          resolve_event_fields)
from ..schema import SCHEMA, content_id, empty_meta
from ..text import clean_markup, detect_lang
from .base import Stage, StageContext, Task, skipped_files

DEFAULT_ROLE_MAP = {
    "user": "user", "human": "user", "customer": "user", "client": "user", "prompter": "user",
    "question": "user", "q": "user", "用户": "user", "客户": "user", "顾客": "user", "提问者": "user",
    "assistant": "assistant", "gpt": "assistant", "bot": "assistant", "ai": "assistant",
    "model": "assistant", "chatgpt": "assistant", "agent": "assistant", "answer": "assistant",
    "function_call": "assistant", "客服": "assistant", "助手": "assistant", "机器人": "assistant",
    "回答者": "assistant", "坐席": "assistant",
    "system": "system", "sys": "system", "系统": "system",
    "tool": "tool", "function": "tool", "observation": "tool", "工具": "tool",
}
DEV_SALT = "turnforge-dev-salt"  # used only when no salt is configured; the manifest says so
INPUT_KEYS = ("path", "format", "source", "domain", "fields", "role_map")  # of one `inputs:` entry


def input_problems(inputs: Any, default_format: str, where: str) -> list[str]:
    """Every problem of an `inputs:` list, each named by its path (`where[i].key`)."""
    if not isinstance(inputs, list):
        return [f"{where}: expected a list of inputs (- path: ...), got {type(inputs).__name__}"]
    bad = []
    for i, spec in enumerate(inputs):
        at = f"{where}[{i}]"
        if not isinstance(spec, dict) or not spec.get("path"):
            bad.append(f"{at}: each input needs a path, got {spec!r}")
            continue
        bad += unknown_keys(spec, INPUT_KEYS, at)
        fmt = spec.get("format", default_format)
        if fmt != "auto" and fmt not in FORMATS:
            bad.append(f"{at}.format: {fmt!r} not in auto|{'|'.join(FORMATS)}")
    return bad


@dataclass
class ExtractConfig:
    inputs: list = field(default_factory=list)  # [{path, format, source, domain, fields, role_map}]
    source: str = "unknown"  # defaults for inputs that do not name their own
    domain: str = "general"
    format: str = "auto"
    fields: dict = field(default_factory=dict)  # event column names: {session_id: sid, ...}
    role_map: dict = field(default_factory=dict)  # extra raw role -> canonical role
    session_gap_s: float = 1800.0
    max_lateness_s: float = 3600.0  # event logs must be time-ordered up to this slack
    tail_turns: int = 20  # 0 = no limit
    tail_chars: int = 0  # 0 = no limit
    markup: str = "strip"  # strip | flag | reject
    embedded_dialogue: str = "flag"  # flag | reject
    merge_same_role: bool = True
    max_message_chars: int = 100_000
    max_session_events: int = 4096  # memory guard: older events of a longer session are cut early
    user_salt: str | None = None  # else $TURNFORGE_USER_SALT, else a dev salt (flagged)

    def check(self) -> None:
        if self.markup not in ("strip", "flag", "reject"):
            raise ConfigError(f"extract.markup: {self.markup!r} not in strip|flag|reject")
        if self.embedded_dialogue not in ("flag", "reject"):
            raise ConfigError(f"extract.embedded_dialogue: {self.embedded_dialogue!r} not in flag|reject")
        if self.tail_turns < 0 or self.tail_chars < 0:
            raise ConfigError("extract.tail_turns and tail_chars must be >= 0 (0 = no limit)")
        bad = input_problems(self.inputs, self.format, "extract.inputs")
        if bad:
            raise ConfigError("; ".join(bad))

    def salt(self) -> tuple[str, bool]:
        s = self.user_salt or os.environ.get("TURNFORGE_USER_SALT")
        return (s, True) if s else (DEV_SALT, False)


@dataclass
class _Msg:
    role: Any  # raw role, then canonical
    content: Any
    units: int  # input units this message accounts for (events); 0 for file records
    ts: float | None = None


@dataclass
class _Conv:
    file: str
    line: int
    msgs: list
    base_units: int  # 1 for a conversation record, 0 for an event session
    own_id: str | None = None
    session_id: str | None = None
    user_id: str | None = None
    extra: dict | None = None
    system: str | None = None
    text: str | None = None  # the record's own input text (a JSONL line, an array element)

    def units(self) -> int:
        return self.base_units + sum(m.units for m in self.msgs)

    def raw(self) -> str:
        """What rejected/ archives: the input text as it was; a session (many events) has
        none of its own, so its messages are written as JSON."""
        if self.text is not None:
            return self.text
        return json.dumps({"id": self.own_id, "session_id": self.session_id,
                           "messages": [{"role": m.role, "content": m.content} for m in self.msgs]},
                          ensure_ascii=False, default=str)


# ------------------------------------------------------------------ records -> conversations

def _raw_of(item: Item) -> str:
    """The unit as the input said it where the reader kept its text; else its parsed value as
    JSON (CSV and Parquet rows)."""
    return item.raw if item.raw is not None else json.dumps(item.obj, ensure_ascii=False, default=str)


def _text_parts(content: Any) -> Any:
    """OpenAI content may be a list of parts; keep the text ones."""
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):
        return "".join(p.get("text", "") for p in content if p.get("type", "text") == "text")
    return content


def _record_to_conv(item: Item, fmt: str, ctx: StageContext) -> _Conv | None:
    obj, where = item.obj, dict(source_file=item.file, line=item.line)
    if not isinstance(obj, dict):
        ctx.reject("bad_type", detail=f"record: expected an object, got {type(obj).__name__}",
                   raw=_raw_of(item), **where)
        return None
    own_id = obj.get("id")
    own_id = None if own_id is None else str(own_id)
    msgs: list[_Msg] = []
    known: set = {"id"}
    if fmt == "openai":
        key, rk, ck = "messages", "role", "content"
    elif fmt == "sharegpt":
        key, rk, ck = "conversations", "from", "value"
    else:
        key = None
    if key is not None:
        known |= {key, "system"}
        seq = obj.get(key)
        if not isinstance(seq, list):
            ctx.reject("bad_type", detail=f"{key}: expected a list, got {type(seq).__name__}",
                       record_id=own_id, raw=_raw_of(item), **where)
            return None
        if isinstance(obj.get("system"), str) and obj["system"].strip():
            msgs.append(_Msg("system", obj["system"], 0))
        for i, m in enumerate(seq):
            if not isinstance(m, dict):
                ctx.reject("bad_type", detail=f"{key}[{i}]: expected an object, got {type(m).__name__}",
                           record_id=own_id, raw=_raw_of(item), **where)
                return None
            msgs.append(_Msg(m.get(rk), _text_parts(m.get(ck)), 0))
    else:  # alpaca
        known |= {"instruction", "input", "output", "history", "system"}
        hist = obj.get("history") or []
        if not isinstance(hist, list) or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in hist):
            ctx.reject("bad_type", detail="history: expected a list of [question, answer] pairs",
                       record_id=own_id, raw=_raw_of(item), **where)
            return None
        if isinstance(obj.get("system"), str) and obj["system"].strip():
            msgs.append(_Msg("system", obj["system"], 0))
        for q, a in hist:
            msgs += [_Msg("user", q, 0), _Msg("assistant", a, 0)]
        ins, inp = obj.get("instruction"), obj.get("input")
        if not isinstance(ins, str) or (inp is not None and not isinstance(inp, str)):
            ctx.reject("bad_type", detail="instruction/input: expected strings",
                       record_id=own_id, raw=_raw_of(item), **where)
            return None
        q = ins if not inp else f"{ins}\n{inp}"
        msgs += [_Msg("user", q, 0), _Msg("assistant", obj.get("output"), 0)]
    extra = {k: v for k, v in obj.items() if k not in known}
    return _Conv(item.file, item.line, msgs, 1, own_id=own_id, extra=extra or None, text=item.raw)


def _sessions(items: Iterator[Item], cfg: ExtractConfig, fields: dict, role_map: dict,
              ctx: StageContext) -> Iterator[_Conv]:
    """Group event rows into sessions, streaming: a session is emitted once the log's clock
    (max timestamp seen) has moved `session_gap_s + max_lateness_s` past its last event, so
    memory holds only sessions that may still grow."""
    open_: "OrderedDict[str, dict]" = OrderedDict()
    splits: dict[str, int] = {}
    clock = float("-inf")
    horizon = cfg.session_gap_s + cfg.max_lateness_s
    col_cache: dict = {}

    def emit(key: str) -> _Conv:
        s = open_.pop(key)
        evs = sorted(s["events"], key=lambda e: (e[0], e[1]))  # (ts, line): stable by time
        msgs = [_Msg(role, text, int(text is not None), ts) for ts, _line, role, text in evs]
        return _Conv(s["file"], s["line"], msgs, 0, session_id=s["sid"], user_id=s["uid"])

    for n, item in enumerate(items):
        where = dict(source_file=item.file, line=item.line)
        if item.error:
            ctx.reject(item.error, detail=item.detail, raw=item.raw, **where)
            continue
        row = item.obj
        if not isinstance(row, dict):
            ctx.reject("bad_type", detail=f"event: expected an object, got {type(row).__name__}",
                       raw=_raw_of(item), **where)
            continue
        keys = frozenset(row)
        cols = col_cache.get(keys)
        if cols is None:
            cols = col_cache[keys] = resolve_event_fields(row.keys(), fields)
        raw = _raw_of(item)
        text = row.get(cols["text"]) if cols["text"] else None
        role = row.get(cols["role"]) if cols["role"] else None
        sid = row.get(cols["session_id"]) if cols["session_id"] else None
        uid = row.get(cols["user_id"]) if cols["user_id"] else None
        if role is None or role == "":
            ctx.reject("missing_role", detail=f"role: column {cols['role'] or 'role'!r} missing or empty",
                       raw=raw, **where)
            continue
        if str(role).strip().lower() not in role_map:  # one bad event, not its whole session
            ctx.reject("unknown_role", detail=f"role: unknown role {role!r}", raw=raw, **where)
            continue
        # An event without text is rejected, yet stays in its session as a gap (text None, no
        # unit), so the messages around it are not merged across it (see _split_at_missing).
        no_text = _text_problem(text)
        if no_text:
            ctx.reject(no_text[0], detail=no_text[1], raw=raw, **where)
            text = None
        if sid is None and uid is None:
            if not no_text:
                ctx.reject("missing_session", detail="session_id/user_id: both missing", raw=raw, **where)
            continue
        try:
            ts = parse_timestamp(row.get(cols["timestamp"]) if cols["timestamp"] else None)
        except (ValueError, OverflowError, TypeError) as e:
            if not no_text:
                ctx.reject("bad_timestamp", detail=f"timestamp: {e}", raw=raw, **where)
            continue
        if ts is None:  # no clock: order of the file stands in for time
            ts = float(item.line)
        base = str(sid) if sid is not None else f"user:{uid}"
        key = base
        s = open_.get(key)
        if s is not None and ts - s["last"] > cfg.session_gap_s:  # split on inactivity
            yield emit(key)
            s = None
        if s is None:
            k = splits.get(base, 0)
            splits[base] = k + 1
            s = open_[key] = {"events": [], "last": ts, "file": item.file, "line": item.line,
                              "sid": base if k == 0 else f"{base}#{k}", "uid": uid}
        s["events"].append((ts, item.line, role, text))
        s["last"] = max(s["last"], ts)
        if len(s["events"]) > 2 * cfg.max_session_events:
            # Memory guard for endless sessions: the head would be cut by tail selection anyway.
            s["events"].sort(key=lambda e: (e[0], e[1]))
            cut = s["events"][:-cfg.max_session_events]
            s["events"] = s["events"][-cfg.max_session_events:]
            ctx.reject("tail_trimmed", n_inputs=sum(e[3] is not None for e in cut),
                       detail=f"session {s['sid']}: {len(cut)} early events",
                       source_file=item.file, line=cut[0][1],
                       raw=json.dumps([{"role": r, "content": t} for _, _, r, t in cut], ensure_ascii=False))
        clock = max(clock, ts)
        if n % 256 == 0:
            for k in [k for k, v in open_.items() if clock - v["last"] > horizon]:
                yield emit(k)
    for k in list(open_):
        yield emit(k)


def _text_problem(text: Any) -> tuple[str, str] | None:
    """(reason, detail) of an event whose text is not a non-empty string."""
    if not isinstance(text, str):
        return "bad_type", f"text: expected a string, got {'missing' if text is None else type(text).__name__}"
    return None if text.strip() else ("empty_content", "text: empty")


# ------------------------------------------------------------------ normalisation

def _split_at_missing(conv: _Conv, role_map: dict) -> list[_Conv]:
    """Parts of a conversation, cut where a reply or question is missing: a message without
    text (an empty one, or an event rejected for its text) between two messages of the other
    party would otherwise let them merge into one turn that never happened. The record's own
    unit is counted with the last part; part k > 0 gets `/k` after its id and session id."""
    cuts, prev, gap = [], None, set()
    for i, m in enumerate(conv.msgs):
        role = role_map.get(str(m.role).strip().lower())
        if m.content is None or (isinstance(m.content, str) and not m.content.strip()):
            gap.add(role)
            continue
        if role == prev and role in ("user", "assistant") and gap & ({"user", "assistant"} - {role}):
            cuts.append(i)
        prev, gap = role, set()
    if not cuts:
        return [conv]
    bounds = [0, *cuts, len(conv.msgs)]
    return [_part(conv, conv.msgs[a:b], k, last=b == len(conv.msgs)) for k, (a, b) in enumerate(zip(bounds, bounds[1:]))]


def _part(conv: _Conv, msgs: list, k: int, last: bool) -> _Conv:
    def suffixed(x: str | None) -> str | None:
        return x if k == 0 or x is None else f"{x}/{k}"

    return dataclasses.replace(conv, msgs=msgs, base_units=conv.base_units if last else 0,
                               own_id=suffixed(conv.own_id), session_id=suffixed(conv.session_id))


def _archive(ctx: StageContext, conv: _Conv, msgs: list[_Msg], reason: str, detail: str) -> None:
    """Messages cut from a conversation that is otherwise kept go to rejected/ too."""
    if not msgs:
        return
    ctx.reject(reason, n_inputs=sum(m.units for m in msgs), detail=detail, record_id=conv.own_id,
               source_file=conv.file, line=conv.line,
               raw=json.dumps([{"role": m.role, "content": m.content} for m in msgs], ensure_ascii=False,
                              default=str))


def normalise(conv: _Conv, cfg: ExtractConfig, role_map: dict, ctx: StageContext) -> dict | None:
    """One conversation -> a record dict (lang filled later per batch), or None if rejected."""
    where = dict(record_id=conv.own_id, source_file=conv.file, line=conv.line)

    def reject(reason: str, detail: str) -> None:
        ctx.reject(reason, n_inputs=conv.units(), detail=detail, raw=conv.raw(), **where)

    flags: list[str] = []
    msgs = conv.msgs
    # 1. roles and types
    for i, m in enumerate(msgs):
        if m.role is None or (isinstance(m.role, str) and not m.role.strip()):
            return reject("missing_role", f"messages[{i}].role: missing")
        canon = role_map.get(str(m.role).strip().lower())
        if canon is None:
            return reject("unknown_role", f"messages[{i}].role: unknown role {m.role!r}")
        m.role = canon
        if m.content is None:
            m.content = ""
        if not isinstance(m.content, str):
            return reject("bad_type", f"messages[{i}].content: expected a string, got {type(m.content).__name__}")
    # 2. chat markup
    for i, m in enumerate(msgs):
        cleaned, found = clean_markup(m.content, m.role)
        if not found:
            continue
        if "embedded_dialogue" in found:
            if cfg.embedded_dialogue == "reject":
                return reject("embedded_dialogue", f"messages[{i}].content: holds a pasted transcript")
            flags.append("embedded_dialogue")
        marks = [f for f in found if f != "embedded_dialogue"]
        if marks:
            if cfg.markup == "reject":
                return reject("chat_markup", f"messages[{i}].content: {', '.join(marks)}")
            if cfg.markup == "flag":
                flags.append("chat_markup")
            else:
                m.content = cleaned
                ctx.repair("markup_stripped")
    # 3. empty messages
    empty = [m for m in msgs if not m.content.strip()]
    if empty:
        msgs = [m for m in msgs if m.content.strip()]
        ctx.repair("empty_message_dropped", len(empty))
        _archive(ctx, conv, [m for m in empty if m.units], "empty_content", "empty message(s)")
        conv.msgs = msgs
    # 4. merge consecutive same-role messages
    if cfg.merge_same_role and msgs:
        merged = [msgs[0]]
        for m in msgs[1:]:
            p = merged[-1]
            if m.role == p.role and m.role != "tool":
                p.content = f"{p.content}\n{m.content}"
                p.units += m.units
                ctx.repair("same_role_merged")
            else:
                merged.append(m)
        msgs = conv.msgs = merged
    # 5. structure
    n_sys = 0
    while n_sys < len(msgs) and msgs[n_sys].role == "system":
        n_sys += 1
    body = msgs[n_sys:]
    if any(m.role == "system" for m in body):
        return reject("misplaced_system", "messages: a system message after the conversation started")
    lead = 0
    while lead < len(body) and body[lead].role != "user":
        lead += 1
    if lead:
        ctx.repair("leading_non_user_dropped")
        _archive(ctx, conv, body[:lead], "leading_non_user", "messages before the first user message")
        body = body[lead:]
    tail = len(body)
    while tail > 0 and body[tail - 1].role != "assistant":
        tail -= 1
    if tail < len(body):
        ctx.repair("trailing_unanswered_dropped")
        _archive(ctx, conv, body[tail:], "trailing_unanswered", "messages after the last assistant reply")
        body = body[:tail]
    conv.msgs = msgs = msgs[:n_sys] + body
    if not body:
        return reject("no_exchange", "messages: no user message answered by an assistant")
    prev = "assistant"
    for i, m in enumerate(body):
        ok = {"assistant": ("user", "tool"), "user": ("assistant",), "tool": ("assistant", "tool")}[prev]
        if m.role not in ok:
            return reject("bad_alternation", f"messages[{n_sys + i}].role: {m.role!r} after {prev!r}")
        prev = m.role
    # 6. turns: a turn is one user message and everything up to the next user message
    turn_of, t = [], -1
    for m in body:
        t += m.role == "user"
        turn_of.append(t)
    n_turns = t + 1
    # 7. tail selection (whole turns, at least one)
    keep_from = 0
    if cfg.tail_turns and n_turns > cfg.tail_turns:
        keep_from = n_turns - cfg.tail_turns
    if cfg.tail_chars:
        per_turn = [0] * n_turns
        for m, tt in zip(body, turn_of):
            per_turn[tt] += len(m.content)
        budget, k = cfg.tail_chars, n_turns
        while k > keep_from and (k == n_turns or budget - per_turn[k - 1] >= 0):
            budget -= per_turn[k - 1]
            k -= 1
        keep_from = max(keep_from, min(k, n_turns - 1))
    if keep_from:
        cut = turn_of.index(keep_from)
        ctx.repair("tail_trimmed_turns", keep_from)
        _archive(ctx, conv, body[:cut], "tail_trimmed", f"{keep_from} early turn(s) cut by tail selection")
        body, turn_of = body[cut:], [x - keep_from for x in turn_of[cut:]]
        conv.msgs = msgs = msgs[:n_sys] + body
    # 8. size
    for i, m in enumerate(msgs):
        if len(m.content) > cfg.max_message_chars:
            return reject("message_too_long",
                          f"messages[{i}].content: {len(m.content)} chars > max_message_chars={cfg.max_message_chars}")
    out_msgs = ([{"role": m.role, "content": m.content, "turn": 0, "topic_continuity": None, "synthetic": False}
                 for m in msgs[:n_sys]]
                + [{"role": m.role, "content": m.content, "turn": tt, "topic_continuity": None, "synthetic": False}
                   for m, tt in zip(body, turn_of)])
    ctx.keep(conv.units())
    return {"messages": out_msgs, "flags": flags, "trimmed": keep_from,
            "ts": [m.ts for m in msgs if m.ts is not None]}


def _ms(ts: float | None):
    return None if ts is None else datetime.fromtimestamp(ts, tz=timezone.utc)


class Extract(Stage):
    name = "extract"
    Config = ExtractConfig

    def plan(self, inp, cfg: ExtractConfig) -> list[Task]:
        inputs = cfg.inputs or ([{"path": inp}] if inp else [])
        if not inputs:
            raise ConfigError("extract: no input (give --in PATH or `inputs:` in the config)")
        tasks = []
        for i, spec in enumerate(inputs):
            for path in expand_paths(spec["path"]):
                tasks.append(Task(f"{len(tasks):05d}", {"input": i, "file": path}))
        return tasks

    def check_input(self, inp, cfg: ExtractConfig) -> None:
        """Every input path exists (else FileNotFoundError naming it), and at least one file can
        be read: a build of nothing is a mistake, said before the stage folder exists. Files
        are probed in order until one is usable, so a good input costs one probe."""
        problems = []
        for task in self.plan(inp, cfg):
            _, problem = _probe(task.payload, cfg)
            if problem is None:
                return
            problems.append(f"{task.payload['file']}: {problem.reason}: {problem.detail}")
        raise ConfigError("extract: every input file was skipped, so the stage would hold nothing; "
                          "fix or remove them:\n  " + "\n  ".join(problems))

    def describe_input(self, inp, cfg):
        return [dict(s) for s in cfg.inputs] if cfg.inputs else inp

    def input_identity(self, inp, cfg: ExtractConfig) -> dict:
        """Every input file's size, mtime and edge digest (shards.file_identity)."""
        try:
            files = [t.payload["file"] for t in self.plan(inp, cfg)]
        except (ConfigError, OSError):
            return {}  # check_input reports it
        return {"files": {p: shards.file_identity(p) for p in files}}

    def run_task(self, payload, cfg: ExtractConfig, ctx: StageContext) -> Iterator[pa.RecordBatch]:
        spec, fields = _spec(payload, cfg)
        path = payload["file"]
        fmt, problem = _probe(payload, cfg)
        if problem is not None:  # the task still finishes (a marker, 0 units) so a resume matches
            ctx.skip_file(path, problem.reason, problem.detail)
            return
        source = spec.get("source", cfg.source)
        domain = spec.get("domain", cfg.domain)
        role_map = {**DEFAULT_ROLE_MAP,
                    **{str(k).lower(): v for k, v in {**cfg.role_map, **(spec.get("role_map") or {})}.items()}}
        bad = {k: v for k, v in role_map.items() if v not in ("system", "user", "assistant", "tool")}
        if bad:
            raise ConfigError(f"role_map: targets must be system|user|assistant|tool, got {bad}")
        salt, _ = cfg.salt()

        def counted(items):
            for it in items:
                ctx.take(1)
                yield it

        items = counted(iter_items(path))
        if fmt == "events":
            convs = _sessions(items, cfg, fields, role_map, ctx)
        else:
            def convs_of(items):
                for it in items:
                    if it.error:
                        ctx.reject(it.error, detail=it.detail, raw=it.raw, source_file=it.file, line=it.line)
                        continue
                    c = _record_to_conv(it, fmt, ctx)
                    if c is not None:
                        yield c
            convs = convs_of(items)

        buf: list[dict] = []
        for conv in (part for whole in convs for part in _split_at_missing(whole, role_map)):
            r = normalise(conv, cfg, role_map, ctx)
            if r is None:
                continue
            uh = None
            if conv.user_id is not None:
                uh = hmac.new(salt.encode(), str(conv.user_id).encode(), hashlib.sha256).hexdigest()[:16]
            meta = empty_meta(session_id=conv.session_id, user_hash=uh, source_file=path, source_line=conv.line,
                              trimmed_turns=r["trimmed"], flags=r["flags"] or None, stages=["extract"],
                              start_time=_ms(min(r["ts"])) if r["ts"] else None,
                              end_time=_ms(max(r["ts"])) if r["ts"] else None,
                              extra=json.dumps(conv.extra, ensure_ascii=False, sort_keys=True, default=str)
                              if conv.extra else None)
            buf.append({"id": conv.own_id or content_id(source, r["messages"]), "source": source,
                        "domain": domain, "lang": "", "messages": r["messages"], "meta": meta})
            if len(buf) >= ctx.batch_rows:
                yield _with_lang(buf)
                buf = []
        if buf:
            yield _with_lang(buf)

    def finalize(self, folder: str, cfg: ExtractConfig, counts: dict) -> dict:
        renamed = ensure_unique_ids(folder)
        _, salted = cfg.salt()
        skipped = skipped_files(folder)
        for s in skipped:  # in the driver, once per run, so every worker's skips are said in order
            print(f"turnforge: warning: extract skipped {s['path']} ({s['bytes']} bytes): {s['reason']}: "
                  f"{s['detail']}", file=sys.stderr)
        return {"duplicate_ids_renamed": renamed,
                "skipped_files": skipped,
                "skipped_by_reason": dict(sorted(Counter(s["reason"] for s in skipped).items())),
                "user_salt": "configured" if salted else "DEFAULT (dev salt: user hashes are not private; "
                                                          "set TURNFORGE_USER_SALT)"}


def _spec(payload: dict, cfg: ExtractConfig) -> tuple[dict, dict]:
    """The `inputs:` entry a task's file came from, and its event column names."""
    spec = cfg.inputs[payload["input"]] if cfg.inputs else {}
    return spec, {**cfg.fields, **(spec.get("fields") or {})}


def _probe(payload: dict, cfg: ExtractConfig):
    """(format, None) for a task's file, or (None, why it is skipped)."""
    spec, fields = _spec(payload, cfg)
    return probe_file(payload["file"], spec.get("format", cfg.format), fields)


def _with_lang(records: list[dict]) -> pa.RecordBatch:
    batch = pa.RecordBatch.from_pylist(records, schema=SCHEMA)
    langs = pa.array(detect_lang(batch.column("messages")), pa.string())
    return batch.set_column(SCHEMA.get_field_index("lang"), SCHEMA.field("lang"), langs)


def ensure_unique_ids(folder: str) -> int:
    """Ids must be unique in a shard folder. A later record with an id already seen (in part
    order) is renamed `<id>~<part>:<row>`: deterministic, and idempotent if a killed run is
    resumed halfway through the rewrite. Streams batch by batch; holds the set of ids and the
    ids of one part. Returns how many were renamed."""
    seen: set[str] = set()
    renamed = 0
    id_field = SCHEMA.field("id")
    for path in shards.data_files(folder):
        stem = os.path.basename(path)[:-len(".arrow")]
        new: list[str] = []
        dirty = False
        for b in shards.iter_batches_of(path):
            for i in b.column("id").to_pylist():
                mark = f"~{stem}:{len(new)}"
                if i.endswith(mark):  # renamed by an earlier, interrupted finalize
                    renamed += 1
                elif i in seen:
                    i += mark
                    renamed += 1
                    dirty = True
                seen.add(i)
                new.append(i)
        if dirty:
            w = shards.PartWriter(path, SCHEMA)
            off = 0
            for b in shards.iter_batches_of(path):
                w.write(b.set_column(0, id_field, pa.array(new[off:off + b.num_rows], pa.string())))
                off += b.num_rows
            w.close()
    return renamed
