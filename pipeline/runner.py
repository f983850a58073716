"""Runs stages into shard folders and builds from a YAML config, resumably.

Resume works at two levels: a stage folder with `_SUCCESS` is skipped; inside an unfinished
one, every task whose `.work/<task>.json` marker exists (written after its parts) is skipped.
Task outputs are pure functions of (input, config), so a resumed build is byte-identical to an
uninterrupted one, and so is a build with any number of workers.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import sys
from typing import Any

from . import card, integrity, progress, report, shards
from .config import ConfigError, load_config, make_config
from .engines import Engine, get_engine
from .stages import STAGES, get_stage  # noqa: F401 (STAGES: the CLI's stage names)
from .stages.base import MapStage, StageContext, merge_counts

SECRET_KEYS = {"user_salt", "api_key", "salt"}


def redact(params: dict) -> dict:
    return {k: ("<redacted>" if k in SECRET_KEYS and v else v) for k, v in params.items()}


def _fingerprint(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _run_task(name: str, params: dict, task_name: str, payload: dict, folder: str,
              rows_per_part: int | None, batch_rows: int) -> dict:
    """One task in a worker (or inline): write its parts, then its completion marker."""
    stage = get_stage(name)
    cfg = make_config(stage.Config, params)
    _fail_once(folder, task_name)
    for old in glob.glob(os.path.join(folder, "*", f"part-{task_name}*.arrow")):
        os.remove(old)  # parts of a killed attempt; rewritten identically below
    ctx = StageContext(name, folder, task_name, rows_per_part, batch_rows)
    out = shards.RollingWriter(os.path.join(folder, "data"), f"part-{task_name}", shards.SCHEMA, rows_per_part)
    try:
        for batch in stage.run_task(payload, cfg, ctx):
            out.write(batch)
            ctx.records_out += batch.num_rows
        ctx.close()
        out.close()
    except BaseException as e:
        out.abort()  # no temp file of this attempt is left to fill the disk
        if ctx._writer is not None:
            ctx._writer.abort()
        if isinstance(e, OSError) and not isinstance(e, ConfigError):
            raise integrity.named_error(e, f"stage {name} task {task_name}") from e
        raise
    counts = ctx.counts()
    if counts["in"] != counts["kept"] + sum(counts["rejected"].values()):
        raise RuntimeError(f"stage {name} task {task_name}: accounting broken: {counts}")
    shards.atomic_write_json(os.path.join(folder, ".work", f"{task_name}.json"),
                             {"payload": payload, "counts": counts})
    return counts


def _run_step_task(name: str, params: dict, task_name: str, payload: dict, folder: str, step: str) -> dict:
    """One task of a global step (step "map": its columns; "reduce": a hash partition or a
    merge) in a worker (or inline), then its marker `.work/<step>/<task>.json`."""
    stage = get_stage(name)
    cfg = make_config(stage.Config, params)
    _fail_once(folder, f"{step}-{task_name}")
    summary = (stage.map_task if step == "map" else stage.reduce_task)(payload, cfg, folder)
    shards.atomic_write_json(os.path.join(folder, ".work", step, f"{task_name}.json"),
                             {"payload": payload, "summary": summary})
    return summary


def _run_all(engine, fn, name: str, params: dict, tasks: list, folder: str, bar, *extra) -> None:
    """Every task on the engine; the bar counts tasks and shows records/s (a task's counts or
    map summary say how many records it read)."""
    records = [0]

    def done(result) -> None:
        if isinstance(result, dict):
            records[0] += int(result.get("in", result.get("rows", 0)) or 0)
            elapsed = bar.format_dict.get("elapsed") or 0
            if records[0] and elapsed:
                bar.set_postfix_str(f"{records[0]:,} records, {records[0] / elapsed:,.0f} records/s")  # drawn now: a task is coarse
        bar.update(1)

    engine.map(_with_folder_mode, [(fn, name, params, t.name, t.payload, folder, *extra) for t in tasks], done)
    bar.close()


def _with_folder_mode(fn, name: str, params: dict, task_name: str, payload: dict, folder: str, *extra):
    """A task writes owner-only files into an owner-only folder: a Ray worker does not inherit
    the driver's umask, so each task sets it from the folder."""
    with shards.owner_only(shards.is_owner_only(folder)):
        return fn(name, params, task_name, payload, folder, *extra)


def _fail_once(folder: str, task_name: str) -> None:
    """Fault injection for the engine tests: TURNFORGE_FAIL_ONCE=<task>[,<task>...] makes those
    tasks raise on their first attempt only (a marker in .work remembers), so a retry must
    finish them."""
    if task_name in os.environ.get("TURNFORGE_FAIL_ONCE", "").split(","):
        mark = os.path.join(folder, ".work", f"{task_name}.failed-once")
        if not os.path.exists(mark):
            open(mark, "w").close()
            raise RuntimeError(f"task {task_name}: injected failure (TURNFORGE_FAIL_ONCE)")


def _task_done(folder: str, task, sub: str = "") -> bool:
    p = os.path.join(folder, ".work", sub, f"{task.name}.json")
    if not os.path.exists(p):
        return False
    with open(p, encoding="utf-8") as f:
        return json.load(f).get("payload") == task.payload


def run_stage(name: str, params: dict, inp: str | None, folder: str, *, workers: int = 1, seed: int = 0,
              rows_per_part: int = 50_000, batch_rows: int = 1000, progress: bool = True,
              engine: str | Engine = "local", ray_address: str | None = None, input_checked: bool = False) -> dict:
    """Run one stage into `folder` (resuming it if unfinished); returns its manifest. `engine`:
    `local` (a process pool of `workers`), `ray` (Ray tasks; a local Ray with `workers` CPUs
    unless `ray_address` names a cluster) or an Engine to reuse."""
    if isinstance(engine, str):
        eng = get_engine(engine, workers, ray_address)
        try:
            return run_stage(name, params, inp, folder, seed=seed, rows_per_part=rows_per_part,
                             batch_rows=batch_rows, progress=progress, engine=eng, input_checked=input_checked)
        finally:
            eng.close()
    stage = get_stage(name)
    cfg = make_config(stage.Config, params)
    ident = stage.input_identity(inp, cfg)
    fp = _fingerprint({"stage": name, "params": params, "input": inp, "seed": seed, "identity": ident})
    os.makedirs(os.path.dirname(os.path.abspath(folder)), exist_ok=True)  # OUT/stages/ keeps the usual mode
    with integrity.FolderLock(folder, f"stage {name}"):  # free when a build holds OUT
        return _run_stage_locked(stage, name, params, cfg, inp, folder, seed, ident, fp, rows_per_part,
                                 batch_rows, progress, engine, input_checked)


def _run_stage_locked(stage, name, params, cfg, inp, folder, seed, ident, fp, rows_per_part, batch_rows,
                      progress, engine, input_checked) -> dict:
    if shards.is_complete(folder):
        m = shards.load_manifest(folder)
        if m.get("fingerprint") != fp:
            raise ConfigError(f"{folder} was built {_what_changed(m, params, inp, seed, ident)}; it is not reused. "
                              f"Delete it and the stages built from it (rm -r {folder} ...) or choose another --out")
        problems = shards.check_parts(folder)
        if not problems:
            return m
        # a finished folder whose parts no longer match its manifest is built again (same config)
        print(f"warning: {folder} no longer matches its manifest ({'; '.join(problems[:3])}"
              f"{'; ...' if len(problems) > 3 else ''}); rebuilding it", file=sys.stderr)
        _clear(folder)
    stage.check_input(inp, cfg)  # before the folder exists: a failed start must not block the next command
    if inp and not input_checked and os.path.isdir(os.path.join(inp, "data")):
        shards.verify(inp, ("data",), deep=True)  # every part whole and unchanged before it is read
    raw = _raw_personal_data(name, inp)
    with shards.owner_only(raw):
        _claim(folder, fp, raw)
        tasks, counts, extra = _run_tasks(stage, name, params, inp, cfg, folder, engine, progress,
                                          rows_per_part, batch_rows)
        manifest = {
            "stage": name,
            "config": redact(params),
            "input": stage.describe_input(inp, cfg),
            "seed": seed,
            "versions": shards.versions(),
            "fingerprint": fp,
            "counts": counts,
            "accounting_ok": counts["in"] == counts["kept"] + counts["rejected_total"],
            "tasks": len(tasks),
            "data_parts": [os.path.basename(p) for p in shards.data_files(folder)],
            "rejected_parts": [os.path.basename(p) for p in shards.data_files(folder, "rejected")],
            "rejected_files": "mode 0600: may hold raw text with personal data (written before the pii stage)",
            "raw_personal_data": raw,
            "input_identity": ident,
            **extra,
        }
        card.write_card(folder, manifest)  # README.md with `configs:`: load_dataset(folder) reads data/ only
        shards.mark_complete(folder, manifest)
    return manifest


def _what_changed(m: dict, params: dict, inp, seed: int, ident: dict) -> str:
    """Why a finished folder's fingerprint differs, in words: settings, input files, input folder."""
    if m.get("config") != redact(params):
        old, new = m.get("config") or {}, redact(params)
        keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        return f"with other settings ({', '.join(keys) or 'secrets'})"
    if m.get("seed") != seed:
        return f"with seed {m.get('seed')}, not {seed}"
    was = m.get("input_identity")
    if was is None:
        return "before inputs were fingerprinted (an older turnforge)"
    if "files" in ident or "files" in was:
        a, b = was.get("files", {}), ident.get("files", {})
        notes = [f"{p} is new" for p in b if p not in a] + [f"{p} is gone" for p in a if p not in b]
        for p in (p for p in b if p in a and a[p] != b[p]):
            notes.append(f"{p} changed (size {a[p][0]} -> {b[p][0]} bytes)" if a[p][0] != b[p][0]
                         else f"{p} changed (modified since)")
        return "from other input: " + "; ".join(notes[:5]) + (f"; and {len(notes) - 5} more" if len(notes) > 5 else "")
    if was != ident:
        return f"from another build of its input folder {inp} (that folder was rebuilt since)"
    return "from another input"


def _raw_personal_data(name: str, inp: str | None) -> bool:
    """Whether a stage's output may hold raw personal data, which makes its folder owner-only
    (docs/design.md#invariants): extract reads raw input and pii anonymises it; any other stage
    keeps what its input folder holds (an input that does not say: yes, failing closed)."""
    if name in ("extract", "pii"):
        return name == "extract"
    return shards.holds_raw_personal_data(inp)


def _run_tasks(stage, name: str, params: dict, inp, cfg, folder: str, engine, progress: bool,
               rows_per_part: int | None, batch_rows: int) -> tuple[list, dict, dict]:
    """A stage's global step (if any) and its tasks, the finished ones skipped; returns (tasks,
    merged counts, the stage's extra manifest fields)."""
    if not os.path.exists(os.path.join(folder, ".work", "prepared.json")):
        maps = stage.map_plan(inp, cfg)
        if maps:  # global step as map tasks + a columnar reduce
            os.makedirs(os.path.join(folder, ".work", "map"), exist_ok=True)
            todo = [t for t in maps if not _task_done(folder, t, "map")]
            _run_all(engine, _run_step_task, name, params, todo, folder,
                     _bar(len(maps), len(maps) - len(todo), f"{name} map", progress), "map")
            os.makedirs(os.path.join(folder, ".work", "reduce"), exist_ok=True)
            for k, rnd in enumerate(stage.reduce_plan(inp, cfg, folder)):
                todo = [t for t in rnd if not _task_done(folder, t, "reduce")]
                _run_all(engine, _run_step_task, name, params, todo, folder,
                         _bar(len(rnd), len(rnd) - len(todo), f"{name} reduce {k}", progress), "reduce")
            stage.reduce(inp, cfg, folder)
        else:
            stage.progress = progress
            stage.prepare(inp, cfg, folder)
    tasks = stage.plan(inp, cfg)
    if isinstance(stage, MapStage):
        rows_per_part = None  # one output part per input part, same name
    todo = [t for t in tasks if not _task_done(folder, t)]
    _run_all(engine, _run_task, name, params, todo, folder, _bar(len(tasks), len(tasks) - len(todo), name, progress),
             rows_per_part, batch_rows)

    per_task = []
    for t in tasks:
        with open(os.path.join(folder, ".work", f"{t.name}.json"), encoding="utf-8") as f:
            per_task.append(json.load(f)["counts"])
    counts = merge_counts(per_task)
    return tasks, counts, stage.finalize(folder, cfg, counts)


def _claim(folder: str, fp: str, owner_only: bool) -> None:
    """Make `folder` this run's: new, or unfinished with the same fingerprint (resumed). An
    unfinished folder of another config or input in which no task finished (a start that
    failed) holds nothing worth keeping and is cleared, so it never blocks the corrected
    command; one with finished tasks is refused rather than deleted."""
    fp_path = os.path.join(folder, ".work", "fingerprint")
    if os.path.exists(fp_path) and _read(fp_path) != fp:
        done = _finished_tasks(folder)
        if done:
            raise ConfigError(f"{folder} holds an unfinished run with another config or input ({done} tasks "
                              f"finished); delete it (rm -r {folder}) or choose another --out")
        _clear(folder)
    shards.prepare(folder, owner_only)
    shards.atomic_write_bytes(fp_path, fp.encode())


def _clear(folder: str) -> None:
    """Empty a folder, keeping the lock this run holds on it."""
    for f in os.listdir(folder):
        if f != integrity.LOCK_NAME:
            p = os.path.join(folder, f)
            shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.remove(p)


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _finished_tasks(folder: str) -> int:
    """Completion markers of tasks, map and reduce tasks, and of a global step (prepared.json)."""
    return sum(len(glob.glob(os.path.join(folder, ".work", *sub, "*.json"))) for sub in ((), ("map",), ("reduce",)))


def _bar(total: int, done: int, desc: str, enabled: bool):
    return progress.bar(total, desc, "task", enabled, initial=done)


def build(config_path: str, out: str, *, workers: int = 1, progress: bool = True,
          overrides: dict | None = None, engine: str | None = None, ray_address: str | None = None) -> dict:
    """`turnforge build`: every configured stage in order into OUT/stages/NN-name/. The engine
    is the argument's, else the config's `engine:` (a name, or {name, address}), else local."""
    from .preflight import check_build

    cfg = load_config(config_path)
    check_build(cfg, config_path, overrides)  # every problem at once, before any folder or engine starts
    ec = cfg.get("engine") or {}
    ec = {"name": ec} if isinstance(ec, str) else dict(ec)
    # One run per OUT, taken by this driver before any engine starts: Ray tasks write into OUT
    # on behalf of the run that holds it (docs/integrity.md).
    with integrity.FolderLock(out, "build"):
        eng = get_engine(engine or ec.get("name", "local"), workers, ray_address or ec.get("address"))
        try:
            return _build(cfg, config_path, out, eng, progress, overrides)
        finally:
            eng.close()


def _entries(cfg: dict, config_path: str) -> list[tuple[str, dict]]:
    out = []
    entries = list(cfg.get("stages") or []) + ([{"name": "mix", **cfg["mix"]}] if cfg.get("mix") else [])
    for k, st in enumerate(entries, 1):
        st = {"name": st} if isinstance(st, str) else dict(st)
        name = st.pop("name", None)
        if not name:
            raise ConfigError(f"{config_path}: stages[{k - 1}] has no name")
        out.append((name, st))
    return out


def _redo_damaged(out: str, names: list[str]) -> tuple[int | None, bool]:
    """Check the finished stage folders of a build against their manifests (set and sizes of
    parts; the hash too for the folder the first stage to run will read). The first that
    differs is deleted with every stage after it (and OUT/final), so this run rebuilds them;
    returns the index of the first stage left to run (None: all finished) and whether its
    input folder was hash-checked here."""
    folders = [os.path.join(out, "stages", f"{k:02d}-{n}") for k, n in enumerate(names, 1) if n != "mix"]
    for i, f in enumerate(folders):
        if not shards.is_complete(f):
            return i, True
        feeds_next = i + 1 < len(folders) and not shards.is_complete(folders[i + 1])
        problems = shards.check_parts(f, deep=feeds_next)
        if problems:
            print(f"warning: {f} no longer matches its manifest ({'; '.join(problems[:3])}"
                  f"{'; ...' if len(problems) > 3 else ''}); rebuilding it and the stages after it", file=sys.stderr)
            for g in folders[i:] + [os.path.join(out, "final")]:
                integrity.rmtree(g)
            return i, False
    return None, False


def _build(cfg: dict, config_path: str, out: str, engine: Engine, progress: bool, overrides: dict | None) -> dict:
    seed = int(cfg.get("seed", 0))
    run_opts = {k: cfg[k] for k in ("rows_per_part", "batch_rows") if k in cfg}
    os.makedirs(out, exist_ok=True)
    prev, funnel, mix = None, [], None
    entries = _entries(cfg, config_path)
    first_to_run, input_checked = _redo_damaged(out, [n for n, _ in entries])
    if os.path.exists(os.path.join(out, "manifest.json")) and first_to_run is not None:
        integrity.remove_quietly(os.path.join(out, "manifest.json"))  # the build is unfinished again
    for k, (name, st) in enumerate(entries, 1):
        params = {**st, **(overrides or {}).get(name, {})}
        if name == "mix":  # multi-input and global: writes OUT/final/, must come last
            if k != len(entries):
                raise ConfigError(f"{config_path}: mix must be the last stage")
            mix = _build_mix(params, prev, out, seed, progress)
            for f in card.final_folders(os.path.join(out, "final")) if cfg.get("parquet") else []:
                card.write_parquet(f)  # parquet: true, docs/output.md
            continue
        if name == "extract" and "inputs" in cfg:
            params.setdefault("inputs", cfg["inputs"])
        folder = os.path.join(out, "stages", f"{k:02d}-{name}")
        reused = shards.is_complete(folder)  # and run_stage checks it was built from this input
        m = run_stage(name, params, prev, folder, seed=seed, progress=progress, engine=engine,
                      input_checked=input_checked and k - 1 == first_to_run, **run_opts)
        if cfg.get("parquet"):
            card.write_parquet(folder)
        funnel.append({"stage": name, "folder": os.path.relpath(folder, out), **m["counts"]})
        if progress:
            c = m["counts"]
            print(f"[{k:02d}-{name}] {'reused (finished earlier, same config and input) ' if reused else ''}"
                  f"in={c['in']} kept={c['kept']} rejected={c['rejected_total']} "
                  f"records_out={c['records_out']} -> {folder}", file=sys.stderr)
        prev = folder
    manifest = {"config": os.path.abspath(config_path), "seed": seed, "versions": shards.versions(),
                "funnel": funnel, "last_stage": os.path.relpath(prev, out) if prev else "final"}
    if mix is not None:
        manifest["mix"] = mix
    report.write_report(out, manifest=manifest)  # numbers only; before manifest.json, the build's last file
    shards.atomic_write_json(os.path.join(out, "manifest.json"), manifest)
    return manifest


def _build_mix(params: dict, prev: str | None, out: str, seed: int, progress: bool) -> dict:
    """The build's mix entry: sources default to the previous stage's folder (split by domain)."""
    from .stages.mix import run_mix

    params = dict(params)
    sources = params.pop("sources", None) or ([prev] if prev else None)
    if not sources:
        raise ConfigError("mix: no sources: give `sources:` or run stages before it")
    m = run_mix(sources, out, params, seed=seed, progress=progress)
    return {"final": "final", "strategy": m["strategy"], "validation": m["validation"]["realised"],
            "stages": {st["stage"]: st["total"] for st in m["stages"]}}
