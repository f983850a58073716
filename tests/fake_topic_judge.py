"""A SIMULATED topic-continuity labeller for tests/fake_openai.FakeAPI (no real LLM runs here).

It reads the prompt pipeline/labeling.py builds, takes the conversation and the new message from
their tags and decides with a keyword rule whose answers the tests know in advance: each topic
has keywords (zh and en); the new message switches when it names a topic and the last message of
the conversation that names one names another. A message that names no topic (a follow-up,
"thanks") continues. Reply styles rotate (JSON, a "Verdict:" / "结论：" line, the bare word) so
the parser is exercised; `garbage_on` substrings make the reply to such a message unreadable
every time, `garbage_once` only the first time it is asked.
"""
from __future__ import annotations

import json
import re
import threading
from collections import Counter

TOPICS = {
    "product": ("手机", "耳机", "phone", "headphones"),
    "weather": ("天气", "下雨", "weather", "rain"),
    "cooking": ("红烧肉", "酱油", "braised pork", "soy sauce"),
    "code": ("python", "列表", "list in"),
    "travel": ("机票", "签证", "flight", "visa"),
}
_CONV = re.compile(r"<conversation>\n(.*?)\n</conversation>", re.S)
_NEW = re.compile(r"<new_message>\n(.*?)\n</new_message>", re.S)


def topic(text: str) -> str | None:
    t = text.lower()
    return next((name for name, words in TOPICS.items() if any(w in t for w in words)), None)


def rule(context_lines: list[str], new: str) -> int:
    """1 when `new` names a topic other than the last one named before it, else 0."""
    now = topic(new)
    before = next((x for x in map(topic, reversed(context_lines)) if x), None)
    return int(now is not None and before is not None and now != before)


class TopicJudge:
    def __init__(self, garbage_on=(), garbage_once=()):
        self.garbage_on, self.garbage_once = tuple(garbage_on), tuple(garbage_once)
        self.seen: Counter = Counter()
        self.lock = threading.Lock()

    def __call__(self, messages: list[dict]) -> str:
        prompt = messages[-1]["content"]
        zh = "话题连续性" in messages[0]["content"]
        new = _NEW.search(prompt).group(1)
        ctx = _CONV.search(prompt).group(1).split("\n\n")
        with self.lock:
            n = self.seen[prompt]
            self.seen[prompt] += 1
        if any(g in new for g in self.garbage_on) or (n == 0 and any(g in new for g in self.garbage_once)):
            return "嗯，这个不好说。" if zh else "Hard to say, both readings are possible."
        v = ("continue", "switch")[rule(ctx, new)]
        style = sum(map(ord, new)) % 3
        if style == 0:
            return "```json\n" + json.dumps({"verdict": v, "reason": "模拟" if zh else "simulated"}) + "\n```"
        if style == 1:
            return f"理由：略。\n结论：{'切换' if v == 'switch' else '延续'}" if zh else f"Reasoning omitted.\nVerdict: {v}"
        return v
