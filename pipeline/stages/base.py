"""What a stage is (docs/design.md#stage-contract).

A stage is a small object with a typed config (a dataclass) that turns input into record
batches while a `StageContext` counts every input unit in and out, with a reason for each one
dropped. The runner cuts a stage's work into tasks (one per input file or input part) so tasks
run in worker processes, resume independently and always produce the same part names.

- `MapStage` (quality, pii, topic, ...): a pure `run(batches, ctx) -> batches` per input part, so
  the same code runs in-process, under `datasets.map(num_proc=...)` or on Ray Data.
- Stages with their own planning (extract reads raw files; dedup and mix add a reduce step)
  override `plan` / `run_task` / `finalize`.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os
from collections import Counter
from typing import Any, Iterator

import pyarrow as pa

from .. import shards
from ..config import ConfigError
from ..schema import REJECTED_SCHEMA, rejected_row

# Records dropped before the pii stage still hold raw text: owner-only files.
REJECTED_MODE = 0o600


class StageFailed(RuntimeError):
    """A stage's own red line tripped (e.g. residual PII): no _SUCCESS is written."""


class StageContext:
    """Counts of one task: every input unit ends up kept or rejected with a reason."""

    def __init__(self, stage: str, folder: str | None, task: str, rows_per_part: int = 50_000,
                 batch_rows: int = 1000):
        self.stage, self.task, self.folder = stage, task, folder
        self.n_in = 0
        self.kept = 0
        self.rejected: Counter = Counter()  # input units dropped, by reason
        self.archived: Counter = Counter()  # rows that keep cut parts of kept records, by reason
        self.repairs: Counter = Counter()
        self.stats: Counter = Counter()  # stage-specific counts for the manifest (no raw values)
        self.records_out = 0
        self.rejected_rows = 0
        self.batch_rows = batch_rows
        self._buf: list[dict] = []
        self._writer = None
        if folder is not None:
            self._writer = shards.RollingWriter(os.path.join(folder, "rejected"), f"part-{task}",
                                                REJECTED_SCHEMA, rows_per_part, mode=REJECTED_MODE)
        self.listeners: list = []  # callables(row) used by `turnforge validate`
        self.skipped_files: list[dict] = []  # whole input files that could not be read

    def skip_file(self, path: str, reason: str, detail: str) -> None:
        """A whole input file is left out (empty, binary, no usable columns): it has no units
        to count, so its path, size and reason go to the task's marker and then the manifest."""
        self.skipped_files.append({"path": path, "reason": reason, "detail": detail,
                                   "bytes": os.path.getsize(path)})

    def take(self, n: int = 1) -> None:
        self.n_in += n

    def keep(self, n: int = 1) -> None:
        self.kept += n

    def repair(self, rule: str, n: int = 1) -> None:
        if n:
            self.repairs[rule] += n

    def reject(self, reason: str, *, n_inputs: int = 1, **kw) -> None:
        row = rejected_row(self.stage, reason, n_inputs=n_inputs, **kw)
        if n_inputs:
            self.rejected[reason] += n_inputs
        else:
            self.archived[reason] += 1
        self.rejected_rows += 1
        for f in self.listeners:
            f(row)
        if self._writer is not None:
            self._buf.append(row)
            if len(self._buf) >= self.batch_rows:
                self._flush()

    def _flush(self) -> None:
        if self._buf and self._writer is not None:
            self._writer.write(pa.RecordBatch.from_pylist(self._buf, schema=REJECTED_SCHEMA))
        self._buf = []

    def close(self) -> list[str]:
        self._flush()
        return self._writer.close() if self._writer is not None else []

    def counts(self) -> dict:
        return {"in": self.n_in, "kept": self.kept, "rejected": dict(sorted(self.rejected.items())),
                "archived": dict(sorted(self.archived.items())),
                "repairs": dict(sorted(self.repairs.items())), "stats": dict(sorted(self.stats.items())),
                "records_out": self.records_out,
                "rejected_rows": self.rejected_rows,
                **({"skipped_files": self.skipped_files} if self.skipped_files else {})}


def merge_counts(parts: list[dict]) -> dict:
    rej, rep, arc, st = Counter(), Counter(), Counter(), Counter()
    tot = {"in": 0, "kept": 0, "records_out": 0, "rejected_rows": 0}
    for c in parts:
        for k in tot:
            tot[k] += c[k]
        rej.update(c["rejected"])
        rep.update(c["repairs"])
        arc.update(c["archived"])
        st.update(c.get("stats", {}))
    tot["rejected"] = dict(sorted(rej.items()))
    tot["rejected_total"] = sum(rej.values())
    tot["archived"] = dict(sorted(arc.items()))
    tot["repairs"] = dict(sorted(rep.items()))
    tot["stats"] = dict(sorted(st.items()))
    return tot


def skipped_files(folder: str) -> list[dict]:
    """The input files the tasks of a stage folder skipped, read back from their completion
    markers (`.work/<task>.json`), so a resumed run reports the same ones; sorted by path."""
    out = []
    for marker in sorted(glob.glob(os.path.join(folder, ".work", "*.json"))):
        with open(marker, encoding="utf-8") as f:
            out += json.load(f).get("counts", {}).get("skipped_files", [])
    return sorted(out, key=lambda s: s["path"])


@dataclasses.dataclass
class Task:
    name: str  # used in part names: data/part-<name>-NNNNN.arrow
    payload: dict


class Stage:
    name = "stage"
    Config: type = object
    progress = False  # the runner sets it: whether a one-process `prepare` may draw a progress bar

    def check_input(self, inp: str | None, cfg) -> None:
        """Raise when the input cannot be read. The runner calls it before it makes the stage
        folder, so a start that fails here leaves nothing behind (docs/design.md#stage-contract)."""
        if inp is None or not shards.is_complete(inp):
            raise ConfigError(f"stage {self.name}: input {inp!r} is not a finished shard folder (_SUCCESS missing); "
                              "give a folder a stage finished, such as OUT/stages/01-extract")

    def plan(self, inp: str | None, cfg) -> list[Task]:
        raise NotImplementedError

    def run_task(self, payload: dict, cfg, ctx: StageContext) -> Iterator[pa.RecordBatch]:
        raise NotImplementedError

    def prepare(self, inp: str | None, cfg, folder: str) -> None:
        """A global step in one process before the per-part tasks. Runs once: the runner
        skips it when `.work/prepared.json` exists, which it must write last."""

    def map_plan(self, inp: str | None, cfg) -> list[Task]:
        """A global step as map tasks (one per input part) plus `reduce`, instead of `prepare`:
        each task writes fixed-width columns under `.work/map/<task>/`, the runner marks it
        done (`.work/map/<task>.json`), then runs `reduce` once. Empty: no map step."""
        return []

    def map_task(self, payload: dict, cfg, folder: str) -> dict:
        """One map task; returns a small JSON-able summary for its marker."""
        raise NotImplementedError

    def reduce_plan(self, inp: str | None, cfg, folder: str) -> list[list[Task]]:
        """Rounds of reduce tasks, run after the map tasks and before `reduce` (e.g. one task
        per hash partition of keys, then rounds that merge their results). Runs in the driver
        and may write what the tasks read; it runs again on resume, so it must be idempotent.
        Markers: `.work/reduce/<task>.json`. Empty: the reduce is `reduce` alone."""
        return []

    def reduce_task(self, payload: dict, cfg, folder: str) -> dict:
        """One reduce task; returns a small JSON-able summary for its marker."""
        raise NotImplementedError

    def reduce(self, inp: str | None, cfg, folder: str) -> None:
        """The columnar reduce over every map (and reduce) task's output; writes the per-part
        decisions and `.work/prepared.json` last."""
        raise NotImplementedError

    def finalize(self, folder: str, cfg, counts: dict) -> dict:
        """Reduce step after all tasks; returns extra manifest fields."""
        return {}

    def describe_input(self, inp: str | None, cfg) -> Any:
        return inp

    def input_identity(self, inp: str | None, cfg) -> dict:
        """What identifies the input's content, part of the stage's fingerprint, so a finished
        folder is never reused for an input that changed: for a shard folder, its fingerprint."""
        return shards.folder_identity(inp)


def decisions_path(folder: str, index: int) -> str:
    """Where a global step's reduce writes the decisions of input part `index` (columns part,
    row, ...; one row per input row, in order): one small file per part, so a part task reads
    only its own."""
    return os.path.join(folder, ".work", "decisions", f"part-{index:05d}.arrow")


def decided_batches(payload: dict, ctx: StageContext) -> Iterator[tuple[pa.RecordBatch, pa.Table]]:
    """Per input batch of a part task: (batch, its rows of the decisions), every record counted in."""
    dec = shards.read_table(decisions_path(ctx.folder, payload["index"]))
    row = 0
    for b in shards.iter_batches_of(payload["part"]):
        ctx.take(b.num_rows)
        yield b, dec.slice(row, b.num_rows)
        row += b.num_rows


def part_tasks(inp: str) -> list[Task]:
    """One task per input part, with the part's index (the key of its decisions)."""
    return [Task(os.path.basename(p)[len("part-"):-len(".arrow")], {"part": p, "index": i})
            for i, p in enumerate(shards.data_files(inp))]


def with_meta(records: list[dict], stage: str, **fields) -> list[dict]:
    """Append `stage` to each record's stage trail and set meta fields (lists per record)."""
    for k, rec in enumerate(records):
        meta = dict(rec["meta"] or {})
        meta["stages"] = list(meta.get("stages") or []) + [stage]
        for name, values in fields.items():
            meta[name] = values[k]
        rec["meta"] = meta
    return records


class MapStage(Stage):
    """A per-batch stage over a shard folder: one task per input part."""

    def plan(self, inp, cfg):
        if inp is None or not shards.is_complete(inp):
            raise ConfigError(f"stage {self.name}: input {inp!r} is not a finished shard folder (_SUCCESS missing)")
        return [Task(os.path.basename(p)[len("part-"):-len(".arrow")], {"part": p})
                for p in shards.data_files(inp)]

    def run_task(self, payload, cfg, ctx):
        def batches():
            for b in shards.iter_batches_of(payload["part"]):
                ctx.take(b.num_rows)
                yield b
        yield from self.run(batches(), ctx, cfg)

    def run(self, batches: Iterator[pa.RecordBatch], ctx: StageContext, cfg) -> Iterator[pa.RecordBatch]:
        raise NotImplementedError
