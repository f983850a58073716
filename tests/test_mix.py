"""Mixing, SFT strategies and per-task validation."""
import json
import os
from collections import Counter
from fractions import Fraction

import numpy as np
import pytest

from pipeline import shards
from pipeline.mixing.weights import (MixError, largest_remainder, parse_k, proportional, replay_for, sample,
                                     split_total, temperature, tier_decay)
from pipeline.schema import SCHEMA, empty_meta, to_batch
from pipeline.config import ConfigError
from pipeline.stages.mix import run_mix

WORDS = [f"w{i}" for i in range(5000)]


def _text(rng, n=20):
    return " ".join(rng.choice(WORDS, n))


def conv(rid, domain, text, turns=1, cluster=None, lang="en"):
    msgs = []
    for t in range(turns):
        msgs.append({"role": "user", "content": text if t == 0 else f"{text} follow {t}", "turn": t,
                     "topic_continuity": None, "synthetic": False})
        msgs.append({"role": "assistant", "content": f"reply {rid} {t}", "turn": t, "topic_continuity": None,
                     "synthetic": False})
    return {"id": rid, "source": "test", "domain": domain, "lang": lang, "messages": msgs,
            "meta": empty_meta(stages=["extract"], dedup_cluster=cluster)}


def folder(path, recs, rows_per_part=200):
    shards.prepare(str(path))
    w = shards.RollingWriter(os.path.join(path, "data"), "part", SCHEMA, rows_per_part)
    for i in range(0, len(recs), 100):
        w.write(to_batch(recs[i:i + 100]))
    w.close()
    shards.mark_complete(str(path), {"stage": "test"})
    return str(path)


def domain_folder(tmp_path, domain, n, seed=0, turns=lambda i: 1, cluster=None):
    rng = np.random.default_rng(seed)
    recs = [conv(f"{domain}-{i}", domain, _text(rng), turns(i), cluster(i) if cluster else None) for i in range(n)]
    return folder(tmp_path / domain, recs)


@pytest.fixture
def three(tmp_path):
    """code 300, math 100, general 600: distinct random texts (no near duplicates)."""
    return [domain_folder(tmp_path, "code", 300, 1), domain_folder(tmp_path, "math", 100, 2),
            domain_folder(tmp_path, "general", 600, 3, turns=lambda i: 1 + i % 10)]


def ids_of(path):
    return [r["id"] for r in shards.iter_records(path)]


def mix(srcs, out, **params):
    params.setdefault("leakage", "clusters")  # distinct random texts: the MinHash check has its own tests
    return run_mix(srcs, str(out), params, progress=False)


def pools(m):
    return np.array([m["sources"][s]["train_pool"] for s in ("code", "math", "general")])


# ----------------------------------------------------------------------------- formulas

def test_weight_formulas():
    n = [100, 400, 1600]
    assert np.allclose(temperature(n, 0.0), 1 / 3)  # a -> 0: uniform
    assert np.allclose(temperature(n, 1e-9), 1 / 3, atol=1e-8)
    assert np.allclose(temperature(n, 1.0), proportional(n))  # a = 1: proportional
    assert np.allclose(proportional(n), np.array(n) / 2100)
    assert np.allclose(temperature(n, 0.5), np.sqrt(n) / np.sqrt(n).sum())
    assert np.allclose(tier_decay(np.array([0.5, 0.5]), [0, 2], 0.5), [0.8, 0.2])
    with pytest.raises(MixError, match="alpha"):
        temperature(n, 1.5)


def test_largest_remainder_exact_and_deterministic():
    rng = np.random.default_rng(0)
    for _ in range(200):
        p = rng.dirichlet(np.ones(rng.integers(1, 8)))
        total = int(rng.integers(0, 10_000))
        c = largest_remainder(total, p)
        assert c.sum() == total
        assert (np.abs(c - total * p) < 1).all()  # each floor or ceil of its quota
    assert largest_remainder(3, [0.5, 0.5]).tolist() == [2, 1]
    assert split_total(1000, 0.15) == (850, 150)
    assert replay_for(977, 0.1) == 109  # 108.56
    assert [str(k) for k in parse_k(None)] == ["1", "1/2", "1/4", "1/8", "1/16", "1/32"]


def test_sample_without_replacement_first():
    s = sample(np.arange(10, 20), 25, np.random.default_rng(0))
    c = Counter(s.tolist())
    assert set(c) == set(range(10, 20)) and sorted(set(c.values())) == [2, 3]
    assert len(set(s[:10].tolist())) == 10  # first pass is a permutation
    assert len(set(sample(np.arange(100), 40, np.random.default_rng(1)).tolist())) == 40


# ----------------------------------------------------------------------------- multi_task

@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_temperature_counts_match_formula(three, tmp_path, alpha):
    m = mix(three, tmp_path / "out", strategy="multi_task", alpha=alpha, total=900, val_size=0.05,
            long_size=0)
    st = m["stages"][0]
    n = pools(m)
    want = largest_remainder(900, temperature(n, alpha))
    got = [st["sources"][s]["count"] for s in ("code", "math", "general")]
    assert got == want.tolist()
    if alpha == 0.0:
        assert max(got) - min(got) <= 1  # uniform
    # the data on disk holds exactly these counts, in mixed order
    recs = list(shards.iter_records(str(tmp_path / "out" / "final" / "stage-1")))
    assert Counter(r["domain"] for r in recs) == dict(zip(("code", "math", "general"), got))
    assert len({r["domain"] for r in recs[:100]}) == 3
    assert all(r["meta"]["stages"] == ["extract", "mix"] for r in recs)
    assert abs(sum(e["share"] for e in st["sources"].values()) - 1) < 1e-5
    assert st["weights"]["new"]["formula"].startswith("p_i = n_i^a")


def test_explicit_weights_and_tiers(three, tmp_path):
    m = mix(three, tmp_path / "a", weights={"code": 2, "math": 1, "general": 1}, total=1000, val_size=0.05)
    st = m["stages"][0]
    assert [st["sources"][s]["count"] for s in ("code", "math", "general")] == [500, 250, 250]
    # tiers: general (tier 1) decayed by 0.5 on top of proportional weights
    m = mix(three, tmp_path / "b", tiers={"general": 1}, decay=0.5, total=999, val_size=0.05)
    n = pools(m)
    want = largest_remainder(999, tier_decay(proportional(n), [0, 0, 1], 0.5))
    assert [m["stages"][0]["sources"][s]["count"] for s in ("code", "math", "general")] == want.tolist()


def test_epochs_default_total_uses_every_record_once(three, tmp_path):
    m = mix(three, tmp_path / "out", val_size=10)
    out = str(tmp_path / "out" / "final" / "stage-1")
    ids = ids_of(out)
    assert len(ids) == len(set(ids)) == pools(m).sum()
    assert m["stages"][0]["sources"]["math"]["max_repeats"] == 1


def test_repeat_cap(three, tmp_path):
    # math (about 95 records) at a third of 600 needs ~2.1 passes: allowed with max_repeat 3
    m = mix(three, tmp_path / "ok", weights={"code": 1, "math": 1, "general": 1}, total=600, max_repeat=3,
            val_size=5)
    c = Counter(ids_of(str(tmp_path / "ok" / "final" / "stage-1")))
    math_ids = [k for k in c if k.startswith("math")]
    assert max(c[k] for k in math_ids) == 3 and min(c[k] for k in math_ids) == 2
    assert max(c.values()) <= 3
    assert m["stages"][0]["sources"]["math"]["max_repeats"] == 3
    with pytest.raises(ConfigError, match=r"source 'math'.*max_repeat=2"):
        mix(three, tmp_path / "bad", weights={"code": 1, "math": 1, "general": 1}, total=600, max_repeat=2,
            val_size=5)


def test_determinism(three, tmp_path):
    a = mix(three, tmp_path / "a", strategy="dmt", k="1,1/4", alpha=0.7)
    b = mix(three, tmp_path / "b", strategy="dmt", k="1,1/4", alpha=0.7)
    c = mix(three, tmp_path / "c", strategy="dmt", k="1,1/4", alpha=0.7, seed=1)
    for st in ("stage-1", "stage-2/k=1", "stage-2/k=1_4", "validation/code"):
        fa, fb = (shards.data_files(str(p / "final" / st)) for p in (tmp_path / "a", tmp_path / "b"))
        assert [open(x, "rb").read() for x in fa] == [open(x, "rb").read() for x in fb]
    assert a["stages"] == b["stages"]
    assert ids_of(str(tmp_path / "a" / "final" / "stage-1")) != ids_of(str(tmp_path / "c" / "final" / "stage-1"))


# ----------------------------------------------------------------------------- strategies

def test_sequential_replay_share(three, tmp_path):
    cur = [["general"], {"domains": ["math"], "replay": 0.2}, {"domains": ["code"], "replay": 0.15, "total": 333}]
    m = mix(three, tmp_path / "out", strategy="sequential", curriculum=cur)
    s1, s2, s3 = m["stages"]
    assert s1["sources"] == {"general": s1["sources"]["general"]} and s1["replay_share"] == 0
    for st, lam in ((s2, 0.2), (s3, 0.15)):
        rep = sum(e.get("replay", 0) for e in st["sources"].values())
        assert abs(rep - lam * st["total"]) <= 1, (rep, st["total"])
    assert s3["total"] == 333 and s3["sources"]["code"]["new"] == 283
    assert set(s3["weights"]["replay"]["counts"]) == {"general", "math"}  # earlier stages only
    # replay rows come from what earlier stages used
    s1_ids = set(ids_of(str(tmp_path / "out" / "final" / "stage-1")))
    s2_ids = ids_of(str(tmp_path / "out" / "final" / "stage-2"))
    assert {i for i in s2_ids if i.startswith("general")} <= s1_ids


def test_mixed_sequential(three, tmp_path):
    m = mix(three, tmp_path / "out", strategy="mixed_sequential")
    s1, s2 = m["stages"]
    assert set(s1["domains"]) == {"code", "math"} and s1["total"] == m["sources"]["code"]["train_pool"] + \
        m["sources"]["math"]["train_pool"]
    n_gen = m["sources"]["general"]["train_pool"]
    assert s2["sources"]["general"]["count"] == n_gen  # all general data
    rep = s2["total"] - n_gen
    assert abs(rep - 0.1 * s2["total"]) <= 1 and rep == replay_for(n_gen, 0.1)
    with pytest.raises(ConfigError, match="5%-20%"):
        mix(three, tmp_path / "bad", strategy="mixed_sequential", replay=0.3)


def test_dmt_k_grid(three, tmp_path):
    m = mix(three, tmp_path / "out", strategy="dmt", specialist="code,math", general="general",
            k=[1, "1/2", "1/8", 0.03125])
    n_spec = m["sources"]["code"]["train_pool"] + m["sources"]["math"]["train_pool"]
    n_gen = m["sources"]["general"]["train_pool"]
    s1 = m["stages"][0]
    assert s1["stage"] == "stage-1" and s1["total"] == n_spec and set(s1["domains"]) == {"code", "math"}
    final = tmp_path / "out" / "final"
    assert sorted(os.listdir(final / "stage-2")) == ["k=1", "k=1_2", "k=1_32", "k=1_8"]
    for st in m["stages"][1:]:
        k = Fraction(st["k"])
        want = int(np.floor(k * n_spec + Fraction(1, 2)))
        spec = st["domains"]["code"]["count"] + st["domains"]["math"]["count"]
        assert spec == want == st["specialist_records"]
        assert st["domains"]["general"]["count"] == n_gen
        assert abs(st["lambda"] - want / (want + n_gen)) < 1e-6
        recs = ids_of(str(final / st["stage"]))
        assert len(recs) == n_gen + want and len(set(recs)) == len(recs)  # k <= 1: no repeats
    # the trainer's layout: stage-1 then a grid over stage-2/k=*, validation beside them
    from trainer.train import TrainConfig, resolve_eval
    ev = dict(resolve_eval(TrainConfig(data=str(final / "stage-2" / "k=1"), eval_data=str(final / "validation"))))
    assert set(ev) == {"code", "math", "general", "long_multiturn"}


def test_specialist_general_errors(three, tmp_path):
    with pytest.raises(ConfigError, match=r"specialist: unknown domain\(s\) \['cdoe'\]"):
        mix(three, tmp_path / "a", strategy="dmt", specialist="cdoe,math")
    with pytest.raises(ConfigError, match=r"general: unknown domain"):
        mix(three, tmp_path / "b", strategy="dmt", general="chat")
    with pytest.raises(ConfigError, match=r"curriculum\[1\]: unknown domain"):
        mix(three, tmp_path / "c", strategy="sequential", curriculum=[["general"], ["safety"]])
    with pytest.raises(ConfigError, match=r"weights: unknown source or domain \['gen'\]"):
        mix(three, tmp_path / "d", weights={"gen": 1, "code": 1, "math": 1})
    with pytest.raises(ConfigError, match="no weight for source 'math'"):
        mix(three, tmp_path / "e", weighting="explicit", weights={"general": 1, "code": 1})


def test_empty_and_unfinished_sources(three, tmp_path):
    empty = folder(tmp_path / "empty", [])
    with pytest.raises(ConfigError, match="empty.*0 records"):
        mix(three + [empty], tmp_path / "a")
    os.makedirs(tmp_path / "half" / "data")
    with pytest.raises(ConfigError, match="_SUCCESS missing"):
        mix(three + [str(tmp_path / "half")], tmp_path / "b")
    with pytest.raises(ConfigError, match="domain 'math' asks 100 of its 100"):
        mix(three, tmp_path / "c", val_sizes={"math": 100})


# ----------------------------------------------------------------------------- validation

def test_domain_override_and_split_by_domain(tmp_path):
    rng = np.random.default_rng(5)
    mixed = folder(tmp_path / "mixed", [conv(f"r{i}", ["code", "general"][i % 2], _text(rng)) for i in range(200)])
    other = folder(tmp_path / "other", [conv(f"o{i}", "general", _text(rng)) for i in range(50)])
    m = mix([mixed, f"math={other}"], tmp_path / "out", val_size=5, long_size=0)
    assert {s: e["domain"] for s, e in m["sources"].items()} == {"code": "code", "general": "general", "math": "math"}
    recs = list(shards.iter_records(str(tmp_path / "out" / "final" / "stage-1")))
    assert {r["domain"] for r in recs if r["id"].startswith("o")} == {"math"}
    for d in ("code", "general", "math"):
        v = list(shards.iter_records(str(tmp_path / "out" / "final" / "validation" / d)))
        assert len(v) == 5 and {r["domain"] for r in v} == {d}


def test_validation_accounting_and_long_split(three, tmp_path):
    m = mix(three, tmp_path / "out", val_size=0.1, long_turns=8, long_size=20)
    final = tmp_path / "out" / "final"
    long_recs = list(shards.iter_records(str(final / "validation" / "long_multiturn")))
    assert len(long_recs) == 20
    assert all(sum(x["role"] == "user" for x in r["messages"]) >= 8 for r in long_recs)
    val = set()
    for d in ("code", "math", "general", "long_multiturn"):
        val |= set(ids_of(str(final / "validation" / d)))
    train = set(ids_of(str(final / "stage-1")))
    assert not val & train
    for s, e in m["sources"].items():
        assert e["accounting_ok"] and e["n"] == e["validation"] + e["excluded_leakage"] + e["train_pool"]
    assert m["validation"]["realised"] == {"long_multiturn": 20, "code": 30, "general": 60, "math": 10}


def test_no_cluster_straddles_train_and_validation(tmp_path):
    """Planted near-duplicate clusters (one word of 20 changed) without dedup cluster ids: the
    MinHash check keeps every cluster on one side; shared dedup_cluster ids likewise."""
    rng = np.random.default_rng(7)
    recs, cluster_of = [], {}
    for c in range(150):
        base = rng.choice(WORDS, 20)
        for j in range(3):  # three near-identical members per cluster
            t = base.copy()
            if j:
                t[rng.integers(20)] = f"x{c}{j}"
            rid = f"g{c}-{j}"
            recs.append(conv(rid, "general", " ".join(t)))
            cluster_of[rid] = c
    for i in range(150):  # and singletons
        recs.append(conv(f"s{i}", "general", _text(rng)))
        cluster_of[f"s{i}"] = 1000 + i
    order = rng.permutation(len(recs))
    gen = folder(tmp_path / "general", [recs[i] for i in order])
    code = domain_folder(tmp_path, "code", 100, 11)
    m = run_mix([gen, code], str(tmp_path / "out"), {"val_size": 0.1, "long_size": 0, "leakage": "minhash",
                                                     "strategy": "multi_task"}, progress=False)
    final = tmp_path / "out" / "final"
    val = ids_of(str(final / "validation" / "general"))
    train = ids_of(str(final / "stage-1"))
    val_clusters = {cluster_of[i] for i in val}
    assert not val_clusters & {cluster_of[i] for i in train if i in cluster_of}
    assert m["validation"]["leakage_method"] == "minhash" and m["validation"]["excluded_near_duplicate"] > 0
    assert m["sources"]["general"]["excluded_leakage"] == m["validation"]["excluded_near_duplicate"]

    # with dedup cluster ids (no MinHash): whole clusters go to one side
    recs = [conv(f"d{i}", "general", _text(rng), cluster=f"c{i // 4}") for i in range(400)]
    d = folder(tmp_path / "clustered", recs)
    mix([d], tmp_path / "out2", val_size=0.1, long_size=0, leakage="auto")
    f2 = tmp_path / "out2" / "final"
    vc = {r["meta"]["dedup_cluster"] for r in shards.iter_records(str(f2 / "validation" / "general"))}
    tc = {r["meta"]["dedup_cluster"] for r in shards.iter_records(str(f2 / "stage-1"))}
    assert vc and not vc & tc
    assert len(ids_of(str(f2 / "validation" / "general"))) % 4 == 0  # whole clusters of 4


def test_resume_and_changed_config(three, tmp_path):
    out = tmp_path / "out"
    mix(three, out, strategy="sequential")
    final = out / "final"
    before = {p: open(p, "rb").read() for p in shards.data_files(str(final / "stage-2"))}
    # an interrupted run: last folder unfinished, no mix manifest yet
    os.remove(final / "stage-2" / "_SUCCESS")
    os.remove(final / "mix_manifest.json")
    for p in before:
        os.remove(p)
    mix(three, out, strategy="sequential")
    assert {p: open(p, "rb").read() for p in shards.data_files(str(final / "stage-2"))} == before
    with pytest.raises(ConfigError, match="other inputs or settings"):
        mix(three, out, strategy="dmt")
    man = json.load(open(final / "stage-2" / "manifest.json"))
    assert man["counts"]["in"] == man["counts"]["records_out"] == man["total"] and man["accounting_ok"]
