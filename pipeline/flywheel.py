"""Data flywheel: admit a new log batch into the training pool only past offline
checks and red lines.

`turnforge admit` builds the batch with a build config (its inputs replaced by the batch, its
`mix:` dropped: mixing is for training time) into POOL/candidates/<name>/, measures every
check on the last stage folder and compares it with its limit (`flywheel:` section of the
config, then `--set`). All pass: the shard folder becomes POOL/batches/NNNN-<name>/ (a normal
shard folder for `turnforge mix --in` and the trainer), its MinHash signatures go to
POOL/signatures/NNNN-<name>.npz for later novelty checks, and POOL/pool.json gets an entry
with every check. Any fails: the candidate moves to POOL/quarantine/<name>/ with decision.json,
and nothing enters batches/.

An admission is all or nothing (docs/integrity.md): one run per pool (POOL/.turnforge.lock);
the batch is prepared under hidden names, then a journal (POOL/.journal.json) records the
commit's steps before the first, so a run killed anywhere is finished by the next one.

    POOL/pool.json                     admitted batches (name, time, sources, counts, checks)
    POOL/batches/NNNN-<name>/          data/*.arrow, manifest.json, _SUCCESS
    POOL/signatures/NNNN-<name>.npz    MinHash signatures of its conversations
    POOL/candidates/<name>/            the batch's build (config.yaml, stages/, report.html, decision.json)
    POOL/quarantine/<name>/            a refused batch's build with decision.json
    POOL/.journal.json                 only while an admission commits (or was killed doing so)
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import re
import shutil
import time
from typing import Any, TextIO

import numpy as np
import pyarrow.compute as pc
import yaml

from . import card, integrity, runner, shards
from .config import ConfigError, load_config, make_config
from .dedup.minhash import MinHasher, band_keys, choose_bands
from .stages.base import StageFailed
from .text import joined_text

NAME = re.compile(r"^[\w.-]+$")  # \w is Unicode: Chinese batch names are fine


@dataclasses.dataclass
class FlywheelConfig:
    max_residual_pii: int = 0          # compliance: scan_folder findings in the candidate output
    max_quality_reject: float = 0.2    # share of conversations the quality stage rejected
    max_pseudo_share: float = 0.5      # topic stage: pseudo multi-turn share before its policy
    min_mean_turns: float = 1.0        # multi-turn consistency: mean turns per conversation
    max_pool_overlap: float = 0.5      # novelty: share of conversations near-duplicating the pool
    near_dup_jaccard: float = 0.8      # estimated Jaccard that counts as a near duplicate
    max_refusal_share: float = 0.3     # safety: share of conversations with a refusal / AI boilerplate
    min_conversations: int = 1         # size
    # MinHash settings of the pool; fixed when the pool is created (pool.json wins afterwards),
    # because signatures made with other settings cannot be compared.
    num_perm: int = 128
    seed: int = 1
    n_char: int = 3
    n_word: int = 2

    def check(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ConfigError(f"flywheel.{f.name}: {v!r} is not a number")


SET_PREFIXES = ("flywheel.", "red_lines.")


def split_sets(sets: dict[str, Any]) -> tuple[dict, dict]:
    """`--set` pairs -> (flywheel settings, stage overrides). `max_pool_overlap=0.2`,
    `flywheel.max_pool_overlap=0.2` and `red_lines.max_pool_overlap=0.2` set a limit;
    `dedup.threshold=0.6` overrides a stage setting as with `turnforge build`."""
    fly, stages = {}, {}
    for k, v in sets.items():
        pre = next((p for p in SET_PREFIXES if k.startswith(p)), None)
        if pre or "." not in k:
            fly[k[len(pre):] if pre else k] = v
        else:
            stage, _, key = k.partition(".")
            stages.setdefault(stage, {})[key] = v
    return fly, stages


def _check(name: str, value, limit, op: str, detail: str = "", skipped: bool = False) -> dict:
    if skipped:
        return {"name": name, "value": None, "limit": limit, "op": op, "passed": True,
                "detail": detail or "not measured (stage not in the config)"}
    ok = value <= limit if op == "<=" else value >= limit
    return {"name": name, "value": value, "limit": limit, "op": op, "passed": bool(ok), "detail": detail}


# ------------------------------------------------------------------ measuring a candidate

def batch_stats(folder: str, mh: MinHasher) -> dict:
    """One pass over a shard folder: conversations, messages, turns, refusals and the MinHash
    signature of every conversation (the text dedup compares: messages joined by newlines)."""
    from .quality.signals import REFUSAL

    n = n_msgs = turns = refusals = 0
    sigs = []
    for b in shards.iter_batches(folder):
        msgs = b.column("messages")
        offsets = msgs.offsets.to_numpy()
        flat = msgs.flatten()
        seg = np.repeat(np.arange(b.num_rows), np.diff(offsets))
        turn = pc.struct_field(flat, "turn").to_numpy(zero_copy_only=False).astype(np.int64)
        role = pc.struct_field(flat, "role")
        content = pc.struct_field(flat, "content")
        per_turns = np.full(b.num_rows, -1, dtype=np.int64)
        np.maximum.at(per_turns, seg, turn)
        # the quality module's refusal / AI-boilerplate cue, on assistant messages (zh and en)
        hit = (pc.equal(role, "assistant").to_numpy(zero_copy_only=False)
               & pc.match_substring_regex(content, REFUSAL, ignore_case=True).to_numpy(zero_copy_only=False))
        refusals += int((np.bincount(seg[hit], minlength=b.num_rows) > 0).sum())
        n += b.num_rows
        n_msgs += len(flat)
        turns += int((per_turns + 1).sum())
        sigs.append(mh.signatures(joined_text(msgs).to_pylist(), b.column("lang").to_pylist()))
    sig = np.concatenate(sigs) if sigs else np.zeros((0, mh.num_perm), np.uint32)
    return {"conversations": n, "messages": n_msgs, "turns": turns, "refusals": refusals, "signatures": sig}


def pool_overlap(cand: np.ndarray, pool: np.ndarray, threshold: float, max_bucket: int = 64) -> np.ndarray:
    """Per candidate row: does some pool row have estimated Jaccard >= threshold? Band LSH
    (bands chosen for >= 99% recall just under the threshold), then each candidate pair is
    verified on the full signatures. A bucket shared with more than `max_bucket` pool rows is
    checked against its first `max_bucket` only (near-identical boilerplate), which bounds the
    work per candidate."""
    hit = np.zeros(len(cand), dtype=bool)
    if not len(cand) or not len(pool):
        return hit
    b, r = choose_bands(cand.shape[1], threshold)
    ck, pk = band_keys(cand, b, r), band_keys(pool, b, r)
    for j in range(b):
        order = np.argsort(pk[:, j], kind="stable")
        sk = pk[order, j]
        lo = np.searchsorted(sk, ck[:, j], "left")
        hi = np.minimum(np.searchsorted(sk, ck[:, j], "right"), lo + max_bucket)
        todo = np.flatnonzero((hi > lo) & ~hit)
        if not len(todo):
            continue
        cnt = hi[todo] - lo[todo]
        ci = np.repeat(todo, cnt)
        pos = np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt) + np.repeat(lo[todo], cnt)
        est = (cand[ci] == pool[order[pos]]).mean(axis=1)
        hit[np.unique(ci[est >= threshold])] = True
    return hit


def run_checks(out: str, manifest: dict, stats: dict, overlap: np.ndarray, cfg: FlywheelConfig,
               final: str) -> list[dict]:
    """Every offline check and red line of a built candidate, each with value, limit and verdict."""
    from .scan import scan_folder

    n = stats["conversations"]
    checks = [_check("size", n, cfg.min_conversations, ">=", "conversations in the candidate output")]
    buf = io.StringIO()
    found = scan_folder(final, buf, limit=0)
    checks.append(_check("compliance", found, cfg.max_residual_pii, "<=",
                         "PII findings of `turnforge scan` on the output: " + buf.getvalue().strip().split(": ", 1)[-1]))
    q = next((f for f in manifest["funnel"] if f["stage"] == "quality"), None)
    checks.append(_check("quality", round(q["rejected_total"] / q["in"], 4) if q and q["in"] else 0.0,
                         cfg.max_quality_reject, "<=", "share of conversations the quality stage rejected",
                         skipped=q is None))
    t = next((f for f in manifest["funnel"] if f["stage"] == "topic"), None)
    pseudo = shards.load_manifest(os.path.join(out, t["folder"])).get("topic", {}).get("pseudo_share_before") \
        if t else None
    checks.append(_check("consistency_pseudo_share", round(pseudo or 0.0, 4), cfg.max_pseudo_share, "<=",
                         "topic stage: pseudo multi-turn share before its policy", skipped=t is None))
    checks.append(_check("consistency_mean_turns", round(stats["turns"] / n, 4) if n else 0.0,
                         cfg.min_mean_turns, ">=", "mean turns per conversation"))
    checks.append(_check("novelty", round(float(overlap.mean()), 4) if n else 0.0, cfg.max_pool_overlap, "<=",
                         f"share of conversations with MinHash Jaccard >= {cfg.near_dup_jaccard} to one in the pool "
                         f"({int(overlap.sum())} of {n})"))
    checks.append(_check("safety", round(stats["refusals"] / n, 4) if n else 0.0, cfg.max_refusal_share, "<=",
                         "share of conversations with an assistant refusal or AI boilerplate"))
    return checks


# ------------------------------------------------------------------ the pool

def load_pool(pool: str) -> dict:
    p = os.path.join(pool, "pool.json")
    if not os.path.exists(p):
        return {"batches": []}
    with open(p, encoding="utf-8") as f:
        return json.load(f)


def pool_novelty(cand: np.ndarray, pool: str, meta: dict, threshold: float) -> np.ndarray:
    """`pool_overlap` against every admitted batch, one batch's signatures at a time: memory is
    the candidate's signatures plus the largest admitted batch, however large the pool grows."""
    hit = np.zeros(len(cand), dtype=bool)
    for b in meta["batches"]:
        with np.load(os.path.join(pool, b["signatures"])) as z:
            hit |= pool_overlap(cand, z["signatures"], threshold)
    return hit


@contextlib.contextmanager
def locked(pool: str, what: str = "admit"):
    """One writer per pool (numbering and pool.json are read-modify-write), on a filesystem
    several machines may share; an admission a kill interrupted is finished first. Yields what
    that recovery finished (its decision) or None."""
    with integrity.FolderLock(pool, what):
        yield recover(pool)


def journal(pool: str) -> integrity.Journal:
    return integrity.Journal(pool)


def recover(pool: str) -> dict | None:
    """Finish the commit a journal records (every step is idempotent); returns its decision."""
    plan = journal(pool).pending()
    if plan is None:
        return None
    if plan.get("op") != "admit":
        raise ConfigError(f"{journal(pool).path}: an unfinished {plan.get('op')!r} this turnforge cannot finish")
    _commit(pool, plan)
    return plan["decision"]


def _commit(pool: str, plan: dict) -> None:
    """The admission's commit, in the journal's order: the prepared batch folder takes its
    name, the candidate records its decision, pool.json lists the batch (the point from which
    readers see it), and the journal goes."""
    src, dest = os.path.join(pool, plan["prepared"]), os.path.join(pool, plan["decision"]["folder"])
    if not os.path.exists(dest) and not os.path.exists(src):
        raise ConfigError(f"{journal(pool).path}: the prepared batch {src} is gone; "
                          f"delete the journal and admit {plan['decision']['name']!r} again")
    integrity.move(src, dest)
    shards.atomic_write_json(os.path.join(pool, plan["candidate"], "decision.json"), plan["decision"])
    shards.atomic_write_json(os.path.join(pool, "pool.json"), plan["pool"])
    journal(pool).done()


def derived_config(config_path: str, batch: list[str], source: str | None, domain: str | None) -> dict:
    """The build config with its inputs replaced by the batch and its mix dropped. A batch path
    the config already lists keeps that input's settings (source, domain, fields, format)."""
    cfg = load_config(config_path)
    cfg.pop("mix", None)
    if not cfg.get("stages"):
        raise ConfigError(f"{config_path}: admit needs `stages:` (its mix is skipped)")
    known = {os.path.abspath(i["path"]): i for i in cfg.get("inputs") or [] if isinstance(i, dict) and "path" in i}
    inputs = []
    for p in batch:
        spec = dict(known.get(os.path.abspath(p), {}))
        spec["path"] = os.path.abspath(p)
        if source or "source" not in spec:
            spec["source"] = source or "flywheel"
        if domain or "domain" not in spec:
            spec["domain"] = domain or "general"
        inputs.append(spec)
    cfg["inputs"] = inputs
    return cfg


def admit(config_path: str, batch: list[str], pool: str, *, name: str | None = None,
          sets: dict | None = None, source: str | None = None, domain: str | None = None,
          workers: int = 1, progress: bool = True, engine: str | None = None, ray_address: str | None = None) -> dict:
    """Build, check and admit or quarantine one batch; returns the decision."""
    for p in batch:
        if not os.path.exists(p) and not any(ch in p for ch in "*?["):
            raise ConfigError(f"--batch {p}: no such file or folder")
    name = name or os.path.splitext(os.path.basename(os.path.normpath(batch[0])))[0]
    if not NAME.match(name):
        raise ConfigError(f"batch name {name!r}: use letters, digits, '.', '_' or '-'")
    fly_sets, overrides = split_sets(sets or {})
    cfg_yaml = load_config(config_path)
    cfg = make_config(FlywheelConfig, {**(cfg_yaml.get("flywheel") or {}), **fly_sets})
    with locked(pool) as finished:
        meta = load_pool(pool)
        if finished is not None and finished["name"] == name:
            return finished  # this very admission, killed while committing, is now complete
        if any(b["name"] == name for b in meta["batches"]):
            raise ConfigError(f"batch {name!r} is already in the pool {pool}; admit new logs under a new name")
        if os.path.exists(os.path.join(pool, "quarantine", name)):
            raise ConfigError(f"batch {name!r} was refused before ({os.path.join(pool, 'quarantine', name)}); "
                              "delete that folder to try it again")
        # The pool's MinHash settings win over the config's: stored signatures must stay comparable.
        mh_settings = meta.get("minhash") or {k: getattr(cfg, k) for k in ("num_perm", "seed", "n_char", "n_word")}
        mh = MinHasher(**mh_settings)
        out = os.path.join(pool, "candidates", name)
        os.makedirs(out, exist_ok=True)
        derived = derived_config(config_path, batch, source, domain)
        derived.pop("flywheel", None)
        cfg_path = os.path.join(out, "config.yaml")
        shards.atomic_write_bytes(cfg_path, yaml.safe_dump(derived, allow_unicode=True, sort_keys=False).encode())
        decision = {"name": name, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "sources": derived["inputs"],
                    "config": os.path.abspath(config_path), "limits": dataclasses.asdict(cfg)}
        try:
            manifest = runner.build(cfg_path, out, workers=workers, progress=progress, overrides=overrides,
                                    engine=engine, ray_address=ray_address)
        except StageFailed as e:  # a stage's own red line (residual PII after anonymising)
            decision["checks"] = [{"name": "pipeline_red_line", "value": None, "limit": None, "op": "",
                                   "passed": False, "detail": str(e)}]
            return _refuse(pool, out, name, decision)
        final = os.path.join(out, manifest["last_stage"])
        stats = batch_stats(final, mh)
        overlap = pool_novelty(stats["signatures"], pool, meta, cfg.near_dup_jaccard)
        decision["checks"] = run_checks(out, manifest, stats, overlap, cfg, final)
        decision["counts"] = {k: stats[k] for k in ("conversations", "messages", "turns", "refusals")}
        decision["funnel"] = [{k: f[k] for k in ("stage", "in", "kept", "rejected_total")} for f in manifest["funnel"]]
        if not all(c["passed"] for c in decision["checks"]):
            return _refuse(pool, out, name, decision)
        return _accept(pool, out, final, name, decision, stats["signatures"], meta, mh_settings)


def _refuse(pool: str, out: str, name: str, decision: dict) -> dict:
    q = os.path.join(pool, "quarantine", name)
    decision["admitted"] = False
    decision["failed"] = [c["name"] for c in decision["checks"] if not c["passed"]]
    decision["folder"] = os.path.relpath(q, pool)
    shards.atomic_write_json(os.path.join(out, "decision.json"), decision)
    os.makedirs(os.path.dirname(q), exist_ok=True)
    integrity.replace(out, q)  # one rename: a kill before it leaves a candidate the rerun refuses again
    return decision


def _accept(pool: str, out: str, final: str, name: str, decision: dict, sig: np.ndarray, meta: dict,
            mh_settings: dict) -> dict:
    """Prepare the batch under names no reader lists (nothing in the candidate is consumed, so
    a kill here only means preparing again), then commit through the journal."""
    bid = f"{len(meta['batches']) + 1:04d}-{name}"
    dest = os.path.join(pool, "batches", bid)
    tmp = os.path.join(pool, "batches", f".{bid}.prepared")
    for leftover in (dest, tmp):  # from a run killed before the journal: never listed in pool.json
        integrity.rmtree(leftover)
    os.makedirs(os.path.join(tmp, "data"))
    # data parts are hard-linked (no copy of a large batch, and the candidate stays a whole
    # build); rejected/ stays in the candidate only: it may hold raw text from stages before
    # pii, and training never reads it.
    for p in shards.verified_files(final):
        _link_or_copy(p, os.path.join(tmp, "data", os.path.basename(p)))
    m = shards.load_manifest(final)
    m["flywheel"] = {"batch": bid, "candidate": os.path.relpath(out, pool)}
    m["parts"] = {k: v for k, v in (m.get("parts") or {}).items() if k.startswith("data/")} or \
        shards.parts_info(tmp, ("data",))
    sig_rel = os.path.join("signatures", f"{bid}.npz")
    os.makedirs(os.path.join(pool, "signatures"), exist_ok=True)
    buf = io.BytesIO()  # listed by pool.json only after the commit: unseen by novelty checks until then
    np.savez_compressed(buf, signatures=sig, **{k: np.array(v) for k, v in mh_settings.items()})
    shards.atomic_write_bytes(os.path.join(pool, sig_rel), buf.getvalue(), f"admit {name}")
    card.write_card(tmp, m)  # load_dataset(POOL/batches/ID) like any shard folder
    shards.mark_complete(tmp, m)
    decision.update(admitted=True, failed=[], folder=os.path.relpath(dest, pool), signatures=sig_rel, id=bid)
    after = {**meta, "minhash": meta.get("minhash") or mh_settings,
             "batches": meta["batches"] + [{k: decision[k] for k in ("id", "name", "time", "folder", "signatures",
                                                                     "sources", "config", "counts", "funnel",
                                                                     "checks")}]}
    plan = {"op": "admit", "prepared": os.path.relpath(tmp, pool), "candidate": os.path.relpath(out, pool),
            "decision": decision, "pool": after}
    journal(pool).begin(plan)
    _commit(pool, plan)
    return decision


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # a filesystem without hard links
        shutil.copy2(src, dst)
    integrity.file_op()


# ------------------------------------------------------------------ printing

def print_decision(d: dict, out: TextIO) -> None:
    print(f"batch {d['name']}: {'ADMITTED -> ' if d['admitted'] else 'REFUSED -> '}{d['folder']}", file=out)
    for c in d["checks"]:
        v = "-" if c["value"] is None else c["value"]
        lim = "" if c["limit"] is None else f"{c['op']} {c['limit']}"
        print(f"  {'pass' if c['passed'] else 'FAIL'}  {c['name']:<26} {v!s:>10} {lim:<10} {c['detail']}", file=out)


def print_pool(pool: str, out: TextIO) -> None:
    """Admitted batches with totals, refused ones in quarantine, and an admission a kill left
    half committed. A pool with no admission yet (only refusals, or only candidates) is a pool."""
    if not any(os.path.exists(os.path.join(pool, x)) for x in ("pool.json", "batches", "quarantine", "candidates",
                                                                ".journal.json")):
        raise ConfigError(f"{pool}: not a pool (no pool.json, batches/, quarantine/ nor candidates/)")
    meta = load_pool(pool)
    print(f"pool {pool}: {len(meta['batches'])} admitted batches", file=out)
    tot = {"conversations": 0, "messages": 0, "turns": 0}
    for b in meta["batches"]:
        c = b["counts"]
        for k in tot:
            tot[k] += c[k]
        print(f"  {b['folder']:<36} {b['time']:<25} conversations={c['conversations']:<7} "
              f"messages={c['messages']:<8} checks={sum(x['passed'] for x in b['checks'])}/{len(b['checks'])}", file=out)
    print(f"  total: conversations={tot['conversations']} messages={tot['messages']} turns={tot['turns']}", file=out)
    q = os.path.join(pool, "quarantine")
    refused = sorted(os.listdir(q)) if os.path.isdir(q) else []
    print(f"quarantine: {len(refused)} refused batches", file=out)
    for r in refused:
        try:
            with open(os.path.join(q, r, "decision.json"), encoding="utf-8") as f:
                failed = ", ".join(json.load(f).get("failed") or []) or "-"
        except (OSError, ValueError):
            failed = "? (no decision.json)"
        print(f"  quarantine/{r:<26} failed: {failed}", file=out)
    plan = journal(pool).pending()
    if plan is not None:
        print(f"interrupted: the admission of {plan.get('decision', {}).get('folder')} was killed while committing; "
              "the next `turnforge admit` into this pool finishes it", file=out)
