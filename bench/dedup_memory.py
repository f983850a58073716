"""Dedup's memory by process, before/after a change: the same input at 1x/3x/10x, each code tree
a fresh child `python -m pipeline.cli stage dedup` (exact,minhash, `--workers 2`), peak RSS of the
driver (the stage's own process) and of its whole process tree (psutil, polled every 50 ms),
wall time, and a digest of data/ + rejected/ (equal digests: the same decisions, byte for byte).

Input: the first N conversations of a finished shard folder (e.g. the pii output that
`bench/scale_bench.py --keep` leaves), rewritten as parts of at most 50,000 rows. With
`--partitions 8` the hash-partition reduce tasks run in the workers, so the driver's own
figure shows what it holds beyond them (single-task rounds run inline in the driver).

    python bench/dedup_memory.py --input /tmp/scale/n300000/stages/03-pii --n 30000 100000 300000 \
        --tree /path/to/old/checkout --tree . --partitions 8
Each tree is run with this interpreter. Nothing is asserted; nothing is downloaded.
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

import pyarrow as pa


def subset(src: str, n: int, work: str) -> str:
    out = os.path.join(work, f"in{n}")
    if os.path.exists(os.path.join(out, "_SUCCESS")):
        return out
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(os.path.join(out, "data"))
    left, k = n, 0
    for p in sorted(glob.glob(os.path.join(src, "data", "*.arrow"))):
        if left <= 0:
            break
        with pa.memory_map(p) as f:
            t = pa.ipc.open_stream(f).read_all()
        t = t.slice(0, min(left, t.num_rows))
        with pa.OSFile(os.path.join(out, "data", f"part-{k:05d}.arrow"), "wb") as f, pa.ipc.new_stream(f, t.schema) as w:
            for b in t.to_batches(max_chunksize=4096):
                w.write_batch(b)
        left -= t.num_rows
        k += 1
    with open(os.path.join(src, "manifest.json")) as f:
        m = json.load(f)
    m["counts"] = {"in": n - left, "kept": n - left}
    m.pop("parts", None)  # the per-part checks of the source folder do not describe these parts
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(m, f)
    open(os.path.join(out, "_SUCCESS"), "w").close()
    return out


def measure(cmd: list[str], cwd: str) -> dict:
    import psutil

    t0 = time.time()
    p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    proc, tree, drv = psutil.Process(p.pid), 0, 0
    while p.poll() is None:
        try:
            d = proc.memory_info().rss
            drv = max(drv, d)
            tree = max(tree, d + sum(q.memory_info().rss for q in proc.children(recursive=True)))
        except psutil.Error:
            pass
        time.sleep(0.05)
    if p.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stderr.read().decode()[-3000:]}")
    return {"wall_s": round(time.time() - t0, 1), "driver_mb": round(drv / 2 ** 20), "tree_mb": round(tree / 2 ** 20)}


def digest(folder: str) -> str:
    h = hashlib.sha256()
    for p in sorted(glob.glob(os.path.join(folder, "data", "*.arrow")) + glob.glob(os.path.join(folder, "rejected", "*.arrow"))):
        with open(p, "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:16]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--input", required=True, help="a finished shard folder (dedup's input)")
    ap.add_argument("--n", type=int, nargs="+", default=[30_000, 100_000, 300_000])
    ap.add_argument("--tree", action="append", default=[], help="a checkout to measure (repeat); default: this one")
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--work", default="/tmp/turnforge_dedup_memory")
    a = ap.parse_args()
    trees = [os.path.abspath(t) for t in (a.tree or [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))])]
    os.makedirs(a.work, exist_ok=True)
    res = {}
    for n in a.n:
        inp = subset(a.input, n, a.work)
        for k, tree in enumerate(trees):
            out = os.path.join(a.work, f"out{n}-{k}")
            shutil.rmtree(out, ignore_errors=True)
            cmd = [sys.executable, "-m", "pipeline.cli", "stage", "dedup", "--in", inp, "--out", out, "--workers", "2",
                   "--quiet"] + [x for kv in ("methods=exact,minhash", "keep=longest", "threshold=0.5",
                                              f"partitions={a.partitions}") for x in ("--set", kv)]
            r = {**measure(cmd, tree), "digest": digest(out)}
            res.setdefault(tree, {})[n] = r
            print(f"N={n:>9,} {tree}: wall {r['wall_s']} s, driver {r['driver_mb']} MB, tree {r['tree_mb']} MB, "
                  f"digest {r['digest']}", flush=True)
    for tree, rows in res.items():
        ns = sorted(rows)
        if len(ns) > 1:
            lo, hi = ns[-2], ns[-1]
            per = (rows[hi]["driver_mb"] - rows[lo]["driver_mb"]) * 2 ** 20 / (hi - lo)
            print(f"{tree}: driver growth {lo:,} -> {hi:,}: {per:.0f} B/conversation")
    if len(trees) > 1:
        same = all(len({res[t][n]["digest"] for t in trees}) == 1 for n in a.n)
        print(f"same bytes in every tree at every N: {same}")


if __name__ == "__main__":
    main()
