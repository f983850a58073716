"""Names (PERSON) and street-level addresses (LOCATION) in Chinese and English: detection,
public figures and bare place names left alone, format-keeping consistent pseudonyms, and the
stage end to end. Every name and address here is invented or drawn from faker; the models are the
real ones (LAC's shipped weights on onnxruntime, spaCy's en_core_web_sm wheel)."""
import re

import pytest

from conftest import extract_then_pii
from pipeline.pii import get_analyzer
from pipeline.pii.addresses import find_addresses
from pipeline.pii.anonymize import Pseudonymizer
from pipeline.pii.names import COMPOUND_SURNAMES, ChineseNames, han_chunks

HAN = re.compile("[\u4e00-\u9fff]")


@pytest.fixture(scope="module")
def an():
    return get_analyzer()


def found(an, text, lang="zh", entity=None):
    return [text[f.start:f.end] for f in an.analyze(text, lang) if entity in (None, f.entity_type)]


def test_chinese_names_in_chat_forms(an):
    assert found(an, "你好，我叫王小明，今年二十岁。", entity="PERSON") == ["王小明"]
    assert found(an, "张先生您好，请问李女士在吗？王总说明天开会。", entity="PERSON") == ["张先生", "李女士", "王总"]
    assert found(an, "收件人：欧阳娜娜，麻烦放门卫。", entity="PERSON") == ["欧阳娜娜"]
    assert "陈建国" in found(an, "昨天陈建国和我去开会了", entity="PERSON")
    # words that only look like a surname + title are not names, nor a unit after a number
    assert found(an, "这位先生请坐，各位老师辛苦了，今天总结一下。", entity="PERSON") == []
    assert found(an, "平年 365 天，365 ÷ 7 = 52 周余 1 天；闰年是 52 周余 2 天。", entity="PERSON") == []
    # a surname character that ends another word, a preposition or a title word is no surname
    # (检查 / 感谢 + 医生, 向医生询问, 公司总经理, 工程经理, 班主任, 中国区总决赛)
    for text in ("去医院检查医生说我有点贫血，感谢医生。", "请阅读说明书或向医生询问。", "公司总经理和工程经理都到了。",
                 "这时候班主任正好进来。", "中国区总决赛今晚开始。"):
        assert found(an, text, entity="PERSON") == [], text
    # after a cue, what LAC reads as a verb, an adverb or one common word is no name (应该 after
    # 患者, 白细胞, headings such as 任务： / 来源：); a name after a cue ends where LAC's word ends
    assert found(an, "患者应该选择正规医院，患者白细胞偏低，患者都是不相同的。", entity="PERSON") == []
    assert found(an, "任务：构建一个分类模型\n来源：公开数据", entity="PERSON") == []
    assert found(an, "从前有一位名叫乔治的老人。", entity="PERSON") == ["乔治"]
    # surname + title as a whole, also where the tagger marks only the start of the title
    assert found(an, "王主任：考虑到目前的情况，我们再等等。", entity="PERSON") == ["王主任"]
    # a name does not stop inside a word LAC reads as one (子宫 of 子宫脱垂)
    assert found(an, "子宫脱垂严重吗？子宫脱垂分为三度。", entity="PERSON") == []


def test_english_given_names_inside_chinese_text(an):
    # Chinese office chats call colleagues by English given names; products, everyday words and
    # all-capital words the tagger may mark stay
    got = found(an, "我同事Jason说明天的会改到三点，你跟Linda确认一下。", entity="PERSON")
    assert "Jason" in got and "Linda" in got
    assert found(an, "我用ChatGPT和Jira管理项目，用Python写脚本。", entity="PERSON") == []
    # a Latin name or handle after a word for a person's role; not an English word there
    got = found(an, "这个需求找负责人kevinz确认，队长Enel也同意了，老板Python写得好。", entity="PERSON")
    assert "kevinz" in got and "Enel" in got and "Python" not in got
    # a handle tagged together with a Chinese name is that person's alias
    assert found(an, "我们战队的队长王志强(Awoke)今天没来训练", entity="PERSON") == ["王志强", "Awoke"]
    from pipeline.pii.en_names import EnglishNames
    from pipeline.pii.latin_names import LatinNames

    ln = LatinNames(EnglishNames().nlp)
    assert all(ln.is_name(w) for w in ("Jason", "ChristopherNolan", "JohnMilius", "stephengarrett", "Svensson"))
    assert not any(ln.is_name(w) for w in ("Mark", "Panda", "ChatGPT", "MetaClub", "developer", "TH000", "JIRA",
                                           "Paris", "China"))


def test_common_name_after_a_cue_even_if_a_public_figure_shares_it(an):
    assert found(an, "收件人：李娜，电话稍后发你。", entity="PERSON") == ["李娜"]
    assert found(an, "我叫马云，想咨询一下退款。", entity="PERSON") == ["马云"]
    # without a cue the public figure stays: content, not personal data
    assert found(an, "马云创办了阿里巴巴。", entity="PERSON") == []


def test_a_name_found_once_is_a_name_in_the_whole_conversation(an):
    from pipeline.pii.analyzer import spread_names

    texts = ["我叫王小明，负责人是kevinz。", "好的王小明，我会联系kevinz和kevinzq。", "kevinz在吗？", "kevinz在吗？"]
    alone = [an.analyze(t, "zh") for t in texts]
    assert alone[2] == []  # no cue: the name alone is not found
    found = spread_names(texts, alone, ["c1", "c1", "c1", "c2"])
    got = [[(f.entity_type, t[f.start:f.end]) for f in fs] for t, fs in zip(texts, found)]
    assert got[1] == [("PERSON", "王小明"), ("PERSON", "kevinz")]  # a whole Latin word only
    assert got[2] == [("PERSON", "kevinz")] and got[3] == []  # spread in its conversation, not to another


def test_public_figures_and_bare_places_stay(an):
    text = "李白是唐代诗人，鲁迅写了《呐喊》，我住在北京市，明天去上海。"
    assert found(an, text) == []
    assert found(an, "Shakespeare wrote Hamlet; Albert Einstein explained the photoelectric effect.", "en") == []
    assert found(an, "Paris is the capital of France and Tokyo of Japan.", "en") == []
    # the Chinese forms of the English list are public figures too
    assert found(an, "特斯拉发明了交流电系统，图灵提出了图灵机，狄更斯写了《雾都孤儿》。") == []
    # and so are their full transliterated names (not a stranger who shares a first name)
    assert found(an, "艾萨克·牛顿提出了万有引力定律，艾伦·图灵是计算机科学之父。") == []
    assert "约翰·史密斯" in found(an, "昨天约翰·史密斯给我打了电话。", entity="PERSON")


def test_english_names_and_street_addresses(an):
    text = "Hi, this is Jane Miller from 42 Oak Street, Springfield, IL 62704. Call me back."
    got = [(f.entity_type, text[f.start:f.end]) for f in an.analyze(text, "en")]
    assert ("PERSON", "Jane Miller") in got
    assert ("LOCATION", "42 Oak Street, Springfield, IL 62704") in got


def test_chinese_addresses_reach_street_level():
    texts = ["寄到北京市海淀区中关村大街1号，谢谢", "我家在朝阳区建国路88号院3号楼2单元501室", "快递送到中关村大街27号",
             "北京是首都", "上海市的天气不错", "思路清晰，道路通畅"]
    got = [[t[s:e] for s, e, _ in fs] for t, fs in zip(texts, find_addresses(texts))]
    assert got == [["北京市海淀区中关村大街1号"], ["朝阳区建国路88号院3号楼2单元501室"], ["中关村大街27号"], [], [], []]


def test_faker_addresses_found():
    from faker import Faker

    fk = Faker("zh_CN")
    fk.seed_instance(5)
    addrs = [fk.address() for _ in range(40)]
    texts = [f"请寄到{a}，谢谢" for a in addrs]
    hits = sum(any(t[s:e] == a or a in t[s:e] for s, e, _ in fs) for a, t, fs in zip(addrs, texts, find_addresses(texts)))
    assert hits >= 36, hits


def test_chunks_cover_only_han_sentences():
    text = "def f(x):\n    return x\n你好，张伟。\n" + "好" * 300
    chunks = han_chunks(text)
    assert chunks[0] == (text.index("你好"), "你好，张伟")
    assert all(len(c) <= 120 for _, c in chunks) and sum(len(c) for _, c in chunks[1:]) == 300


def test_batched_tagger_matches_one_text_at_a_time():
    cn = ChineseNames()
    texts = ["我叫王小明", "昨天陈建国和刘芳去了公司", "没有名字的句子", "张伟：你好" * 30]
    assert cn.find_batch(texts) == [cn.find_batch([t])[0] for t in texts]


def test_a_rescan_tags_only_the_changed_sentences():
    cn = ChineseNames()
    texts = ["昨天陈建国和刘芳去了公司。今天天气不错。", "我叫王小明"]
    first = cn.find_batch(texts)
    seen = []
    run = cn.model.person_spans
    cn.model.person_spans = lambda chunks, **kw: seen.extend(chunks) or run(chunks, **kw)
    changed = "昨天陈建国和李丽去了公司。今天天气不错。"  # as after anonymisation: one sentence new
    again = cn.find_batch([changed, texts[1]])
    assert seen == ["昨天陈建国和李丽去了公司"]
    assert again[1] == first[1] and [changed[s:e] for s, e, _ in again[0]][:2] == ["陈建国", "李丽"]


def test_name_and_address_pseudonyms_keep_their_form():
    p = Pseudonymizer("salt")
    for name in ("王小明", "李娜", "欧阳娜娜"):
        fake = p.replace("PERSON", name, "c1")
        assert fake != name and len(fake) == len(name) and all(HAN.match(c) for c in fake)
        assert p.replace("PERSON", name, "c1") == fake  # consistent in a scope
    assert p.replace("PERSON", "欧阳娜娜", "c1")[:2] in COMPOUND_SURNAMES
    for title in ("先生", "女士", "总", "老师"):
        fake = p.replace("PERSON", "张" + title, "c1")
        assert fake.endswith(title) and fake != "张" + title and len(fake) == 1 + len(title)
    en = p.replace("PERSON", "Jane Miller", "c1")
    assert en != "Jane Miller" and len(en.split()) == 2
    addr = p.replace("LOCATION", "北京市海淀区中关村大街1号", "c1")
    assert addr != "北京市海淀区中关村大街1号"
    assert re.fullmatch(r"[\u4e00-\u9fff]+市[\u4e00-\u9fff]+区[\u4e00-\u9fff]+[街路村][\u4e00-\u9fff]*[0-9]号", addr), addr
    street = p.replace("LOCATION", "42 Oak Street, Springfield, IL 62704", "c1")
    assert re.fullmatch(r"[0-9]{2} [A-Z][a-z]+ Street, [A-Z][a-z]+, [A-Z]{2} [0-9]{5}", street), street


def test_an_english_names_parts_keep_one_pseudonym_in_a_conversation():
    p = Pseudonymizer("salt")
    full = p.replace("PERSON", "Daniel Brooks", "c1").split()
    assert len(full) == 2 and full != ["Daniel", "Brooks"]
    # "Hi Daniel" and "Dear Mr. Brooks" later in the conversation name the same person
    assert p.replace("PERSON", "Daniel", "c1") == full[0]
    assert p.replace("PERSON", "Mr. Brooks", "c1") == "Mr. " + full[1]
    assert p.replace("PERSON", "Daniel J. Brooks", "c1").split()[::2] == full
    assert p.replace("PERSON", "daniel brooks", "c1") == " ".join(full).lower()  # case stays
    other = [p.replace("PERSON", "Daniel", f"c{i}") for i in range(2, 8)]
    assert len(set(other)) > 1  # another conversation, another pseudonym


PEOPLE = ["王小明", "张先生", "欧阳娜娜", "陈建国"]
ADDRS = ["北京市海淀区中关村大街1号", "上海市浦东新区世纪大道100号2单元301室"]


def test_planted_names_and_addresses_do_not_survive_the_stage(tmp_path):
    convs = [
        {"id": "z1", "messages": [
            {"role": "user", "content": f"你好，我叫{PEOPLE[0]}，快递请寄到{ADDRS[0]}。"},
            {"role": "assistant", "content": f"好的{PEOPLE[0]}，已记录地址：{ADDRS[0]}。请问{PEOPLE[1]}是您的同事吗？"},
            {"role": "user", "content": f"是的，还有收件人：{PEOPLE[2]}，地址{ADDRS[1]}。昨天{PEOPLE[3]}也来过。"},
            {"role": "assistant", "content": "明白了。顺便一提，李白是唐代诗人。"}]},
        {"id": "e1", "messages": [
            {"role": "user", "content": "Hi, this is Jane Miller from 42 Oak Street, Springfield. My manager Tom Baker agrees."},
            {"role": "assistant", "content": "Thanks Jane Miller, I have noted 42 Oak Street. Shakespeare would approve."}]},
        {"id": "z2", "messages": [
            {"role": "user", "content": "我同事Jason说周五开会，你跟负责人kevinz确认一下时间。"},
            {"role": "assistant", "content": "好的，我会提醒Jason，也会联系kevinz确认。"}]},
    ]
    out, m = extract_then_pii(tmp_path, convs)
    recs = {r["id"]: r for r in out}
    assert set(recs) == {"z1", "e1", "z2"} and m["pii"]["residual"] == {}
    planted = PEOPLE + ADDRS + ["Jane Miller", "Tom Baker", "42 Oak Street", "Jason", "kevinz"]
    for r in recs.values():
        for msg in r["messages"]:
            for v in planted:
                assert v not in msg["content"], (r["id"], v)
    z = recs["z1"]["messages"]
    assert "李白" in z[3]["content"] and "Shakespeare" in recs["e1"]["messages"][1]["content"]
    # the same name and address get the same pseudonym in every turn of the conversation
    fake_name = re.search("我叫([\u4e00-\u9fff]{3})", z[0]["content"]).group(1)
    assert z[1]["content"].startswith(f"好的{fake_name}")
    fake_addr = re.search("寄到(.+?)。", z[0]["content"]).group(1)
    assert fake_addr in z[1]["content"] and fake_addr != ADDRS[0]
    assert re.search("请问[\u4e00-\u9fff]先生是您的同事", z[1]["content"])  # the title stays
    # an English given name in Chinese text gets one Latin pseudonym in both turns
    z2 = recs["z2"]["messages"]
    fake_en = re.search("我同事([A-Za-z]+)说", z2[0]["content"]).group(1)
    assert fake_en != "Jason" and f"提醒{fake_en}" in z2[1]["content"]
    assert m["pii"]["found"]["PERSON"] >= 8 and m["pii"]["found"]["LOCATION"] >= 5
    # `turnforge scan` does not take the pseudonyms for PII
    from pipeline import scan
    import io
    assert scan.scan_folder(str(tmp_path / "pii"), io.StringIO()) == 0
