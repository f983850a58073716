"""Quality stage: each hard rule trips on crafted zh/en garbage, clean dialogues pass."""
import random

import numpy as np
import pyarrow as pa
import pytest

from conftest import assert_accounting, write_jsonl
from pipeline import runner, shards
from pipeline.quality.signals import distinct_ngram_share, longest_letter_run, message_signals
from pipeline.config import ConfigError

CLEAN = [
    ("红烧肉怎么做才好吃？", "先把五花肉焯水，再小火炒糖色，加生抽老抽和热水炖一小时，最后大火收汁。"),
    ("How do I reverse a list in Python?", "Use `xs[::-1]` for a copy or `xs.reverse()` to reverse in place."),
    ("写一个冒泡排序", "```python\ndef bubble(xs):\n    for i in range(len(xs)):\n        for j in range(len(xs) - 1 - i):\n"
                  "            if xs[j] > xs[j + 1]:\n                xs[j], xs[j + 1] = xs[j + 1], xs[j]\n    return xs\n```"),
    ("Compare the two plans in a table", "| plan | price |\n|---|---|\n| A | $10 |\n| B | $12 |\n\nPlan A is cheaper."),
    ("1+1=?", "2"),
    ("好的，谢谢！！！", "不客气～有问题随时问我。"),
]
BAD = {
    "mojibake": ("How do I fix this?", "Ã©tÃ© Ã  la plage, câ€™est la vie â€” Ã§a va"),
    "garbage_text": ("@#$%^&*()_+!@#$%^&*()~~~", "请问您想问什么？"),
    "repetitive": ("讲个笑话", "好的：" + "哈" * 40),
    "spam": ("加我微信 abc12345，代开发票，日赚五百", "我不能帮助您进行这类活动。"),
    "empty_reply": ("What is the capital of France?", "..."),
    "no_content": ("？", "请问您想了解什么呢？"),
}
LOOP_EN = ("Tell me about the sea", "The sea is big and blue. " * 30)


def _convs(pairs):
    return [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in pairs]


@pytest.fixture
def run(tmp_path):
    n = [0]

    def go(pairs, **params):
        n[0] += 1
        src = write_jsonl(tmp_path / f"in{n[0]}.jsonl", _convs(pairs))
        ex = str(tmp_path / f"ex{n[0]}")
        runner.run_stage("extract", {}, src, ex, progress=False)
        out = str(tmp_path / f"q{n[0]}")
        m = runner.run_stage("quality", params, ex, out, progress=False)
        return list(shards.iter_records(out)), list(shards.iter_records(out, "rejected")), m
    return go


def test_clean_dialogues_pass_with_scores(run):
    recs, rej, m = run(CLEAN)
    assert_accounting(m, rej)
    assert rej == [] and len(recs) == len(CLEAN)
    for r in recs:
        q = {x["name"]: x["value"] for x in r["meta"]["quality"]}
        assert 0 <= q["quality"] <= 1 and q["letter_share_min"] > 0.25 and r["meta"]["stages"][-1] == "quality"


def test_every_rule_trips_and_names_the_message(run):
    recs, rej, m = run(list(BAD.values()) + [LOOP_EN])
    assert_accounting(m, rej)
    assert recs == []
    got = {r["reason"] for r in rej}
    assert got == set(BAD), got
    by_reason = {}
    for r in rej:
        by_reason.setdefault(r["reason"], []).append(r["detail"])
    assert any(d.startswith("messages[1] (assistant): distinct 3-grams") for d in by_reason["repetitive"])
    assert by_reason["garbage_text"][0].startswith("messages[0] (user): letter share 0.00")
    assert by_reason["empty_reply"][0].startswith("messages[1] (assistant)")


def test_rules_can_be_switched_off(run):
    recs, rej, _ = run([BAD["empty_reply"], BAD["spam"]], rules="spam")
    assert [r["reason"] for r in rej] == ["spam"] and len(recs) == 1
    with pytest.raises(ConfigError, match="unknown"):
        run(CLEAN, rules="spam,nonsense")


def test_soft_signals_lower_the_score(run):
    pairs = [("什么是量子计算？", "作为一个AI语言模型，我无法提供这方面的个人看法，但量子计算利用量子比特进行运算。"),
             ("什么是量子计算？", "Quantum computing uses qubits, which can hold superpositions of 0 and 1."),
             ("什么是量子计算？", "量子计算利用量子比特的叠加和纠缠进行运算，适合某些特定问题。")]
    recs, _, m = run(pairs)
    score = [next(x["value"] for x in r["meta"]["quality"] if x["name"] == "quality") for r in recs]
    assert score[2] == 1.0 and score[0] < 1.0 and score[1] < 1.0
    assert m["counts"]["stats"]["refusal"] == 1 and m["counts"]["stats"]["lang_mismatch"] == 1


def test_vectorised_signals_match_a_plain_loop():
    rng = random.Random(0)
    alphabet = "ab哈x1!=。 \n"
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60))) for _ in range(300)]
    texts += ["哈" * 30, "aaaa" + "b" * 17 + "1" * 40, "=" * 50, ""]

    def run_len(t):
        best = cur = 0
        prev = None
        for ch in t:
            letter = ch.isalpha() and not ch.isdigit()
            cur = cur + 1 if (letter and ch == prev) else (1 if letter else 0)
            prev = ch
            best = max(best, cur)
        return best
    assert longest_letter_run(texts).tolist() == [run_len(t) for t in texts]
    loop = ["the same words again and again " * 20, "每天都一样的内容" * 20, "不同的句子各有不同的内容，讲述了很多事情，包括天气、饮食、工作和学习的方方面面。"]
    share = distinct_ngram_share(loop, np.array([True, False, False]), min_ngrams=10)
    assert share[0] < 0.1 and share[1] < 0.1 and share[2] > 0.9
    s = message_signals(pa.array(["```\n!!!!!!!!!!!!!!!!\n```\nok", "!!!!!!!!!!!!"]))
    assert s["letter_share"][0] == 1.0 and s["letter_share"][1] == 0.0  # code is not judged as prose
