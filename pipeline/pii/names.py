"""Personal names in Chinese and English chat turns (PERSON), found offline.

Chinese: Baidu's LAC tagger (``pipeline.pii.lac``; chosen over jieba's part-of-speech tagger on a
held-out part of CLUENER) reads Han-character chunks of at most ``CHUNK`` characters, batched
across texts, and a small tagger trained on CLUENER (``pipeline.pii.zh_tagger``) marks the names
from LAC's output (docs/stages/pii.md#the-chinese-name-tagger). Two fixed passes sit on top: cue
patterns for the chat forms a tagger can miss (我叫王小明, 收件人：李娜, 张先生, 王总) and a short
list of public figures (李白, 鲁迅, ...) whose mention in a general-knowledge answer is not
personal data. Code and English cost nothing.

English names are found by ``pipeline.pii.en_names``; the public-figure list below serves both.
"""
from __future__ import annotations

import re
from typing import List, Optional, Sequence, Tuple

from pipeline.pii.lac import _INSIDE, PER_B, LacTagger, b_tags, word_end
from pipeline.pii.zh_tagger import ZhNameTagger

Span = Tuple[int, int, float]

# The 399 surnames of faker's zh_CN list (by frequency) plus the common compound ones.
SURNAMES = (
    "王李张刘陈杨黄吴赵周徐孙马朱胡林郭何高罗郑梁谢宋唐许邓冯韩曹曾彭萧蔡潘田董袁于余叶蒋杜苏魏程吕丁沈任姚卢傅"
    "钟姜崔谭廖范汪陆金石戴贾韦夏邱方侯邹熊孟秦白江阎薛尹段雷黎史龙陶贺顾毛郝龚邵万钱严赖覃洪武莫孔汤向常温康施文"
    "牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季裴霍涂成苗谷盛曲翁"
    "冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳时穆农司卓古吉缪简车项连芦麦褚娄窦戚岑景党宫费卜冷晏席卫米柏"
    "宗瞿桂全佟应臧闵苟邬边卞姬师和仇栾隋商刁沙荣巫寇桑郎甄丛仲虞敖巩明佘池查麻苑迟邝官封谈匡鞠惠荆乐冀郁胥南班储"
    "原栗燕楚鄢劳谌奚皮粟冼蔺楼盘满闻位厉伊仝区郜海阚花权强帅屠豆朴盖练廉禹井祖漆巴丰支卿国狄平计索宣晋相初门云容"
    "敬来扈晁芮都普阙浦戈伏鹿薄邸雍辜羊阿乌母裘亓修邰赫杭况那宿鲜印逯隆茹诸战慕危玉银亢嵇公哈湛宾戎勾茅利呼居揭干"
    "但尉冶斯元束檀衣信展阴昝智幸奉植衡富尧闭由"
)
COMPOUND_SURNAMES = ("欧阳", "司马", "诸葛", "上官", "东方", "皇甫", "尉迟", "公孙", "慕容", "令狐", "夏侯", "长孙", "宇文")
# Titles that follow a surname in address forms; the pseudonym keeps them (张先生 -> 刘先生).
TITLES = (
    "先生", "女士", "小姐", "太太", "老师", "同学", "经理", "总监", "主任", "医生", "大夫", "护士", "师傅", "律师",
    "教授", "博士", "老板", "阿姨", "叔叔", "警官", "总",
)
_SURNAME_CLASS = "[" + SURNAMES + "]"
_SURNAME = "(?:" + "|".join(COMPOUND_SURNAMES) + "|" + _SURNAME_CLASS + ")"
_HAN = "\u4e00-\u9fff"
# 王总 but not 王总结 / 李总是 / 张总共: 总 as a title only before a word boundary of sorts
_TITLE_RX = "|".join(t if t != "总" else "总(?![结共体之是的而算归和数额部统裁监计量价有要决])" for t in TITLES)
# Surname characters that are far more often function words before a title (这位先生, 各位老师).
_NOT_BEFORE_TITLE = set("位和于原全都来相信平明时由那但国云初门展是")
_HONOR_SURNAME = "(?:" + "|".join(COMPOUND_SURNAMES) + "|[" + "".join(c for c in SURNAMES if c not in _NOT_BEFORE_TITLE) + "])"
CUE_PATTERNS = [
    # 我叫王小明 / 名叫李娜 / 收件人：张伟 / 联系人 陈静: a cue, then surname + 1-2 given characters
    re.compile(
        r"(?:我叫|我姓|名叫|叫做|本人|姓名|名字是|名字叫|联系人|收件人|收货人|寄件人|签收人|负责人|经办人|户主|持卡人|"
        r"患者)[:：\s]{0,2}(?P<n>" + _SURNAME + "[" + _HAN + "]{1,2})"),
    # transcripts and forum quotes: a speaker label at the start of a line (姜山：...)
    re.compile("(?m)^(?P<n>" + _SURNAME + "[" + _HAN + "]{1,2})[:：]"),
    # 张先生 / 李女士 / 王总 / 欧阳老师: surname + title, replaced as a whole (the title is kept)
    re.compile("(?P<n>" + _HONOR_SURNAME + "(?:" + _TITLE_RX + "))"),
]
_HONOR = CUE_PATTERNS[-1]
# A Latin name after a word for a person's role (同事Jason, 队长Enel, 负责人julia): Chinese chats
# write colleagues and players by their English names and handles
_LATIN_CUE = re.compile(
    r"(?:同事|朋友|老板|经理|主管|总监|助理|老师|同学|室友|男友|女友|男朋友|女朋友|老公|老婆|客户|队长|队员|选手|"
    r"负责人|领队|网名|英文名|昵称|我叫|名叫|叫我)(?:是|叫|为)?[:：\s]{0,2}(?P<n>[A-Za-z][A-Za-z'’.\-]*[A-Za-z])(?![A-Za-z0-9_])")

# Public figures whose names in a general-knowledge answer are content, not personal data. Kept
# short on purpose: a name here is pseudonymised only after a personal cue (我叫 / 收件人). The
# last two lines are the Chinese forms of the English list below (NOT_NAMES).
PUBLIC_FIGURES = frozenset("""
孔子 孟子 老子 庄子 荀子 韩非子 墨子 孙子 司马迁 屈原 李白 杜甫 白居易 王维 李商隐 杜牧 苏轼 苏东坡 辛弃疾 李清照 陆游 王安石
欧阳修 韩愈 柳宗元 陶渊明 曹操 曹植 刘备 关羽 张飞 诸葛亮 孙权 秦始皇 汉武帝 唐太宗 李世民 武则天 康熙 乾隆 雍正 朱元璋 成吉思汗
岳飞 文天祥 郑和 张骞 王羲之 颜真卿 鲁迅 胡适 巴金 老舍 茅盾 郭沫若 沈从文 钱钟书 张爱玲 金庸 莫言 余华 孙中山 毛泽东 周恩来
邓小平 梁启超 蔡元培 钱学森 袁隆平 屠呦呦 杨振宁 李政道 华罗庚 陈景润 祖冲之 张衡 李时珍 华佗 张仲景 扁鹊 孙悟空 猪八戒
林黛玉 贾宝玉 薛宝钗 王熙凤 宋江 武松 林冲 姚明 刘翔 马云 马化腾 雷军 任正非 李彦宏 王阳明 朱熹 范仲淹 包拯 霍去病
卫青 项羽 刘邦 韩信 张良 萧何 貂蝉 西施 王昭君 杨贵妃 牛顿 爱因斯坦 莎士比亚 达尔文 马克思 恩格斯 列宁 拿破仑 贝多芬 莫扎特
马斯克 普京 特朗普 拜登 奥巴马 乔布斯 比尔盖茨 皮卡丘 哈利波特
亚里士多德 柏拉图 苏格拉底 林肯 华盛顿 毕加索 弗洛伊德 伽利略 康德 黑格尔 尼采 甘地 丘吉尔 托尔斯泰 狄更斯 荷马 但丁 歌德
特斯拉 爱迪生 图灵
""".split())
# words LAC may tag as a name that are not one: weekdays and a few function words
NOT_NAMES = frozenset("周一 周二 周三 周四 周五 周六 周日 周末 周中 来说 哈希 常见 常用 常规 高度 高效 高级 文中 时间 明天 明年 向量".split()) | frozenset("""
Shakespeare Einstein Newton Darwin Aristotle Plato Socrates Confucius Napoleon Lincoln Washington Jesus Mozart Beethoven
Picasso Marx Freud Galileo Kant Hegel Nietzsche Gandhi Churchill Tolstoy Dickens Homer Dante Goethe Tesla Edison Turing
""".split())
_PUBLIC_EN_FULL = frozenset({"William Shakespeare", "Albert Einstein", "Isaac Newton", "Charles Darwin", "Karl Marx",
                             "Abraham Lincoln", "George Washington", "Leonardo da Vinci", "Wolfgang Amadeus Mozart",
                             "Ludwig van Beethoven", "Mahatma Gandhi", "Winston Churchill", "Alan Turing",
                             "Nikola Tesla", "Thomas Edison", "Marie Curie", "Elon Musk", "Steve Jobs", "Bill Gates"})

CHUNK = 120  # characters per tagger input: LAC's context is the sentence, and short rows pad little
_SPLIT = re.compile(r"[。！？!?；;\n\r]+")
_HAN_RUN = re.compile("[" + _HAN + "]")
# what LAC tags as a name: Han characters (with the middle dot of transliterations), or a
# Latin-letter handle inside Chinese text (CLUENER labels those too)
_NAME_CHARS = re.compile("^(?:[" + _HAN + "·•]+|[A-Za-z][A-Za-z0-9_.]+)$")
_NAME_RUN = re.compile("[" + _HAN + "·•]+|[A-Za-z][A-Za-z0-9_.]+")
_AFTER_NUMBER = re.compile(r"[0-9０-９一二三四五六七八九十百千万两几]\s?$")
_DOT = re.compile("[·•]")


def is_public_figure(name: str) -> bool:
    """On the list, or a transliterated full name whose surname is (唐纳德·特朗普, 艾萨克·牛顿)."""
    return name in PUBLIC_FIGURES or name in _PUBLIC_EN_FULL or _DOT.split(name)[-1] in PUBLIC_FIGURES


def han_chunks(text: str, size: int = CHUNK) -> List[Tuple[int, str]]:
    """(offset, chunk) pieces of ``text`` that hold Han characters, cut at sentence ends and
    then at ``size`` characters (a cut may split a name; sentences that long are rare in chats)."""
    out = []
    pos = 0
    for m in list(_SPLIT.finditer(text)) + [None]:
        end = m.start() if m else len(text)
        if end > pos and _HAN_RUN.search(text, pos, end):
            for s in range(pos, end, size):
                out.append((s, text[s:min(end, s + size)]))
        pos = m.end() if m else end
    return out


_CHINESE_NAME = re.compile("^(?:" + "|".join(COMPOUND_SURNAMES) + "|" + _SURNAME_CLASS + ")[" + _HAN + "]{1,2}$")
NAME_MODES = ("personal", "all")


class ChineseNames:
    """PERSON spans in Chinese text: the CLUENER-trained tagger on LAC + cue patterns, public
    figures left alone.

    ``mode="personal"`` (the default) keeps the names in Han characters that the tagger
    (``zh_tagger.ZhNameTagger``) marks, transliterations included: trained on CLUENER, it tells a
    player from a club (桑坦德); a Latin word it marks counts only when written like a person's
    name (``latin``: Jason, not ChatGPT), as the alias of a Chinese name beside it or after a role
    word (同事Jason), since Latin words in Chinese chats are mostly products and code.
    ``mode="all"`` keeps the tagger's Latin handles
    and adds every name LAC tags (recall first). Both add the names after a cue (我叫 / 收件人 /
    a title).
    """

    def __init__(self, tagger: Optional[LacTagger] = None, score: float = 0.85, cue_score: float = 0.9,
                 mode: str = "personal", model=None, latin=None):
        if mode not in NAME_MODES:
            raise ValueError(f"names mode {mode!r} not in {NAME_MODES}")
        self.tagger = tagger or LacTagger()
        self.model = model or ZhNameTagger(self.tagger)
        self.score = score
        self.cue_score = cue_score
        self.mode = mode
        self.latin_names = mode == "all"
        # personal mode: a Latin word the tagger marks counts when ``latin`` (a
        # ``latin_names.LatinNames``) says it is written like a person's name (Jason, ChristopherNolan)
        self.latin = latin if mode == "personal" else None
        self._memo: dict = {}  # chunk -> tagged spans of the last call (find_batch)
        # mode all keeps Latin handles; not even a recall-first corpus has a person called "the".
        # (personal mode's LatinNames already refuses English words.) Imported here: spaCy costs
        # 1.5 s to import, which a scan without names should not pay
        self._function_words = frozenset()
        if self.latin_names:
            from spacy.lang.en.stop_words import STOP_WORDS

            self._function_words = STOP_WORDS

    def find_batch(self, texts: Sequence[str]) -> List[List[Span]]:
        chunks, owner = [], []
        for ti, text in enumerate(texts):
            for off, ch in han_chunks(text):
                chunks.append(ch)
                owner.append((ti, off))
        found: List[List[Span]] = [[] for _ in texts]
        # A chunk's tags depend on the chunk alone. The stage re-scans the messages it changed,
        # whose other sentences the last call has just tagged: those come from the memo.
        memo, todo = self._memo, sorted({c for c in chunks if c not in self._memo})
        if todo:
            got = self.model.person_spans(todo, both=self.mode == "all", paths=True)
            spans = [a + b for a, b in zip(got[0], got[1])] if self.mode == "all" else got[0]
            memo = {**memo, **dict(zip(todo, zip(spans, got[-1])))}
        tagged = [memo[c][0] for c in chunks]
        self._memo = {c: memo[c] for c in chunks}  # this call's chunks only: memory stays one batch
        words: List[List[Tuple[int, str]]] = [[] for _ in texts]  # per text: (offset, chunk) with LAC's path
        for (ti, off), c in zip(owner, chunks):
            words[ti].append((off, c))
        for (ti, off), spans in zip(owner, tagged):
            text = texts[ti]
            for s0, e0 in _join_brackets(text, off, sorted(set(spans))):
                # a tagged span can take a bracket or a neighbour along ((陆慧明, 叶靓(Awoke)):
                # the name is each run of name characters in it
                runs = [(m.start(), m.end()) for m in _NAME_RUN.finditer(text, s0 + off, e0 + off)]
                kept = [k for s, e in runs for k in self._keep(text, s, e)]
                # surname + the start of a title (王主 of 王主任): the whole form, whose
                # pseudonym keeps the title (王主任 -> 陈主任, not 陈浩任)
                kept = [(s, max(e, m.end()), sc) if (m := _HONOR.match(text, s)) and m.end() > e - 1 > s else (s, e, sc)
                        for s, e, sc in kept]
                if kept and self.latin is not None and any(not _LATIN.match(text[s]) for s, _, _ in kept):
                    # a handle tagged together with a Chinese name is that person's alias (叶靓(Awoke))
                    kept += [(s, e, self.score) for s, e in runs
                             if _LATIN.match(text[s]) and (s, e, self.score) not in kept]
                found[ti].extend(kept)
        for ti, text in enumerate(texts):
            if not _HAN_RUN.search(text):
                continue
            for m in _LATIN_CUE.finditer(text):
                s, e = m.span("n")
                if self.latin is None or not self.latin.is_word(text[s:e]):
                    found[ti].append((s, e, self.cue_score))
            for i, rx in enumerate(CUE_PATTERNS):
                for m in rx.finditer(text):
                    s, e = m.span("n")
                    if rx is _HONOR:
                        if not self._starts_person(words[ti], s, e):
                            continue
                    elif (cut := self._cue_name(words[ti], s, e)) is None:
                        continue
                    else:
                        s, e = cut
                    # after 我叫 / 收件人 it is somebody's own name, whoever shares it
                    if (i == 0 or not is_public_figure(text[s:e])) and text[s:e] not in NOT_NAMES:
                        found[ti].append((s, e, self.cue_score))
        return found

    def _starts_person(self, chunks: List[Tuple[int, str]], s: int, e: int) -> bool:
        """Whether surname + title at ``s:e`` (张先生) starts a word in LAC's reading: not the tail
        of a word (检查医生, 感谢医生, 公司总经理, 工程经理), not a preposition (向医生询问) and not
        one word with the title that LAC reads as no person's name (班主任). In sharegpt_zh every
        surname + title match that failed this was no one's name
        (docs/stages/pii.md#names-and-addresses)."""
        path, off = self._lac_path(chunks, s)
        if path is None:
            return True
        i = s - off
        if _INSIDE[path[i]] or path[i] in _FUNCTION_B:
            return False
        return word_end(path, i) < e - off or path[i] == PER_B

    def _lac_path(self, chunks: List[Tuple[int, str]], s: int):
        """LAC's tag path of the chunk holding position ``s`` and the chunk's offset."""
        for off, c in chunks:
            if off <= s < off + len(c):
                return self._memo[c][1], off
        return None, 0

    def _cue_name(self, chunks: List[Tuple[int, str]], s: int, e: int) -> Optional[Tuple[int, int]]:
        """The name after a cue (我叫 / 患者 / a speaker label) as LAC reads it: LAC's person word
        at ``s``, else the surname + one or two characters when they end where a word ends and no
        word in them is a verb, adverb, pronoun or other function word, and they are not one
        common word. In sharegpt_zh the pattern alone took 应该选 from 患者应该选择, 白细胞 from
        患者白细胞, 那人说 and 任务 from lines starting 那人说： and 任务：, 乔治的 from 名叫乔治的;
        None where nothing is left."""
        path, off = self._lac_path(chunks, s)
        if path is None:
            return s, e
        i = s - off
        if _INSIDE[path[i]]:
            return None
        k = word_end(path, i)
        if path[i] == PER_B and k - i >= 2:
            return s, off + min(k, e - off + 1)
        for end in range(e - off, i + 1, -1):  # the whole match, then one character shorter
            if end < len(path) and _INSIDE[path[end]]:
                continue  # it would stop inside a word
            if k >= end and path[i] not in _PROPER_B:
                continue  # one common word (任务, 来源 as headings; 白细胞 after 患者)
            if not any(path[j] in _NO_NAME_B for j in range(i, end) if not _INSIDE[path[j]]):
                return s, off + end
        return None

    def _keep(self, text: str, s: int, e: int) -> List[Span]:
        name = text[s:e]
        # a lone character is a surname only with a title (the cue patterns' job)
        if len(name) < 2 or not _NAME_CHARS.match(name) or is_public_figure(name) or name in NOT_NAMES:
            return []
        # Latin words inside Chinese chats are mostly products, brands and code (MetaClub, Jira,
        # ChatGPT): a Latin handle counts with name_mode all, when written like a person's name
        # (Jason), next to a Chinese name it aliases, or after a role word (find_batch)
        if self.latin_names is False and _LATIN.match(name) and not (self.latin and self.latin.is_name(name)):
            return []
        # a lower-case English function word is no handle (Will and May, capitalised, still are)
        if name in self._function_words:
            return []
        # right after a number it is a unit, not a surname (52 周余 1 天: weeks)
        if _AFTER_NUMBER.search(text, max(0, s - 2), s):
            return []
        return [(s, e, self.score)]


_LATIN = re.compile(r"[A-Za-z]")
# LAC's words that are no surname before a title: preposition, conjunction, adverb, auxiliary,
# pronoun
_FUNCTION_B = b_tags("p c d u r")
# ... and the words that are no part of a name after a cue: adjectives, conjunction, adverb,
# direction, numeral, preposition, measure word, pronoun, place word, time, auxiliary, verbs,
# punctuation, other function word
_NO_NAME_B = b_tags("a ad an c d f m p q r s t u v vd vn w xc")
_PROPER_B = b_tags("nr nw nz")  # person, other proper noun
_OPENING = re.compile(r"\s?[(（\[【]\s?")


def _join_brackets(text: str, off: int, spans: List[Tuple[int, int]]) -> List[Tuple[int, int]]:
    """Tagged spans with only an opening bracket between them read as one (王志强(Awoke)), so
    that the handle is that name's alias however the tagger split them (not a space: next to
    English prose that made every tagged English word an alias)."""
    out: List[Tuple[int, int]] = []
    for s, e in spans:
        if out and _OPENING.fullmatch(text, out[-1][1] + off, s + off):
            out[-1] = (out[-1][0], max(e, out[-1][1]))
        else:
            out.append((s, e))
    return out
