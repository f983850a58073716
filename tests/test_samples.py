"""The team's own data_samples/: readers round-trip, event logs split into the expected sessions."""
import json
import os

import pytest

from conftest import SAMPLES, assert_accounting
from pipeline.io.writers import WRITERS, write_jsonl

NOTES = os.path.join(SAMPLES, "logs", "chat_events_2026-11-01.notes.json")
LOG = os.path.join(SAMPLES, "logs", "chat_events_2026-11-01.jsonl")


def test_event_log_sessions_gaps_tails_and_bad_lines(extract):
    notes = json.load(open(NOTES, encoding="utf-8"))
    recs, rej, m = extract(LOG, source="chatlog", tail_turns=12, session_gap_s=1800)
    assert_accounting(m, rej)
    sids = {r["meta"]["session_id"] for r in recs}
    for g in notes["gap_over_30min"]:
        assert {g["session_id"], g["session_id"] + "#1"} <= sids
    for g in notes["gap_near_miss_under_30min"]:
        assert g["session_id"] in sids and g["session_id"] + "#1" not in sids
    long = next(r for r in recs if r["meta"]["session_id"] == notes["long_session"]["session_id"])
    assert long["meta"]["trimmed_turns"] > 0
    assert max(x["turn"] for x in long["messages"]) == 11  # the last 12 exchanges
    want = {"truncated": "malformed_json", "glued": "malformed_json", "pyrepr": "malformed_json",
            "trailing_garbage": "malformed_json", "bad_utf8": "invalid_utf8", "empty": "empty_content",
            "missing_role": "missing_role", "unknown_role": "unknown_role", "text_number": "bad_type"}
    # event-level reasons only: a session split at a missing message also archives its cut parts
    got = {r["line"]: r["reason"] for r in rej if r["reason"] in want.values()}
    assert got == {b["line"]: want[b["kind"]] for b in notes["malformed_lines"]}
    # raw user ids never reach the output
    blob = json.dumps(recs, default=str)
    assert not any(u in blob for u in notes["users"])


def test_csv_support_export(extract):
    recs, rej, m = extract(os.path.join(SAMPLES, "logs", "support_export.csv"),
                           fields={"session_id": "sid", "user_id": "uid", "timestamp": "ts", "role": "speaker",
                                   "text": "msg"})
    assert_accounting(m, rej)
    assert len(recs) >= 3 and all(r["messages"][0]["role"] in ("user", "system") for r in recs)
    assert all(r["lang"] in ("zh", "mixed") for r in recs)


@pytest.mark.parametrize("path,fmt", [
    ("openai/openai_chat.jsonl", "openai"),
    ("sharegpt/sharegpt_mixed.jsonl", "sharegpt"),
    ("sharegpt/sharegpt_array.json", "sharegpt"),
    ("alpaca/alpaca_history.json", "alpaca"),
])
def test_formats_round_trip(tmp_path, extract, path, fmt):
    """sample -> shards -> export in the same format -> shards: same ids and messages."""
    recs, rej, m = extract(os.path.join(SAMPLES, path), source="s", tail_turns=0)
    assert_accounting(m, rej)
    assert recs
    out = tmp_path / f"export.{fmt}.jsonl"
    with open(out, "w", encoding="utf-8") as f:
        write_jsonl(recs, fmt, f)
    again, rej2, m2 = extract(str(out), source="s", tail_turns=0)
    assert rej2 == [] and m2["counts"]["repairs"] == {}
    strip = lambda rs: [(r["id"], r["lang"], r["messages"]) for r in rs]  # noqa: E731
    assert strip(again) == strip(recs)
    assert set(WRITERS) == {"openai", "sharegpt", "alpaca"}
