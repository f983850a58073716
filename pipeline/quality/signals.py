"""Per-message quality signals for the quality stage, vectorised over a whole batch.

All signals are computed on the *prose* of a message (code blocks removed: code is legitimately
symbol-heavy and repetitive) with pyarrow.compute (RE2) over one Arrow array, or with numpy over
the concatenated code points; no Python loop per message or character. They work on Chinese and
English alike: letters are Unicode letters (CJK included), repetition is measured on char
3-grams for Chinese and word 3-grams for English.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..shingles import concat_codepoints, kept_mask, shingle_hashes

CODE_BLOCK = r"(?s)```.*?(?:```|$)"
# U+FFFD (decoding failures) and C0 controls other than tab/newline/CR: text that went through
# a wrong encoding or a binary paste; C1 controls, "Ã©", "â€œ": UTF-8 read as Latin-1 or cp1252
MOJIBAKE = r"[\x{FFFD}\x{00}-\x{08}\x{0B}\x{0C}\x{0E}-\x{1F}\x{7F}-\x{9F}]|Ã[\x{80}-\x{BF}]|â€"
URL = r"https?://|www\."
# solicitation cues of ads and scams posted into chats (case-insensitive). Topics alone (lottery,
# casino, loans) are not spam: people ask about them; a spammer asks you to contact or click.
SPAM = (r"加微信|加我微信|加v信|加vx|加v详聊|加q|加qq群|私聊我|代开发票|刷单|兼职日结|日赚\d+|网赚|贷款秒批|免费领取|点击链接领取|"
        r"buy now|click here|limited offer|whatsapp me|telegram me|dm me for|crypto giveaway|"
        r"earn \$\d+ (?:a|per) day|work from home and earn")
REFUSAL = (r"as an ai(?: language)? model|i'm sorry, but i (?:can't|cannot)|i cannot (?:help|assist) with|"
           r"作为一个?(?:ai|人工智能)(?:语言模型|助手)?|很抱歉，我(?:无法|不能)")


def _count(arr: pa.Array, pattern: str, ignore_case: bool = False) -> np.ndarray:
    return pc.count_substring_regex(arr, pattern, ignore_case=ignore_case).to_numpy(zero_copy_only=False)


def _match(arr: pa.Array, pattern: str) -> np.ndarray:
    return pc.match_substring_regex(arr, pattern, ignore_case=True).to_numpy(zero_copy_only=False).astype(bool)


def _char_stats(texts: list[str]) -> dict[str, np.ndarray]:
    """Per text, from one pass over the concatenated code points: letters/digits (Unicode L, N),
    whitespace, CJK characters, Latin words, and the longest run of one repeated letter
    (哈哈哈..., aaaa; digit and punctuation runs such as 1000000 or ===== do not count)."""
    n = len(texts)
    if n == 0:
        z = np.zeros(0, dtype=np.int64)
        return {"letters": z, "spaces": z, "cjk": z, "latin_words": z, "letter_run": z}
    cp, starts = concat_codepoints(texts)
    cp = cp.astype(np.int64)
    kept = kept_mask(cp)  # Unicode letters and digits
    digit = (cp >= 0x30) & (cp <= 0x39)
    letter = kept & ~digit
    space = np.isin(cp, _SPACES)
    cjk = ((cp >= 0x4E00) & (cp <= 0x9FFF)) | ((cp >= 0x3400) & (cp <= 0x4DBF))
    latin = ((cp | 0x20) >= 0x61) & ((cp | 0x20) <= 0x7A)
    word_start = latin & ~np.r_[False, latin[:-1]]
    same = np.r_[False, (cp[1:] == cp[:-1]) & letter[1:]]
    idx = np.arange(len(cp))
    run = idx - np.maximum.accumulate(np.where(~same, idx, 0)) + 1
    run[~letter] = 0

    def per_text(mask):
        return np.add.reduceat(mask.astype(np.int64), starts)
    return {"letters": per_text(kept), "spaces": per_text(space), "cjk": per_text(cjk),
            "latin_words": per_text(word_start), "letter_run": np.maximum.reduceat(run, starts)}


_SPACES = np.array([0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
                    0x2028, 0x2029, 0x202F, 0x205F, 0x3000])


def longest_letter_run(texts: list[str]) -> np.ndarray:
    """Per text, the longest run of one repeated letter."""
    return _char_stats(texts)["letter_run"]


def distinct_ngram_share(texts: list[str], is_en: np.ndarray, min_ngrams: int = 30) -> np.ndarray:
    """Per text, distinct / total 3-grams (chars for Chinese, words for English); 1.0 for texts
    with fewer than ``min_ngrams`` (too short to call repetitive)."""
    out = np.ones(len(texts))
    if not texts:
        return out
    h, i = shingle_hashes(texts, ["en" if e else "zh" for e in is_en], n_char=3, n_word=3)
    total = np.bincount(i, minlength=len(texts))
    key = np.sort((i.astype(np.uint64) << np.uint64(32)) | h.astype(np.uint64))
    first = np.r_[True, key[1:] != key[:-1]] if len(key) else np.zeros(0, bool)
    distinct = np.bincount((key[first] >> np.uint64(32)).astype(np.int64), minlength=len(texts))
    ok = total >= min_ngrams
    out[ok] = distinct[ok] / total[ok]
    return out


def message_signals(content: pa.Array) -> dict[str, np.ndarray]:
    """Signals of every message in ``content`` (an Arrow string array)."""
    prose = pc.replace_substring_regex(content, CODE_BLOCK, " ")
    texts = prose.to_pylist()
    p = _char_stats(texts)
    whole = _char_stats(content.to_pylist())
    chars = pc.utf8_length(prose).to_numpy(zero_copy_only=False).astype(np.int64)
    is_en = p["latin_words"] > p["cjk"] / 1.5
    visible = np.maximum(chars - p["spaces"], 0)
    return {
        "chars": pc.utf8_length(content).to_numpy(zero_copy_only=False).astype(np.int64),
        "prose_chars": chars,
        "letters": whole["letters"],  # code included: a code-only reply is content
        "letter_share": np.divide(p["letters"], visible, out=np.ones(len(chars)), where=visible > 0),
        "mojibake": _count(content, MOJIBAKE).astype(np.int64),
        "urls": _count(content, URL, ignore_case=True).astype(np.int64),
        "spam": _match(content, SPAM),
        "refusal": _match(content, REFUSAL),
        "letter_run": p["letter_run"],
        "distinct_3grams": distinct_ngram_share(texts, is_en),
        "is_en": is_en,
        "has_cjk": p["cjk"] > 0,
    }
