"""Extract stage on small inputs written here, Chinese and English."""
import json

from conftest import assert_accounting, event, write_jsonl


def test_roles_markup_merge_and_turns(tmp_path, extract):
    p = write_jsonl(tmp_path / "e.jsonl", [
        event("s1", "u1", "2026-11-01T09:00:00+08:00", "系统", "你是一个乐于助人的助手"),
        event("s1", "u1", "2026-11-01T09:00:01+08:00", "用户", "<|im_start|>user\n我想学 Python<|im_end|>"),
        event("s1", "u1", "2026-11-01T09:00:02+08:00", "用户", "从哪里开始？"),
        event("s1", "u1", "2026-11-01T09:00:09+08:00", "客服", "Assistant: 先学变量和函数。"),
        event("s1", "u1", "2026-11-01T09:00:20+08:00", "human", "那函数呢？"),
        event("s1", "u1", "2026-11-01T09:00:30+08:00", "gpt", "用 def 定义。"),
    ])
    recs, rej, m = extract(p, source="log", domain="code")
    assert_accounting(m, rej)
    assert len(recs) == 1 and rej == []
    r = recs[0]
    assert (r["source"], r["domain"], r["lang"]) == ("log", "code", "zh")
    assert [(x["role"], x["turn"]) for x in r["messages"]] == [
        ("system", 0), ("user", 0), ("assistant", 0), ("user", 1), ("assistant", 1)]
    assert r["messages"][1]["content"] == "我想学 Python\n从哪里开始？"
    assert r["messages"][2]["content"] == "先学变量和函数。"
    assert m["counts"]["repairs"] == {"markup_stripped": 2, "same_role_merged": 1}
    assert m["counts"]["kept"] == 6


def test_inactivity_gap_splits_session_and_user_ids_are_salted(tmp_path, extract, monkeypatch):
    rows = [event("s", "alice@example.com", 1000, "user", "q1"), event("s", "alice@example.com", 1010, "bot", "a1"),
            event("s", "alice@example.com", 1010 + 1801, "user", "q2"),
            event("s", "alice@example.com", 1010 + 1802, "bot", "a2")]
    p = write_jsonl(tmp_path / "e.jsonl", rows)
    monkeypatch.setenv("TURNFORGE_USER_SALT", "salt-A")
    recs, rej, m = extract(p, session_gap_s=1800)
    assert [r["meta"]["session_id"] for r in recs] == ["s", "s#1"]
    assert [r["messages"][0]["content"] for r in recs] == ["q1", "q2"]
    h = recs[0]["meta"]["user_hash"]
    assert h == recs[1]["meta"]["user_hash"] and "alice" not in h and len(h) == 16
    assert m["user_salt"] == "configured"
    monkeypatch.setenv("TURNFORGE_USER_SALT", "salt-B")
    recs_b, _, _ = extract(p, session_gap_s=1800)
    assert recs_b[0]["meta"]["user_hash"] != h
    recs_c, _, _ = extract(p, session_gap_s=5000)
    assert len(recs_c) == 1 and len(recs_c[0]["messages"]) == 4


def test_interleaved_users_stream_into_their_sessions(tmp_path, extract):
    rows = []
    for t in range(0, 200, 2):  # two users talking at once, events interleaved in time
        rows.append(event("a", "ua", 10 * t, "user" if t % 4 == 0 else "assistant", f"a{t}"))
        rows.append(event("b", "ub", 10 * t + 1, "user" if t % 4 == 0 else "assistant", f"b{t}"))
    recs, rej, m = extract(write_jsonl(tmp_path / "e.jsonl", rows), tail_turns=0)
    assert sorted(r["meta"]["session_id"] for r in recs) == ["a", "b"]
    for r in recs:
        assert all(x["content"][0] == r["meta"]["session_id"] for x in r["messages"])
        assert len(r["messages"]) == 100
    assert_accounting(m, rej)


def test_tail_selection_keeps_last_turns_and_archives_the_head(tmp_path, extract):
    msgs = [{"role": "system", "content": "sys"}]
    for i in range(10):
        msgs += [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": f"answer {i}" * 10}]
    p = write_jsonl(tmp_path / "o.jsonl", [{"id": "c1", "messages": msgs}])
    recs, rej, m = extract(p, tail_turns=3)
    r = recs[0]
    assert r["id"] == "c1"
    assert [x["content"] for x in r["messages"] if x["role"] == "user"] == ["question 7", "question 8", "question 9"]
    assert r["messages"][0] == {"role": "system", "content": "sys", "turn": 0, "topic_continuity": None,
                                "synthetic": False}
    assert [x["turn"] for x in r["messages"]] == [0, 0, 0, 1, 1, 2, 2]
    assert r["meta"]["trimmed_turns"] == 7
    (head,) = rej
    assert head["reason"] == "tail_trimmed" and head["n_inputs"] == 0 and len(json.loads(head["raw"])) == 14
    assert_accounting(m, rej)
    # by characters: each turn is ~100 chars, 250 chars keep the last two whole turns
    recs, _, _ = extract(p, tail_turns=0, tail_chars=250)
    assert [x["content"] for x in recs[0]["messages"] if x["role"] == "user"] == ["question 8", "question 9"]
    # a single turn over the budget is still kept (at least one turn)
    recs, _, _ = extract(p, tail_turns=0, tail_chars=5)
    assert [x["content"] for x in recs[0]["messages"] if x["role"] == "user"] == ["question 9"]


def test_structure_repairs(tmp_path, extract):
    p = write_jsonl(tmp_path / "s.jsonl", [
        {"id": "a", "conversations": [{"from": "gpt", "value": "Hi! How can I help?"},
                                      {"from": "human", "value": "What is 2+2?"}, {"from": "gpt", "value": "4"},
                                      {"from": "human", "value": "thanks"}]},
        {"id": "b", "conversations": [{"from": "human", "value": "x"}, {"from": "system", "value": "late"},
                                      {"from": "gpt", "value": "y"}]},
        {"id": "c", "conversations": [{"from": "human", "value": "only a question"}]},
    ])
    recs, rej, m = extract(p)
    assert [r["id"] for r in recs] == ["a"]
    assert [x["content"] for x in recs[0]["messages"]] == ["What is 2+2?", "4"]
    reasons = sorted(r["reason"] for r in rej)
    assert reasons == ["leading_non_user", "misplaced_system", "no_exchange", "trailing_unanswered",
                       "trailing_unanswered"]
    assert_accounting(m, rej)
    assert m["counts"]["rejected"] == {"misplaced_system": 1, "no_exchange": 1}


def test_lang_detection_zh_en_mixed(tmp_path, extract):
    def conv(i, q, a):
        return {"id": str(i), "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
    p = write_jsonl(tmp_path / "l.jsonl", [
        conv(1, "今天天气怎么样？", "今天晴天，适合出门散步。"),
        conv(2, "How is the weather today?", "Sunny, good for a walk."),
        conv(3, "帮我 review 一下这段 Python code, 看看 performance 有没有 problem", "好的，请把代码发给我"),
        conv(4, "12345", "67890"),
    ])
    recs, _, _ = extract(p)
    assert [r["lang"] for r in recs] == ["zh", "en", "mixed", "other"]


def test_tool_messages_and_alpaca_history(tmp_path, extract):
    p = write_jsonl(tmp_path / "t.jsonl", [{"messages": [
        {"role": "user", "content": "weather in Paris?"},
        {"role": "assistant", "content": "calling get_weather"},
        {"role": "tool", "content": "{\"temp\": 12}"}, {"role": "tool", "content": "{\"rain\": false}"},
        {"role": "assistant", "content": "12 degrees, dry."}]}])
    recs, _, _ = extract(p)
    assert [x["role"] for x in recs[0]["messages"]] == ["user", "assistant", "tool", "tool", "assistant"]
    assert {x["turn"] for x in recs[0]["messages"]} == {0}
    a = tmp_path / "a.json"
    a.write_text(json.dumps([{"instruction": "再解释一下", "input": "", "output": "好的",
                              "history": [["什么是递归？", "函数调用自己。"]], "system": "简洁"}],
                            ensure_ascii=False), encoding="utf-8")
    recs, _, _ = extract(a)
    assert [(x["role"], x["turn"], x["content"]) for x in recs[0]["messages"]] == [
        ("system", 0, "简洁"), ("user", 0, "什么是递归？"), ("assistant", 0, "函数调用自己。"),
        ("user", 1, "再解释一下"), ("assistant", 1, "好的")]


def test_markup_flag_and_reject_modes(tmp_path, extract):
    rows = [{"id": "m", "messages": [{"role": "user", "content": "[INST] hi [/INST]"},
                                     {"role": "assistant", "content": "hello"}]},
            {"id": "t", "messages": [{"role": "user", "content": "summarise:\nHuman: hi\nAssistant: hello"},
                                     {"role": "assistant", "content": "a greeting"}]}]
    p = write_jsonl(tmp_path / "m.jsonl", rows)
    recs, rej, m = extract(p, markup="flag")
    assert recs[0]["messages"][0]["content"] == "[INST] hi [/INST]"
    assert recs[0]["meta"]["flags"] == ["chat_markup"] and recs[1]["meta"]["flags"] == ["embedded_dialogue"]
    recs, rej, m = extract(p, markup="reject", embedded_dialogue="reject")
    assert recs == [] and sorted(r["reason"] for r in rej) == ["chat_markup", "embedded_dialogue"]
    assert "messages[0].content" in rej[0]["detail"]


def test_bad_input_never_crashes_and_nothing_is_lost(tmp_path, extract):
    """Malformed JSON, unknown/missing roles, empty content, wrong types, invalid UTF-8, a 5 MB
    message, a 10,000-turn session, duplicate ids: each rejected with a reason or repaired."""
    ok = lambda i: {"id": i, "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}  # noqa
    lines = [
        json.dumps(ok("dup")),
        '{"id": "broken", "messages": [',
        json.dumps({"id": "r1", "messages": [{"role": "moderator", "content": "x"}]}),
        json.dumps({"id": "r2", "messages": [{"content": "no role"}, {"role": "assistant", "content": "a"}]}),
        json.dumps({"id": "r3", "messages": [{"role": "user", "content": 42}, {"role": "assistant", "content": "a"}]}),
        json.dumps({"id": "r4", "messages": "not a list"}),
        json.dumps({"id": "r5", "messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": ""}]}),
        json.dumps({"id": "big", "messages": [{"role": "user", "content": "x" * 5_000_000},
                                              {"role": "assistant", "content": "a"}]}),
        json.dumps(ok("dup")).replace('"a"', '"other answer"'),
        json.dumps(["not", "an", "object"]),
    ]
    p = tmp_path / "bad.jsonl"
    p.write_bytes(("\n".join(lines) + "\n").encode() + b'{"id": "u8", "messages": "\xff"}\n')
    recs, rej, m = extract(p)
    assert_accounting(m, rej)
    c = m["counts"]
    assert c["in"] == 11 and c["kept"] == 2
    assert c["rejected"] == {"bad_type": 3, "invalid_utf8": 1, "malformed_json": 1, "message_too_long": 1,
                             "missing_role": 1, "no_exchange": 1, "unknown_role": 1}
    by_line = {r["line"]: r for r in rej}
    assert by_line[2]["reason"] == "malformed_json" and by_line[2]["raw"].startswith('{"id": "broken"')
    assert by_line[3]["detail"] == "messages[0].role: unknown role 'moderator'"
    assert by_line[5]["detail"] == "messages[0].content: expected a string, got int"
    assert by_line[8]["reason"] == "message_too_long" and by_line[8]["record_id"] == "big"
    # duplicate ids: the later one is renamed deterministically, not dropped
    assert sorted(r["id"] for r in recs) == ["dup", "dup~part-00000-00000:1"]
    assert m["duplicate_ids_renamed"] == 1

    # a 10,000-turn session from an event log: tail kept, head archived, memory guard counted
    rows = []
    for t in range(10_000):
        rows += [event("long", "u", 2 * t, "user", f"q{t}"), event("long", "u", 2 * t + 1, "bot", f"a{t}")]
    recs, rej, m = extract(write_jsonl(tmp_path / "long.jsonl", rows), tail_turns=5, max_session_events=1000)
    assert_accounting(m, rej)
    assert [x["content"] for x in recs[0]["messages"]][-2:] == ["q9999", "a9999"]
    guard_cut = sum(r["n_inputs"] for r in rej if "early events" in r["detail"])
    left_turns = recs[0]["meta"]["trimmed_turns"] + 5
    assert guard_cut > 0 and 500 <= left_turns <= 1000  # the guard holds between cap and 2 x cap events
    assert guard_cut + 2 * left_turns == 20_000
    assert m["counts"]["kept"] == 10 and m["counts"]["rejected"] == {"tail_trimmed": 19_990}


def test_event_level_errors_reject_single_events(tmp_path, extract):
    rows = [event("s", "u", 1, "user", "q"), event("s", "u", 2, "moderator_x", "hmm"),
            {"session_id": "s", "user_id": "u", "timestamp": 3, "text": "no role"},
            event("s", "u", 4, "user", ""), event("s", "u", 5, "user", 7), event("s", "u", "soon", "user", "x"),
            event("s", "u", 6, "bot", "a")]
    recs, rej, m = extract(write_jsonl(tmp_path / "e.jsonl", rows))
    assert_accounting(m, rej)
    assert [x["content"] for x in recs[0]["messages"]] == ["q", "a"]
    assert {r["line"]: r["reason"] for r in rej} == {2: "unknown_role", 3: "missing_role", 4: "empty_content",
                                                      5: "bad_type", 6: "bad_timestamp"}


def test_csv_events_with_mapped_columns(tmp_path, extract):
    p = tmp_path / "c.csv"
    p.write_text("sid,uid,ts,speaker,msg\n9,u1,100,customer,\"订单, 还没到\"\n9,u1,160,agent,正在查询\n",
                 encoding="utf-8")
    recs, rej, m = extract(p, fields={"session_id": "sid", "user_id": "uid", "timestamp": "ts", "role": "speaker",
                                      "text": "msg"})
    assert [x["content"] for x in recs[0]["messages"]] == ["订单, 还没到", "正在查询"]
    assert recs[0]["meta"]["start_time"].timestamp() == 100


def test_markup_cleaning_leaves_code_and_content_words_alone():
    from pipeline.text import clean_markup
    code = "Here:\n```java\npublic List<User> all() { return repo.findAll(); }\n```"
    assert clean_markup(code, "assistant") == (code, [])
    assert clean_markup("AI：控制非玩家角色的代码。", "assistant") == ("AI：控制非玩家角色的代码。", [])
    assert clean_markup("<s>[INST] 你好 [/INST]", "user") == ("你好", ["template_token"])
    assert clean_markup("用户：你好", "user") == ("你好", ["speaker_label"])
    # a label naming the other role is content (a script the assistant wrote), only flagged
    script = "用户：嘿，小猫！\n猫：喵。\n用户：新的玩具？"
    assert clean_markup(script, "assistant") == (script, ["embedded_dialogue"])
    assert clean_markup("strike <s>this</s> out", "user")[1] == []


def test_rejected_raw_is_the_input_line_byte_for_byte(tmp_path, extract):
    """The archive keeps what the input said, not a re-serialisation of it (no added keys,
    the input's own spacing, key order and escapes)."""
    lines = ['{"messages":[{"role":"moderator","content":"caf\\u00e9"}],  "id" : "r1"}',
             '{"id": "r2", "messages": "not a list"}',
             '{ "session_id":"s","role":"speaker?","text":"hi" ,"timestamp":1}']
    recs, rej, m = extract(write_jsonl(tmp_path / "r.jsonl", lines[:2]))
    assert_accounting(m, rej)
    assert {r["line"]: r["raw"] for r in rej} == {1: lines[0], 2: lines[1]}
    recs, rej, m = extract(write_jsonl(tmp_path / "e.jsonl", lines[2:]))
    assert [(r["reason"], r["raw"]) for r in rej] == [("unknown_role", lines[2])]


def test_a_missing_reply_keeps_the_turn_boundary(tmp_path, extract):
    """A rejected assistant event between two user messages does not glue the user messages
    into one turn: the conversation is split there, the unanswered question is archived."""
    rows = [event("s", "u", 1, "user", "how do I reset my password?"), event("s", "u", 2, "bot", "use the link"),
            event("s", "u", 3, "user", "the link expired"), event("s", "u", 4, "bot", None),
            event("s", "u", 5, "user", "are you there?"), event("s", "u", 6, "bot", "yes, sending a new link")]
    recs, rej, m = extract(write_jsonl(tmp_path / "e.jsonl", rows))
    assert_accounting(m, rej)
    assert [[x["content"] for x in r["messages"]] for r in recs] == [
        ["how do I reset my password?", "use the link"], ["are you there?", "yes, sending a new link"]]
    assert [r["meta"]["session_id"] for r in recs] == ["s", "s/1"]
    assert sorted((r["reason"], r["n_inputs"]) for r in rej) == [("bad_type", 1), ("trailing_unanswered", 1)]
    (cut,) = [r for r in rej if r["reason"] == "trailing_unanswered"]
    assert [x["content"] for x in json.loads(cut["raw"])] == ["the link expired"]
    assert "same_role_merged" not in m["counts"]["repairs"]
    # two user messages with nothing missing between them are still one turn
    recs, _, _ = extract(write_jsonl(tmp_path / "f.jsonl", rows[:3] + rows[4:]))
    assert recs[0]["messages"][2]["content"] == "the link expired\nare you there?"


def test_an_empty_reply_in_a_conversation_record_splits_it(tmp_path, extract):
    p = write_jsonl(tmp_path / "o.jsonl", [{"id": "c", "messages": [
        {"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "q2"}, {"role": "assistant", "content": ""},
        {"role": "user", "content": "q3"}, {"role": "assistant", "content": "a3"}]}])
    recs, rej, m = extract(p)
    assert_accounting(m, rej)
    assert [(r["id"], [x["content"] for x in r["messages"]]) for r in recs] == [
        ("c", ["q1", "a1"]), ("c/1", ["q3", "a3"])]
    assert m["counts"]["in"] == 1 and m["counts"]["kept"] == 1
