"""Dedup stage: exact, near (MinHash LSH + conversation prefixes) and semantic (embedding)
duplicates of whole conversations, as map tasks and a columnar reduce (docs/stages/dedup.md).

Map, one task per input part (in worker processes, resumable): per conversation the exact key
and the prefix keys at every turn boundary (2 x 64-bit hashes, pipeline/dedup/keys.py), the keep
score, the MinHash signature and LSH band keys (pipeline/dedup/minhash.py) and, for the semantic
method, the embedding (float16), written as NumPy files under `.work/map/<task>/`. Nothing per
record outlives the task in Python objects.
Map outputs are grouped by hash bucket of their keys, so the reduce runs as rounds of tasks,
each on one hash partition (a range of buckets) of every map task's keys, spread over the
engine's workers (pipeline/dedup/reduce.py for the array functions), each method on what the
previous ones kept:
 1. exact: group by exact key (all rows of a key meet in one partition);
 2. near: a conversation whose whole key is a prefix key of a longer one (same source; found in
    the same partition as 1, checked against the owner's survival in one `alive` task), then
    LSH (band keys -> sort -> buckets -> candidate pairs), candidates verified by estimated
    Jaccard >= `threshold` from the memory-mapped signatures, connected components as forests
    per partition merged in rounds;
 3. semantic (SemDeDup), in the driver: k-means fitted on a sample, every conversation
    assigned, then within each cluster pairs with cosine >= 1 - eps, one cluster at a time.
The driver holds no column of the whole corpus for 1-2: the keep order of a group is computed
from the scores and ids of its rows when needed (`Prefs`), decisions are kept for dropped rows
only and written part by part.
In every cluster one record is kept by `keep` (longest = most turns then characters, which
favours session tails; newest; quality; ties to the smaller id). A record is dropped only when
it is itself within the threshold of the record kept for it: members that joined a cluster
through a chain of neighbours are clustered again (`near_reclustered` in the manifest). The
others go to rejected/ with reason exact_dup / near_dup / semantic_dup and the kept id; kept
records carry `meta.dedup_cluster`. Decisions are written per input part, and a second pass
filters each part with them (pyarrow, no per-record Python for kept records).
"""
from __future__ import annotations

import glob
import json
import mmap
import os
import shutil
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import integrity, shards
from ..config import ConfigError
from ..dedup import reduce as R
from ..dedup import semantic
from ..dedup.keys import batch_keys, batch_scores
from ..dedup.minhash import MinHasher, band_keys, bucket_pairs, choose_bands, datasketch_pairs, unique_pairs
from ..schema import SCHEMA, with_stage
from ..text import joined_text
from .base import Stage, StageContext, Task, decided_batches, decisions_path, part_tasks

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
    # LSH shape; 0: chosen for >= 99% candidate probability at threshold - lsh_margin. A margin
    # of 0.05 gives 64 x 2 at 0.5, which makes random pairs candidates (P 0.006 at Jaccard 0.01:
    # ~N^2 candidates); 0.02 gives 42 x 3: 28x fewer candidates and the same decisions on
    # bench/dedup_bench.py (docs/benchmarks.md#scale).
    bands: int = 0
    rows: int = 0
    lsh_margin: float = 0.02
    lsh: str = "bands"  # bands (hash-partition tasks + component forests) | datasketch (in-memory MinHashLSH)
    # LSH band keys are hash-partitioned; each partition is one reduce task (candidates,
    # verification, components), so the reduce spreads over the engine's workers. 0: one
    # partition per 4M band keys (at most 4096). Decisions do not depend on it.
    partitions: int = 0
    embedder: str = "use-m3"
    embed_chars: int = 512  # conversation text embedded (head of the joined messages; embedding is the cost)
    cache_dir: str | None = None  # embedding cache; vectors only, keyed by text hash
    eps: float = 0.04  # semantic: cosine >= 1 - eps is a duplicate
    clusters: int = 0  # k-means clusters; 0: ceil(n / 300)
    kmeans_sample: int = 50_000  # k-means is fitted on at most this many conversations, then assigns all
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
        if not 0 <= int(self.partitions) <= N_BUCKETS:
            raise ConfigError(f"dedup.partitions must be in [0, {N_BUCKETS}] (0: by size), got {self.partitions}")


class Dedup(Stage):
    name = "dedup"
    Config = DedupConfig

    # ------------------------------------------------------------- map
    def map_plan(self, inp, cfg: DedupConfig) -> list[Task]:
        if inp is None or not shards.is_complete(inp):
            raise ConfigError(f"dedup: input {inp!r} is not a finished shard folder (_SUCCESS missing)")
        return part_tasks(inp)

    def map_task(self, payload, cfg: DedupConfig, folder: str) -> dict:
        methods = cfg.method_list()
        out = _map_dir(folder, payload["index"])
        tmp = integrity.temp_name(out)  # unique per writer (host, pid): Ray may retry a task on another node
        os.makedirs(tmp)
        mh = MinHasher(cfg.num_perm, cfg.seed, cfg.n_char, cfg.n_word) if "minhash" in methods else None
        b_, r_ = _bands(cfg)
        emb = None
        if "semantic" in methods:
            from ..embed import get_embedder

            emb = get_embedder(cfg.embedder, cache_dir=cfg.cache_dir)
        cols: dict[str, list] = {k: [] for k in ("exact", "score", "length", "prefix_row", "prefix", "sig", "emb")}
        ids = []
        n = 0
        for b in shards.iter_batches_of(payload["part"]):
            for lo in range(0, b.num_rows, cfg.batch):
                b2 = b.slice(lo, cfg.batch)
                exact, prow, pref = batch_keys(b2.column("messages"), b2.column("source"))
                cols["exact"].append(exact)
                cols["score"].append(batch_scores(b2, cfg.keep))
                cols["length"].append((np.bincount(prow, minlength=b2.num_rows) + 1).astype(np.int32))
                cols["prefix_row"].append((prow + n).astype(np.int64))
                cols["prefix"].append(pref)
                ids.append(b2.column("id"))
                if mh is not None or emb is not None:
                    texts = joined_text(b2.column("messages"))
                    if mh is not None:
                        cols["sig"].append(mh.signatures(texts.to_pylist(), b2.column("lang").to_pylist()))
                    if emb is not None:
                        heads = pc.utf8_slice_codeunits(texts, 0, cfg.embed_chars).to_pylist()
                        cols["emb"].append(np.asarray(emb.encode(heads), dtype=np.float16))
                n += b2.num_rows
        empty = {"exact": ((0, 2), np.uint64), "score": ((0, 3), np.float64), "length": ((0,), np.int32),
                 "prefix_row": ((0,), np.int64), "prefix": ((0, 2), np.uint64),
                 "sig": ((0, cfg.num_perm), np.uint32), "emb": ((0, emb.dim if emb else 0), np.float16)}
        for k, parts in cols.items():
            if k == "sig" and mh is None or k == "emb" and emb is None:
                continue
            np.save(os.path.join(tmp, f"{k}.npy"), np.concatenate(parts) if parts else np.zeros(*empty[k]))
        # exact keys and prefix keys grouped by hash bucket (same hash: a whole key and an equal
        # prefix key land in one partition), for the exact/prefix reduce tasks
        exact = np.load(os.path.join(tmp, "exact.npy"))
        order = np.argsort(_bucket(exact[:, 0]), kind="stable")
        np.save(os.path.join(tmp, "exact_rows.npy"), order.astype(np.int32))
        np.save(os.path.join(tmp, "exact_off.npy"), _offsets(exact[order, 0]))
        pref_keys = np.load(os.path.join(tmp, "prefix.npy"))
        order = np.argsort(_bucket(pref_keys[:, 0]), kind="stable")
        np.save(os.path.join(tmp, "prefix.npy"), pref_keys[order])
        np.save(os.path.join(tmp, "prefix_row.npy"), np.load(os.path.join(tmp, "prefix_row.npy"))[order])
        np.save(os.path.join(tmp, "prefix_off.npy"), _offsets(pref_keys[order, 0]))
        del exact, pref_keys, order
        if mh is not None:  # band keys, grouped by hash bucket: a reduce task reads its buckets' slice
            sig = np.load(os.path.join(tmp, "sig.npy"))
            keys = band_keys(sig, b_, r_).reshape(-1)
            order = np.argsort(_bucket(keys), kind="stable")
            np.save(os.path.join(tmp, "lsh_keys.npy"), keys[order])
            np.save(os.path.join(tmp, "lsh_rows.npy"), (order // b_).astype(np.int32))
            np.save(os.path.join(tmp, "lsh_off.npy"), _offsets(keys[order]))
        with pa.OSFile(os.path.join(tmp, "ids.arrow"), "wb") as f:
            with pa.ipc.new_file(f, pa.schema([("id", pa.string())])) as w:
                for a in ids:
                    w.write_batch(pa.record_batch([a], names=["id"]))
        shards.publish_dir(tmp, out)
        return {"rows": n}

    # ------------------------------------------------------------- reduce
    def reduce_plan(self, inp, cfg: DedupConfig, folder: str) -> list[list[Task]]:
        """Rounds of reduce tasks, run by the engine (so they spread over its workers and resume
        by their markers); the driver only plans, then writes the decisions (`reduce`):
        1. exact and prefix keys, one task per hash partition; one `alive` task;
        2. MinHash: one task per hash partition of the band keys (candidates, verification,
           component forest), merge rounds of forests, one `near` task (the keep policy);
        3. semantic: one `kmeans` task (fit on a sample), one `assign` task per input part, one
           task per range of clusters (pairs, forest), merge rounds, one `semres` task."""
        methods = cfg.method_list()
        red = os.path.join(folder, ".work", "reduce")
        parts = part_tasks(inp)
        dirs = self._dirs(inp, folder)
        rows = [json.load(open(os.path.join(folder, ".work", "map", f"{t.name}.json")))["summary"]["rows"]
                for t in parts]
        n = int(sum(rows))
        shards.atomic_write_bytes(os.path.join(red, "offsets.npy"), _npy(np.r_[0, np.cumsum(rows)].astype(np.int64)))
        shards.atomic_write_bytes(os.path.join(red, "parts.npy"),
                                  _npy(np.array([t.payload["index"] for t in parts], np.int64)))
        keys = sum(int(np.load(os.path.join(d, "exact_off.npy"))[-1] + np.load(os.path.join(d, "prefix_off.npy"))[-1])
                   for d in dirs)
        rounds = [_partition_tasks("exact", keys, cfg), [_one("alive")]]
        if "minhash" in methods:
            if cfg.lsh == "bands":
                entries = sum(int(np.load(os.path.join(d, "lsh_off.npy"))[-1]) for d in dirs)
                rounds.append(_partition_tasks("lsh", entries, cfg))
                rounds += _merge_rounds("merge", rounds[-1])
            rounds.append([_one("near")])
        if "semantic" in methods:
            rounds.append([_one("kmeans")])
            rounds.append([Task(f"assign-{k:05d}", {"kind": "assign", "name": f"assign-{k:05d}", "slot": k})
                           for k in range(len(parts))])
            # a cluster's cost is its size squared (~300 rows): one task per 1M conversations
            rounds.append(_partition_tasks("sem", 4 * n, cfg))
            rounds += _merge_rounds("smerge", rounds[-1])
            rounds.append([_one("semres")])
        last = {t.payload["base"]: f"forest-{t.name}" for rnd in rounds for t in rnd if "base" in t.payload}
        shards.atomic_write_json(os.path.join(red, "plan.json"), last)
        return rounds

    def reduce_task(self, payload, cfg: DedupConfig, folder: str) -> dict:
        red = os.path.join(folder, ".work", "reduce")
        kind = payload["kind"]
        if kind == "alive":
            return self._alive(cfg, folder)
        offsets = np.load(os.path.join(red, "offsets.npy"))  # first global row of each map task
        dirs = [_map_dir(folder, int(i)) for i in np.load(os.path.join(red, "parts.npy"))]
        if kind == "exact":
            return self._exact_partition(payload, cfg, dirs, offsets, red)
        if kind == "near":
            return self._near(cfg, dirs, offsets, red)
        if kind == "kmeans":
            return self._kmeans(cfg, dirs, offsets, red)
        if kind == "assign":
            return self._assign(payload["slot"], dirs, offsets, red)
        if kind == "semres":
            return self._semres(cfg, dirs, offsets, red)
        if kind == "merge":  # components of the union of some forests
            fr = R.forest(np.concatenate([np.load(os.path.join(red, f"{n}.npy")) for n in payload["inputs"]]))
            summary = {"nodes": int(len(fr))}
        elif kind == "sem":  # a range of k-means clusters: pairs with cosine >= 1 - eps, their components
            a, b = payload["buckets"]
            labels, rows = _gather_clusters(red, len(dirs), a, b)
            lab = np.unique(labels, return_inverse=True)[1].reshape(-1)
            embs = RowStore(dirs, "emb", offsets)
            pairs, _ = semantic.cluster_pairs_by(lambda r: embs.take(rows[r]).astype(np.float32), lab,
                                                 int(lab.max()) + 1 if len(lab) else 0, cfg.eps)
            good = unique_pairs(rows[pairs]) if len(pairs) else np.zeros((0, 2), np.int64)
            shards.atomic_write_bytes(os.path.join(red, f"pairs-{payload['name']}.npy"), _npy(good))
            fr = R.forest(good)
            summary = {"rows": int(len(rows)), "pairs": int(len(good))}
        else:  # one hash partition of the band keys: candidates, verified, their components
            a, b = payload["buckets"]
            alive = np.load(os.path.join(red, "alive.npy"), mmap_mode="r")
            keys, rows = _gather(dirs, offsets, "lsh_off", a, b, "lsh_keys", "lsh_rows")
            live = alive[rows]
            pairs = unique_pairs(bucket_pairs(keys[live], rows[live]))
            del keys, rows
            est = _verify(pairs, None, RowStore(dirs, "sig", offsets))
            good = pairs[est >= cfg.threshold]
            shards.atomic_write_bytes(os.path.join(red, f"pairs-{payload['name']}.npy"), _npy(good))
            fr = R.forest(good)
            summary = {"candidates": int(len(pairs)), "verified": int(len(good))}
        shards.atomic_write_bytes(os.path.join(red, f"forest-{payload['name']}.npy"), _npy(fr))
        return summary

    def _exact_partition(self, payload, cfg: DedupConfig, dirs, offsets, red) -> dict:
        """One hash partition of the whole keys and prefix keys: exact duplicates (every row of a
        key is here, so they are decided here) and prefix candidates (row, longer owner), whose
        owner's survival `alive` checks."""
        methods = cfg.method_list()
        a, b = payload["buckets"]
        exact, rows = _gather(dirs, offsets, "exact_off", a, b, "exact", "exact_rows", index=True)
        prefs = Prefs(dirs, offsets)
        gone = np.zeros((0, 2), np.int64)
        groups = 0
        if "exact" in methods and len(rows):
            order = np.lexsort((rows, exact[:, 1], exact[:, 0]))
            k, r = exact[order], rows[order]
            gid = np.cumsum(R._runs(k)) - 1
            multi = np.bincount(gid)[gid] > 1  # only rows sharing a key need their preference
            d, by, groups = R.best_of_groups(k[multi], np.arange(int(multi.sum())), prefs[r[multi]])
            gone = np.stack([r[multi][d], r[multi][by]], axis=1)
        cand = np.zeros((0, 2), np.int64)
        if "minhash" in methods and cfg.prefix:
            pkeys, prow = _gather(dirs, offsets, "prefix_off", a, b, "prefix", "prefix_row")
            okeys, owners = R.prefix_owners(prow, pkeys, RowStore(dirs, "length", offsets).take(prow))
            live = ~np.isin(rows, gone[:, 0])
            cand = R.prefix_candidates(rows[live], exact[live], okeys, owners)
        shards.atomic_write_bytes(os.path.join(red, f"xgone-{payload['name']}.npy"), _npy(gone))
        shards.atomic_write_bytes(os.path.join(red, f"xcand-{payload['name']}.npy"), _npy(cand))
        return {"rows": int(len(rows)), "exact_clusters": int(groups), "prefix_candidates": int(len(cand))}

    def _alive(self, cfg: DedupConfig, folder: str) -> dict:
        """From the exact partitions' drops: prefix candidates whose owner survived are dropped
        too; writes `alive` (one byte per row, memory-mapped by later tasks) and the drops so
        far (row, kept row, reason code), sorted by row."""
        red = os.path.join(folder, ".work", "reduce")
        n = int(np.load(os.path.join(red, "offsets.npy"))[-1])
        names = [os.path.basename(p)[:-5] for p in sorted(glob.glob(os.path.join(red, "exact-*.json")))]
        xg = [np.load(os.path.join(red, f"xgone-{x}.npy")) for x in names]
        xg = np.concatenate(xg) if xg else np.zeros((0, 2), np.int64)
        alive = np.ones(n, bool)
        alive[xg[:, 0]] = False
        xc = [np.load(os.path.join(red, f"xcand-{x}.npy")) for x in names]
        xc = np.concatenate(xc) if xc else np.zeros((0, 2), np.int64)
        pg = xc[alive[xc[:, 1]]]  # the longer conversation survived its exact group
        alive[pg[:, 0]] = False
        gone = np.concatenate([np.c_[xg, np.ones(len(xg), np.int64)], np.c_[pg, np.full(len(pg), 4, np.int64)]])
        gone = gone[np.argsort(gone[:, 0], kind="stable")]
        shards.atomic_write_bytes(os.path.join(red, "alive.npy"), _npy(alive))
        shards.atomic_write_bytes(os.path.join(red, "gone.npy"), _npy(gone))
        summ = [json.load(open(os.path.join(red, f"{x}.json")))["summary"] for x in names]
        stats = {"records": n, "exact_clusters": sum(x["exact_clusters"] for x in summ)}
        if "minhash" in cfg.method_list():
            stats["prefix_dups"] = int(len(pg))
        shards.atomic_write_json(os.path.join(red, "early.json"), stats)
        return {"alive": int(alive.sum())}

    def _near(self, cfg: DedupConfig, dirs, lo, red) -> dict:
        """The keep policy on the merged components of verified MinHash pairs (no chaining)."""
        prefs, sigs = Prefs(dirs, lo), RowStore(dirs, "sig", lo)
        b_, r_ = _bands(cfg)
        stats: dict = {"lsh_bands_rows": [b_, r_]}

        def jaccard(a, b):
            return _verify(np.stack([a, b], 1), None, sigs)

        if cfg.lsh == "bands":
            lsh = sorted(glob.glob(os.path.join(red, "lsh-*.json")))
            summ = [json.load(open(p))["summary"] for p in lsh]
            stats["lsh_partitions"] = len(lsh)
            # a pair found in two partitions (through two bands) counts in each
            stats["lsh_candidates"] = sum(x["candidates"] for x in summ)
            stats["lsh_verified"] = sum(x["verified"] for x in summ)
            d, by, s, st = R.resolve_forest(_last_forest(red, "lsh"), prefs, jaccard, cfg.threshold,
                                            _pairs_among(red, "lsh"))
        else:
            idx = np.flatnonzero(np.load(os.path.join(red, "alive.npy")))
            pairs = datasketch_pairs(sigs.take(idx), b_, r_, cfg.seed) if len(idx) > 1 else np.zeros((0, 2), np.int64)
            stats["lsh_candidates"] = int(len(pairs))
            good = pairs[_verify(pairs, idx, sigs) >= cfg.threshold]
            stats["lsh_verified"] = int(len(good))
            d, by, s, st = R.resolve(idx, good, prefs, jaccard, cfg.threshold)
        stats["near_clusters"] = st["clusters"]
        stats["near_reclustered"] = st["reclustered"]
        saved = st["reclustered_rows"]
        saved = saved[~np.isin(saved, d)]  # chained to a kept record, but not close to it: kept
        stats["near_chain_kept"] = int(len(saved))
        stats["near_chain_kept_examples"] = IdStore(dirs, lo).take(saved[:10]).to_pylist()
        _save_drops(red, "near", d, by, s, stats)
        return {"dropped": int(len(d))}

    def _kmeans(self, cfg: DedupConfig, dirs, lo, red) -> dict:
        """Centres fitted on a seeded sample of the conversations still alive (all of them when
        there are at most `kmeans_sample`)."""
        idx = np.flatnonzero(_alive_now(red, 0, int(lo[-1])))
        k = semantic.n_clusters(len(idx), cfg.clusters)
        centres = np.zeros((0, 0), np.float32)
        if k > 1:
            from sklearn.cluster import KMeans

            if len(idx) > cfg.kmeans_sample:
                idx = idx[np.sort(np.random.default_rng(cfg.seed).choice(len(idx), size=cfg.kmeans_sample,
                                                                           replace=False))]
            km = KMeans(n_clusters=k, n_init=1, random_state=cfg.seed, max_iter=50)
            centres = km.fit(RowStore(dirs, "emb", lo).take(idx).astype(np.float32)).cluster_centers_.astype(np.float32)
        shards.atomic_write_bytes(os.path.join(red, "centres.npy"), _npy(centres))
        return {"k": int(k)}

    def _assign(self, p: int, dirs, lo, red) -> dict:
        """Input part `p`'s alive rows to their nearest centre, grouped by hash bucket of the
        cluster for the `sem` tasks."""
        embs = RowStore(dirs, "emb", lo)
        rows = np.flatnonzero(_alive_now(red, int(lo[p]), int(lo[p + 1]))) + lo[p]
        centres = np.load(os.path.join(red, "centres.npy"))
        labels = np.zeros(len(rows), np.int64)
        if len(centres):
            c2 = (centres.astype(np.float64) ** 2).sum(1)
            for a in range(0, len(rows), 16384):  # nearest centre, chunk by chunk
                x = embs.take(rows[a:a + 16384]).astype(np.float64)
                labels[a:a + 16384] = np.argmin(c2[None, :] - 2 * x @ centres.T.astype(np.float64), axis=1)
        k = max(1, len(centres))
        order = np.argsort(labels, kind="stable")
        bucket = labels[order] * N_BUCKETS // k  # clusters in order, spread over the buckets
        for name, arr in (("rows", rows[order]), ("labels", labels[order]),
                          ("off", np.searchsorted(bucket, np.arange(N_BUCKETS + 1)).astype(np.int64))):
            shards.atomic_write_bytes(os.path.join(red, f"sem-{name}-{p:05d}.npy"), _npy(arr))
        return {"rows": int(len(rows))}

    def _semres(self, cfg: DedupConfig, dirs, lo, red) -> dict:
        """The keep policy on the merged components of semantic pairs (no chaining)."""
        embs = RowStore(dirs, "emb", lo)

        def cosine(a, b):
            return np.einsum("ij,ij->i", embs.take(a).astype(np.float32), embs.take(b).astype(np.float32))

        d, by, s, st = R.resolve_forest(_last_forest(red, "sem"), Prefs(dirs, lo), cosine, 1 - cfg.eps,
                                        _pairs_among(red, "sem"))
        from ..embed import get_embedder

        k = json.load(open(os.path.join(red, "kmeans.json")))["summary"]["k"]
        stats = {"semantic_clusters": st["clusters"], "semantic_reclustered": st["reclustered"],
                 "semantic_chain_kept": int(len(np.setdiff1d(st["reclustered_rows"], d))),
                 "semantic_kmeans_k": int(k), "embedder": get_embedder(cfg.embedder, cache_dir=cfg.cache_dir).name}
        _save_drops(red, "semres", d, by, s, stats)
        return {"dropped": int(len(d))}

    def _dirs(self, inp, folder) -> list[str]:
        return [_map_dir(folder, t.payload["index"]) for t in part_tasks(inp)]

    def reduce(self, inp, cfg: DedupConfig, folder: str) -> None:
        """In the driver, on the dropped rows only (no column of the whole corpus): every
        method's drops, each row's representative, then the decisions of each input part."""
        red = os.path.join(folder, ".work", "reduce")
        parts = part_tasks(inp)
        dirs = self._dirs(inp, folder)
        lo = np.load(os.path.join(red, "offsets.npy"))
        ids = IdStore(dirs, lo)
        with open(os.path.join(red, "early.json")) as f:
            stats = json.load(f)
        early = np.load(os.path.join(red, "gone.npy"))
        # dropped rows: (row, kept row, reason code, similarity)
        found = [(early[:, 0], early[:, 1], early[:, 2].astype(np.int8), np.full(len(early), np.nan))]
        for step, code in (("near", 2), ("semres", 3)):
            if os.path.exists(os.path.join(red, f"{step}.npy")):
                d = np.load(os.path.join(red, f"{step}.npy"))
                found.append((d[:, 0], d[:, 1], np.full(len(d), code, np.int8), np.load(os.path.join(red, f"{step}-sim.npy"))))
                with open(os.path.join(red, f"{step}-stats.json")) as f:
                    stats.update(json.load(f))
        gone, by, reason, sim = (np.concatenate(c) for c in zip(*found))
        order = np.argsort(gone, kind="stable")
        gone, by, reason, sim = gone[order].astype(np.int64), by[order].astype(np.int64), reason[order], sim[order]
        stats["dropped"] = {}
        for c, r in enumerate(REASONS[1:], 1):
            stats["dropped"][r] = stats["dropped"].get(r, 0) + int((reason == c).sum())
        # the representative of every dropped row: follow kept rows that were dropped themselves
        rep = by.copy()
        while len(gone):
            pos = np.minimum(np.searchsorted(gone, rep), len(gone) - 1)
            hop = gone[pos] == rep
            if not hop.any():
                break
            rep[hop] = by[pos[hop]]
        kept_ids = ids.take(by).to_pylist()
        detail = _details(reason, sim, kept_ids)
        stats["examples"] = [{"dropped": x, "kept": kept_ids[k], "reason": REASONS[reason[k]], "detail": detail[k]}
                             for k, x in enumerate(ids.take(gone[:5]).to_pylist())]
        rep_ids = ids.take(rep)
        reason_s = pa.array([REASONS[c] for c in reason.tolist()], pa.string())
        detail_a = pa.array(detail, pa.string())
        none = pa.nulls(1, pa.string())
        os.makedirs(os.path.join(folder, ".work", "decisions"), exist_ok=True)
        for k, (t, a, z) in enumerate(zip(parts, lo[:-1], lo[1:])):
            g0, g1 = np.searchsorted(gone, [a, z])
            m = int(z - a)
            at = np.full(m, g1 - g0, np.int64)  # kept rows point past the part's dropped rows: null
            at[gone[g0:g1] - a] = np.arange(g1 - g0)
            at_a = pa.array(at)
            cl = np.arange(m)  # a kept row is its own cluster; a dropped one, its representative's
            cl[gone[g0:g1] - a] = m + np.arange(g1 - g0)
            tab = pa.table({"part": pa.array(np.full(m, t.payload["index"], np.int32)),
                            "row": pa.array(np.arange(m, dtype=np.int32)),
                            "reason": pa.concat_arrays([reason_s[g0:g1], none]).take(at_a),
                            "kept_id": pa.concat_arrays([rep_ids[g0:g1], none]).take(at_a),
                            "detail": pa.concat_arrays([detail_a[g0:g1], none]).take(at_a),
                            "cluster": pa.concat_arrays([ids.part(k), rep_ids[g0:g1]]).take(pa.array(cl))},
                           schema=DECISIONS)
            w = shards.PartWriter(decisions_path(folder, t.payload["index"]), DECISIONS)
            for bt in tab.to_batches():
                w.write(bt)
            w.close()
        shards.atomic_write_json(os.path.join(folder, ".work", "prepared.json"), stats)
        for sub in ("map", "reduce"):  # only decisions are needed now
            shutil.rmtree(os.path.join(folder, ".work", sub), ignore_errors=True)

    # ------------------------------------------------------------- per-part filter
    def plan(self, inp, cfg):
        return part_tasks(inp)

    def run_task(self, payload, cfg, ctx: StageContext) -> Iterator[pa.RecordBatch]:
        for batch, dec in decided_batches(payload, ctx):
            gone = pc.is_valid(dec.column("reason")).to_numpy(zero_copy_only=False)
            for i in np.flatnonzero(gone).tolist():
                rec = batch.slice(i, 1).to_pylist()[0]
                meta = rec["meta"] or {}
                ctx.reject(dec.column("reason")[i].as_py(), record_id=rec["id"], kept_id=dec.column("kept_id")[i].as_py(),
                           detail=dec.column("detail")[i].as_py(), source_file=meta.get("source_file"),
                           line=meta.get("source_line"), raw=json.dumps(rec, ensure_ascii=False, default=str))
            keep = pa.array(~gone)
            kept = batch.filter(keep)
            ctx.keep(kept.num_rows)
            if kept.num_rows:
                meta = with_stage(kept.column("meta"), "dedup",
                                  dedup_cluster=dec.column("cluster").filter(keep).combine_chunks())
                yield kept.set_column(kept.schema.get_field_index("meta"), SCHEMA.field("meta"), meta)

    def finalize(self, folder, cfg, counts):
        shutil.rmtree(os.path.join(folder, ".work", "map"), ignore_errors=True)
        with open(os.path.join(folder, ".work", "prepared.json")) as f:
            return {"dedup": json.load(f)}


REASONS = ("", "exact_dup", "near_dup", "semantic_dup", "near_dup")  # 4: prefix of a longer conversation


# hash buckets of band keys in a map task's output (an offsets array of 32 KB); partitions are
# ranges of them, so up to 4096 partition tasks (1B conversations x 42 bands: 10M keys each)
BUCKET_BITS = 12
N_BUCKETS = 1 << BUCKET_BITS


def _bucket(keys: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return ((keys * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - BUCKET_BITS)).astype(np.int64)


def _npy(a: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _bands(cfg: DedupConfig) -> tuple[int, int]:
    return (cfg.bands, cfg.rows) if cfg.bands and cfg.rows else \
        choose_bands(cfg.num_perm, cfg.threshold, margin=cfg.lsh_margin)


def _map_dir(folder: str, index: int) -> str:
    return os.path.join(folder, ".work", "map", f"part-{index:05d}")


def _offsets(keys: np.ndarray) -> np.ndarray:
    """Where each hash bucket starts in keys sorted by bucket (N_BUCKETS + 1 entries)."""
    return np.searchsorted(_bucket(keys), np.arange(N_BUCKETS + 1)).astype(np.int64)


def _partition_tasks(kind: str, entries: int, cfg: DedupConfig) -> list[Task]:
    """Hash partitions (ranges of buckets) of `entries` keys: `partitions` of them, or one per 4M."""
    q = int(cfg.partitions) or min(N_BUCKETS, max(1, -(-entries // 4_000_000)))
    edges = np.linspace(0, N_BUCKETS, q + 1).round().astype(int)
    return [Task(f"{kind}-{k:03d}", {"kind": kind, "name": f"{kind}-{k:03d}", "base": kind,
                                     "buckets": [int(edges[k]), int(edges[k + 1])]})
            for k in range(q)]


def _one(kind: str) -> Task:
    return Task(kind, {"kind": kind, "name": kind})


def _merge_rounds(prefix: str, tasks: list[Task]) -> list[list[Task]]:
    """Rounds merging the forests of `tasks` 16 at a time, down to one."""
    base, names, rounds = tasks[0].payload["base"], [f"forest-{t.name}" for t in tasks], []
    while len(names) > 1:
        groups = [names[k:k + 16] for k in range(0, len(names), 16)]
        r = len(rounds) + 1
        rounds.append([Task(f"{prefix}-{r}-{k:03d}", {"kind": "merge", "name": f"{prefix}-{r}-{k:03d}", "base": base,
                                                       "inputs": g}) for k, g in enumerate(groups)])
        names = [f"forest-{t.name}" for t in rounds[-1]]
    return rounds


def _last_forest(red: str, base: str) -> np.ndarray:
    """The forest of all of `base`'s partitions (the last merge's, or the only partition's)."""
    with open(os.path.join(red, "plan.json")) as f:
        return np.load(os.path.join(red, f"{json.load(f)[base]}.npy"))


def _pairs_among(red: str, base: str):
    """`pairs_among(rows)` for resolve_forest: the verified pairs of every `base` partition with
    both ends in `rows`, read from their files (memory-mapped) when asked."""
    files = sorted(glob.glob(os.path.join(red, f"pairs-{base}-*.npy")))

    def among(rows_):
        got = [R.among(np.load(p, mmap_mode="r"), rows_) for p in files] if len(rows_) else []
        return unique_pairs(np.concatenate(got)) if got else np.zeros((0, 2), np.int64)

    return among


def _save_drops(red: str, step: str, d, by, s, stats: dict) -> None:
    shards.atomic_write_bytes(os.path.join(red, f"{step}.npy"), _npy(np.stack([d, by], 1).astype(np.int64)))
    shards.atomic_write_bytes(os.path.join(red, f"{step}-sim.npy"), _npy(np.asarray(s, np.float64)))
    shards.atomic_write_json(os.path.join(red, f"{step}-stats.json"), stats)


def _alive_now(red: str, a: int, b: int) -> np.ndarray:
    """Rows [a, b) still alive after exact, prefix and near duplicates."""
    alive = np.array(np.load(os.path.join(red, "alive.npy"), mmap_mode="r")[a:b])
    if os.path.exists(os.path.join(red, "near.npy")):
        d = np.load(os.path.join(red, "near.npy"))[:, 0]
        alive[d[(d >= a) & (d < b)] - a] = False
    return alive


def _gather_clusters(red: str, parts: int, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
    """(cluster label, global row) of every alive row whose cluster falls in buckets [a, b)."""
    labels, rows = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for p in range(parts):
        off = np.load(os.path.join(red, f"sem-off-{p:05d}.npy"))
        labels.append(np.load(os.path.join(red, f"sem-labels-{p:05d}.npy"), mmap_mode="r")[off[a]:off[b]])
        rows.append(np.load(os.path.join(red, f"sem-rows-{p:05d}.npy"), mmap_mode="r")[off[a]:off[b]])
    return np.concatenate(labels).astype(np.int64), np.concatenate(rows).astype(np.int64)


def _gather(dirs, offsets, off_name, a, b, key_name, row_name, index=False):
    """The keys of buckets [a, b) of every map task, with their global rows. `index`: the row
    file lists rows whose keys are looked up in `key_name` (in row order), else both files are
    bucket-ordered."""
    keys, rows = [], []
    for d, lo in zip(dirs, offsets[:-1]):
        off = np.load(os.path.join(d, f"{off_name}.npy"))
        r = np.asarray(np.load(os.path.join(d, f"{row_name}.npy"), mmap_mode="r")[off[a]:off[b]])
        k = np.load(os.path.join(d, f"{key_name}.npy"), mmap_mode="r")
        keys.append(np.asarray(k[r] if index else k[off[a]:off[b]]))
        rows.append(r.astype(np.int64) + lo)
    if not keys:
        return np.zeros((0, 2), np.uint64), np.zeros(0, np.int64)
    return np.concatenate(keys), np.concatenate(rows)


class IdStore:
    """Record ids by global row number, from each map task's memory-mapped ids.arrow."""

    def __init__(self, dirs: list[str], lo: np.ndarray):
        self.lo = lo
        self.cols = []
        for d in dirs:
            with pa.memory_map(os.path.join(d, "ids.arrow")) as src:
                self.cols.append(pa.ipc.open_file(src).read_all().column("id"))

    def part(self, k: int) -> pa.Array:
        c = self.cols[k]
        return c.combine_chunks() if c.num_chunks else pa.array([], pa.string())

    def take(self, rows: np.ndarray) -> pa.Array:
        rows = np.asarray(rows, np.int64)
        if not len(rows):
            return pa.array([], pa.string())
        part = np.searchsorted(self.lo, rows, "right") - 1
        order = np.argsort(part, kind="stable")
        got = [self.cols[p].take(pa.array(rows[order][part[order] == p] - self.lo[p])).combine_chunks()
               for p in np.unique(part).tolist()]
        back = np.empty(len(rows), np.int64)
        back[order] = np.arange(len(rows))
        return pa.concat_arrays(got).take(pa.array(back))


class Prefs:
    """The keep order (pipeline/dedup/reduce.py `preference`) of any set of rows, from their
    scores and ids read when asked: `prefs[rows]` ranks `rows` among themselves, which is all a
    group's choice needs, so no rank of the whole corpus is held."""

    def __init__(self, dirs: list[str], lo: np.ndarray):
        self.scores = RowStore(dirs, "score", lo)
        self.ids = IdStore(dirs, lo)

    def __getitem__(self, rows) -> np.ndarray:
        u, inv = np.unique(np.asarray(rows, np.int64), return_inverse=True)
        rank = np.empty(len(u), np.int64)
        rank[pc.sort_indices(self.ids.take(u)).to_numpy()] = np.arange(len(u))
        return R.preference(self.scores.take(u), rank)[inv.reshape(-1)]


class RowStore:
    """Rows of a per-task column (signatures, embeddings) by global row number, memory-mapped:
    only the rows asked for are read."""

    def __init__(self, dirs: list[str], name: str, lo: np.ndarray):
        self.parts = [np.load(os.path.join(d, f"{name}.npy"), mmap_mode="r") for d in dirs]
        self.lo = lo

    def take(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, np.int64)
        part = np.searchsorted(self.lo, rows, "right") - 1
        ref = next((p for p in self.parts if len(p)), None)
        out = np.empty((len(rows), *(ref.shape[1:] if ref is not None else ())),
                       dtype=ref.dtype if ref is not None else np.float32)
        for p in np.unique(part).tolist():
            sel = np.flatnonzero(part == p)
            out[sel] = self.parts[p][rows[sel] - self.lo[p]]
            _release(self.parts[p])
        return out


def _release(a: np.ndarray) -> None:
    """Drop a read-only memory map's pages from this process once its rows are copied out: they
    stay in the page cache, but random reads over a whole column would otherwise leave the
    column's size in the process's resident memory (512 bytes per conversation for
    signatures)."""
    m = getattr(a, "_mmap", None)
    if m is not None and hasattr(m, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
        m.madvise(mmap.MADV_DONTNEED)


def _verify(pairs: np.ndarray, idx, sigs: RowStore, chunk: int = 1 << 14) -> np.ndarray:
    """Estimated Jaccard (share of equal signature values) of each pair, in chunks."""
    est = np.empty(len(pairs))
    for a in range(0, len(pairs), chunk):
        p = pairs[a:a + chunk]
        i, j = (idx[p[:, 0]], idx[p[:, 1]]) if idx is not None else (p[:, 0], p[:, 1])
        est[a:a + chunk] = (sigs.take(i) == sigs.take(j)).mean(axis=1)
    return est


def _details(reason: np.ndarray, sim: np.ndarray, kept: list) -> list:
    """The rejected row's detail, for dropped rows only (`kept`: the id kept for each)."""
    out = []
    for c, x, k in zip(reason.tolist(), sim.tolist(), kept):
        if c == 1:
            out.append(f"exact duplicate of {k}")
        elif c == 4:
            out.append(f"prefix of longer {k}")
        elif c == 2:
            out.append(f"jaccard~{x:.2f} with {k}")
        else:
            out.append(f"cosine {x:.3f} with {k}")
    return out
