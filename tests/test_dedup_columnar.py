"""The dedup stage as map tasks + a columnar reduce: decisions equal a brute-force reference (all
pairs, exact Jaccard on the same shingles), no chaining, resumable map tasks, worker count and
kills change no byte."""
import glob
import hashlib
import os
import random
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, write_jsonl
from pipeline import runner, shards
from pipeline.dedup.keys import conversation_keys, keep_score
from pipeline.shingles import shingles

WORDS = [f"{a}{b}" for a in ("ka", "lo", "mi", "nu", "pe", "ra", "si", "to", "vu", "ze", "bo", "da")
         for b in ("rin", "tal", "mos", "vek", "dun", "pix", "gor", "hal", "zen", "qua", "wim", "yot")]
HANZI = "天地玄黄宇宙洪荒日月盈昃辰宿列张寒来暑往秋收冬藏闰余成岁律吕调阳云腾致雨露结为霜金生丽水玉出昆冈剑号巨阙珠称夜光果珍李柰菜重芥姜海咸河淡鳞潜羽翔龙师火帝鸟官人皇始制文字乃服衣裳推位让国有虞陶唐吊民伐罪周发殷汤坐朝问道垂拱平章"


def _text(rng, lang, n):
    if lang == "en":
        return " ".join(rng.choice(WORDS) for _ in range(n))
    return "".join(rng.choice(HANZI) for _ in range(n))


def _edit(rng, text, lang, rate):
    units = text.split(" ") if lang == "en" else list(text)
    for i in rng.sample(range(len(units)), max(1, int(rate * len(units)))):
        units[i] = rng.choice(WORDS) if lang == "en" else rng.choice(HANZI)
    return (" " if lang == "en" else "").join(units)


def corpus(seed=3, n=160):
    """Distinct conversations, exact copies (case / punctuation variants), prefixes, light edits
    (Jaccard well above 0.5) and chains: A ~ B ~ C with A and C far apart."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        lang = "en" if i % 2 else "zh"
        turns = [(_text(rng, lang, rng.randint(30, 60)), _text(rng, lang, rng.randint(40, 80)))
                 for _ in range(rng.randint(1, 3))]
        rows.append({"id": f"c{i}", "lang": lang, "turns": turns})
    for i in range(0, n, 7):  # exact copies
        r = rows[i]
        turns = [(q.upper() if r["lang"] == "en" else q + "。", a) for q, a in r["turns"]]
        rows.append({"id": f"x{i}", "lang": r["lang"], "turns": turns})
    for i in range(1, n, 9):  # prefixes of multi-turn ones
        if len(rows[i]["turns"]) > 1:
            rows.append({"id": f"p{i}", "lang": rows[i]["lang"], "turns": rows[i]["turns"][:1]})
    for i in range(2, n, 5):  # near duplicates
        r = rows[i]
        rows.append({"id": f"n{i}", "lang": r["lang"],
                     "turns": [(_edit(rng, q, r["lang"], 0.03), _edit(rng, a, r["lang"], 0.03)) for q, a in r["turns"]]})
    for k in range(6):  # chains: a 240-unit sequence, windows shifted by 60 (A~B, B~C, A and C ~0.3)
        lang = "en" if k % 2 else "zh"
        seq = [rng.choice(WORDS) if lang == "en" else rng.choice(HANZI) for _ in range(420)]
        sep = " " if lang == "en" else ""
        for j, (a, b) in enumerate(((0, 240), (60, 300), (120, 360))):
            rows.append({"id": f"chain{k}{'ABC'[j]}", "lang": lang, "turns": [(sep.join(seq[a:b]), "ok " * (3 - j))]})
    rng.shuffle(rows)
    return [{"id": r["id"], "messages": [m for q, a in r["turns"] for m in
                                          ({"role": "user", "content": q}, {"role": "assistant", "content": a})]}
            for r in rows]


def reference(recs, threshold, keep="longest"):
    """Brute force on Python objects: exact groups, the prefix rule, then all pairs with exact
    Jaccard >= threshold on the stage's shingles, components, and the kept-row re-check."""
    n = len(recs)
    ids = [r["id"] for r in recs]
    score = [keep_score(r, keep) for r in recs]
    better = lambda i: (tuple(-x for x in score[i]), ids[i])  # noqa: E731
    keys = [conversation_keys(r) for r in recs]
    dropped = {}
    groups = {}
    for i, (k, _) in enumerate(keys):
        groups.setdefault(k, []).append(i)
    for g in groups.values():
        best = min(g, key=better)
        dropped.update({i: ("exact_dup", best) for i in g if i != best})
    alive = [i for i in range(n) if i not in dropped]
    owner = {}
    for i, (_, prefixes) in enumerate(keys):
        for p in prefixes:
            if p not in owner or len(keys[owner[p]][1]) < len(prefixes):
                owner[p] = i
    alive_set = set(alive)
    for i in alive:
        j = owner.get(keys[i][0])
        if j is not None and j != i and j in alive_set:
            dropped[i] = ("near_dup", j)
    alive = [i for i in range(n) if i not in dropped]
    sh = {i: set(shingles("\n".join(m["content"] for m in recs[i]["messages"]), recs[i]["lang"], 3, 2))
          for i in alive}
    jac = lambda i, j: len(sh[i] & sh[j]) / max(len(sh[i] | sh[j]), 1)  # noqa: E731
    dropped.update({i: ("near_dup", j) for i, j in no_chain(alive, jac, threshold, better).items()})
    return {ids[i]: (why, ids[j]) for i, (why, j) in dropped.items()}


def no_chain(alive, sim, threshold, better):
    """All pairs with sim >= threshold, components, in each the best kept and only the members
    that close to it dropped; the others clustered again. {dropped: kept}."""
    edges = {(i, j) for a, i in enumerate(alive) for j in alive[a + 1:] if sim(i, j) >= threshold}
    active, dropped = set(alive), {}
    while edges:
        comp = {}
        for i in active:
            comp[i] = i

        def find(x):
            while comp[x] != x:
                x = comp[x]
            return x
        for i, j in sorted(edges):
            ri, rj = find(i), find(j)
            if ri != rj:
                comp[max(ri, rj)] = min(ri, rj)
        members = {}
        for i in {x for e in edges for x in e}:
            members.setdefault(find(i), []).append(i)
        for g in members.values():
            best = min(g, key=better)
            active.discard(best)
            for i in g:
                if i != best:
                    if sim(i, best) >= threshold:
                        dropped[i] = best
                        active.discard(i)
        edges = {(i, j) for i, j in edges if i in active and j in active}
    return dropped


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp("dc")
    rows = corpus()
    src = write_jsonl(d / "c.jsonl", rows)
    ext = str(d / "ext")
    runner.run_stage("extract", {"source": "s", "tail_turns": 0}, src, ext, rows_per_part=40, progress=False)
    return {"dir": d, "ext": ext, "recs": list(shards.iter_records(ext))}


def decisions(folder):
    return {r["record_id"]: (r["reason"], r["kept_id"]) for r in shards.iter_records(folder, "rejected")}


def snapshot(folder):
    out = {}
    for p in sorted(glob.glob(os.path.join(folder, "*", "*.arrow"))):
        with open(p, "rb") as f:  # digests: a mismatch prints names, not megabytes
            out[os.path.relpath(p, folder)] = hashlib.sha256(f.read()).hexdigest()[:16]
    return out


def test_columnar_reduce_equals_brute_force(built):
    assert len(shards.data_files(built["ext"])) > 3  # several map tasks
    out = str(built["dir"] / "dd")
    m = runner.run_stage("dedup", {"methods": "exact,minhash", "threshold": 0.5}, built["ext"], out, progress=False)
    got = decisions(out)
    want = reference(built["recs"], 0.5)
    assert got == want
    why = {r for r, _ in got.values()}
    assert why == {"exact_dup", "near_dup"}
    # the chains: B goes with A, C is kept (0.3 from A), though A-B-C is one component
    for k in range(6):
        assert got[f"chain{k}B"][1] == f"chain{k}A" and f"chain{k}C" not in got
    d = m["dedup"]
    assert d["near_reclustered"] >= 1 and d["prefix_dups"] > 0 and d["exact_clusters"] > 0
    kept = {r["id"]: r for r in shards.iter_records(out)}
    assert len(kept) + len(got) == len(built["recs"])
    assert all(r["meta"]["stages"][-1] == "dedup" and r["meta"]["dedup_cluster"] for r in kept.values())
    # a dropped record's cluster is the id of the record kept for it
    assert {kept[v[1]]["meta"]["dedup_cluster"] for v in got.values() if v[1] in kept} <= set(kept)
    assert not os.path.exists(os.path.join(out, ".work", "map"))  # map columns removed after the reduce


def test_workers_and_kills_change_no_byte(built):
    params = {"methods": "exact,minhash", "threshold": 0.5}
    one = str(built["dir"] / "w1")
    runner.run_stage("dedup", params, built["ext"], one, progress=False)
    two = str(built["dir"] / "w2")
    runner.run_stage("dedup", params, built["ext"], two, workers=2, progress=False)
    assert snapshot(two) == snapshot(one)
    code = ("import sys; from pipeline import runner; "
            f"runner.run_stage('dedup', {params!r}, {built['ext']!r}, sys.argv[1], workers=int(sys.argv[2]), progress=False)")
    for kill_after, workers in ((1, 1), (3, 1), (2, 2), (7, 1)):
        out = str(built["dir"] / f"k{kill_after}-{workers}")
        env = dict(os.environ, TURNFORGE_KILL_AFTER_FILES=str(kill_after))
        r = subprocess.run([sys.executable, "-c", code, out, str(workers)], cwd=ROOT, env=env, capture_output=True)
        assert r.returncode != 0 and not shards.is_complete(out)  # it died, in the map or the reduce
        r = subprocess.run([sys.executable, "-c", code, out, "1"], cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert snapshot(out) == snapshot(one)


def test_lsh_partitions_and_killed_reduce_tasks_change_no_byte(built):
    """The reduce as hash partitions of the band keys (each a task: candidates, verification,
    component forest) and merge rounds of forests gives the bytes of one partition; a run killed
    inside the reduce rounds resumes to the same bytes."""
    params = {"methods": "exact,minhash", "threshold": 0.5}
    one = str(built["dir"] / "p1")
    m = runner.run_stage("dedup", {**params, "partitions": 1}, built["ext"], one, progress=False)
    assert m["dedup"]["lsh_partitions"] == 1
    for q, workers in ((5, 2), (40, 1)):  # 40: two merge rounds (16 forests per merge)
        out = str(built["dir"] / f"p{q}")
        m = runner.run_stage("dedup", {**params, "partitions": q}, built["ext"], out, workers=workers, progress=False)
        assert m["dedup"]["lsh_partitions"] == q and snapshot(out) == snapshot(one)
    code = ("import sys; from pipeline import runner; "
            f"runner.run_stage('dedup', {{**{params!r}, 'partitions': 40}}, {built['ext']!r}, sys.argv[1], progress=False)")
    maps = len(shards.data_files(built["ext"]))
    # ~2-3 files per map task, ~9 for the exact/prefix step, 3 per partition task, 2 per merge
    for kill_after in (3 * maps + 4, 3 * maps + 50, 3 * maps + 120):
        out = str(built["dir"] / f"pk{kill_after}")
        env = dict(os.environ, TURNFORGE_KILL_AFTER_FILES=str(kill_after))
        r = subprocess.run([sys.executable, "-c", code, out], cwd=ROOT, env=env, capture_output=True)
        assert r.returncode != 0 and not shards.is_complete(out)
        assert len(glob.glob(os.path.join(out, ".work", "map", "*.json"))) == maps  # it died in the reduce
        r = subprocess.run([sys.executable, "-c", code, out], cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert snapshot(out) == snapshot(one)


def test_forests_merge_to_the_components_of_all_pairs():
    import numpy as np

    from pipeline.dedup import reduce as R

    rng = np.random.default_rng(0)
    pairs = rng.integers(0, 400, size=(300, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    whole = R.forest(pairs)
    parts = [R.forest(p) for p in np.array_split(pairs, 7)]
    merged = R.forest(np.concatenate([R.forest(np.concatenate(parts[:4])), R.forest(np.concatenate(parts[4:]))]))
    assert np.array_equal(merged, whole)
    lab = R.components(400, pairs)
    nodes, roots = whole[:, 0], whole[:, 1]
    assert np.array_equal(nodes, np.unique(pairs))
    # same partition into components, and each root is its component's smallest node
    assert all(lab[r] == lab[n] for n, r in zip(nodes, roots))
    assert all(r == min(np.flatnonzero(lab == lab[n])) for n, r in zip(nodes[:50], roots[:50]))
    assert len(np.unique(roots)) == len(np.unique(lab[nodes]))


def test_keys_and_scores_equal_the_per_record_definitions(built):
    import pyarrow as pa

    from pipeline.dedup.keys import batch_keys, batch_scores
    from pipeline.schema import SCHEMA

    recs = built["recs"] + [dict(r, messages=[{**r["messages"][0], "role": "system", "content": ""}] + r["messages"])
                            for r in built["recs"][:20]]
    b = pa.RecordBatch.from_pylist(recs, schema=SCHEMA)
    exact, prow, pref = batch_keys(b.column("messages"), b.column("source"))
    ref = [conversation_keys(r) for r in recs]

    def classes(keys):
        seen = {}
        return [seen.setdefault(k, len(seen)) for k in keys]
    assert classes([tuple(k) for k in exact]) == classes([k for k, _ in ref])
    assert prow.tolist() == [i for i, (_, ps) in enumerate(ref) for _ in ps]
    both = [tuple(k) for k in exact] + [tuple(k) for k in pref]
    assert classes(both) == classes([k for k, _ in ref] + [p for _, ps in ref for p in ps])
    s = batch_scores(b, "longest")
    assert np.array_equal(s[:, 1:], np.array([keep_score(r, "longest") for r in recs], dtype=float))


def test_semantic_reduce_tasks_equal_all_pairs_and_partitions_change_no_byte(built):
    """Semantic dedup as reduce tasks (k-means fit, assignment per part, pairs per range of
    clusters, forests, the keep policy): with one cluster it equals all pairs by brute force on
    the same embeddings; with several clusters and k-means on a sample, partitions and workers
    change no byte and every drop is within eps of the record kept for it."""
    from pipeline.embed import get_embedder

    recs, eps = built["recs"], 0.04
    heads = ["\n".join(m["content"] for m in r["messages"])[:512] for r in recs]
    cache = str(built["dir"] / "emb-cache")  # the runs below read these vectors instead of embedding again
    X = np.asarray(get_embedder("use-m3", cache_dir=cache).encode(heads), np.float16).astype(np.float32)
    ids = [r["id"] for r in recs]
    score = [keep_score(r, "longest") for r in recs]
    want = no_chain(list(range(len(recs))), lambda i, j: float(X[i] @ X[j]), 1 - eps,
                    lambda i: (tuple(-x for x in score[i]), ids[i]))
    params = {"methods": "semantic", "eps": eps, "cache_dir": cache}
    out = str(built["dir"] / "s1")
    runner.run_stage("dedup", {**params, "clusters": 1}, built["ext"], out, progress=False)
    got = decisions(out)
    assert got == {ids[i]: ("semantic_dup", ids[j]) for i, j in want.items()} and len(got) > 10
    one = None
    for q, workers in ((1, 1), (4, 2)):
        out = str(built["dir"] / f"sk{q}")
        m = runner.run_stage("dedup", {**params, "clusters": 5, "kmeans_sample": 60, "partitions": q}, built["ext"],
                             out, workers=workers, progress=False)
        assert m["dedup"]["semantic_kmeans_k"] == 5
        one = one or snapshot(out)
        assert snapshot(out) == one
    at = {x: k for k, x in enumerate(ids)}
    for i, (_, j) in decisions(out).items():
        assert float(X[at[i]] @ X[at[j]]) >= 1 - eps - 1e-6
