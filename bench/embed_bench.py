"""Embedder benchmark: paraphrase quality, [UNK] share, throughput, and the ST bucketing speed-up.

Reads ../shared/evaldata (not needed by the tests):
- paraphrase/lcqmc_zh/dev.txt        LCQMC dev, `s1 \\t s2 \\t label` (Chinese)         -> ROC-AUC
- paraphrase/bq_zh/dev.csv           BQ dev, CSV with BOM + header (Chinese)            -> ROC-AUC
- paraphrase/msrp_en/msr_paraphrase_train.txt  MSRP train, header, CRLF, 5 tab columns;
  strings containing quotes are CSV-quoted ("... "" ... ""  ...") and get unquoted   -> ROC-AUC
- paraphrase/stsb/stsbenchmark_en.tsv  STS-B en, all splits, CRLF; score col 5, strings cols 6-7
  (quotes there are literal, not CSV quoting)                                          -> Spearman
- paraphrase/stsb/STS-B_zh.valid.data  STS-B zh valid, `s1 \\t s2 \\t score` (0-5)        -> Spearman
- sharegpt_zh/*.jsonl + chitchat/chitchat_messages.jsonl: message texts for the throughput runs
  (half Chinese -- ShareGPT messages that contain CJK -- half English chitchat, shuffled together).

For every model: cosine similarity of each pair's L2-normalised vectors; ROC-AUC against the
paraphrase label (sklearn) or Spearman against the STS score (scipy). Files with more than
--max-pairs pairs are sampled with a fixed seed. For models with a tokenizer (sentence-
transformers backends) the share of [UNK] tokens on the LCQMC sentences is printed.
Throughput is `emb.encode(texts)` on --n-turns mixed turns without a cache, after a warm-up.
For sentence-transformers backends the token-budget bucketing (STBackend._encode) is timed
against `emb._m.encode(texts, batch_size=B)` (sentence-transformers' own character-length sort)
and the two results are compared.

    python bench/embed_bench.py [--evaldata ../shared/evaldata] [--models use-m3,minilm] [--n-turns 3000]
"""
from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import random
import re
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


# ---------------------------------------------------------------- data loading

def _unquote_csv(s: str) -> str:
    if len(s) >= 2 and s[0] == '"' and s[-1] == '"':
        return s[1:-1].replace('""', '"')
    return s


def load_lcqmc(p):
    out = []
    with open(p, encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\r\n").split("\t")
            if len(parts) < 3:
                continue
            out.append((parts[0], parts[1], float(parts[-1])))
    return out


def load_bq(p):
    with open(p, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    start = 1 if rows and rows[0][-1].strip().lower() == "label" else 0
    return [(r[0], r[1], float(r[-1])) for r in rows[start:] if len(r) >= 3]


def load_msrp(p):
    """Quality is the first field, the two strings the last two (robust to stray tabs in between)."""
    out = []
    with open(p, encoding="utf-8-sig") as f:
        next(f)  # header
        for line in f:
            parts = line.rstrip("\r\n").split("\t")
            if len(parts) < 5 or parts[0] not in ("0", "1"):
                continue
            out.append((_unquote_csv(parts[-2]), _unquote_csv(parts[-1]), float(parts[0])))
    return out


def load_stsb_en(p):
    out = []
    with open(p, encoding="utf-8-sig") as f:
        header = next(f).rstrip("\r\n").split("\t")
        si = header.index("score") if "score" in header else 5
        for line in f:
            parts = line.rstrip("\r\n").split("\t")
            if len(parts) < 7:
                continue
            out.append((parts[si + 1], parts[si + 2], float(parts[si])))
    return out


def load_stsb_zh(p):
    return load_lcqmc(p)


DATASETS = [  # name, lang, relative path, loader, metric
    ("LCQMC-dev", "zh", "paraphrase/lcqmc_zh/dev.txt", load_lcqmc, "auc"),
    ("BQ-dev", "zh", "paraphrase/bq_zh/dev.csv", load_bq, "auc"),
    ("MSRP-train", "en", "paraphrase/msrp_en/msr_paraphrase_train.txt", load_msrp, "auc"),
    ("STSB-en", "en", "paraphrase/stsb/stsbenchmark_en.tsv", load_stsb_en, "spearman"),
    ("STSB-zh-valid", "zh", "paraphrase/stsb/STS-B_zh.valid.data", load_stsb_zh, "spearman"),
]


def load_turns(evaldata: str, n: int, seed: int = 0) -> tuple[list[str], int, int]:
    zh, en = [], []
    for p in sorted(glob.glob(os.path.join(evaldata, "sharegpt_zh", "*.jsonl"))):
        with open(p, encoding="utf-8") as f:
            for line in f:
                for m in json.loads(line).get("conversations", []):
                    v = (m.get("value") or "").strip()
                    if v and CJK.search(v):
                        zh.append(v)
    with open(os.path.join(evaldata, "chitchat", "chitchat_messages.jsonl"), encoding="utf-8") as f:
        for line in f:
            for m in json.loads(line).get("messages", []):
                v = (m.get("content") or "").strip()
                if v and not CJK.search(v):
                    en.append(v)
    rng = random.Random(seed)
    nz = n // 2
    ne = n - nz
    texts = rng.sample(zh, min(nz, len(zh))) + rng.sample(en, min(ne, len(en)))
    rng.shuffle(texts)
    return texts, len(zh), len(en)


# ---------------------------------------------------------------- measurements

def pair_scores(vec: dict[str, np.ndarray], pairs) -> tuple[np.ndarray, np.ndarray]:
    a = np.stack([vec[p[0]] for p in pairs])
    b = np.stack([vec[p[1]] for p in pairs])
    return np.einsum("ij,ij->i", a, b), np.array([p[2] for p in pairs])


def unk_share(tok, texts) -> tuple[float, float, float]:
    """Share of [UNK] among all (non-special) tokens, share of sentences with any [UNK], and
    share of Chinese characters the tokenizer maps to [UNK] (per character)."""
    ids = tok(texts, add_special_tokens=False)["input_ids"]
    unk = tok.unk_token_id
    n_tok = sum(len(x) for x in ids)
    n_unk = sum(sum(1 for t in x if t == unk) for x in ids)
    any_unk = sum(1 for x in ids if unk in x)
    chars = sorted({c for t in texts for c in t if CJK.match(c)})
    cids = tok(chars, add_special_tokens=False)["input_ids"]
    char_unk = sum(1 for x in cids if unk in x)
    return n_unk / max(n_tok, 1), any_unk / max(len(texts), 1), char_unk / max(len(chars), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--evaldata", default=os.path.join(ROOT, "..", "shared", "evaldata"))
    ap.add_argument("--models", default="use-m3,minilm")
    ap.add_argument("--n-turns", type=int, default=3000,
                    help="mixed turns for the throughput runs (3,000 keeps the default run near 5 min on 2 cores)")
    ap.add_argument("--max-pairs", type=int, default=20_000)
    ap.add_argument("--st-batch-size", type=int, default=64, help="B for sentence-transformers' own encode")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if not os.path.isdir(a.evaldata):
        raise SystemExit(f"evaldata not found at {a.evaldata}")

    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    from pipeline.embed import STBackend, get_embedder

    t_start = time.perf_counter()
    data = {}
    for name, lang, rel, loader, metric in DATASETS:
        pairs = loader(os.path.join(a.evaldata, rel))
        total = len(pairs)
        if total > a.max_pairs:
            pairs = random.Random(a.seed).sample(pairs, a.max_pairs)
        labels = np.array([p[2] for p in pairs])
        lab = (f"pos={int(labels.sum())} neg={int((labels == 0).sum())}" if metric == "auc"
               else f"score {labels.min():g}-{labels.max():g}")
        print(f"data {name:14s} {lang} {len(pairs):6d} pairs" + (f" (sampled from {total}, seed {a.seed})"
              if total > len(pairs) else "") + f"  {lab}")
        data[name] = (lang, metric, pairs)
    sents = list(dict.fromkeys(s for _, _, pairs in data.values() for p in pairs for s in p[:2]))
    print(f"unique sentences to embed: {len(sents)}")
    turns, n_zh_pool, n_en_pool = load_turns(a.evaldata, a.n_turns, a.seed)
    n_cjk = sum(1 for t in turns if CJK.search(t))
    print(f"turns: {len(turns)} ({n_cjk} zh from {n_zh_pool} ShareGPT messages with CJK, "
          f"{len(turns) - n_cjk} en from {n_en_pool} chitchat messages), "
          f"mean {np.mean([len(t) for t in turns]):.0f} chars, seed {a.seed}")

    results = {}
    for spec in [m.strip() for m in a.models.split(",") if m.strip()]:
        r = results.setdefault(spec, {})
        print(f"\n== {spec}")
        t0 = time.perf_counter()
        emb = get_embedder(spec)  # no cache_dir: nothing cached
        emb.encode(["warm-up", "预热"])
        print(f"load+warm-up {time.perf_counter() - t0:.1f}s, dim {emb.dim}")

        t0 = time.perf_counter()
        V = emb.encode(sents)
        dt = time.perf_counter() - t0
        print(f"embedded {len(sents)} sentences in {dt:.1f}s ({len(sents) / dt:.0f}/s)")
        vec = dict(zip(sents, V))
        for name, (lang, metric, pairs) in data.items():
            cos, y = pair_scores(vec, pairs)
            if metric == "auc":
                r[name] = float(roc_auc_score(y, cos))
            else:
                r[name] = float(spearmanr(cos, y).statistic)
            print(f"  {name:14s} {'ROC-AUC' if metric == 'auc' else 'Spearman'} {r[name]:.4f}")

        tok = getattr(getattr(emb, "_m", None), "tokenizer", None)
        if tok is not None and tok.unk_token_id is not None:
            lc = list(dict.fromkeys(s for p in data["LCQMC-dev"][2] for s in p[:2]))
            u_tok, u_sent, u_char = unk_share(tok, lc)
            r["unk"] = u_tok
            print(f"  [UNK] on LCQMC ({len(lc)} unique sentences): {u_tok:.2%} of tokens; "
                  f"{u_sent:.2%} of sentences have one; {u_char:.2%} of distinct CJK chars map to [UNK]")

        # throughput, mixed zh/en turns, no cache
        emb.encode(turns[:64])
        t0, c0 = time.perf_counter(), time.process_time()
        ours = emb.encode(turns)
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        r["tps"] = len(turns) / dt
        print(f"  throughput emb.encode: {r['tps']:.1f} turns/s ({dt:.1f}s wall, {cpu:.1f}s CPU for {len(turns)})")

        if isinstance(emb, STBackend):
            lens = emb.token_lengths(turns)
            bs = emb.batches(lens)
            B = a.st_batch_size
            # padded tokens: ours vs ST's own order (sorted by -len(text), chunks of B)
            pad_ours = sum(len(b) * int(lens[b].max()) for b in bs)
            st_order = np.argsort([-len(t) for t in turns], kind="stable")
            st_batches = [st_order[i:i + B] for i in range(0, len(turns), B)]
            pad_st = sum(len(c) * int(lens[c].max()) for c in st_batches)
            # attention work grows with the square of the padded length
            att_ours = sum(len(b) * int(lens[b].max()) ** 2 for b in bs)
            att_st = sum(len(c) * int(lens[c].max()) ** 2 for c in st_batches)
            t0, c0 = time.perf_counter(), time.process_time()
            theirs = emb._m.encode(turns, batch_size=B, convert_to_numpy=True, show_progress_bar=False)
            dt_st, cpu_st = time.perf_counter() - t0, time.process_time() - c0
            theirs = theirs / np.maximum(np.linalg.norm(theirs, axis=1, keepdims=True), 1e-12)
            diff = float(np.abs(ours - theirs).max())
            r["speedup"] = dt_st / dt
            r["maxdiff"] = diff
            print(f"  sentence-transformers encode(batch_size={B}): {len(turns) / dt_st:.1f} turns/s "
                  f"({dt_st:.1f}s wall, {cpu_st:.1f}s CPU)")
            print(f"  token-budget bucketing (batch_tokens={emb.batch_tokens}, {len(bs)} batches, "
                  f"sizes {min(map(len, bs))}-{max(map(len, bs))}): speed-up x{r['speedup']:.2f} wall, "
                  f"x{cpu_st / cpu:.2f} CPU time; "
                  f"padded tokens {pad_ours} vs {pad_st} (real {int(lens.sum())}), "
                  f"sum(batch x len^2) {att_ours / att_st:.2f} of ST's; "
                  f"max |diff| of normalised vectors {diff:.2e} {'OK' if diff < 1e-4 else 'MISMATCH (> 1e-4)'}")
        del emb

    # --------------------------------------------------------------- summary
    auc_names = [n for n, (_, m, _) in data.items() if m == "auc"]
    sp_names = [n for n, (_, m, _) in data.items() if m == "spearman"]
    print("\n== summary (ROC-AUC for paraphrase sets, Spearman for STS-B; turns/s on "
          f"{len(turns)} mixed turns)")
    cols = auc_names + ["meanAUC", "AUCzh", "AUCen"] + sp_names + ["UNK-zh", "turns/s", "bucket-x"]
    w = max(10, max(len(c) for c in cols) + 1)
    print(f"{'model':8s}" + "".join(f"{c:>{w}s}" for c in cols))
    for spec, r in results.items():
        r["meanAUC"] = float(np.mean([r[n] for n in auc_names]))
        r["AUCzh"] = float(np.mean([r[n] for n in auc_names if data[n][0] == "zh"]))
        r["AUCen"] = float(np.mean([r[n] for n in auc_names if data[n][0] == "en"]))
        cells = [f"{r[n]:.4f}" for n in auc_names + ["meanAUC", "AUCzh", "AUCen"] + sp_names]
        cells.append(f"{r['unk']:.2%}" if "unk" in r else "-")
        cells.append(f"{r['tps']:.1f}")
        cells.append(f"{r['speedup']:.2f}" if "speedup" in r else "-")
        print(f"{spec:8s}" + "".join(f"{c:>{w}s}" for c in cells))
    best = max(results, key=lambda s: results[s]["meanAUC"])
    print(f"mean over {', '.join(auc_names)}; AUCzh/AUCen = per-language means")
    print(f"chosen default by mean paraphrase ROC-AUC over zh+en: {best}")
    print(f"total {time.perf_counter() - t_start:.0f}s")


if __name__ == "__main__":
    main()
