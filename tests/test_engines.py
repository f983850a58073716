"""The Ray engine (a real local Ray, 2 CPUs) runs the same tasks as the local process pool and
writes the same bytes: the demo build, dedup of ~20k conversations with planted
near-duplicates, a task that fails once (retried by Ray), a build resumed on the other engine."""
import contextlib
import glob
import hashlib
import os
import subprocess
import sys
import time

import pytest

from conftest import ROOT, write_jsonl
from pipeline import runner, shards
from pipeline.config import ConfigError

ray = pytest.importorskip("ray")

# Ray tasks named so fail on their first attempt (in this module's Ray only): the extract task of
# the first input file, the first dedup map task and the second LSH partition task.
FAIL = "00000,map-00000-00000,reduce-lsh-001"


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"TURNFORGE_FAIL_ONCE": FAIL}})
    yield
    ray.shutdown()


def snapshot(root):
    out = {}
    for p in sorted(glob.glob(os.path.join(root, "**", "*.arrow"), recursive=True)):
        if f"{os.sep}.work{os.sep}" not in p:
            with open(p, "rb") as f:  # digests: a mismatch prints names, not megabytes
                out[os.path.relpath(p, root)] = hashlib.sha256(f.read()).hexdigest()[:16]
    return out


def test_demo_build_ray_equals_local(tmp_path):
    cfg = os.path.join(ROOT, "configs", "demo.yaml")
    local = runner.build(cfg, str(tmp_path / "local"), progress=False)
    remote = runner.build(cfg, str(tmp_path / "ray"), progress=False, engine="ray")
    a, b = snapshot(str(tmp_path / "local")), snapshot(str(tmp_path / "ray"))
    assert len(a) > 20 and a == b  # every data and rejected part, and OUT/final
    assert [f["kept"] for f in local["funnel"]] == [f["kept"] for f in remote["funnel"]]
    # the injected failure happened and was retried
    assert os.path.exists(tmp_path / "ray" / "stages" / "01-extract" / ".work" / "00000.failed-once")
    assert not glob.glob(str(tmp_path / "local" / "stages" / "*" / ".work" / "*.failed-once"))


def test_dedup_20k_ray_equals_local(tmp_path):
    from test_dedup_columnar import corpus

    rows = corpus(seed=11, n=15_000)
    assert len(rows) > 19_000
    src = write_jsonl(tmp_path / "c.jsonl", rows)
    ext = str(tmp_path / "ext")
    runner.run_stage("extract", {"source": "s", "tail_turns": 0}, src, ext, rows_per_part=4000, progress=False)
    params = {"methods": "exact,minhash"}
    m1 = runner.run_stage("dedup", params, ext, str(tmp_path / "local"), workers=2, progress=False)
    # on Ray the LSH reduce runs as 3 partition tasks and a merge (local: one partition)
    m2 = runner.run_stage("dedup", {**params, "partitions": 3}, ext, str(tmp_path / "ray"), progress=False,
                          engine="ray")
    assert (m1["dedup"]["lsh_partitions"], m2["dedup"]["lsh_partitions"]) == (1, 3)
    assert m1["dedup"]["dropped"] == m2["dedup"]["dropped"] and sum(m1["dedup"]["dropped"].values()) > 1000
    assert snapshot(str(tmp_path / "local")) == snapshot(str(tmp_path / "ray"))
    for task in ("map-00000-00000", "reduce-lsh-001"):
        assert os.path.exists(tmp_path / "ray" / ".work" / f"{task}.failed-once")


def test_resume_on_the_other_engine(tmp_path):
    cfg = os.path.join(ROOT, "configs", "demo.yaml")
    clean = str(tmp_path / "clean")
    runner.build(cfg, clean, progress=False)
    out = str(tmp_path / "k")
    env = dict(os.environ, TURNFORGE_KILL_AFTER_FILES="9")
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", "build", cfg, "--out", out, "--quiet"], cwd=ROOT,
                       env=env, capture_output=True)
    assert r.returncode != 0 and not os.path.exists(os.path.join(out, "manifest.json"))
    runner.build(cfg, out, progress=False, engine="ray")  # the local build's markers are honoured
    assert snapshot(out) == snapshot(clean)


def test_engine_settings_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="engine 'spark'"):
        runner.run_stage("quality", {}, str(tmp_path), str(tmp_path / "o"), engine="spark")
    with pytest.raises(ConfigError, match="--ray-address needs --engine ray"):
        runner.run_stage("quality", {}, str(tmp_path), str(tmp_path / "o"), ray_address="127.0.0.1:1")
    bad = write_jsonl(tmp_path / "x.jsonl", [])
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"engine: {{name: ray, adress: x}}\nstages: [{{name: extract, inputs: [{bad}]}}]\n")
    with pytest.raises(ConfigError, match="unknown key"):
        runner.build(str(cfg), str(tmp_path / "b"), progress=False)
    assert shards.is_complete(str(tmp_path)) is False


def test_two_nodes_on_this_machine(tmp_path):
    """The cluster recipe of docs/cluster.md: a head and a worker node (1 CPU each) started with
    `ray start --block` in their own process groups, `turnforge stage dedup --engine ray
    --ray-address`, the same bytes as the local engine; the nodes are ended by process group."""
    import signal
    import socket

    cfg = os.path.join(ROOT, "configs", "demo.yaml")
    runner.build(cfg, str(tmp_path / "b"), progress=False)
    pii = str(tmp_path / "b" / "stages" / "03-pii")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    env.pop("RAY_ADDRESS", None)
    ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
    nodes = [subprocess.Popen([ray_bin, "start", "--head", "--port", str(port), "--num-cpus", "1",
                               "--include-dashboard", "false", "--block"], env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        addr = f"127.0.0.1:{port}"
        probe = "import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False); " \
                "sys.exit(0 if len([n for n in ray.nodes() if n['Alive']]) >= int(sys.argv[2]) else 1)"
        for want in (1, 2):
            for _ in range(60):
                if subprocess.run([sys.executable, "-c", probe, addr, str(want)], env=env,
                                  capture_output=True).returncode == 0:
                    break
                time.sleep(1)
            else:
                pytest.fail(f"Ray node {want} did not come up")
            if want == 1:
                nodes.append(subprocess.Popen([ray_bin, "start", "--address", addr, "--num-cpus", "1", "--block"],
                                              env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL))
        out = str(tmp_path / "dd-ray")
        r = subprocess.run([sys.executable, "-m", "pipeline.cli", "stage", "dedup", "--in", pii, "--out", out,
                            "--engine", "ray", "--ray-address", addr, "--quiet"], cwd=ROOT, env=env,
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-2000:]
    finally:
        for p in nodes:  # never `ray stop`: it would stop every Ray on the machine
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    local = runner.run_stage("dedup", {}, pii, str(tmp_path / "dd-local"), progress=False)
    assert local["counts"]["rejected_total"] > 0
    assert snapshot(out) == snapshot(str(tmp_path / "dd-local"))
