"""Synthesis stage: template follow-ups (zh/en), every check on crafted bad and good
turns, the stage end to end against a local OpenAI-compatible server and with a tiny local HF
model, budget, cache, accounting and the API key never written anywhere."""
import json
import os

import pytest

from conftest import assert_accounting, write_jsonl
from fake_openai import FakeAPI, default_reply
from pipeline import cli, runner, shards
from pipeline.config import ConfigError
from pipeline.synth import checks as C
from pipeline.synth.followup import KINDS, TemplateFollowup, answer_features, fitting_kinds

KEY = "sk-stage-SECRET-0987654321"

ZH_Q = "识别并解释两个科学理论：细胞理论和日心说。"
ZH_A = ("这两个理论都改变了人们对世界的认识。\n\n1. **细胞理论**：所有生物都由细胞构成，细胞是生命的基本单位。\n"
        "2. **日心说**：太阳位于太阳系的中心，地球和其他行星围绕太阳运行。")
EN_Q = "How do I remove duplicates from a list in Python?"
EN_A = ("Use a **set** if order does not matter, or **dict.fromkeys** to keep the order:\n\n"
        "```python\nunique = list(dict.fromkeys(items))\n```\n\nBoth run in linear time.")
EN_PROSE_Q = "Why do leaves change colour in autumn?"
EN_PROSE_A = ("As days get shorter, trees stop making chlorophyll, the green pigment. Other pigments that were "
              "there all along, such as carotenoids, become visible, and some trees make red anthocyanins.")


def msgs(q, a):
    return [{"role": "user", "content": q}, {"role": "assistant", "content": a}]


# ----------------------------------------------------------------------------- template follow-ups
@pytest.mark.parametrize("q,a,lang", [(ZH_Q, ZH_A, "zh"), (EN_Q, EN_A, "en"), (EN_PROSE_Q, EN_PROSE_A, "en")])
def test_template_followups_fit_the_answer_and_pass_every_check(q, a, lang):
    g = TemplateFollowup(seed=0)
    history = msgs(q, a)
    used, texts = [], []
    for turn in range(1, 6):
        text, kind = g.generate("rec-1", history, lang, turn, used=tuple(used))
        assert kind in KINDS
        assert C.run_checks(C.Turn(text, "user", history, lang), C.CheckSettings()) == {}, text
        assert C.text_lang(text) == lang
        used.append(kind)
        texts.append(text)
    n_fit = len(fitting_kinds(answer_features(a, lang, q)))
    assert len(set(used[:n_fit])) == min(5, n_fit)  # no kind repeats while others fit
    assert len(set(texts[:n_fit])) == min(5, n_fit)
    again = [g.generate("rec-1", history, lang, t, used=tuple(used[:t - 1]))[0] for t in range(1, 6)]
    assert again == texts  # deterministic


def test_template_kinds_follow_the_answer_shape():
    zh = answer_features(ZH_A, "zh", ZH_Q)
    assert zh.foci[:2] == ["细胞理论", "日心说"] and "compare" in fitting_kinds(zh)
    en = answer_features(EN_A, "en", EN_Q)
    assert en.has_code and "code_steps" in fitting_kinds(en)
    prose = answer_features(EN_PROSE_A, "en", EN_PROSE_Q)
    assert "code_steps" not in fitting_kinds(prose) and "summarise" not in fitting_kinds(prose)
    long_zh = answer_features("细胞" * 200, "zh")
    assert "summarise" in fitting_kinds(long_zh)
    g = TemplateFollowup(seed=3)
    texts = {g.generate(f"r{i}", msgs(EN_Q, EN_A), "en", 1, used=tuple(k for k in KINDS if k != "code_steps"))[0]
             for i in range(8)}
    assert texts <= {"Could you walk me through this code line by line?",
                     "What happens if the input is empty or very large? How would you change the code?"}
    compare = {g.generate(f"r{i}", msgs(ZH_Q, ZH_A), "zh", 1, used=tuple(k for k in KINDS if k != "compare"))[0]
               for i in range(8)}
    assert all("细胞理论" in t and "日心说" in t for t in compare)


# ----------------------------------------------------------------------------- checks
H_ZH, H_EN = msgs(ZH_Q, ZH_A), msgs(EN_Q, EN_A)
S = C.CheckSettings()

BAD = [
    # (check, text, role, history, lang, finish_reason)
    ("empty", "   ", "assistant", H_EN, "en", None),
    ("empty", "嗯", "user", H_ZH, "zh", None),
    ("truncated", "The answer is that the list", "assistant", H_EN, "en", "length"),
    ("truncated", "代码如下：\n```python\nprint(1)\n", "assistant", H_ZH, "zh", None),
    ("role_marker", "<user>What about tuples?</user>", "user", H_EN, "en", None),
    ("role_marker", "Sure.\nAssistant: it is linear.", "assistant", H_EN, "en", None),
    ("role_marker", "Human: what about sets?", "user", H_EN, "en", None),
    ("role_marker", "好的。\n用户：那日心说是谁提出的？", "assistant", H_ZH, "zh", None),
    ("role_marker", "助手：细胞是生命的基本单位。", "assistant", H_ZH, "zh", None),
    ("role_marker", "那日心说呢？<|im_end|>", "user", H_ZH, "zh", None),
    ("role_marker", "[INST] explain more [/INST]", "user", H_EN, "en", None),
    ("boilerplate", "As an AI language model, I cannot have opinions on lists.", "assistant", H_EN, "en", None),
    ("boilerplate", "I'm sorry, but I can't help with that.", "assistant", H_EN, "en", None),
    ("boilerplate", "作为一个AI，我没有个人观点。", "assistant", H_ZH, "zh", None),
    ("boilerplate", "很抱歉，我无法回答这个问题。", "assistant", H_ZH, "zh", None),
    ("boilerplate", "Here is a follow-up question: what about tuples?", "user", H_EN, "en", None),
    ("boilerplate", "以下是一个追问：日心说是谁提出的？", "user", H_ZH, "zh", None),
    ("repeated", "the list the list " * 20, "assistant", H_EN, "en", None),
    ("repeated", "细胞很重要。" * 30, "assistant", H_ZH, "zh", None),
    ("repeated", "Line one is here\nLine one is here\nLine one is here", "assistant", H_EN, "en", None),
    ("language", "Cell theory says all living things are made of cells.", "assistant", H_ZH, "zh", None),
    ("language", "你可以使用集合来去重，这样更简单。", "assistant", H_EN, "en", None),
    ("format", "## Tuples\nTuples are immutable.", "user", H_EN, "en", None),
    ("format", "# 总结\n细胞理论和日心说都很重要。", "assistant", H_ZH, "zh", None),
    ("format", "| a | b |\n|---|---|\n| 1 | 2 |", "assistant", msgs(EN_PROSE_Q, EN_PROSE_A), "en", None),
    ("format", "细胞理论很重要,日心说也很重要,两者都改变了认识,值得学习!", "assistant", H_ZH, "zh", None),
    ("format", "What about this?\n```python\nx = 1\n```", "user", H_EN, "en", None),
    ("knowledge_leak", "为什么所有生物都由细胞构成，细胞是生命的基本单位？", "user", H_ZH, "zh", None),
    ("knowledge_leak", "So trees stop making chlorophyll, the green pigment, and other pigments that were there all "
                       "along become visible?", "user", msgs(EN_PROSE_Q, EN_PROSE_A), "en", None),
    ("near_duplicate", ZH_A.replace("改变", "改变了"), "assistant", H_ZH, "zh", None),
    ("near_duplicate", "How do I remove duplicates from a list in Python??", "user", H_EN, "en", None),
]


@pytest.mark.parametrize("check,text,role,history,lang,finish", BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_every_check_trips_on_crafted_bad_output(check, text, role, history, lang, finish):
    fails = C.run_checks(C.Turn(text, role, history, lang, finish), S)
    assert check in fails, fails
    assert C.FUNCS[check](C.Turn(text, role, history, lang, finish), S)


GOOD = [
    ("那日心说最早是谁提出的？当时的人们接受吗？", "user", H_ZH, "zh"),
    ("日心说最早由哥白尼系统地提出。当时教会反对，直到开普勒和伽利略的工作之后才逐渐被接受。", "assistant",
     H_ZH + [{"role": "user", "content": "那日心说最早是谁提出的？"}], "zh"),
    ("Does the dict trick work for unhashable items like lists?", "user", H_EN, "en"),
    ("No. Both tricks need hashable items. For lists of lists, convert each inner list to a tuple first:\n\n"
     "```python\nunique = [list(t) for t in dict.fromkeys(map(tuple, items))]\n```", "assistant",
     H_EN + [{"role": "user", "content": "Does it work for lists of lists?"}], "en"),
    ("在 Python 里可以用 `set()` 去重，不过顺序会丢失。", "assistant", H_ZH, "zh"),  # code inside zh prose
    ("A user: someone who uses the system. In the list above, order matters.", "assistant", H_EN, "en"),
    ("Is `List<User>` valid Java?", "user", H_EN, "en"),
]


@pytest.mark.parametrize("text,role,history,lang", GOOD)
def test_checks_pass_good_turns(text, role, history, lang):
    assert C.run_checks(C.Turn(text, role, history, lang, "stop"), S) == {}


def test_disabled_checks_do_not_run():
    s = C.CheckSettings(enabled=("empty",))
    assert C.run_checks(C.Turn("As an AI language model, no.", "assistant", H_EN, "en"), s) == {}


# ----------------------------------------------------------------------------- the stage
SEEDS = [
    {"id": "zh1", "messages": msgs(ZH_Q, ZH_A)},
    {"id": "en1", "messages": msgs(EN_Q, EN_A)},
    {"id": "en2", "messages": msgs(EN_PROSE_Q, EN_PROSE_A)},
    {"id": "full", "messages": msgs("What is 2+2?", "4.") + msgs("And 3+3?", "6.") + msgs("And 4+4?", "8.")},
]


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    d = tmp_path_factory.mktemp("synth_seeds")
    runner.run_stage("extract", {"domain": "general"},
                     write_jsonl(d / "seeds.jsonl", SEEDS), str(d / "ext"), progress=False)
    return str(d / "ext")


def run_synth(inp, out, **params):
    m = runner.run_stage("synth", params, inp, str(out), progress=False)
    return {r["id"]: r for r in shards.iter_records(str(out))}, list(shards.iter_records(str(out), "rejected")), m


def test_stage_grows_dialogues_with_template_and_openai_backend(seeds, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    originals = {r["id"]: r for r in shards.iter_records(seeds)}
    base = dict(backend="openai", model="fake", max_turns=3, cache_dir=str(tmp_path / "cache"),
                price_in=1.0, price_out=4.0, backoff=0.01)
    with FakeAPI() as api:
        recs, rej, m = run_synth(seeds, tmp_path / "a", base_url=api.base_url, **base)
        sent = len(api.requests)
        assert all(r["headers"]["Authorization"] == f"Bearer {KEY}" for r in api.requests)
        recs2, _, m2 = run_synth(seeds, tmp_path / "b", base_url=api.base_url, **base)
        assert len(api.requests) == sent  # rerun: everything from the cache
    assert_accounting(m, rej)
    assert set(recs) == set(originals) and m["counts"]["kept"] == len(SEEDS)
    for rid in ("zh1", "en1", "en2"):
        r, o = recs[rid], originals[rid]
        assert r["messages"][:2] == o["messages"]  # original turn unchanged
        new = r["messages"][2:]
        assert [(x["role"], x["turn"], x["synthetic"]) for x in new] == [
            ("user", 1, True), ("assistant", 1, True), ("user", 2, True), ("assistant", 2, True)]
        assert all(C.text_lang(x["content"]) == r["lang"] for x in new)
        assert r["meta"]["stages"][-1] == "synth"
        assert json.loads(r["meta"]["extra"])["synth"]["added_turns"] == 2
    assert recs["full"] == originals["full"] | {"meta": recs["full"]["meta"]}  # already at max_turns
    s = m["synth"]
    assert s["turns_added"] == 6 and s["records_grown"] == 3 and s["requests"] == sent == 6
    assert s["tokens_in"] == 600 and s["tokens_out"] == 120
    assert s["cost_usd"] == pytest.approx(600 * 1.0 / 1e6 + 120 * 4.0 / 1e6)
    assert s["stop"] == {"max_turns": 4}
    assert all(v["pass_rate"] == 1.0 and v["run"] == 12 and v["user"]["run"] == 6 for v in s["checks"].values())
    s2 = m2["synth"]
    assert s2["requests"] == 0 and s2["cache_hits"] == 6 and s2["cost_usd"] == 0.0
    assert recs2 == recs
    assert m["config"].get("api_key") is None


def test_failed_turns_are_archived_and_retried(seeds, tmp_path):
    bad = ["As an AI language model, I have no view on this.", "Sure.\nUser: and what else?"]
    script = []  # zh1, en1, en2 get the first replies of round 1, in order (concurrency 1)
    script += [lambda m: bad[0], "ok", lambda m: bad[1]]
    with FakeAPI(script) as api:
        recs, rej, m = run_synth(seeds, tmp_path / "o", backend="openai", base_url=api.base_url, model="fake",
                                 max_turns=2, attempts=2, concurrency=1, cache_dir="off")
    assert_accounting(m, rej)
    reasons = sorted(r["reason"] for r in rej)
    assert reasons == ["synth_boilerplate", "synth_role_marker"]
    assert all(r["n_inputs"] == 0 for r in rej)
    row = next(r for r in rej if r["reason"] == "synth_boilerplate")
    pair = json.loads(row["raw"])["messages"]
    assert [p["role"] for p in pair] == ["user", "assistant"] and pair[1]["content"] == bad[0]
    assert "attempt 1/2" in row["detail"]
    # the retry passed: every seed still grows to 2 user turns
    for rid in ("zh1", "en1", "en2"):
        assert [x["turn"] for x in recs[rid]["messages"]] == [0, 0, 1, 1]
    s = m["synth"]
    assert s["checks"]["boilerplate"]["failed"] == 1 and s["checks"]["role_marker"]["failed"] == 1
    assert s["checks"]["boilerplate"]["pass_rate"] == pytest.approx(1 - 1 / s["checks"]["boilerplate"]["run"])
    assert s["checks"]["boilerplate"]["assistant"]["failed"] == 1 and s["checks"]["boilerplate"]["user"]["failed"] == 0
    assert m["counts"]["archived"] == {"synth_boilerplate": 1, "synth_role_marker": 1}


def test_attempts_exhausted_keeps_the_turns_that_passed(seeds, tmp_path):
    def reply(messages):
        n = sum(x["role"] == "user" for x in messages)
        return default_reply(messages) if n <= 2 else "As an AI language model, I cannot."

    with FakeAPI(reply=reply) as api:
        recs, rej, m = run_synth(seeds, tmp_path / "o", backend="openai", base_url=api.base_url, model="fake",
                                 max_turns=4, attempts=2, cache_dir="off")
    for rid in ("zh1", "en1", "en2"):
        assert [x["turn"] for x in recs[rid]["messages"]] == [0, 0, 1, 1]  # turn 2 failed twice
    assert len(recs["full"]["messages"]) == 6  # its 4th turn failed twice
    assert m["synth"]["stop"] == {"attempts": 4}
    assert m["counts"]["archived"] == {"synth_boilerplate": 8}


def test_model_followups_and_knowledge_leak(seeds, tmp_path):
    # Round 1 asks the follow-up model for zh1, en1, en2 in order (concurrency 1): zh1 gets
    # an English question, en1 one that copies its answer; the retries are fine.
    english = lambda m: "What else should I know about this theory?"  # noqa: E731
    copying = lambda m: "Use a set if order does not matter, or dict.fromkeys to keep the order, right?"  # noqa: E731
    with FakeAPI([english, copying] + ["ok"] * 50) as api:
        recs, rej, m = run_synth(seeds, tmp_path / "o", backend="openai", base_url=api.base_url, model="fake",
                                 followup="model", followup_model="big-model", max_turns=2, concurrency=1,
                                 cache_dir="off")
        models = [r["body"]["model"] for r in api.requests]
        first = api.requests[0]["body"]["messages"]
    assert models[:3] == ["big-model"] * 3 and models[3] == "fake"  # full is at max_turns already
    assert first[0]["role"] == "system" and json.dumps(ZH_A, ensure_ascii=False) in first[1]["content"]
    assert sorted((r["record_id"], r["reason"]) for r in rej) == [("en1", "synth_knowledge_leak"),
                                                                   ("zh1", "synth_language")]
    assert all(len(recs[r]["messages"]) == 4 for r in ("zh1", "en1", "en2"))
    assert m["synth"]["followup_kinds"] == {"model": 3}
    assert m["synth"]["checks"]["knowledge_leak"]["failed"] == 1


def test_budget_stops_growth_without_dropping_records(seeds, tmp_path):
    with FakeAPI() as api:
        recs, rej, m = run_synth(seeds, tmp_path / "o", backend="openai", base_url=api.base_url, model="fake",
                                 max_turns=3, max_requests=2, concurrency=1, cache_dir="off")
        assert len(api.requests) == 2
    assert m["counts"]["kept"] == len(SEEDS) and m["synth"]["requests"] == 2
    assert m["synth"]["stop"]["budget"] >= 1 and m["synth"]["budget_refused"] >= 1
    assert sum(len(r["messages"]) for r in recs.values()) == sum(len(s["messages"]) for s in SEEDS) + 2 * 2


def test_budget_is_split_over_tasks(tmp_path):
    src = write_jsonl(tmp_path / "s.jsonl", SEEDS[:3] + [dict(SEEDS[1], id="en1b", messages=msgs(EN_PROSE_Q, ZH_A))])
    runner.run_stage("extract", {"domain": "general"}, src, str(tmp_path / "ext"), rows_per_part=2, progress=False)
    assert len(shards.data_files(str(tmp_path / "ext"))) == 2
    with FakeAPI() as api:
        _, _, m = run_synth(str(tmp_path / "ext"), tmp_path / "o", backend="openai", base_url=api.base_url,
                            model="fake", max_turns=3, max_requests=3, concurrency=1, cache_dir="off")
        assert len(api.requests) == 3  # 2 + 1: the whole stage's budget, not one per task
    assert m["synth"]["requests"] == 3 and m["tasks"] == 2


def test_api_key_never_written(seeds, tmp_path, monkeypatch):
    monkeypatch.setenv("MY_LLM_KEY", KEY)
    with FakeAPI(["401"] + ["500"] * 50) as api:
        out = tmp_path / "o"
        recs, rej, m = run_synth(seeds, out, backend="openai", base_url=api.base_url, model="fake",
                                 api_key_env="MY_LLM_KEY", max_turns=2, cache_dir=str(tmp_path / "cache"),
                                 max_retries=1, backoff=0.0)
        assert api.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"
    assert any(r["reason"] == "synth_backend_error" for r in rej)
    for d, _, fs in os.walk(tmp_path):
        for f in fs:
            p = os.path.join(d, f)
            assert KEY.encode() not in open(p, "rb").read(), p
    # a key given in the config is redacted in the manifest
    with FakeAPI() as api:
        _, _, m2 = run_synth(seeds, tmp_path / "o2", backend="openai", base_url=api.base_url, model="fake",
                             api_key=KEY, max_turns=2, cache_dir="off")
    assert m2["config"]["api_key"] == "<redacted>"
    assert KEY not in open(tmp_path / "o2" / "manifest.json").read()


def test_config_errors(seeds, tmp_path):
    with pytest.raises(ConfigError, match="base_url"):
        runner.run_stage("synth", {"backend": "openai", "model": "m"}, seeds, str(tmp_path / "x"), progress=False)
    with pytest.raises(ConfigError, match="local model folder"):
        runner.run_stage("synth", {"backend": "hf", "model": "Qwen/Qwen2-0.5B"}, seeds, str(tmp_path / "y"),
                         progress=False)
    with pytest.raises(ConfigError, match="unknown checks"):
        runner.run_stage("synth", {"backend": "openai", "base_url": "http://h/v1", "model": "m", "checks": "vibes"},
                         seeds, str(tmp_path / "z"), progress=False)


# ----------------------------------------------------------------------------- local HF backend
@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    from trainer.tiny import save_tiny

    return save_tiny(str(tmp_path_factory.mktemp("tiny_lm")))


def test_hf_backend_generates_deterministically(tiny_model_dir):
    from pipeline.synth.backends import HFBackend

    b = HFBackend(tiny_model_dir, batch_size=2)
    prompts = [msgs(ZH_Q, ZH_A) + [{"role": "user", "content": "能举个例子吗？"}],
               [{"role": "user", "content": EN_Q}], [{"role": "user", "content": "hi"}]]
    r1 = b.generate(prompts, max_tokens=12, temperature=0.8, seed=1)
    r2 = b.generate(prompts, max_tokens=12, temperature=0.8, seed=1)
    assert [r.text for r in r1] == [r.text for r in r2] and all(r.text for r in r1)
    assert all(1 <= r.tokens_out <= 12 and r.tokens_in > 0 for r in r1)
    assert b.stats["requests"] == 6 and b.stats["tokens_out"] == 2 * sum(r.tokens_out for r in r1)


def test_stage_with_local_hf_backend_end_to_end(seeds, tiny_model_dir, tmp_path):
    # A random model writes gibberish that never stops: with every check on, its replies fail
    # (truncated, language, ...) and go to rejected/; with those two off, dialogues grow.
    recs, rej, m = run_synth(seeds, tmp_path / "all", backend="hf", model=tiny_model_dir, max_turns=2,
                             max_tokens=16, batch_size=4)
    assert_accounting(m, rej)
    s = m["synth"]
    assert s["messages_generated"] > 0 and s["checks"]["truncated"]["failed"] > 0
    assert s["tokens_out"] > 0 and s["model"] == os.path.basename(tiny_model_dir) and s["cost_usd"] == 0.0
    assert {r["reason"] for r in rej} <= {f"synth_{c}" for c in C.CHECKS}
    recs2, _, m2 = run_synth(seeds, tmp_path / "some", backend="hf", model=tiny_model_dir, max_turns=2,
                             max_tokens=16, batch_size=4, checks="empty,role_marker,near_duplicate")
    grown = [r for r in recs2.values() if len(r["messages"]) == 4]
    assert len(grown) == 3 and m2["synth"]["turns_added"] == 3
    for r in grown:
        assert [(x["turn"], x["synthetic"]) for x in r["messages"][2:]] == [(1, True), (1, True)]
    recs3, _, _ = run_synth(seeds, tmp_path / "again", backend="hf", model=tiny_model_dir, max_turns=2,
                            max_tokens=16, batch_size=4, checks="empty,role_marker,near_duplicate")
    assert recs3 == recs2  # seeded: same output


# ----------------------------------------------------------------------------- CLI and build
def test_cli_stage_synth(seeds, tmp_path, capsys):
    with FakeAPI() as api:
        rc = cli.main(["stage", "synth", "--in", seeds, "--out", str(tmp_path / "o"), "--quiet",
                       "--set", "backend=openai", "--set", f"base_url={api.base_url}", "--set", "model=fake",
                       "--set", "max_turns=2", "--set", "followup=template", "--set", "cache_dir=off"])
    assert rc == 0 and "synth: in=4 kept=4" in capsys.readouterr().out
    rc = cli.main(["stage", "synth", "--in", seeds, "--out", str(tmp_path / "p"), "--quiet", "--set", "model=m"])
    assert rc == 2 and "base_url" in capsys.readouterr().err


def test_build_with_synth(tmp_path):
    src = write_jsonl(tmp_path / "s.jsonl", SEEDS[:3])
    with FakeAPI() as api:
        cfg = tmp_path / "c.yaml"
        cfg.write_text(f"inputs:\n  - path: {src}\n    domain: general\nstages:\n  - name: extract\n"
                       f"  - name: synth\n    backend: openai\n    base_url: {api.base_url}\n    model: fake\n"
                       f"    max_turns: 2\n    cache_dir: 'off'\n")
        m = runner.build(str(cfg), str(tmp_path / "out"), progress=False)
    assert [f["stage"] for f in m["funnel"]] == ["extract", "synth"]
    recs = list(shards.iter_records(str(tmp_path / "out" / "stages" / "02-synth")))
    assert len(recs) == 3 and all(len(r["messages"]) == 4 for r in recs)
