"""Dedup stage: exact, near (MinHash LSH + conversation prefixes) and semantic
(embedding) duplicates of whole conversations.

Map (streaming over the input parts): per conversation an exact key (NFKC, case-folded,
letters/digits only, per message with its role), prefix keys at every turn boundary, a MinHash
signature (pipeline/dedup/minhash.py, vectorised per batch) and, for the semantic method, an embedding.
Reduce, in order, each method on what the previous ones kept:
 1. exact: equal exact keys;
 2. near: a conversation whose turns are a prefix of a longer one from the same source, and
    LSH candidates (band keys -> group-by -> union-find, or datasketch's in-memory index) whose
    estimated Jaccard >= `threshold`;
 3. semantic (SemDeDup): k-means over conversation embeddings, then within each cluster pairs
    with cosine >= 1 - eps. Cost ~ n * cluster size, never an n x n matrix.
In every cluster one record is kept by `keep` (longest = most turns then characters, which
favours session tails; newest; quality); the others go to rejected/ with reason exact_dup /
near_dup / semantic_dup and the kept id. Kept records carry `meta.dedup_cluster`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pyarrow as pa

from .. import shards
from ..config import ConfigError
from ..dedup import semantic
from ..dedup.keys import conversation_keys, conversation_text, keep_score
from ..dedup.minhash import MinHasher, band_keys, candidate_pairs, choose_bands, components, datasketch_pairs
from ..schema import SCHEMA
from .base import Stage, StageContext, decided_batches, part_tasks, with_meta

METHODS = ("exact", "minhash", "semantic")
DECISIONS = pa.schema([("part", pa.int32()), ("row", pa.int32()), ("reason", pa.string()),
                       ("kept_id", pa.string()), ("detail", pa.string()), ("cluster", pa.string())])


@dataclass
class DedupConfig:
    methods: str = "exact,minhash,semantic"  # any of exact, minhash, semantic (comma-separated or list)
    keep: str = "longest"  # longest | newest | quality
    prefix: bool = True  # a conversation that is a prefix of a longer one (same source) is a near dup
    # Defaults chosen by bench/dedup_bench.py (README): with 2-10% token edits, word 3-grams at
    # 0.7 caught only 37% of planted pairs; word 2-grams + char 3-grams at 0.5 catch 98% at
    # 97% precision.
    threshold: float = 0.5  # MinHash: estimated Jaccard of a near duplicate
    num_perm: int = 128
    seed: int = 1
    n_char: int = 3  # character n-grams (zh, mixed)
    n_word: int = 2  # word n-grams (en)
    bands: int = 0  # 0: chosen for >= 99% recall at threshold - 0.05
    rows: int = 0
    lsh: str = "bands"  # bands (map + group-by + union-find) | datasketch (in-memory MinHashLSH)
    embedder: str = "use-m3"
    embed_chars: int = 512  # conversation text embedded (head of the joined messages; embedding is the cost)
    cache_dir: str | None = None  # embedding cache; vectors only, keyed by text hash
    eps: float = 0.04  # semantic: cosine >= 1 - eps is a duplicate
    clusters: int = 0  # k-means clusters; 0: ceil(n / 300)
    batch: int = 2048

    def method_list(self) -> list[str]:
        ms = self.methods if isinstance(self.methods, list) else [m.strip() for m in str(self.methods).split(",")]
        return [m for m in ms if m]

    def check(self) -> None:
        bad = [m for m in self.method_list() if m not in METHODS]
        if bad:
            raise ConfigError(f"dedup.methods: unknown {bad}; choose from {METHODS}")
        if self.keep not in ("longest", "newest", "quality"):
            raise ConfigError(f"dedup.keep: {self.keep!r} not in longest|newest|quality")
        if not 0 < self.threshold <= 1 or not 0 <= self.eps < 1:
            raise ConfigError("dedup.threshold must be in (0, 1] and eps in [0, 1)")
        if self.lsh not in ("bands", "datasketch"):
            raise ConfigError(f"dedup.lsh: {self.lsh!r} not in bands|datasketch")


class Dedup(Stage):
    name = "dedup"
    Config = DedupConfig

    # ------------------------------------------------------------- map + reduce
    def prepare(self, inp, cfg: DedupConfig, folder: str) -> None:
        if inp is None or not shards.is_complete(inp):
            raise ConfigError(f"dedup: input {inp!r} is not a finished shard folder (_SUCCESS missing)")
        methods = cfg.method_list()
        ids, sources, scores, where = [], [], [], []
        exact, prefix_of, lengths = [], {}, []
        sigs, texts, langs, emb_texts = [], [], [], []
        mh = MinHasher(cfg.num_perm, cfg.seed, cfg.n_char, cfg.n_word)

        def flush():
            if texts:
                sigs.append(mh.signatures(texts, langs))
                texts.clear()
                langs.clear()

        n = 0
        for pi, part in enumerate(shards.data_files(inp)):
            row = 0
            for b in shards.iter_batches_of(part):
                for rec in b.to_pylist():
                    full, prefixes = conversation_keys(rec)
                    ids.append(rec["id"])
                    sources.append(rec["source"])
                    scores.append(keep_score(rec, cfg.keep))
                    where.append((pi, row))
                    exact.append(full)
                    lengths.append(len(prefixes) + 1)
                    for k in prefixes:  # keep, per prefix key, the longest record having it
                        j = prefix_of.get(k)
                        if j is None or lengths[j] < lengths[n]:
                            prefix_of[k] = n
                    if "minhash" in methods:
                        texts.append(conversation_text(rec))
                        langs.append(rec["lang"])
                        if len(texts) >= cfg.batch:
                            flush()
                    if "semantic" in methods:
                        emb_texts.append(conversation_text(rec)[: cfg.embed_chars])
                    row += 1
                    n += 1
        flush()
        order_key = [(s, i) for s, i in zip(scores, ids)]
        reason = [None] * n
        kept_by = list(range(n))
        detail = [None] * n
        stats: dict = {"records": n}

        def resolve(groups: list[list[int]], why: str, info) -> int:
            """Keep the best of each group; mark the rest. Returns clusters with > 1 member."""
            c = 0
            for g in groups:
                if len(g) < 2:
                    continue
                c += 1
                # best score wins; on ties the smaller id, so the choice never depends on order
                best = min(g, key=lambda i: (tuple(-x for x in order_key[i][0]), order_key[i][1]))
                for i in g:
                    if i != best:
                        reason[i], kept_by[i], detail[i] = why, best, info(i, best)
            return c

        alive = np.ones(n, dtype=bool)
        if "exact" in methods:
            groups: dict[bytes, list[int]] = {}
            for i, k in enumerate(exact):
                groups.setdefault(k, []).append(i)
            stats["exact_clusters"] = resolve(list(groups.values()), "exact_dup",
                                              lambda i, b: f"exact duplicate of {ids[b]}")
            alive = np.array([r is None for r in reason])
        if "minhash" in methods:
            # conversation-aware rule: a prefix of a longer conversation from the same source
            pref = 0
            if cfg.prefix:
                for i in np.flatnonzero(alive):
                    j = prefix_of.get(exact[i])
                    if j is not None and j != i and alive[j]:
                        reason[i], kept_by[i], detail[i] = "near_dup", j, f"prefix of longer {ids[j]}"
                        pref += 1
                alive = np.array([r is None for r in reason])
            stats["prefix_dups"] = pref
            sig = np.concatenate(sigs) if sigs else np.zeros((0, cfg.num_perm), np.uint32)
            b_, r_ = (cfg.bands, cfg.rows) if cfg.bands and cfg.rows else choose_bands(cfg.num_perm, cfg.threshold)
            stats["lsh_bands_rows"] = [b_, r_]
            idx = np.flatnonzero(alive)
            pairs = self._candidates(sig[idx], b_, r_, cfg) if len(idx) > 1 else np.zeros((0, 2), np.int64)
            stats["lsh_candidates"] = int(len(pairs))
            if len(pairs):
                est = (sig[idx[pairs[:, 0]]] == sig[idx[pairs[:, 1]]]).mean(axis=1)
                good = pairs[est >= cfg.threshold]
                stats["lsh_verified"] = int(len(good))
                groups = components(len(idx), good)
                stats["near_clusters"] = resolve(
                    [[int(idx[i]) for i in g] for g in groups], "near_dup",
                    lambda i, b: f"jaccard~{(sig[i] == sig[b]).mean():.2f} with {ids[b]}")
            alive = np.array([r is None for r in reason])
        if "semantic" in methods:
            stats.update(self._semantic(emb_texts, alive, cfg, resolve, ids))
        stats["dropped"] = {r: reason.count(r) for r in ("exact_dup", "near_dup", "semantic_dup")}
        stats["examples"] = [{"dropped": ids[i], "kept": ids[kept_by[i]], "reason": reason[i], "detail": detail[i]}
                             for i in [i for i in range(n) if reason[i]][:5]]
        # clusters: follow kept_by chains to the surviving representative
        rep = list(range(n))
        for i in range(n):
            j = i
            while kept_by[j] != j:
                j = kept_by[j]
            rep[i] = j
        table = pa.table({"part": pa.array([w[0] for w in where], pa.int32()),
                          "row": pa.array([w[1] for w in where], pa.int32()),
                          "reason": pa.array(reason, pa.string()),
                          "kept_id": pa.array([ids[rep[i]] if reason[i] else None for i in range(n)], pa.string()),
                          "detail": pa.array(detail, pa.string()),
                          "cluster": pa.array([ids[rep[i]] for i in range(n)], pa.string())}, schema=DECISIONS)
        w = shards.PartWriter(os.path.join(folder, ".work", "decisions.arrow"), DECISIONS)
        for b in table.to_batches():
            w.write(b)
        w.close()
        shards.atomic_write_json(os.path.join(folder, ".work", "prepared.json"), stats)

    def _candidates(self, sig, b, r, cfg):
        if cfg.lsh == "bands":
            return candidate_pairs(band_keys(sig, b, r))
        return datasketch_pairs(sig, b, r, cfg.seed)

    def _semantic(self, texts, alive, cfg, resolve, ids) -> dict:
        from ..embed import get_embedder

        idx = np.flatnonzero(alive)
        if len(idx) < 2:
            return {"semantic_clusters": 0}
        emb = get_embedder(cfg.embedder, cache_dir=cfg.cache_dir)
        X = emb.encode([texts[i] for i in idx])
        k = semantic.n_clusters(len(idx), cfg.clusters)
        labels = semantic.kmeans_labels(X, k, cfg.seed)
        pairs, cos = semantic.cluster_pairs(X, labels, k, cfg.eps)
        sims = {(int(idx[x]), int(idx[y])): c for (x, y), c in zip(pairs.tolist(), cos.tolist())}
        groups = components(len(idx), pairs)

        def info(i, b):
            s = sims.get((min(i, b), max(i, b)))
            s = s if s is not None else float(X[np.searchsorted(idx, i)] @ X[np.searchsorted(idx, b)])
            return f"cosine {s:.3f} with {ids[b]}"

        c = resolve([[int(idx[i]) for i in g] for g in groups], "semantic_dup", info)
        return {"semantic_clusters": c, "semantic_kmeans_k": int(k), "embedder": emb.name}

    # ------------------------------------------------------------- per-part filter
    def plan(self, inp, cfg):
        return part_tasks(inp)

    def run_task(self, payload, cfg, ctx: StageContext) -> Iterator[pa.RecordBatch]:
        for pairs in decided_batches(payload, ctx):
            kept = []
            for rec, d in pairs:
                if d["reason"]:
                    meta = rec["meta"] or {}
                    ctx.reject(d["reason"], record_id=rec["id"], kept_id=d["kept_id"], detail=d["detail"],
                               source_file=meta.get("source_file"),
                               line=meta.get("source_line"), raw=json.dumps(rec, ensure_ascii=False, default=str))
                else:
                    ctx.keep()
                    kept.append((rec, d["cluster"]))
            if kept:
                recs = with_meta([r for r, _ in kept], "dedup", dedup_cluster=[c for _, c in kept])
                yield pa.RecordBatch.from_pylist(recs, schema=SCHEMA)

    def finalize(self, folder, cfg, counts):
        with open(os.path.join(folder, ".work", "prepared.json")) as f:
            return {"dedup": json.load(f)}

