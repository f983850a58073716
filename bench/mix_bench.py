"""Mix stage throughput and memory on 1M small synthetic records.

    python bench/mix_bench.py [--n 1000000] [--keep DIR]

Writes four domain shard folders (code 15%, math 10%, general 65%, safety 10%; 1-4 turns per
conversation, ~150 characters, `meta.dedup_cluster` set as the dedup stage leaves it) into a
temp dir, then runs each mix in a fresh process and reports wall time, records/s and that
process's peak RSS. "in/s" counts input records (catalog + validation + plan +
copy); "out/s" counts rows written to OUT/final (validation + every stage folder). Peak RSS
is the child's VmHWM (rusage would include the forked image of this parent).
Timings are indicative: the machine is shared.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

SHARES = {"code": 0.15, "math": 0.10, "general": 0.65, "safety": 0.10}
RUNS = [
    ("multi_task, temperature a=0.5", "multi_task", {"alpha": 0.5, "leakage": "clusters"}),
    ("dmt, k = 1 ... 1/32 (7 folders)", "dmt", {"leakage": "clusters"}),
    ("multi_task + MinHash leakage check", "multi_task", {"alpha": 0.5, "leakage": "minhash"}),
]


def make_folder(path: str, domain: str, n: int, seed: int, part_rows: int = 50_000) -> None:
    """n conversations built column-wise with pyarrow (no per-record Python objects)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from pipeline import shards
    from pipeline.schema import MESSAGE, META, SCHEMA

    shards.prepare(path)
    rng = np.random.default_rng(seed)
    w = shards.RollingWriter(os.path.join(path, "data"), "part", SCHEMA, part_rows)
    for lo in range(0, n, part_rows):
        m = min(part_rows, n - lo)
        turns = rng.integers(1, 5, m)
        n_msg = 2 * turns
        rec = np.repeat(np.arange(m), n_msg)
        within = np.arange(len(rec)) - np.repeat(np.cumsum(n_msg) - n_msg, n_msg)
        role = np.where(within % 2 == 0, "user", "assistant")
        words = rng.integers(0, 50_000, (len(rec), 3)).astype(str)
        content = pc.binary_join_element_wise(
            pa.array(np.char.add(f"{domain} ", words[:, 0])), pa.array(words[:, 1]), pa.array(words[:, 2]),
            pa.array(np.char.add("id", (rec + lo).astype(str))), " ")
        msgs = pa.StructArray.from_arrays(
            [pa.array(role), content, pa.array(within // 2, pa.int32()), pa.nulls(len(rec), pa.float32()),
             pa.array(np.zeros(len(rec), bool))], fields=list(MESSAGE))
        offsets = pa.array(np.r_[0, np.cumsum(n_msg)].astype(np.int32))
        ids = pc.binary_join_element_wise(pa.scalar(domain), pa.array((np.arange(m) + lo).astype(str)), "-")
        meta_cols = []
        for f in META:
            if f.name == "stages":
                meta_cols.append(pa.array([["extract", "dedup"]] * m, f.type))
            elif f.name == "dedup_cluster":
                meta_cols.append(ids)
            else:
                meta_cols.append(pa.nulls(m, f.type))
        batch = pa.RecordBatch.from_arrays(
            [ids, pa.array([domain] * m), pa.array([domain] * m), pa.array(["en"] * m),
             pa.ListArray.from_arrays(offsets, msgs), pa.StructArray.from_arrays(meta_cols, fields=list(META))],
            schema=SCHEMA)
        w.write(batch)
    w.close()
    shards.mark_complete(path, {"stage": "bench", "rows": n})


CHILD = """
import json, sys, time
sys.path.insert(0, {root!r})
from pipeline.stages.mix import run_mix
t = time.perf_counter()
m = run_mix({srcs!r}, {out!r}, {params!r}, progress=False)
out_rows = sum(m["validation"]["realised"].values()) + sum(s["total"] for s in m["stages"])
print(json.dumps({{"s": time.perf_counter() - t, "out_rows": out_rows, "stages": len(m["stages"]),
                  "excluded": sum(s["excluded_leakage"] for s in m["sources"].values()), "hwm": hwm()}}))
"""
HWM = """
def hwm():  # this process's peak resident set, MiB
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
"""


def run_child(code: str) -> tuple[dict, float]:
    r = subprocess.run([sys.executable, "-c", HWM + code], stdout=subprocess.PIPE, text=True, check=True)
    res = json.loads(r.stdout.strip().splitlines()[-1])
    return res, res["hwm"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--keep", help="write the inputs and outputs here instead of a temp dir")
    a = ap.parse_args()
    tmp = a.keep or tempfile.mkdtemp(prefix="mix_bench_")
    t = time.perf_counter()
    srcs = []
    for i, (d, share) in enumerate(SHARES.items()):
        path = os.path.join(tmp, "in", d)
        if not os.path.exists(os.path.join(path, "_SUCCESS")):
            make_folder(path, d, int(a.n * share), i)
        srcs.append(path)
    size = sum(os.path.getsize(os.path.join(r, f)) for s in srcs for r, _, fs in os.walk(s) for f in fs)
    print(f"inputs: {a.n:,} records, {size / 2**20:.0f} MiB Arrow, made in {time.perf_counter() - t:.1f} s -> {tmp}")
    base, rss0 = run_child(f"import sys, json; sys.path.insert(0, {ROOT!r}); import pipeline.stages.mix; "
                           f"print(json.dumps({{'hwm': hwm()}}))")
    print(f"baseline process (python + imports): peak RSS {rss0:.0f} MiB")
    print(f"| run | in records | out rows | stages | wall s | in/s | out/s | peak RSS |")
    print("|---|---|---|---|---|---|---|---|")
    for k, (label, strat, params) in enumerate(RUNS):
        out = os.path.join(tmp, f"out{k}")
        shutil.rmtree(out, ignore_errors=True)  # a finished mix would be reused, not timed
        code = CHILD.format(root=ROOT, srcs=srcs, out=out, params={"strategy": strat, **params})
        r, rss = run_child(code)
        print(f"| {label} | {a.n:,} | {r['out_rows']:,} | {r['stages']} | {r['s']:.1f} | {a.n / r['s']:,.0f} | "
              f"{r['out_rows'] / r['s']:,.0f} | {rss:.0f} MiB |" + (f" excluded {r['excluded']}" if r["excluded"] else ""))
        if not a.keep:
            shutil.rmtree(out)
    if not a.keep:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
