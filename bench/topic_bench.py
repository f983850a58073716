"""Topic-continuity discriminator against adjacent-cosine baselines, and the
topic stage's speed.

    python bench/topic_bench.py [--evaldata ../shared/evaldata] [--cache ~/.cache/turnforge-bench]

Sets and protocol (every threshold is chosen on training data only):
- TIAGE: train on TIAGE train (300 dialogues), test on TIAGE dev (100).
- CrossWOZ val (zh) and MultiWOZ val (en), labels `derived_shift`: 2-fold cross-validation by
  dialogue within each set; train on one half, test on the other, pool the test predictions.
Systems: our model (features + model chosen out-of-fold, as `turnforge discriminator train`);
the same model without embedding features; adjacent-message cosine with a threshold tuned on
the training split, for each embedder (use-m3, minilm); base-rate random (switch with the
training switch rate). F1 of the switch class and ROC-AUC.
Stage: turns/s of `topic` over ../shared/evaldata sharegpt_zh, embeddings cached (second run).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from discriminators.topic_continuity import data as D  # noqa: E402
from discriminators.topic_continuity import features as F  # noqa: E402
from discriminators.topic_continuity import model as M  # noqa: E402
from discriminators.topic_continuity.metrics import best_threshold, prf, roc_auc  # noqa: E402
from pipeline.embed import get_embedder  # noqa: E402

NO_EMB = [i for i, f in enumerate(F.FEATURES) if not f.startswith(("cos_", "max_cos"))]


def xy(dialogues, emb):
    X, y, _ = M.featurize_labelled(dialogues, emb)
    return X, y


def cos_prev(dialogues, emb):
    X, y = xy(dialogues, emb)
    return X[:, F.FEATURES.index("cos_prev")], y


def evaluate_split(train, test, embs, seed=0):
    """{system: (F1, AUC, y_test, score)} for one train/test split."""
    out = {}
    m = M.train(train, embs["use-m3"], seed=seed, log=lambda *_: None)
    Xte, yte = xy(test, embs["use-m3"])
    p = m.p_switch(Xte)
    out["ours"] = (yte, p, p >= m.threshold)
    # ablation: no embedding features, same recipe (kind fixed to the chosen one)
    Xtr, ytr = xy(train, embs["use-m3"])
    fold = M.fold_ids(train, 5, seed)[M.featurize_labelled(train, embs["use-m3"])[2]]
    oof = np.zeros(len(ytr))
    for k in range(5):
        te = fold == k
        oof[te] = M._fit(m.kind, Xtr[~te][:, NO_EMB], ytr[~te], seed).logit(Xtr[te][:, NO_EMB])
    thr, _ = best_threshold(ytr, oof, tol=M.THRESHOLD_TOL)
    z = M._fit(m.kind, Xtr[:, NO_EMB], ytr, seed).logit(Xte[:, NO_EMB])
    out["ours, no embeddings"] = (yte, z, z >= thr)
    for name, emb in embs.items():
        ctr, ytr_ = cos_prev(train, emb)
        cte, yte_ = cos_prev(test, emb)
        thr, _ = best_threshold(ytr_, -ctr)
        out[f"cosine {name}"] = (yte_, -cte, -cte >= thr)
    rate = float(ytr.mean())
    r = np.random.default_rng(seed).random(len(yte))
    out["random (base rate)"] = (yte, r, r < rate)
    return out, m


def pooled(results):
    sysnames = results[0].keys()
    rows = {}
    for s in sysnames:
        y = np.concatenate([r[s][0] for r in results])
        score = np.concatenate([r[s][1] for r in results])
        dec = np.concatenate([r[s][2] for r in results])
        sc = prf(y == 1, dec)
        rows[s] = (sc["f1"], roc_auc(y == 1, score), sc["precision"], sc["recall"])
    return rows


def table(name, rows, n_test, rate):
    print(f"\n{name}  ({n_test} test messages, switch rate {rate:.3f})")
    print(f"   {'system':<24} {'F1':>6} {'ROC-AUC':>8} {'P':>6} {'R':>6}")
    for s, (f1, auc, p, r) in rows.items():
        print(f"   {s:<24} {f1:6.3f} {auc if auc is not None else float('nan'):8.3f} {p:6.3f} {r:6.3f}")
    base = max(v[0] for s, v in rows.items() if s.startswith(("cosine", "random")))
    ours = rows["ours"][0]
    print(f"   ours - best baseline: {ours - base:+.3f} F1 (target >= +0.05: {'met' if ours - base >= 0.05 else 'MISSED'})")


def two_fold(dialogues, embs):
    half = M.fold_ids(dialogues, 2, seed=7)
    res = []
    for k in (0, 1):
        tr = [d for d, h in zip(dialogues, half) if h != k]
        te = [d for d, h in zip(dialogues, half) if h == k]
        r, _ = evaluate_split(tr, te, embs)
        res.append(r)
    y = np.concatenate([r["ours"][0] for r in res])
    return pooled(res), len(y), float((y == 1).mean())


def stage_speed(ev, cache):
    from pipeline import runner, shards
    work = tempfile.mkdtemp(prefix="tf-topic-bench-")
    try:
        src = os.path.join(ev, "sharegpt_zh", "sharegpt_zh_1K_format.jsonl")
        ex = os.path.join(work, "ex")
        runner.run_stage("extract", {}, src, ex, progress=False)
        n_msgs = sum(len(r["messages"]) for r in shards.iter_records(ex))
        emb_cache = os.path.join(work, "emb")
        times = []
        for k in range(2):
            t = time.perf_counter()
            m = runner.run_stage("topic", {"cache_dir": emb_cache}, ex, os.path.join(work, f"t{k}"), progress=False)
            times.append(time.perf_counter() - t)
        st = m["topic"]
        print(f"\ntopic stage on sharegpt_zh ({st['conversations']} conversations, {n_msgs} messages), shipped model:")
        print(f"   cold (embeddings computed): {n_msgs / times[0]:,.0f} turns/s;  cached: {n_msgs / times[1]:,.0f} turns/s")
        print(f"   switch rate (user messages) {st['switch_rate']:.3f}; pseudo share before {st['pseudo_share_before']:.3f}, "
              f"after {st['pseudo_share_after']:.3f} (target {st['pseudo_ratio_target']})")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--evaldata", default=os.path.join(ROOT, "..", "shared", "evaldata"))
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/turnforge-bench/emb"))
    a = ap.parse_args()
    ev = a.evaldata
    embs = {"use-m3": get_embedder("use-m3", cache_dir=a.cache), "minilm": get_embedder("minilm", cache_dir=a.cache)}
    t0 = time.perf_counter()

    tr = D.read(os.path.join(ev, "tiage", "anno_train.json"), "tiage")
    dv = D.read(os.path.join(ev, "tiage", "anno_dev.json"), "tiage")
    r, m = evaluate_split(tr, dv, embs)
    y = r["ours"][0]
    print(f"our model on TIAGE train: {m.kind}, out-of-fold F1 {m.info['oof_f1']:.3f}, threshold {m.threshold:.3f}")
    table("TIAGE dev (trained on TIAGE train)", pooled([r]), len(y), float((y == 1).mean()))

    for name, fn in (("CrossWOZ val (zh), derived_shift, 2-fold by dialogue", "crosswoz/crosswoz_val_compact.jsonl"),
                     ("MultiWOZ val (en), derived_shift, 2-fold by dialogue", "multiwoz21/multiwoz21_val_compact.jsonl")):
        ds = D.read(os.path.join(ev, fn), "woz")
        rows, n, rate = two_fold(ds, embs)
        table(name, rows, n, rate)

    stage_speed(ev, a.cache)
    print(f"\n(bench wall time {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
