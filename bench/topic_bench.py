"""Topic-continuity discriminator: profiles x public sets against adjacent-cosine baselines,
false switches on real chats, the topic stage end to end, adaptation, and the stage's speed.

    python bench/topic_bench.py [--evaldata ../shared/evaldata] [--cache ~/.cache/turnforge-bench/emb]
                                [--skip adapt,stage,speed]

Protocol (every threshold and head is chosen on training data only):
- The training recipe of `make topic-model` (TIAGE train, DialSeg711, CrossWOZ val, MultiWOZ
  val, spliced and real chats of sharegpt_zh, oaast_sft_zh, chitchat) is split 2-fold by
  dialogue; a model trained on one half (with its own inner folds, profiles and heads) scores
  the other half, and the held-out predictions of both halves are pooled per set.
- TIAGE dev is never trained on: the shipped model scores it (and a cosine tuned on TIAGE train).
- Baselines: adjacent-message cosine (use-m3 and MiniLM), its threshold tuned for F1 on the
  same set's rows in the training half (in-domain, the most a cosine can get). F1 of the switch
  class and ROC-AUC per set and profile.
- Real chats (up to 1,000 per file, unmodified, every message a continuation): share of their
  user messages called a switch, each half scored by the model whose training left it out
  (its texts may still occur inside spliced dialogues of the other half).
- End to end: `extract -> topic` with default settings on the same halves with the same
  models: conversations dropped, split, kept whole, and the pseudo share.
- Adaptation: a base trained without TIAGE, `adapt` on 100 TIAGE train dialogues, TIAGE dev.
"""
from __future__ import annotations

import argparse
import json
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
from discriminators.topic_continuity.tools import load_training_data  # noqa: E402
from pipeline.embed import get_embedder  # noqa: E402

PROFILES = ("assistant", "chitchat", "task")
RECIPE = dict(splice_n=1500, negatives_n=1000, cue_rate=0.25)  # as `make topic-model`
SET_NAMES = {"tiage": "TIAGE train (en chit-chat)", "dialseg": "DialSeg711 (en)",
             "crosswoz_val_compact.jsonl": "CrossWOZ val (zh)", "multiwoz21_val_compact.jsonl": "MultiWOZ val (en)",
             "splice:sharegpt_zh_1K_format.jsonl": "spliced sharegpt_zh", "splice:oaast_sft_zh.json": "spliced oaast_sft_zh",
             "splice:chitchat_messages.jsonl": "spliced chitchat (en)"}
REAL = {"sharegpt_zh_1K_format.jsonl": "sharegpt_zh", "oaast_sft_zh.json": "oaast_sft_zh",
        "chitchat_messages.jsonl": "chitchat (en)"}


def quiet(*_a, **_k):
    pass


def recipe_data(ev):
    data = [f"tiage:{ev}/tiage/anno_train.json", f"dialseg:{ev}/dialseg711/en_dataset_reference_2.txt",
            f"woz:{ev}/crosswoz/crosswoz_val_compact.jsonl", f"woz:{ev}/multiwoz21/multiwoz21_val_compact.jsonl"]
    splice = [f"{ev}/sharegpt_zh/sharegpt_zh_1K_format.jsonl", f"{ev}/llamafactory/oaast_sft_zh.json",
              f"{ev}/chitchat/chitchat_messages.jsonl"]
    return data, splice


def rows_of(dialogues, emb):
    """Features, labels, source and cosine to the previous message per labelled message."""
    X, y, dlg = M.featurize_labelled(dialogues, emb)
    src = np.array([d.source for d in dialogues], dtype=object)[dlg]
    return X, y, src


def cos_prev(dialogues, emb):
    X, y, _ = M.featurize_labelled(dialogues, emb)
    return X[:, F.FEATURES.index("cos_prev")], y


def held_out(dialogues, embs, log):
    """Pooled held-out predictions of a 2-fold split by dialogue: y, source, P(switch) and
    decision of each profile, cosine scores and decisions; and the two fold models. Features
    are computed once; MiniLM only embeds the labelled sets (it has nothing to say about the
    real chats, which are continuation negatives, mostly Chinese)."""
    half = M.fold_ids(dialogues, 2, seed=7)
    X, y, dlg = M.featurize_labelled(dialogues, embs["model"])
    src = np.array([d.source for d in dialogues], dtype=object)[dlg]
    h = half[dlg]
    cos = {"use-m3": X[:, F.FEATURES.index("cos_prev")]}
    lab = [d for d in dialogues if d.source in SET_NAMES]
    c = np.full(len(y), np.nan)
    c[np.isin(src, list(SET_NAMES))] = cos_prev(lab, embs["minilm"])[0]
    cos["minilm"] = c
    res = {"y": y, "src": src}
    for p in PROFILES:
        res[p] = (np.zeros(len(y)), np.zeros(len(y), bool))
    for name in cos:
        res[f"cos {name}"] = (-np.nan_to_num(cos[name], nan=1.0), np.zeros(len(y), bool))
    models = []  # models[k] was trained without half k
    for k in (0, 1):
        tr = [d for d, hh in zip(dialogues, half) if hh != k]
        t0 = time.perf_counter()
        m = M.train(tr, embs["model"], log=quiet)
        models.append(m)
        log(f"  fold {k}: trained on {len(tr)} dialogues in {time.perf_counter() - t0:.0f} s "
            f"({m.kind}; heads " + ", ".join(f"{p}={pr['head']}" for p, pr in m.profiles.items()) + ")")
        te = h == k
        for p in PROFILES:
            mp = m.use(p)
            s = mp.p_switch(X[te])
            res[p][0][te], res[p][1][te] = s, s >= mp.threshold
        for name in cos:  # threshold per set, tuned on the set's rows in the training half
            sc, dec = res[f"cos {name}"]
            for st in SET_NAMES:
                a, b = (src == st) & ~te, (src == st) & te
                if y[a].any():
                    dec[b] = sc[b] >= best_threshold(y[a], sc[a])[0]
    return res, models


def fa(sc):
    f1, auc = sc
    return f"{f1:.3f} / {auc:.3f}" if auc is not None else f"{f1:.3f} / -"


def table(res, tiage_dev):
    systems = list(PROFILES) + ["cos use-m3", "cos minilm"]
    print("\n| set (held-out messages, switch rate) | " + " | ".join(
        f"{s} F1 / AUC" for s in systems) + " | best profile - best cosine (F1, AUC) |")
    print("|---|" + "---|" * (len(systems) + 1))
    rows = [(SET_NAMES[s], res["src"] == s, res) for s in SET_NAMES if (res["src"] == s).any()]
    rows.insert(0, ("TIAGE dev (shipped model)", np.ones(len(tiage_dev["y"]), bool), tiage_dev))
    summary = {}
    for name, k, r in rows:
        y = r["y"][k] == 1
        sc = {s: (prf(y, r[s][1][k])["f1"], roc_auc(y, r[s][0][k])) for s in systems}
        best_p = max(PROFILES, key=lambda p: sc[p][0])
        best_c = max(("cos use-m3", "cos minilm"), key=lambda c: sc[c][0])
        auc_c = max(sc["cos use-m3"][1] or 0, sc["cos minilm"][1] or 0)
        d_f1, d_auc = sc[best_p][0] - sc[best_c][0], (sc[best_p][1] or 0) - auc_c
        summary[name] = {"best_profile": best_p, **{s: sc[s] for s in systems}}
        print(f"| {name} ({int(k.sum()):,}, {y.mean():.3f}) | " + " | ".join(
            (f"**{fa(sc[s])}**" if s == best_p else fa(sc[s])) for s in systems)
            + f" | {best_p}: {d_f1:+.3f}, {d_auc:+.3f} |")
    return summary


def real_chats(ev, cap=1000):
    """Up to ``cap`` real chats of each file, unmodified (no cue augmentation), with the half
    of the 2-fold split they fall in (folds hash the dialogue id, as in training)."""
    _, splice = recipe_data(ev)
    out = {}
    for path in splice:
        chats = list(D.read_chats(path))[:cap]
        out[os.path.basename(path)] = (chats, M.fold_ids(chats, 2, seed=7))
    return out


AUDIT = os.path.join(ROOT, "bench", "data", "topic_audit.json")


def false_switches(chats, models, emb):
    """Share of real chats' user messages called a switch, each half by the model trained
    without it (the same chats were continuation negatives in the other half's training).
    Where bench/data/topic_audit.json has hand labels, also the share among the messages that
    really continue (flagged messages audited as switches leave numerator and denominator)."""
    with open(AUDIT, encoding="utf-8") as f:
        audit = json.load(f)
    print("\nReal chats, every message a continuation: share of user messages called a switch (held out)")
    print("| chats (user messages) | " + " | ".join(PROFILES) + " | assistant, audited (flags audited as switches; unaudited flags) |")
    print("|---|" + "---|" * (len(PROFILES) + 1))
    out = {}
    for s, (ds, half) in chats.items():
        flags = {p: [] for p in PROFILES}
        keys = []
        for k in (0, 1):
            part = [D.continuations([d])[0] for d, h in zip(ds, half) if h == k]
            b = F.featurize(part, emb)
            user = b.X[:, F.FEATURES.index("is_user")] > 0
            keys += [f"{part[i].id}#{j}" for i, j in zip(b.dlg[user], b.msg[user])]
            for p in PROFILES:
                mp = models[k].use(p)
                flags[p].append((mp.p_switch(b.X) >= mp.threshold)[user])
        v = {p: float(np.concatenate(flags[p]).mean()) for p in PROFILES}
        fl = np.concatenate(flags["assistant"])
        sw = np.array([k in audit["switch"] for k in keys])
        known = set(audit["switch"]) | set(audit["continues"])
        unaudited = sum(1 for k, f in zip(keys, fl) if f and k not in known)
        aud = ""
        if any(k.startswith(s + ":") for k in known):
            v["assistant_audited"] = float((fl & ~sw).sum() / max((~sw).sum(), 1))
            aud = f"{v['assistant_audited']:.3f} ({int((fl & sw).sum())}; {unaudited})"
        out[REAL[s]] = v
        print(f"| {REAL[s]} ({len(fl):,}) | " + " | ".join(f"{v[p]:.3f}" for p in PROFILES) + f" | {aud} |")
    return out


def end_to_end(chats, models, work, cache):
    """extract -> topic (defaults) on each half of the real chats with the fold model trained
    without it."""
    from pipeline import runner

    print("\nEnd to end, `extract -> topic` with defaults (profile assistant, over_ratio split) on held-out real chats")
    print("| chats | conversations | pseudo share before | kept whole | split (pieces) | dropped | pseudo share after |")
    print("|---|---|---|---|---|---|---|")
    out = {}
    for s, (ds, half) in chats.items():
        agg = {}
        for k in (0, 1):
            part = [d for d, h in zip(ds, half) if h == k]
            mdir = os.path.join(work, f"model{k}")
            if not os.path.exists(mdir):
                models[k].save(mdir)
            src = os.path.join(work, f"{k}-{s}.jsonl")
            with open(src, "w", encoding="utf-8") as f:
                for d in part:
                    f.write(json.dumps({"id": d.id, "messages": [{"role": r, "content": t}
                                                                 for r, t in zip(d.roles, d.texts)]},
                                       ensure_ascii=False) + "\n")
            ex, tp = os.path.join(work, f"ex{k}-{s}"), os.path.join(work, f"tp{k}-{s}")
            runner.run_stage("extract", {}, src, ex, progress=False)
            m = runner.run_stage("topic", {"model": mdir, "cache_dir": cache}, ex, tp, progress=False)
            t = m["topic"]
            for key in ("conversations", "pseudo_multi_turn", "pseudo_kept", "pseudo_kept_unsplittable",
                        "pseudo_split", "pseudo_dropped", "split_pieces"):
                agg[key] = agg.get(key, 0) + t[key]
            agg["out"] = agg.get("out", 0) + m["counts"]["records_out"]
        n = agg["conversations"]
        whole = agg["pseudo_kept"] + agg["pseudo_kept_unsplittable"]
        out[REAL[s]] = agg
        print(f"| {REAL[s]} | {n:,} | {agg['pseudo_multi_turn'] / n:.3f} | {whole} | {agg['pseudo_split']} "
              f"({agg['split_pieces']}) | {agg['pseudo_dropped']} | {whole / agg['out']:.3f} |")
    return out


def adaptation(ev, embs, cache):
    """A base trained without TIAGE; adapt on 100 TIAGE train dialogues; TIAGE dev."""
    from discriminators.topic_continuity import tools

    data, splice = recipe_data(ev)
    base_d = load_training_data(data[1:], splice, seed=0, log=quiet, **RECIPE)
    work = tempfile.mkdtemp(prefix="tf-topic-adapt-")
    try:
        base = M.train(base_d, embs["model"], log=quiet)
        bdir = os.path.join(work, "base")
        base.save(bdir)
        sub = os.path.join(work, "tiage100.json")
        with open(f"{ev}/tiage/anno_train.json", encoding="utf-8") as f:
            raw = json.load(f)
        keep = sorted(raw)[:100]
        with open(sub, "w", encoding="utf-8") as f:
            json.dump({k: raw[k] for k in keep}, f)
        dev = f"{ev}/tiage/anno_dev.json"
        print("\nAdaptation: base trained without TIAGE; `adapt` on 100 TIAGE train dialogues; TIAGE dev")
        print("| model | TIAGE dev F1 | ROC-AUC |")
        print("|---|---|---|")
        rows = {}
        for p in [p for p in PROFILES if p in base.profiles]:
            rows[f"base, {p}"] = tools.evaluate(bdir, dev, "tiage", cache_dir=cache, profile=p)
        for p in [p for p in PROFILES if p in base.profiles]:  # the base has no chitchat rows
            out = os.path.join(work, f"adapted-{p}")
            tools.adapt([f"tiage:{sub}"], out, base=bdir, profile=p, cache_dir=cache, log=quiet)
            rows[f"adapted from {p} (100 dialogues)"] = tools.evaluate(out, dev, "tiage", cache_dir=cache)
        for name, r in rows.items():
            print(f"| {name} | {r['f1']:.3f} | {r['roc_auc']:.3f} |")
        return {k: (v["f1"], v["roc_auc"]) for k, v in rows.items()}
    finally:
        shutil.rmtree(work, ignore_errors=True)


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
            runner.run_stage("topic", {"cache_dir": emb_cache}, ex, os.path.join(work, f"t{k}"), progress=False)
            times.append(time.perf_counter() - t)
        print(f"\ntopic stage on sharegpt_zh ({n_msgs} messages), shipped model: cold {n_msgs / times[0]:,.0f} "
              f"turns/s; embeddings cached {n_msgs / times[1]:,.0f} turns/s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--evaldata", default=os.path.join(ROOT, "..", "shared", "evaldata"))
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/turnforge-bench/emb"))
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: adapt, stage, speed")
    ap.add_argument("--json", help="also write the figures here")
    a = ap.parse_args()
    ev, skip = a.evaldata, set(a.skip.split(","))
    embs = {"use-m3": get_embedder("use-m3", cache_dir=a.cache), "minilm": get_embedder("minilm", cache_dir=a.cache)}
    embs["model"] = get_embedder(M.TopicModel.load().embedder, cache_dir=a.cache)  # the shipped model's
    t0 = time.perf_counter()
    data, splice = recipe_data(ev)
    dialogues = load_training_data(data, splice, seed=0, log=quiet, **RECIPE)
    print(f"recipe of `make topic-model`: {len(dialogues)} dialogues; 2-fold by dialogue")
    res, models = held_out(dialogues, embs, print)

    shipped = M.TopicModel.load()
    dev = D.read(os.path.join(ev, "tiage", "anno_dev.json"), "tiage")
    Xd, yd, _ = rows_of(dev, embs["model"])
    tdev = {"y": yd}
    for p in PROFILES:
        mp = shipped.use(p)
        s = mp.p_switch(Xd)
        tdev[p] = (s, s >= mp.threshold)
    tr = D.read(os.path.join(ev, "tiage", "anno_train.json"), "tiage")
    for name, emb in embs.items():
        ctr, ytr = cos_prev(tr, emb)
        cd, _ = cos_prev(dev, emb)
        tdev[f"cos {name}"] = (-cd, -cd >= best_threshold(ytr, -ctr)[0])
    figures = {"table": table(res, tdev)}
    chats = real_chats(ev)
    figures["false_switch"] = false_switches(chats, models, embs["model"])
    work = tempfile.mkdtemp(prefix="tf-topic-e2e-")
    try:
        if "stage" not in skip:
            figures["end_to_end"] = end_to_end(chats, models, work, a.cache)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if "adapt" not in skip:
        figures["adapt"] = adaptation(ev, embs, a.cache)
    if "speed" not in skip:
        stage_speed(ev, a.cache)
    print(f"\n(bench wall time {time.perf_counter() - t0:.0f} s)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(figures, f, indent=1, default=float)


if __name__ == "__main__":
    main()
