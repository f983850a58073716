"""The `topic` stage with the shipped model: pseudo share, determinism, split_at_switch."""
import glob
import json
import os

import pytest

from conftest import SAMPLES, assert_accounting, write_jsonl
from pipeline import runner, shards
from pipeline.config import ConfigError
from pipeline.stages.topic import pseudo_quota

LABELLED = os.path.join(SAMPLES, "topic_shift", "labelled_turns.jsonl")


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    """90 conversations: the 30 labelled samples in three variants, one with a system prompt."""
    rows = [json.loads(x) for x in open(LABELLED, encoding="utf-8")]
    out = []
    for v in range(3):
        for r in rows:
            msgs = [{"role": m["role"], "content": m["content"] + ("" if v == 0 else f" ({v})")} for m in r["messages"]]
            if v == 2:
                msgs = [{"role": "system", "content": "你是一个乐于助人的助手。"}] + msgs
            out.append({"messages": msgs})
    d = tmp_path_factory.mktemp("topic")
    src = write_jsonl(d / "in.jsonl", out)
    ex = str(d / "ex")
    runner.run_stage("extract", {}, src, ex, progress=False)
    return ex


def _run(inp, out, **params):
    m = runner.run_stage("topic", params, inp, out, progress=False)
    return (list(shards.iter_records(out)), list(shards.iter_records(out, "rejected")), m)


def _decisions(folder):
    t = [d for p in sorted(glob.glob(os.path.join(folder, ".work", "decisions", "part-*.arrow")))
         for d in shards.read_table(p).to_pylist()]
    return t


def test_pseudo_quota_formula():
    assert pseudo_quota(90, 50, 0.1) == 10       # 10 / (90 + 10) = 0.1
    assert pseudo_quota(90, 5, 0.1) == 5         # not enough pseudo: all of them
    assert pseudo_quota(90, 50, 0.0) == 0
    assert pseudo_quota(10, 50, 0.25) == 3       # round(3.33)


@pytest.mark.parametrize("ratio", [0.1, 0.3])
def test_ratio_policy_share_within_one_record(extracted, tmp_path, ratio):
    recs, rej, m = _run(extracted, str(tmp_path / "t"), pseudo_ratio=ratio, over_ratio="drop")
    assert_accounting(m, rej)
    st = m["topic"]
    n_true, n_pseudo, kept = st["true_multi_turn"], st["pseudo_multi_turn"], st["pseudo_kept"]
    assert n_true + n_pseudo == 90 and n_pseudo > kept > 0, st
    assert len(recs) == n_true + kept
    assert abs(kept - ratio * len(recs)) <= 1  # the configured share, within one record
    assert st["pseudo_share_after"] == pytest.approx(kept / len(recs))
    assert st["pseudo_share_before"] == pytest.approx(n_pseudo / 90)
    assert 0 < st["switch_rate"] < 1
    assert {r["reason"] for r in rej} == {"pseudo_over_ratio"} and len(rej) == n_pseudo - kept
    assert st["pseudo_dropped"] == n_pseudo - kept and st["pseudo_split"] == 0
    # every output message after the first scored one carries a probability; system messages none
    for r in recs:
        scored = [m for m in r["messages"] if m["role"] != "system"]
        assert scored[0]["topic_continuity"] is None
        assert all(0 <= m["topic_continuity"] <= 1 for m in scored[1:])
        assert all(m["topic_continuity"] is None for m in r["messages"] if m["role"] == "system")
        assert r["meta"]["stages"][-1] == "topic"


def test_ratio_policy_is_deterministic(extracted, tmp_path):
    a, _, _ = _run(extracted, str(tmp_path / "a"), pseudo_ratio=0.2, seed=5, over_ratio="drop")
    b, _, _ = _run(extracted, str(tmp_path / "b"), pseudo_ratio=0.2, seed=5, over_ratio="drop")
    c, _, _ = _run(extracted, str(tmp_path / "c"), pseudo_ratio=0.2, seed=6, over_ratio="drop")
    ids = lambda rs: sorted(r["id"] for r in rs)  # noqa: E731
    assert ids(a) == ids(b) and a[0]["messages"] == b[0]["messages"]
    assert len(ids(a)) == len(ids(c)) and ids(a) != ids(c)  # another seed samples other pseudo ones


def test_split_at_switch_keeps_only_on_topic_context(extracted, tmp_path):
    out = str(tmp_path / "s")
    recs, rej, m = _run(extracted, out, policy="split_at_switch")
    assert_accounting(m, rej)
    assert m["topic"]["pseudo_share_after"] == 0.0
    src = {r["id"]: r for r in shards.iter_records(extracted)}
    # switch flags per record id: decisions are (part, row) in input order
    dec = {(d["part"], d["row"]): d["switch"] for d in _decisions(out)}
    flags = {}
    for part_i, p in enumerate(shards.data_files(extracted)):
        r = 0
        for b in shards.iter_batches_of(p):
            for rid in b.column("id").to_pylist():
                flags[rid] = dec[(part_i, r)]
                r += 1
    pieces = {}
    for piece in recs + [json.loads(x["raw"]) for x in rej]:  # kept pieces and archived ones
        extra = json.loads(piece["meta"]["extra"] or "{}")
        if "split_from" in extra:
            pieces.setdefault(extra["split_from"], []).append((extra["split_piece"], piece))
        else:
            assert not any(flags[piece["id"]]), "a conversation with a switch left unsplit"
    assert pieces, "no pseudo conversation was split"
    assert {r["reason"] for r in rej} <= {"split_piece_no_reply"} and m["counts"]["rejected_total"] == 0
    for parent, ps in pieces.items():
        orig, sw = src[parent]["messages"], flags[parent]
        n_sys = sum(1 for x in orig if x["role"] == "system")
        body = []
        for _, piece in sorted(ps, key=lambda t: t[0]):
            msgs = piece["messages"]
            assert [x["content"] for x in msgs[:n_sys]] == [x["content"] for x in orig[:n_sys]]
            first = len(body) + n_sys  # index of the piece's first body message in the parent
            body += msgs[n_sys:]
            assert not any(sw[first + 1:first + len(msgs) - n_sys]), "a switch inside a piece"
            assert first == n_sys or sw[first], "a cut where there is no switch"
            assert msgs[n_sys]["topic_continuity"] is None and msgs[n_sys]["turn"] == 0
        # nothing lost: the pieces rebuild the parent's messages in order
        assert [x["content"] for x in body] == [x["content"] for x in orig[n_sys:]]
    kept_pieces = [r for r in recs if "split_from" in (r["meta"]["extra"] or "")]
    assert all("assistant" in [x["role"] for x in r["messages"]] for r in kept_pieces)


def test_default_splits_pseudo_beyond_the_ratio_and_loses_no_conversation(extracted, tmp_path):
    recs, rej, m = _run(extracted, str(tmp_path / "d"), pseudo_ratio=0.1)
    assert_accounting(m, rej)
    st = m["topic"]
    assert st["over_ratio"] == "split" and st["profile"] == "assistant"
    assert st["pseudo_dropped"] == 0 and m["counts"]["rejected_total"] == 0
    assert st["pseudo_split"] > 0 and 0 < st["pseudo_kept"] == st["pseudo_quota"]
    assert st["pseudo_kept"] + st["pseudo_kept_unsplittable"] + st["pseudo_split"] == st["pseudo_multi_turn"]
    # every input conversation is in the output whole or as pieces; pieces carry derived ids
    src_ids = {r["id"] for r in shards.iter_records(extracted)}
    whole = {r["id"] for r in recs if "split_from" not in (r["meta"]["extra"] or "")}
    pieces = [r for r in recs if "split_from" in (r["meta"]["extra"] or "")]
    parents = {json.loads(r["meta"]["extra"])["split_from"] for r in pieces}
    assert whole | parents == src_ids and not whole & parents
    assert len(parents) == st["pseudo_split"] and len(pieces) == st["split_pieces"]
    assert all(r["id"].startswith(json.loads(r["meta"]["extra"])["split_from"] + "-t") for r in pieces)
    assert {r["reason"] for r in rej} <= {"split_piece_no_reply"} and len(rej) == st["split_pieces_no_reply"]
    # the pseudo share of the output counts only the pseudo conversations kept whole
    assert st["pseudo_share_after"] == pytest.approx(
        (st["pseudo_kept"] + st["pseudo_kept_unsplittable"]) / len(recs))


def test_a_conversation_no_piece_of_which_stands_alone_is_kept_whole(extracted, tmp_path):
    """Every message a switch (both roles, threshold near 0): pieces of one message have no
    reply, so the conversation is kept whole instead of being lost."""
    recs, rej, m = _run(extracted, str(tmp_path / "w"), pseudo_ratio=0.0, threshold=1e-6,
                        switch_roles="user,assistant")
    assert_accounting(m, rej)
    st = m["topic"]
    assert st["pseudo_kept"] == 0 and st["pseudo_dropped"] == 0 and st["pseudo_kept_unsplittable"] > 0
    assert st["pseudo_kept_unsplittable"] + st["pseudo_split"] == st["pseudo_multi_turn"]
    src_ids = {r["id"] for r in shards.iter_records(extracted)}
    whole = {r["id"] for r in recs if "split_from" not in (r["meta"]["extra"] or "")}
    parents = {json.loads(r["meta"]["extra"])["split_from"] for r in recs if "split_from" in (r["meta"]["extra"] or "")}
    assert whole | parents == src_ids


def test_profile_sets_the_stage_threshold(extracted, tmp_path):
    from discriminators.topic_continuity.model import TopicModel
    raw = TopicModel.load(profile=None)
    _, _, m = _run(extracted, str(tmp_path / "p"), profile="chitchat", over_ratio="drop")
    assert m["topic"]["profile"] == "chitchat"
    assert m["topic"]["threshold"] == pytest.approx(raw.profiles["chitchat"]["threshold"])
    _, _, m2 = _run(extracted, str(tmp_path / "q"), profile="chitchat", threshold=0.97, over_ratio="drop")
    assert m2["topic"]["threshold"] == 0.97 and m2["topic"]["pseudo_multi_turn"] <= m["topic"]["pseudo_multi_turn"]


def test_bad_settings_are_named(extracted, tmp_path):
    with pytest.raises(ConfigError, match="pseudo_ratio"):
        _run(extracted, str(tmp_path / "x"), pseudo_ratio=1.5)
    with pytest.raises(ConfigError, match="policy"):
        _run(extracted, str(tmp_path / "y"), policy="drop_all")
    with pytest.raises(ConfigError, match="over_ratio"):
        _run(extracted, str(tmp_path / "o"), over_ratio="keep")
    with pytest.raises(ConfigError, match="unknown profile 'support'"):
        _run(extracted, str(tmp_path / "u"), profile="support")
    with pytest.raises(ConfigError, match="switch_roles"):
        _run(extracted, str(tmp_path / "z"), switch_roles="moderator")
