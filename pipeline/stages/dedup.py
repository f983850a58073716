"""Dedup stage: exact, near (MinHash LSH + conversation prefixes) and semantic (embedding)
duplicates of whole conversations, as map tasks and a columnar reduce (docs/stages/dedup.md).

Map, one task per input part (in worker processes, resumable): per conversation the exact key
and the prefix keys at every turn boundary (2 x 64-bit hashes, pipeline/dedup/keys.py), the keep
score, the MinHash signature and LSH band keys (pipeline/dedup/minhash.py) and, for the semantic
method, the embedding (float16), written as NumPy files under `.work/map/<task>/`. Nothing per
record outlives the task in Python objects.
Reduce (pipeline/dedup/reduce.py), on those columns, in order, each method on what the previous
ones kept:
 1. exact: group by exact key;
 2. near: a conversation whose whole key is a prefix key of a longer one (same source), then
    LSH band by band (band keys -> sort -> buckets -> candidate pairs), candidates verified by
    estimated Jaccard >= `threshold` from the memory-mapped signatures;
 3. semantic (SemDeDup): k-means fitted on a sample, every conversation assigned, then within
    each cluster pairs with cosine >= 1 - eps, one cluster at a time.
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
        if mh is not None:  # band keys, grouped by hash bucket: a reduce task reads its buckets' slice
            sig = np.load(os.path.join(tmp, "sig.npy"))
            keys = band_keys(sig, b_, r_).reshape(-1)
            order = np.argsort(_bucket(keys), kind="stable")
            np.save(os.path.join(tmp, "lsh_keys.npy"), keys[order])
            np.save(os.path.join(tmp, "lsh_rows.npy"), (order // b_).astype(np.int32))
            np.save(os.path.join(tmp, "lsh_off.npy"),
                    np.searchsorted(_bucket(keys[order]), np.arange(N_BUCKETS + 1)).astype(np.int64))
        with pa.OSFile(os.path.join(tmp, "ids.arrow"), "wb") as f:
            with pa.ipc.new_file(f, pa.schema([("id", pa.string())])) as w:
                for a in ids:
                    w.write_batch(pa.record_batch([a], names=["id"]))
        shards.publish_dir(tmp, out)
        return {"rows": n}

    # ------------------------------------------------------------- reduce
    def reduce_plan(self, inp, cfg: DedupConfig, folder: str) -> list[list[Task]]:
        """In the driver: exact and prefix decisions (small columns), saved for `reduce`; then
        the LSH rounds: one task per hash partition of the band keys, then merges of their
        component forests, 16 at a time, down to one."""
        methods = cfg.method_list()
        red = os.path.join(folder, ".work", "reduce")
        if not os.path.exists(os.path.join(red, "early.json")):
            self._early(inp, cfg, folder)
        if "minhash" not in methods or cfg.lsh != "bands":
            return []
        dirs = self._dirs(inp, folder)
        entries = sum(int(np.load(os.path.join(d, "lsh_off.npy"))[-1]) for d in dirs)
        q = int(cfg.partitions) or min(N_BUCKETS, max(1, -(-entries // 4_000_000)))
        edges = np.linspace(0, N_BUCKETS, q + 1).round().astype(int)
        rounds = [[Task(f"lsh-{k:03d}", {"kind": "lsh", "name": f"lsh-{k:03d}",
                                         "buckets": [int(edges[k]), int(edges[k + 1])]})
                   for k in range(q)]]
        names = [f"forest-{t.name}" for t in rounds[0]]
        r = 0
        while len(names) > 1:
            r += 1
            groups = [names[k:k + 16] for k in range(0, len(names), 16)]
            rounds.append([Task(f"merge-{r}-{k:03d}", {"kind": "merge", "name": f"merge-{r}-{k:03d}", "inputs": g}) for k, g in enumerate(groups)])
            names = [f"forest-{t.name}" for t in rounds[-1]]
        shards.atomic_write_json(os.path.join(red, "plan.json"), {"forest": names[0], "partitions": q})
        return rounds

    def reduce_task(self, payload, cfg: DedupConfig, folder: str) -> dict:
        red = os.path.join(folder, ".work", "reduce")
        if payload["kind"] == "merge":  # components of the union of some forests
            fr = R.forest(np.concatenate([np.load(os.path.join(red, f"{n}.npy")) for n in payload["inputs"]]))
            summary = {"nodes": int(len(fr))}
        else:  # one hash partition of the band keys: candidates, verified, their components
            a, b = payload["buckets"]
            offsets = np.load(os.path.join(red, "offsets.npy"))  # first global row of each map task
            dirs = [_map_dir(folder, int(i)) for i in np.load(os.path.join(red, "parts.npy"))]
            alive = np.load(os.path.join(red, "alive.npy"), mmap_mode="r")
            keys, rows = [], []
            for d, lo in zip(dirs, offsets[:-1]):
                off = np.load(os.path.join(d, "lsh_off.npy"))
                keys.append(np.load(os.path.join(d, "lsh_keys.npy"), mmap_mode="r")[off[a]:off[b]])
                rows.append(np.load(os.path.join(d, "lsh_rows.npy"), mmap_mode="r")[off[a]:off[b]] + lo)
            keys = np.concatenate(keys) if keys else np.zeros(0, np.uint64)
            rows = np.concatenate(rows).astype(np.int64) if rows else np.zeros(0, np.int64)
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

    def _dirs(self, inp, folder) -> list[str]:
        return [_map_dir(folder, t.payload["index"]) for t in part_tasks(inp)]

    def _early(self, inp, cfg: DedupConfig, folder: str) -> None:
        """Exact and prefix duplicates, the keep preference, the rows still alive for LSH."""
        methods = cfg.method_list()
        red = os.path.join(folder, ".work", "reduce")
        parts = part_tasks(inp)
        dirs = self._dirs(inp, folder)
        rows = [json.load(open(os.path.join(folder, ".work", "map", f"{t.name}.json")))["summary"]["rows"]
                for t in parts]
        lo = np.r_[0, np.cumsum(rows)].astype(np.int64)
        n = int(lo[-1])
        ids = pa.concat_arrays([_read_ids(d) for d in dirs]) if dirs else pa.array([], pa.string())
        id_rank = np.empty(n, np.int64)
        id_rank[pc.sort_indices(ids).to_numpy()] = np.arange(n)
        del ids
        pref = R.preference(_cat(dirs, "score", (0, 3), np.float64), id_rank)
        del id_rank
        exact = _cat(dirs, "exact", (0, 2), np.uint64)
        reason = np.zeros(n, np.int8)
        kept_by = np.arange(n)
        stats: dict = {"records": n}
        if "exact" in methods:
            d, by, stats["exact_clusters"] = R.best_of_groups(exact, np.arange(n), pref)
            reason[d], kept_by[d] = 1, by
        if "minhash" in methods:
            pdup = 0
            if cfg.prefix:
                length = _cat(dirs, "length", (0,), np.int32)
                keys, owners = R.prefix_owners(_cat(dirs, "prefix_row", (0,), np.int64, offsets=lo),
                                               _cat(dirs, "prefix", (0, 2), np.uint64), length)
                d, by = R.prefix_dups(exact, reason == 0, keys, owners)
                reason[d], kept_by[d] = 4, by
                pdup = len(d)
            stats["prefix_dups"] = int(pdup)
        gone = np.flatnonzero(reason)
        for name, a in (("offsets", lo), ("parts", np.array([t.payload["index"] for t in parts], np.int64)),
                        ("pref", pref), ("alive", reason == 0), ("gone", gone), ("gone_by", kept_by[gone]),
                        ("gone_reason", reason[gone])):
            shards.atomic_write_bytes(os.path.join(red, f"{name}.npy"), _npy(a))
        shards.atomic_write_json(os.path.join(red, "early.json"), stats)

    def reduce(self, inp, cfg: DedupConfig, folder: str) -> None:
        methods = cfg.method_list()
        red = os.path.join(folder, ".work", "reduce")
        parts = part_tasks(inp)
        dirs = self._dirs(inp, folder)
        lo = np.load(os.path.join(red, "offsets.npy"))
        n = int(lo[-1])
        ids = pa.concat_arrays([_read_ids(d) for d in dirs]) if dirs else pa.array([], pa.string())
        pref = np.load(os.path.join(red, "pref.npy"))
        with open(os.path.join(red, "early.json")) as f:
            stats = json.load(f)
        reason = np.zeros(n, np.int8)  # 0 kept, else index into REASONS
        kept_by = np.arange(n)
        sim = np.full(n, np.nan)
        gone = np.load(os.path.join(red, "gone.npy"))
        reason[gone], kept_by[gone] = np.load(os.path.join(red, "gone_reason.npy")), np.load(os.path.join(red, "gone_by.npy"))

        def drop(rows_, by, code, s=None):
            reason[rows_], kept_by[rows_] = code, by
            if s is not None:
                sim[rows_] = s

        alive = reason == 0
        if "minhash" in methods:
            b_, r_ = _bands(cfg)
            stats["lsh_bands_rows"] = [b_, r_]
            sigs = RowStore(dirs, "sig", lo)

            def jaccard(a, b):
                return _verify(np.stack([a, b], 1), None, sigs)

            if cfg.lsh == "bands":
                with open(os.path.join(red, "plan.json")) as f:
                    plan = json.load(f)
                summ = [json.load(open(p))["summary"] for p in sorted(glob.glob(os.path.join(red, "lsh-*.json")))]
                stats["lsh_partitions"] = plan["partitions"]
                # a pair found in two partitions (through two bands) counts in each
                stats["lsh_candidates"] = sum(x["candidates"] for x in summ)
                stats["lsh_verified"] = sum(x["verified"] for x in summ)
                fr = np.load(os.path.join(red, f"{plan['forest']}.npy"))
                pair_files = sorted(glob.glob(os.path.join(red, "pairs-lsh-*.npy")))

                def pairs_among(rows_):
                    if not len(rows_):
                        return np.zeros((0, 2), np.int64)
                    got = [R.among(np.load(p, mmap_mode="r"), rows_) for p in pair_files]
                    return unique_pairs(np.concatenate(got)) if got else np.zeros((0, 2), np.int64)

                d, by, s, st = R.resolve_forest(fr, pref, jaccard, cfg.threshold, pairs_among)
            else:
                idx = np.flatnonzero(alive)
                pairs = datasketch_pairs(sigs.take(idx), b_, r_, cfg.seed) if len(idx) > 1 else np.zeros((0, 2), np.int64)
                stats["lsh_candidates"] = int(len(pairs))
                good = pairs[_verify(pairs, idx, sigs) >= cfg.threshold]
                stats["lsh_verified"] = int(len(good))
                d, by, s, st = R.resolve(idx, good, pref, jaccard, cfg.threshold)
            drop(d, by, 2, s)
            stats["near_clusters"] = st["clusters"]
            stats["near_reclustered"] = st["reclustered"]
            saved = st["reclustered_rows"]
            alive = reason == 0
            saved = saved[alive[saved]]  # chained to a kept record, but not close to it: kept
            stats["near_chain_kept"] = int(len(saved))
            stats["near_chain_kept_examples"] = ids.take(pa.array(saved[:10])).to_pylist()
        if "semantic" in methods:
            st = self._semantic(np.flatnonzero(alive), dirs, lo, pref, cfg)
            drop(st.pop("dropped"), st.pop("kept_by"), 3, st.pop("sim"))
            stats.update(st)
        for c, r in enumerate(REASONS[1:], 1):
            stats.setdefault("dropped", {}).setdefault(r, 0)
            stats["dropped"][r] += int((reason == c).sum())
        # the representative of every row: follow kept_by to a kept row (pointer jumping)
        rep = kept_by.copy()
        while True:
            nxt = rep[rep]
            if (nxt == rep).all():
                break
            rep = nxt
        gone = np.flatnonzero(reason)
        detail = _details(gone, reason, kept_by, sim, ids)
        stats["examples"] = [{"dropped": ids[int(i)].as_py(), "kept": ids[int(kept_by[i])].as_py(),
                              "reason": REASONS[reason[i]], "detail": detail[k]}
                             for k, i in enumerate(gone[:5])]
        rep_ids = ids.take(pa.array(rep))
        # columns without a Python object per row: reason codes index a small dictionary (None
        # for kept rows), details exist for dropped rows only
        reason_s = pa.array(list(REASONS[1:]) + [None], pa.string()).take(
            pa.array(np.where(reason > 0, reason.astype(np.int64) - 1, len(REASONS) - 1)))
        at = np.full(n, len(gone), np.int64)
        at[gone] = np.arange(len(gone))
        det_a = pa.array(detail + [None], pa.string()).take(pa.array(at))
        kept_id = pc.if_else(pa.array(reason > 0), rep_ids, pa.scalar(None, pa.string()))
        os.makedirs(os.path.join(folder, ".work", "decisions"), exist_ok=True)
        for t, a, z in zip(parts, lo[:-1], lo[1:]):
            sl = slice(int(a), int(z))
            tab = pa.table({"part": pa.array(np.full(z - a, t.payload["index"], np.int32)),
                            "row": pa.array(np.arange(z - a, dtype=np.int32)),
                            "reason": reason_s[sl], "kept_id": kept_id[sl], "detail": det_a[sl],
                            "cluster": rep_ids[sl]}, schema=DECISIONS)
            w = shards.PartWriter(decisions_path(folder, t.payload["index"]), DECISIONS)
            for bt in tab.to_batches():
                w.write(bt)
            w.close()
        shards.atomic_write_json(os.path.join(folder, ".work", "prepared.json"), stats)
        for sub in ("map", "reduce"):  # only decisions are needed now
            shutil.rmtree(os.path.join(folder, ".work", sub), ignore_errors=True)

    def _semantic(self, idx, dirs, lo, pref, cfg) -> dict:
        empty = {"dropped": np.zeros(0, np.int64), "kept_by": np.zeros(0, np.int64), "sim": np.zeros(0)}
        if len(idx) < 2:
            return {**empty, "semantic_clusters": 0}
        embs = RowStore(dirs, "emb", lo)
        k = semantic.n_clusters(len(idx), cfg.clusters)
        labels = semantic.streamed_labels(lambda rows: embs.take(idx[rows]).astype(np.float32), len(idx), k,
                                          cfg.seed, cfg.kmeans_sample)
        pairs, _ = semantic.cluster_pairs_by(lambda rows: embs.take(idx[rows]).astype(np.float32), labels, k,
                                             cfg.eps)

        def cosine(a, b):
            return np.einsum("ij,ij->i", embs.take(a).astype(np.float32), embs.take(b).astype(np.float32))

        d, by, s, st = R.resolve(idx, pairs, pref, cosine, 1 - cfg.eps)
        from ..embed import get_embedder

        return {"dropped": d, "kept_by": by, "sim": s, "semantic_clusters": st["clusters"],
                "semantic_reclustered": st["reclustered"],
                "semantic_chain_kept": int(len(np.setdiff1d(st["reclustered_rows"], d))),
                "semantic_kmeans_k": int(k),
                "embedder": get_embedder(cfg.embedder, cache_dir=cfg.cache_dir).name}

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


def _read_ids(d: str) -> pa.Array:
    with pa.memory_map(os.path.join(d, "ids.arrow")) as src:
        t = pa.ipc.open_file(src).read_all()
    return t.column("id").combine_chunks() if t.num_rows else pa.array([], pa.string())


def _cat(dirs: list[str], name: str, shape: tuple, dtype, offsets=None) -> np.ndarray:
    """One column of every map task, concatenated (row numbers shifted by `offsets` if given)."""
    out = []
    for k, d in enumerate(dirs):
        p = os.path.join(d, f"{name}.npy")
        a = np.load(p) if os.path.exists(p) else np.zeros((0, *shape[1:]), dtype)
        out.append(a + offsets[k] if offsets is not None else a)
    return np.concatenate(out).astype(dtype, copy=False) if out else np.zeros(shape, dtype)


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
        return out


def _verify(pairs: np.ndarray, idx, sigs: RowStore, chunk: int = 1 << 16) -> np.ndarray:
    """Estimated Jaccard (share of equal signature values) of each pair, in chunks."""
    est = np.empty(len(pairs))
    for a in range(0, len(pairs), chunk):
        p = pairs[a:a + chunk]
        i, j = (idx[p[:, 0]], idx[p[:, 1]]) if idx is not None else (p[:, 0], p[:, 1])
        est[a:a + chunk] = (sigs.take(i) == sigs.take(j)).mean(axis=1)
    return est


def _details(gone: np.ndarray, reason: np.ndarray, kept_by: np.ndarray, sim: np.ndarray, ids: pa.Array) -> list:
    """The rejected row's detail, for dropped rows only."""
    kept = ids.take(pa.array(kept_by[gone])).to_pylist()
    out = []
    for k, i in enumerate(gone.tolist()):
        c = reason[i]
        if c == 1:
            out.append(f"exact duplicate of {kept[k]}")
        elif c == 4:
            out.append(f"prefix of longer {kept[k]}")
        elif c == 2:
            out.append(f"jaccard~{sim[i]:.2f} with {kept[k]}")
        else:
            out.append(f"cosine {sim[i]:.3f} with {kept[k]}")
    return out
