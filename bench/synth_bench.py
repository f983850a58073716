"""Synthesis stage: throughput and check pass rates on real single-turn seeds.

    python bench/synth_bench.py [--evaldata ../shared/evaldata] [--n 300] [--max-tokens 48]

Seeds: the first N/2 records of llamafactory/alpaca_zh_demo.json (zh, alpaca) and of
sharegpt_zh/medical_sft_1K_format.jsonl (zh, ShareGPT), each through the extract stage.
1. Template generator alone: next user turns for every seed (turns 1 and 2), turns/s, and the
   check pass rate of those follow-ups against the real answers. Then the checks on the seeds'
   real answers, judged as if they were generated replies: their false-positive rate.
2. The synth stage: followup=template, backend=hf with a tiny RANDOM Llama (trainer/tiny.py,
   built on the fly into a temp dir), max_turns=3, sampling at temperature 0.7. Its replies are
   gibberish that never stops before max_tokens, so nearly every reply fails `truncated` and
   `language` and most records stop growing after `attempts`; the point is throughput of the
   loop (generation + checks + shards) and that every check runs. Reported: generated messages/s
   (follow-ups + replies, passed or not), turns added, pass rate per check and role.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from pipeline import runner, shards  # noqa: E402
from pipeline.synth import checks as C  # noqa: E402
from pipeline.synth.followup import TemplateFollowup, seed_lang  # noqa: E402
from trainer.tiny import save_tiny  # noqa: E402


def seeds(evaldata: str, n: int, tmp: str) -> dict[str, str]:
    """{name: extract shard folder} for the two seed sets (n/2 records each)."""
    half = n // 2
    with open(os.path.join(evaldata, "llamafactory", "alpaca_zh_demo.json"), encoding="utf-8") as f:
        alpaca = json.load(f)[:half]
    with open(os.path.join(evaldata, "sharegpt_zh", "medical_sft_1K_format.jsonl"), encoding="utf-8") as f:
        medical = [json.loads(line) for _, line in zip(range(half), f)]
    out = {}
    for name, rows, ext in (("alpaca_zh_demo", alpaca, "json"), ("medical_sft_1K", medical, "jsonl")):
        src = os.path.join(tmp, f"{name}.{ext}")
        with open(src, "w", encoding="utf-8") as f:
            if ext == "json":
                json.dump(rows, f, ensure_ascii=False)
            else:
                f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        out[name] = os.path.join(tmp, f"ext-{name}")
        runner.run_stage("extract", {"source": name, "domain": "general"}, src, out[name], progress=False)
    return out


def template_alone(folder: str) -> tuple[int, float, dict]:
    recs = list(shards.iter_records(folder))
    g, s = TemplateFollowup(seed=0), C.CheckSettings()
    t0 = time.perf_counter()
    made = []
    for r in recs:
        used: tuple = ()
        for turn in (1, 2):
            text, kind = g.generate(r["id"], r["messages"], seed_lang(r), turn, used=used)
            used += (kind,)
            made.append((text, r))
    gen_s = time.perf_counter() - t0
    fails: dict = {c: 0 for c in C.CHECKS}
    for text, r in made:
        for c in C.run_checks(C.Turn(text, "user", r["messages"], r["lang"]), s):
            fails[c] += 1
    return len(made), gen_s, {c: 1 - f / len(made) for c, f in fails.items()}


def checks_on_real_answers(folder: str) -> tuple[int, dict]:
    """Pass rate per check of the seeds' own answers, judged as if generated replies: how often
    a check would reject a real answer (its false-positive rate on these sets)."""
    s = C.CheckSettings()
    fails: dict = {c: 0 for c in C.CHECKS}
    n = 0
    for r in shards.iter_records(folder):
        m = r["messages"]
        k = max(i for i, x in enumerate(m) if x["role"] == "assistant")
        n += 1
        for c in C.run_checks(C.Turn(m[k]["content"], "assistant", m[:k], r["lang"], "stop"), s):
            fails[c] += 1
    return n, {c: 1 - f / n for c, f in fails.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--evaldata", default=os.path.join(ROOT, "..", "shared", "evaldata"))
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=16)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="synth-bench-")
    try:
        folders = seeds(a.evaldata, a.n, tmp)
        print("## template generator alone (turns 1 and 2 for every seed)")
        for name, folder in folders.items():
            n, secs, rates = template_alone(folder)
            low = {c: round(v, 3) for c, v in rates.items() if v < 1.0}
            print(f"{name:<16} {n} follow-ups in {secs:.3f}s = {n / secs:,.0f} turns/s; "
                  f"check pass rates below 1.0: {low or 'none'}")
        print("\n## checks on the seeds' real answers, judged as generated replies (false-positive rate)")
        for name, folder in folders.items():
            n, rates = checks_on_real_answers(folder)
            print(f"{name:<16} {n} answers; pass rates below 1.0: "
                  f"{ {c: round(v, 3) for c, v in rates.items() if v < 1.0} or 'none'}")
        model = save_tiny(os.path.join(tmp, "tiny-random-llama"))
        print(f"\n## synth stage: followup=template, backend=hf (tiny random Llama), max_turns=3, "
              f"max_tokens={a.max_tokens}, batch_size={a.batch_size}")
        for name, folder in folders.items():
            out = os.path.join(tmp, f"synth-{name}")
            t0 = time.perf_counter()
            m = runner.run_stage("synth", {"backend": "hf", "model": model, "max_turns": 3,
                                           "max_tokens": a.max_tokens, "batch_size": a.batch_size},
                                 folder, out, progress=False)
            secs = time.perf_counter() - t0
            s = m["synth"]
            print(f"{name:<16} {m['counts']['in']} seeds, {s['messages_generated']} messages generated in "
                  f"{secs:.1f}s = {s['messages_generated'] / secs:.1f} generated turns/s; turns added "
                  f"{s['turns_added']}; tokens in/out {s['tokens_in']}/{s['tokens_out']}; stop {s['stop']}")
            for c, v in s["checks"].items():
                u, r = v["user"], v["assistant"]
                print(f"    {c:<15} pass {v['pass_rate']:.3f}  (follow-ups {u['pass_rate']:.3f} of {u['run']}, "
                      f"replies {r['pass_rate']:.3f} of {r['run']})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
