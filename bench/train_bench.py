"""Trainer throughput on real length distributions, in one run on the same data and model.

Data (../shared/evaldata, through the extract stage with default tail selection):
sharegpt_zh (2,000 Chinese chats, 633 multi-turn), chitchat (7,168 English chats),
llamafactory/oaast_sft_zh (689 Chinese Alpaca records with history). Model: the `tiny`
architecture (random init) with a byte-level BPE of `--vocab` tokens trained here on the same
text (the shipped tiny tokenizer saw only data_samples/ and would make sequences unrealistically
long); ours and TRL load the same saved model directory. Prints:

- packing efficiency (real tokens / slots) of best-fit-decreasing packing; target >= 0.97
- tokens/s of packed rows vs padded batches (one conversation per row, padded to the longest
  in the micro-batch, micro-batches sized to hold the same real tokens on average); target >= 1.5x
- turn_mean overhead vs token_mean on the same packed data; target <= 5%
- tokens/s of TRL's SFTTrainer with packing on the same model, data, max_len and rows per
  step (bench/trl_peer.py); target ours / TRL >= 1.0x

Rates count real (non-padding) tokens and exclude the first `--warmup` steps.

    python bench/train_bench.py [--steps 40] [--max-len 1024] [--rows 2]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from pipeline import runner, shards  # noqa: E402
from trainer.data import PackedData, global_batches  # noqa: E402
from trainer.pack import PackConfig, pack_folder  # noqa: E402
from trainer.train import TrainConfig, train  # noqa: E402


def extract(evaldata: str, out: str) -> str:
    inputs = [
        {"path": os.path.join(evaldata, "sharegpt_zh"), "source": "sharegpt_zh", "domain": "general"},
        {"path": os.path.join(evaldata, "chitchat", "chitchat_messages.jsonl"), "source": "chitchat",
         "domain": "general"},
        {"path": os.path.join(evaldata, "llamafactory", "oaast_sft_zh.json"), "source": "oaast_zh",
         "domain": "general"},
    ]
    runner.run_stage("extract", {"inputs": inputs}, None, out, progress=False)
    return out


def rate(metrics: str, warmup: int) -> tuple[float, int]:
    rows = [json.loads(x) for x in open(metrics) if '"loss"' in x]
    after = [r for r in rows if r["step"] > warmup]
    t0 = next(r["elapsed_s"] for r in rows if r["step"] == warmup)
    tokens = sum(r["tokens"] for r in after)
    return tokens / (after[-1]["elapsed_s"] - t0), tokens


def padded_efficiency(data: PackedData, rows_per_step: int, steps: int, seed: int) -> float:
    lens = np.diff(data.offsets)
    real = slots = 0
    for gb in global_batches(len(data), rows_per_step, steps, seed):
        real += lens[gb].sum()
        slots += len(gb) * lens[gb].max()
    return real / slots


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--evaldata", default=os.path.join(ROOT, "..", "shared", "evaldata"))
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--max-len", type=int, default=1024)
    ap.add_argument("--rows", type=int, default=2, help="packed rows per micro-batch")
    ap.add_argument("--work", default=None)
    ap.add_argument("--vocab", type=int, default=8000)
    ap.add_argument("--no-trl", action="store_true")
    a = ap.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="tf-train-bench-")
    conv = os.path.join(work, "extract")
    if not shards.is_complete(conv):
        extract(a.evaldata, conv)
    from trainer.tiny import load_tokenizer, tiny_model, train_tokenizer

    model_dir = os.path.join(work, "tiny-model")
    if not os.path.exists(os.path.join(model_dir, "model.safetensors")):
        texts = (m["content"] for r in shards.iter_records(conv) for m in r["messages"])
        train_tokenizer(texts, model_dir, a.vocab)
        tok = load_tokenizer(model_dir)
        tiny_model(len(tok), seed=0).save_pretrained(model_dir)
        tok.save_pretrained(model_dir)
    packed_dir, padded_dir = os.path.join(work, "packed"), os.path.join(work, "padded")
    fresh = not shards.is_complete(packed_dir)
    t = time.perf_counter()
    mp = pack_folder(conv, packed_dir, PackConfig(model=model_dir, max_len=a.max_len))
    pack_s = time.perf_counter() - t
    md = pack_folder(conv, padded_dir, PackConfig(model=model_dir, max_len=a.max_len, packing=False))
    packed, padded = PackedData(packed_dir), PackedData(padded_dir)
    mean_doc = md["tokens"] / md["rows"]
    pad_rows = max(1, round(a.rows * a.max_len / mean_doc))
    print(f"data: {mp['docs_packed']} conversations ({mp['rejected']} rejected), {mp['tokens']} tokens, "
          f"{mp['turns']} supervised turns; mean conversation {mean_doc:.0f} tokens; max_len {a.max_len}")
    if fresh:
        print(f"pack: {mp['docs_in'] / pack_s:.0f} conversations/s ({mp['tokens'] / pack_s:.0f} tokens/s): "
              f"render + tokenise + mask + pack")
    print(f"packing efficiency (best-fit-decreasing): {mp['packing_efficiency']:.4f}  (target >= 0.97)")
    print(f"padded batches of {pad_rows} conversations: efficiency "
          f"{padded_efficiency(padded, pad_rows, a.steps, 0):.4f}")

    def run(name, data_dir, rows, loss):
        out = os.path.join(work, "runs", name)
        t = time.perf_counter()
        train(TrainConfig(model=model_dir, data=data_dir, out=out, max_len=a.max_len, micro_batch_size=rows, max_steps=a.steps,
                          loss=loss, lr=1e-3, resume=False, seed=0))
        r, tok = rate(os.path.join(out, "metrics.jsonl"), a.warmup)
        print(f"  {name:<18} {r:9.0f} tokens/s  ({tok} real tokens in {a.steps - a.warmup} timed steps; "
              f"wall {time.perf_counter() - t:.1f} s)")
        return r

    print("our trainer (tiny model, CPU):")
    r_turn = run("packed-turn_mean", packed_dir, a.rows, "turn_mean")
    r_tok = run("packed-token_mean", packed_dir, a.rows, "token_mean")
    r_pad = run("padded-turn_mean", padded_dir, pad_rows, "turn_mean")
    print(f"packed vs padded: {r_turn / r_pad:.2f}x  (target >= 1.5x)")
    print(f"turn_mean overhead vs token_mean: {(r_tok / r_turn - 1) * 100:+.1f}%  (target <= 5%)")
    if a.no_trl:
        return
    try:
        from trl_peer import run_trl
    except ImportError as e:
        print(f"TRL peer skipped: {e}")
        return
    convs = [[{"role": m["role"], "content": m["content"]} for m in r["messages"]] for r in shards.iter_records(conv)]
    res = run_trl(model_dir, convs, max_len=a.max_len, micro_batch_size=a.rows, steps=a.steps, lr=1e-3,
                  workdir=os.path.join(work, "trl"))
    print(f"TRL {res.get('trl_version')} SFTTrainer (packing={res.get('packing_strategy')}, "
          f"assistant_only_loss={res.get('assistant_only_loss')}): {res['tokens_per_s']:.0f} tokens/s")
    print(f"ours (packed, turn_mean) / TRL: {r_turn / res['tokens_per_s']:.2f}x  (target >= 1.0x)")


if __name__ == "__main__":
    main()
