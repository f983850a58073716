"""Dedup quality and speed on real conversations with planted near-duplicates.

Corpus (../shared/evaldata): chitchat, sharegpt_zh (+ medical), oaast_sft_zh, lima,
alpaca_zh_demo, crosswoz, multiwoz21, mt_bench, tiage; conversations longer than 8 exchanges
are cut into windows of 4 exchanges (distinct real segments), giving >= 20,000 conversations.
10% of them get a planted near-duplicate made by a known edit, turn order kept:
  - token edits (en words / zh characters) of 2-10%: substitution, deletion, insertion;
  - the last exchange dropped (multi-turn only; the prefix rule's case);
  - punctuation / whitespace / full-width / case changes.
Real chats already hold genuine duplicates, so a removal that is not a planted pair counts as
false only when its true shingle Jaccard to the record kept is below 0.5.

Prints: near-dup precision and recall on the planted pairs (exact + near methods); precision of
the semantic stage (a semantic removal is right when it is a planted pair or has true Jaccard
>= 0.5 with what was kept; multiwoz/crosswoz bookings that merely share a domain count as
wrong), with examples; MinHash signature throughput against datasketch's per-shingle
`MinHash.update` loop and `MinHash.update_batch` on the same shingles and num_perm; the
embedder's paraphrase ROC-AUC (LCQMC dev, MSRP train); conversations/s of each method; peak RSS.

    python bench/dedup_bench.py [--evaldata ../shared/evaldata] [--threshold 0.7] [--eps 0.04]
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import random
import resource
import sys
import tempfile
import time
import unicodedata

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from pipeline import runner, shards  # noqa: E402
from pipeline.dedup.minhash import MinHasher
from pipeline.shingles import shingles  # noqa: E402


def load_corpus(ev: str) -> list[dict]:
    convs = []

    def add(src, msgs):
        msgs = [m for m in msgs if isinstance(m.get("content"), str) and m["content"].strip()]
        if sum(m["role"] == "user" for m in msgs) == 0:
            return
        # windows of 4 exchanges for long chats: distinct real segments
        users = [i for i, m in enumerate(msgs) if m["role"] == "user"]
        if len(users) > 8:
            for w in range(0, len(users), 4):
                a = users[w]
                b = users[w + 4] if w + 4 < len(users) else len(msgs)
                convs.append({"source": src, "messages": msgs[a:b]})
        else:
            convs.append({"source": src, "messages": msgs})

    role = {"human": "user", "gpt": "assistant", "user": "user", "assistant": "assistant", "system": "system"}
    for line in open(os.path.join(ev, "chitchat", "chitchat_messages.jsonl"), encoding="utf-8"):
        add("chitchat", json.loads(line)["messages"])
    for p in sorted(glob.glob(os.path.join(ev, "sharegpt_zh", "*.jsonl"))):
        for line in open(p, encoding="utf-8"):
            add("sharegpt_zh", [{"role": role.get(m["from"], "user"), "content": m["value"]}
                                for m in json.loads(line)["conversations"]])
    for name in ("oaast_sft_zh", "lima", "alpaca_zh_demo"):
        for r in json.load(open(os.path.join(ev, "llamafactory", f"{name}.json"), encoding="utf-8")):
            if "conversations" in r:
                add(name, [{"role": role.get(m["from"], "user"), "content": m["value"]} for m in r["conversations"]])
                continue
            msgs = []
            for q, a in r.get("history") or []:
                msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
            q = r["instruction"] + ("\n" + r["input"] if r.get("input") else "")
            add(name, msgs + [{"role": "user", "content": q}, {"role": "assistant", "content": r["output"]}])
    for name in ("crosswoz", "multiwoz21"):
        for p in glob.glob(os.path.join(ev, name, "*.jsonl")):
            for line in open(p, encoding="utf-8"):
                d = json.loads(line)
                turns = d.get("turns") or d.get("messages") or d.get("dialogue") or []
                msgs = []
                for i, t in enumerate(turns):
                    text = t.get("utterance") or t.get("content") or t.get("text") or ""
                    spk = str(t.get("speaker") or t.get("role") or ("usr" if i % 2 == 0 else "sys")).lower()
                    msgs.append({"role": "user" if spk in ("usr", "user") else "assistant", "content": text})
                add(name, msgs)
    for line in open(os.path.join(ev, "mt_bench", "mt_bench_question.jsonl"), encoding="utf-8"):
        d = json.loads(line)
        add("mt_bench", [{"role": "user", "content": d["turns"][0]}, {"role": "assistant", "content": "(no reference)"}])
    for p in sorted(glob.glob(os.path.join(ev, "tiage", "*"))):
        if os.path.isdir(p):
            continue
        try:
            data = json.load(open(p, encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        dialogs = data if isinstance(data, list) else list(data.values())
        for dlg in dialogs:
            if isinstance(dlg, list) and dlg and isinstance(dlg[0], list):
                add("tiage", [{"role": "user" if i % 2 == 0 else "assistant", "content": u[0]} for i, u in enumerate(dlg)])
    return convs


PUNCT_SWAP = {",": "，", ".": "。", "?": "？", "!": "！", ":": "：", "，": ",", "。": ".", "？": "?", "！": "!"}


def is_zh(s: str) -> bool:
    return sum("\u4e00" <= c <= "\u9fff" for c in s) > len(s) * 0.2


def edit_tokens(text: str, rate: float, rng: random.Random) -> str:
    if is_zh(text):
        toks = list(text)
        pool = "的一是在不了有和人这中大为上个我以要他时来用们生到作地于出就分对成会可主发年动"
        joiner = ""
    else:
        toks = text.split(" ")
        pool = ["the", "a", "very", "really", "just", "also", "then", "so", "and", "maybe"]
        joiner = " "
    k = max(1, round(rate * len(toks)))
    for _ in range(k):
        if not toks:
            break
        i = rng.randrange(len(toks))
        op = rng.random()
        if op < 0.4:
            toks[i] = rng.choice(pool)
        elif op < 0.7:
            del toks[i]
        else:
            toks.insert(i, rng.choice(pool))
    return joiner.join(toks)


def plant(conv: dict, rng: random.Random) -> tuple[dict, str]:
    msgs = [dict(m) for m in conv["messages"]]
    kind = rng.choice(["tokens", "tokens", "last_turn", "punct"])
    n_users = sum(m["role"] == "user" for m in msgs)
    if kind == "last_turn" and n_users < 2:
        kind = "tokens"
    if kind == "tokens":
        rate = rng.uniform(0.02, 0.10)
        for m in msgs:
            m["content"] = edit_tokens(m["content"], rate, rng)
    elif kind == "last_turn":
        last_user = max(i for i, m in enumerate(msgs) if m["role"] == "user")
        msgs = msgs[:last_user]
    else:
        for m in msgs:
            s = "".join(PUNCT_SWAP.get(c, c) if rng.random() < 0.5 else c for c in m["content"])
            s = s.replace(" ", "  ") if rng.random() < 0.5 else s
            s = unicodedata.normalize("NFKC", s).upper() if rng.random() < 0.3 else s
            if rng.random() < 0.3:  # full-width Latin
                s = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in s)
            m["content"] = s
    return {"source": conv["source"], "messages": msgs}, kind


def true_jaccard(a: dict, b: dict, lang_a: str, lang_b: str) -> float:
    sa = set(shingles("\n".join(m["content"] for m in a["messages"]), lang_a))
    sb = set(shingles("\n".join(m["content"] for m in b["messages"]), lang_b))
    return len(sa & sb) / max(len(sa | sb), 1)


def _first_user(rec: dict) -> str:
    m = next((m["content"] for m in rec["messages"] if m["role"] == "user"), "")
    return "".join(ch for ch in unicodedata.normalize("NFKC", m).casefold() if ch.isalnum())


def minhash_speed(records: list[dict], num_perm: int) -> dict:
    from datasketch import MinHash

    texts = ["\n".join(m["content"] for m in r["messages"]) for r in records]
    langs = [r["lang"] for r in records]
    mh = MinHasher(num_perm, 1)
    mh.signatures(texts[:8], langs[:8])  # warm the code-point table
    t = time.perf_counter()
    ours = mh.signatures(texts, langs)
    t_ours = time.perf_counter() - t
    sh = [[s.encode() for s in shingles(x, lg)] for x, lg in zip(texts, langs)]
    from pipeline.shingles import shingle_hash32

    t = time.perf_counter()
    for s in sh:
        m = MinHash(num_perm, 1)
        for x in s:
            m.update(x)
    t_loop = time.perf_counter() - t
    t = time.perf_counter()
    for s in sh:
        m = MinHash(num_perm, 1)
        m.update_batch(s)
    t_batch = time.perf_counter() - t
    # identity check on a sample, with our shingle hash
    for i in range(0, len(sh), max(1, len(sh) // 50)):
        m = MinHash(num_perm, 1, hashfunc=shingle_hash32)
        m.update_batch(sh[i])
        assert np.array_equal(m.hashvalues, ours[i])
    return {"n": len(texts), "shingles": sum(map(len, sh)), "ours": len(texts) / t_ours,
            "loop": len(texts) / t_loop, "batch": len(texts) / t_batch}


def paraphrase_auc(ev: str, emb_name: str, n: int = 3000) -> dict:
    from sklearn.metrics import roc_auc_score

    from pipeline.embed import get_embedder

    rng = random.Random(0)
    out = {}
    lc = [l.rstrip("\n").split("\t") for l in open(os.path.join(ev, "paraphrase", "lcqmc_zh", "dev.txt"), encoding="utf-8")]
    lc = [(a, b, int(y)) for a, b, y in (x[:3] for x in lc if len(x) >= 3) if y.strip() in ("0", "1")]
    ms = []
    for i, l in enumerate(open(os.path.join(ev, "paraphrase", "msrp_en", "msr_paraphrase_train.txt"), encoding="utf-8-sig")):
        f = l.rstrip("\n").split("\t")
        if i == 0 or len(f) < 5 or f[0] not in ("0", "1"):
            continue
        ms.append((f[-2], f[-1], int(f[0])))
    emb = get_embedder(emb_name)
    for name, pairs in (("lcqmc_dev", lc), ("msrp_train", ms)):
        pairs = rng.sample(pairs, min(n, len(pairs)))
        a = emb.encode([p[0] for p in pairs])
        b = emb.encode([p[1] for p in pairs])
        out[name] = roc_auc_score([p[2] for p in pairs], (a * b).sum(1))
        out[name + "_n"] = len(pairs)
    return out


def _cluster_kept(i: str, rej: list[dict], recs: dict) -> list[str]:
    """Kept records of the clusters that records near `i` were dropped into (estimated by
    shingle Jaccard >= 0.3 to `i` among the dropped), to show how far `i` is from them."""
    lang = recs[i]["lang"]
    near = [r for r in rej if r["reason"] == "near_dup" and r["record_id"] in recs
            and true_jaccard(recs[i], recs[r["record_id"]], lang, recs[r["record_id"]]["lang"]) >= 0.3]
    return [r["kept_id"] for r in near if r["kept_id"] in recs][:3]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--evaldata", default=os.path.join(ROOT, "..", "shared", "evaldata"))
    ap.add_argument("--threshold", type=float, default=None, help="default: the stage's")
    ap.add_argument("--eps", type=float, default=0.04)
    ap.add_argument("--num-perm", type=int, default=128)
    ap.add_argument("--plant", type=float, default=0.10)
    ap.add_argument("--n-char", type=int, default=None, help="default: the stage's")
    ap.add_argument("--n-word", type=int, default=None)
    ap.add_argument("--skip-semantic", action="store_true")
    ap.add_argument("--work", default=None)
    a = ap.parse_args()
    shingle_kw = {k: v for k, v in (("n_char", a.n_char), ("n_word", a.n_word), ("threshold", a.threshold))
                  if v is not None}
    rng = random.Random(0)
    work = a.work or tempfile.mkdtemp(prefix="tf-dedup-bench-")
    os.makedirs(work, exist_ok=True)
    base = load_corpus(a.evaldata)
    planted, truth = [], {}
    for i in rng.sample(range(len(base)), int(a.plant * len(base))):
        d, kind = plant(base[i], rng)
        truth[f"dup{len(planted)}"] = (f"c{i}", kind)
        planted.append(d)
    rows = [{"id": f"c{i}", **c} for i, c in enumerate(base)] + [{"id": f"dup{j}", **d} for j, d in enumerate(planted)]
    rng.shuffle(rows)
    src = os.path.join(work, "corpus.jsonl")
    with open(src, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps({"id": r["id"], "messages": r["messages"], "source": r["source"]}, ensure_ascii=False) + "\n")
    ext = os.path.join(work, "extract")
    if not shards.is_complete(ext):
        runner.run_stage("extract", {"inputs": [{"path": src, "source": "bench"}], "tail_turns": 0}, None, ext,
                     progress=False)
    recs = {r["id"]: r for r in shards.iter_records(ext)}
    print(f"corpus: {len(base)} real conversations + {len(planted)} planted near-duplicates "
          f"({sum(1 for v in truth.values() if v[1] == 'tokens')} token edits, "
          f"{sum(1 for v in truth.values() if v[1] == 'last_turn')} dropped last turn, "
          f"{sum(1 for v in truth.values() if v[1] == 'punct')} punctuation/width/case); "
          f"{len(recs)} after extract")

    def run(methods, name, **kw):
        out = os.path.join(work, name)
        t = time.perf_counter()
        m = runner.run_stage("dedup", {"methods": methods, "eps": a.eps,
                                       "num_perm": a.num_perm, **shingle_kw, **kw}, ext, out, progress=False)
        dt = time.perf_counter() - t
        rej = list(shards.iter_records(out, "rejected"))
        return m, rej, dt

    def rep_of(rej):
        kept_by = {r["record_id"]: r["kept_id"] for r in rej}  # kept_id is the cluster's survivor
        return lambda i: kept_by.get(i, i)

    # exact + near
    tag = f"near-t{a.threshold}-c{a.n_char}-w{a.n_word}"
    m, rej, dt = run("exact,minhash", tag)
    rep = rep_of(rej)
    pairs = [(d, o) for d, (o, _) in truth.items() if d in recs and o in recs]
    caught = [rep(d) == rep(o) for d, o in pairs]
    by_kind = {}
    for (d, o), c in zip(pairs, caught):
        k = truth[d][1]
        by_kind.setdefault(k, []).append(c)
    wrong = 0
    for r in rej:
        d, k = r["record_id"], r["kept_id"]
        if (d in truth and rep(truth[d][0]) == k) or (k in truth and truth[k][0] == d):
            continue  # a planted pair
        if true_jaccard(recs[d], recs[k], recs[d]["lang"], recs[k]["lang"]) < 0.5:
            wrong += 1
    recall = sum(caught) / len(caught)
    precision = 1 - wrong / max(len(rej), 1)
    from pipeline.stages.dedup import DedupConfig
    cfgd = {**DedupConfig().__dict__, **m["config"]}
    print(f"\nexact + near (threshold {cfgd.get('threshold', 'default')}, shingles char {cfgd.get('n_char', 'default')}"
          f" / word {cfgd.get('n_word', 'default')}, num_perm {a.num_perm}, bands x rows "
          f"{m['dedup'].get('lsh_bands_rows')}): removed {len(rej)} "
          f"({m['dedup']['dropped']}), prefix rule {m['dedup'].get('prefix_dups')}")
    print(f"  planted-pair recall {recall:.4f}  precision {precision:.4f}  (targets >= 0.95; "
          f"{wrong} removals with true Jaccard < 0.5 to the kept record)")
    print("  recall by edit: " + ", ".join(f"{k} {np.mean(v):.3f} (n={len(v)})" for k, v in sorted(by_kind.items())))
    saved = m["dedup"].get("near_chain_kept_examples") or []
    print(f"  no chaining: {m['dedup'].get('near_chain_kept', 0)} records joined a cluster only through a chain of "
          f"neighbours and stay (a union-find over verified pairs drops them), e.g. "
          + ", ".join(f"{i} (true Jaccard to its neighbours' kept record: "
                      f"{max((true_jaccard(recs[i], recs[k], recs[i]['lang'], recs[k]['lang']) for k in _cluster_kept(i, rej, recs)), default=0):.2f})"
                      for i in saved[:5]))
    if dt > 1.0:  # not a cached result
        print(f"  {len(recs) / dt:.0f} conversations/s (exact + prefix + MinHash LSH, whole stage)")

    if a.skip_semantic:
        return
    # semantic on top
    sem_dir = os.path.join(work, f"{tag}-sem{a.eps}")
    cached = shards.is_complete(sem_dir)
    m2, rej2, dt2 = run("exact,minhash,semantic", f"{tag}-sem{a.eps}")
    sem = [r for r in rej2 if r["reason"] == "semantic_dup"]
    rep2 = rep_of(rej2)
    cat = {"near-identical": 0, "same first question": 0, "distinct": 0}
    bad_examples = []
    for r in sem:
        d, k = r["record_id"], r["kept_id"]
        planted_pair = (d in truth and rep2(truth[d][0]) == rep2(d)) or (k in truth and truth[k][0] == d)
        if planted_pair or true_jaccard(recs[d], recs[k], recs[d]["lang"], recs[k]["lang"]) >= 0.5:
            cat["near-identical"] += 1
        elif _first_user(recs[d]) == _first_user(recs[k]):
            cat["same first question"] += 1  # another answer to the same prompt
        else:
            cat["distinct"] += 1
            if len(bad_examples) < 5:
                bad_examples.append((recs[d]["messages"][0]["content"][:60], recs[k]["messages"][0]["content"][:60],
                                     r["detail"].split(" with")[0], recs[d]["source"]))
    ok = cat["near-identical"] + cat["same first question"]
    origin = lambda i: json.loads(recs[i]["meta"]["extra"] or "{}").get("source", "?")  # noqa: E731
    task = [i for i in recs if origin(i) in ("crosswoz", "multiwoz21")]
    task_removed = [r for r in sem if origin(r["record_id"]) in ("crosswoz", "multiwoz21")]
    print(f"\nsemantic (eps {a.eps}: cosine >= {1 - a.eps:.2f}, k-means k={m2['dedup'].get('semantic_kmeans_k')}): "
          f"removed {len(sem)} more: {cat}")
    print(f"  precision {ok / max(len(sem), 1):.4f} (right = planted pair, true Jaccard >= 0.5, or the same first "
          f"user question; wrong = distinct conversations)")
    print(f"  task-oriented dialogues that share a domain (crosswoz + multiwoz21, {len(task)} conversations): "
          f"{len(task_removed)} removed by the semantic stage")
    by_origin = {}
    for r in sem:
        by_origin[origin(r["record_id"])] = by_origin.get(origin(r["record_id"]), 0) + 1
    print(f"  semantic removals by origin: {dict(sorted(by_origin.items()))}")
    for x, y, s_, src in bad_examples:
        print(f"  distinct, removed [{s_}, {src}] {x!r}  vs  {y!r}")
    if not cached:
        print(f"  whole stage with semantic: {len(recs) / dt2:.0f} conversations/s (embedding is the cost)")

    sp = minhash_speed(list(recs.values())[:4000], a.num_perm)
    print(f"\nMinHash signatures on {sp['n']} conversations ({sp['shingles']} shingles, num_perm {a.num_perm}):")
    print(f"  ours {sp['ours']:.0f} conv/s; datasketch update loop {sp['loop']:.0f} conv/s -> {sp['ours'] / sp['loop']:.1f}x "
          f"(target >= 5x); update_batch {sp['batch']:.0f} conv/s -> {sp['ours'] / sp['batch']:.1f}x (target >= 2x)")
    auc = paraphrase_auc(a.evaldata, "use-m3")
    print(f"\nembedder use-m3 paraphrase ROC-AUC: LCQMC dev {auc['lcqmc_dev']:.4f} (n={auc['lcqmc_dev_n']}), "
          f"MSRP train {auc['msrp_train']:.4f} (n={auc['msrp_train_n']})")
    print(f"\npeak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
