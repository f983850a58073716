"""Mix stage (SPEC R8, R9, R10): per-task validation sets, mixture sampling and the four SFT
strategies, from several shard folders into the folders a trainer runs in order.

    OUT/final/validation/<domain>/     held out before any mixing (R10), never overlapping training
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
 3. plan (reduce): counts per source by largest remainder (pipeline/mix.py), rows sampled
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
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import shards
from ..mix import (MixError, check_repeats, choose_groups, explicit, holdout_size, k_label, largest_remainder,
                   parse_k, proportional, replay_for, rng_for, sample, split_total, temperature, tier_decay)
from ..schema import SCHEMA
from .base import ConfigError, make_config

STRATEGIES = ("multi_task", "sequential", "mixed_sequential", "dmt")
LONG = "long_multiturn"  # validation folder of the long multi-turn split (R10)


@dataclass
class MixConfig:
    strategy: str = "multi_task"  # multi_task | sequential | mixed_sequential | dmt (SPEC R9)
    # weights (SPEC R8): auto = temperature when alpha is set, explicit when weights are, else proportional
    weighting: str = "auto"
    alpha: float | None = None  # temperature exponent a in [0, 1]
    weights: dict | None = None  # explicit: {source name or domain: weight}
    tiers: dict | None = None  # quality tier per source name or domain (0 best)
    decay: float = 0.5  # weight factor per tier below 0: p_i ~ base_i * decay^tier_i
    total: int | None = None  # records in a stage (multi_task, curriculum stages); default epochs * pool
    epochs: float = 1.0
    max_repeat: float = 4  # no record appears more often than this in one stage
    specialist: Any = "code,math"  # domains (comma-separated or list)
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


def _domains(value, field_name: str) -> list[str] | None:
    if value is None:
        return None
    vals = value if isinstance(value, (list, tuple)) else str(value).split(",")
    out = [str(v).strip() for v in vals if str(v).strip()]
    if not out:
        raise ConfigError(f"mix.{field_name}: no domains given")
    return out


# ----------------------------------------------------------------------------- sources + catalog

@dataclass
class Source:
    name: str
    domain: str
    folder: int  # index into Catalog.folders
    tier: int = 0
    weight: float | None = None
    pool: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # training rows (global)
    n: int = 0


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
            parts = shards.data_files(path)
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


def _joined_text(messages: pa.Array) -> pa.Array:
    """All message contents of each conversation joined by newlines, without Python loops."""
    content = pc.struct_field(pc.list_flatten(messages), "content")
    offs = messages.offsets
    offs = pc.subtract(offs, offs[0]).cast(pa.int32())
    return pc.binary_join(pa.ListArray.from_arrays(offs, content), "\n")


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


def _make_sources(cat: Catalog, specs: list[dict]) -> list[Source]:
    srcs: list[Source] = []
    for fi, spec in enumerate(specs):
        rows = np.flatnonzero(cat.folder == fi)
        if len(rows) == 0:
            raise ConfigError(f"mix: source {spec['path']!r} is empty (0 records)")
        for d in np.unique(cat.domain[rows]).tolist():
            dn = cat.domain_names[d]
            name = spec.get("name") or dn
            if spec.get("name") and len(np.unique(cat.domain[rows])) > 1:
                name = f"{spec['name']}:{dn}"
            srcs.append(Source(name=name, domain=dn, folder=fi, tier=int(spec.get("tier") or 0),
                               weight=spec.get("weight"), n=int((cat.domain[rows] == d).sum())))
    seen: dict[str, int] = {}
    for s in srcs:  # same domain in several folders: name them apart by folder
        seen[s.name] = seen.get(s.name, 0) + 1
    for s in srcs:
        if seen[s.name] > 1:
            s.name = f"{s.name}@{os.path.basename(os.path.normpath(specs[s.folder]['path']))}#{s.folder}"
    return srcs


# ----------------------------------------------------------------------------- validation (R10)

def _holdout(cat: Catalog, srcs: list[Source], cfg: MixConfig, progress: bool) -> dict:
    """Choose validation rows per domain (whole groups), exclude training rows that leak."""
    n = cat.n
    in_val = np.zeros(n, dtype=bool)
    val_of = np.full(n, -1, dtype=np.int32)  # which validation set (domain index, or -2 for long)
    sizes = dict(cfg.val_sizes or {})
    unknown = sorted(set(sizes) - set(cat.domain_names) - {LONG})
    if unknown:
        raise ConfigError(f"mix.val_sizes: unknown domain(s) {unknown}; domains in the sources: {cat.domain_names}")
    report: dict = {"requested": {}, "realised": {}}
    long_spec = sizes.get(LONG, cfg.long_size)
    if long_spec:
        cand = np.flatnonzero(cat.turns >= cfg.long_turns)
        target = holdout_size(float(long_spec), len(cand), cfg.val_max)
        if target > len(cand):
            raise ConfigError(f"mix.long_size: {target} records asked but only {len(cand)} conversations "
                              f"have >= {cfg.long_turns} turns")
        pick = cand[choose_groups(cat.group[cand], target, rng_for(cfg.seed, "validation", LONG))]
        in_val[pick], val_of[pick] = True, -2
        report["requested"][LONG] = target
    for d, dn in enumerate(cat.domain_names):
        rows = np.flatnonzero(cat.domain == d)
        spec = float(sizes.get(dn, cfg.val_size))
        target = holdout_size(spec, len(rows), cfg.val_max)
        cand = rows[~in_val[rows]]
        if target and target >= len(cand):
            raise ConfigError(f"mix.val_size: validation of domain {dn!r} asks {target} of its {len(cand)} "
                              f"records; nothing would be left to train on (set val_sizes: {{{dn}: N}})")
        pick = cand[choose_groups(cat.group[cand], target, rng_for(cfg.seed, "validation", dn))]
        in_val[pick], val_of[pick] = True, d
        report["requested"][dn] = target
    # SPEC R10 no leakage: a record sharing a dedup cluster (or id) with validation stays out of training
    val_groups = np.unique(cat.group[in_val])
    excluded = ~in_val & np.isin(cat.group, val_groups)
    report["excluded_same_cluster"] = int(excluded.sum())
    method = cfg.leakage
    if method == "auto":
        method = "clusters" if cat.all_clustered and len(cat.folders) == 1 else "minhash"
    report["leakage_method"] = method
    if method == "minhash" and in_val.any():
        near, examples = _near_validation(cat, in_val | excluded, in_val, cfg, progress)
        report["excluded_near_duplicate"] = int(near.sum())
        report["near_duplicate_examples"] = examples
        excluded |= near
    for s in srcs:
        rows = np.flatnonzero((cat.folder == s.folder) & (cat.domain == cat.domain_names.index(s.domain)))
        s.pool = rows[~in_val[rows] & ~excluded[rows]]
        if len(s.pool) == 0:
            raise ConfigError(f"mix: source {s.name!r} (domain {s.domain!r}) has no training records left "
                              f"after validation; lower val_size")
    sets = {LONG: np.flatnonzero(val_of == -2)} if (val_of == -2).any() else {}
    for d, dn in enumerate(cat.domain_names):
        r = np.flatnonzero(val_of == d)
        if len(r):
            sets[dn] = r
    report["realised"] = {k: int(len(v)) for k, v in sets.items()}
    return {"sets": sets, "in_val": in_val, "excluded": excluded, "report": report}


def _near_validation(cat: Catalog, skip: np.ndarray, in_val: np.ndarray, cfg: MixConfig,
                     progress: bool) -> tuple[np.ndarray, list]:
    """Training rows whose estimated Jaccard with some validation row is >= leak_threshold.
    Two streaming passes: signatures of the (small) validation set, then every other row
    against its LSH band keys; only signatures of one batch are held."""
    from ..minhash import MinHasher, band_keys, choose_bands

    mh = MinHasher(cfg.num_perm, 1, 3, 2)  # the dedup stage's shingles (char 3-grams zh, word 2-grams en)
    bands, rows_ = choose_bands(cfg.num_perm, cfg.leak_threshold)
    val_sig, val_ids = [], []
    for g0, b in _iter_global_batches(cat):
        m = in_val[g0:g0 + b.num_rows]
        if m.any():
            sel = pa.array(np.flatnonzero(m))
            val_sig.append(mh.signatures(_joined_text(b.column("messages").take(sel)).to_pylist(),
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
        sig = mh.signatures(_joined_text(b.column("messages").take(sel)).to_pylist(),
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


# ----------------------------------------------------------------------------- weights + plans (R8, R9)

FORMULAS = {
    "proportional": "p_i = n_i / sum_j n_j (SPEC R8)",
    "temperature": "p_i = n_i^a / sum_j n_j^a (SPEC R8)",
    "explicit": "p_i = w_i / sum_j w_j",
}


def _weights(group: list[Source], sizes: np.ndarray, cfg: MixConfig, cat: Catalog) -> tuple[np.ndarray, dict]:
    """Mixture weights over `group` (sizes = what each can be drawn from), with tiers (R8)."""
    scheme = cfg.scheme()
    if scheme == "temperature":
        p = temperature(sizes, float(cfg.alpha))
    elif scheme == "explicit":
        w = []
        for s, n in zip(group, sizes):
            v = _lookup(cfg.weights or {}, s)
            if v is None and s.weight is None:
                raise ConfigError(f"mix.weights: no weight for source {s.name!r} (domain {s.domain!r}); "
                                  f"give one per source name or domain")
            if v is None:
                w.append(float(s.weight))
            elif v[1]:  # a domain's weight is shared by its sources in proportion to their size
                w.append(float(v[0]) * n / sum(n2 for s2, n2 in zip(group, sizes) if s2.domain == s.domain))
            else:
                w.append(float(v[0]))
        p = explicit(w)
    else:
        p = proportional(sizes)
    tiers = []
    for s in group:
        t = _lookup(cfg.tiers or {}, s)
        tiers.append(int(t[0]) if t is not None else s.tier)
    info = {"scheme": scheme, "formula": FORMULAS[scheme], "alpha": cfg.alpha if scheme == "temperature" else None}
    if any(tiers):
        p = tier_decay(p, tiers, cfg.decay)
        info.update(formula=info["formula"] + " x decay^tier, renormalised", decay=cfg.decay,
                    tiers={s.name: t for s, t in zip(group, tiers)})
    info["p"] = {s.name: round(float(x), 6) for s, x in zip(group, p)}
    return p, info


def _lookup(table: dict, s: Source):
    """(value, is_domain_key) of a source in a setting keyed by source name or domain, else None."""
    if s.name in table:
        return (table[s.name], False)
    if s.domain in table:
        return (table[s.domain], True)
    return None


def _check_keys(cfg: MixConfig, srcs: list[Source], cat: Catalog) -> None:
    """Settings keyed by source or domain must name ones that exist (typos are errors)."""
    for what in ("weights", "tiers"):
        table = getattr(cfg, what) or {}
        if not isinstance(table, dict):
            raise ConfigError(f"mix.{what}: expected a mapping of source name or domain to a number")
        unknown = sorted(set(table) - {s.name for s in srcs} - set(cat.domain_names))
        if unknown:
            raise ConfigError(f"mix.{what}: unknown source or domain {unknown}; sources: "
                              f"{sorted(s.name for s in srcs)}, domains: {cat.domain_names}")


@dataclass
class Part:
    """One group of sources drawn for a stage: `new` data or `replay` of earlier stages."""
    role: str
    sources: list[Source]
    pools: list[np.ndarray]
    total: int


def _draw(part: Part, cfg: MixConfig, cat: Catalog, stage: str) -> tuple[list[np.ndarray], dict]:
    sizes = np.array([len(p) for p in part.pools], dtype=np.int64)
    p, info = _weights(part.sources, sizes, cfg, cat)
    counts = largest_remainder(part.total, p)  # exact integer quotas (SPEC R8)
    check_repeats(counts, sizes, cfg.max_repeat, [s.name for s in part.sources], f" ({stage}, {part.role})")
    picks = [sample(pool, int(c), rng_for(cfg.seed, stage, part.role, s.name))
             for s, pool, c in zip(part.sources, part.pools, counts)]
    info["counts"] = {s.name: int(c) for s, c in zip(part.sources, counts)}
    return picks, info


def _stage(name: str, parts: list[Part], cfg: MixConfig, cat: Catalog, extra: dict) -> dict:
    rows, drawn, infos = [], [], {}
    for part in parts:
        if part.total == 0 and part.role == "replay":
            continue
        picks, info = _draw(part, cfg, cat, name)
        infos[part.role] = info
        for s, pk in zip(part.sources, picks):
            drawn.append((s, part.role, pk))
            rows.append(pk)
    allrows = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    allrows = allrows[rng_for(cfg.seed, name, "order").permutation(len(allrows))]  # training order: mixed
    total = len(allrows)
    per_source: dict = {}
    for s, role, pk in drawn:
        e = per_source.setdefault(s.name, {"domain": s.domain, "count": 0, "pool": int(len(s.pool))})
        e["count"] += int(len(pk))
        e[role] = int(len(pk))
        if len(pk):
            e["max_repeats"] = max(e.get("max_repeats", 0), int(np.bincount(np.unique(pk, return_inverse=True)[1]).max()))
    for e in per_source.values():
        e["share"] = round(e["count"] / total, 6) if total else 0.0
    domains: dict = {}
    for e in per_source.values():
        d = domains.setdefault(e["domain"], {"count": 0})
        d["count"] += e["count"]
    for d in domains.values():
        d["share"] = round(d["count"] / total, 6) if total else 0.0
    rep = sum(len(pk) for _, role, pk in drawn if role == "replay")
    return {"name": name, "rows": allrows, "used": drawn,
            "info": {"stage": name, "total": total, "sources": per_source, "domains": domains, "weights": infos,
                     "replay_share": round(rep / total, 6) if total else 0.0, **extra}}


def _natural(pools: list[np.ndarray], epochs: float) -> int:
    return int(math.floor(epochs * sum(len(p) for p in pools) + 0.5))


def _used_pools(stages: list[dict], srcs: list[Source]) -> tuple[list[Source], list[np.ndarray]]:
    """Rows earlier stages used, per source: what replay draws from (SPEC R9.2)."""
    used: dict[str, list] = {}
    for st in stages:
        for s, _, pk in st["used"]:
            used.setdefault(s.name, []).append(pk)
    out_s, out_p = [], []
    for s in srcs:
        if s.name in used:
            out_s.append(s)
            out_p.append(np.unique(np.concatenate(used[s.name])))
    return out_s, out_p


def _replay_values(cfg: MixConfig, n_stages: int, default: float) -> list[float]:
    r = cfg.replay if cfg.replay is not None else default
    vals = list(r) if isinstance(r, (list, tuple)) else [0.0] + [r] * (n_stages - 1)
    if len(vals) == n_stages - 1:
        vals = [0.0] + vals
    if len(vals) != n_stages:
        raise ConfigError(f"mix.replay: {r!r}: give one lambda, or one per stage ({n_stages})")
    vals = [float(v) for v in vals]
    for v in vals:
        if not 0 <= v < 1:
            raise ConfigError(f"mix.replay: lambda {v} not in [0, 1)")
    return vals


def _split_domains(cfg: MixConfig, cat: Catalog) -> tuple[list[str], list[str]]:
    spec = _domains(cfg.specialist, "specialist") or []
    gen = _domains(cfg.general, "general")
    for what, ds in (("specialist", spec), ("general", gen or [])):
        bad = sorted(set(ds) - set(cat.domain_names))
        if bad:
            raise ConfigError(f"mix.{what}: unknown domain(s) {bad}; domains in the sources: {cat.domain_names}")
    if cfg.specialist == MixConfig.specialist:  # defaults: the default specialists present
        spec = [d for d in spec if d in cat.domain_names]
    if gen is None:
        gen = [d for d in cat.domain_names if d not in spec]
    both = sorted(set(spec) & set(gen))
    if both:
        raise ConfigError(f"mix: domain(s) {both} are both specialist and general")
    if not spec:
        raise ConfigError(f"mix.specialist: none of the specialist domains is in the sources "
                          f"(domains: {cat.domain_names}); set specialist=...")
    if not gen:
        raise ConfigError(f"mix.general: no general domain in the sources (domains: {cat.domain_names})")
    return spec, gen


def _of(srcs: list[Source], domains: list[str]) -> list[Source]:
    return [s for s in srcs if s.domain in domains]


def _curriculum(cfg: MixConfig, cat: Catalog, default_lambda: float) -> list[dict]:
    cur = cfg.curriculum
    if cur is None:
        spec, gen = _split_domains(cfg, cat)
        cur = [gen, spec]  # general -> special (SPEC R9.2)
    if not isinstance(cur, list) or not cur:
        raise ConfigError("mix.curriculum: a list of stages, each a list of domains or {domains, replay, total, epochs}")
    lams = _replay_values(cfg, len(cur), default_lambda)
    out, seen = [], {}
    for t, entry in enumerate(cur):
        e = dict(entry) if isinstance(entry, dict) else {"domains": entry}
        unknown = set(e) - {"domains", "replay", "total", "epochs"}
        if unknown:
            raise ConfigError(f"mix.curriculum[{t}]: unknown keys {sorted(unknown)}")
        ds = _domains(e.get("domains"), f"curriculum[{t}].domains") or []
        bad = sorted(set(ds) - set(cat.domain_names))
        if bad:
            raise ConfigError(f"mix.curriculum[{t}]: unknown domain(s) {bad}; domains in the sources: "
                              f"{cat.domain_names}")
        for d in ds:
            if d in seen:
                raise ConfigError(f"mix.curriculum: domain {d!r} in stages {seen[d] + 1} and {t + 1}; later "
                                  f"stages see it as replay")
            seen[d] = t
        lam = float(e["replay"]) if e.get("replay") is not None else lams[t]
        if t == 0 and lam:
            raise ConfigError("mix.curriculum[0]: the first stage has nothing to replay (replay must be 0)")
        out.append({"domains": ds, "replay": lam, "total": e.get("total"), "epochs": float(e.get("epochs", cfg.epochs))})
    return out


def plan(cat: Catalog, srcs: list[Source], cfg: MixConfig) -> tuple[list[dict], dict]:
    """Every output stage (name, rows in training order, manifest info) of the strategy."""
    pools = {s.name: s.pool for s in srcs}
    strat = cfg.strategy
    stages: list[dict] = []
    meta: dict = {"strategy": strat}
    if strat == "multi_task":
        total = int(cfg.total) if cfg.total else _natural([s.pool for s in srcs], cfg.epochs)
        stages.append(_stage("stage-1", [Part("new", srcs, [s.pool for s in srcs], total)], cfg, cat, {}))
    elif strat in ("sequential", "mixed_sequential"):
        if strat == "mixed_sequential":
            spec, gen = _split_domains(cfg, cat)
            lam = float(cfg.replay if cfg.replay is not None else 0.1)
            if not 0.05 <= lam <= 0.20:
                raise ConfigError(f"mix.replay: mixed_sequential specialist replay {lam} outside 5%-20% (SPEC R9.3)")
            cur = [{"domains": spec, "replay": 0.0, "total": None, "epochs": cfg.epochs},
                   {"domains": gen, "replay": lam, "total": None, "epochs": cfg.epochs}]
            meta.update(specialist=spec, general=gen)
        else:
            cur = _curriculum(cfg, cat, 0.1)
        meta["curriculum"] = [{k: v for k, v in c.items()} for c in cur]
        for t, c in enumerate(cur, 1):
            new = _of(srcs, c["domains"])
            new_pools = [pools[s.name] for s in new]
            rsrc, rpools = _used_pools(stages, srcs)
            lam = c["replay"]
            if c["total"]:  # SPEC R9.2: p(t) = (1 - lambda_t) p_new + lambda_t p_replay
                n_new, n_rep = split_total(int(c["total"]), lam)
            else:
                n_new = _natural(new_pools, c["epochs"])
                n_rep = replay_for(n_new, lam)
            if n_rep and not rsrc:
                raise ConfigError(f"mix: stage {t} asks replay {lam} but no earlier stage has data")
            stages.append(_stage(f"stage-{t}", [Part("new", new, new_pools, n_new),
                                                Part("replay", rsrc, rpools, n_rep)], cfg, cat,
                                 {"lambda": lam, "domains_new": c["domains"]}))
    else:  # dmt (SPEC R9.4)
        spec, gen = _split_domains(cfg, cat)
        meta.update(specialist=spec, general=gen)
        s_src, g_src = _of(srcs, spec), _of(srcs, gen)
        s1 = _stage("stage-1", [Part("new", s_src, [s.pool for s in s_src],
                                     _natural([s.pool for s in s_src], cfg.epochs))], cfg, cat, {"lambda": 0.0})
        stages.append(s1)
        rsrc, rpools = _used_pools([s1], srcs)
        n_spec = sum(len(p) for p in rpools)
        n_gen = _natural([s.pool for s in g_src], cfg.epochs)
        ks = parse_k(cfg.k)
        meta["k"] = [str(k) for k in ks]
        for k in ks:
            n_k = int(math.floor(k * n_spec + Fraction(1, 2)))  # round(k * n_spec), exact in fractions
            lam = n_k / (n_gen + n_k) if n_gen + n_k else 0.0  # p_DMT = (1 - lambda) p_gen + lambda p_spec
            stages.append(_stage(f"stage-2/{k_label(k)}", [Part("new", g_src, [s.pool for s in g_src], n_gen),
                                                           Part("replay", rsrc, rpools, n_k)], cfg, cat,
                                 {"k": str(k), "lambda": round(lam, 6), "specialist_records": n_k,
                                  "n_spec": n_spec}))
    used = {s.name for st in stages for s, _, pk in st["used"] if len(pk)}
    meta["unused_sources"] = sorted(s.name for s in srcs if s.name not in used)
    return stages, meta


# ----------------------------------------------------------------------------- copy rows (map)

def _append_stage(meta: pa.Array, stage: str) -> pa.Array:
    """meta.stages + [stage] for every row, vectorised over the list offsets."""
    meta = meta.combine_chunks() if isinstance(meta, pa.ChunkedArray) else meta
    fields = {f.name: pc.struct_field(meta, f.name) for f in meta.type}
    st = fields["stages"]
    lens = pc.fill_null(pc.list_value_length(st), 0).to_numpy().astype(np.int64)
    vals = pa.concat_arrays([pc.list_flatten(st), pa.array([stage], pa.string())])
    idx = np.insert(np.arange(len(vals) - 1), np.cumsum(lens), len(vals) - 1)
    offs = np.concatenate([[0], np.cumsum(lens + 1)]).astype(np.int32)
    fields["stages"] = pa.ListArray.from_arrays(pa.array(offs), vals.take(pa.array(idx)))
    return pa.StructArray.from_arrays(list(fields.values()), fields=list(meta.type), mask=meta.is_null())


def _finish(t: pa.Table, domain: str | None) -> pa.Table:
    if domain is not None:
        t = t.set_column(t.schema.get_field_index("domain"), SCHEMA.field("domain"),
                         pa.array([domain] * t.num_rows, pa.string()))
    i = t.schema.get_field_index("meta")
    return t.set_column(i, SCHEMA.field("meta"), _append_stage(t.column("meta"), "mix"))


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
    shards.mark_complete(folder, manifest)
    if progress:
        print(f"[mix] {len(rows)} records -> {folder}", file=sys.stderr)


def run_mix(sources: list, out: str, params: dict | None = None, *, seed: int | None = None,
            progress: bool = True) -> dict:
    """Hold out validation, plan and write OUT/final/ (see module doc); returns the mix manifest.
    A finished OUT/final with the same inputs and config is returned as is; an interrupted one
    is completed (the plan is recomputed identically, finished folders are kept)."""
    from ..runner import versions

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
    srcs = _make_sources(cat, specs)
    _check_keys(cfg, srcs, cat)
    try:
        hold = _holdout(cat, srcs, cfg, progress)
        stages, meta = plan(cat, srcs, cfg)
    except MixError as e:
        raise ConfigError(f"mix: {e}") from None
    os.makedirs(final, exist_ok=True)
    shards.atomic_write_bytes(fp_path, fp.encode())
    base = {"stage": "mix", "strategy": cfg.strategy, "seed": cfg.seed, "versions": versions(), "fingerprint": fp}
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
    shards.atomic_write_json(mpath, manifest)
    return manifest


def _by_source(cat: Catalog, srcs: list[Source], rows: np.ndarray) -> dict:
    out = {}
    for s in srcs:
        m = (cat.folder[rows] == s.folder) & (cat.domain[rows] == cat.domain_names.index(s.domain))
        if m.any():
            out[s.name] = {"domain": s.domain, "count": int(m.sum())}
    return out
