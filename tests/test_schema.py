import pyarrow as pa

from pipeline.schema import SCHEMA, content_id, empty_meta, to_batch, validate_record


def good():
    return {"id": "r1", "source": "s", "domain": "general", "lang": "en",
            "messages": [{"role": "user", "content": "hi", "turn": 0, "topic_continuity": None, "synthetic": False},
                         {"role": "assistant", "content": "yo", "turn": 0, "topic_continuity": 0.9,
                          "synthetic": True}],
            "meta": empty_meta(session_id="x", flags=["a"])}


def test_valid_record_round_trips_through_arrow():
    rec = good()
    assert validate_record(rec) == []
    b = to_batch([rec])
    assert b.schema.equals(SCHEMA)
    back = b.to_pylist()[0]
    assert back["messages"][1]["topic_continuity"] == pa.scalar(0.9, pa.float32()).as_py()
    assert back["meta"]["session_id"] == "x" and back["meta"]["flags"] == ["a"]


def test_errors_name_record_and_field():
    rec = good()
    rec["messages"][1]["role"] = "moderator"
    rec["messages"][0]["content"] = 5
    rec["messages"][1]["topic_continuity"] = 1.5
    rec["lang"] = "fr"
    errs = validate_record(rec, "f.jsonl:3")
    assert any("record 'r1' (f.jsonl:3): messages[1].role: unknown role 'moderator'" in e for e in errs)
    assert any("messages[0].content: must be a string, got int" in e for e in errs)
    assert any("messages[1].topic_continuity" in e for e in errs)
    assert any(": lang:" in e for e in errs)


def test_turns_must_not_decrease_and_meta_fields_known():
    rec = good()
    rec["messages"][1]["turn"] = -1
    rec["meta"]["nonsense"] = 1
    errs = validate_record(rec)
    assert any("messages[1].turn" in e for e in errs)
    assert any("meta: unknown fields ['nonsense']" in e for e in errs)


def test_content_id_depends_on_source_role_and_content():
    m = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    assert content_id("s", m) == content_id("s", [dict(x) for x in m])
    assert content_id("s", m) != content_id("t", m)
    assert content_id("s", m) != content_id("s", [m[1], m[0]])
    # role/content boundaries are unambiguous
    assert content_id("s", [{"role": "user", "content": "ab"}]) != content_id("s", [{"role": "usera", "content": "b"}])
