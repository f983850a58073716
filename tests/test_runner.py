"""Shard folders, accounting, determinism and crash-resume of `turnforge build`."""
import glob
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import yaml

from conftest import ROOT, event, write_jsonl
from pipeline import runner, shards
from pipeline.config import ConfigError


def make_inputs(d, n_files=4, sessions=60):
    rng = random.Random(7)
    os.makedirs(d, exist_ok=True)
    zh = ["你好", "我的订单还没到", "怎么退款", "谢谢", "那运费呢", "Python 怎么读文件", "还有别的办法吗"]
    en = ["hello", "my order is late", "how do I get a refund", "thanks", "what about shipping?", "and then?"]
    for f in range(n_files):
        rows, t = [], 1_700_000_000 + f * 100_000
        for s in range(sessions):
            for k in range(rng.randint(1, 12)):
                t += rng.randint(1, 400)  # some gaps exceed 30 minutes only across many steps
                role = "user" if k % 2 == 0 else rng.choice(["bot", "客服"])
                rows.append(event(f"f{f}s{s % 20}", f"user{s % 9}", t, role, rng.choice(zh + en) + f" #{s}-{k}"))
        rows.insert(5, "{not json")
        rows.insert(9, event("x", "u", t, "moderator", "hmm"))
        write_jsonl(os.path.join(d, f"log{f}.jsonl"), rows)
    write_jsonl(os.path.join(d, "sft.jsonl"), [
        {"id": f"c{i}", "messages": [{"role": "user", "content": f"问题 {i}"}, {"role": "assistant", "content": "答"}]}
        for i in range(300)] + [{"id": "c1", "messages": [{"role": "user", "content": "dup id"},
                                                         {"role": "assistant", "content": "x"}]}])


def write_config(path, inputs_dir, **extra):
    cfg = {"seed": 0, "rows_per_part": 25, "batch_rows": 10,
           "inputs": [{"path": os.path.join(inputs_dir, "log*.jsonl"), "source": "log", "domain": "general"},
                      {"path": os.path.join(inputs_dir, "sft.jsonl"), "source": "sft", "domain": "math"}],
           "stages": [{"name": "extract", "tail_turns": 4}], **extra}
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    return str(path)


def snapshot(out):
    """Every shard file of a build, by relative path."""
    files = {}
    for p in sorted(glob.glob(os.path.join(out, "stages", "*", "*", "*.arrow"))):
        with open(p, "rb") as f:
            files[os.path.relpath(p, out)] = f.read()
    return files


def cli(*args, env_extra=None, **kw):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, **kw)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp("build")
    make_inputs(str(d / "in"))
    cfg = write_config(d / "cfg.yaml", str(d / "in"))
    t0 = time.time()
    r = cli("build", cfg, "--out", str(d / "clean"), "--quiet")
    assert r.returncode == 0, r.stderr
    n_files = sum(len(fs) for _, _, fs in os.walk(d / "clean"))
    return {"dir": d, "cfg": cfg, "clean": str(d / "clean"), "seconds": time.time() - t0,
            "snap": snapshot(str(d / "clean")), "n_files": n_files}


def test_shard_folder_layout_accounting_and_datasets(built):
    folder = os.path.join(built["clean"], "stages", "01-extract")
    assert shards.is_complete(folder)
    m = shards.load_manifest(folder)
    c = m["counts"]
    assert m["accounting_ok"] and c["in"] == c["kept"] + c["rejected_total"]
    assert c["rejected"]["malformed_json"] == 4 and c["rejected"]["unknown_role"] == 4
    rej = list(shards.iter_records(folder, "rejected"))
    by = {}
    for r in rej:
        if r["n_inputs"]:
            by[r["reason"]] = by.get(r["reason"], 0) + r["n_inputs"]
    assert by == c["rejected"]
    assert len(shards.data_files(folder)) > 1  # rolled parts
    assert c["records_out"] == shards.count_rows(shards.data_files(folder))
    for p in shards.data_files(folder, "rejected"):
        assert os.stat(p).st_mode & 0o777 == 0o600  # raw text before the pii stage
    top = json.load(open(os.path.join(built["clean"], "manifest.json")))
    assert top["funnel"][0]["stage"] == "extract" and top["funnel"][0]["in"] == c["in"]
    assert {"turnforge", "pyarrow", "python"} <= set(m["versions"]) and m["seed"] == 0
    ids = [r["id"] for r in shards.iter_records(folder)]
    assert len(ids) == len(set(ids)) and m["duplicate_ids_renamed"] == 1

    import datasets
    ds = datasets.load_dataset("arrow", data_files=os.path.join(folder, "data", "*.arrow"), split="train",
                               cache_dir=str(built["dir"] / "hf"))
    assert len(ds) == c["records_out"]
    assert set(ds.column_names) == {"id", "source", "domain", "lang", "messages", "meta"}


def test_determinism_and_worker_count_do_not_change_bytes(built):
    out = str(built["dir"] / "again")
    r = cli("build", built["cfg"], "--out", out, "--quiet", "--workers", "2")
    assert r.returncode == 0, r.stderr
    assert snapshot(out) == built["snap"]


@pytest.mark.parametrize("where", [0.0, 0.3, 0.6, 0.85, 0.97, 1.0, "workers"])
def test_resume_after_sigkill_at_file_boundaries(built, where):
    """The process SIGKILLs itself right after its N-th file becomes visible (a data part, a
    rejected part, a task marker, the stage manifest...), then a rerun must finish with
    byte-identical shards. "workers": each of 2 worker processes dies after its 2nd file."""
    kill_after = 2 if where == "workers" else max(1, round(where * built["n_files"]))
    out = str(built["dir"] / f"k{where}")
    workers = "2" if where == "workers" else "1"
    r = cli("build", built["cfg"], "--out", out, "--quiet", "--workers", workers,
            env_extra={"TURNFORGE_KILL_AFTER_FILES": str(kill_after)})
    assert r.returncode != 0  # it really died
    assert not os.path.exists(os.path.join(out, "manifest.json"))  # the build did not finish
    r = cli("build", built["cfg"], "--out", out, "--quiet")
    assert r.returncode == 0, r.stderr
    assert snapshot(out) == built["snap"]


def test_resume_after_sigkill_at_random_moments(built):
    rng = random.Random()
    for i in range(3):
        out = str(built["dir"] / f"t{i}")
        delay = rng.uniform(0.2, 1.0) * built["seconds"]
        p = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "build", built["cfg"], "--out", out, "--quiet"],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        r = cli("build", built["cfg"], "--out", out, "--quiet")
        assert r.returncode == 0, (delay, r.stderr)
        assert snapshot(out) == built["snap"], f"mismatch after a kill at {delay:.2f}s"


def test_finished_stage_is_skipped_and_config_change_is_refused(built, tmp_path):
    folder = os.path.join(built["clean"], "stages", "01-extract")
    before = os.stat(os.path.join(folder, "_SUCCESS")).st_mtime_ns
    runner.build(built["cfg"], built["clean"], progress=False)
    assert os.stat(os.path.join(folder, "_SUCCESS")).st_mtime_ns == before
    cfg2 = write_config(tmp_path / "c2.yaml", str(built["dir"] / "in"))
    y = yaml.safe_load(open(cfg2))
    y["stages"][0]["tail_turns"] = 2
    yaml.safe_dump(y, open(cfg2, "w"))
    with pytest.raises(ConfigError, match=r"with other settings \(tail_turns\); it is not reused"):
        runner.build(cfg2, built["clean"], progress=False)


def test_unknown_settings_and_stages_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) \['tail_turn'\]"):
        runner.run_stage("extract", {"tail_turn": 3}, str(tmp_path), str(tmp_path / "o"), progress=False)
    with pytest.raises(ConfigError, match="unknown stage 'nope'"):
        runner.get_stage("nope")
    r = cli("stage", "extract", "--in", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o2"))
    assert r.returncode == 2 and "no such file" in r.stderr
