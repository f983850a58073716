"""What the integrity checks (docs/integrity.md) cost, each against a peer measured in the same
run on the same bytes:

1. hashing while writing: the extract output's parts written again with shards.PartWriter
   (xxh3 of every byte, rows/bytes/hash noted for the manifest) vs a plain Arrow stream writer
   with the same fsync and rename; and the same stream written into memory, through the
   hashing sink or not (the hashing's CPU cost without the disk's noise);
2. a stage's input check: shards.check_parts(folder, deep=True) (every part's size and hash) vs
   the quality stage that then reads that folder (1 worker), and vs one plain read of its parts;
3. a reader's check: shards.iter_batches (set and sizes first, rows as read) vs iterating the
   same parts unchecked.

Data: scale_bench's generator (seeded; ~45% en, ~45% zh, ~10% mixed chats, ~1.8 KB of text).
Timings are the best of --repeat runs (the two writers interleaved; the page cache is warm
after the first, as it is for a stage reading what the previous stage just wrote).

    nice -n 10 .venv/bin/python bench/integrity_bench.py --n 20000
Measures the pipeline/ of the tree holding this file. Nothing is asserted; nothing is downloaded.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

import pyarrow as pa  # noqa: E402

from pipeline import integrity, runner, shards  # noqa: E402
from scale_bench import STAGES, generate  # noqa: E402


def best(fn, repeat: int) -> float:
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def rewrite(src_parts: list[str], dest: str, hashed: bool) -> None:
    shutil.rmtree(dest, ignore_errors=True)
    shards.prepare(dest)
    for p in src_parts:
        out = os.path.join(dest, "data", os.path.basename(p))
        if hashed:
            w = shards.PartWriter(out, shards.SCHEMA)
            for b in shards.iter_batches_of(p):
                w.write(b)
            w.close()
        else:  # the peer: what PartWriter did before parts were measured
            tmp = integrity.temp_name(out)
            with open(tmp, "wb") as f:
                with pa.ipc.new_stream(f, shards.SCHEMA) as w:
                    for b in shards.iter_batches_of(p):
                        w.write_batch(b)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, out)
            integrity.fsync_dir(os.path.dirname(out))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--work", default="/tmp/turnforge_integrity_bench")
    a = ap.parse_args()
    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)
    generate(a.n, 0, a.work, files=2)
    ext, q = os.path.join(a.work, "ext"), os.path.join(a.work, "q")
    t0 = time.perf_counter()
    runner.run_stage("extract", dict(STAGES[0][1]), os.path.join(a.work, "input"), ext, progress=False,
                     rows_per_part=5000)
    t_extract = time.perf_counter() - t0
    parts = shards.data_files(ext)
    mb = sum(os.path.getsize(p) for p in parts) / 2 ** 20

    t_plain_write = t_hash_write = float("inf")
    for _ in range(a.repeat):  # interleaved, so a busy moment of the machine hits both
        t_plain_write = min(t_plain_write, best(lambda: rewrite(parts, os.path.join(a.work, "w0"), False), 1))
        t_hash_write = min(t_hash_write, best(lambda: rewrite(parts, os.path.join(a.work, "w1"), True), 1))

    batches = [b for p in parts for b in shards.iter_batches_of(p)]

    def to_memory(hashed: bool) -> None:  # the hashing alone, without the disk and its fsync
        import io
        sink = integrity.HashingSink(io.BytesIO()) if hashed else io.BytesIO()
        with pa.ipc.new_stream(sink, shards.SCHEMA) as w:
            for b in batches:
                w.write_batch(b)

    t_mem_plain = t_mem_hash = float("inf")
    for _ in range(a.repeat):
        t_mem_plain = min(t_mem_plain, best(lambda: to_memory(False), 1))
        t_mem_hash = min(t_mem_hash, best(lambda: to_memory(True), 1))
    del batches

    t_deep = best(lambda: shards.check_parts(ext, deep=True), a.repeat)
    t_read = best(lambda: [None for p in parts for _ in shards.iter_batches_of(p)], a.repeat)
    t_checked = best(lambda: [None for _ in shards.iter_batches(ext)], a.repeat)

    def quality():
        shutil.rmtree(q, ignore_errors=True)
        runner.run_stage("quality", {}, ext, q, progress=False, input_checked=True)

    t_quality = best(quality, 1)

    ms = lambda t: f"{t * 1000:.1f} ms"  # noqa: E731
    print(f"N={a.n} conversations, extract output {mb:.1f} MB in {len(parts)} parts; extract {t_extract:.2f} s")
    print(f"1. write parts: plain {ms(t_plain_write)}, with rows/bytes/xxh3 {ms(t_hash_write)}: "
          f"{t_hash_write / t_plain_write:.2f}x")
    print(f"   the same stream into memory (no disk): plain {ms(t_mem_plain)}, through the hashing sink "
          f"{ms(t_mem_hash)}: {t_mem_hash / t_mem_plain:.2f}x")
    print(f"2. input check (sizes + xxh3 of {mb:.1f} MB) {ms(t_deep)} ({mb / t_deep:,.0f} MB/s) = "
          f"{t_deep / t_quality:.4f}x the quality stage reading it ({t_quality:.2f} s); "
          f"{t_deep / t_read:.2f}x one plain read of the parts ({ms(t_read)})")
    print(f"3. reader: checked iter_batches {ms(t_checked)} vs unchecked {ms(t_read)}: {t_checked / t_read:.2f}x")
    shutil.rmtree(a.work, ignore_errors=True)


if __name__ == "__main__":
    main()
