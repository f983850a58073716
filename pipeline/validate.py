"""`turnforge validate` and `turnforge inspect`."""
from __future__ import annotations

import json
import os
from typing import TextIO

from . import shards
from .config import make_config
from .schema import validate_record
from .stages.base import StageContext

# Rejected rows that archive part of a kept record are not input errors.
NOT_ERRORS = {"tail_trimmed", "leading_non_user", "trailing_unanswered"}


def validate_path(path: str, params: dict, out: TextIO, limit: int = 0, deep: bool = False) -> int:
    """Print every bad record (file:line or part:row, field, reason); return how many. A shard
    folder's parts are first checked against its manifest (set, sizes, rows; `deep`: their
    hashes too), each differing part a problem named by its path."""
    printed = 0

    def say(msg: str) -> None:
        nonlocal printed
        if not limit or printed < limit:
            print(msg, file=out)
        printed += 1

    if os.path.isdir(os.path.join(path, "data")):
        n = 0
        damaged = shards.check_parts(path, deep=deep)
        for msg in damaged:
            say(msg)
        skip = {m.split(": ", 1)[0] for m in damaged}  # a part of another size is not parsed
        rows = shards.expected_rows(path)
        for part in shards.data_files(path):
            if part in skip:
                continue
            try:
                table = shards.read_table(part, rows.get(part))
            except shards.PartMismatch as e:
                say(str(e))
                continue
            for row, rec in enumerate(table.to_pylist()):
                n += 1
                for e in validate_record(rec, f"{os.path.basename(part)}:{row}"):
                    say(e)
        parts = "" if "parts" in _manifest(path) else " (no part list in the manifest: parts not checked)"
        print(f"{n} records checked{' (parts and hashes checked)' if deep and not parts else ''}{parts}, "
              f"{printed} problems", file=out)
        return printed

    bad = 0
    total_in = 0

    def on_reject(row):
        nonlocal bad
        if row["reason"] in NOT_ERRORS:
            return
        bad += 1
        say(f"{row['source_file']}:{row['line']}: {row['reason']}: {row['detail'] or ''}".rstrip(": "))

    for payload, ctx, batches in extract_in_memory(path, params, on_reject):
        for _ in batches:
            pass
        total_in += ctx.n_in
        for skip in ctx.skipped_files:  # a whole file extract would leave out is a problem of its own
            bad += 1
            say(f"{skip['path']}: {skip['reason']}: {skip['detail']}")
        if ctx.repairs:
            print(f"{payload['file']}: repairs {dict(ctx.repairs)}", file=out)
    print(f"{total_in} input records checked, {bad} bad", file=out)
    return bad


def _manifest(path: str) -> dict:
    try:
        return shards.load_manifest(path)
    except (OSError, ValueError):
        return {}


def extract_in_memory(path: str, params: dict, on_reject=None):
    """Run extract on input files without writing anything: per input file, (task payload,
    its StageContext, its record batches); the context's counts are complete once the batches
    are consumed. `on_reject(row)` sees every rejected row."""
    from .stages.extract import Extract

    stage = Extract()
    cfg = make_config(stage.Config, params)
    for task in stage.plan(path, cfg):
        ctx = StageContext("extract", None, task.name)
        if on_reject is not None:
            ctx.listeners.append(on_reject)
        yield task.payload, ctx, stage.run_task(task.payload, cfg, ctx)


def _short(s: str, n: int = 160) -> str:
    s = s.replace("\n", "⏎")
    return s if len(s) <= n else s[: n - 1] + "…"


def inspect_folder(folder: str, n: int = 3, rejected: bool = False, out: TextIO | None = None) -> None:
    p = lambda *a: print(*a, file=out)  # noqa: E731
    if shards.shard_folder(folder) != folder:  # a build: its funnel, then its last stage
        m = shards.load_manifest(folder)
        p(f"build {folder}: seed {m.get('seed')}")
        for f in m.get("funnel", []):
            p(f"  {f['folder']:<24} in={f['in']:<7} kept={f['kept']:<7} rejected={f['rejected_total']:<6} "
              f"records_out={f['records_out']}")
        folder = os.path.join(folder, m["last_stage"])
        p("")
    if not shards.is_complete(folder):
        p(f"{folder}: unfinished (no _SUCCESS)")
        return
    m = shards.load_manifest(folder)
    c = m["counts"]
    p(f"{folder}  stage={m['stage']}  in={c['in']} kept={c['kept']} rejected={c['rejected_total']} "
      f"records_out={c['records_out']}  accounting_ok={m['accounting_ok']}")
    if c["rejected"]:
        p("  rejected: " + ", ".join(f"{k}={v}" for k, v in c["rejected"].items()))
    if c["repairs"]:
        p("  repairs:  " + ", ".join(f"{k}={v}" for k, v in c["repairs"].items()))
    sub = "rejected" if rejected else "data"
    shown = 0
    for rec in shards.iter_records(folder, sub):
        if shown >= n:
            break
        shown += 1
        if rejected:
            p(f"- {rec['reason']} {rec['source_file']}:{rec['line']} n_inputs={rec['n_inputs']}: {rec['detail']}")
            p(f"    {_short(rec['raw'] or '')}")
            continue
        meta = {k: v for k, v in (rec["meta"] or {}).items() if v not in (None, [], "")}
        p(f"- id={rec['id']} source={rec['source']} domain={rec['domain']} lang={rec['lang']} "
          f"meta={_short(json.dumps(meta, ensure_ascii=False, default=str), 200)}")
        for msg in rec["messages"]:
            p(f"    [{msg['turn']}] {msg['role']:<9} {_short(msg['content'])}")
