"""Extract throughput and memory: conversations/s, and peak RSS at 1x and 10x input.

Reads ../shared/evaldata (not needed by the tests):
- chitchat/chitchat_messages.jsonl (7,168 English chats, OpenAI messages format)
- sharegpt_zh/*.jsonl (2,000 Chinese chats, ShareGPT format)
- the same chitchat flattened into an event log (one row per message), which exercises
  session grouping and gap splitting.
Each input is repeated 1x and 10x into one file per source (so one task streams 10x the data)
and run through `turnforge stage extract` in a fresh process; peak RSS is that process's
ru_maxrss from os.wait4. Streaming means the 10x peak stays within 1.3x of the 1x peak.

    python bench/extract_bench.py [--evaldata ../shared/evaldata] [--reps 1,10]
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_inputs(evaldata: str, reps: int, d: str) -> dict:
    os.makedirs(os.path.join(d, "conv"), exist_ok=True)
    os.makedirs(os.path.join(d, "events"), exist_ok=True)
    chit = os.path.join(evaldata, "chitchat", "chitchat_messages.jsonl")
    zh = sorted(glob.glob(os.path.join(evaldata, "sharegpt_zh", "*.jsonl")))
    with open(chit, encoding="utf-8") as f:
        chit_lines = f.readlines()
    zh_lines = []
    for p in zh:
        with open(p, encoding="utf-8") as f:
            zh_lines += f.readlines()
    with open(os.path.join(d, "conv", "chitchat.jsonl"), "w", encoding="utf-8") as f:
        for _ in range(reps):
            f.writelines(chit_lines)
    with open(os.path.join(d, "conv", "sharegpt_zh.jsonl"), "w", encoding="utf-8") as f:
        for _ in range(reps):
            f.writelines(zh_lines)
    n_events = 0
    with open(os.path.join(d, "events", "events.jsonl"), "w", encoding="utf-8") as f:
        t0 = 1_700_000_000
        for r in range(reps):
            t = t0 + r * 10_000_000
            for line in chit_lines:
                rec = json.loads(line)
                t += 7200  # sessions 2 h apart: each chat becomes its own session
                for k, m in enumerate(rec["messages"]):
                    f.write(json.dumps({"session_id": f"{rec['id']}-{r}", "user_id": f"u{hash(rec['id']) % 500}",
                                        "timestamp": t + 20 * k, "role": m["role"], "text": m["content"]},
                                       ensure_ascii=False) + "\n")
                    n_events += 1
    return {"conversations": reps * (len(chit_lines) + len(zh_lines)), "events": n_events}


def run_extract(inp: str, out: str) -> tuple[float, int, dict]:
    """Run the stage in a fresh process; return (wall seconds, peak RSS bytes, counts)."""
    cmd = [sys.executable, "-m", "pipeline.cli", "stage", "extract", "--in", inp, "--out", out, "--quiet",
           "--set", "tail_turns=0"]
    t = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    if status != 0:
        raise SystemExit(f"extract failed on {inp} (status {status})")
    with open(os.path.join(out, "manifest.json")) as f:
        counts = json.load(f)["counts"]
    return wall, ru.ru_maxrss * 1024, counts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--evaldata", default=os.path.join(ROOT, "..", "shared", "evaldata"))
    ap.add_argument("--reps", default="1,10")
    a = ap.parse_args()
    if not os.path.isdir(a.evaldata):
        raise SystemExit(f"evaldata not found at {a.evaldata}")
    reps = [int(x) for x in a.reps.split(",")]
    work = tempfile.mkdtemp(prefix="tf-extract-bench-")
    # Startup (imports) measured alone, so throughput is the stage's own.
    empty = os.path.join(work, "empty.jsonl")
    with open(empty, "w") as f:
        f.write('{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n')
    startup, base_rss, _ = run_extract(empty, os.path.join(work, "out-empty"))
    print(f"startup (imports, 1 record): {startup:.2f} s, peak RSS {base_rss / 2**20:.0f} MiB")
    rows = {}
    try:
        for r in reps:
            d = os.path.join(work, f"in{r}")
            sizes = make_inputs(a.evaldata, r, d)
            for name, unit in (("conversations", "conv"), ("events", "event")):
                inp = os.path.join(d, "events" if name == "events" else "conv")
                wall, rss, c = run_extract(inp, os.path.join(work, f"out-{name}-{r}"))
                rows[(name, r)] = (wall, rss, c)
                net = max(wall - startup, 1e-9)
                print(f"{name:<13} x{r:<3} in={c['in']:>8} {unit}s  records_out={c['records_out']:>7}  "
                      f"wall={wall:6.2f} s  {c['in'] / net:9.0f} {unit}/s (net of startup)  "
                      f"{c['records_out'] / net:8.0f} conv/s out  peak RSS={rss / 2**20:6.0f} MiB")
        if 1 in reps and 10 in reps:
            for name in ("conversations", "events"):
                ratio = rows[(name, 10)][1] / rows[(name, 1)][1]
                verdict = "OK" if ratio <= 1.3 else "FAIL (> 1.3)"
                print(f"peak RSS 10x / 1x ({name}): {ratio:.2f}  {verdict}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
