"""`turnforge discriminator label` against a local simulated judge.

The remote LLM is the one part that cannot run here: tests/fake_openai.FakeAPI stands in for the
OpenAI-compatible server and tests/fake_topic_judge.TopicJudge for the model behind it (a keyword
rule whose answers the tests know). Everything else is real: the synth client (retries, budget,
cache), the extract stage reading raw input, the training-data reader and, in the round trip,
`discriminator train` with the real use-m3 embedder.
"""
import itertools
import json
import os

import pytest

from conftest import write_jsonl
from fake_openai import FakeAPI
from fake_topic_judge import TopicJudge
from pipeline import labeling as L
from pipeline.cli import main
from pipeline.config import parse_set

# topic blocks: (user, assistant) pairs; only a block's first user message names its topic
BLOCKS = {
    "zh": {
        "product": [("这款手机的电池能用多久？", "正常使用大约一天半。"), ("那充电要多久？", "大约一小时充满。"),
                    ("谢谢！", "不客气。")],
        "weather": [("明天北京天气怎么样？", "明天晴，最高二十度。"), ("晚上会冷吗？", "夜里十度左右，带件外套。")],
        "cooking": [("红烧肉怎么做？", "先焯水，再炒糖色，小火炖一小时。"), ("要炖多久才软？", "一个半小时左右。")],
        "code": [("Python 里怎么给列表排序？", "用 sorted() 或 .sort()。"), ("能倒过来排吗？", "加 reverse=True。")],
        "travel": [("去日本的签证怎么办？", "通过指定旅行社递交材料。"), ("大概要几天？", "一般五个工作日。")],
    },
    "en": {
        "product": [("How long does this phone's battery last?", "About a day and a half."),
                    ("And how long does charging take?", "Roughly an hour."), ("Thanks!", "You're welcome.")],
        "weather": [("What's the weather in Boston tomorrow?", "Sunny, up to 20 degrees."),
                    ("Will it be cold at night?", "Around 10 degrees; take a jacket.")],
        "cooking": [("How do I make braised pork?", "Blanch it, caramelise sugar, then simmer an hour."),
                    ("How long until it is tender?", "About ninety minutes.")],
        "code": [("How do I sort a list in Python?", "Use sorted() or .sort()."),
                 ("Can I reverse the order?", "Pass reverse=True.")],
        "travel": [("How do I get a visa for Japan?", "Apply through an accredited agency."),
                   ("How many days does it take?", "Usually five working days.")],
    },
}


def dialogues():
    """50 labelled chats: each topic alone, and every ordered pair of topics (a switch where the
    second begins), in both languages; gold = what the rubric says (and the simulated judge does)."""
    out = []
    for lang, blocks in BLOCKS.items():
        combos = [(t,) for t in blocks] + list(itertools.permutations(blocks, 2))
        for combo in combos:
            msgs = []
            for b, name in enumerate(combo):
                for j, (u, a) in enumerate(blocks[name]):
                    msgs.append({"role": "user", "content": u, "topic_shift": None if not msgs else int(b > 0 and j == 0)})
                    msgs.append({"role": "assistant", "content": a, "topic_shift": None})
            out.append({"id": f"{lang}-{'-'.join(combo)}", "messages": msgs})
    return out


@pytest.fixture
def gold_file(tmp_path):
    return write_jsonl(tmp_path / "gold.jsonl", dialogues())


def rows(path):
    return [json.loads(x) for x in open(path, encoding="utf-8")]


def sets(api, tmp_path, *extra):
    return ["--set", f"base_url={api.base_url}", "--set", "model=sim-judge", "--set", f"cache_dir={tmp_path / 'cache'}",
            "--set", "backoff=0", *[x for e in extra for x in ("--set", e)]]


def n_candidates(ds):
    return sum(m["role"] == "user" for d in ds for m in d["messages"]) - len(ds)


def n_prompts(ds, only=None):
    """Distinct questions (about messages whose text is in `only`, when given): chats that share
    their opening share the question about it (these chats are short enough for every prompt to
    show the whole conversation before the message)."""
    return len({tuple(m["content"] for m in d["messages"][:k + 1]) for d in ds
                for k, m in enumerate(d["messages"]) if m["role"] == "user" and k > 0
                and (only is None or m["content"] in only)})


N, P = n_candidates(dialogues()), n_prompts(dialogues())  # 148 messages to label, 100 questions


# ----------------------------------------------------------------------------- replies and prompts
@pytest.mark.parametrize("reply,want", [
    ('{"verdict": "switch", "reason": "new subject"}', 1),
    ('Sure.\n```json\n{"verdict": "continue", "reason": "follow-up"}\n```', 0),
    ("理由：同一部电影。\n结论：延续", 0), ("结论：切换", 1), ("Verdict: **switch**", 1),
    ("switch", 1), ("Continue.", 0), ("切换。", 1),
    ('{"verdict": "maybe"}', None),  # a verdict that is neither is not read as either
    ("It could continue the topic, or switch to a new one.", None),  # prose naming both: never guessed
    ("", None), ("I think it is fine.", None),
])
def test_parse_verdict(reply, want):
    assert L.parse_verdict(reply) == want


def test_prompts_carry_the_rubric_and_the_context(tmp_path):
    cfg, _ = L.make_config({"base_url": "http://x/v1", "model": "m", "context_messages": 2, "max_chars": 30})
    d = dialogues()
    zh = next(L.Conv(x["id"], [{"role": m["role"], "content": m["content"]} for m in x["messages"]])
              for x in d if x["id"] == "zh-product-weather")
    k = 6  # 明天北京天气怎么样？ after three product exchanges
    system, user = L.build_prompt(zh, k, cfg, L.conv_lang(zh, "auto"))
    assert L.conv_lang(zh, "auto") == "zh"
    assert "商品" in system["content"] and "天气" in system["content"] and "切换" in system["content"]
    assert "感谢" in system["content"] and "对了" in system["content"]  # thanks continue; cue words do not decide
    body = user["content"]
    # the first user message (it sets the topic), a note for what is left out, then the last 2
    assert body.index("这款手机的电池能用多久") < body.index("省略了前面 3 条消息") < body.index("谢谢！")
    assert "那充电要多久" not in body and body.count("\n\n") >= 3
    assert "<new_message>\n明天北京天气怎么样？\n</new_message>" in body
    en = L.Conv("e", [{"role": "user", "content": "How long does this phone's battery last? " + "x" * 100},
                      {"role": "assistant", "content": "About a day."}, {"role": "user", "content": "Weather?"}])
    system, user = L.build_prompt(en, 2, cfg, L.conv_lang(en, "auto"))
    assert "product" in system["content"] and "weather" in system["content"] and "thanks" in system["content"]
    assert "x" * 31 not in user["content"] and "…" in user["content"]  # clipped to max_chars
    assert L.candidates(en, "user") == [2] and L.candidates(en, "all") == [1, 2]


# ----------------------------------------------------------------------------- against the simulated judge
def test_labels_match_the_rubric_and_gold(tmp_path, gold_file, capsys):
    out = str(tmp_path / "labelled.jsonl")
    with FakeAPI(reply=TopicJudge()) as api:
        assert main(["discriminator", "label", "--in", f"jsonl:{gold_file}", "--out", out, *sets(api, tmp_path)]) == 0
        sent = len(api.requests)
    ds = dialogues()
    assert (N, P) == (148, 100) and sent == P
    got = rows(out)
    assert [r["id"] for r in got] == [d["id"] for d in ds]
    for r, d in zip(got, ds):
        first_user = True
        for m, g in zip(r["messages"], d["messages"]):
            assert m["content"] == g["content"]
            if m["role"] == "user" and not first_user:
                assert m["topic_shift"] == g["topic_shift"] and "topic_label_error" not in m
            else:
                assert m["topic_shift"] is None  # first user message and replies are not asked about
            first_user = first_user and m["role"] != "user"
    s = json.load(open(str(tmp_path / "labelled.summary.json")))
    assert s["labelled"] == N and s["switch"] == 40 and s["unlabelled"] == 0
    assert s["agreement_with_gold"]["accuracy"] == 1.0 and s["agreement_with_gold"]["f1"] == 1.0
    assert f"agreement with gold on {N} messages: accuracy 1.0000" in capsys.readouterr().out
    assert "api_key" not in s["settings"]
    # the conversation's language picks the rubric
    zh = [r["body"]["messages"][0]["content"] for r in api.requests if "明天" in r["body"]["messages"][1]["content"]]
    en = [r["body"]["messages"][0]["content"] for r in api.requests if "Boston" in r["body"]["messages"][1]["content"]]
    assert zh and en and all("话题连续性" in x for x in zh) and all("topic continuity" in x for x in en)


def test_both_speakers_and_tiage_gold(tmp_path):
    """TIAGE-format gold (speakers alternate, both people): `roles=all` asks about every message
    after the first, and the agreement counts what the simulated judge got wrong."""
    tiage = {"1": [["How long does this phone's battery last?", "-1"], ["About a day, my phone is old.", "0"],
                   ["What's the weather like where you live?", "1"], ["Rainy all week.", "0"],
                   ["I love rain, it smells nice.", "0"]],
             "2": [["I cooked braised pork today.", "-1"], ["Did you use soy sauce?", "0"],
                   ["Yes. Do you have a visa for Japan?", "1"], ["Not yet, my flight is in May.", "1"]]}
    path = tmp_path / "anno_dev.json"
    path.write_text(json.dumps(tiage), encoding="utf-8")
    with FakeAPI(reply=TopicJudge()) as api:
        s = L.run_label(f"tiage:{path}", str(tmp_path / "o.jsonl"), {**parse_set(sets(api, tmp_path)[1::2]),
                                                                     "roles": "all"})
    assert s["asked"] == 7 and s["labelled"] == 7
    # the judge calls "Not yet, my flight is in May." a continuation of the visa topic: one miss
    a = s["agreement_with_gold"]
    assert (a["messages"], a["tp"], a["fn"], a["fp"]) == (7, 2, 1, 0)
    got = rows(str(tmp_path / "o.jsonl"))
    assert [m["role"] for m in got[0]["messages"]] == ["user", "assistant"] * 2 + ["user"]
    assert [m["gold_topic_shift"] for m in got[1]["messages"]] == [None, 0, 1, 1]


def test_agreement_counts_disagreements(tmp_path):
    ds = dialogues()
    ds[0]["messages"][2]["topic_shift"] = 1  # gold says switch at "那充电要多久？": the judge says continue
    path = write_jsonl(tmp_path / "g.jsonl", ds)
    with FakeAPI(reply=TopicJudge()) as api:
        s = L.run_label(f"jsonl:{path}", str(tmp_path / "o.jsonl"), parse_set(sets(api, tmp_path)[1::2]))
    a = s["agreement_with_gold"]
    assert a["messages"] == N and a["accuracy"] == round((N - 1) / N, 4) and a["fn"] == 1 and a["fp"] == 0
    assert a["recall"] == round(40 / 41, 4) and a["precision"] == 1.0 and 0 < a["cohen_kappa"] < 1


def test_second_run_is_served_from_the_cache(tmp_path, gold_file):
    out1, out2 = str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")
    with FakeAPI(reply=TopicJudge()) as api:
        assert main(["discriminator", "label", "--in", f"jsonl:{gold_file}", "--out", out1, *sets(api, tmp_path)]) == 0
        first = len(api.requests)
        assert main(["discriminator", "label", "--in", f"jsonl:{gold_file}", "--out", out2, *sets(api, tmp_path)]) == 0
        assert len(api.requests) == first  # nothing sent the second time
    assert rows(out1) == rows(out2)
    s = json.load(open(str(tmp_path / "b.summary.json")))
    assert s["requests"]["sent"] == 0 and s["requests"]["cache_hits"] == P


def test_retries_recover_server_errors(tmp_path, gold_file):
    out = str(tmp_path / "o.jsonl")
    with FakeAPI(script=["500", "429", "badjson", "nochoice"], reply=TopicJudge()) as api:
        assert main(["discriminator", "label", "--in", f"jsonl:{gold_file}", "--out", out,
                     *sets(api, tmp_path, "concurrency=1")]) == 0
        assert len(api.requests) == P + 4
    s = json.load(open(str(tmp_path / "o.summary.json")))
    assert s["requests"]["retries"] == 4 and s["labelled"] == N and s["agreement_with_gold"]["accuracy"] == 1.0


def test_budget_stops_and_a_rerun_fills_in(tmp_path, gold_file, capsys):
    out = str(tmp_path / "o.jsonl")
    with FakeAPI(reply=TopicJudge()) as api:
        assert main(["discriminator", "label", "--in", f"jsonl:{gold_file}", "--out", out,
                     *sets(api, tmp_path, "max_requests=50")]) == 1
        assert len(api.requests) == 50
        got = rows(out)
        assert len(got) == 50  # every conversation is written, labelled or not
        msgs = [m for r in got for m in r["messages"] if "topic_label_error" in m]
        assert msgs and {m["topic_label_error"] for m in msgs} == {"budget"}
        assert all(m["topic_shift"] is None for m in msgs)  # never guessed as "continues"
        assert "budget (max_requests) is spent" in capsys.readouterr().out
        s = json.load(open(str(tmp_path / "o.summary.json")))
        assert s["unlabelled_by_reason"] == {"budget": len(msgs)} and s["labelled"] + len(msgs) == N
        assert main(["discriminator", "label", "--in", f"jsonl:{gold_file}", "--out", out, *sets(api, tmp_path)]) == 0
        assert len(api.requests) == P  # the first 50 answers came from the cache
    assert json.load(open(str(tmp_path / "o.summary.json")))["agreement_with_gold"]["accuracy"] == 1.0


def test_unreadable_answers_are_counted_and_left_unlabelled(tmp_path, gold_file):
    out = str(tmp_path / "o.jsonl")
    ds = dialogues()
    thanks_text, cold_text = ("谢谢！", "Thanks!"), ("晚上会冷吗？",)
    thanks = sum(m["content"] in thanks_text for d in ds for m in d["messages"])
    cold = sum(m["content"] in cold_text and k > 0 for d in ds for k, m in enumerate(d["messages"]))
    q_thanks, q_cold = n_prompts(ds, thanks_text), n_prompts(ds, cold_text)
    judge = TopicJudge(garbage_on=thanks_text, garbage_once=cold_text)
    with FakeAPI(reply=judge) as api:
        assert main(["discriminator", "label", "--in", f"jsonl:{gold_file}", "--out", out, *sets(api, tmp_path)]) == 1
        # each unreadable reply is asked once more with another seed (parse_retries=1)
        assert len(api.requests) == P + q_thanks + q_cold
    s = json.load(open(str(tmp_path / "o.summary.json")))
    assert s["unparseable_replies"] == 2 * q_thanks + q_cold
    assert s["unlabelled_by_reason"] == {"unparseable": thanks} and s["labelled"] == N - thanks
    for r in rows(out):
        for k, m in enumerate(r["messages"]):
            if m["content"] in thanks_text:
                assert m["topic_shift"] is None and m["topic_label_error"] == "unparseable"
            if m["content"] in cold_text and k > 0:
                assert m["topic_shift"] == 0  # read on the second ask
    assert s["agreement_with_gold"]["messages"] == N - thanks  # unlabelled messages are not compared

    # without parse retries the once-garbled answers stay unlabelled too
    with FakeAPI(reply=TopicJudge(garbage_once=cold_text)) as api:
        assert main(["discriminator", "label", "--in", f"jsonl:{gold_file}", "--out", out,
                     *sets(api, tmp_path, "parse_retries=0", "cache_dir=off")]) == 1
    assert json.load(open(str(tmp_path / "o.summary.json")))["unlabelled_by_reason"] == {"unparseable": cold}


def test_replies_cut_off_at_max_tokens_are_reported(tmp_path, gold_file, capsys):
    """A model that reasons before answering runs out of max_tokens: its replies are unreadable,
    left unlabelled, and the summary says to raise max_tokens."""
    out = str(tmp_path / "o.jsonl")
    with FakeAPI(reply=lambda m: "<think>The user first asked about", finish_reason="length") as api:
        assert main(["discriminator", "label", "--in", f"jsonl:{gold_file}", "--out", out,
                     *sets(api, tmp_path, "parse_retries=0", "limit=2")]) == 1
    s = json.load(open(str(tmp_path / "o.summary.json")))
    assert s["conversations"] == 2 and s["labelled"] == 0 and s["truncated_replies"] == s["asked"] > 0
    assert "cut off at max_tokens=128" in capsys.readouterr().out
    assert len(rows(out)) == 2


def test_unreachable_endpoint_stops_asking(tmp_path, gold_file, capsys):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there
    out = str(tmp_path / "o.jsonl")
    assert main(["discriminator", "label", "--in", f"jsonl:{gold_file}", "--out", out, "--set",
                 f"base_url=http://127.0.0.1:{port}/v1", "--set", "model=m", "--set", "max_retries=0",
                 "--set", "cache_dir=off", "--set", "batch=10"]) == 1
    assert "stopped asking" in capsys.readouterr().out
    got = rows(out)
    assert len(got) == 50
    errs = [m["topic_label_error"] for r in got for m in r["messages"] if "topic_label_error" in m]
    assert len(errs) == N and set(errs) == {"failed:connection", "not_asked"}


def test_bad_use_exits_2(tmp_path, gold_file, capsys):
    out = str(tmp_path / "o.jsonl")
    assert main(["discriminator", "label", "--in", gold_file, "--out", out, "--set", "model=m"]) == 2
    assert "needs base_url" in capsys.readouterr().err
    assert main(["discriminator", "label", "--in", gold_file, "--out", out, "--set", "base_url=http://x/v1",
                 "--set", "model=m", "--set", "temprature=0"]) == 2
    assert "unknown setting(s) ['temprature']" in capsys.readouterr().err
    assert main(["discriminator", "label", "--in", str(tmp_path / "nope.jsonl"), "--out", out,
                 "--set", "base_url=http://x/v1", "--set", "model=m"]) == 2
    assert "nope.jsonl: no such file" in capsys.readouterr().err
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"messages": [{"role": "user", "content": "hi", "topic_shift": 2}]}])
    assert main(["discriminator", "label", "--in", f"jsonl:{bad}", "--out", out, "--set", "base_url=http://x/v1",
                 "--set", "model=m"]) == 2
    assert "bad.jsonl:1: messages[0].topic_shift must be null, 0 or 1" in capsys.readouterr().err
    assert not [f for f in os.listdir(tmp_path) if f.startswith("o.")]  # a failed run publishes nothing


def test_raw_chat_formats_and_rejected_units(tmp_path):
    """Raw logs go through extract (as every command reads them): sharegpt and openai records,
    system prompts kept aside, a broken line in the rejected file with its line number."""
    d = dialogues()
    share = [{"conversations": [{"from": "system", "value": "You are helpful."}] +
              [{"from": "human" if m["role"] == "user" else "gpt", "value": m["content"]} for m in x["messages"]]}
             for x in d[:3]]
    os.makedirs(tmp_path / "in")
    with open(tmp_path / "in" / "a.json", "w", encoding="utf-8") as f:
        json.dump(share, f, ensure_ascii=False)
    write_jsonl(tmp_path / "in" / "b.jsonl", [{"messages": [{"role": m["role"], "content": m["content"]}
                                                            for m in x["messages"]]} for x in d[3:5]] +
                ['{"messages": [', {"messages": [{"role": "user", "content": "What's the weather in Boston tomorrow?"},
                                                  {"role": "assistant", "content": "Sunny."},
                                                  {"role": "user", "content": "And my phone's battery?"}]}])
    out = str(tmp_path / "o.jsonl")
    with FakeAPI(reply=TopicJudge()) as api:
        assert main(["discriminator", "label", "--in", str(tmp_path / "in"), "--out", out, *sets(api, tmp_path)]) == 0
    got = rows(out)
    assert len(got) == 6 and got[0]["system"] == ["You are helpful."]
    assert all(m["role"] != "system" for r in got for m in r["messages"]) and got[0]["lang"] == "zh"
    gold = {tuple(m["content"] for m in x["messages"]): [m["topic_shift"] for m in x["messages"]] for x in d}
    # extract keeps the last chat without its unanswered question (set aside, in the rejected file)
    gold[("What's the weather in Boston tomorrow?", "Sunny.")] = [None, None]
    for r in got:
        want = gold[tuple(m["content"] for m in r["messages"])]
        assert [m["topic_shift"] for m in r["messages"]] == want
    rej = rows(str(tmp_path / "o.rejected.jsonl"))
    assert [(os.path.basename(x["source_file"]), x["line"], x["reason"]) for x in rej] == [
        ("b.jsonl", 3, "malformed_json"), ("b.jsonl", 4, "trailing_unanswered")]
    s = json.load(open(str(tmp_path / "o.summary.json")))
    assert s["rejected_input"] == {"malformed_json": 1} and s["set_aside"] == {"trailing_unanswered": 1}


def test_shard_folder_input(tmp_path, extract):
    d = dialogues()[:4]
    src = write_jsonl(tmp_path / "chats.jsonl", [{"messages": [{"role": m["role"], "content": m["content"]}
                                                               for m in x["messages"]]} for x in d])
    recs, _, _ = extract(src)
    folder = str(tmp_path / "out1")
    out = str(tmp_path / "o.jsonl")
    with FakeAPI(reply=TopicJudge()) as api:
        assert main(["discriminator", "label", "--in", folder, "--out", out, *sets(api, tmp_path)]) == 0
    got = rows(out)
    assert sorted(r["id"] for r in got) == sorted(r["id"] for r in recs)
    assert sum(m["topic_shift"] == 1 for r in got for m in r["messages"]) == sum(
        m["topic_shift"] == 1 for x in d for m in x["messages"])


def test_round_trip_train_reads_the_labels(tmp_path, capsys):
    """The labelled file is training data as it is: the reader sees the judge's labels, and
    `discriminator train` fits a model on them (real use-m3 embeddings)."""
    from discriminators.topic_continuity import data as D

    raw = write_jsonl(tmp_path / "chats.jsonl", [{"messages": [{"role": m["role"], "content": m["content"]}
                                                               for m in x["messages"]]} for x in dialogues()])
    out = str(tmp_path / "labelled.jsonl")
    with FakeAPI(reply=TopicJudge()) as api:
        assert main(["discriminator", "label", "--in", raw, "--out", out, *sets(api, tmp_path)]) == 0
    read = D.read(out, "jsonl")
    assert len(read) == 50
    assert sum(int((x.labels == 1).sum()) for x in read) == 40
    assert sum(int((x.labels >= 0).sum()) for x in read) == N
    model = str(tmp_path / "m")
    assert main(["discriminator", "train", "--data", f"jsonl:{out}", "--kinds", "logreg", "--folds", "2",
                 "--out", model]) == 0
    assert os.path.exists(os.path.join(model, "weights.npz"))
    info = json.load(open(os.path.join(model, "model.json")))
    assert info["info"]["data"] == ["labelled.jsonl"]
    # and eval scores a model against the judge's labels (the format is guessed from the name)
    capsys.readouterr()
    assert main(["discriminator", "eval", "--model", model, "--data", out, "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["format"] == "jsonl" and res["labelled_messages"] == N and abs(res["switch_rate"] - 40 / N) < 1e-9
