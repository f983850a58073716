"""How the build scales with N: per-stage wall time, conversations/s and peak RSS; recall of
planted near-duplicates; two MinHash peers (rensa, datasketch) on dedup's input, side by side.

Data (seeded, streamed to JSONL files of <= 50,000 lines, >= one per worker; OpenAI messages with an
"id"): ~45% English, ~45% Chinese, ~10% mixed chats, 1-5 exchanges, ~1.8 KB of UTF-8 text, from a
small grammar whose slots draw on a few thousand words (faker's en_US / zh_CN lists, 2-character
words from the GB2312 level-1 characters); each conversation uses a random third of every phrase
list, so random pairs are as far apart as real chats (lima, sharegpt_zh: mean Jaccard ~0.01); ~3%
hold an e-mail or phone number. 5% are near-duplicates of an earlier conversation (85%: 2-10% of
words (en) / characters (zh, mixed) substituted, deleted or inserted; 15%: punctuation, width, case
only), listed in pairs.tsv. The Jaccard (pipeline.shingles: char 3-grams zh, word 2-grams en) of
planted and of random same-language pairs is sampled while generating and printed.

Per N: extract -> quality -> pii -> dedup (exact,minhash; configs/demo.yaml settings; pii's red line
lifted so a stray finding cannot stop a timing run), each a child `python -m pipeline.cli stage
--workers W`: wall, input conversations/s, peak RSS of the child's process tree (psutil, summed over
the child and its workers every --poll s; pages shared by forked workers count in each) and of its
largest process (wait4's ru_maxrss); load1 = 1-minute load average as it ended (above the step's own
busy processes: another job shared the CPUs and the step's times are too slow). Peers run as
children on the pii folder: read texts, the same shingles as `shingles("\\n".join(contents), lang, 3, 2)`
with regexes (`fast_shingles`), sketch (bands x rows perms), LSH with turnforge dedup's shape (42 bands
x 3 rows at threshold 0.5, so 126 perms), greedy keep in part order (a
kept record drops later candidates with estimated Jaccard >= 0.5); they write no shards. datasketch
only for N <= --datasketch-max-n. At --semantic-n, dedup with exact,minhash,semantic (use-m3 embeds
~150 conversations/s on 2 idle cores, ~40/s when another job shares them).

Recall: extract keeps an input's own "id" as record id (pipeline/stages/extract.py: `conv.own_id or
content_id(...)`), so generated ids reach dedup unchanged. A planted pair counts when both members
reach dedup's input and is caught when at most one survives; "outside planted pairs" counts drops
of records in no planted pair (false positives).

    .venv/bin/python bench/scale_bench.py                      # N = 100k, 300k, 1M; semantic at 300k
    .venv/bin/python bench/scale_bench.py --n 2000 10000 --semantic-n 2000            # quick
    .venv/bin/python bench/scale_bench.py --n 300000 --semantic-n 0 --engine ray      # engines
With --engine ray, dedup also runs on the local engine with 1 worker and on a local Ray with 1
and with 2 workers (each a fresh child, Ray's start-up included): Ray's overhead over local on one
worker, the speed-up from 1 to 2 Ray workers, and whether the bytes equal the local run's.
    options: --workers 2 --work /tmp/turnforge_scale --keep --json PATH --seed 0 --peer-bands B --peer-rows R
Measures the pipeline/ of the tree holding this file. Nothing is asserted; nothing is downloaded.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from pipeline import shards  # noqa: E402
from pipeline.shingles import shingles  # noqa: E402

STAGES = [  # (name, settings), as in configs/demo.yaml
    ("extract", {"source": "synth", "domain": "general", "session_gap_s": 1800, "tail_turns": 12,
                 "tail_chars": 12000, "markup": "strip"}),
    ("quality", {}),
    ("pii", {"default_operator": "pseudonym", "scope": "conversation", "residual_red_line": 10 ** 9}),
    ("dedup", {"methods": "exact,minhash", "keep": "longest", "threshold": 0.5}),
]
THRESHOLD, SEED = 0.5, 1
_KEPT = __import__("re").compile(r"[^\W_]")  # str.isalnum(): Unicode categories L and N, as pipeline.shingles keeps
_WORD = __import__("re").compile(r"[^\W_]+")


def fast_shingles(text: str, lang: str) -> list[str]:
    """`pipeline.shingles.shingles(text, lang, 3, 2)` with regexes instead of a loop per
    character (what a peer's user would write; checked equal on every peer's first batch)."""
    from pipeline.shingles import normalise

    t = normalise(text)
    if lang == "en":
        w = _WORD.findall(t)
        return [f"{a} {b} " for a, b in zip(w, w[1:])] if len(w) >= 2 else ([" ".join(w) + " "] if w else [])
    c = _KEPT.findall(t)
    return ["".join(x) for x in zip(c, c[1:], c[2:])] if len(c) >= 3 else (["".join(c)] if c else [])

# ------------------------------------------------------------------ generator
G = {k: v.split("|") for k, v in {  # phrase lists; {x} = a slot
    "en_open": "So |Well, |Honestly, |In practice, |Usually |First, |Then |Also, |Still, |By default, |Otherwise "
               "|Sometimes |Overall, |About the {n}, |In {place}, |Since {num}, |For {name}, |Like {w} {n}, "
               "|With {t}, |Before {w}, |Once {n} {v}s, |If {w} {n} {v}s, |After {num} {w}, |Unlike {a} {n}, "
               "|According to {name}, ",
    "en_subj": "the {n}|your {n}|a {a} {n}|{name}|our {n}|this {n}|every {job}|the {a} {n}|I|you|we|they"
               "|the {w} {n}|my {job}|{place}|{name}'s {job}|{num} {n}|each {w} {n}|some {job}|no {n}",
    "en_verb": "{v}|{v}|{v}|{v}s|{v}s|can {v}|should {v}|will {v}|might {v}|must {v}|may {v}|could {v}|would {v}"
               "|often {v}|rarely {v}|never {v}|always {v}|tends to {v}|needs to {v}|has to {v}|tried to {v}"
               "|wants to {v}|plans to {v}|forgot to {v}|decided to {v}|refused to {v}|hopes to {v}"
               "|started to {v}|would rather {v}|keeps trying to {v}|quickly {v}s|barely {v}s",
    "en_obj": "the {n}|{a} {n}|{w} {n}|{num} {n}|{n} and {n}|a {w} {n}|{w} {w} {n}|the {t} {n}|{name}'s {n}"
              "|{w} {w}|{t}|{a} {w}|{n} {n}|{place}'s {n}",
    "en_tail": " before {w}| after {n}| with {a} {n}| for {num} {w}| in {place}| on {t}| without {n}| near {place}"
               "| during {w}| under {n}| through {n}| despite {w}| against {a} {n}| via {t}| by {name}| like {w}"
               "| into {n}| per {w}",
    "en_conn": ", and |, but |, so | because | while | unless | when | although | since | whereas | until | if "
               "|, yet | once ",
    "en_q": "How do I {v} {o}{tl}?|Can you {v} {o}{tl}?|Why does {s} {v} {o}?|Is there a way to {v} {o}?"
            "|Should I {v} {o} or {o}?|Could you help me {v} {o}?|When should we {v} {o}{tl}?|Where can I {v} {o}?"
            "|What if {s} {v}s {o}?|Does {s} {v} {o}{tl}?|Any tips to {v} {o}?|Why can't {s} {v} {o}?"
            "|Who should {v} {o}?|Which {n} should {s} {v}?|Is {o} worth it?|{s} {v}s {o}, why?"
            "|Can {s} {v} {o}{tl}?|What about {o}{tl}?",
    "zh_open": "其实|一般来说，|首先|然后|另外，|比如|通常|简单来说，|总的来说，|说实话，|按照经验，|关于{w}，|在{place}，"
               "|{num}年以后，|对于{n}来说，|除了{w}以外，|如果{w}不够，|{name}说|根据{org}的{w}，|等{w}之后，"
               "|为了{v}{w}，|像{w}这种情况，",
    "zh_subj": "我们的{n}|这个{n}|{name}|你|我|他们|{job}|{place}的{n}|{org}|这家{org}|{name}的{job}|{num}个{n}"
               "|那位{job}|{org}的{n}|{w}{n}|每个{job}",
    "zh_verb": "{v}|{v}|{v}|{v}了|可以{v}|应该{v}|需要{v}|打算{v}|已经{v}了|还没{v}|经常{v}|想要{v}|正在{v}|必须{v}"
               "|不想{v}|准备{v}|很少{v}|马上{v}|顺便{v}|开始{v}|继续{v}|尽快{v}|重新{v}|先{v}",
    "zh_obj": "{w}|{w}{w}|{num}个{w}|{place}的{w}|{org}的{w}|{w}和{w}|{t}|{w}的{n}|{n}|{w}{n}|{t}{w}|{name}的{w}",
    "zh_conn": "，而且|，但是|，所以|，因为|，同时|，如果|，否则|，然后|，不过|，结果|，于是|，除非|，虽然|，只要",
    "zh_q": "请问怎么{v}{o}？|为什么{s}会{v}{o}？|{s}能不能{v}{o}？|有没有办法{v}{o}？|{v}{o}需要多久？"
            "|{s}应该先{v}{o}还是{v}{o}？|{o}到底要不要{v}？|{s}{v}{o}的时候要注意什么？|{o}怎么{v}比较好？"
            "|{s}为啥不{v}{o}？|谁来{v}{o}？|{o}在哪里{v}？|{v}{o}贵不贵？|{s}还要{v}{o}吗？",
}.items()}
EN_VERBS = ("fix install update check compare deploy configure cancel book refund upload export import measure "
            "schedule translate review merge rename restart monitor clean migrate plan explain rewrite test design "
            "reset share sort filter print scan sign renew order return track").split()
EN_TERMS = ("Python Docker API SQL Excel GPU Kubernetes React JSON Git Linux CUDA PDF iPhone WiFi VPN Redis Nginx "
            "Java Rust TypeScript Android Windows macOS PyTorch pandas Spark Kafka Slack Zoom Chrome Bluetooth USB "
            "SSD HDMI OAuth YAML CSV").split()
ZH_VERBS = ("处理 优化 检查 配置 提交 修改 部署 安装 更新 申请 办理 预订 取消 联系 比较 选择 购买 退回 调整 学习 准备 整理 "
            "分析 计算 设计 测试 记录 上传 下载 注册 登录 解决 说明 确认 推荐 参考 打开 关闭 设置 保存 删除 复制 导出 导入 "
            "运行 启动 停止 翻译 总结 解释 规划 安排 报名 支付 退款 投诉 咨询 评估 维护 升级").split()
ZH_SLOT = {"w": "zw", "n": "zn", "v": "zv", "job": "zjob", "name": "zname", "place": "zplace", "org": "zorg"}
WIDE = {ord(c): chr(ord(c) + 0xFEE0) for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"}


def vocabulary() -> dict:
    from faker.providers.address import en_US as ae, zh_CN as az
    from faker.providers.company import en_US as ce, zh_CN as cz
    from faker.providers.job import en_US as je, zh_CN as jz
    from faker.providers.lorem import en_US as le, zh_CN as lz
    from faker.providers.person import en_US as pe, zh_CN as pz

    gb = [bytes([hi, lo]).decode("gb2312") for hi in range(0xB0, 0xD8) for lo in range(0xA1, 0xFF)
          if not (hi == 0xD7 and lo > 0xF9)]  # the 3,755 level-1 characters
    r, bs, cp = random.Random(12345), ce.Provider.bsWords, ce.Provider.catch_phrase_words
    last = list(pe.Provider.last_names)
    return {"w": sorted(le.Provider.word_list), "t": EN_TERMS, "v": EN_VERBS + list(bs[0]),
            "n": sorted({w.lower() for w in cp[2] + bs[2]} | {w.lower() for j in je.Provider.jobs for w in j.split()
                                                              if w.isalpha()}),
            "a": sorted({w.lower() for w in bs[1] + cp[0]}), "job": [j.lower() for j in je.Provider.jobs],
            "name": list(pe.Provider.first_names) + last,
            "place": list(ae.Provider.states) + [f"{a} {b}" for a, b in zip(last[:300], ae.Provider.street_suffixes * 2)],
            "zw": list(lz.Provider.word_list) + ["".join(r.sample(gb, 2)) for _ in range(4000)],
            "zn": list(jz.Provider.jobs[:400]) + ["".join(r.sample(gb, 2)) for _ in range(1500)],
            "zjob": list(jz.Provider.jobs), "zv": ZH_VERBS, "zorg": list(cz.Provider.company_prefixes),
            "zname": [a + b + c for a in list(pz.Provider.last_names)[:60] for b, c in zip(pz.Provider.first_names, gb[::29])],
            "zplace": list(az.Provider.cities) + list(az.Provider.districts) + list(az.Provider.provinces)}


class Gen:
    """Conversations and planted near-duplicates, deterministic from the seed."""

    def __init__(self, seed: int):
        self.r, self.V = random.Random(seed), vocabulary()
        self.zh_chars = "".join(self.V["zw"])

    def fill(self, t: str, zh: bool, mixed: bool = False) -> str:
        r, V = self.r, self.V
        while "{" in t:
            a, rest = t.split("{", 1)
            k, b = rest.split("}", 1)
            if k == "num":
                x = str(r.choice([r.randint(2, 12), r.randint(10, 999), r.randint(1990, 2030)]))
            elif k == "tl" and r.random() < 0.5:
                x = ""
            elif k in ("s", "o", "tl"):
                x = self.fill(self.pick(("zh_" if zh else "en_") + {"s": "subj", "o": "obj", "tl": "tail"}[k]), zh, mixed)
            elif zh and k != "t" and not (mixed and k == "w" and r.random() < 0.25):
                x = r.choice(V[ZH_SLOT[k]])
            else:
                x = r.choice(V["t" if zh else k])
            t = a + x + b
        return t

    def pick(self, name: str) -> str:
        return self.r.choice(self.style[name])

    def sentence(self, zh: bool, question: bool, mixed: bool) -> str:
        r, p, L, sp = self.r, self.pick, "zh_" if zh else "en_", "" if zh else " "
        if question:
            s = self.fill(p(L + "q"), zh, mixed)
            return s[0].upper() + s[1:]
        clause = lambda: "{s}" + sp + p(L + "verb") + sp + "{o}" + sp.replace(" ", "{tl}")  # noqa: E731
        s = (p(L + "open") if r.random() < 0.3 else "") + clause()
        s = self.fill(s + (p(L + "conn") + clause() if r.random() < 0.6 else ""), zh, mixed)
        return s[0].upper() + s[1:] + r.choice("。。。！" if zh else "...!")

    def message(self, lang: str, role: str, pii: bool) -> str:
        r = self.r
        k = r.randint(1, 3) if role == "user" else (r.randint(3, 9) if lang == "en" else r.randint(4, 11))
        out = [self.sentence(lang == "zh" or (lang == "mixed" and r.random() < 0.7), role == "user" and i == k - 1,
                             lang == "mixed") for i in range(k)]
        if pii:
            x = r.choice([f"{r.choice(self.V['name']).lower()}.{r.choice(self.V['w'])}{r.randint(1, 99)}@example.com",
                          f"1{r.choice('3589')}{r.randint(0, 9)}{r.randint(10 ** 7, 10 ** 8 - 1)}" if lang != "en"
                          else f"+1 {r.randint(201, 989)} {r.randint(200, 999)} {r.randint(1000, 9999)}"])
            out.insert(0, f"我的联系方式是{x}。" if lang != "en" else f"You can reach me at {x}.")
        return ("" if lang == "zh" else " ").join(out)

    def conversation(self, cid: str) -> tuple[dict, str]:
        r = self.r
        self.style = {k: r.sample(v, max(2, len(v) // 3)) for k, v in G.items()}  # this speaker's phrases
        lang = r.choices(["en", "zh", "mixed"], [45, 45, 10])[0]
        msgs = []
        if r.random() < 0.2:
            msgs.append({"role": "system", "content": self.fill("你是一名{job}，请用简洁的语言回答。", True)
                         if lang != "en" else self.fill("You are a helpful {job}. Answer briefly.", False)})
        turns = r.choices([1, 2, 3, 4, 5], [30, 25, 20, 15, 10])[0]
        pii_turn = r.randrange(turns) if r.random() < 0.03 else -1
        for t in range(turns):
            msgs.append({"role": "user", "content": self.message(lang, "user", t == pii_turn)})
            msgs.append({"role": "assistant", "content": self.message(lang, "assistant", False)})
        return {"id": cid, "messages": msgs}, lang

    def near_dup(self, conv: dict, lang: str, cid: str) -> dict:
        r = self.r
        rate, punct_only, en = r.uniform(0.02, 0.10), r.random() < 0.15, lang == "en"
        pool = self.V["w"] if en else self.zh_chars
        msgs = []
        for m in conv["messages"]:
            text = m["content"]
            if not punct_only:  # per token: substitute / delete / insert with probability `rate`
                out = []
                for tok in (text.split(" ") if en else text):
                    op = r.randrange(3) if r.random() < rate else -1
                    out += {-1: [tok], 0: [r.choice(pool)], 1: [], 2: [r.choice(pool), tok]}[op]
                text = (" " if en else "").join(out)
            if punct_only or r.random() < 0.3:
                for a, b in r.sample([(", ", "，"), (". ", "。"), ("?", "？"), ("!", "！"), ("，", ", "), ("。", ". ")], 3):
                    text = text.replace(a, b)
                text = text.translate(WIDE) if r.random() < 0.3 else (text.lower() if r.random() < 0.5 else text)
            msgs.append({"role": m["role"], "content": text})
        return {"id": cid, "messages": msgs}


def jaccard(a: str, b: str, lang: str) -> float:
    lg = "en" if lang == "en" else "zh"
    x, y = set(shingles(a, lg, 3, 2)), set(shingles(b, lg, 3, 2))
    return len(x & y) / max(1, len(x | y))


def generate(n: int, seed: int, folder: str, files: int, dup_share: float = 0.05, samples: int = 1000) -> dict:
    """Streams n conversations into folder/input/*.jsonl and planted pairs into folder/pairs.tsv."""
    g, t0, inp = Gen(seed), time.time(), os.path.join(folder, "input")
    os.makedirs(inp, exist_ok=True)
    pool, seen, nbytes, planted, rand_j = [], 0, 0, [], {"en": [], "zh": []}  # pool: reservoir of originals
    per_file, out = math.ceil(n / files), None
    pairs = open(os.path.join(folder, "pairs.tsv"), "w", encoding="utf-8")
    text = lambda c: "\n".join(m["content"] for m in c["messages"])  # noqa: E731
    for i in range(n):
        if i % per_file == 0:
            out and out.close()
            out = open(os.path.join(inp, f"part-{i // per_file:04d}.jsonl"), "w", encoding="utf-8")
        cid = f"c{seed}-{i:08d}"
        if len(pool) > 50 and g.r.random() < dup_share:
            orig, lang = g.r.choice(pool)
            conv = g.near_dup(orig, lang, cid)
            pairs.write(f"{orig['id']}\t{cid}\n")
            if len(planted) < samples:
                planted.append(jaccard(text(orig), text(conv), lang))
        else:
            conv, lang = g.conversation(cid)
            if lang in rand_j and len(rand_j[lang]) < samples and pool:
                rand_j[lang] += [jaccard(text(conv), text(c), lang) for c, l2 in g.r.sample(pool, min(8, len(pool)))
                                 if l2 == lang][:1]
            seen += 1
            if len(pool) < 4096:
                pool.append((conv, lang))
            elif g.r.random() < 4096 / seen:
                pool[g.r.randrange(4096)] = (conv, lang)
        nbytes += len(text(conv).encode())
        out.write(json.dumps(conv, ensure_ascii=False) + "\n")
    out.close()
    pairs.close()
    q = lambda xs, p: sorted(xs)[int(p * (len(xs) - 1))] if xs else float("nan")  # noqa: E731
    return {"n": n, "files": files, "seconds": time.time() - t0, "text_bytes_per_conv": nbytes / n,
            "input_mb": sum(os.path.getsize(os.path.join(inp, f)) for f in os.listdir(inp)) / 2 ** 20,
            "jaccard_planted": {"n": len(planted), "p5": q(planted, .05), "median": q(planted, .5),
                                "share_ge_0.6": sum(j >= 0.6 for j in planted) / max(1, len(planted))},
            "jaccard_random": {lg: {"n": len(v), "mean": sum(v) / max(1, len(v)), "p99": q(v, .99), "max": max(v or [0])}
                               for lg, v in rand_j.items()}}


# ------------------------------------------------------------------ measuring children
def measure(cmd: list[str], poll: float) -> dict:
    """Wall time, peak RSS summed over the child's process tree, and wait4's ru_maxrss."""
    import psutil

    t0 = time.time()
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    os.set_blocking(p.stdout.fileno(), False)
    proc, peak, log = psutil.Process(p.pid), 0, []
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        rss = 0
        with contextlib.suppress(psutil.Error):  # a worker may end while we read it
            for q in [proc] + proc.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    rss += q.memory_info().rss
        peak = max(peak, rss)
        log.append(p.stdout.read() or b"")
        time.sleep(poll)
    wall, rc = time.time() - t0, os.waitstatus_to_exitcode(status)
    if rc:
        raise RuntimeError(f"{' '.join(cmd)} failed ({rc}):\n{(b''.join(log) + (p.stdout.read() or b'')).decode()[-3000:]}")
    return {"wall_s": wall, "peak_tree_mb": peak / 2 ** 20, "maxrss_mb": ru.ru_maxrss / 1024, "load1": os.getloadavg()[0]}


def run_stage(name: str, params: dict, inp: str, out: str, a, workers: int = 0, engine: str = "local") -> dict:
    cmd = [sys.executable, "-m", "pipeline.cli", "stage", name, "--in", inp, "--out", out, "--workers",
           str(workers or a.workers), "--engine", engine, "--quiet"] + [
        x for k, v in params.items() for x in ("--set", f"{k}={v}")]
    r = measure(cmd, a.poll)
    c = shards.load_manifest(out)["counts"]
    return {**r, "in": c["in"], "kept": c["kept"], "conv_per_s": c["in"] / r["wall_s"]}


def digests(folder: str) -> dict:
    import hashlib

    out = {}
    for sub in ("data", "rejected"):
        for p in shards.data_files(folder, sub):
            with open(p, "rb") as f:
                out[f"{sub}/{os.path.basename(p)}"] = hashlib.sha256(f.read()).hexdigest()
    return out


def ids_of(folder: str) -> set:
    return {i for p in shards.data_files(folder) for b in shards.iter_batches_of(p) for i in b.column("id").to_pylist()}


def recall(pairs: list, present: set, kept: set) -> dict:
    both = [(a, b) for a, b in pairs if a in present and b in present]
    dropped = present - kept
    return {"recall": sum(not (a in kept and b in kept) for a, b in both) / max(1, len(both)), "pairs": len(both),
            "drop_share": len(dropped) / max(1, len(present)), "kept": len(kept),
            "other_drops": len(dropped - {x for p in both for x in p})}


def peer_main(kind: str, inp: str, out: str, bands: int, rows: int) -> None:
    """A peer's whole dedup step in this (child) process; writes the dropped ids and timings.
    Same LSH shape as turnforge's dedup (bands x rows, so num_perm = bands * rows)."""
    import numpy as np
    import pyarrow.compute as pc

    NUM_PERM = bands * rows  # noqa: N806
    t0, ids, sk, sh_s, sk_s, checked = time.time(), [], [], 0.0, 0.0, False
    if kind == "rensa":
        from rensa import RMinHash, RMinHashLSH
        sketch = lambda toks: RMinHash.from_token_sets(toks, NUM_PERM, SEED)  # noqa: E731
    else:
        from datasketch import MinHash, MinHashLSH
        sketch = lambda toks: MinHash.bulk([[s.encode() for s in x] for x in toks], num_perm=NUM_PERM, seed=SEED)  # noqa: E731
    for p in shards.data_files(inp):
        for b in shards.iter_batches_of(p):
            msgs = b.column("messages")
            content, off = pc.struct_field(msgs.flatten(), "content").to_pylist(), msgs.offsets.to_numpy()
            off = off - off[0]
            t1 = time.time()
            texts = ["\n".join(content[off[i]:off[i + 1]]) for i in range(b.num_rows)]
            langs = b.column("lang").to_pylist()
            toks = [fast_shingles(t, lg) for t, lg in zip(texts, langs)]
            t2 = time.time()
            if not checked:
                assert all(x == shingles(t, lg, 3, 2) for x, t, lg in zip(toks[:500], texts, langs)), "fast_shingles"
                checked = True
            sk += sketch(toks)
            sh_s, sk_s = sh_s + t2 - t1, sk_s + time.time() - t2
            ids += b.column("id").to_pylist()
    t1, n = time.time(), len(ids)
    if kind == "rensa":
        lsh = RMinHashLSH(THRESHOLD, NUM_PERM, bands)
        lsh.insert_many(sk, 0)
        sim = lambda x, y: x.jaccard(y)  # noqa: E731
    else:
        lsh = MinHashLSH(num_perm=NUM_PERM, params=(bands, rows))
        with lsh.insertion_session() as s:
            for i, m in enumerate(sk):
                s.insert(i, m, check_duplication=False)
        sim = lambda x, y: float(np.mean(x.hashvalues == y.hashvalues))  # noqa: E731
    t2, removed, cands = time.time(), bytearray(n), 0
    for i in range(n):  # greedy: a kept record drops its later verified candidates
        if not removed[i]:
            for c in lsh.query(sk[i]):
                if c > i and not removed[c]:
                    cands += 1
                    if sim(sk[i], sk[c]) >= THRESHOLD:
                        removed[c] = 1
    t3 = time.time()
    with open(out, "w") as f:
        json.dump({"n": n, "dropped": [ids[i] for i in range(n) if removed[i]], "candidates": cands,
                   "shingle_s": sh_s, "sketch_s": sk_s, "read_s": t1 - t0 - sh_s - sk_s, "insert_s": t2 - t1,
                   "query_s": t3 - t2}, f)


def run_peer(kind: str, inp: str, folder: str, a, present: set, pairs: list) -> dict:
    res = os.path.join(folder, f"{kind}.json")
    r = measure([sys.executable, os.path.abspath(__file__), "--peer", kind, "--peer-in", inp, "--peer-out", res,
                 "--peer-bands", str(a.peer_bands), "--peer-rows", str(a.peer_rows)], a.poll)
    with open(res) as f:
        d = json.load(f)
    dropped = set(d.pop("dropped"))
    return {**r, **d, "in": d["n"], "conv_per_s": d["n"] / r["wall_s"], **recall(pairs, present, present - dropped)}


# ------------------------------------------------------------------ main
def row(name: str, r: dict) -> str:
    return (f"{name:<17}{r['in']:>9}{r['kept']:>9}{r['wall_s']:>9.1f}{r['conv_per_s']:>10.0f}{r['peak_tree_mb']:>10.0f}"
            f"{r['maxrss_mb']:>10.0f}{r['peak_tree_mb'] * 1024 / max(1, r['in']):>9.1f}{r['load1']:>7.1f}")


def build(n: int, a, semantic: bool, peers: bool = True) -> dict:
    folder = os.path.join(a.work, f"n{n}")
    shutil.rmtree(folder, ignore_errors=True)
    gen = generate(n, a.seed, folder, max(a.workers, math.ceil(n / 50_000)))
    jp, jr = gen["jaccard_planted"], gen["jaccard_random"]
    print(f"\n=== N={n}: generated in {gen['seconds']:.1f} s, {gen['input_mb']:.0f} MB JSONL in {gen['files']} files, "
          f"{gen['text_bytes_per_conv']:.0f} B text/conv; Jaccard planted pairs median {jp['median']:.2f}, p5 "
          f"{jp['p5']:.2f}, {jp['share_ge_0.6']:.0%} >= 0.6; random pairs en mean {jr['en']['mean']:.3f} p99 "
          f"{jr['en']['p99']:.3f} max {jr['en']['max']:.3f}, zh mean {jr['zh']['mean']:.3f} p99 {jr['zh']['p99']:.3f} "
          f"max {jr['zh']['max']:.3f}", flush=True)
    res, prev = {"n": n, "generate": gen, "stages": {}, "peers": {}}, os.path.join(folder, "input")
    for k, (name, params) in enumerate(STAGES, 1):
        res["stages"][name] = run_stage(name, params, prev, os.path.join(folder, "stages", f"{k:02d}-{name}"), a)
        prev = os.path.join(folder, "stages", f"{k:02d}-{name}")
    pii, dedup = (os.path.join(folder, "stages", s) for s in ("03-pii", "04-dedup"))
    with open(os.path.join(folder, "pairs.tsv")) as f:
        pairs = [tuple(x.split("\t")) for x in f.read().splitlines()]
    present, d = ids_of(pii), res["stages"]["dedup"]
    d.update(recall(pairs, present, ids_of(dedup)))
    d["manifest"] = {k: v for k, v in shards.load_manifest(dedup).get("dedup", {}).items() if k != "examples"}
    for kind in (["rensa"] + ["datasketch"] * (n <= a.datasketch_max_n)) * peers:
        res["peers"][kind] = run_peer(kind, pii, folder, a, present, pairs)
    if a.engine == "ray":  # the same dedup on: local 1 worker, Ray 1 worker, Ray 2 workers
        res["engines"] = {}
        for eng, w in (("local", 1), ("ray", 1), ("ray", 2)):
            out = os.path.join(folder, "stages", f"04-dedup-{eng}-w{w}")
            res["engines"][f"{eng} w{w}"] = r = run_stage("dedup", STAGES[3][1], pii, out, a, workers=w, engine=eng)
            r["same_bytes"] = digests(out) == digests(dedup)
            r["partitions"] = shards.load_manifest(out)["dedup"].get("lsh_partitions")
    if semantic:
        out = os.path.join(folder, "stages", "04-dedup-semantic")
        r = run_stage("dedup", {**STAGES[3][1], "methods": "exact,minhash,semantic", "eps": 0.04}, pii, out, a)
        res["semantic"] = {**r, **recall(pairs, present, ids_of(out)),
                           "semantic_dup": shards.load_manifest(out).get("dedup", {}).get("dropped", {}).get("semantic_dup")}
    print(f"{'step':<17}{'in':>9}{'kept':>9}{'wall_s':>9}{'conv/s':>10}{'tree_MB':>10}{'maxrss_MB':>10}{'KB/conv':>9}{'load1':>7}")
    for name, r in res["stages"].items():
        print(row(name, r))
    for name, r in res["peers"].items():
        print(row(f"{name} (peer)", r) + f"  read {r['read_s']:.1f} s, shingle {r['shingle_s']:.1f} s, sketch "
              f"{r['sketch_s']:.1f} s, insert {r['insert_s']:.1f} s, query+verify {r['query_s']:.1f} s")
    if "semantic" in res:
        print(row("dedup+semantic", res["semantic"]) + f"  {res['semantic']['semantic_dup']} semantic_dup")
    for name, r in res.get("engines", {}).items():
        print(row(f"dedup {name}", r) + f"  {r['partitions']} LSH partitions, same bytes as --workers "
              f"{a.workers} local: {r['same_bytes']}")
    if res.get("engines"):
        e = res["engines"]
        print(f"  ray vs local, 1 worker: time {e['ray w1']['wall_s'] / e['local w1']['wall_s']:.2f}x (overhead "
              f"{e['ray w1']['wall_s'] / e['local w1']['wall_s'] - 1:+.1%}); ray 2 workers vs 1: speed-up "
              f"{e['ray w1']['wall_s'] / e['ray w2']['wall_s']:.2f}x")
    m = d["manifest"]
    print(f"turnforge dedup: bands x rows {m.get('lsh_bands_rows')}, {m.get('lsh_candidates')} LSH candidates, "
          f"{m.get('lsh_verified')} verified, dropped {m.get('dropped')}; peers' candidates: "
          + ", ".join(f"{k} {v['candidates']}" for k, v in res["peers"].items()))
    for name, r in [("turnforge dedup", d), *res["peers"].items(), *[("dedup+semantic", res[k]) for k in res
                                                                     if k == "semantic"]]:
        vs = "" if name not in res["peers"] else (
            f"; turnforge / {name}: time {d['wall_s'] / r['wall_s']:.2f}x (without its Python shingling "
            f"{d['wall_s'] / (r['wall_s'] - r['shingle_s']):.2f}x), peak tree RSS {d['peak_tree_mb'] / r['peak_tree_mb']:.2f}x")
        print(f"  {name:<16} recall {r['recall']:.3f} of {r['pairs']} planted pairs, drops {r['drop_share']:.2%} of input,"
              f" {r['other_drops']} outside planted pairs{vs}")
    if not a.keep:
        shutil.rmtree(folder, ignore_errors=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for flag, kw in [("--n", dict(type=int, nargs="+", default=[100_000, 300_000, 1_000_000])),
                     ("--semantic-n", dict(type=int, default=300_000, help="0: skip")),
                     ("--workers", dict(type=int, default=2)), ("--seed", dict(type=int, default=0)),
                     ("--engine", dict(choices=["local", "ray"], default="local",
                                       help="ray: also dedup on local 1 worker, Ray 1 and 2 workers")),
                     ("--work", dict(default="/tmp/turnforge_scale")), ("--json", dict(help="write the results here")),
                     ("--keep", dict(action="store_true", help="keep the build folders")),
                     ("--poll", dict(type=float, default=0.05, help="RSS polling interval (s)")),
                     ("--datasketch-max-n", dict(type=int, default=100_000)),
                     ("--peer-bands", dict(type=int, default=0, help="peers' LSH bands; 0: turnforge dedup's")),
                     ("--peer-rows", dict(type=int, default=0, help="peers' LSH rows; 0: turnforge dedup's")),
                     *[(x, dict(help=argparse.SUPPRESS)) for x in ("--peer", "--peer-in", "--peer-out")]]:
        ap.add_argument(flag, **kw)
    a = ap.parse_args()
    if not (a.peer_bands and a.peer_rows):
        from pipeline.stages.dedup import DedupConfig, _bands
        a.peer_bands, a.peer_rows = _bands(DedupConfig(threshold=THRESHOLD))
    if a.peer:
        return peer_main(a.peer, a.peer_in, a.peer_out, a.peer_bands, a.peer_rows)
    ns = sorted(set(a.n))
    print(f"scale bench: N={ns}, workers={a.workers}, semantic at N={a.semantic_n or 'off'}, work={a.work}")
    runs = [build(n, a, semantic=(n == a.semantic_n)) for n in ns]
    sem = [r for r in runs if "semantic" in r] or (
        [build(a.semantic_n, a, semantic=True, peers=False)] if a.semantic_n else [])
    print("\n=== summary: conv/s | peak tree MB")
    print(f"{'step':<17}" + "".join(f"{'N=' + str(r['n']):>20}" for r in runs))
    for name in [s for s, _ in STAGES] + ["rensa", "datasketch"]:
        cells = [r["stages"].get(name) or r["peers"].get(name) for r in runs]
        print(f"{name:<17}" + "".join(f"{c['conv_per_s']:.0f} | {c['peak_tree_mb']:.0f}".rjust(20) if c else "-".rjust(20)
                                      for c in cells))
    for x, y in zip(runs, runs[1:]):
        print(f"N x{y['n'] / x['n']:.1f} ({x['n']} -> {y['n']}): time x " + ", ".join(
            f"{s} {y['stages'][s]['wall_s'] / x['stages'][s]['wall_s']:.1f}" for s, _ in STAGES)
            + f"; dedup peak tree RSS x{y['stages']['dedup']['peak_tree_mb'] / x['stages']['dedup']['peak_tree_mb']:.1f}")
    for x, y in zip(runs, runs[1:]):
        print(f"peak tree RSS growth {x['n']} -> {y['n']}, bytes per added conversation: " + ", ".join(
            f"{s} {(y['stages'][s]['peak_tree_mb'] - x['stages'][s]['peak_tree_mb']) * 2 ** 20 / (y['n'] - x['n']):.0f}"
            for s, _ in STAGES))
    for r in runs:
        d = r["stages"]["dedup"]
        print(f"N={r['n']}: dedup {d['wall_s']:.1f} s, {d['peak_tree_mb']:.0f} MB, recall {d['recall']:.3f}; " + "; ".join(
            f"{k} {v['wall_s']:.1f} s (turnforge / {k} = {d['wall_s'] / v['wall_s']:.2f}x), {v['peak_tree_mb']:.0f} MB,"
            f" recall {v['recall']:.3f}" for k, v in r["peers"].items()))
    for r in sem:
        s = r["semantic"]
        print(f"semantic dedup at N={r['n']}: {s['wall_s']:.1f} s = {s['conv_per_s']:.1f} conv/s, peak tree "
              f"{s['peak_tree_mb']:.0f} MB, recall {s['recall']:.3f}, drops {s['drop_share']:.2%} "
              f"({s['semantic_dup']} semantic_dup)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"args": vars(a), "runs": runs + [r for r in sem if r not in runs]}, f, indent=1)
        print(f"results: {a.json}")


if __name__ == "__main__":
    main()
