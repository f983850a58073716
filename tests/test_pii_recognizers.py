"""PII recognizers and PiiAnalyzer (pipeline/pii): offsets, scores, negatives, fast path.

Runs offline: presidio with the no-op NLP engine, no spaCy model (the spaCy plumbing is
tested with a blank pipeline saved to tmp_path).  Checksum-valid IDs and cards are made
by the helpers below (independent of the code under test) or by Faker('zh_CN').
"""
import random
import time

import pytest

pytest.importorskip("presidio_analyzer")
faker = pytest.importorskip("faker")

from pipeline.pii import recognizers as R  # noqa: E402
from pipeline.pii.analyzer import PiiAnalyzer, resolve_overlaps  # noqa: E402

# ---------------------------------------------------------------------------------
# helpers: checksums written independently of pipeline.pii.recognizers
# ---------------------------------------------------------------------------------

_W = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]


def id_check(first17):
    return "10X98765432"[sum(int(d) * w for d, w in zip(first17, _W)) % 11]


def make_id(region="110101", birth="19900307", seq="451"):
    first = region + birth + seq
    return first + id_check(first)


def break_check(value):
    """Same value with a different (wrong) last check character."""
    last = value[-1]
    for c in "0123456789X":
        if c != last.upper():
            return value[:-1] + c
    raise AssertionError


def luhn_digit(body):
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def make_card(prefix, length, rng=random.Random(7)):
    body = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
    return body + luhn_digit(body)


def break_luhn(card):
    return card[:-1] + str((int(card[-1]) + 5) % 10)


@pytest.fixture(scope="module")
def pii():
    # the structured recognizers alone; names and addresses: tests/test_pii_names.py
    return PiiAnalyzer(spacy=False, names=False)


def found(pii, text, lang="zh", fast=True):
    return [(r.entity_type, text[r.start : r.end], r.start, r.end) for r in pii.analyze(text, lang, fast=fast)]


def key(results):
    return [(r.entity_type, r.start, r.end, r.score) for r in results]


def expect(text, *values):
    """(entity, value) pairs -> (entity, value, start, end) at the first occurrence."""
    out = []
    for entity, value in values:
        start = text.index(value)
        out.append((entity, value, start, start + len(value)))
    return out


# ---------------------------------------------------------------------------------
# checksums
# ---------------------------------------------------------------------------------


def test_checksum_helpers_agree_with_faker():
    fz = faker.Faker("zh_CN")
    fz.seed_instance(1)
    for _ in range(50):
        ssn = fz.ssn()
        assert R.cn_id_checksum_ok(ssn) and id_check(ssn[:17]) == ssn[17]
        assert R.cn_id_fields_plausible(ssn)
    assert R.luhn_ok(make_card("62", 19)) and not R.luhn_ok(break_luhn(make_card("62", 19)))
    assert R.card_brand("6222021234567890123") == "unionpay"
    assert R.card_brand("4111111111111111") == "visa"
    assert R.card_brand("2026110112345678") is None


# ---------------------------------------------------------------------------------
# each entity, exact offsets, Chinese and English, glued to CJK
# ---------------------------------------------------------------------------------

VALID_ID = make_id()
UNIONPAY = make_card("622202", 19)
GHP = "ghp_" + "A1b2C3d4E5" * 4
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7Yq1234567890abcdef\n"
    "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA==\n-----END RSA PRIVATE KEY-----"
)

CASES = [
    ("我的手机号是13812345678谢谢", "zh", [("PHONE_NUMBER", "13812345678")]),
    ("Call me at +86-139-0000-1111 tomorrow.", "en", [("PHONE_NUMBER", "+86-139-0000-1111")]),
    (
        "电话 138 1234 5678，座机(010) 62345678或0755-2345678。",
        "zh",
        [
            ("PHONE_NUMBER", "138 1234 5678"),
            ("PHONE_NUMBER", "(010) 62345678"),
            ("PHONE_NUMBER", "0755-2345678"),
        ],
    ),
    ("my phone number is 212-555-0134, thanks", "en", [("PHONE_NUMBER", "212-555-0134")]),
    (f"身份证号{VALID_ID}，请核对", "zh", [("CN_RESIDENT_ID", VALID_ID)]),
    (f"ID card {VALID_ID[:6]} {VALID_ID[6:14]} {VALID_ID[14:]} ok", "en",
     [("CN_RESIDENT_ID", f"{VALID_ID[:6]} {VALID_ID[6:14]} {VALID_ID[14:]}")]),
    (f"卡号{UNIONPAY}谢谢", "zh", [("CREDIT_CARD", UNIONPAY)]),
    ("Pay with 4111 1111 1111 1111 please.", "en", [("CREDIT_CARD", "4111 1111 1111 1111")]),
    ("邮箱zhang.san@example.com谢谢", "zh", [("EMAIL_ADDRESS", "zhang.san@example.com")]),
    ("mail me: li.si+tag@corp.example.co.uk.", "en", [("EMAIL_ADDRESS", "li.si+tag@corp.example.co.uk")]),
    (
        "服务器192.168.10.25宕机了，备用2409:8a00:6c1d::8a2e:370:7334。",
        "zh",
        [("IP_ADDRESS", "192.168.10.25"), ("IP_ADDRESS", "2409:8a00:6c1d::8a2e:370:7334")],
    ),
    ("护照号码E12345678，新版护照EA1234567", "zh", [("CN_PASSPORT", "E12345678"), ("CN_PASSPORT", "EA1234567")]),
    ("车牌京A12345，另一辆粤B·D12345。", "zh", [("CN_LICENSE_PLATE", "京A12345"), ("CN_LICENSE_PLATE", "粤B·D12345")]),
    (
        "我的QQ是 123456789，微信：wxid_ab12cd",
        "zh",
        [("CN_ACCOUNT_ID", "123456789"), ("CN_ACCOUNT_ID", "wxid_ab12cd")],
    ),
    ("my username: bob_99 thanks", "en", [("CN_ACCOUNT_ID", "bob_99")]),
    (
        "连https://admin:s3cr3t@db.example.com:5432/prod看看",
        "zh",
        [("URL_WITH_SECRET", "https://admin:s3cr3t@db.example.com:5432/prod")],
    ),
    (
        "链接https://api.example.com/v1?access_token=abcDEF123456谢谢",
        "zh",
        [("URL_WITH_SECRET", "https://api.example.com/v1?access_token=abcDEF123456")],
    ),
    (
        "key=sk-proj-Abc123Def456Ghi789Jkl012Mno345 and AKIAIOSFODNN7EXAMPL3",
        "en",
        [("API_KEY", "sk-proj-Abc123Def456Ghi789Jkl012Mno345"), ("API_KEY", "AKIAIOSFODNN7EXAMPL3")],
    ),
    (
        f"token {GHP} and xoxb-123456789012-abcdefABCDEF",
        "en",
        [("API_KEY", GHP), ("API_KEY", "xoxb-123456789012-abcdefABCDEF")],
    ),
    (
        "curl -H 'Authorization: Bearer eyJhbGciOi1234567890abcdef'",
        "en",
        [("API_KEY", "eyJhbGciOi1234567890abcdef")],
    ),
    (f"私钥如下:\n{PEM}\n谢谢", "zh", [("API_KEY", PEM)]),
    ("数据库密码：Abc12345，别外传", "zh", [("API_KEY", "Abc12345")]),
]


@pytest.mark.parametrize("text,lang,expected", CASES, ids=[c[0][:24] for c in CASES])
def test_entities_exact_offsets(pii, text, lang, expected):
    want = expect(text, *expected)
    assert found(pii, text, lang) == want
    # lang only matters for spaCy NER: the structured findings are the same either way
    assert found(pii, text, "en" if lang == "zh" else "zh") == want


def test_values_inside_long_chinese_paragraph(pii):
    email, phone = "wang_wu@163.com", "15900001111"
    text = f"您好，我是王五，邮箱{email}，手机{phone}，身份证{VALID_ID}，麻烦尽快处理。"
    assert found(pii, text) == expect(
        text, ("EMAIL_ADDRESS", email), ("PHONE_NUMBER", phone), ("CN_RESIDENT_ID", VALID_ID)
    )


def test_faker_values_are_found(pii):
    fz = faker.Faker("zh_CN")
    fz.seed_instance(3)
    for _ in range(30):
        ssn, phone = fz.ssn(), fz.phone_number()
        text = f"我的身份证是{ssn}，电话{phone}。"
        assert found(pii, text) == expect(text, ("CN_RESIDENT_ID", ssn), ("PHONE_NUMBER", phone))
        assert pii.analyze(text)[0].score == 1.0


# ---------------------------------------------------------------------------------
# scores: valid checksum > wrong checksum, wrong checksum still reported
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize("birth", ["19900307", "20000229", "19751231"])
def test_resident_id_wrong_check_digit_is_reported_lower(pii, birth):
    valid = make_id("440305", birth, "123")
    wrong = break_check(valid)
    [rv] = pii.analyze(f"身份证{valid}。")
    [rw] = pii.analyze(f"身份证{wrong}。")
    assert (rv.entity_type, rw.entity_type) == ("CN_RESIDENT_ID", "CN_RESIDENT_ID")
    assert (rv.start, rv.end) == (rw.start, rw.end) == (3, 21)
    assert rv.score >= 0.95
    assert pii.min_score <= rw.score < rv.score
    assert R.CnResidentIdRecognizer().validate_result(valid) is True
    assert R.CnResidentIdRecognizer().validate_result(wrong) is False


@pytest.mark.parametrize(
    "card",
    [make_card("62", 16), make_card("622848", 19), make_card("4", 16), make_card("53", 16), make_card("37", 15)],
)
def test_card_luhn_valid_scores_higher_than_invalid(pii, card):
    bad = break_luhn(card)
    [rv] = pii.analyze(f"银行卡{card}谢谢")
    [rb] = pii.analyze(f"银行卡{bad}谢谢")
    assert rv.entity_type == rb.entity_type == "CREDIT_CARD"
    assert (rv.start, rv.end) == (rb.start, rb.end) == (3, 3 + len(card))
    assert rv.score >= 0.95 and pii.min_score <= rb.score < rv.score


def test_grouped_card_scores(pii):
    card = make_card("62", 16)
    grouped = " ".join(card[i : i + 4] for i in range(0, 16, 4))
    text = f"card: {grouped}."
    assert found(pii, text, "en") == expect(text, ("CREDIT_CARD", grouped))
    assert pii.analyze(text, "en")[0].score == 1.0


# ---------------------------------------------------------------------------------
# negatives: digit runs without the shape
# ---------------------------------------------------------------------------------

NUMERIC_ENTITIES = {"PHONE_NUMBER", "CN_RESIDENT_ID", "CREDIT_CARD", "CN_PASSPORT", "CN_ACCOUNT_ID"}

NEGATIVES = [
    "订单号 2026110112345678 还没发货",
    "订单号2026110112345678",
    "时间戳20261101093000",
    "created 20261101093000 by cron",
    "发送时间 1730428800000",
    "ts=1730428800000ms",
    "价格¥12999.00，优惠价12999.50元",
    "The price is $12,999.00 or 12999.99 USD",
    "号码138123456789有12位",
    "12812345678 不是手机号",
    "10812345678 also not a mobile",
    "价格16400元，库存1640件",
    "version 1.13812345678 build",
    "身份证110101199013324514日期不对",
    "身份证990101199003074514地区不对",
    "版本号G12345678，产品编号E12345678",
    "流水 622202123456789012 已入账",
    "订单号 4111111111111112",
]


@pytest.mark.parametrize("text", NEGATIVES)
def test_digit_runs_without_shape_are_not_reported(pii, text):
    for lang in ("zh", "en"):
        got = [f for f in found(pii, text, lang) if f[0] in NUMERIC_ENTITIES]
        assert got == [], (text, got)


def test_passport_needs_context_unless_min_score_is_lowered():
    assert found(PiiAnalyzer(min_score=0.2, spacy=False, names=False), "编号G12345678") == [("CN_PASSPORT", "G12345678", 2, 11)]


# ---------------------------------------------------------------------------------
# account ids only with context
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,value",
    [
        ("我的QQ是 123456789", "123456789"),
        ("qq号码：2847561934，加我", "2847561934"),
        ("微信：wxid_ab12cd", "wxid_ab12cd"),
        ("加我微信zhangsan_88吧", "zhangsan_88"),
        ("WeChat ID: lisi-2024", "lisi-2024"),
        ("账号 admin_01 密码另发", "admin_01"),
        ("user id: 99887766", "99887766"),
        ("会员号88001234", "88001234"),
    ],
)
def test_account_ids_with_context(pii, text, value):
    assert found(pii, text) == expect(text, ("CN_ACCOUNT_ID", value))


@pytest.mark.parametrize(
    "text",
    [
        "123456789",
        "wxid_ab12cd 是什么",
        "zhangsan_88 说好的",
        "please check your account settings",
        "my username is required",
        "QQ群里见",
        "微信 OK",
        "账号已经冻结了",
        "qq 0123",
    ],
)
def test_account_ids_without_context_are_not_reported(pii, text):
    assert [f for f in found(pii, text) if f[0] == "CN_ACCOUNT_ID"] == []


# ---------------------------------------------------------------------------------
# fast path == slow path
# ---------------------------------------------------------------------------------

_ZH = [
    "你好，我想问一下订单的事情。", "好的，明天下午三点见。", "谢谢你的帮助！", "价格是1299元，包邮吗？",
    "会议改到2024年3月15日上午10:30。", "一共3件，合计¥259.00。", "订单号 2026110112345678 还没发货",
    "时间戳20261101093000", "这个bug在v1.2.3里修复了", "文件在 /data/share/report.xlsx", "好的",
    "收到，马上处理", "第1.5版和第2版", "房间号1203，电话分机8012",
]
_EN = [
    "Sure, I can help you with that request.", "The total was 45.99 dollars.", "See docs.python.org.",
    "I think the key issue is the timeout.", "It was released at 1730428800000 ms.",
    "Meeting on 03/15/2024 at 10:30.", "Use the token bucket algorithm.", "password reset link sent",
    "Build 2024-11-01T09:30:00Z passed", "Order #12345678 shipped", "call 1-800-FLOWERS now",
]


def _pii_snippets(rng, fz, fe):
    card = make_card(rng.choice(["62", "4", "51", "37"]), rng.choice([15, 16, 19]), rng)
    return [
        f"我的手机号是{fz.phone_number()}", f"身份证号{fz.ssn()}", f"身份证{break_check(fz.ssn())}",
        f"邮箱{fz.email()}谢谢", f"我的QQ是 {rng.randint(10000, 99999999999)}",
        f"微信：wx_{fe.user_name()}{rng.randint(10, 99)}", f"卡号 {card}", f"卡号{break_luhn(card)}",
        f"车牌京A{rng.randint(10000, 99999)}", f"服务器IP是{fe.ipv4()}", f"ipv6 {fe.ipv6()}",
        f"护照号码E{rng.randint(10**7, 10**8 - 1)}", f"G{rng.randint(10**7, 10**8 - 1)}",
        f"My email is {fe.email()} and phone is {fe.phone_number()}.",
        f"card {fe.credit_card_number()} exp {fe.credit_card_expire()}",
        f"export AWS_ACCESS_KEY_ID=AKIA{''.join(rng.choice('ABCDEFGHJ0123456789') for _ in range(16))}",
        f"curl -H 'Authorization: Bearer {fe.sha1()}' https://api.example.com/v1?token={fe.md5()}",
        f"Visit https://{fe.user_name()}:{fe.password()}@{fe.domain_name()}/admin",
        f"Call +86 139 {rng.randint(1000, 9999)} {rng.randint(1000, 9999)} or (010) 6{rng.randint(1000000, 9999999)}",
        f"ssn {fe.ssn()}, iban {fe.iban()}", f"mac {fe.mac_address()} uuid {fe.uuid4()}",
        f"sk-{fe.sha256()[:40]}", f"密码：{fe.password()}", "-----BEGIN PRIVATE KEY-----\nQUJD\n-----END PRIVATE KEY-----",
        f"user id: {rng.randint(10**5, 10**9)}", f"date {fe.date()} at {fe.time()}",
    ]


def mixed_texts(n, seed):
    rng = random.Random(seed)
    fz, fe = faker.Faker("zh_CN"), faker.Faker("en_US")
    fz.seed_instance(seed)
    fe.seed_instance(seed)
    texts = []
    for _ in range(n):
        zh = rng.random() < 0.6
        parts = []
        for _ in range(rng.randint(1, 4)):
            if rng.random() < 0.35:
                parts.append(rng.choice(_pii_snippets(rng, fz, fe)))
            else:
                parts.append(rng.choice(_ZH if zh else _EN))
        texts.append(("" if zh else " ").join(parts))
    return texts


@pytest.fixture(scope="module")
def mixed():
    return mixed_texts(300, seed=11)


def test_fast_path_equals_slow_path(pii, mixed):
    langs = ["zh" if i % 2 else "en" for i in range(len(mixed))]
    fast = pii.analyze_batch(mixed, langs, fast=True)
    slow = pii.analyze_batch(mixed, langs, fast=False)
    assert [key(r) for r in fast] == [key(r) for r in slow]
    assert sum(map(len, fast)) > 150  # the texts do carry PII
    assert sum(1 for t in mixed if not pii.candidate_entities(t)) > 20  # and the gate skips some


def test_closed_gates_mean_no_findings_at_any_score(pii, mixed):
    """Stronger than fast == slow: a skipped entity finds nothing, not even below min_score."""
    for text in mixed + NEGATIVES + [c[0] for c in CASES]:
        open_ = set(pii.candidate_entities(text))
        for ent in pii.entity_types:
            if ent in open_:
                continue
            res = pii.engine.analyze(text=text, language="zh", entities=[ent], score_threshold=0.0)
            assert res == [], (ent, text, [(r.entity_type, text[r.start:r.end], r.score) for r in res])


def test_no_pii_text_skips_engine(pii):
    assert pii.candidate_entities("好的，明天下午三点见。") == []
    assert pii.analyze("好的，明天下午三点见。") == []
    assert pii.analyze("") == []


# ---------------------------------------------------------------------------------
# big input
# ---------------------------------------------------------------------------------


def test_five_megabytes_in_bounded_time(pii):
    rng = random.Random(5)
    lines = mixed_texts(400, seed=12) + _ZH * 40 + _EN * 40 + [
        "1234 5678 9012 3456 7890 " * 40,  # a table of numbers
        "a.b" * 300 + " x",                 # dotted run
        "x" * 3000 + "@example.com",        # overlong local part
        "-----BEGIN RSA PRIVATE KEY-----\nQUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=",  # no END
    ]
    body = []
    size = 0
    while size < 5_000_000:
        line = rng.choice(lines)
        body.append(line)
        size += len(line) + 1
    planted = "尾部：手机13987654321，邮箱tail@example.com"
    text = "\n".join(body) + "\n" + planted
    # Linear, not a wall-clock limit (the machine may be shared): 5x the text within 12x the time
    # of the first fifth, where a backtracking pattern would take 25x or hang.
    t0 = time.perf_counter()
    pii.analyze(text[:len(text) // 5])
    fifth = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = pii.analyze(text)
    elapsed = time.perf_counter() - t0
    assert elapsed < 12 * fifth + 1, f"5 MB took {elapsed:.1f} s, its first MB {fifth:.1f} s"
    base = len(text) - len(planted)
    tail = [(r.entity_type, r.start - base, r.end - base) for r in res if r.start >= base]
    assert tail == [("PHONE_NUMBER", 5, 16), ("EMAIL_ADDRESS", 19, 35)]
    assert len(res) > 1000


# ---------------------------------------------------------------------------------
# API surface
# ---------------------------------------------------------------------------------


def test_entity_types_and_options(pii):
    types = set(pii.entity_types)
    assert {
        "PHONE_NUMBER", "CN_RESIDENT_ID", "CREDIT_CARD", "CN_PASSPORT", "CN_LICENSE_PLATE",
        "CN_ACCOUNT_ID", "EMAIL_ADDRESS", "IP_ADDRESS", "URL_WITH_SECRET", "API_KEY",
        "IBAN_CODE", "US_SSN", "URL",
    } <= types
    assert "US_BANK_NUMBER" not in types  # presidio scores it 0.05 < min_score
    only = PiiAnalyzer(entities=["EMAIL_ADDRESS", "CN_RESIDENT_ID"], spacy=False, names=False)
    assert only.entity_types == ["CN_RESIDENT_ID", "EMAIL_ADDRESS"]
    text = f"邮箱a.b@example.com 手机13812345678 身份证{VALID_ID}"
    assert [r.entity_type for r in only.analyze(text)] == ["EMAIL_ADDRESS", "CN_RESIDENT_ID"]
    with pytest.raises(ValueError):
        PiiAnalyzer(entities=["NOT_AN_ENTITY"], spacy=False, names=False)
    with pytest.raises(ValueError):
        PiiAnalyzer(entities=["PERSON"], spacy=False, names=False)  # needs names or spacy
    with pytest.raises(ValueError):
        pii.analyze_batch(["a", "b"], ["zh"])
    assert [key(r) for r in pii.analyze_batch(["手机13812345678", "x"], "zh")] == [
        key(pii.analyze("手机13812345678")), []
    ]


def test_spacy_missing_model_is_a_clear_error():
    with pytest.raises(RuntimeError, match="en-core-web-sm"):
        PiiAnalyzer(spacy=True, spacy_model="en_core_web_model_that_is_not_installed")


def test_spacy_ner_runs_for_english_messages_only(tmp_path):
    spacy = pytest.importorskip("spacy")
    nlp = spacy.blank("en")
    nlp.add_pipe("entity_ruler").add_patterns(
        [{"label": "PERSON", "pattern": "Alice Zhang"}, {"label": "GPE", "pattern": "Shenzhen"}]
    )
    nlp.to_disk(tmp_path / "model")
    ner = PiiAnalyzer(spacy=True, names=False, spacy_model=str(tmp_path / "model"))
    assert {"PERSON", "LOCATION"} <= set(ner.entity_types)
    # a city alone is not personal data: spaCy's GPE is not reported
    text = "Alice Zhang moved to Shenzhen, call 13812345678."
    want = expect(text, ("PERSON", "Alice Zhang"), ("PHONE_NUMBER", "13812345678"))
    assert found(ner, text, "en") == want
    assert found(ner, text, "en", fast=False) == want
    # English names run on messages with enough Latin letters, whatever the record's lang says
    zh = "你好，我的同事叫Alice Zhang吗？这个问题我们明天在会议上一起讨论一下，电话13812345678。"
    assert [e for e, *_ in found(ner, zh, "zh")] == ["PHONE_NUMBER"]


def test_resolve_overlaps_prefers_score_then_length():
    from presidio_analyzer import RecognizerResult as RR

    rs = [
        RR("URL", 0, 30, 0.5),
        RR("EMAIL_ADDRESS", 5, 20, 1.0),
        RR("URL_WITH_SECRET", 0, 30, 1.0),
        RR("PHONE_NUMBER", 40, 51, 0.8),
        RR("CN_ACCOUNT_ID", 40, 51, 0.65),
        RR("DATE_TIME", 60, 70, 0.6),
    ]
    assert [(r.entity_type, r.start, r.end) for r in resolve_overlaps(rs)] == [
        ("URL_WITH_SECRET", 0, 30),
        ("PHONE_NUMBER", 40, 51),
        ("DATE_TIME", 60, 70),
    ]
