"""Dedup stage on hand-made Chinese and English conversations."""
import json

import pytest

from conftest import assert_accounting, write_jsonl
from pipeline import runner, shards


def conv(i, *pairs, **kw):
    msgs = []
    for q, a in pairs:
        msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return {"id": i, "messages": msgs, **kw}


ZH_A = ("我在北京，想订一家离故宫近的酒店，预算每晚五百元左右，有什么推荐吗？",
        "可以考虑王府井附近的几家酒店，步行到故宫大约十五分钟，价格在四百到六百元之间，交通也方便。")
ZH_A2 = ("预订需要提前多久？周末的房间会不会很紧张？", "建议至少提前一周预订，周末和节假日房间比较紧张，价格也会上涨。")
EN_A = ("Can you explain how Python list comprehensions work and when I should use them instead of loops?",
        "A list comprehension builds a list from an iterable in one expression, like [x * x for x in range(10)]. "
        "Use it for simple transformations and filters; prefer a loop when the body has side effects or is long.")
EN_B = ("What is the capital of Australia and why is it not Sydney?",
        "Canberra is the capital. It was chosen as a compromise between Sydney and Melbourne, the two largest cities, "
        "and was purpose-built as the seat of government.")
ZH_C = ("帮我算一下 17 乘以 23 等于多少？", "17 × 23 = 391。")
ZH_D = ("我想预订上海外滩附近的酒店，两晚，预算每晚八百元。", "外滩附近有几家江景酒店符合预算，建议选择南京东路一带，出行方便。")


@pytest.fixture
def corpus(tmp_path):
    rows = [
        conv("a1", ZH_A, ZH_A2),
        conv("a1-exact", (ZH_A[0].replace("，", ","), ZH_A[1]), ZH_A2),  # punctuation variant
        conv("a1-prefix", ZH_A),  # prefix of a1 (same source)
        conv("e1", EN_A),
        conv("e1-near", (EN_A[0].replace("explain", "say"), EN_A[1].replace("in one expression", "at once"))),
        conv("e1-case", (EN_A[0].upper(), EN_A[1])),
        conv("b1", EN_B),
        conv("c1", ZH_C),
        conv("d1", ZH_D),  # same domain as a1 (hotel booking) but a different conversation
    ]
    return write_jsonl(tmp_path / "c.jsonl", rows)


def run(tmp_path, corpus, **params):
    ext = str(tmp_path / "ext")
    if not shards.is_complete(ext):
        runner.run_stage("extract", {"source": "s"}, corpus, ext, progress=False)
    out = str(tmp_path / f"dd{len(list(tmp_path.iterdir()))}")
    m = runner.run_stage("dedup", params, ext, out, progress=False)
    return ({r["id"]: r for r in shards.iter_records(out)}, list(shards.iter_records(out, "rejected")), m)


def test_exact_near_prefix_caught_distinct_kept(tmp_path, corpus):
    kept, rej, m = run(tmp_path, corpus, methods="exact,minhash")
    assert_accounting(m, rej)
    assert set(kept) == {"a1", "e1", "b1", "c1", "d1"}
    why = {r["record_id"]: (r["reason"], r["detail"]) for r in rej}
    assert why["a1-exact"][0] == "exact_dup" and "a1" in why["a1-exact"][1]
    assert why["e1-case"][0] == "exact_dup"
    assert why["a1-prefix"] == ("near_dup", "prefix of longer a1")
    assert why["e1-near"][0] == "near_dup" and why["e1-near"][1].endswith("with e1")
    # kept records carry their cluster and the stage trail; rejected rows keep the whole record
    assert kept["a1"]["meta"]["dedup_cluster"] == "a1" and kept["a1"]["meta"]["stages"] == ["extract", "dedup"]
    assert json.loads(next(r for r in rej if r["record_id"] == "e1-near")["raw"])["id"] == "e1-near"
    d = m["dedup"]
    assert d["dropped"] == {"exact_dup": 2, "near_dup": 2, "semantic_dup": 0} and d["examples"]


def test_keep_policy_longest_prefers_the_tail(tmp_path, corpus):
    kept, rej, _ = run(tmp_path, corpus, methods="exact,minhash", keep="longest")
    assert "a1" in kept and "a1-prefix" not in kept  # two turns beat one


def test_methods_can_be_chosen(tmp_path, corpus):
    kept, rej, m = run(tmp_path, corpus, methods="exact")
    assert {r["reason"] for r in rej} == {"exact_dup"} and "e1-near" in kept and "a1-prefix" in kept
    kept, rej, m = run(tmp_path, corpus, methods="exact,minhash", prefix=False, threshold=0.95)
    assert "a1-prefix" in kept and "e1-near" in kept


def test_lsh_backends_agree(tmp_path, corpus):
    a, _, _ = run(tmp_path, corpus, methods="minhash", lsh="bands")
    b, _, _ = run(tmp_path, corpus, methods="minhash", lsh="datasketch")
    assert set(a) == set(b)


@pytest.mark.parametrize("kmeans", [{}, {"clusters": 2, "kmeans_sample": 4}])
def test_semantic_catches_paraphrase_keeps_same_domain(tmp_path, kmeans):
    """`kmeans`: k-means fitted on a sample of 4 of the 6 conversations, then all assigned."""
    rows = [conv("p1", ("如何学习Python编程？", "先学基础语法，再做小项目练习。")),
            conv("p2", ("怎样学习Python编程？", "先学基础语法，然后做一些小项目练习。")),
            conv("h1", ZH_A), conv("h2", ZH_D), conv("e1", EN_A), conv("b1", EN_B)]
    src = write_jsonl(tmp_path / "s.jsonl", rows)
    kept, rej, m = run(tmp_path, src, methods="semantic", eps=0.1, **kmeans)
    assert_accounting(m, rej)
    assert [(r["record_id"], r["reason"]) for r in rej] == [("p2", "semantic_dup")] or \
        [(r["record_id"], r["reason"]) for r in rej] == [("p1", "semantic_dup")]
    assert {"h1", "h2", "e1", "b1"} <= set(kept)
    assert "cosine" in rej[0]["detail"]


def test_unknown_method_is_clear(tmp_path, corpus):
    from pipeline.config import ConfigError
    with pytest.raises(ConfigError, match="unknown \\['fuzzy'\\]"):
        run(tmp_path, corpus, methods="exact,fuzzy")


def test_keep_newest(tmp_path):
    from conftest import event
    rows = []
    for sid, t0 in (("old", 1000), ("new", 90000), ("mid", 50000)):
        rows += [event(sid, "u", t0, "user", "我的订单还没到，怎么办？"), event(sid, "u", t0 + 5, "bot", "请提供订单号，我帮您查询。")]
    src = write_jsonl(tmp_path / "e.jsonl", rows)
    kept, rej, m = run(tmp_path, src, methods="exact", keep="newest")
    assert [r["meta"]["session_id"] for r in kept.values()] == ["new"]
    assert len(rej) == 2 and all(r["reason"] == "exact_dup" for r in rej)
    kept, rej, m = run(tmp_path, src, methods="exact", keep="longest")
    assert len(kept) == 1  # a tie on length: the smallest id wins, whatever the order
