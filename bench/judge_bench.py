"""LLM-as-judge bias mitigations against a SIMULATED biased judge.

    python bench/judge_bench.py [--evaldata ../shared/evaldata] [--variants 4] [--seed 0]

No real LLM judge is measured here. The judge is tests/fake_judge.BiasedJudge behind the local
HTTP stand-in tests/fake_openai.FakeAPI, with KNOWN biases: +1.5 points to the answer shown first,
+0.4 points per 100 characters, Gaussian noise sd 1.0; its true quality is 1 + 1.5 per "checked"
bullet.
The harness (pipeline/judge.py, real OpenAICompatClient) does not know these numbers; the
figures show whether its mitigations see and undo them.

Conversations: every two-turn question of mt_bench/mt_bench_question.jsonl (80, English),
`--variants` times each. Turn 1 gets a short synthetic answer; the candidate answers turn 2 with
4 bullets of the same length, 1-4 of them "checked" (quality) and the rest "guessed". A is that
alone (concise); B is the same kind of answer plus 0-8 filler sentences (a padded, longer variant).
Turn 1's answer names the variant, so no two prompts are the same (the simulated judge's draws
then do not depend on thread order). Quality does not depend on length, so B is longer but not better: a length-biased judge overrates
it, and the true win rate of A is known.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from fake_judge import BiasedJudge  # noqa: E402
from fake_openai import FakeAPI  # noqa: E402
from pipeline.judge import pearson, print_summary, run_judge  # noqa: E402

FILLER = ["As mentioned above, this is an important point worth keeping in mind.",
          "It is also worth noting that many people find this topic interesting.",
          "In general, there are many factors to consider here.",
          "Overall, the details depend on the specific situation at hand."]


def quality(text: str) -> float:
    return 1.0 + 1.5 * text.count(", checked.")


def bullets(rng: random.Random, topic: str, word: str) -> str:
    k = rng.randint(1, 4)
    marks = rng.sample([", checked."] * k + [", guessed."] * (4 - k), 4)
    return "\n".join(f"- {word} {j + 1} on '{topic}': a specific statement{m}" for j, m in enumerate(marks))


def conversations(evaldata: str, variants: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    with open(os.path.join(evaldata, "mt_bench", "mt_bench_question.jsonl"), encoding="utf-8") as f:
        qs = [json.loads(line) for line in f if line.strip()]
    rows = []
    for q in qs:
        t1, t2 = q["turns"][:2]
        topic = " ".join(t2.split()[:6])
        for v in range(variants):
            a, b = bullets(rng, topic, "Point"), bullets(rng, topic, "Note")  # never the same text
            b += "\n" + " ".join(rng.choice(FILLER) for _ in range(rng.randint(0, 8)))
            rows.append({"id": f"{q['question_id']}-{v}", "lang": "en", "answer_b": b.strip(), "messages": [
                {"role": "user", "content": t1}, {"role": "assistant", "content": f"Here is first answer {v} to that."},
                {"role": "user", "content": t2}, {"role": "assistant", "content": a}]})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--evaldata", default=os.path.join(ROOT, "..", "shared", "evaldata"))
    ap.add_argument("--variants", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rows = conversations(a.evaldata, a.variants, a.seed)
    tmp = tempfile.mkdtemp(prefix="judge_bench_")
    src = os.path.join(tmp, "in.jsonl")
    with open(src, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    qa = [quality(r["messages"][-1]["content"]) for r in rows]
    qb = [quality(r["answer_b"]) for r in rows]
    true_win = statistics.fmean(1.0 if x > y else 0.0 if x < y else 0.5 for x, y in zip(qa, qb))
    print(f"SIMULATED judge (tests/fake_judge.py; no real LLM judge was measured): {len(rows)} conversations "
          f"from mt_bench, 2 user turns each")
    t0 = time.perf_counter()
    with FakeAPI(reply=BiasedJudge(position_bias=1.5, length_bias=0.4, noise=1.0, quality=quality)) as api:
        base = {"base_url": api.base_url, "model": "simulated-judge", "cache_dir": os.path.join(tmp, "cache"),
                "concurrency": 8, "backoff": 0.01, "multi_turn": False, "dimensions": "helpful"}

        def run(name, **kw):
            return run_judge(src, os.path.join(tmp, name), {**base, **kw})

        # 1. position: one order only, then both (the A/B requests come from the cache)
        one = run("pair1", mode="pairwise", swap=False)["pairwise"]
        two = run("pair2", mode="pairwise", swap=True)["pairwise"]
        print("\n1. position bias (pairwise, dimension helpful)")
        print(f"   first-position pick rate, A/B only {one['first_position_pick_rate']:.3f} "
              f"(length-confounded: the first answer is the shorter one)")
        print(f"   first-position pick rate, both     {two['first_position_pick_rate']:.3f} (unbiased: 0.5)")
        print(f"   position consistency A/B vs B/A    {two['position_consistency']:.3f} "
              f"(measurable only with the swap; without it every verdict is taken as is)")
        print(f"   win rate of A, A/B order only      {one['win_rate_a']:.3f}")
        print(f"   win rate of A, swapped, agreeing   {two['win_rate_a']:.3f} "
              f"({two['inconsistent']} of {two['comparisons']} inconsistent -> no verdict)")
        print(f"   true win rate of A (known quality) {true_win:.3f}")

        # 2. variance: 9 draws per item; single draws vs medians of 3
        p9 = run("point9", mode="pointwise", repeats=9)
        draws = [json.loads(line)["scores"] for line in open(os.path.join(tmp, "point9", "scores.jsonl"))]
        draws = [d for d in draws if len(d) == 9]
        single = math.sqrt(statistics.fmean(statistics.variance(d) for d in draws))
        med3 = math.sqrt(statistics.fmean(statistics.variance([statistics.median(d[i:i + 3]) for i in (0, 3, 6)])
                                          for d in draws))
        print(f"\n2. score variance (pointwise, {len(draws)} answers x 9 draws)")
        print(f"   per-answer score std, single draw  {single:.3f}")
        print(f"   per-answer score std, median of 3  {med3:.3f}")
        print(f"   9 draws disagree on                {p9['pointwise']['a']['disagree_share']:.3f} of answers")

        # 3. length
        pa, pb = p9["pointwise"]["a"], p9["pointwise"]["b"]
        lens = [len(r["messages"][-1]["content"]) for r in rows] + [len(r["answer_b"]) for r in rows]
        lw = two["length"]
        print("\n3. length bias")
        print(f"   corr(length, judge score)          {pearson(lens, _scores(tmp)):.3f}"
              f"  (corr(length, true quality) {pearson(lens, qa + qb):.3f})")
        print(f"   mean score A / padded B            {pa['mean']['helpful']:.3f} / {pb['mean']['helpful']:.3f} "
              f"(true {statistics.fmean(qa):.3f} / {statistics.fmean(qb):.3f})")
        print(f"   win rate of A, raw (decisive)      {lw['raw']:.3f}")
        print(f"   win rate of A, length-controlled   {lw['length_controlled']:.3f} (slope {lw['length_slope']:.2f})")
        print(f"   true win rate of A                 {true_win:.3f}")

        # 4. the full report as `turnforge judge` prints it: 3H + multi-turn, both modes, median of 3
        print("\n4. turnforge judge, mode=both, dimensions=3h + multi-turn, repeats=3")
        full = run("full", mode="both", dimensions="3h", multi_turn=True, repeats=3)
        print_summary(full, sys.stdout)
    print(f"\nwall {time.perf_counter() - t0:.1f}s, {len(api.requests)} requests to the simulated judge")
    return 0


def _scores(tmp: str) -> list[float]:
    """Median scores of A then B, in input order, from the 9-draw run."""
    rows = [json.loads(line) for line in open(os.path.join(tmp, "point9", "scores.jsonl"))]
    return [r["score"] for r in rows if r["candidate"] == "a"] + [r["score"] for r in rows if r["candidate"] == "b"]


if __name__ == "__main__":
    sys.exit(main())
