"""A SIMULATED biased LLM judge for tests/fake_openai.FakeAPI (no real LLM runs here).

It reads the judge prompt built by pipeline/judge.py, finds the answers between their tags, and
scores them with known biases, so tests and bench/judge_bench.py can check that the mitigations
see them:
- true quality: `quality(text)`, by default 2 + 2 per bullet line ("- ..."), capped at 10;
- length bias: + `length_bias` points per 100 characters of the answer;
- position bias (pairwise): + `position_bias` points to the answer shown first;
- noise: Gaussian, sd `noise`, drawn from a hash of the prompt and how many times this exact
  prompt was seen (a sampling judge: asking again gives another draw; the order in which
  threads arrive does not change the set of draws);
- reply style: {"score": n, "reason": ...} JSON, or a "Score: n" / "评分：n" line;
- garbage: with `garbage_every` = k, one prompt in k gets an unparseable reply the first time.
"""
from __future__ import annotations

import hashlib
import json
import random
import re
import threading
from collections import Counter

_TAG = {t: re.compile(rf"<{t}>\n(.*?)\n</{t}>", re.S) for t in ("answer", "answer_a", "answer_b")}


def bullet_quality(text: str) -> float:
    return min(10.0, 2.0 + 2.0 * sum(line.startswith("- ") for line in text.splitlines()))


class BiasedJudge:
    def __init__(self, position_bias=2.0, length_bias=0.5, noise=1.0, tie_margin=0.5, garbage_every=0,
                 line_every=3, quality=bullet_quality, scale=10):
        self.position_bias, self.length_bias, self.noise = position_bias, length_bias, noise
        self.tie_margin, self.garbage_every, self.line_every = tie_margin, garbage_every, line_every
        self.quality, self.scale = quality, scale
        self.seen: Counter = Counter()
        self.lock = threading.Lock()

    def _score(self, text: str, rng: random.Random) -> float:
        return self.quality(text) + self.length_bias * len(text) / 100 + rng.gauss(0, self.noise)

    def __call__(self, messages: list[dict]) -> str:
        prompt = messages[-1]["content"]
        h = hashlib.sha256(prompt.encode()).hexdigest()
        with self.lock:
            n = self.seen[h]
            self.seen[h] += 1
        rng = random.Random(f"{h}:{n}")
        zh = "评价维度" in prompt
        if self.garbage_every and n == 0 and int(h[:8], 16) % self.garbage_every == 0:
            return "我觉得还行吧。" if zh else "Hmm, it is fine I suppose."
        a = _TAG["answer"].search(prompt)
        if a:
            s = round(min(self.scale, max(1.0, self._score(a.group(1), rng))))
            if self.line_every and int(h[8:16], 16) % self.line_every == 0:
                return f"理由：略。\n评分：{s}" if zh else f"Reasoning omitted.\nScore: {s}"
            return json.dumps({"score": s, "reason": "模拟评审" if zh else "simulated judge"}, ensure_ascii=False)
        first, second = _TAG["answer_a"].search(prompt).group(1), _TAG["answer_b"].search(prompt).group(1)
        d = self._score(first, rng) + self.position_bias - self._score(second, rng)
        w = "A" if d > self.tie_margin else "B" if d < -self.tie_margin else "tie"
        return json.dumps({"winner": w, "reason": "simulated judge"})
