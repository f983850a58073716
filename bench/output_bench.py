"""What the interop outputs cost (docs/output.md): the dataset card, the `parquet: true` copy and
`turnforge export --format parquet / sharegpt`, against the extract stage that wrote the folder,
measured in the same run.

Data: bench/scale_bench.py's seeded zh/en conversations (~1.8 KB of text each), extracted with
--workers 2 into one shard folder. Then, each in a fresh child process (wall time, its peak RSS by
getrusage's ru_maxrss; imports outside the clock): the card (pipeline.card.write_card), the Parquet copy (write_parquet: part by
part, batch by batch), a one-file Parquet export, a sharegpt JSONL export, and as the memory peer
the naive Parquet write (pyarrow read_all of every part, then pq.write_table). Prints seconds,
ratio to the extract stage's wall time, peak RSS, and Arrow vs Parquet bytes; checks that the
Parquet copy holds the shard's rows.

    .venv/bin/python bench/output_bench.py --n 100000        # options: --workers 2 --work DIR --keep
Nothing is downloaded; nothing is asserted beyond the row check.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

# (imports, timed code): imports are outside the clock
SETUP = "import pyarrow as pa, pyarrow.parquet as pq; from pipeline import card, shards; from pipeline.cli import main"
STEPS = {
    "card": "card.write_card(F, shards.load_manifest(F))",
    "parquet_copy": "card.write_parquet(F)",
    "export_parquet_file": "card.export_parquet(F, W + '/one.parquet')",
    "export_sharegpt": "main(['export', F, '--format', 'sharegpt', '--out', W + '/x.jsonl'])",
    "peer_read_all_write_table": ("pq.write_table(pa.concat_tables([shards.read_table(p) for p in shards.data_files(F)]), "
                                  "W + '/peer.parquet', compression='zstd')"),
}


def child(code: str, folder: str, work: str) -> dict:
    prog = (f"import resource, time, sys; sys.path.insert(0, {ROOT!r}); F, W = {folder!r}, {work!r}; {SETUP}; "
            f"t = time.time(); {code}; print(time.time() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", prog], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": ROOT})
    secs, rss = out.stdout.split()[-2:]
    return {"s": float(secs), "maxrss_mb": int(rss) / 1024}


def size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--work", default="/tmp/turnforge_output_bench")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    from scale_bench import generate

    import pyarrow.parquet as pq

    from pipeline import shards

    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)
    generate(a.n, 0, a.work, max(a.workers, a.n // 50_000))
    folder = os.path.join(a.work, "01-extract")
    t = time.time()
    subprocess.run([sys.executable, "-m", "pipeline.cli", "stage", "extract", "--in", os.path.join(a.work, "input"),
                    "--out", folder, "--workers", str(a.workers), "--set", "source=bench", "--quiet"], cwd=ROOT,
                   check=True, env={**os.environ, "PYTHONPATH": ROOT})
    extract_s = time.time() - t
    res = {"n": a.n, "extract_s": extract_s, "arrow_mb": size(os.path.join(folder, "data")) / 2 ** 20}
    for name, code in STEPS.items():
        res[name] = child(code, folder, a.work)
        res[name]["x_extract"] = res[name]["s"] / extract_s
    res["parquet_mb"] = size(os.path.join(folder, "parquet")) / 2 ** 20
    rows = pq.ParquetDataset(os.path.join(folder, "parquet")).read().num_rows
    res["row_groups"] = {k: pq.ParquetFile(os.path.join(a.work, k + ".parquet")).metadata.num_row_groups
                         for k in ("one", "peer")}
    res["file_mb"] = {k: os.path.getsize(os.path.join(a.work, k + ".parquet")) / 2 ** 20 for k in ("one", "peer")}
    res["rows_match"] = rows == shards.count_rows(shards.data_files(folder))
    res["load1"] = os.getloadavg()[0]
    print(json.dumps(res, indent=1))
    if not a.keep:
        shutil.rmtree(a.work, ignore_errors=True)


if __name__ == "__main__":
    main()
