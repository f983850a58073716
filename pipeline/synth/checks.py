"""Checks on every generated turn (knowledge leakage, role markers, format
consistency, style alignment).

Each check is a small function that returns None (pass) or a short reason (fail). All of them
work on Chinese and English alike: no `\\b` (it means nothing between CJK characters), and
overlaps are measured on char 3-grams for Chinese and word 3-grams for English, the same
shingles `pipeline.shingles` hashes for dedup.

`run_checks` runs every enabled check on one generated message (not stopping at the first
failure, so the stage can report a pass rate per check) and returns {name: reason} of the
failures, in CHECKS order.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from ..shingles import shingle_hashes
from ..text import TEMPLATE_TOKENS

CHECKS = ("empty", "truncated", "role_marker", "boilerplate", "repeated", "language", "format",
          "knowledge_leak", "near_duplicate")

# ----------------------------------------------------------------------------- helpers
_FENCE = re.compile(r"```.*?(?:```|$)", re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_CJK = re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf\uf900-\ufaff]")
_LATIN_WORD = re.compile(r"[A-Za-z]+")


def prose(text: str) -> str:
    """Text outside code: code blocks and inline code say nothing about language or markers."""
    return _INLINE_CODE.sub(" ", _FENCE.sub(" ", text))


def zh_share(text: str) -> float | None:
    """Share of Chinese in `text` (outside code), counting 1.5 CJK characters as one word like
    `pipeline.text.detect_lang`; None when there is neither CJK nor a Latin word."""
    t = prose(text)
    z = len(_CJK.findall(t)) / 1.5
    w = len(_LATIN_WORD.findall(t))
    return z / (z + w) if z + w else None


def text_lang(text: str) -> str:
    s = zh_share(text)
    return "other" if s is None else "zh" if s >= 0.5 else "en"


def _shingles(texts: list[str], lang: str) -> list[np.ndarray]:
    """Per text, its shingle hashes in order (char 3-grams unless lang is en)."""
    h, idx = shingle_hashes(texts, ["en" if lang == "en" else "zh"] * len(texts))
    bounds = np.searchsorted(idx, np.arange(len(texts) + 1))
    return [h[bounds[i]:bounds[i + 1]] for i in range(len(texts))]


def _longest_true_run(mask: np.ndarray) -> int:
    if not mask.any():
        return 0
    m = np.concatenate([[0], mask.astype(np.int8), [0]])
    d = np.diff(m)
    return int((np.flatnonzero(d == -1) - np.flatnonzero(d == 1)).max())


# ----------------------------------------------------------------------------- settings
@dataclass
class CheckSettings:
    min_chars: dict = field(default_factory=lambda: {"user": 4, "assistant": 2})
    leak_overlap: float = 0.6       # share of the follow-up's n-grams found in earlier answers
    leak_span: int = 12             # longest copied run, in chars (zh) or words (en)
    leak_min_ngrams: int = 8        # shorter follow-ups are judged on the copied span only
    repeat_distinct: float = 0.35   # distinct / total n-grams below this is a loop
    repeat_min_ngrams: int = 12     # too short to judge repetition below this
    dup_jaccard: float = 0.8        # n-gram Jaccard with an earlier message
    enabled: tuple = CHECKS


@dataclass
class Turn:
    """What a check sees: the generated message and the conversation it extends."""
    text: str
    role: str                       # user (follow-up) or assistant (reply)
    history: list                   # earlier messages, dicts with role and content
    lang: str                       # the seed's language: zh / en / mixed / other
    finish_reason: str | None = None


# ----------------------------------------------------------------------------- the checks
def check_empty(t: Turn, s: CheckSettings) -> str | None:
    n = len(t.text.strip())
    lim = s.min_chars.get(t.role, 1)
    return None if n >= lim else f"{n} non-space characters (< {lim})"


def check_truncated(t: Turn, s: CheckSettings) -> str | None:
    if t.finish_reason == "length":
        return "generation stopped at max_tokens"
    if t.text.count("```") % 2:
        return "unclosed code block"
    return None


# Speaker labels at the start of a line (after optional quote, emphasis or heading marks) or
# right after a sentence end, and role tags anywhere. English labels are case-sensitive and
# generic words ("AI:", "System:", a "- User:" glossary item) are left alone: they are content.
_LABEL = re.compile(r"(?m)(?:^[ \t>*#_]*|[.!?。！？][ \t]*)(?:Human|Assistant|User|用户|助手)[ \t*_]*[:：]")
_ROLE_TAG = re.compile(r"</?(?:im_start|im_end)>|<\|[a-z_]+\|>")  # beyond pipeline.text.TEMPLATE_TOKENS


def check_role_marker(t: Turn, s: CheckSettings) -> str | None:
    """Role markers or template tokens inside content (outside code; tags lower-case only, so
    `List<User>` in prose is not a marker)."""
    p = prose(t.text)
    m = TEMPLATE_TOKENS.search(p) or _ROLE_TAG.search(p) or _LABEL.search(p)
    return None if m is None else f"role marker {m.group(0).strip()!r}"


_BOILER = [re.compile(p, re.IGNORECASE) for p in (
    r"as an ai(?: language)? model", r"as a (?:large )?language model", r"as an ai(?: assistant)?,",
    r"i(?:'m| am) (?:just )?an ai", r"i(?:'m| am) sorry,? but i (?:can(?:no|')t|am unable)",
    r"i can(?:no|')t (?:help|assist) with", r"i(?: do not|'m not able to|don't) have (?:personal|access to real)",
    r"here(?:'s| is) (?:a|the|my) (?:possible |natural )?follow[- ]up", r"^\s*follow[- ]up(?: question)?\s*[:：]",
    r"作为一?个?(?:ai|人工智能|语言模型|AI助手|AI语言模型|大语言模型)", r"我(?:只)?是一?个?(?:ai|人工智能|语言模型)",
    r"(?:很|非常)?抱歉[，,]?\s*(?:我)?(?:无法|不能)(?:回答|提供|协助|帮助)", r"我无法(?:回答|提供)(?:这个|该|此)",
    r"以下是(?:一个|一条)?(?:可能的)?(?:追问|后续问题)", r"^\s*追问\s*[:：]",
)]


def check_boilerplate(t: Turn, s: CheckSettings) -> str | None:
    """AI self-reference, refusals, and a generator's preamble ("Here is a follow-up ...")."""
    p = prose(t.text)
    for rx in _BOILER:
        m = rx.search(p)
        if m:
            return f"boilerplate {m.group(0).strip()!r}"
    return None


def check_repeated(t: Turn, s: CheckSettings) -> str | None:
    """A generation loop: few distinct n-grams, or one line said three times."""
    lines = [ln.strip() for ln in t.text.splitlines() if len(ln.strip()) >= 8]
    if lines:
        top = max(lines.count(x) for x in set(lines))
        if top >= 3:
            return f"a line repeated {top} times"
    h = _shingles([t.text], t.lang if t.lang in ("zh", "en") else text_lang(t.text))[0]
    if len(h) >= s.repeat_min_ngrams:
        ratio = len(np.unique(h)) / len(h)
        if ratio < s.repeat_distinct:
            return f"distinct n-gram ratio {ratio:.2f} (< {s.repeat_distinct})"
    return None


def check_language(t: Turn, s: CheckSettings) -> str | None:
    """Same language as the seed (zh or en seeds; mixed/other seeds are not judged)."""
    if t.lang not in ("zh", "en"):
        return None
    share = zh_share(t.text)
    if share is None:
        return None  # code or numbers only: nothing to judge
    if t.lang == "zh" and share < 0.5:
        return f"seed is zh, turn is {share:.0%} Chinese"
    if t.lang == "en" and share > 0.2:
        return f"seed is en, turn is {share:.0%} Chinese"
    return None


_HEADING = re.compile(r"(?m)^#{1,6}[ \t]+\S")
_TABLE = re.compile(r"(?m)^[ \t]*\|.*\|[ \t]*\n[ \t]*\|[ \t:|-]+\|")
_HALF_PUNCT_AFTER_CJK = re.compile(r"[\u4e00-\u9fff][,;:?!](?=[\u4e00-\u9fff\s]|$)")
_FULL_PUNCT = re.compile(r"[，；：？！。]")


def _style(text: str) -> dict:
    p = _FENCE.sub(" ", text)
    return {"fence": "```" in text, "heading": bool(_HEADING.search(p)), "table": bool(_TABLE.search(p)),
            "half": len(_HALF_PUNCT_AFTER_CJK.findall(p)), "full": len(_FULL_PUNCT.findall(p))}


def check_format(t: Turn, s: CheckSettings) -> str | None:
    """Format consistent with the seed: a follow-up is plain prose (no headings, tables or code
    blocks unless the user already wrote them); a reply uses headings/tables only when an
    earlier answer did; Chinese keeps full-width punctuation when the seed does."""
    st = _style(t.text)
    same_role = [m["content"] for m in t.history if m["role"] == t.role]
    seen = [_style(c) for c in same_role]
    for key, what in (("heading", "markdown headings"), ("table", "a markdown table"), ("fence", "a code block")):
        if seen and st[key] and not any(x[key] for x in seen):  # nothing earlier: nothing to match
            if key == "fence" and t.role == "assistant":
                continue  # an answer may show code when asked; a follow-up rarely should
            return f"{what} where earlier {t.role} turns have none"
    if t.lang == "zh" and st["half"] >= 3 and st["half"] > st["full"]:
        full = sum(x["full"] for x in _all_styles(t.history))
        half = sum(x["half"] for x in _all_styles(t.history))
        if full > half:
            return f"half-width punctuation after Chinese ({st['half']}x) where the seed uses full-width"
    return None


def _all_styles(history):
    return [_style(m["content"]) for m in history if m["role"] in ("user", "assistant")]


def knowledge_overlap(question: str, answers: list[str], lang: str) -> tuple[float, int, int]:
    """(share of the question's n-grams found in `answers`, longest copied run in chars (zh)
    or words (en), the question's n-gram count). k consecutive shared 3-grams cover k + 2 units.

    >>> knowledge_overlap("Why is the sky blue at noon?", ["The sky is blue because of Rayleigh scattering."], "en")
    (0.0, 0, 5)
    """
    lang = lang if lang in ("zh", "en") else text_lang(question)
    hs = _shingles([question, "\n".join(answers)], lang)
    q, a = hs
    if not len(q) or not len(a):
        return 0.0, 0, len(q)
    hit = np.isin(q, a)
    run = _longest_true_run(hit)
    return float(hit.mean()), (run + 2 if run else 0), len(q)


def check_knowledge_leak(t: Turn, s: CheckSettings) -> str | None:
    """A follow-up must not copy long spans of the answers so far, nor restate what only the
    assistant knew (high n-gram overlap with them). Replies are not judged: an answer may
    build on earlier answers."""
    if t.role != "user":
        return None
    answers = [m["content"] for m in t.history if m["role"] == "assistant"]
    if not answers:
        return None
    share, run, n = knowledge_overlap(prose(t.text), [prose(a) for a in answers], t.lang)
    if run >= s.leak_span:
        return f"copies a {run}-unit span of an earlier answer (>= {s.leak_span})"
    if n >= s.leak_min_ngrams and share > s.leak_overlap:
        return f"{share:.0%} of its n-grams come from earlier answers (> {s.leak_overlap:.0%})"
    return None


def check_near_duplicate(t: Turn, s: CheckSettings) -> str | None:
    """Near-duplicate of an earlier message (n-gram Jaccard), in either role."""
    earlier = [m["content"] for m in t.history if m["role"] in ("user", "assistant")]
    if not earlier:
        return None
    lang = t.lang if t.lang in ("zh", "en") else text_lang(t.text)
    hs = _shingles([t.text] + earlier, lang)
    mine = np.unique(hs[0])
    if not len(mine):
        return None
    for k, other in enumerate(hs[1:]):
        o = np.unique(other)
        inter = len(np.intersect1d(mine, o, assume_unique=True))
        j = inter / (len(mine) + len(o) - inter)
        if j >= s.dup_jaccard:
            return f"Jaccard {j:.2f} with earlier message {k} (>= {s.dup_jaccard})"
    return None


FUNCS = {name: globals()[f"check_{name}"] for name in CHECKS}


def run_checks(t: Turn, s: CheckSettings) -> dict[str, str]:
    out = {}
    for name in CHECKS:
        if name in s.enabled:
            r = FUNCS[name](t, s)
            if r is not None:
                out[name] = r
    return out
