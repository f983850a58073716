"""LLM-as-judge evaluation harness (pipeline/judge.py, docs/judge.md).

No real LLM runs here: the judge is the local HTTP stand-in tests/fake_openai.FakeAPI answering
with tests/fake_judge.BiasedJudge, a SIMULATED judge with a known position bias (prefers the
answer shown first), length bias and noise. It is the one test double these tests use; the
client under it is the real OpenAICompatClient.
"""
import json
import math
import random
import statistics

import pytest

from conftest import write_jsonl
from fake_judge import BiasedJudge
from fake_openai import FakeAPI
from pipeline.cli import main
from pipeline.judge import length_controlled_win_rate, parse_score, parse_winner, run_judge
from pipeline.config import ConfigError


def bullets(n, word="point"):
    return "\n".join(f"- {word} {j} of the answer" for j in range(n))


def conv(i, answer, *, zh=False, turns=1, **kw):
    q = f"问题{i}：这是什么意思？" if zh else f"Question {i}: what does it mean?"
    msgs = [{"role": "user", "content": q}]
    for t in range(1, turns):
        msgs += [{"role": "assistant", "content": "一个早先的回答。" if zh else "An earlier answer."},
                 {"role": "user", "content": "能再具体一点吗？" if zh else f"Could you be more specific ({t})?"}]
    return {"id": f"c{i}", "messages": msgs + [{"role": "assistant", "content": answer}], **kw}


def judge(tmp_path, rows, api, name="out", **sets):
    base = dict(base_url=api.base_url, model="judge", cache_dir="off", backoff=0.01, concurrency=4)
    src = write_jsonl(tmp_path / f"{name}.jsonl", rows)
    s = run_judge(src, str(tmp_path / name), {**base, **sets})
    return s, str(tmp_path / name)


def read(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def test_swap_detects_position_bias_and_keeps_only_agreeing_verdicts(tmp_path):
    # equal quality, equal length: any preference is position bias
    rows = [conv(i, bullets(2 + i % 3), answer_b=bullets(2 + i % 3, "pont")) for i in range(40)]
    with FakeAPI(reply=BiasedJudge(position_bias=3.0, length_bias=0.0, noise=1.0)) as api:
        s, out = judge(tmp_path, rows, api, mode="pairwise", dimensions="helpful")
        s1, _ = judge(tmp_path, rows, api, name="noswap", mode="pairwise", dimensions="helpful", swap=False)
    p = s["pairwise"]
    assert p["comparisons"] == 40 and p["position_consistency"] < 0.6
    assert p["first_position_pick_rate"] > 0.8
    for r in read(out + "/pairwise.jsonl"):
        assert r["verdict"] == (r["ab"] if r["ab"] == r["ba"] else "inconsistent")
    assert p["inconsistent"] == sum(not r["consistent"] for r in read(out + "/pairwise.jsonl"))
    # without the swap the bias passes for a verdict: A "wins" most equal pairs
    q = s1["pairwise"]
    assert q["position_consistency"] is None and q["win_rate_a"] > 0.8
    # with it, the bias turns into "inconsistent", not into wins for A
    assert p["win_rate_a"] is None or abs(p["win_rate_a"] - 0.5) < 0.25


def test_repeated_scoring_reduces_variance(tmp_path):
    rows = [conv(i, bullets(1 + i % 4)) for i in range(60)]
    # one judge for all runs: each run gets fresh draws of the same noisy judge (test-retest)
    with FakeAPI(reply=BiasedJudge(length_bias=0.0, noise=1.5)) as api:
        runs = {}
        for reps in (1, 3):
            for k in range(2):
                s, out = judge(tmp_path, rows, api, name=f"r{reps}{k}", repeats=reps, seed=10 * k)
                runs[reps, k] = [r["score"] for r in read(out + "/scores.jsonl")]
                runs[reps, "s", k] = s
    retest = {reps: statistics.fmean(abs(a - b) for a, b in zip(runs[reps, 0], runs[reps, 1])) for reps in (1, 3)}
    assert retest[3] < 0.85 * retest[1]
    p = runs[3, "s", 0]["pointwise"]["a"]
    assert p["spread_std"] > 0.5 and 0.5 < p["disagree_share"] <= 1
    assert runs[1, "s", 0]["pointwise"]["a"]["spread_std"] is None  # one draw: no spread to report
    assert all(len(r["scores"]) == 3 for r in read(str(tmp_path / "r30") + "/scores.jsonl"))


@pytest.mark.parametrize("bias,sign", [(1.0, 1), (-1.0, -1)])
def test_length_correlation_has_the_judges_sign(tmp_path, bias, sign):
    rows = [conv(i, "word " * (20 + 15 * (i % 8))) for i in range(32)]
    with FakeAPI(reply=BiasedJudge(length_bias=bias, noise=0.5, quality=lambda t: 5.0)) as api:
        s, _ = judge(tmp_path, rows, api, dimensions="ifahs", repeats=1)
    p = s["pointwise"]["a"]
    assert sign * p["length_corr"] > 0.5
    assert set(p["length_corr_by_dim"]) == {"instruction_following", "accuracy", "hallucination", "safety"}


def test_length_controlled_win_rate_removes_length_advantage(tmp_path):
    # same quality; B is padded by a varying amount: raw win rate of A drops, the controlled one not
    rows = [conv(i, bullets(3), answer_b=bullets(3, "pont") + " filler" * (5 * (i % 10))) for i in range(60)]
    with FakeAPI(reply=BiasedJudge(position_bias=0.0, length_bias=1.0, noise=0.8)) as api:
        s, _ = judge(tmp_path, rows, api, mode="pairwise", dimensions="helpful")
    lw = s["pairwise"]["length"]
    assert lw["raw"] < 0.35 and lw["length_slope"] > 0
    assert abs(lw["length_controlled"] - 0.5) < abs(lw["raw"] - 0.5)
    # the estimator alone: wins that depend on length only -> 0.5 at equal length
    rng = random.Random(0)
    la, lb = [rng.randint(50, 500) for _ in range(400)], [rng.randint(50, 500) for _ in range(400)]
    y = [float(rng.random() < 1 / (1 + math.exp(-6 * (a - b) / (a + b)))) for a, b in zip(la, lb)]
    r = length_controlled_win_rate(y, la, lb)
    assert abs(r["length_controlled"] - 0.5) < 0.06 and r["length_slope"] > 3


def test_usability_is_the_weighted_mean_and_multi_turn_dims_only_on_multi_turn(tmp_path):
    rows = [conv(i, bullets(1 + i % 4), turns=1 + i % 2) for i in range(20)]
    with FakeAPI(reply=BiasedJudge(noise=0.5)) as api:
        s, out = judge(tmp_path, rows, api, repeats=1, weights="helpful=3,honest=1,harmless=0,context_focus=2")
    p = s["pointwise"]["a"]
    w = p["weights"]
    assert w["helpful"] == 3 and w["harmless"] == 0 and w["follow_up_accuracy"] == 1
    expect = sum(w[d] * m for d, m in p["mean"].items()) / sum(w.values())
    assert p["usability"] == pytest.approx(expect, abs=1e-3)
    by_id = {}
    for r in read(out + "/scores.jsonl"):
        by_id.setdefault(r["id"], set()).add(r["dimension"])
    for i in range(20):
        assert ("cites_latest_turn" in by_id[f"c{i}"]) == (i % 2 == 1)
        assert {"helpful", "honest", "harmless"} <= by_id[f"c{i}"]


def test_unparseable_replies_are_counted_and_retried_not_fatal(tmp_path):
    rows = [conv(i, bullets(2)) for i in range(20)]
    with FakeAPI(reply=BiasedJudge(garbage_every=2)) as api:
        s, _ = judge(tmp_path, rows, api, repeats=1, dimensions="helpful")
    assert s["parse"]["unparseable_replies"] > 3 and s["parse"]["unscored"] == 0
    assert s["pointwise"]["a"]["scored"] == 20
    with FakeAPI(reply=lambda m: "I cannot decide.") as api:
        s, out = judge(tmp_path, rows[:5], api, name="never", repeats=2, dimensions="helpful", parse_retries=1)
        assert len(api.requests) == 5 * 2 * 2  # every draw asked once more, then given up
    assert s["parse"]["unscored"] == 10 and s["pointwise"]["a"]["usability"] is None
    assert all(r["score"] is None for r in read(out + "/scores.jsonl"))


def test_budget_is_honoured_and_cache_makes_a_rerun_free(tmp_path):
    rows = [conv(i, bullets(2)) for i in range(10)]
    with FakeAPI(reply=BiasedJudge()) as api:
        s, _ = judge(tmp_path, rows, api, name="b", max_requests=12, repeats=3, concurrency=1)
        assert len(api.requests) == 12
        assert s["requests"]["sent"] == 12 and s["parse"]["budget_refused"] == 10 * 3 * 3 - 12
        cache = str(tmp_path / "cache")
        s1, o1 = judge(tmp_path, rows, api, name="c1", cache_dir=cache, price_in=1.0, price_out=2.0)
        n = len(api.requests)
        s2, o2 = judge(tmp_path, rows, api, name="c2", cache_dir=cache, price_in=1.0, price_out=2.0)
        assert len(api.requests) == n  # nothing sent
    assert s1["requests"]["sent"] == 90 and s1["requests"]["cost_usd"] > 0
    assert s2["requests"]["sent"] == 0 and s2["requests"]["cache_hits"] == 90 and s2["requests"]["cost_usd"] == 0
    assert read(o1 + "/scores.jsonl") == read(o2 + "/scores.jsonl")


def test_prompt_language_follows_the_conversation(tmp_path):
    rows = [conv(0, "这是一个回答。", zh=True, reference="参考答案。"), conv(1, "This is an answer.")]
    with FakeAPI(reply=BiasedJudge()) as api:
        s, _ = judge(tmp_path, rows, api, repeats=1, dimensions="helpful")
        sent = [r["body"]["messages"] for r in api.requests]
    assert s["by_lang"] == {"zh": 1, "en": 1}
    zh = [m for m in sent if "这是一个回答" in m[1]["content"]][0]
    en = [m for m in sent if "This is an answer" in m[1]["content"]][0]
    assert "公正的评审" in zh[0]["content"] and "评价维度" in zh[1]["content"] and "解决了用户的需求" in zh[1]["content"]
    assert "<reference>\n参考答案。" in zh[1]["content"]
    assert "impartial judge" in en[0]["content"] and "Dimension: helpful" in en[1]["content"]
    assert "<reference>" not in en[1]["content"]


def test_reply_parsing():
    assert parse_score('{"score": 7, "reason": "ok"}', 10) == 7
    assert parse_score('Sure.\n```json\n{"score": "8", "reason": "x"}\n```', 10) == 8
    assert parse_score("Reasoning...\nScore: 6", 10) == 6 and parse_score("评分：9", 10) == 9
    assert parse_score("Score: 12", 10) is None and parse_score("no number", 10) is None
    assert parse_winner('{"winner": "B"}') == "B" and parse_winner("[[A]]") == "A"
    assert parse_winner("Winner: tie") == "tie" and parse_winner("胜者：A") == "A" and parse_winner("hmm") is None


def test_cli_refuses_without_base_url_and_runs_with_one(tmp_path, capsys):
    src = write_jsonl(tmp_path / "in.jsonl", [conv(i, bullets(2), answer_b=bullets(1)) for i in range(4)])
    assert main(["judge", "--in", src, "--out", str(tmp_path / "o"), "--set", "model=m"]) == 2
    assert "needs base_url" in capsys.readouterr().err
    with FakeAPI(reply=BiasedJudge()) as api:
        rc = main(["judge", "--in", src, "--out", str(tmp_path / "o"), "--set", f"base_url={api.base_url}",
                   "--set", "model=m", "--set", "mode=both", "--set", "dimensions=ifahs", "--set", "repeats=3",
                   "--set", "cache_dir=off", "--set", "weights={accuracy: 2}"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "usability (weighted mean)" in text and "position consistency" in text and "requests " in text
    s = json.load(open(tmp_path / "o" / "summary.json"))
    assert s["pointwise"]["a"]["weights"]["accuracy"] == 2 and "api_key" not in s["settings"]
    with pytest.raises(ConfigError):
        run_judge(src, str(tmp_path / "x"), {"base_url": "http://127.0.0.1:9/v1", "model": "m", "dimensions": "bogus"})


def test_shard_folder_input_keeps_answer_b_and_reference(tmp_path):
    from pipeline import runner

    src = write_jsonl(tmp_path / "in.jsonl", [conv(i, bullets(2), zh=True, answer_b=bullets(1), reference="参考。")
                                              for i in range(3)] + [{"messages": [{"role": "user", "content": "q"}]}])
    runner.run_stage("extract", {"source": "t", "domain": "general"}, src, str(tmp_path / "shards"), progress=False)
    with FakeAPI(reply=BiasedJudge()) as api:
        s = run_judge(str(tmp_path / "shards"), str(tmp_path / "o"), {"base_url": api.base_url, "model": "m",
                      "cache_dir": "off", "mode": "both", "repeats": 1, "dimensions": "helpful"})
        assert all("<reference>\n参考。" in r["body"]["messages"][1]["content"] for r in api.requests)
    assert s["by_lang"] == {"zh": 3} and s["pairwise"]["comparisons"] == 3
    assert s["pointwise"]["b"]["scored"] == 3
