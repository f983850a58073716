"""PII stage: anonymisation, consistency, residual gate, scan / detect / eval tools."""
import json
import os
import re

import pytest

from conftest import write_jsonl
from pipeline import runner, shards
from pipeline.pii.anonymize import id_check_char, luhn_digit
from pipeline.stages.base import StageFailed


def cn_id(first17="11010519900307123"):
    return first17 + id_check_char(first17)


def card(prefix="622202123456789012"):
    return prefix + luhn_digit(prefix)


ID_OK = cn_id()
ID_BAD = ID_OK[:-1] + ("0" if ID_OK[-1] != "0" else "1")  # right shape and birth date, wrong check digit
CARD = card()
MOBILE = "13812345678"
EMAIL = "zhang.wei88@example.com"
KEY = "sk-" + "Ab3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY"
IP = "58.211.32.45"
ORDER = "2026110112345678"  # an order number: digits without the shape of any entity

PLANTED = [ID_OK, ID_BAD, CARD, MOBILE, EMAIL, KEY, IP]


def conversations():
    return [
        {"id": "zh1", "messages": [
            {"role": "system", "content": f"客服系统。当前用户手机号 {MOBILE}。"},
            {"role": "user", "content": f"我的身份证号是{ID_OK}，银行卡 {CARD}，订单号 {ORDER}。"},
            {"role": "assistant", "content": f"已收到，我们会联系 {MOBILE}，并发邮件到{EMAIL}。"},
            {"role": "user", "content": f"另一个证件号 {ID_BAD} 也帮我查一下，时间戳 1730428800000。"},
            {"role": "assistant", "content": "正在查询。"},
            {"role": "tool", "content": json.dumps({"id_card": ID_OK, "phone": MOBILE})},
            {"role": "assistant", "content": f"查到了，手机号 {MOBILE} 已绑定。"}]},
        {"id": "en1", "messages": [
            {"role": "user", "content": f"My server {IP} rejects my key {KEY}, mail me at {EMAIL}"},
            {"role": "assistant", "content": f"Revoke {KEY} now. I will reply to {EMAIL}."}]},
    ]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp("pii")
    src = write_jsonl(d / "c.jsonl", conversations())
    runner.run_stage("extract", {"source": "t"}, src, str(d / "ext"), progress=False)
    m = runner.run_stage("pii", {"salt": "s1"}, str(d / "ext"), str(d / "pii"), progress=False)
    return d, {r["id"]: r for r in shards.iter_records(str(d / "pii"))}, m


def test_every_planted_value_removed_from_every_role(built):
    d, recs, m = built
    assert set(recs) == {"zh1", "en1"}
    for r in recs.values():
        for msg in r["messages"]:
            for v in PLANTED:
                assert v not in msg["content"], (msg["role"], v)
    zh = recs["zh1"]["messages"]
    assert ORDER in zh[1]["content"] and "1730428800000" in zh[3]["content"]  # no shape: left alone
    assert "<API_KEY>" in recs["en1"]["messages"][0]["content"]
    found = m["pii"]["found"]
    assert found["PHONE_NUMBER"] >= 4 and found["CN_RESIDENT_ID"] == 3 and m["pii"]["residual"] == {}
    assert dict((x["name"], x["value"]) for x in recs["zh1"]["meta"]["pii_counts"])["CN_RESIDENT_ID"] == 3


def test_pseudonyms_consistent_and_format_preserving(built):
    _, recs, _ = built
    zh = recs["zh1"]["messages"]
    phones = [re.findall(r"(?<!\d)1[3-9]\d{9}(?!\d)", m["content"]) for m in zh]
    fake = phones[0][0]
    assert fake != MOBILE and all(p == [fake] for p in (phones[0], phones[2], phones[6]))
    tool = json.loads(zh[5]["content"])
    assert tool["phone"] == fake  # the same value gets the same fake in every turn and role
    fake_id = tool["id_card"]
    assert fake_id in zh[1]["content"] and fake_id != ID_OK
    assert fake_id[-1] == id_check_char(fake_id[:17])  # still a valid-looking resident id
    fake_card = re.search(r"银行卡 (\d{19})", zh[1]["content"]).group(1)
    assert fake_card != CARD and luhn_digit(fake_card[:-1]) == fake_card[-1]
    assert recs["en1"]["messages"][0]["content"].count("@example.com") == 1


def test_checksum_scores_and_shape_only_still_found():
    from pipeline.pii import get_analyzer
    an = get_analyzer()
    ok = [f for f in an.analyze(f"身份证{ID_OK}", "zh") if f.entity_type == "CN_RESIDENT_ID"]
    bad = [f for f in an.analyze(f"身份证{ID_BAD}", "zh") if f.entity_type == "CN_RESIDENT_ID"]
    assert ok and bad and ok[0].score > bad[0].score
    bad_card = CARD[:-1] + str((int(CARD[-1]) + 1) % 10)
    s_ok = max(f.score for f in an.analyze(f"卡号{CARD}", "zh") if f.entity_type == "CREDIT_CARD")
    s_bad = [f.score for f in an.analyze(f"卡号{bad_card}", "zh") if f.entity_type == "CREDIT_CARD"]
    assert not s_bad or s_ok > max(s_bad)


def test_no_pii_in_outputs_manifest_or_logs(tmp_path, capfd):
    from pipeline.cli import main
    src = write_jsonl(tmp_path / "c.jsonl", conversations())
    cfg = tmp_path / "b.yaml"
    cfg.write_text(f"inputs:\n  - path: {src}\n    source: t\nstages:\n  - name: extract\n  - name: pii\n")
    assert main(["build", str(cfg), "--out", str(tmp_path / "out")]) == 0
    assert main(["inspect", str(tmp_path / "out"), "-n", "5"]) == 0
    logs = capfd.readouterr()
    blobs = [logs.out, logs.err]
    for root, _, files in os.walk(tmp_path / "out" / "stages" / "02-pii"):
        for f in files:
            if "rejected" not in root:
                blobs.append(open(os.path.join(root, f), "rb").read().decode("utf-8", "replace"))
    blobs.append(open(tmp_path / "out" / "manifest.json").read())
    for v in PLANTED:
        assert not any(v in b for b in blobs), v
    # the raw extract stage still holds PII: scan says so; the pii stage output scans clean
    assert main(["scan", str(tmp_path / "out" / "stages" / "01-extract")]) == 1
    assert main(["scan", str(tmp_path / "out")]) == 0
    out = capfd.readouterr().out
    assert "PII findings" in out and not any(v in out for v in PLANTED)


def test_residual_gate_trips_when_a_recognizer_is_off(built, tmp_path):
    d, _, _ = built
    with pytest.raises(StageFailed, match="residual PII"):
        runner.run_stage("pii", {"entities": ["PHONE_NUMBER", "EMAIL_ADDRESS", "API_KEY", "IP_ADDRESS", "CREDIT_CARD"]},
                         str(d / "ext"), str(tmp_path / "p"), progress=False)
    rej = list(shards.iter_records(str(tmp_path / "p"), "rejected"))
    assert [r["record_id"] for r in rej] == ["zh1"] and "CN_RESIDENT_ID" in rej[0]["detail"]
    assert ID_OK not in rej[0]["detail"]  # offsets, never values
    assert os.stat(shards.data_files(str(tmp_path / "p"), "rejected")[0]).st_mode & 0o777 == 0o600
    assert not shards.is_complete(str(tmp_path / "p"))


def test_corpus_scope_shares_pseudonyms_across_conversations(tmp_path):
    rows = [{"id": f"c{i}", "messages": [{"role": "user", "content": f"电话 {MOBILE}"},
                                        {"role": "assistant", "content": "好的"}]} for i in range(2)]
    src = write_jsonl(tmp_path / "c.jsonl", rows)
    runner.run_stage("extract", {}, src, str(tmp_path / "e"), progress=False)
    for scope, same in (("conversation", False), ("corpus", True)):
        runner.run_stage("pii", {"scope": scope, "salt": "x"}, str(tmp_path / "e"), str(tmp_path / scope), progress=False)
        a, b = [r["messages"][0]["content"] for r in shards.iter_records(str(tmp_path / scope))]
        assert (a == b) is same


def test_detect_and_eval_tools(tmp_path):
    from pipeline import scan as tools
    data = tmp_path / "d.jsonl"
    rows = [{"text": f"联系我 {MOBILE} 或 {EMAIL}", "spans": [
                {"entity_type": "PHONE_NUMBER", "start_position": 4, "end_position": 15},
                {"entity_type": "EMAIL_ADDRESS", "start_position": 18, "end_position": 18 + len(EMAIL)}]},
            {"text": "nothing here, order 2026110112345678", "spans": []}]
    write_jsonl(data, rows)
    n = tools.detect_file(str(data), str(tmp_path / "o.jsonl"))
    out = [json.loads(x) for x in open(tmp_path / "o.jsonl")]
    assert n == 2 and {(p["entity_type"], p["start"], p["end"]) for p in out[0]["pii"]} == {
        ("PHONE_NUMBER", 4, 15), ("EMAIL_ADDRESS", 18, 18 + len(EMAIL))}
    assert out[1]["pii"] == []
    res = tools.evaluate(str(data))["entities"]
    assert res["PHONE_NUMBER"]["recall"] == 1.0 and res["EMAIL_ADDRESS"]["precision"] == 1.0


def test_addresses_of_no_one_are_not_pii_and_short_maestro_cards_are():
    from pipeline.pii import get_analyzer
    an = get_analyzer()
    found = lambda t: [(f.entity_type, t[f.start:f.end]) for f in an.analyze(t, "zh")]  # noqa: E731
    for t in ("Redis({ host: '127.0.0.1' })", "listen on 0.0.0.0:8080", "ping ::1", "文档地址 192.0.2.10"):
        assert found(t) == [], t
    assert found("服务器 58.211.32.45 宕机") == [("IP_ADDRESS", "58.211.32.45")]
    maestro = "63042737339" + luhn_digit("63042737339")
    assert found(f"card {maestro} please") == [("CREDIT_CARD", maestro)]
    wrong = maestro[:-1] + str((int(maestro[-1]) + 1) % 10)
    assert found(f"card {wrong} please") == [] and found("ts 173042880000 ok") == []


def test_cue_gated_phones_in_any_layout():
    from pipeline.pii import get_analyzer
    an = get_analyzer()
    phones = lambda t: [t[f.start:f.end] for f in an.analyze(t, "en") if f.entity_type == "PHONE_NUMBER"]  # noqa: E731
    assert phones("Personal Info:\nPhone:\n467 3395") == ["467 3395"]
    assert phones("Can someone call me on 9472 7916 today") == ["9472 7916"]
    assert phones("Mobile: (37) 788-063") == ["(37) 788-063"]
    # a label after the number, as address blocks write it; contiguous runs; phrase cues
    assert phones("APO AA 61487\n781 1704 office\n") == ["781 1704"]
    assert phones("Nicosia 61089\n3660170548-Fax") == ["3660170548"]
    assert phones("They're not answering at 78 651 450") == ["78 651 450"]
    assert phones("DESK: 467 3395") == ["467 3395"]  # the lower-cased gate still opens
    # a label word inside another word is no cue
    assert phones("order 1234 5678 works") == [] and phones("scored 1234567 homework points") == []
    # no cue, a date, too few digits, a cue inside another word: nothing
    assert phones("They moved to 467 3395 last year") == []
    assert phones("call on 2023-10-05 please") == [] and phones("call 12 34") == []
    assert phones("the recall was 1234 5678") == []


def test_second_pass_moves_first_pass_spans_by_the_length_it_changed():
    """A name the re-scan finds next to a pseudonym is anonymised in a second pass; the first
    pass's spans are moved by what each earlier replacement changed, so `meta.pii_spans` still
    points at the pseudonyms."""
    from presidio_analyzer import RecognizerResult

    from pipeline.pii.anonymize import Pseudonymizer, anonymize_text
    from pipeline.stages.pii import _second_pass

    pseudo = Pseudonymizer("salt", {"PERSON": "placeholder"}, "pseudonym")
    text = f"Bob said call {MOBILE} or mail bob@example.com, Bob"
    first = [RecognizerResult("PHONE_NUMBER", text.index(MOBILE), text.index(MOBILE) + len(MOBILE), 1.0),
             RecognizerResult("EMAIL_ADDRESS", text.index("bob@"), text.index("bob@") + 15, 1.0)]
    new, spans = anonymize_text(text, first, pseudo, "")
    names = [RecognizerResult("PERSON", 0, 3, 0.9), RecognizerResult("PERSON", len(new) - 3, len(new), 0.9)]
    assert new[0:3] == "Bob" and new[-3:] == "Bob"
    out, moved = _second_pass((new, spans), names, pseudo, "")
    assert "Bob" not in out and MOBILE not in out and "bob@example.com" not in out
    assert [t for _, _, t in moved] == ["PERSON", "PHONE_NUMBER", "EMAIL_ADDRESS", "PERSON"]
    for (s, e, t), (s0, e0, _) in zip([m for m in moved if m[2] != "PERSON"], sorted(spans)):
        assert out[s:e] == new[s0:e0]  # the same pseudonym, where it moved to
    assert all(out[s:e] == "<PERSON>" for s, e, t in moved if t == "PERSON")
