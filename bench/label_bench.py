"""Agreement of `turnforge discriminator label` with gold topic-shift labels.

    python bench/label_bench.py --base-url URL --model NAME [--limit 100] [--max-requests 3000]
    python bench/label_bench.py [--limit 100] [--flip 0.1]          # no endpoint: simulated check

With an endpoint (any OpenAI-compatible server: vLLM, Ollama, a hosted API; the key from
$OPENAI_API_KEY) it labels the first `--limit` dialogues of each public set and prints the
model's agreement with the gold labels: accuracy, Cohen's kappa, switch precision / recall / F1
(gold as reference), both switch rates, requests and tokens. Sets (../shared/evaldata): TIAGE
dev and DialSeg711 (both speakers are people, so every message after the first is asked,
`roles=all`), CrossWOZ val and MultiWOZ val (`derived_shift`, a domain-change heuristic, on user
messages).

Without an endpoint no real model is measured (none is reachable from the development
machine). The same harness then runs against tests/fake_openai.FakeAPI with an ORACLE that
answers the gold label, flipped on a `--flip` share of questions and unreadable on the first
ask of one question in 20: the printed accuracy must come out near 1 - flip with nothing
unlabelled, which checks the plumbing (prompts, parsing, the re-ask, agreement), not a model.
Prompt sizes per set are printed either way, to price a run.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from pipeline import labeling as L  # noqa: E402

SETS = [("TIAGE dev", "tiage", "tiage/anno_dev.json", "all"),
        ("DialSeg711", "dialseg", "dialseg711/en_dataset_reference_2.txt", "all"),
        ("CrossWOZ val", "woz", "crosswoz/crosswoz_val_compact.jsonl", "user"),
        ("MultiWOZ val", "woz", "multiwoz21/multiwoz21_val_compact.jsonl", "user")]


def questions(spec: str, cfg: L.LabelConfig) -> tuple[dict, list[int]]:
    """(prompt body -> gold label or None, characters of each distinct prompt), for the first
    cfg.limit dialogues: the prompts run_label will send."""
    out: dict = {}
    chars: list[int] = []
    for n, conv in enumerate(L.read_input(spec, {}, [])):
        if n >= cfg.limit:
            break
        lang = L.conv_lang(conv, cfg.lang)
        for k in L.candidates(conv, cfg.roles):
            system, user = L.build_prompt(conv, k, cfg, lang)
            if user["content"] not in out:
                chars.append(len(system["content"]) + len(user["content"]))
            out.setdefault(user["content"], conv.gold[k] if conv.gold else None)
    return out, chars


def oracle(gold: dict, flip: float):
    seen: set = set()

    def reply(messages):
        body = messages[-1]["content"]
        h = int(hashlib.sha256(body.encode()).hexdigest()[:8], 16)
        if h % 20 == 0 and body not in seen:
            seen.add(body)
            return "Let me think about it."
        g = gold.get(body)
        if g is None:
            return "continue"
        if h % 1000 < flip * 1000:
            g = 1 - g
        return json.dumps({"verdict": ("continue", "switch")[g], "reason": "oracle"})

    return reply


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--evaldata", default=os.path.join(ROOT, "..", "shared", "evaldata"))
    ap.add_argument("--base-url", help="an OpenAI-compatible endpoint; without it, the simulated check")
    ap.add_argument("--model", help="the served model name (with --base-url)")
    ap.add_argument("--limit", type=int, default=100, help="dialogues per set (default 100)")
    ap.add_argument("--max-requests", type=int, default=None, help="request budget per set (with --base-url)")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--flip", type=float, default=0.1, help="simulated check: share of oracle answers flipped")
    a = ap.parse_args()
    real = bool(a.base_url)
    if real and not a.model:
        ap.error("--model is required with --base-url")
    print("REAL judge " + a.base_url if real else
          "NO judge endpoint given (none is reachable here): SIMULATED oracle check of the harness, not a model")
    rows = []
    for name, fmt, rel, roles in SETS:
        path = os.path.join(a.evaldata, rel)
        if not os.path.exists(path):
            print(f"{name}: {path} not found, skipped")
            continue
        spec = f"{fmt}:{path}"
        sets = {"base_url": a.base_url or "http://127.0.0.1:1/v1", "model": a.model or "oracle", "roles": roles,
                "limit": a.limit, "concurrency": a.concurrency, "max_requests": a.max_requests}
        cfg, _ = L.make_config(sets)
        qs, chars = questions(spec, cfg)
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "labelled.jsonl")
            if real:
                s = L.run_label(spec, out, sets)
            else:
                from fake_openai import FakeAPI

                with FakeAPI(reply=oracle(qs, a.flip)) as api:
                    s = L.run_label(spec, out, {**sets, "base_url": api.base_url, "cache_dir": "off",
                                                "backoff": 0})
        dt = time.perf_counter() - t0
        ag = s["agreement_with_gold"] or {}
        rows.append((name, s, ag, len(qs), statistics.fmean(chars) if chars else 0, dt))
    print(f"\n{'set':<14} {'dlg':>4} {'asked':>6} {'prompts':>7} {'chars/prompt':>12} {'compared':>8} {'acc':>6} "
          f"{'kappa':>6} {'P':>6} {'R':>6} {'F1':>6} {'gold sw':>7} {'model sw':>8} {'unlab':>5} {'req':>5} "
          f"{'tokens in+out':>14} {'s':>6}")
    f = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
    for name, s, ag, nq, ch, dt in rows:
        r = s["requests"]
        print(f"{name:<14} {s['conversations']:>4} {s['asked']:>6} {nq:>7} {ch:>12.0f} {ag.get('messages', 0):>8} "
              f"{f(ag.get('accuracy')):>6} {f(ag.get('cohen_kappa')):>6} {f(ag.get('precision')):>6} "
              f"{f(ag.get('recall')):>6} {f(ag.get('f1')):>6} {f(ag.get('gold_switch_rate')):>7} "
              f"{f(ag.get('model_switch_rate')):>8} {s['unlabelled']:>5} {r['sent']:>5} "
              f"{r['tokens_in']:>7}+{r['tokens_out']:<6} {dt:>6.1f}")
    if not real:
        print(f"\nsimulated: accuracy should be near {1 - a.flip:.2f} with nothing unlabelled "
              "(one question in 20 is re-asked after an unreadable first reply)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
