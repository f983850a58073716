"""Text helpers that work on Chinese and English alike (no `\\b`, no word splitting on CJK)."""
from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# RE2 syntax (pyarrow.compute): CJK unified ideographs + extension A + compatibility.
_CJK_RE2 = r"[\x{4e00}-\x{9fff}\x{3400}-\x{4dbf}\x{f900}-\x{faff}]"
_LATIN_WORD_RE2 = r"[A-Za-z]+"

# Shares compare words with words: a Chinese word averages about 1.5 characters, so CJK
# characters / 1.5 are set against Latin words. Thresholds: >= 0.8 zh, <= 0.2 en, else mixed.
ZH_CHARS_PER_WORD = 1.5
ZH_SHARE, EN_SHARE = 0.8, 0.2


def joined_text(messages: pa.ListArray) -> pa.Array:
    """Each conversation's message contents joined by newlines (the text dedup, the mix's leakage
    check and the flywheel's novelty check compare), without a Python loop."""
    content = pc.struct_field(pc.list_flatten(messages), "content")
    offs = messages.offsets
    offs = pc.subtract(offs, offs[0]).cast(pa.int32())
    return pc.binary_join(pa.ListArray.from_arrays(offs, content), "\n")


def detect_lang(messages: pa.ListArray | pa.ChunkedArray) -> list[str]:
    """zh / en / mixed / other for each conversation, vectorised over a whole batch.

    `messages` is the list<struct<content,...>> column; counts are summed per row with
    np.add.reduceat over the list offsets, so there is no Python loop per message.
    """
    if isinstance(messages, pa.ChunkedArray):
        messages = messages.combine_chunks()
    n = len(messages)
    if n == 0:
        return []
    content = pc.struct_field(messages.flatten(), "content")
    cjk = pc.count_substring_regex(content, _CJK_RE2).to_numpy(zero_copy_only=False)
    words = pc.count_substring_regex(content, _LATIN_WORD_RE2).to_numpy(zero_copy_only=False)
    offsets = messages.offsets.to_numpy()
    starts = offsets[:-1] - offsets[0]
    lens = np.diff(offsets)
    z = np.zeros(n, dtype=np.int64)
    w = np.zeros(n, dtype=np.int64)
    nz = lens > 0
    if len(cjk):
        z[nz] = np.add.reduceat(cjk.astype(np.int64), starts[nz])
        w[nz] = np.add.reduceat(words.astype(np.int64), starts[nz])
    zw = z / ZH_CHARS_PER_WORD
    total = zw + w
    share = np.divide(zw, total, out=np.zeros(n), where=total > 0)
    out = np.where(share >= ZH_SHARE, "zh", np.where(share <= EN_SHARE, "en", "mixed"))
    out = np.where(total == 0, "other", out)
    return out.tolist()


# --------------------------------------------------------------------------- chat markup
# Template tokens are never content, but code may legitimately hold look-alikes
# (`List<User>`, an explanation of ChatML), so fenced code blocks are left alone and the
# role tags are matched lower-case only.
TEMPLATE_TOKENS = re.compile(
    r"<\|im_start\|>[ \t]*(?:system|user|assistant|tool)?[ \t]*\n?"
    r"|<\|im_end\|>|<\|endoftext\|>|<\|eot_id\|>"
    r"|<\|start_header_id\|>[ \t]*\w*[ \t]*<\|end_header_id\|>\n*"
    r"|<\|(?:system|user|assistant|end)\|>"
    r"|(?:<s>)?[ \t]*\[/?INST\][ \t]*|<<[ \t]*/?SYS[ \t]*>>"
    r"|</s>[ \t]*$"
    r"|</?(?:user|assistant|system|human|bot|gpt)>"
)
_FENCE = re.compile(r"(```.*?(?:```|$))", re.DOTALL)
# A speaker label at the very start of a message that names the message's own role repeats
# the role: strip it. Generic words ("AI:", "GPT:") are left: they are often content.
LEADING_LABEL = {
    "user": re.compile(r"^\s*(?:human|user|用户|客户)\s*[:：]\s*", re.IGNORECASE),
    "assistant": re.compile(r"^\s*(?:assistant|助手|客服)\s*[:：]\s*", re.IGNORECASE),
    "system": re.compile(r"^\s*(?:system|系统)\s*[:：]\s*", re.IGNORECASE),
}
# A speaker label at the start of a later line means a transcript was pasted into one
# message: flagged (or rejected by config), not rewritten, since it may be a quote or a script.
EMBEDDED_SPEAKER = re.compile(r"\n\s*(?:human|assistant|user|用户|助手)\s*[:：]", re.IGNORECASE)


def clean_markup(text: str, role: str = "user") -> tuple[str, list[str]]:
    r"""Remove template tokens (outside code blocks) and a leading label naming `role`.

    >>> clean_markup("<|im_start|>user\nHuman: hi<|im_end|>")
    ('hi', ['template_token', 'speaker_label'])
    >>> clean_markup("```java\nList<User> xs;\n```")[1]
    []
    """
    found = []
    parts = _FENCE.split(text)
    for i in range(0, len(parts), 2):  # even indices are outside code fences
        parts[i] = TEMPLATE_TOKENS.sub("", parts[i])
    t = "".join(parts)
    if t != text:
        found.append("template_token")
    embedded = EMBEDDED_SPEAKER.search(t) is not None
    label = LEADING_LABEL.get(role)
    if label is not None and not embedded:
        t2 = label.sub("", t, count=1)
        if t2 != t:
            found.append("speaker_label")
        t = t2
    if embedded:
        found.append("embedded_dialogue")
    return (t.strip() if found else text), found
