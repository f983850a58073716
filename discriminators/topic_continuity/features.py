"""Features of "does message i continue the topic of the messages before it?".

One row per message after the first. Everything is computed for a whole batch of dialogues at
once: embeddings in one encoder call, cosines as row-wise dot products, context vectors by a
loop over *positions* (not messages), lexical overlap by set membership of (unit hash, message)
keys with ``np.isin``, cues by RE2 over an Arrow array. Chinese and English alike: lexical units
are char bigrams for Chinese and mixed text (no word boundaries) and content words for English;
cue lists hold both languages; no ``\\b`` touches Chinese.

The corpus is built offline, so the message *after* i is a legitimate witness: at a switch,
i and i+1 agree with each other and not with what came before (TextTiling's block comparison).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.shingles import shingle_hashes
from pipeline.text import _CJK_RE2, _LATIN_WORD_RE2, ZH_CHARS_PER_WORD

EMBED_CHARS = 512  # the head of a message carries its topic; long code answers cost no more
DECAY = 0.6        # context vector: C_i = sum_{j<i} DECAY^(i-1-j) e_j


# cues, matched case-insensitively by RE2 (no lookbehind; \b is ASCII-only in RE2, so it never
# splits Chinese, and no Chinese alternative relies on it)
# a continuation cue may follow a soft cue: "对了，具体哪年上映的？" / "by the way, what about it?"
_SOFT = r"对了|另外|顺便(?:问一下|问问|说一下)?|还有|by the way|btw|also|oh and|and also"
CONT_CUE = (r"^\W{0,3}(?:(?:" + _SOFT + r")\W{0,3})?(?:它|这个|这些|这样|这种|这|那个|那些|那么|那|还有|其中|然后|所以|但是|可是|如果|为什么|怎么|具体|继续|再|能不能再|详细|也|"
            r"(?:it|that|this|these|those|they|also|and|but|so|then|what about|how about|why|which|same|"
            r"ok so|continue|more|yes|no|sure|great|okay|ok)\b)")
# explicit: the speaker says the topic changes; soft: a connector that opens a new question as
# often as a follow-up. Both are evidence for the model to weigh with the content, not a rule.
SWITCH_CUE = (r"换个话题|换一个话题|另一个问题|新问题|问个别的|题外话|说点别的|聊点别的|"
              r"\b(?:unrelated|another question|different question|new question|change of topic|"
              r"change the topic|on another note|different topic|switch(?:ing)? gears)\b")
SOFT_CUE = (r"另外|顺便|对了|我还需要|我还想|还要一个|再帮我|"
            r"\b(?:by the way|btw|also need|also looking for|also want|i need a|i am looking for|"
            r"i'm looking for|can you help me find)\b")
CLOSING_CUE = (r"谢谢|感谢|好的|好吧|行吧|好嘞|没有了|再见|就这些|还有什么|还需要|其他问题|"
               r"\b(?:thanks|thank you|that's all|that is all|bye|goodbye|anything else|what else|"
               r"is there anything|have a (?:good|great|nice))\b")
QUESTION = r"[?？]|吗|呢|什么|怎么|如何|为什么|哪"
# the user judges the answer just given ("回答的不错", "你说得对", "that's wrong"): a reaction
# to the previous turn, which real assistant chats are full of and spliced training data lacks
FEEDBACK_CUE = (r"很好|真好|太好了|不错|真棒|厉害|正确|对的|没错|说得对|说的对|有道理|明白了|懂了|了解|知道了|收到|"
                r"受益|学到了|原来如此|胡说|错了|不对|不准确|不是这样|答非所问|不想知道|回答的|回答得|你的回答|你的回复|"
                r"\b(?:good answer|great answer|nice|perfect|correct|you're right|you are right|that's right|"
                r"that's wrong|wrong|incorrect|makes sense|got it|i see|understood|cool|awesome|interesting|"
                r"not what i asked)\b")
# the message points at the answer just given ("你说的", "这首诗", "结尾再修饰一下", "your code") or
# asks for its details ("对了，具体哪年上映的？", "can you elaborate"):
# in a short message this refers back; in a long one it may point at text pasted in it
_PUNCT = r"[\s,.!?;:，。！？、；：…~]{0,3}"  # not \W: in RE2 every Han character is \W
REF_CUE = (r"^" + _PUNCT + r"(?:(?:" + _SOFT + r")" + _PUNCT + r")?(?:具体|详细|展开|再具体|更具体|specifically|can you elaborate|"
           r"elaborate|more details?|in more detail)|"
           r"你(?:刚才|刚刚|之前|上面)?(?:说|提到|讲|给我|写|提供|列|推荐|回答|举|编写|发送|输出|生成)的|"
           r"你(?:刚才|刚刚|之前)?(?:提到|说过|所说)|你(?:刚才|刚刚|之前)说|以上(?:哪|的|这些|内容|几)|"
           r"上面(?:的|这|那|哪|提到|说)|(?:这|那)一?(?:首|段话|句|篇文章|个故事|段代码|个代码|个答案|个回答|个方案)|"
           r"后面这|结尾|(?:其他|别的|其它)的?(?:方法|办法|方案|例子)|"
           r"再(?:改|修改|修饰|润色|详细|简短|写一)|润色|改写|重写|修改一下|短一点|长一点|更详细|"
           r"\b(?:you (?:said|mentioned|wrote|suggested|recommended|gave|listed)|your (?:answer|reply|response|"
           r"code|suggestion|example|list|story|poem)|rewrite|make it (?:shorter|longer)|the (?:first|second|third|last) one|"
           r"(?:any )?other ways?|another way)\b")
REF_MAX_CHARS = 100
# the previous message asks the user for something ("您需要我写关于什么主题的大纲？", "你想写什么?"):
# an answer that asks nothing back continues it
INVITE = (r"[?？]\s*$|请提问|请告诉我|请写下|请说|请描述|请提供|请输入|你想|您想|你需要|您需要|能提供|"
          r"\b(?:what would you like|which one|tell me more|could you tell|please provide|please share)\b")
INVITE_MAX_CHARS = 120

# a request opens work ("帮我写", "can you"): a short "很好，帮我写首诗" is no acknowledgement
REQUEST = (r"帮我|请|写|给我|告诉我|推荐|介绍|能不能|能否|可不可以|可以|我想知道|我想了解|我想问|"
           r"\b(?:help|write|tell me|give me|can you|could you|please|recommend|explain|how)\b")

# frequent units that say nothing about the topic (hashed like the units themselves)
_EN_STOP = ("the a an and or but if so to of in on at for with by from as is are was were be been am do does did "
            "have has had i you he she it we they me my your our their this that these those what which who how "
            "why when where can could would should will shall may might must not no yes ok okay please thanks "
            "thank just very really also there here about up out all any some one get got like know think want "
            "need im i'm it's don't dont let's").split()
_ZH_STOP = ("我们 你们 他们 什么 怎么 可以 一个 这个 那个 没有 就是 还是 因为 所以 但是 如果 现在 知道 觉得 需要 "
            "这样 那么 的话 一下 不是 是的 自己 时候 问题 谢谢 请问 帮我 你好 可能 应该 一些 这些 那些").split()

FEATURES = [
    "cos_prev", "cos_prev2", "cos_prev_user", "cos_ctx", "cos_first", "cos_next", "cos_bridge",
    "cos_blocks", "cos_prev_rel", "max_cos_past3",
    "lex_prev", "lex_jacc_prev", "lex_ctx", "lex_bridge", "lex_next",
    "len_log", "len_prev_log", "len_ratio_log",
    "cont_cue", "switch_cue", "soft_cue", "closing", "closing_prev", "question", "question_prev",
    "pos_log", "pos_frac", "is_user", "same_role", "has_next", "cjk_share",
    "feedback", "ref_cue", "request", "invite_prev",
    # the cosines again from a second embedder (MiniLM) where the message and the one before
    # are English, else a copy of the first set: English chit-chat drift shows better there
    "en_cos_prev", "en_cos_prev2", "en_cos_prev_user", "en_cos_ctx", "en_cos_first", "en_cos_next",
    "en_cos_bridge", "en_cos_blocks", "en_cos_prev_rel", "en_max_cos_past3",
]
COSINES = ("cos_prev", "cos_prev2", "cos_prev_user", "cos_ctx", "cos_first", "cos_next", "cos_bridge",
           "cos_blocks", "cos_prev_rel", "max_cos_past3")


ACK_MAX_CHARS = 20  # an acknowledgement ("谢谢！", "thanks, got it") is at most this long


def acknowledgement(X: np.ndarray) -> np.ndarray:
    """Rows that are a short thanks / ok, or a short verdict on the answer ("回答的不错", "that's
    wrong") that asks nothing: they close or judge a topic, they never open one, so they are
    not switches (a switch is the user starting something new). Chats in the training data
    rarely carry them, so the rule is explicit rather than learned."""
    col = FEATURES.index
    return (((X[:, col("closing")] > 0) | ((X[:, col("feedback")] > 0) & (X[:, col("request")] == 0)))
            & (X[:, col("question")] == 0) & (X[:, col("len_log")] <= np.log1p(ACK_MAX_CHARS)))


def refers_back(X: np.ndarray) -> np.ndarray:
    """Short rows that point at the answer just given ("你说的", "这首诗", "结尾再修饰一下",
    "your code"): in an assistant chat they continue it by construction, and spliced training
    switches (first messages of other chats) almost never do this, so it is a rule too. Not
    for task dialogues: there "你推荐的那家附近有酒店吗" opens a new domain."""
    col = FEATURES.index
    return (X[:, col("ref_cue")] > 0) & (X[:, col("len_log")] <= np.log1p(REF_MAX_CHARS))


RULES = {"acknowledgement": acknowledgement, "refers_back": refers_back}
DEFAULT_RULES = ("acknowledgement",)


def continues_by_rule(X: np.ndarray, rules=DEFAULT_RULES) -> np.ndarray:
    """Rows that a rule says continue (never switches); ``rules`` names entries of RULES."""
    out = np.zeros(len(X), dtype=bool)
    for r in rules:
        out |= RULES[r](X)
    return out


@dataclass
class Batch:
    """Features of a batch: X[k] describes message ``msg[k]`` of dialogue ``dlg[k]``."""
    X: np.ndarray      # (rows, len(FEATURES)) float32
    dlg: np.ndarray    # dialogue index in the batch
    msg: np.ndarray    # message index in its dialogue (>= 1)
    row_of: np.ndarray  # global message index -> row (-1 for first messages)


def _rowdot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", a, b)


def _normed(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def _match(texts: pa.Array, pattern: str) -> np.ndarray:
    return pc.match_substring_regex(texts, pattern, ignore_case=True).to_numpy(zero_copy_only=False).astype(np.float32)


_STOP_CACHE: dict = {}


def _stop_hashes() -> np.ndarray:
    if "h" not in _STOP_CACHE:
        en, _ = shingle_hashes(_EN_STOP, ["en"] * len(_EN_STOP), n_char=2, n_word=1)
        zh, _ = shingle_hashes(_ZH_STOP, ["zh"] * len(_ZH_STOP), n_char=2, n_word=1)
        _STOP_CACHE["h"] = np.unique(np.r_[en, zh])
    return _STOP_CACHE["h"]


def _units(texts: list[str], is_en: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique (unit hash, message) pairs: English content words, else char bigrams."""
    h, i = shingle_hashes(texts, ["en" if e else "zh" for e in is_en], n_char=2, n_word=1)
    keep = ~np.isin(h, _stop_hashes())
    key = (i[keep].astype(np.uint64) << np.uint64(32)) | h[keep].astype(np.uint64)
    key = np.unique(key)
    return key, (key >> np.uint64(32)).astype(np.int64)


def _overlap(keys: np.ndarray, owner: np.ndarray, n: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Per pair k: how many units of message src[k] also occur in message dst[k] (dst -1: 0).
    ``keys`` are sorted (owner << 32 | unit), so each message's units are one slice."""
    ptr = np.searchsorted(owner, np.arange(n + 1))
    ok = dst >= 0
    pair = np.flatnonzero(ok)
    lo, hi = ptr[src[pair]], ptr[src[pair] + 1]
    cnt = hi - lo
    idx = np.repeat(lo - np.r_[0, np.cumsum(cnt)[:-1]], cnt) + np.arange(int(cnt.sum()))
    which = np.repeat(pair, cnt)
    q = (dst[which].astype(np.uint64) << np.uint64(32)) | (keys[idx] & np.uint64(0xFFFFFFFF))
    pos = np.searchsorted(keys, q)
    hit = keys[np.minimum(pos, len(keys) - 1)] == q if len(keys) else np.zeros(len(q), bool)
    return np.bincount(which[hit], minlength=len(src)).astype(np.float32)


def _cosines(E: np.ndarray, lens, starts, dlg, pos, roles, rows, n_dialogues: int) -> dict:
    """The embedding features (COSINES) of ``rows`` from message vectors ``E``."""
    n, dim = len(E), (E.shape[1] if E.ndim == 2 else 0)
    # context vector, previous user message, max cosine to the last 3: loops over positions
    C = np.zeros((n, dim), dtype=np.float32)
    prev_user = np.full(n, -1, dtype=np.int64)
    maxpast = np.full(n, -1.0, dtype=np.float32)
    for p in range(1, int(lens.max()) if n else 0):
        g = starts[lens > p] + p
        C[g] = DECAY * C[g - 1] + E[g - 1]
        was_user = roles[g - 1] == "user"
        prev_user[g] = np.where(was_user, g - 1, prev_user[g - 1])
        for back in range(1, min(p, 3) + 1):
            maxpast[g] = np.maximum(maxpast[g], _rowdot(E[g], E[g - back]))
    last = pos == lens[dlg] - 1
    r_prev = rows - 1
    has2 = pos[rows] >= 2
    r_prev2 = np.where(has2, rows - 2, rows - 1)
    has_next = ~last[rows]
    r_next = np.where(has_next, rows + 1, rows)
    cos_prev = _rowdot(E[rows], E[r_prev])
    pu = prev_user[rows]
    before = _normed(E[r_prev] + np.where(has2[:, None], E[r_prev2], 0))
    after = _normed(E[rows] + np.where(has_next[:, None], E[r_next], 0))
    # cosine relative to the dialogue's own mean adjacent cosine (some chats are all "far")
    sums = np.bincount(dlg[rows], weights=cos_prev, minlength=n_dialogues)
    cnt = np.maximum(lens - 1, 1)
    return {
        "cos_prev": cos_prev, "cos_prev2": _rowdot(E[rows], E[r_prev2]),
        "cos_prev_user": np.where(pu >= 0, _rowdot(E[rows], E[np.maximum(pu, 0)]), cos_prev),
        "cos_ctx": _rowdot(E[rows], _normed(C[rows])), "cos_first": _rowdot(E[rows], E[starts[dlg[rows]]]),
        "cos_next": np.where(has_next, _rowdot(E[rows], E[r_next]), 0.0),
        "cos_bridge": np.where(has_next, _rowdot(E[r_next], E[r_prev]), cos_prev),
        "cos_blocks": _rowdot(before, after), "cos_prev_rel": cos_prev - (sums / cnt)[dlg[rows]],
        "max_cos_past3": maxpast[rows],
    }


def featurize(dialogues, embedder, embeddings: np.ndarray | None = None) -> Batch:
    """Features for every message after the first of each dialogue (objects with ``texts`` and
    ``roles``). ``embeddings``: precomputed (total messages, dim) vectors, else ``embedder``.
    An embedder with a ``second`` (embed.PairEmbedder) also gives the en_ cosines; without
    one they copy the first set."""
    lens = np.array([len(d.texts) for d in dialogues], dtype=np.int64)
    n = int(lens.sum())
    starts = np.r_[0, np.cumsum(lens)[:-1]].astype(np.int64)
    dlg = np.repeat(np.arange(len(dialogues)), lens)
    pos = np.arange(n) - starts[dlg]
    last = pos == lens[dlg] - 1
    texts = [t for d in dialogues for t in d.texts]
    roles = np.array([r for d in dialogues for r in d.roles], dtype=object)
    is_user = (roles == "user").astype(np.float32)

    E = embeddings if embeddings is not None else embedder.encode([t[:EMBED_CHARS] for t in texts])
    E = np.asarray(E, dtype=np.float32)

    rows = np.flatnonzero(pos >= 1)
    r_prev = rows - 1
    has_next = ~last[rows]
    r_next = np.where(has_next, rows + 1, rows)
    cos = _cosines(E, lens, starts, dlg, pos, roles, rows, len(dialogues))

    arr = pa.array(texts, type=pa.string())
    cjk = pc.count_substring_regex(arr, _CJK_RE2).to_numpy(zero_copy_only=False).astype(np.float32)
    latin = pc.count_substring_regex(arr, _LATIN_WORD_RE2).to_numpy(zero_copy_only=False).astype(np.float32)
    is_en = latin > cjk / ZH_CHARS_PER_WORD
    cjk_share = cjk / np.maximum(cjk + latin, 1)
    second = getattr(embedder, "second", None)
    en_cos = dict(cos)
    if second is not None and is_en.any():
        # only English messages next to another English one go through the second model (code
        # answers in Chinese chats do not); rows whose message or previous message is not
        # English keep the first model's cosines
        E2 = np.zeros((n, second.dim), dtype=np.float32)
        nb = np.zeros(n, dtype=bool)
        nb[rows] |= is_en[r_prev]
        nb[r_prev] |= is_en[rows]
        idx = np.flatnonzero(is_en & nb)
        E2[idx] = second.encode([texts[i][:EMBED_CHARS] for i in idx])
        c2 = _cosines(E2, lens, starts, dlg, pos, roles, rows, len(dialogues))
        both = is_en[rows] & is_en[r_prev]
        en_cos = {k: np.where(both, c2[k], v) for k, v in cos.items()}
    keys, owner = _units(texts, is_en)
    size = np.bincount(owner, minlength=n).astype(np.float32)
    ov_prev = _overlap(keys, owner, n, rows, r_prev)
    ov_next = _overlap(keys, owner, n, rows, np.where(has_next, r_next, -1))
    ov_bridge = _overlap(keys, owner, n, r_next, np.where(has_next, r_prev, -1))
    ctx = np.zeros(len(rows), dtype=np.float32)  # units of i seen in any of the 3 before
    for back in (1, 2, 3):
        ok = pos[rows] >= back
        ctx = np.maximum(ctx, _overlap(keys, owner, n, rows, np.where(ok, rows - back, -1)))
    s_i = np.maximum(size[rows], 1)
    lex_prev = ov_prev / s_i
    lex_jacc = ov_prev / np.maximum(size[rows] + size[r_prev] - ov_prev, 1)
    lex_ctx = ctx / s_i
    lex_next = np.where(has_next, ov_next / s_i, 0)
    lex_bridge = np.where(has_next, ov_bridge / np.maximum(size[r_next], 1), lex_prev)

    length = np.log1p(pc.utf8_length(arr).to_numpy(zero_copy_only=False).astype(np.float32))
    cont = _match(arr, CONT_CUE)
    switch = _match(arr, SWITCH_CUE)
    soft = _match(arr, SOFT_CUE)
    closing = _match(arr, CLOSING_CUE)
    question = _match(arr, QUESTION)
    feedback = _match(arr, FEEDBACK_CUE)
    ref = _match(arr, REF_CUE)
    request = _match(arr, REQUEST)
    short_msg = pc.utf8_length(arr).to_numpy(zero_copy_only=False) <= INVITE_MAX_CHARS
    invite = _match(arr, INVITE) * short_msg

    cols = {
        **cos, **{f"en_{k}": v for k, v in en_cos.items()},
        "lex_prev": lex_prev, "lex_jacc_prev": lex_jacc, "lex_ctx": lex_ctx, "lex_bridge": lex_bridge,
        "lex_next": lex_next,
        "len_log": length[rows], "len_prev_log": length[r_prev], "len_ratio_log": length[rows] - length[r_prev],
        "cont_cue": cont[rows], "switch_cue": switch[rows], "soft_cue": soft[rows], "closing": closing[rows], "closing_prev": closing[r_prev],
        "question": question[rows], "question_prev": question[r_prev],
        "pos_log": np.log1p(pos[rows]).astype(np.float32), "pos_frac": pos[rows] / np.maximum(lens[dlg[rows]] - 1, 1),
        "is_user": is_user[rows], "same_role": (roles[rows] == roles[r_prev]).astype(np.float32),
        "has_next": has_next.astype(np.float32), "cjk_share": cjk_share[rows],
        "feedback": feedback[rows], "ref_cue": ref[rows], "request": request[rows], "invite_prev": invite[r_prev],
    }
    X = np.stack([np.asarray(cols[f], dtype=np.float32) for f in FEATURES], axis=1) if len(rows) else \
        np.zeros((0, len(FEATURES)), dtype=np.float32)
    row_of = np.full(n, -1, dtype=np.int64)
    row_of[rows] = np.arange(len(rows))
    return Batch(X=X, dlg=dlg[rows], msg=pos[rows], row_of=row_of)
