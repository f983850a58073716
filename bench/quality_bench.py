"""Quality stage: false rejects on real chats, recall on injected garbage, speed.

    python bench/quality_bench.py [--evaldata ../shared/evaldata]

1. Real chats (sharegpt_zh, OpenAssistant zh, LIMA, chitchat): share rejected by each rule,
   with examples to inspect (these sets are curated or human, so most rejects are false).
2. Garbage injected into 500 real conversations per kind (the assistant reply, or the user
   message for spam, replaced or corrupted; mojibake = a non-ASCII reply's UTF-8 bytes read as
   Latin-1): recall per kind.
3. Speed: the stage's vectorised signals vs the same signals computed per message in Python
   (re + loops), same messages, same process.
"""
from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import sys
import tempfile
import time
from collections import Counter

import numpy as np
import pyarrow as pa

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from pipeline import runner, shards  # noqa: E402
from pipeline.quality.signals import REFUSAL, SPAM, message_signals  # noqa: E402


def extract(src: str, work: str, name: str, **params) -> str:
    out = os.path.join(work, name)
    runner.run_stage("extract", params, src, out, progress=False)
    return out


def quality(folder: str, work: str, name: str):
    out = os.path.join(work, name)
    m = runner.run_stage("quality", {}, folder, out, progress=False)
    return m, list(shards.iter_records(out, "rejected"))


def _jsonl(path, rows):
    import json
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def corrupt(kind: str, msgs: list[dict], rng: random.Random) -> list[dict]:
    msgs = [dict(m) for m in msgs]
    a = next(i for i, m in enumerate(msgs) if m["role"] == "assistant")
    u = next(i for i, m in enumerate(msgs) if m["role"] == "user")
    reply = msgs[a]["content"]
    if kind == "mojibake":
        msgs[a]["content"] = reply.encode("utf-8").decode("latin-1")
    elif kind == "garbage_text":
        msgs[a]["content"] = "".join(rng.choice("@#$%^&*()_+=[]{};:'\",.<>/?\\|~`!") for _ in range(rng.randint(10, 80)))
    elif kind == "repetitive":
        if rng.random() < 0.5:
            sent = re.split(r"(?<=[。！？.!?])", reply)[0][:80] or reply[:40]
            msgs[a]["content"] = (sent + " ") * rng.randint(10, 30)
        else:
            msgs[a]["content"] = reply[:30] + rng.choice("哈啊a") * rng.randint(30, 80)
    elif kind == "spam":
        ad = rng.choice(["加我微信 wx8823 代开发票", "兼职日结，日赚500，加v详聊", "Click here for a limited offer: http://x.example",
                         "big casino bonus, whatsapp me", None])
        if ad is None:  # a wall of links
            msgs[u]["content"] = "\n".join(f"https://deal{k}.example/p?id={rng.randint(0, 9999)}" for k in range(6))
        else:
            msgs[u]["content"] = msgs[u]["content"] + " " + ad
    elif kind == "empty_reply":
        msgs[a]["content"] = rng.choice(["...", "？", "。。。", "!!", "——"])
    return msgs


def naive_signals(texts: list[str]) -> list[tuple]:
    """The same signals, one message at a time (the baseline for the speed ratio)."""
    code = re.compile(r"```.*?(?:```|$)", re.DOTALL)
    moj = re.compile("[\ufffd\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\u00c3[\x80-\xbf]|\u00e2\u20ac")  # MOJIBAKE in re syntax
    spam, refusal = re.compile(SPAM, re.I), re.compile(REFUSAL, re.I)
    out = []
    for t in texts:
        prose = code.sub(" ", t)
        letters = sum(ch.isalnum() for ch in prose)
        visible = sum(not ch.isspace() for ch in prose)
        run = best = 0
        prev = None
        for ch in prose:
            run = run + 1 if (ch == prev and ch.isalpha()) else 1
            prev = ch
            best = max(best, run)
        words = prose.lower().split() if re.search(r"[A-Za-z]", prose) and not re.search(r"[\u4e00-\u9fff]", prose) \
            else list(prose)
        grams = [tuple(words[i:i + 3]) for i in range(len(words) - 2)]
        distinct = len(set(grams)) / len(grams) if len(grams) >= 30 else 1.0
        out.append((letters / visible if visible else 1.0, len(moj.findall(t)), bool(spam.search(t)),
                    bool(refusal.search(t)), best, distinct))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--evaldata", default=os.path.join(ROOT, "..", "shared", "evaldata"))
    ap.add_argument("--per-kind", type=int, default=500)
    a = ap.parse_args()
    ev = a.evaldata
    work = tempfile.mkdtemp(prefix="tf-quality-bench-")
    try:
        sets = {"sharegpt_zh": (os.path.join(ev, "sharegpt_zh", "sharegpt_zh_1K_format.jsonl"), {}),
                "oaast_sft_zh": (os.path.join(ev, "llamafactory", "oaast_sft_zh.json"), {}),
                "lima (en)": (os.path.join(ev, "llamafactory", "lima.json"), {}),
                "chitchat (en, human)": (os.path.join(ev, "chitchat", "chitchat_messages.jsonl"), {"format": "openai"})}
        print("1. real chats: share rejected (all assumed fine, so rejects are false unless shown otherwise)")
        folders = {}
        for name, (path, params) in sets.items():
            ex = extract(path, work, f"ex-{len(folders)}", **params)
            folders[name] = ex
            m, rej = quality(ex, work, f"q-{len(folders)}")
            c = m["counts"]
            by = Counter(r["reason"] for r in rej)
            print(f"   {name:<22} {c['in']:>6} conversations, rejected {c['rejected_total']:>4} = "
                  f"{c['rejected_total'] / max(c['in'], 1):.2%}  {dict(by)}")
            for r in rej[:3]:
                print(f"      e.g. {r['reason']}: {r['detail'][:110]}")

        print(f"\n2. injected garbage, {a.per_kind} real conversations per kind (sharegpt_zh + LIMA):")
        rng = random.Random(0)
        base = [r for name in ("sharegpt_zh", "lima (en)") for r in shards.iter_records(folders[name])]
        rng.shuffle(base)
        kinds = ["mojibake", "garbage_text", "repetitive", "spam", "empty_reply"]
        # mojibake only exists where there is non-ASCII text to mis-decode
        non_ascii = [r for r in base if not next(m for m in r["messages"] if m["role"] == "assistant")["content"].isascii()]
        for kind in kinds:
            pool = non_ascii if kind == "mojibake" else base
            rows = [{"messages": [{"role": m["role"], "content": m["content"]} for m in c]}
                    for c in (corrupt(kind, r["messages"], rng) for r in pool[:a.per_kind])]
            ex = extract(_jsonl(os.path.join(work, f"{kind}.jsonl"), rows), work, f"inj-{kind}")
            m, rej = quality(ex, work, f"qinj-{kind}")
            hit = sum(r["reason"] == kind for r in rej)
            print(f"   {kind:<14} recall {len(rej) / m['counts']['in']:.3f} (as this rule: {hit / m['counts']['in']:.3f})")

        print("\n3. speed of the signals (same messages, one process):")
        texts = [m["content"] for name in folders for r in shards.iter_records(folders[name]) for m in r["messages"]]
        arr = pa.array(texts)
        message_signals(arr[:1000])
        t = time.perf_counter()
        for _ in range(2):
            message_signals(arr)
        ours = 2 * len(texts) / (time.perf_counter() - t)
        sample = texts[:20000]
        t = time.perf_counter()
        naive_signals(sample)
        naive = len(sample) / (time.perf_counter() - t)
        print(f"   vectorised: {ours:,.0f} messages/s   per-message Python: {naive:,.0f} messages/s   -> {ours / naive:.1f}x"
              f"   ({len(texts):,} messages, mean {np.mean([len(x) for x in texts]):.0f} chars)")
        t = time.perf_counter()
        m, _ = quality(folders["chitchat (en, human)"], work, "speed")
        print(f"   whole stage on chitchat: {m['counts']['in'] / (time.perf_counter() - t):,.0f} conversations/s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
