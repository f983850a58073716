"""Flywheel rounds: admit a batch, train on from the current model, evaluate both models on the
pool's fixed validation sets, then promote the candidate or keep the current one
(docs/flywheel.md#rounds).

    POOL/models/current -> NNNN-<name>   the promoted model (a symlink replaced by rename)
    POOL/models/previous -> ...          the one it replaced (what --rollback returns to)
    POOL/models/NNNN-<name>/             a promoted model (Hugging Face folder)
    POOL/models/history.jsonl            every switch: promote and rollback
    POOL/validation -> rounds/NNNN-<name>/validation   the fixed sets, one folder each
    POOL/rounds/NNNN-<name>/             decision.json, eval.json, replay/, filtered/, mix/, train/
    POOL/rounds/.inflight.json           journal of the round in flight (undone when it was killed)
    POOL/cursors.json                    --since cursor per log source

A round changes the pool only through admit and through its commit: the work folder is renamed
to rounds/NNNN-<name>/ (the commit point), then the validation and model links are replaced.
A round killed before its commit point is undone by the next round / rounds / --rollback
(its batch leaves pool.json, its files are deleted); one killed after it is completed.
"""
from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import os
import re
import shutil
import sys
import time
from typing import Any, TextIO

import numpy as np
import yaml

from . import flywheel, runner, shards
from .config import ConfigError, load_config, make_config

REDLINE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "redline")
LONG = "long_multiturn"
POSITIONS = ((1, 1), (2, 2), (3, 3), (4, 7), (8, None))  # turn positions (1-based) reported per set


@dataclasses.dataclass
class RoundConfig:
    replay: float = 0.1  # share of a round's training data drawn from earlier batches
    max_regression: float = 0.02  # a set's loss may grow at most this much (relative) over the current model's
    gate: list = dataclasses.field(default_factory=lambda: ["turn_mean", "token_mean"])  # metrics gated per set
    redline: list | None = None  # red-line conversation files (default: the shipped safety and PII-bait sets)
    eval_batch: int = 8  # conversations per forward pass in the evaluation
    keep_refused_model: bool = False  # keep a refused candidate's weights in rounds/NNNN-<name>/train/final
    # `turnforge judge` settings (base_url, model, ...; docs/judge.md): both models answer the last
    # user turn of some fixed-set conversations and the judge scores them; off when None
    judge: dict | None = None
    judge_sets: list | None = None  # sets whose conversations are answered (default: every set)
    judge_items: int = 20  # conversations per set
    judge_max_tokens: int = 128  # new tokens per answer
    min_win_rate: float | None = None  # gate on the judge: candidate's pairwise win rate vs the current model

    def check(self) -> None:
        if not 0 <= float(self.replay) < 1:
            raise ConfigError(f"round.replay: {self.replay} not in [0, 1)")
        if not float(self.max_regression) >= 0:
            raise ConfigError(f"round.max_regression: {self.max_regression} must be >= 0")
        bad = [g for g in self.gate if g not in ("turn_mean", "token_mean")]
        if bad:
            raise ConfigError(f"round.gate: {bad} not in turn_mean|token_mean")
        if int(self.eval_batch) < 1:
            raise ConfigError("round.eval_batch: must be >= 1")
        if self.judge is not None and not isinstance(self.judge, dict):
            raise ConfigError(f"round.judge: {self.judge!r} is not a mapping of judge settings (base_url, model, ...)")
        if self.min_win_rate is not None and (self.judge is None or not 0 <= float(self.min_win_rate) <= 1):
            raise ConfigError("round.min_win_rate: needs round.judge and a value in [0, 1]")


def split_sets(sets: dict[str, Any]) -> tuple[dict, dict, dict]:
    """`--set` pairs -> (admit's sets, train overrides, round settings): `train.lr=...` goes to the
    trainer, `eval.max_regression=...` / `round.replay=...` to the round, the rest to admit."""
    adm, train, rnd = {}, {}, {}
    for k, v in sets.items():
        if k.startswith("train."):
            train[k[6:]] = v
        elif k.startswith(("eval.", "round.")):
            rnd[k.split(".", 1)[1]] = v
        else:
            adm[k] = v
    return adm, train, rnd


def train_config(path: str, overrides: dict):
    from trainer.train import TrainConfig

    with open(path, encoding="utf-8") as f:
        values = yaml.safe_load(f) or {}
    values.update(overrides)
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"{path}: unknown train setting(s) {unknown}; known: {sorted(names)}")
    values.setdefault("data", "-")  # the round sets data and out
    return TrainConfig(**values)


# ------------------------------------------------------------------ links, lock, journal

def _link(path: str, target: str | None) -> None:
    """Point `path` at `target` (relative to its folder) by renaming a new symlink over it:
    readers see the old or the new target, never none. None removes the link."""
    if target is None:
        if os.path.lexists(path):
            os.remove(path)
        return
    tmp = path + ".tmp"
    if os.path.lexists(tmp):
        os.remove(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, path)


def _read_json(path: str, missing: Any = None) -> Any:
    if missing is not None and not os.path.exists(path):
        return missing
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _target(path: str) -> str | None:
    return os.readlink(path) if os.path.islink(path) else None


def current_model(pool: str) -> str | None:
    """models/current's folder name (NNNN-<name>), None while the base model is current."""
    t = _target(os.path.join(pool, "models", "current"))
    return os.path.basename(t) if t else None


@contextlib.contextmanager
def _round_lock(pool: str, wait: bool = True):
    """One round (or rollback) at a time per pool; admit's own lock is another file."""
    import fcntl

    os.makedirs(pool, exist_ok=True)
    with open(os.path.join(pool, ".round.lock"), "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _round_ids(pool: str) -> list[str]:
    """Committed rounds, NNNN-<name>, in order."""
    d = os.path.join(pool, "rounds")
    return sorted(f for f in os.listdir(d) if re.fullmatch(r"\d{4,}-[\w.-]+", f)) if os.path.isdir(d) else []


def _journal_path(pool: str) -> str:
    return os.path.join(pool, "rounds", ".inflight.json")


def recover(pool: str) -> str | None:
    """Finish or undo a round whose process died (call with the round lock held). Its decision
    committed: redo the link switches. Not: remove its batch from pool.json and delete what
    it wrote, so the pool is as before the round. Returns what was done, or None."""
    jp = _journal_path(pool)
    if not os.path.exists(jp):
        return None
    with open(jp, encoding="utf-8") as f:
        j = json.load(f)
    final = os.path.join(pool, "rounds", j["id"])
    if os.path.exists(os.path.join(final, "decision.json")):
        with open(os.path.join(final, "decision.json"), encoding="utf-8") as f:
            _apply(pool, json.load(f))
        os.remove(jp)
        return f"round {j['id']}: completed its commit"
    name = j["name"]
    with flywheel.locked(pool, "round undo"):  # pool.json is admit's file: edit it under the pool lock
        meta = flywheel.load_pool(pool)
        keep = set(j.get("batches_before") or [])
        gone = [b for b in meta["batches"] if b["name"] == name and b["id"] not in keep]
        if gone:
            meta["batches"] = [b for b in meta["batches"] if b not in gone]
            if not meta["batches"] and not j.get("pool_existed"):
                os.remove(os.path.join(pool, "pool.json"))
            else:
                shards.atomic_write_json(os.path.join(pool, "pool.json"), meta)
        mine = re.compile(r"\.?(\d{4,}-" + re.escape(name) + r")(\.tmp|\.npz|\.npz\.tmp)?")
        left = [os.path.join(pool, sub, f) for sub in ("batches", "signatures")
                if os.path.isdir(os.path.join(pool, sub)) for f in os.listdir(os.path.join(pool, sub))
                if (m := mine.fullmatch(f)) and m.group(1) not in keep]
        for p in left + [os.path.join(pool, "candidates", name), os.path.join(pool, "quarantine", name)]:
            if os.path.isdir(p):
                shutil.rmtree(p)
            elif os.path.lexists(p):
                os.remove(p)
    shutil.rmtree(os.path.join(pool, "models", j["id"]), ignore_errors=True)
    # the work folder by name under this pool's rounds/: a pool copied or moved mid-round never
    # reaches back into the original
    shutil.rmtree(os.path.join(pool, "rounds", os.path.basename(j["work"])), ignore_errors=True)
    os.remove(jp)
    return f"round {j['id']}: killed before its decision; undone (batch {name} removed)"


def _apply(pool: str, d: dict) -> None:
    """The link switches of a committed decision; idempotent, so a rerun after a kill is safe."""
    if d.get("validation", {}).get("folder"):
        _link(os.path.join(pool, "validation"), d["validation"]["folder"])
    if d.get("promoted"):
        models = os.path.join(pool, "models")
        cur = current_model(pool)
        if cur != d["id"]:
            _link(os.path.join(models, "previous"), cur)
            _link(os.path.join(models, "current"), d["id"])
            _history(pool, {"event": "promote", "model": d["id"], "previous": cur})
    if d.get("cursor"):
        path = os.path.join(pool, "cursors.json")
        cur = _read_json(path, {})
        cur.update(d["cursor"])
        shards.atomic_write_json(path, cur)


def _history(pool: str, rec: dict) -> None:
    with open(os.path.join(pool, "models", "history.jsonl"), "a", encoding="utf-8") as f:
        f.write(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **rec}) + "\n")


# ------------------------------------------------------------------ --since

def select_since(pool: str, batch: list[str], since: str | None) -> tuple[list[str], dict]:
    """The log files of each --batch source newer than the cursor, and the cursor after them.
    `since` is `cursor` (the pool's cursor per source; everything on the first run) or an ISO
    time. A file counts by its modification time; files at the cursor's exact time that were
    taken already are listed with it, so a coarse clock never re-admits them."""
    if not since:
        return list(batch), {}
    path = os.path.join(pool, "cursors.json")
    cursors = _read_json(path, {})
    files, new = [], {}
    for src in batch:
        key = os.path.abspath(src)
        if since == "cursor":
            c = cursors.get(key, {"mtime_ns": -1, "seen": []})
        else:
            try:
                t = time.mktime(time.strptime(since.replace("Z", ""), "%Y-%m-%dT%H:%M:%S" if "T" in since
                                              else "%Y-%m-%d"))
            except ValueError:
                raise ConfigError(f"--since {since!r}: use `cursor` or a time like 2026-12-01T00:00:00") from None
            c = {"mtime_ns": int(t * 1e9), "seen": []}
        if os.path.isdir(src):
            cand = sorted(p for p in glob.glob(os.path.join(src, "**", "*"), recursive=True) if os.path.isfile(p))
        else:
            cand = sorted(glob.glob(src)) if any(ch in src for ch in "*?[") else [src]
        if not cand and not any(ch in src for ch in "*?["):
            raise ConfigError(f"--batch {src}: no such file or folder")
        taken = [(p, os.stat(p).st_mtime_ns) for p in cand
                 if os.stat(p).st_mtime_ns > c["mtime_ns"]
                 or (os.stat(p).st_mtime_ns == c["mtime_ns"] and os.path.abspath(p) not in c["seen"])]
        if taken:
            top = max(m for _, m in taken)
            seen = c["seen"] if top == c["mtime_ns"] else []
            new[key] = {"mtime_ns": top, "seen": sorted(set(seen) | {os.path.abspath(p) for p, m in taken
                                                                      if m == top})}
            files += [p for p, _ in taken]
    return files, new


# ------------------------------------------------------------------ evaluation

def _buckets() -> list[str]:
    return [f"{a}" if a == b else (f"{a}+" if b is None else f"{a}-{b}") for a, b in POSITIONS]


def pack_sets(sets: dict[str, str], out: str, tcfg) -> dict[str, str]:
    """Tokenise every validation set once per round (one conversation per row, so a turn's
    position in its conversation is its index in the row); both models read the same rows."""
    from trainer.pack import PackConfig, load_tokenizer, pack_folder

    tok = load_tokenizer(tcfg.model)
    packed = {}
    for name, folder in sets.items():
        dest = os.path.join(out, name)
        m = pack_folder(folder, dest, PackConfig(model=tcfg.model, template=tcfg.template, max_len=tcfg.max_len,
                                                 packing=False), tokenizer=tok)
        if m["rows"]:
            packed[name] = dest
    return packed


def evaluate_model(tcfg, init_from: str | None, packed: dict[str, str], batch: int) -> dict:
    """Per set: turn-mean loss (docs/design.md#loss 4.a), token-mean loss, and the turn mean
    per turn position; a set whose loss is not finite reports None with `finite: false`."""
    import torch

    from trainer.data import PackedData, collate
    from trainer.loss import per_turn_sums, token_losses
    from trainer.pack import load_tokenizer
    from trainer.train import TrainConfig, build_model

    tok = load_tokenizer(tcfg.model)
    pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    c = TrainConfig(**{**dataclasses.asdict(tcfg), "init_from": init_from})
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = build_model(c, len(tok)).to(dev).eval()
    names = _buckets()
    out = {}
    with torch.no_grad():
        for name, folder in packed.items():
            data = PackedData(folder)
            acc = np.zeros(4 + 2 * len(names))  # sum l/n, T, sum l, sum n, per position (sum l/n, count)
            for s in range(0, len(data), batch):
                rows = [data.row(i) for i in range(s, min(s + batch, len(data)))]
                mb = collate(rows, pad).to(dev)
                logits = model(input_ids=mb.input_ids, position_ids=mb.position_ids).logits
                l, n = per_turn_sums(token_losses(logits, mb.labels), mb.turn_ids[:, 1:], num_turns=mb.n_turns)
                l, n = l.double().cpu().numpy(), n.double().cpu().numpy()
                m = l / np.maximum(n, 1)
                pos = np.concatenate([np.arange(r["n_turns"]) + 1 for r in rows])
                acc[:4] += (m.sum(), len(m), l.sum(), n.sum())
                for k, (a, b) in enumerate(POSITIONS):
                    sel = (pos >= a) & (pos <= (b or pos.max(initial=0)))
                    acc[4 + 2 * k] += m[sel].sum()
                    acc[5 + 2 * k] += sel.sum()
            tm, km = acc[0] / max(acc[1], 1), acc[2] / max(acc[3], 1)
            finite = bool(np.isfinite(tm) and np.isfinite(km))
            out[name] = {"turn_mean": float(tm) if finite else None, "token_mean": float(km) if finite else None,
                         "finite": finite, "turns": int(acc[1]), "conversations": len(data),
                         "by_turn_position": {nm: (float(acc[4 + 2 * k] / acc[5 + 2 * k])
                                                   if acc[5 + 2 * k] and np.isfinite(acc[4 + 2 * k]) else None)
                                              for k, nm in enumerate(names)}}
    return out


def judge_models(tcfg, init_from: str | None, candidate: str, sets: dict[str, str], rc: RoundConfig,
                 out: str) -> dict:
    """Both models answer the last user turn of the first `judge_items` conversations of each
    judged set (greedy); `turnforge judge` scores the candidate's answer (A) and the current
    model's (B) pointwise and pairwise, with the set's own answer as the reference."""
    from trainer.pack import load_tokenizer
    from trainer.train import TrainConfig, build_model

    from .judge import run_judge
    from .synth.backends import HFBackend

    os.makedirs(out, exist_ok=True)
    if init_from is None:  # the base preset has no folder: save the weights the trainer started from
        init_from = os.path.join(out, "current_model")
        build_model(TrainConfig(**{**dataclasses.asdict(tcfg), "init_from": None}),
                    len(load_tokenizer(tcfg.model))).save_pretrained(init_from)
        load_tokenizer(tcfg.model).save_pretrained(init_from)
    items = []
    for name in rc.judge_sets or sorted(sets):
        if name not in sets:
            raise ConfigError(f"round.judge_sets: no fixed set {name!r}; sets: {sorted(sets)}")
        for r in shards.iter_records(sets[name]):
            msgs = [{"role": m["role"], "content": m["content"]} for m in r["messages"]]
            last = max((i for i, m in enumerate(msgs) if m["role"] == "user"), default=None)
            if last is None:
                continue
            ref = next((m["content"] for m in msgs[last + 1:] if m["role"] == "assistant"), None)
            items.append({"id": f"{name}/{r['id']}", "lang": r.get("lang"), "messages": msgs[:last + 1],
                          "reference": ref})
            if sum(it["id"].startswith(name + "/") for it in items) >= int(rc.judge_items):
                break
    import torch

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    answers = {}
    for label, path in (("candidate", candidate), ("current", init_from)):
        gen = HFBackend(path, device=dev).generate([it["messages"] for it in items], max_tokens=int(rc.judge_max_tokens))
        answers[label] = [getattr(g, "text", "").strip() for g in gen]
    # judge.py reads an empty answer_b as none; an empty reply is a (bad) answer, so it is shown as one
    empty = {k: sum(not a for a in v) for k, v in answers.items()}
    answers = {k: [a or "(no answer)" for a in v] for k, v in answers.items()}
    src = os.path.join(out, "items.jsonl")
    with open(src, "w", encoding="utf-8") as f:
        for it, a, b in zip(items, answers["candidate"], answers["current"]):
            f.write(json.dumps({"id": it["id"], "lang": it["lang"], "reference": it["reference"], "answer_b": b,
                                "messages": it["messages"] + [{"role": "assistant", "content": a}]},
                               ensure_ascii=False) + "\n")
    s = run_judge(src, out, {**rc.judge, "mode": "both"})
    pt, pw = s.get("pointwise") or {}, s.get("pairwise") or {}
    return {"items": len(items), "empty_answers": empty, "usability": {"candidate": (pt.get("a") or {}).get("usability"),
                                               "current": (pt.get("b") or {}).get("usability")},
            "win_rate": pw.get("win_rate_a"), "length_controlled_win_rate": (pw.get("length") or {}).get("length_controlled"),
            "position_consistency": pw.get("position_consistency"), "summary": "judge/summary.json"}


def gate(before: dict, after: dict, rc: RoundConfig) -> list[dict]:
    """One check per set and gated metric: the candidate's loss may exceed the current model's by
    at most max_regression (relative); a non-finite candidate loss always fails."""
    checks = []
    for name in sorted(after):
        for metric in rc.gate:
            b, a = before.get(name, {}).get(metric), after[name][metric]
            if a is None:
                checks.append({"name": f"{name}.{metric}", "before": b, "after": None, "change": None,
                               "limit": rc.max_regression, "passed": False, "detail": "candidate loss is not finite"})
                continue
            change = None if b is None or b == 0 else a / b - 1
            ok = b is None or change <= rc.max_regression
            checks.append({"name": f"{name}.{metric}", "before": b, "after": a,
                           "change": None if change is None else round(change, 6), "limit": rc.max_regression,
                           "passed": bool(ok), "detail": "" if b is not None else "current model's loss not finite"})
    return checks


# ------------------------------------------------------------------ the round

def _say(msg: str, out: TextIO | None) -> None:
    if out is not None:
        print(f"[round] {msg}", file=out, flush=True)


def _mix_params(cfg_yaml: dict, seed: int) -> dict:
    p = {k: v for k, v in (cfg_yaml.get("mix") or {}).items() if k not in ("name", "sources")}
    p.setdefault("seed", seed)
    return p


def _fit_domains(params: dict, present: set[str]) -> str | None:
    """A build config's mix names the domains of a whole corpus; one round's batch and replay
    hold some of them. Domain lists keep the present ones; a curriculum strategy left without
    specialist domains runs as multi_task this round. Returns what was changed, or None."""
    changed = []
    for key in ("specialist", "general"):
        v = params.get(key)
        if key == "specialist" and v is None and params.get("strategy") in ("mixed_sequential", "dmt"):
            v = "code,math"  # the mix stage's default
        if v is None:
            continue
        doms = [str(x).strip() for x in (v if isinstance(v, (list, tuple)) else str(v).split(",")) if str(x).strip()]
        kept = [dm for dm in doms if dm in present]
        if kept != doms:
            changed.append(f"{key} {doms} -> {kept}")
        params[key] = kept or None
    for key in ("weights", "tiers", "val_sizes"):
        if isinstance(params.get(key), dict):
            params[key] = {k: v for k, v in params[key].items() if k in present or k == LONG or "/" in k} or None
    if params.get("strategy") in ("mixed_sequential", "dmt") and not params.get("specialist"):
        changed.append(f"strategy {params['strategy']} -> multi_task (no specialist domain in this round's data)")
        params["strategy"] = "multi_task"
        for key in ("specialist", "general", "replay", "k"):
            params.pop(key, None)
    return "; ".join(changed) or None


def _domains(folder: str) -> set[str]:
    import pyarrow.compute as pc

    out: set[str] = set()
    for b in shards.iter_batches(folder):
        out |= set(pc.unique(b.column("domain")).to_pylist())
    return out


def _rows(folder: str) -> int:
    return int(shards.load_manifest(folder).get("counts", {}).get("records_out", 0)) if shards.is_complete(folder) else 0


def _frozen(pool: str) -> dict[str, str]:
    """The pool's fixed validation sets: {name: folder}."""
    v = os.path.join(pool, "validation")
    if not os.path.isdir(v):
        return {}
    return {os.path.basename(d): d for d in sorted(glob.glob(os.path.join(v, "*")))
            if shards.is_complete(d)}


def run_round(pool: str, config: str, train_yaml: str, batch: list[str], *, name: str | None = None,
              sets: dict | None = None, since: str | None = None, source: str | None = None,
              domain: str | None = None, workers: int = 1, progress: bool = True, engine: str | None = None,
              ray_address: str | None = None, log: TextIO | None = sys.stderr) -> dict:
    """One round (module doc); returns its decision (`promoted`, `verdict`)."""
    from trainer.train import train

    from .stages.mix import exclude_near, run_mix

    adm_sets, train_sets, rnd_sets = split_sets(sets or {})
    cfg_yaml = load_config(config)
    rc = make_config(RoundConfig, {**(cfg_yaml.get("round") or {}), **rnd_sets})
    tcfg = train_config(train_yaml, train_sets)
    name = name or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    if not flywheel.NAME.match(name):
        raise ConfigError(f"round name {name!r}: use letters, digits, '.', '_' or '-'")
    rounds = os.path.join(pool, "rounds")
    with _round_lock(pool):
        done = recover(pool)
        if done:
            _say(done, log)
        done_ids = _round_ids(pool)
        if any(r.split("-", 1)[1] == name for r in done_ids):
            raise ConfigError(f"round {name!r} exists in {rounds}; choose another --name")
        meta = flywheel.load_pool(pool)
        before = [b["id"] for b in meta["batches"]]
        if any(b["name"] == name for b in meta["batches"]) or os.path.exists(os.path.join(pool, "quarantine", name)):
            raise ConfigError(f"batch {name!r} is already in the pool {pool} (or its quarantine); choose another --name")
        files, cursor = select_since(pool, batch, since)
        if since and not files:
            return {"id": None, "name": name, "promoted": False, "verdict": "nothing_new",
                    "detail": f"no log file newer than the cursor (--since {since})"}
        os.makedirs(rounds, exist_ok=True)
        rid = f"{max((int(r.split('-', 1)[0]) for r in done_ids), default=0) + 1:04d}-{name}"
        work = os.path.join(rounds, f".{rid}.work")
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)
        parent = current_model(pool)
        shards.atomic_write_json(_journal_path(pool), {"id": rid, "name": name, "work": os.path.basename(work), "parent": parent,
                                                       "batches_before": before,
                                                       "pool_existed": os.path.exists(os.path.join(pool, "pool.json"))})
        d: dict = {"id": rid, "name": name, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "batch": files,
                   "since": since, "parent_model": f"models/{parent}" if parent else f"base:{tcfg.init_from or tcfg.model}",
                   "config": os.path.abspath(config), "train_config": os.path.abspath(train_yaml),
                   "settings": dataclasses.asdict(rc), "train_overrides": train_sets, "cursor": cursor}
        try:
            _say(f"{rid}: admitting {len(files)} input(s)", log)
            t0 = time.perf_counter()
            d["timings_s"] = tm = {}
            adm = flywheel.admit(config, files, pool, name=name, sets=adm_sets, source=source, domain=domain,
                                 workers=workers, progress=progress, engine=engine, ray_address=ray_address)
            tm["admit"] = round(time.perf_counter() - t0, 2)
            d["data_gate"] = {k: adm.get(k) for k in ("admitted", "failed", "folder", "counts", "checks")}
            if not adm["admitted"]:
                d.update(promoted=False, verdict="refused_data", eval_gate=None)
                return _commit(pool, work, d, log)
            _say(f"{rid}: admitted {adm['id']}", log)
            t0 = time.perf_counter()
            d.update(_prepare_data(pool, work, adm, cfg_yaml, rc, exclude_near, run_mix, log, progress))
            tm["replay_filter_mix"] = round(time.perf_counter() - t0, 2)
            _say(f"{rid}: training from {d['parent_model']}", log)
            init = os.path.join(pool, "models", parent) if parent else tcfg.init_from
            tc = dataclasses.replace(tcfg, data=os.path.join(work, "mix", "final"), out=os.path.join(work, "train"),
                                     init_from=init, resume=False)
            t0 = time.perf_counter()
            r = train(tc, progress=progress)
            tm["train"] = round(time.perf_counter() - t0, 2)
            d["train"] = {"steps": r["step"], "last_loss": r["loss"], "init_from": init, "lr": tc.lr,
                          "max_steps": tc.max_steps}
            _say(f"{rid}: trained {r['step']} steps (last loss {r['loss']}); evaluating", log)
            t0 = time.perf_counter()
            sets_now = _frozen_after(pool, work)
            packed = pack_sets(sets_now, os.path.join(work, "eval_packed"), tc)
            ev_before = evaluate_model(tc, init, packed, rc.eval_batch)
            ev_after = evaluate_model(tc, r["final"], packed, rc.eval_batch)
            shards.atomic_write_json(os.path.join(work, "eval.json"), {"before": ev_before, "after": ev_after})
            checks = gate(ev_before, ev_after, rc)
            tm["evaluate"] = round(time.perf_counter() - t0, 2)
            if rc.judge is not None:
                _say(f"{rid}: judging answers of both models", log)
                j = judge_models(tc, init, r["final"], sets_now, rc, os.path.join(work, "judge"))
                d["judge"] = j
                tm["judge"] = round(time.perf_counter() - t0 - tm["evaluate"], 2)
                if rc.min_win_rate is not None:
                    w = j["win_rate"]
                    checks.append({"name": "judge.win_rate", "before": None, "after": w, "change": None,
                                   "limit": rc.min_win_rate, "passed": w is not None and w >= rc.min_win_rate,
                                   "detail": "candidate's pairwise win rate against the current model (>= limit)"})
            ok = bool(checks) and all(c["passed"] for c in checks)
            d["eval"] = {s: {"before": ev_before.get(s), "after": ev_after[s]} for s in ev_after}
            d["eval_gate"] = {"passed": ok, "max_regression": rc.max_regression, "checks": checks,
                              "failed": [c["name"] for c in checks if not c["passed"]]}
            d.update(promoted=ok, verdict="promoted" if ok else "refused_eval")
            shutil.rmtree(os.path.join(work, "eval_packed"), ignore_errors=True)
            shutil.rmtree(os.path.join(work, "train", "packed"), ignore_errors=True)
            if ok:
                os.makedirs(os.path.join(pool, "models"), exist_ok=True)
                os.replace(r["final"], os.path.join(pool, "models", rid))
                d["model"] = f"models/{rid}"
            elif not rc.keep_refused_model:
                shutil.rmtree(r["final"], ignore_errors=True)
            return _commit(pool, work, d, log)
        except BaseException:  # an error or Ctrl-C: the pool goes back to how it was (or the commit completes)
            recover(pool)
            raise


def _prepare_data(pool, work, adm, cfg_yaml, rc, exclude_near, run_mix, log, progress) -> dict:
    """Replay sample, leakage filter against the fixed sets, the mix, and the new validation
    version (the fixed sets plus those of domains never seen before)."""
    seed = int(cfg_yaml.get("seed", 0))
    meta = flywheel.load_pool(pool)
    new = os.path.join(pool, adm["folder"])
    old = [os.path.join(pool, b["folder"]) for b in meta["batches"] if b["name"] != adm["name"]]
    frozen = _frozen(pool)
    staged = os.path.join(work, "validation")
    os.makedirs(staged)
    first = not frozen
    if first:  # red-line sets: fixed with the first round's sets, never trained on
        for path in rc.redline or sorted(glob.glob(os.path.join(REDLINE_DIR, "*.jsonl"))):
            sname = "redline_" + os.path.splitext(os.path.basename(path))[0]
            runner.run_stage("extract", {"domain": sname}, path, os.path.join(staged, sname), progress=False)
    else:  # the fixed sets carry over unchanged: hard links, no copies
        for sname, folder in frozen.items():
            shutil.copytree(folder, os.path.join(staged, sname), copy_function=os.link)
    info: dict = {"replay": None}
    srcs = [new]
    n_new = int(adm["counts"]["conversations"])
    if old and rc.replay > 0:
        want = max(1, round(rc.replay / (1 - rc.replay) * n_new))
        pool_n = sum(_rows(o) for o in old)
        want = min(want, pool_n)
        run_mix([{"path": o} for o in old], os.path.join(work, "replay"),
                {"strategy": "multi_task", "total": want, "val_size": 0, "long_size": 0, "seed": seed + len(old)},
                progress=False)
        srcs.append(os.path.join(work, "replay", "final", "stage-1"))
        info["replay"] = {"share": rc.replay, "records": want, "from": [os.path.relpath(o, pool) for o in old]}
    fixed = {s: os.path.join(staged, s) for s in sorted(os.listdir(staged))}
    outs = [os.path.join(work, "filtered", f"{i}-{os.path.basename(s)}") for i, s in enumerate(srcs)]
    rep = exclude_near(list(fixed.values()), srcs, outs, {"seed": seed})
    info["leakage"] = {"excluded": dict(zip(["new", "replay"], (r["excluded_leakage"] for r in rep["sources"].values()))),
                       "examples": rep["examples"]}
    use = [o for o in outs if _rows(o)]
    if not use:
        raise ConfigError(f"round: nothing left to train on after the leakage check against {sorted(fixed)}")
    params = _mix_params(cfg_yaml, seed + len(old))
    present = set().union(*(_domains(o) for o in use))
    # the config's per-domain sizes for the domains this batch has (a batch need not hold them all)
    sizes = {k: v for k, v in (params.get("val_sizes") or {}).items() if k in present or (first and k == LONG)}
    if not first:  # sets are held out only for domains the pool has no set for; the long split is fixed
        sizes.update({dm: 0 for dm in present if dm in fixed})
        params["long_size"] = 0
    params["val_sizes"] = sizes or None
    note = _fit_domains(params, present)
    _say(f"mixing {', '.join(os.path.relpath(u, work) for u in use)}", log)
    m = run_mix(use, os.path.join(work, "mix"), params, progress=False)
    grown = []
    vdir = os.path.join(work, "mix", "final", "validation")
    for sname in sorted(os.listdir(vdir)) if os.path.isdir(vdir) else []:
        if sname not in fixed:  # a new domain's set (or the first round's sets) joins the fixed ones
            os.replace(os.path.join(vdir, sname), os.path.join(staged, sname))
            grown.append(sname)
    shutil.rmtree(vdir, ignore_errors=True)  # sets of known domains were not held out; nothing else is there
    info["mix"] = {"strategy": m["strategy"], "stages": [{"stage": s["stage"], "total": s["total"]} for s in m["stages"]],
                   "domains": sorted(present), **({"note": note} if note else {})}
    info["validation"] = {"sets": sorted(os.listdir(staged)), "added": sorted(set(os.listdir(staged)) - set(frozen)),
                          "folder": os.path.join("rounds", os.path.basename(work)[1:-5], "validation")
                          if (first or grown) else None}
    return info


def _frozen_after(pool: str, work: str) -> dict[str, str]:
    staged = os.path.join(work, "validation")
    return {s: os.path.join(staged, s) for s in sorted(os.listdir(staged)) if shards.is_complete(os.path.join(staged, s))}


def _commit(pool: str, work: str, d: dict, log: TextIO | None) -> dict:
    """Write the decision, rename the work folder into place (the commit point), then switch
    the links (docs/flywheel.md#a-killed-round)."""
    final = os.path.join(pool, "rounds", d["id"])
    v = d.get("validation") or {}
    if not v.get("folder"):
        shutil.rmtree(os.path.join(work, "validation"), ignore_errors=True)  # unchanged: the old version stays
    shards.atomic_write_json(os.path.join(work, "decision.json"), d)
    os.replace(work, final)
    _apply(pool, d)
    os.remove(_journal_path(pool))
    _say(f"{d['id']}: {d['verdict']}", log)
    return d


# ------------------------------------------------------------------ rollback and listing

def rollback(pool: str) -> dict:
    """models/current back to models/previous; previous becomes that model's own parent when it
    was a promoted model still on disk, else none."""
    with _round_lock(pool):
        recover(pool)
        models = os.path.join(pool, "models")
        cur, prev = current_model(pool), _target(os.path.join(models, "previous"))
        if not prev:
            raise ConfigError(f"{pool}: no previous promoted model to roll back to (current: {cur or 'base'})")
        prev = os.path.basename(prev)
        dp = os.path.join(pool, "rounds", prev, "decision.json")
        grand = None
        if os.path.exists(dp):
            pm = _read_json(dp)["parent_model"]
            grand = pm.split("/", 1)[1] if pm.startswith("models/") and os.path.isdir(os.path.join(pool, pm)) else None
        _link(os.path.join(models, "current"), prev)
        _link(os.path.join(models, "previous"), grand)
        _history(pool, {"event": "rollback", "model": prev, "from": cur})
        return {"current": prev, "previous": grand, "from": cur}


def list_rounds(pool: str, out: TextIO) -> None:
    if not os.path.isdir(pool):
        raise ConfigError(f"{pool}: no such pool")
    with _round_lock(pool, wait=False) as got:
        note = recover(pool) if got else "a round is in flight"
    cur = current_model(pool)
    prev = _target(os.path.join(pool, "models", "previous"))
    print(f"pool {pool}: current model {('models/' + cur) if cur else 'base (the train config model)'}"
          + (f", previous models/{os.path.basename(prev)}" if prev else ""), file=out)
    if note:
        print(f"  note: {note}", file=out)
    for d in sorted(glob.glob(os.path.join(pool, "rounds", "[0-9]*", "decision.json"))):
        r = _read_json(d)
        g = r.get("eval_gate") or {}
        worst = max((c["change"] for c in g.get("checks", []) if c.get("change") is not None), default=None)
        print(f"  {r['id']:<28} {r['time']:<25} {r['verdict']:<13} parent={r['parent_model']:<24}"
              + (f" worst_change={worst:+.4f}" if worst is not None else "")
              + (f" failed={','.join(g.get('failed') or (r.get('data_gate') or {}).get('failed') or [])}"
                 if not r["promoted"] else ""), file=out)
    sets = _frozen(pool)
    if sets:
        print(f"  validation sets: {', '.join(sets)}", file=out)


def print_decision(d: dict, out: TextIO) -> None:
    if d.get("id") is None:
        print(f"round: {d['detail']}", file=out)
        return
    print(f"round {d['id']}: {d['verdict'].upper()} (parent {d['parent_model']})", file=out)
    if d["verdict"] == "refused_data":
        print(f"  data gate failed: {', '.join(d['data_gate']['failed'])}", file=out)
        return
    for c in d["eval_gate"]["checks"]:
        b = "-" if c["before"] is None else f"{c['before']:.4f}"
        a = "nan" if c["after"] is None else f"{c['after']:.4f}"
        ch = "" if c["change"] is None else f"{c['change']:+.2%}"
        print(f"  {'pass' if c['passed'] else 'FAIL'}  {c['name']:<36} {b:>9} -> {a:>9} {ch:>9}", file=out)
    if d["promoted"]:
        print(f"  models/current -> {d['model']}", file=out)
