"""PII detection quality and anonymisation speed, in one run.

1. presidio-research synth_dataset_v2.json (../shared/evaldata/pii_presidio_research):
   per-entity precision / recall / F1 (`turnforge pii eval`); targets recall >= 0.95 and
   precision >= 0.90 for EMAIL_ADDRESS, PHONE_NUMBER, CREDIT_CARD, IP_ADDRESS, IBAN_CODE, US_SSN.
2. Chinese sentences written here from templates with values from `faker` zh_CN (mobiles in
   several layouts, resident IDs, bank cards): recall per entity; target >= 0.98.
3. False flags on ../shared/evaldata/sharegpt_zh turns (no planted PII): share of turns
   flagged, each flag listed for inspection; target <= 0.5%.
4. Throughput on the same sharegpt_zh turns: our pii stage (batched, pre-filtered, 2 workers)
   against presidio used naively (AnalyzerEngine.analyze with all recognizers, then
   AnonymizerEngine.anonymize, one call per text); target >= 4x.

    python bench/pii_bench.py [--evaldata ../shared/evaldata] [--n-zh 600] [--workers 2]
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")

from pipeline import runner, shards  # noqa: E402
from pipeline import scan as tools  # noqa: E402
from pipeline.pii import get_analyzer  # noqa: E402

TARGETS = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IP_ADDRESS", "IBAN_CODE", "US_SSN")

ZH_TEMPLATES = {
    "PHONE_NUMBER": ["我的手机号是{v}，有事打给我。", "请联系{v}（王先生）", "客服回电号码：{v}", "麻烦把快递员电话{v}发我",
                     "手机{v}，微信同号", "他留的电话是 {v} ，白天都在"],
    "CN_RESIDENT_ID": ["身份证号{v}，请核对。", "我的证件号码是 {v}", "办理时填写身份证：{v}，谢谢", "身份证{v}已上传"],
    "CREDIT_CARD": ["退款请打到这张卡：{v}", "银行卡号 {v} 开户行招商银行", "我的卡号是{v}，为什么扣款失败？", "工资卡{v}"],
}


def phone_layouts(num: str, rng: random.Random) -> str:
    return rng.choice([num, f"{num[:3]} {num[3:7]} {num[7:]}", f"{num[:3]}-{num[3:7]}-{num[7:]}", f"+86 {num}",
                       f"+86-{num[:3]}-{num[3:7]}-{num[7:]}", f"0086{num}"])


def card_layouts(num: str, rng: random.Random) -> str:
    return rng.choice([num, " ".join(num[i:i + 4] for i in range(0, len(num), 4))])


def zh_recall(n: int, seed: int = 0) -> dict:
    from faker import Faker

    fk = Faker("zh_CN")
    fk.seed_instance(seed)
    rng = random.Random(seed)
    an = get_analyzer()
    out = {}
    for ent, tpls in ZH_TEMPLATES.items():
        hit = 0
        misses = []
        for _ in range(n):
            if ent == "PHONE_NUMBER":
                v = phone_layouts(fk.phone_number(), rng)
            elif ent == "CN_RESIDENT_ID":
                v = fk.ssn()
            else:
                if rng.random() < 0.5:  # UnionPay (62...), what most mainland bank cards are; faker has none
                    from pipeline.pii.anonymize import luhn_digit
                    body = "62" + "".join(str(rng.randrange(10)) for _ in range(rng.choice((13, 14, 16))))
                    num = body + luhn_digit(body)
                else:
                    num = fk.credit_card_number()  # zh_CN card types
                v = card_layouts(num, rng)
            text = rng.choice(tpls).format(v=v)
            s = text.index(v)
            e = s + len(v)
            if any(f.entity_type == ent and f.start < e and s < f.end for f in an.analyze(text, "zh")):
                hit += 1
            elif len(misses) < 3:
                misses.append(text)
        out[ent] = (hit / n, misses)
    return out


def sharegpt_turns(ev: str) -> list[str]:
    turns = []
    for p in sorted(glob.glob(os.path.join(ev, "sharegpt_zh", "*.jsonl"))):
        for line in open(p, encoding="utf-8"):
            turns += [m["value"] for m in json.loads(line)["conversations"] if m["value"].strip()]
    return turns


def naive_presidio(texts: list[str]) -> float:
    """presidio as documented: analyze with every recognizer, then anonymize, per text."""
    from presidio_anonymizer import AnonymizerEngine

    an = get_analyzer()
    from pipeline.pii.analyzer import STRUCTURED_LANGUAGE

    engine, anon = an.engine, AnonymizerEngine()
    t = time.perf_counter()
    for x in texts:
        res = engine.analyze(text=x, language=STRUCTURED_LANGUAGE)
        anon.anonymize(text=x, analyzer_results=res)
    return len(texts) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--evaldata", default=os.path.join(ROOT, "..", "shared", "evaldata"))
    ap.add_argument("--n-zh", type=int, default=600)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--naive-sample", type=int, default=3000)
    ap.add_argument("--repeat", type=int, default=4, help="throughput corpus = the turns repeated (amortises start-up)")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="tf-pii-bench-")

    res = tools.evaluate(os.path.join(a.evaldata, "pii_presidio_research", "synth_dataset_v2.json"))
    print(f"1. presidio-research synth_dataset_v2 ({res['records']} records), overlap match:")
    print(f"   {'entity':<16} {'prec':>6} {'recall':>6} {'f1':>6} {'gold':>5}  target")
    for t in TARGETS:
        r = res["entities"].get(t, {"precision": None, "recall": None, "f1": None, "tp": 0, "fn": 0})
        fmt = lambda x: "   -  " if x is None else f"{x:6.3f}"  # noqa: E731
        ok = r["recall"] is not None and r["recall"] >= 0.95 and (r["precision"] or 0) >= 0.90
        print(f"   {t:<16} {fmt(r['precision'])} {fmt(r['recall'])} {fmt(r['f1'])} {r['tp'] + r['fn']:>5}  "
              f"{'OK' if ok else 'MISS'}")
    others = {t: v for t, v in res["entities"].items() if t not in TARGETS and v["detected_by_us"]}
    if others:
        print("   also detected: " + ", ".join(f"{t} p={v['precision']} r={v['recall']}" for t, v in others.items()))

    zh = zh_recall(a.n_zh)
    print(f"\n2. Chinese sentences with faker zh_CN values ({a.n_zh} per entity):")
    for ent, (rec, misses) in zh.items():
        print(f"   {ent:<16} recall {rec:.4f}  (target >= 0.98)" + (f"  missed e.g. {misses}" if misses else ""))

    turns = sharegpt_turns(a.evaldata)
    an = get_analyzer()
    flags = []
    for i, fs in enumerate(an.analyze_batch(turns, ["zh"] * len(turns))):
        if fs:
            flags.append((i, fs))
    share = len(flags) / len(turns)
    print(f"\n3. sharegpt_zh turns with no planted PII: {len(flags)} of {len(turns)} flagged = {share:.4%} "
          f"(target <= 0.5%); by entity {dict(Counter(f.entity_type for _, fs in flags for f in fs))}")
    for i, fs in flags:
        for f in fs:
            ctx = turns[i][max(0, f.start - 15):f.end + 15].replace("\n", " ")
            print(f"   turn {i}: {f.entity_type} {f.score:.2f} {turns[i][f.start:f.end]!r}  ...{ctx}...")

    # 4. throughput: the stage over these turns vs naive presidio on a sample of them
    src = os.path.join(work, "turns.jsonl")
    with open(src, "w", encoding="utf-8") as f:
        for k in [k for _ in range(a.repeat) for k in range(0, len(turns) - 1, 2)]:
            f.write(json.dumps({"messages": [{"role": "user", "content": turns[k]},
                                             {"role": "assistant", "content": turns[k + 1]}]}, ensure_ascii=False) + "\n")
    # several input parts so workers have something to share
    parts = os.path.join(work, "parts")
    runner.run_stage("extract", {"tail_turns": 0}, src, parts, progress=False, rows_per_part=2000)
    n_msgs = sum(len(r["messages"]) for r in shards.iter_records(parts))
    # (a) warm, one process: the stage's own per-part work, start-up excluded like the peer's
    from pipeline.stages.base import StageContext
    from pipeline.stages.pii import Pii, PiiConfig

    stage, cfg = Pii(), PiiConfig(residual_red_line=10 ** 9)
    first = shards.data_files(parts)[0]
    for _ in stage.run_task({"part": first}, cfg, StageContext("pii", None, "warm")):
        pass  # warm-up: recognizers and tldextract's suffix list load on first use
    t = time.perf_counter()
    for p in shards.data_files(parts):
        for _ in stage.run_task({"part": p}, cfg, StageContext("pii", None, "b")):
            pass
    warm = n_msgs / (time.perf_counter() - t)
    # (b) the whole stage with workers, process start-up included
    t = time.perf_counter()
    runner.run_stage("pii", {"residual_red_line": 10 ** 9}, parts, os.path.join(work, "pii"), workers=a.workers,
                     progress=False)
    e2e = n_msgs / (time.perf_counter() - t)
    sample = random.Random(0).sample(turns, min(a.naive_sample, len(turns)))
    naive = naive_presidio(sample)
    print(f"\n4. throughput on {n_msgs} turns (sharegpt_zh x{a.repeat}); peer: presidio analyze (all recognizers) + "
          f"anonymize per text, warm, one process: {naive:.0f} turns/s on {len(sample)} turns")
    print(f"   our pii stage (batched, pre-filtered, pseudonyms, residual re-scan), warm, one process: {warm:.0f} "
          f"turns/s -> {warm / naive:.1f}x (target >= 4x)")
    print(f"   our pii stage, {a.workers} workers, whole stage incl. process start-up: {e2e:.0f} turns/s -> "
          f"{e2e / naive:.1f}x")


if __name__ == "__main__":
    main()
