"""Mix stage: per-task validation sets, mixture sampling and the four SFT
strategies, from several shard folders into the folders a trainer runs in order.

    OUT/final/validation/<domain>/     held out before any mixing, never overlapping training
    OUT/final/validation/long_multiturn/
    OUT/final/stage-K/                 training order; DMT: OUT/final/stage-2/k=1_8/ ...
    OUT/final/mix_manifest.json        sources, hold-outs, every stage's realised share per source

It is multi-input and global (every quota depends on every source's size), so it is not a
per-part `Stage`; it runs as `run_mix` from `turnforge mix` and from a build's `mix` entry.
Map + reduce, as a distributed engine would run it:
 1. catalog (map): per record only small columns (domain, id, dedup cluster, turn count) into
    numpy arrays; no text is kept;
 2. validation (reduce): whole near-duplicate groups per domain (and a long multi-turn split);
    training records sharing a group with a validation record, or within MinHash Jaccard
    `leak_threshold` of one, are excluded from training (`excluded_leakage` in the manifest);
 3. plan (reduce): counts per source by largest remainder (pipeline/mixing/), rows sampled
    without replacement first, shuffled into training order;
 4. copy (map): rows taken by index with pyarrow per input part, scattered to position
    buckets, each bucket sorted and written: memory is one part plus one bucket.
A source is a shard folder with one domain: a folder given without a domain is split into
one source per `domain` value of its records. Mixing is sampling: records not drawn are not
rejected, they stay in their input folders.
"""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import math
import os
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import card, integrity, shards
from ..config import ConfigError, make_config
from ..mixing.plan import DEFAULT_SPECIALIST, STRATEGIES, Source, check_keys, holdout, make_sources, plan
from ..mixing.weights import MixError, parse_k
from ..schema import SCHEMA, with_stage
from ..text import joined_text


@dataclass
class MixConfig:
    strategy: str = "multi_task"  # multi_task | sequential | mixed_sequential | dmt
    # weights: auto = temperature when alpha is set, explicit when weights are, else proportional
    weighting: str = "auto"
    alpha: float | None = None  # temperature exponent a in [0, 1]
    weights: dict | None = None  # explicit: {source name or domain: weight}
    tiers: dict | None = None  # quality tier per source name or domain (0 best)
    decay: float = 0.5  # weight factor per tier below 0: p_i ~ base_i * decay^tier_i
    total: int | None = None  # records in a stage (multi_task, curriculum stages); default epochs * pool
    epochs: float = 1.0
    max_repeat: float = 4  # no record appears more often than this in one stage
    specialist: Any = DEFAULT_SPECIALIST  # domains (comma-separated or list)
    general: Any = None  # domains; default: every domain not specialist
    k: Any = None  # DMT ratios; default 1, 1/2, ..., 1/32
    replay: Any = None  # lambda: one value, or one per curriculum stage; mixed_sequential default 0.1
    curriculum: list | None = None  # sequential: [[domains of stage 1], [stage 2], ...] or dicts
    val_size: float = 0.02  # per domain: a fraction (< 1) or a number of records (>= 1)
    val_sizes: dict | None = None  # per-domain overrides
    val_max: int = 1000  # cap per validation set (0: none)
    long_turns: int = 8  # long multi-turn validation: conversations with >= long_turns turns
    long_size: float = 0.1  # of those conversations (fraction or records); 0: no long split
    leakage: str = "auto"  # clusters | minhash | auto (minhash unless one folder, every record clustered)
    leak_threshold: float = 0.5  # estimated Jaccard at which a training record is too close to validation
    num_perm: int = 128
    rows_per_part: int = 50_000
    seed: int = 0

    def check(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"mix.strategy: {self.strategy!r} not in {STRATEGIES}")
        if self.weighting not in ("auto", "proportional", "temperature", "explicit"):
            raise ConfigError(f"mix.weighting: {self.weighting!r} not in auto|proportional|temperature|explicit")
        if self.alpha is not None and not 0 <= float(self.alpha) <= 1:
            raise ConfigError(f"mix.alpha: {self.alpha} not in [0, 1]")
        if self.weighting == "temperature" and self.alpha is None:
            raise ConfigError("mix.alpha: weighting=temperature needs alpha in [0, 1]")
        if self.leakage not in ("auto", "clusters", "minhash"):
            raise ConfigError(f"mix.leakage: {self.leakage!r} not in auto|clusters|minhash")
        for name in ("epochs", "max_repeat", "decay", "leak_threshold"):
            if not float(getattr(self, name)) > 0:
                raise ConfigError(f"mix.{name}: must be > 0, got {getattr(self, name)}")
        if self.max_repeat < 1:
            raise ConfigError(f"mix.max_repeat: must be >= 1, got {self.max_repeat}")
        if self.total is not None and int(self.total) <= 0:
            raise ConfigError(f"mix.total: must be > 0, got {self.total}")
        if self.total is not None and self.strategy != "multi_task":
            raise ConfigError(f"mix.total: only for multi_task; {self.strategy} stages follow the data (epochs)"
                              + (", or give total per curriculum stage" if self.strategy == "sequential" else ""))
        if self.curriculum is not None and self.strategy != "sequential":
            raise ConfigError(f"mix.curriculum: only used by strategy sequential, not {self.strategy}")
        if self.k is not None and self.strategy != "dmt":
            raise ConfigError(f"mix.k: only used by strategy dmt, not {self.strategy}")
        try:
            parse_k(self.k)
        except MixError as e:
            raise ConfigError(f"mix.{e}") from None

    def scheme(self) -> str:
        if self.weighting != "auto":
            return self.weighting
        return "temperature" if self.alpha is not None else ("explicit" if self.weights else "proportional")


# ----------------------------------------------------------------------------- sources + catalog

class Catalog:
    """Small per-record columns of every input folder, as numpy arrays over global row numbers
    (folders, then parts, in order)."""

    def __init__(self, specs: list[dict]):
        self.folders: list[dict] = []
        self.files: list[str] = []
        file_lo, folder_of_file = [0], []
        domains, groups, turns, clustered, folder_rows = [], [], [], [], []
        for fi, spec in enumerate(specs):
            path = spec["path"]
            if not shards.is_complete(path):
                raise ConfigError(f"mix: source {path!r} is not a finished shard folder (_SUCCESS missing)")
            parts = shards.verified_files(path)  # set and sizes as its manifest says
            n0 = file_lo[-1]
            for p in parts:
                rows = 0
                with pa.memory_map(p) as src:  # only small columns are touched, text pages stay on disk
                    for b in pa.ipc.open_stream(src):
                        rows += b.num_rows
                        if spec.get("domain"):  # an explicit domain overrides the records' column
                            domains.append(([spec["domain"]], np.zeros(b.num_rows, np.int64)))
                        else:  # codes per batch: no reference into the map outlives the batch
                            enc = b.column("domain").dictionary_encode()
                            domains.append((enc.dictionary.to_pylist(),
                                            enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)))
                        cl = pc.struct_field(b.column("meta"), "dedup_cluster")
                        clustered.append(int(cl.null_count == 0 and b.column("meta").null_count == 0))
                        groups.append(_hash64(pc.coalesce(cl, b.column("id"))))
                        turns.append(_user_turns(b.column("messages")))
                self.files.append(p)
                folder_of_file.append(fi)
                file_lo.append(file_lo[-1] + rows)
            folder_rows.append((n0, file_lo[-1]))
            self.folders.append({"path": path, "domain": spec.get("domain"), "rows": file_lo[-1] - n0,
                                 "fingerprint": _folder_fingerprint(path)})
        self.file_lo = np.array(file_lo, dtype=np.int64)
        self.folder_of_file = np.array(folder_of_file, dtype=np.int64)
        self.n = int(self.file_lo[-1])
        self.folder = np.zeros(self.n, dtype=np.int32)
        for fi, (a, b) in enumerate(folder_rows):
            self.folder[a:b] = fi
        self.domain_names = sorted({d for names, _ in domains for d in names})
        code = {d: i for i, d in enumerate(self.domain_names)}
        self.domain = np.concatenate([np.array([code[d] for d in names], np.int64)[c] for names, c in domains]) \
            if domains else np.zeros(0, np.int64)
        # equal keys -> one group. 64-bit hashes instead of strings keep the catalog at a few
        # bytes per record; P(any collision) ~ n^2 / 2^65 (3e-8 at 1e6 keys, 3e-4 at 1e8), and
        # a collision only keeps two groups on the same side of the split.
        self.group = np.unique(np.concatenate(groups), return_inverse=True)[1].astype(np.int64) if groups \
            else np.zeros(0, np.int64)
        self.turns = np.concatenate(turns) if turns else np.zeros(0, np.int32)
        self.all_clustered = all(clustered)

    def file_rows(self, fi: int) -> tuple[int, int]:
        return int(self.file_lo[fi]), int(self.file_lo[fi + 1])


_M64 = np.uint64(0x9E3779B97F4A7C15)


def _hash64(a: pa.Array) -> np.ndarray:
    """64-bit hash of each (non-null) string, vectorised over the Arrow buffers: a polynomial
    over the bytes, then a splitmix64 finaliser with the length."""
    a = a.cast(pa.large_string()) if a.type != pa.large_string() else a
    n = len(a)
    offs = np.frombuffer(a.buffers()[1], np.int64)[a.offset:a.offset + n + 1]
    data = np.frombuffer(a.buffers()[2], np.uint8)[offs[0]:offs[-1]] if n and a.buffers()[2] else \
        np.zeros(0, np.uint8)
    lens = np.diff(offs)
    starts = offs[:-1] - offs[0]
    pos = np.arange(len(data)) - np.repeat(starts, lens)
    with np.errstate(over="ignore"):
        powt = np.cumprod(np.full(int(lens.max(initial=0)) + 1, _M64))  # M^1, M^2, ...
        terms = (data.astype(np.uint64) + np.uint64(1)) * powt[pos]
        h = np.zeros(n, np.uint64)
        nz = lens > 0
        if nz.any():
            h[nz] = np.add.reduceat(terms, starts[nz])
        h ^= lens.astype(np.uint64) * np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(30)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(27)
        h *= np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(31)
    return h


def _user_turns(messages: pa.Array) -> np.ndarray:
    """Turns per conversation (user messages), vectorised over a batch."""
    roles = pc.struct_field(pc.list_flatten(messages), "role")
    parent = pc.list_parent_indices(messages).to_numpy()
    is_user = pc.equal(roles, "user").to_numpy(zero_copy_only=False)
    return np.bincount(parent[is_user], minlength=len(messages)).astype(np.int32)


def _folder_fingerprint(path: str) -> str:
    h = hashlib.sha256()
    mp = os.path.join(path, "manifest.json")
    if os.path.exists(mp):
        with open(mp, "rb") as f:
            h.update(f.read())
    for p in shards.data_files(path):
        h.update(f"{os.path.basename(p)}:{os.path.getsize(p)}".encode())
    return h.hexdigest()[:16]


def parse_sources(items: list) -> list[dict]:
    """`[DOMAIN=]DIR` strings or {path, domain?, name?, tier?, weight?} dicts."""
    out = []
    for it in items or []:
        if isinstance(it, dict):
            unknown = set(it) - {"path", "domain", "name", "tier", "weight"}
            if unknown or "path" not in it:
                raise ConfigError(f"mix.sources: {it!r}: needs `path`; optional domain, name, tier, weight "
                                  f"(unknown: {sorted(unknown)})")
            out.append(dict(it))
        else:
            s = str(it)
            dom, eq, path = s.partition("=")
            out.append({"path": path, "domain": dom} if eq and not os.path.exists(s) else {"path": s})
    if not out:
        raise ConfigError("mix: no sources given (--in DIR ...)")
    return out


# ----------------------------------------------------------------------------- validation

def _near_validation(cat: Catalog, skip: np.ndarray, in_val: np.ndarray, cfg: MixConfig,
                     progress: bool) -> tuple[np.ndarray, list]:
    """Training rows whose estimated Jaccard with some validation row is >= leak_threshold.
    Two streaming passes: signatures of the (small) validation set, then every other row
    against its LSH band keys; only signatures of one batch are held."""
    from ..dedup.minhash import MinHasher, band_keys, choose_bands

    mh = MinHasher(cfg.num_perm, 1, 3, 2)  # the dedup stage's shingles (char 3-grams zh, word 2-grams en)
    bands, rows_ = choose_bands(cfg.num_perm, cfg.leak_threshold)
    val_sig, val_ids = [], []
    for g0, b in _iter_global_batches(cat):
        m = in_val[g0:g0 + b.num_rows]
        if m.any():
            sel = pa.array(np.flatnonzero(m))
            val_sig.append(mh.signatures(joined_text(b.column("messages").take(sel)).to_pylist(),
                                         b.column("lang").take(sel).to_pylist()))
            val_ids += b.column("id").take(sel).to_pylist()
    vsig = np.concatenate(val_sig)
    vkeys = band_keys(vsig, bands, rows_).reshape(-1)
    owner = np.repeat(np.arange(len(vsig)), bands)
    order = np.argsort(vkeys, kind="stable")
    vkeys, owner = vkeys[order], owner[order]
    near = np.zeros(cat.n, dtype=bool)
    examples: list = []
    for g0, b in _iter_global_batches(cat):
        live = np.flatnonzero(~skip[g0:g0 + b.num_rows])
        if not len(live):
            continue
        sel = pa.array(live)
        sig = mh.signatures(joined_text(b.column("messages").take(sel)).to_pylist(),
                            b.column("lang").take(sel).to_pylist())
        keys = band_keys(sig, bands, rows_)
        r, c = np.nonzero(np.isin(keys, vkeys))
        if not len(r):
            continue
        lo, hi = np.searchsorted(vkeys, keys[r, c], "left"), np.searchsorted(vkeys, keys[r, c], "right")
        rr = np.repeat(r, hi - lo)  # one (row, validation owner) per shared band key
        oo = owner[np.concatenate([np.arange(a, z) for a, z in zip(lo.tolist(), hi.tolist())])]
        pairs = np.unique(np.stack([rr, oo], axis=1), axis=0)
        est = (sig[pairs[:, 0]] == vsig[pairs[:, 1]]).mean(axis=1)
        hit = pairs[est >= cfg.leak_threshold]
        near[g0 + live[np.unique(hit[:, 0])]] = True
        ids = b.column("id")
        for (i, j), e in zip(hit[: max(0, 5 - len(examples))].tolist(), est[est >= cfg.leak_threshold].tolist()):
            examples.append({"train": ids[int(live[i])].as_py(), "validation": val_ids[j], "jaccard": round(e, 3)})
    if progress:
        print(f"[mix] leakage check: {int(near.sum())} training records near a validation record", file=sys.stderr)
    return near, examples


def _iter_global_batches(cat: Catalog, rows: int = 16384):
    """(first global row, batch) over every input part, in slices of at most `rows` so the
    per-batch signatures and band keys stay small whatever batch size the parts were written with."""
    for fi, p in enumerate(cat.files):
        g0 = cat.file_rows(fi)[0]
        for b in shards.iter_batches_of(p):
            for i in range(0, b.num_rows, rows):
                yield g0 + i, b.slice(i, rows)
            g0 += b.num_rows


# ----------------------------------------------------------------------------- copy rows (map)

def _finish(t: pa.Table, domain: str | None) -> pa.Table:
    if domain is not None:
        t = t.set_column(t.schema.get_field_index("domain"), SCHEMA.field("domain"),
                         pa.array([domain] * t.num_rows, pa.string()))
    i = t.schema.get_field_index("meta")
    return t.set_column(i, SCHEMA.field("meta"), with_stage(t.column("meta"), "mix"))


def write_rows(cat: Catalog, rows: np.ndarray, folder: str, rows_per_part: int) -> None:
    """Write global `rows` (in this order, repeats allowed) as data/part-NNNNN.arrow.
    External shuffle: each input part is read once, its selected rows go to position buckets;
    each bucket is then sorted and appended. Memory: one input part + one bucket."""
    work = os.path.join(folder, ".work")
    for old in shards.data_files(folder) + glob.glob(os.path.join(work, "bucket-*.arrow")):
        os.remove(old)  # parts of a killed attempt; the plan rewrites them identically
    total = len(rows)
    chunk = max(rows_per_part, math.ceil(total / 256), 1)  # <= 256 bucket files open at once
    n_buckets = max(1, math.ceil(total / chunk))
    order = np.argsort(rows, kind="stable")
    srt = rows[order]
    bschema = SCHEMA.append(pa.field("_pos", pa.int64()))
    writers: dict[int, Any] = {}
    for fi, path in enumerate(cat.files):
        lo, hi = cat.file_rows(fi)
        a, b = np.searchsorted(srt, lo), np.searchsorted(srt, hi)
        if a == b:
            continue
        with pa.memory_map(path) as src:
            t = pa.ipc.open_stream(src).read_all().take(pa.array(srt[a:b] - lo))
        t = _finish(t, cat.folders[int(cat.folder_of_file[fi])]["domain"] or None)
        pos = order[a:b]
        bk = pos // chunk
        o = np.argsort(bk, kind="stable")
        t = t.take(pa.array(o)).append_column("_pos", pa.array(pos[o], pa.int64()))
        bk = bk[o]
        starts = np.flatnonzero(np.r_[True, bk[1:] != bk[:-1]])
        ends = np.r_[starts[1:], len(bk)]
        for s, e in zip(starts.tolist(), ends.tolist()):
            k = int(bk[s])
            if k not in writers:
                f = open(os.path.join(work, f"bucket-{k:05d}.arrow"), "wb")
                writers[k] = (f, pa.ipc.new_stream(f, bschema))
            writers[k][1].write_table(t.slice(s, e - s))
    for f, w in writers.values():
        w.close()
        f.close()
    out = shards.RollingWriter(os.path.join(folder, "data"), "part", SCHEMA, rows_per_part)
    for k in range(n_buckets):
        p = os.path.join(work, f"bucket-{k:05d}.arrow")
        if not os.path.exists(p):
            continue
        t = shards.read_table(p)
        t = t.take(pc.sort_indices(t.column("_pos"))).drop_columns(["_pos"])
        for batch in t.to_batches(max_chunksize=1000):
            out.write(batch)
        del t
        os.remove(p)
    out.close()
    if not os.listdir(work):
        os.rmdir(work)


# ----------------------------------------------------------------------------- driver

def _counts(n: int) -> dict:
    """Stage-folder counts in the shape `turnforge inspect` reads (mixing rejects nothing)."""
    return {"in": n, "kept": n, "rejected": {}, "rejected_total": 0, "archived": {}, "repairs": {}, "stats": {},
            "records_out": n, "rejected_rows": 0}


def _write_folder(cat, rows, folder, cfg, manifest: dict, progress: bool) -> None:
    if shards.is_complete(folder):  # resumed: the plan is a pure function of inputs, so the same rows
        return
    shards.prepare(folder)
    write_rows(cat, rows, folder, cfg.rows_per_part)
    manifest = {**manifest, "counts": _counts(len(rows)), "accounting_ok": True,
                "data_parts": [os.path.basename(p) for p in shards.data_files(folder)]}
    card.write_card(folder, manifest)
    shards.mark_complete(folder, manifest)
    if progress:
        print(f"[mix] {len(rows)} records -> {folder}", file=sys.stderr)


def run_mix(sources: list, out: str, params: dict | None = None, *, seed: int | None = None,
            progress: bool = True) -> dict:
    """Hold out validation, plan and write OUT/final/ (see module doc); returns the mix manifest.
    A finished OUT/final with the same inputs and config is returned as is; an interrupted one
    is completed (the plan is recomputed identically, finished folders are kept)."""
    os.makedirs(out, exist_ok=True)  # OUT itself keeps the usual mode
    with integrity.FolderLock(out, "mix"):  # one writer per OUT (free inside a build, which holds it)
        return _run_mix(sources, out, params, seed, progress)


def _run_mix(sources: list, out: str, params: dict | None, seed: int | None, progress: bool) -> dict:
    params = dict(params or {})
    if seed is not None:
        params.setdefault("seed", seed)
    cfg = make_config(MixConfig, params)
    specs = parse_sources(sources)
    final = os.path.join(out, "final")
    mpath = os.path.join(final, "mix_manifest.json")
    cat = Catalog(specs)
    fp = hashlib.sha256(json.dumps({"params": params, "sources": specs, "inputs": [f["fingerprint"] for f in cat.folders]},
                                   sort_keys=True, default=str).encode()).hexdigest()[:16]
    fp_path = os.path.join(final, ".mix_fingerprint")
    if os.path.exists(fp_path) and open(fp_path).read() != fp:
        raise ConfigError(f"{final} holds a mix of other inputs or settings; delete it or choose another --out")
    if os.path.exists(mpath):
        with open(mpath, encoding="utf-8") as f:
            return json.load(f)
    srcs = make_sources(cat, specs)
    check_keys(cfg, srcs, cat)
    try:
        hold = holdout(cat, srcs, cfg, lambda skip, in_val: _near_validation(cat, skip, in_val, cfg, progress))
        stages, meta = plan(cat, srcs, cfg)
    except MixError as e:
        raise ConfigError(f"mix: {e}") from None
    # Sources that may hold raw personal data (no pii stage upstream) make OUT/final owner-only.
    raw = any(shards.holds_raw_personal_data(spec["path"]) for spec in specs)
    os.makedirs(out, exist_ok=True)  # OUT itself keeps the usual mode
    with shards.owner_only(raw):
        os.makedirs(final, exist_ok=True)
        shards.atomic_write_bytes(fp_path, fp.encode())
        base = {"stage": "mix", "strategy": cfg.strategy, "seed": cfg.seed, "versions": shards.versions(),
                "fingerprint": fp, "raw_personal_data": raw}
        for dn, rows in hold["sets"].items():
            src_counts = _by_source(cat, srcs, rows)
            _write_folder(cat, rows, os.path.join(final, "validation", dn), cfg,
                          {**base, "mix_stage": f"validation/{dn}", "sources": src_counts}, progress)
        for st in stages:
            _write_folder(cat, st["rows"], os.path.join(final, st["name"]), cfg, {**base, "mix_stage": st["name"],
                                                                                **st["info"]}, progress)
        in_val, excl = hold["in_val"], hold["excluded"]
        src_report = {}
        for s in srcs:
            rows = np.flatnonzero((cat.folder == s.folder) & (cat.domain == cat.domain_names.index(s.domain)))
            src_report[s.name] = {"path": specs[s.folder]["path"], "domain": s.domain, "n": int(len(rows)),
                                  "validation": int(in_val[rows].sum()), "excluded_leakage": int(excl[rows].sum()),
                                  "train_pool": int(len(s.pool))}
            r = src_report[s.name]
            r["accounting_ok"] = r["n"] == r["validation"] + r["excluded_leakage"] + r["train_pool"]
        cfg_out = dataclasses.asdict(cfg)
        manifest = {**base, **meta, "config": cfg_out, "sources": src_report,
                    "validation": hold["report"], "stages": [st["info"] for st in stages],
                    "folders": {"validation": sorted(f"validation/{d}" for d in hold["sets"]),
                                "stages": [st["name"] for st in stages]}}
        card.write_final_card(final, manifest)  # load_dataset(OUT/final): train and validation splits
        shards.atomic_write_json(mpath, manifest)
    return manifest


def _by_source(cat: Catalog, srcs: list[Source], rows: np.ndarray) -> dict:
    out = {}
    for s in srcs:
        m = (cat.folder[rows] == s.folder) & (cat.domain[rows] == cat.domain_names.index(s.domain))
        if m.any():
            out[s.name] = {"domain": s.domain, "count": int(m.sum())}
    return out


def exclude_near(validation: list[str], sources: list[str], outs: list[str], params: dict | None = None,
                 progress: bool = False) -> dict:
    """Copy each source folder to its `outs` folder without the records that leak into fixed
    validation folders: same id / dedup cluster as a validation record, or estimated Jaccard >=
    `leak_threshold` to one (the hold-out's own rules, step 2 of the module doc). For sets held
    out once and kept (the flywheel's pool); returns per source n, excluded, kept and examples."""
    cfg = make_config(MixConfig, dict(params or {}))
    specs = [{"path": v} for v in validation] + [{"path": s} for s in sources]
    cat = Catalog(specs)
    in_val = cat.folder < len(validation)
    excluded = ~in_val & np.isin(cat.group, np.unique(cat.group[in_val]))
    examples: list = []
    if in_val.any():
        near, examples = _near_validation(cat, in_val | excluded, in_val, cfg, progress)
        excluded |= near
    report = {"examples": examples, "sources": {}}
    for k, (src, out) in enumerate(zip(sources, outs)):
        fi = len(validation) + k
        rows = np.flatnonzero((cat.folder == fi) & ~excluded)
        n = int((cat.folder == fi).sum())
        report["sources"][src] = {"n": n, "excluded_leakage": n - len(rows), "kept": int(len(rows))}
        shards.prepare(out)
        write_rows(cat, rows, out, cfg.rows_per_part)
        shards.mark_complete(out, {"stage": "mix", "mix_stage": "exclude_near", "source": src,
                                   "validation": list(validation), "counts": _counts(len(rows)),
                                   "excluded_leakage": n - len(rows), "accounting_ok": True,
                                   "raw_personal_data": shards.holds_raw_personal_data(src),
                                   "data_parts": [os.path.basename(p) for p in shards.data_files(out)]})
    return report
