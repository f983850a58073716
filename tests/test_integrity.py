"""One writer per output, parts that prove they are whole, an admission that is all or nothing
(docs/integrity.md). Real builds in real processes; the concurrent runs are real processes
too (a run is paused with SIGSTOP while holding its lock, so the overlap is certain)."""
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pytest

from conftest import ROOT, SAMPLES, write_jsonl
from pipeline import cli as tf_cli
from pipeline import flywheel, integrity, runner, shards
from test_runner import cli, make_inputs, snapshot, write_config

STAGES = [{"name": "extract", "tail_turns": 4}, {"name": "dedup", "methods": "exact"}]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp("integrity")
    make_inputs(str(d / "in"), n_files=3, sessions=40)
    cfg = write_config(d / "cfg.yaml", str(d / "in"), stages=STAGES)
    r = cli("build", cfg, "--out", str(d / "lone"), "--quiet")
    assert r.returncode == 0, r.stderr
    return {"dir": d, "cfg": cfg, "lone": str(d / "lone"), "snap": snapshot(str(d / "lone"))}


def fresh_copy(built, name):
    out = str(built["dir"] / name)
    shutil.copytree(built["lone"], out)
    return out


def popen_build(cfg, out):
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli", "build", cfg, "--out", out, "--quiet"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path, proc, timeout=60):
    t0 = time.time()
    while not os.path.exists(path):
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < timeout, f"{path} never appeared"
        time.sleep(0.01)


# ------------------------------------------------------------------ the lock

def test_second_build_into_one_folder_refused_naming_the_holder(built):
    out = str(built["dir"] / "two")
    a = popen_build(built["cfg"], out)
    wait_for(os.path.join(out, integrity.LOCK_NAME), a)
    a.send_signal(signal.SIGSTOP)  # A holds the lock, mid-run
    try:
        b = cli("build", built["cfg"], "--out", out, "--quiet")
    finally:
        a.send_signal(signal.SIGCONT)
    assert b.returncode == 2, b.stderr
    assert f"is in use by another run: pid {a.pid} on host {integrity.HOST}" in b.stderr
    assert "Traceback" not in b.stderr
    _, err = a.communicate(timeout=300)
    assert a.returncode == 0, err
    assert snapshot(out) == built["snap"]  # the refused run changed nothing
    assert not os.path.exists(os.path.join(out, integrity.LOCK_NAME))  # released


def test_two_builds_started_together_one_runs_and_output_equals_a_lone_run(built):
    out = str(built["dir"] / "together")
    procs = [popen_build(built["cfg"], out) for _ in range(2)]
    results = [(p.wait(timeout=300), p.communicate()[1]) for p in procs]
    for rc, err in results:  # the loser (if they overlapped) refuses cleanly; none crashes
        assert rc == 0 or (rc == 2 and "in use by another run" in err), err
    assert any(rc == 0 for rc, _ in results)
    assert snapshot(out) == built["snap"]


def test_stale_lock_of_a_killed_run_is_taken_over(built):
    out = str(built["dir"] / "stale")
    p = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "build", built["cfg"], "--out", out, "--quiet"],
                         cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(os.path.join(out, integrity.LOCK_NAME), p)
    p.send_signal(signal.SIGKILL)
    p.wait()
    held = json.load(open(os.path.join(out, integrity.LOCK_NAME)))
    assert held["pid"] == p.pid and held["host"] == integrity.HOST
    r = cli("build", built["cfg"], "--out", out, "--quiet")
    assert r.returncode == 0, r.stderr
    assert f"took over a stale lock (its process {p.pid} on this host is dead)" in r.stderr
    assert snapshot(out) == built["snap"]


def test_lock_of_another_host_is_stale_only_without_heartbeat(tmp_path):
    folder = str(tmp_path / "shared")
    os.makedirs(folder)
    path = os.path.join(folder, integrity.LOCK_NAME)
    with open(path, "w") as f:
        json.dump({"pid": 1, "host": "some-other-node", "started": "then", "token": "t"}, f)
    with pytest.raises(integrity.LockHeld, match="pid 1 on host some-other-node"):
        integrity.FolderLock(folder, stale_after_s=60).acquire()
    old = time.time() - 120
    os.utime(path, (old, old))  # its holder stopped touching it two minutes ago
    lock = integrity.FolderLock(folder, stale_after_s=60)
    lock.acquire()
    assert json.load(open(path))["token"] == lock.token
    with integrity.FolderLock(os.path.join(folder, "inner")) as inner:  # nested: free for the holder
        assert inner.nested
    lock.release()
    assert not os.path.exists(path)


# ------------------------------------------------------------------ parts that prove they are whole

def cut_at_batch_boundary(path):
    """Keep the first record batch of a part: a shorter, perfectly valid Arrow stream."""
    with pa.OSFile(path, "rb") as src:
        reader = pa.ipc.open_stream(src)
        first = next(iter(reader))
        schema = reader.schema
    with pa.OSFile(path, "wb") as sink:
        with pa.ipc.new_stream(sink, schema) as w:
            w.write_batch(first)
    return first.num_rows


def flip_a_byte(path):
    with open(path, "r+b") as f:
        data = f.read()
        at = data.rindex("#".encode())  # inside a message's text: still parses
        f.seek(at)
        f.write(b"%")


def test_manifest_lists_rows_bytes_and_hash_of_every_part(built):
    folder = os.path.join(built["lone"], "stages", "01-extract")
    m = shards.load_manifest(folder)
    files = shards.data_files(folder) + shards.data_files(folder, "rejected")
    assert sorted(m["parts"]) == sorted(os.path.relpath(p, folder) for p in files)
    for p in files:
        e = m["parts"][os.path.relpath(p, folder)]
        assert e["bytes"] == os.path.getsize(p)
        assert e["rows"] == shards.count_rows([p])
        assert e["xxh3_64"] == integrity.hash_file(p)
    assert shards.check_parts(folder, deep=True) == []


@pytest.mark.parametrize("damage", ["cut", "flip"])
def test_damaged_part_caught_by_validate_next_stage_and_rebuilt_by_a_rerun(built, damage, capsys):
    out = fresh_copy(built, f"damaged-{damage}")
    ext = os.path.join(out, "stages", "01-extract")
    part = shards.data_files(ext)[1]
    rows_before = shards.load_manifest(ext)["parts"]["data/" + os.path.basename(part)]["rows"]
    if damage == "cut":
        assert cut_at_batch_boundary(part) < rows_before
    else:
        flip_a_byte(part)
    # validate: a cut part by its size; a flipped byte by its hash (--deep)
    args = ["validate", ext] + (["--deep"] if damage == "flip" else [])
    assert tf_cli.main(args) == 1
    said = capsys.readouterr().out
    assert part in said and ("truncated" if damage == "cut" else "damaged") in said
    if damage == "flip":
        assert tf_cli.main(["validate", ext]) == 0  # size and rows alone cannot see it
        capsys.readouterr()
    # the next stage, run on its own: stops before reading, naming the part
    assert tf_cli.main(["stage", "dedup", "--in", ext, "--out", os.path.join(out, "x"), "--quiet",
                        "--set", "methods=exact"]) == 2
    err = capsys.readouterr().err
    assert part in err and "damaged shard folder" in err
    # a reader (export) of the finished folder: a cut part stops it by size
    if damage == "cut":
        assert tf_cli.main(["export", ext, "--out", os.path.join(out, "e.jsonl")]) == 2
        assert part in capsys.readouterr().err
    # a build rerun whose next stage still has to run redoes the damaged stage
    shutil.rmtree(os.path.join(out, "stages", "02-dedup"))
    os.remove(os.path.join(out, "manifest.json"))
    r = cli("build", built["cfg"], "--out", out, "--quiet")
    assert r.returncode == 0, r.stderr
    assert "no longer matches its manifest" in r.stderr and part in r.stderr
    assert snapshot(out) == built["snap"]


def test_build_rerun_redoes_a_finished_stage_whose_part_was_cut(built):
    out = fresh_copy(built, "rerun-cut")
    part = shards.data_files(os.path.join(out, "stages", "01-extract"))[0]
    cut_at_batch_boundary(part)
    r = cli("build", built["cfg"], "--out", out, "--quiet")
    assert r.returncode == 0, r.stderr
    assert "01-extract no longer matches its manifest" in r.stderr
    assert snapshot(out) == built["snap"]  # extract and everything after it rebuilt


def test_readers_check_rows_when_sizes_agree(tmp_path):
    """A part rewritten with other rows but the listed size is caught by its row count."""
    folder = str(tmp_path / "f")
    shards.prepare(folder)
    schema = pa.schema([("x", pa.int64())])
    w = shards.PartWriter(os.path.join(folder, "data", "p.arrow"), schema)
    w.write(pa.record_batch([pa.array([1, 2, 3, 4])], schema=schema))
    w.close()
    shards.mark_complete(folder, {"stage": "t"})
    m = shards.load_manifest(folder)
    m["parts"]["data/p.arrow"]["rows"] = 5
    shards.atomic_write_json(os.path.join(folder, "manifest.json"), m)
    with pytest.raises(shards.PartMismatch, match=r"p.arrow: 4 rows, the manifest says 5"):
        list(shards.iter_batches(folder))


def test_failed_write_names_the_file_and_leaves_no_temp(tmp_path):
    folder = tmp_path / "ro"
    (folder / "data").mkdir(parents=True)
    os.chmod(folder / "data", 0o500)
    try:
        if os.access(folder / "data", os.W_OK):
            pytest.skip("running as a user that ignores permissions")
        with pytest.raises(PermissionError, match=r"stage t: cannot write .*ro/data/p.arrow"):
            shards.PartWriter(str(folder / "data" / "p.arrow"), pa.schema([("x", pa.int64())]), what="stage t")
    finally:
        os.chmod(folder / "data", 0o700)
    assert os.listdir(folder / "data") == []


def test_temp_names_differ_per_writer():
    names = {integrity.temp_name("/x/part.arrow") for _ in range(100)}
    assert len(names) == 100 and all(f".{os.getpid()}." in n and n.endswith(".tmp") for n in names)


# ------------------------------------------------------------------ admission as a transaction

OPENAI = os.path.join(SAMPLES, "openai", "openai_chat.jsonl")


def pool_state(pool):
    """Everything an admission leaves, times aside: file names, pool.json, decisions, bytes of
    the batch folders and signatures."""
    files = sorted(os.path.relpath(os.path.join(d, f), pool) for d, _, fs in os.walk(pool) for f in fs)
    state = {"files": files}
    for rel in files:
        p = os.path.join(pool, rel)
        if rel.endswith((".json", ".yaml")) and not rel.endswith((".lock",)):
            with open(p, encoding="utf-8") as f:
                text = f.read()
            try:
                obj = json.loads(text)
                for b in obj.get("batches", []) if isinstance(obj, dict) else []:
                    b.pop("time", None)
                if isinstance(obj, dict):
                    obj.pop("time", None)
                    obj.pop("mtime_ns", None)  # a part writer's note of when (parts_info's cache key)
                state[rel] = obj
            except ValueError:
                state[rel] = text
        elif rel.startswith(("batches", "signatures")):
            with open(p, "rb") as f:
                state[rel] = f.read()
    return state


def forked(fn, kill_after=0):
    """Run fn in a forked child (the kill hook counts its file operations only); returns
    (exit status, what fn returned, or None when it was killed)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            integrity.set_kill_after_ops(kill_after)
            res = fn()
            os.write(w, json.dumps(res).encode())
            os._exit(0)
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            os.write(w, json.dumps({"error": repr(e)}).encode())
            os._exit(3)
    os.close(w)
    data = b""
    while chunk := os.read(r, 1 << 16):
        data += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    return status, (json.loads(data) if data else None)


def test_admission_killed_after_every_file_operation_then_rerun_equals_uninterrupted(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(json.dumps({"seed": 0, "rows_per_part": 8, "stages": [{"name": "extract"}]}))
    other = write_jsonl(tmp_path / "b2.jsonl", [
        {"messages": [{"role": "user", "content": f"第 {i} 个问题：怎么把文件 {i} 转成 PDF？"},
                      {"role": "assistant", "content": f"用导出菜单，第 {i} 步选 PDF。"}]}
        for i in range(30)])
    pool = str(tmp_path / "pool")
    assert flywheel.admit(str(cfg), [OPENAI], pool, name="b1", progress=False)["admitted"]
    pristine = str(tmp_path / "pristine")
    shutil.copytree(pool, pristine)

    def admit_b2():
        integrity_ops_before = integrity.file_ops()
        d = flywheel.admit(str(cfg), [other], pool, name="b2", progress=False)
        return {"admitted": d["admitted"], "ops": integrity.file_ops() - integrity_ops_before}

    status, res = forked(admit_b2)
    assert status == 0 and res["admitted"], res
    total = res["ops"]
    reference = pool_state(pool)
    assert "pool.json" in reference and "batches/0002-b2/_SUCCESS" in reference["files"]
    assert total > 20

    for n in range(1, total + 1):
        shutil.rmtree(pool)
        shutil.copytree(pristine, pool)
        status, _ = forked(admit_b2, kill_after=n)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (n, status)
        status, res = forked(lambda: flywheel.admit(str(cfg), [other], pool, name="b2", progress=False)["admitted"])
        if n == total:  # killed after its very last step: the admission was already whole
            assert res and "already in the pool" in res.get("error", ""), (n, res)
        else:
            assert status == 0 and res is True, (n, res)
        assert pool_state(pool) == reference, f"pool differs after a kill at file operation {n}"


def test_interrupted_commit_is_shown_by_pool_and_finished_by_the_next_admit(tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(json.dumps({"seed": 0, "stages": [{"name": "extract"}]}))
    pool = str(tmp_path / "pool")

    def admit_until_journal():  # killed right after the journal entry is written
        orig = flywheel._commit
        flywheel._commit = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
        try:
            flywheel.admit(str(cfg), [OPENAI], pool, name="b1", progress=False)
        finally:
            flywheel._commit = orig

    status, _ = forked(admit_until_journal)
    assert os.WIFSIGNALED(status)
    assert tf_cli.main(["pool", pool]) == 0
    out = capsys.readouterr().out
    assert "0 admitted batches" in out and "interrupted: the admission of batches/0001-b1" in out
    # the same logs under a new name: the interrupted admission is finished first, so the
    # novelty check sees b1 and refuses the copy
    d = flywheel.admit(str(cfg), [OPENAI], pool, name="b1-again", progress=False)
    assert d["admitted"] is False and d["failed"] == ["novelty"]
    assert [b["name"] for b in flywheel.load_pool(pool)["batches"]] == ["b1"]
    assert tf_cli.main(["pool", pool]) == 0
    out = capsys.readouterr().out
    assert "1 admitted batches" in out and "quarantine/b1-again" in out and "failed: novelty" in out
    assert "interrupted: " not in out


def test_pool_with_only_a_refused_batch_shows_its_quarantine(tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(json.dumps({"seed": 0, "stages": [{"name": "extract"}]}))
    pool = str(tmp_path / "pool")
    d = flywheel.admit(str(cfg), [OPENAI], pool, name="tiny", sets={"min_conversations": 10_000}, progress=False)
    assert d["admitted"] is False
    assert not os.path.exists(os.path.join(pool, "pool.json"))
    assert tf_cli.main(["pool", pool]) == 0
    out = capsys.readouterr().out
    assert "0 admitted batches" in out and "quarantine: 1 refused batches" in out and "failed: size" in out
    assert tf_cli.main(["pool", str(tmp_path / "nothing")]) == 2
    assert "not a pool" in capsys.readouterr().err


def test_second_admission_into_a_pool_in_use_is_refused(tmp_path):
    pool = str(tmp_path / "pool")
    with integrity.FolderLock(pool, "admit"):
        status, res = forked(lambda: flywheel.admit(os.path.join(ROOT, "configs", "demo.yaml"), [OPENAI], pool,
                                                     name="x", progress=False))
    assert status != 0 and "is in use by another run" in res["error"]
    assert glob.glob(os.path.join(pool, "*")) == []


def test_disk_full_names_the_file_and_stage_and_leaves_no_temp_files(built):
    """A file-size limit (RLIMIT_FSIZE, in a forked child) makes writes fail with EFBIG the way
    a full disk fails them with ENOSPC: the error names the part and the stage, and the part's
    temp file is removed."""
    import resource

    out = str(built["dir"] / "full")

    def run():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, resource.RLIM_INFINITY))
        runner.run_stage("extract", {"tail_turns": 4}, str(built["dir"] / "in" / "log0.jsonl"), out,
                         rows_per_part=100_000, progress=False)

    status, res = forked(run)
    assert status != 0
    err = res["error"]
    assert "stage extract task" in err and "cannot write" in err and "data/part-" in err and "too large" in err
    assert glob.glob(os.path.join(out, "**", "*.tmp"), recursive=True) == []
    assert not os.path.exists(os.path.join(out, integrity.LOCK_NAME))  # released on the way out


def test_stage_inside_a_build_in_use_is_refused(tmp_path):
    out = str(tmp_path / "out")
    with integrity.FolderLock(out, "build"):
        status, res = forked(lambda: runner.run_stage("extract", {}, os.path.join(SAMPLES, "openai"),
                                                       os.path.join(out, "stages", "01-extract"), progress=False))
    assert status != 0 and "inside" in res["error"] and "in use by another run" in res["error"]
    assert not os.path.exists(os.path.join(out, "stages", "01-extract"))


def test_stage_rerun_rebuilds_its_own_damaged_folder(built, capsys):
    out = str(built["dir"] / "stage-again")
    inp = str(built["dir"] / "in" / "sft.jsonl")
    runner.run_stage("extract", {"tail_turns": 4}, inp, out, progress=False, rows_per_part=25, batch_rows=10)
    before = {p: open(p, "rb").read() for p in shards.data_files(out)}
    cut_at_batch_boundary(shards.data_files(out)[0])
    runner.run_stage("extract", {"tail_turns": 4}, inp, out, progress=False, rows_per_part=25, batch_rows=10)
    assert "no longer matches its manifest" in capsys.readouterr().err
    assert {p: open(p, "rb").read() for p in shards.data_files(out)} == before
    assert shards.check_parts(out, deep=True) == []
