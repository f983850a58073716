"""Validation hold-out, mixture weights and the four SFT strategies, planned on row indices.

Everything here works on a *catalog*: small per-record columns of the input folders as numpy
arrays over global row numbers. It needs these attributes (pipeline/stages/mix.py builds one
from shard folders): ``n``; ``folder``, ``domain`` (codes into ``domain_names``), ``group``
(near-duplicate group id), ``turns`` (user turns), one entry per row; ``domain_names``;
``folders`` (one dict per input folder); ``all_clustered`` (every record has a dedup cluster).
No text, no I/O: a plan is (stage name, rows in training order, manifest info); the stage
copies the rows afterwards. Formulas: docs/design.md#mixture-weights and
docs/design.md#sft-strategies.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from ..config import ConfigError
from .weights import (check_repeats, choose_groups, explicit, holdout_size, k_label, largest_remainder, parse_k,
                      proportional, replay_for, rng_for, sample, split_total, temperature, tier_decay)

STRATEGIES = ("multi_task", "sequential", "mixed_sequential", "dmt")
LONG = "long_multiturn"  # validation folder of the long multi-turn split (docs/design.md#validation-sets)
DEFAULT_SPECIALIST = "code,math"


def _domains(value, field_name: str) -> list[str] | None:
    if value is None:
        return None
    vals = value if isinstance(value, (list, tuple)) else str(value).split(",")
    out = [str(v).strip() for v in vals if str(v).strip()]
    if not out:
        raise ConfigError(f"mix.{field_name}: no domains given")
    return out



@dataclass
class Source:
    name: str
    domain: str
    folder: int  # index into Catalog.folders
    tier: int = 0
    weight: float | None = None
    pool: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # training rows (global)
    n: int = 0



def make_sources(cat, specs: list[dict]) -> list[Source]:
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



def holdout(cat, srcs: list[Source], cfg, near) -> dict:
    """Choose validation rows per domain (whole groups), exclude training rows that leak.
    `near(skip, in_val) -> (mask, examples)` finds training rows near a validation row by
    content (the caller reads the text); it is called when cfg.leakage resolves to minhash."""
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
    # No leakage (docs/design.md#validation-sets): a record sharing a dedup cluster (or id) with validation stays out of training
    val_groups = np.unique(cat.group[in_val])
    excluded = ~in_val & np.isin(cat.group, val_groups)
    report["excluded_same_cluster"] = int(excluded.sum())
    method = cfg.leakage
    if method == "auto":
        method = "clusters" if cat.all_clustered and len(cat.folders) == 1 else "minhash"
    report["leakage_method"] = method
    if method == "minhash" and in_val.any():
        near_rows, examples = near(in_val | excluded, in_val)
        report["excluded_near_duplicate"] = int(near_rows.sum())
        report["near_duplicate_examples"] = examples
        excluded |= near_rows
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



FORMULAS = {
    "proportional": "p_i = n_i / sum_j n_j (docs/design.md#mixture-weights)",
    "temperature": "p_i = n_i^a / sum_j n_j^a (docs/design.md#mixture-weights)",
    "explicit": "p_i = w_i / sum_j w_j",
}


def _weights(group: list[Source], sizes: np.ndarray, cfg, cat) -> tuple[np.ndarray, dict]:
    """Mixture weights over `group` (sizes = what each can be drawn from), with tiers."""
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


def check_keys(cfg, srcs: list[Source], cat) -> None:
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


def _draw(part: Part, cfg, cat, stage: str) -> tuple[list[np.ndarray], dict]:
    sizes = np.array([len(p) for p in part.pools], dtype=np.int64)
    p, info = _weights(part.sources, sizes, cfg, cat)
    counts = largest_remainder(part.total, p)  # exact integer quotas
    check_repeats(counts, sizes, cfg.max_repeat, [s.name for s in part.sources], f" ({stage}, {part.role})")
    picks = [sample(pool, int(c), rng_for(cfg.seed, stage, part.role, s.name))
             for s, pool, c in zip(part.sources, part.pools, counts)]
    info["counts"] = {s.name: int(c) for s, c in zip(part.sources, counts)}
    return picks, info


def _stage(name: str, parts: list[Part], cfg, cat, extra: dict) -> dict:
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
    """Rows earlier stages used, per source: what replay draws from."""
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


def _replay_values(cfg, n_stages: int, default: float) -> list[float]:
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


def _split_domains(cfg, cat) -> tuple[list[str], list[str]]:
    spec = _domains(cfg.specialist, "specialist") or []
    gen = _domains(cfg.general, "general")
    for what, ds in (("specialist", spec), ("general", gen or [])):
        bad = sorted(set(ds) - set(cat.domain_names))
        if bad:
            raise ConfigError(f"mix.{what}: unknown domain(s) {bad}; domains in the sources: {cat.domain_names}")
    if cfg.specialist == DEFAULT_SPECIALIST:  # defaults: the default specialists present
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


def _curriculum(cfg, cat, default_lambda: float) -> list[dict]:
    cur = cfg.curriculum
    if cur is None:
        spec, gen = _split_domains(cfg, cat)
        cur = [gen, spec]  # general -> special (docs/design.md#sft-strategies 2)
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


def plan(cat, srcs: list[Source], cfg) -> tuple[list[dict], dict]:
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
                raise ConfigError(f"mix.replay: mixed_sequential specialist replay {lam} outside 5%-20% (docs/design.md#sft-strategies 3)")
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
            if c["total"]:  # docs/design.md#sft-strategies 2: p(t) = (1 - lambda_t) p_new + lambda_t p_replay
                n_new, n_rep = split_total(int(c["total"]), lam)
            else:
                n_new = _natural(new_pools, c["epochs"])
                n_rep = replay_for(n_new, lam)
            if n_rep and not rsrc:
                raise ConfigError(f"mix: stage {t} asks replay {lam} but no earlier stage has data")
            stages.append(_stage(f"stage-{t}", [Part("new", new, new_pools, n_new),
                                                Part("replay", rsrc, rpools, n_rep)], cfg, cat,
                                 {"lambda": lam, "domains_new": c["domains"]}))
    else:  # dmt (docs/design.md#sft-strategies 4)
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
