"""Flywheel rounds with the tiny model on CPU: a first round promoted, a garbage batch refused by
the data gate, an exploding learning rate refused by the eval gate, the next sane round trained
from round 1's model, fixed validation sets that never leak into training, rollback, the
--since cursor, and rounds killed (SIGKILL) at points of the round leaving the pool as it was."""
import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import yaml
from conftest import ROOT, SAMPLES, write_jsonl

from pipeline import cli, rounds, shards

STAGES = [{"name": "extract"}, {"name": "quality"}, {"name": "pii"}]
MIX = {"strategy": "multi_task", "val_size": 0.1, "long_turns": 2, "long_size": 2}
TRAIN = {"model": "tiny", "max_len": 256, "micro_batch_size": 4, "max_steps": 3, "lr": 0.003, "seed": 0}
JUNK = ([{"messages": [{"role": "user", "content": "#$%^&*()_+#$%^&*()_+" * (i + 1)},
                       {"role": "assistant", "content": "..."}]} for i in range(6)]
        + [{"messages": [{"role": "user", "content": "加微信 abc123 免费领取，click here"},
                         {"role": "assistant", "content": "好的 " * 3 + str(i)}]} for i in range(3)])


def round_(p, batch, name, *extra):
    return cli.main(["round", "--pool", str(p["pool"]), "--config", p["cfg"], "--train", p["train"],
                     "--batch", *([batch] if isinstance(batch, str) else batch), "--name", name, "--quiet", *extra])


def decision(pool, rid):
    return json.loads((pool / "rounds" / rid / "decision.json").read_text())


def link(path):
    return os.readlink(path) if os.path.islink(path) else None


@pytest.fixture(scope="module")
def fw(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rounds")
    cfg = tmp / "build.yaml"
    cfg.write_text(yaml.safe_dump({"seed": 0, "stages": STAGES, "mix": MIX}))
    train = tmp / "train.yaml"
    train.write_text(yaml.safe_dump(TRAIN))
    logs = tmp / "logs"  # a log folder pulled with --since cursor
    logs.mkdir()
    shutil.copy(os.path.join(SAMPLES, "openai", "openai_chat.jsonl"), logs / "day1.jsonl")
    p = {"pool": tmp / "pool", "cfg": str(cfg), "train": str(train), "logs": str(logs), "tmp": tmp}
    rc = {"first": round_(p, str(logs), "first", "--since", "cursor")}
    p["after_first"] = {"current": link(p["pool"] / "models" / "current"),
                        "pool.json": (p["pool"] / "pool.json").read_bytes()}
    rc["junk"] = round_(p, write_jsonl(tmp / "junk.jsonl", JUNK), "junk")
    p["after_junk"] = link(p["pool"] / "models" / "current")
    rc["boom"] = round_(p, os.path.join(SAMPLES, "sharegpt", "sharegpt_mixed.jsonl"), "boom",
                        "--set", "train.lr=50", "--set", "train.grad_clip=0")
    p["after_boom"] = link(p["pool"] / "models" / "current")
    # a sane round whose batch brings a new domain: its validation set joins the fixed ones
    rc["second"] = round_(p, os.path.join(SAMPLES, "alpaca", "alpaca_history.json"), "second", "--domain", "code")
    p["rc"] = rc
    return p


def copy_pool(fw, dest):
    shutil.copytree(fw["pool"], dest, symlinks=True)
    return dest


def state(pool):
    """What a round may change, as comparable values."""
    ls = lambda *d: sorted(os.listdir(os.path.join(pool, *d))) if os.path.isdir(os.path.join(pool, *d)) else []
    return {"pool.json": (pool / "pool.json").read_bytes(), "current": link(pool / "models" / "current"),
            "previous": link(pool / "models" / "previous"), "validation": link(pool / "validation"),
            "batches": ls("batches"), "signatures": ls("signatures"), "candidates": ls("candidates"),
            "quarantine": ls("quarantine"), "rounds": ls("rounds"), "models": ls("models"),
            "cursors": (pool / "cursors.json").read_bytes() if (pool / "cursors.json").exists() else None}


# ----------------------------------------------------------------------------- the rounds

def test_first_round_promoted_from_the_base_model(fw):
    pool = fw["pool"]
    assert fw["rc"]["first"] == 0
    d = decision(pool, "0001-first")
    assert d["promoted"] is True and d["verdict"] == "promoted" and d["parent_model"] == "base:tiny"
    assert fw["after_first"]["current"] == "0001-first"
    assert os.path.exists(pool / "models" / "0001-first" / "model.safetensors")
    # every set got better than the random base, and the gate recorded each comparison
    assert d["eval_gate"]["passed"] and d["eval_gate"]["checks"]
    for c in d["eval_gate"]["checks"]:
        assert c["after"] < c["before"] and c["passed"], c
    assert {"general", "long_multiturn", "redline_safety", "redline_pii_bait"} <= set(d["eval"])
    ev = d["eval"]["long_multiturn"]["after"]
    assert ev["finite"] and ev["by_turn_position"]["1"] is not None and ev["by_turn_position"]["2"] is not None
    assert d["data_gate"]["admitted"] is True and {c["name"] for c in d["data_gate"]["checks"]} >= {"size", "novelty"}


def test_validation_sets_fixed_at_the_first_round(fw):
    d = decision(fw["pool"], "0001-first")
    assert d["validation"]["folder"] == "rounds/0001-first/validation"
    assert set(d["validation"]["sets"]) == {"general", "long_multiturn", "redline_safety", "redline_pii_bait"}
    red = list(shards.iter_records(str(fw["pool"] / "rounds" / "0001-first" / "validation" / "redline_safety")))
    assert len(red) == 10 and {r["domain"] for r in red} == {"redline_safety"}


def test_garbage_batch_refused_by_the_data_gate_current_untouched(fw):
    pool = fw["pool"]
    assert fw["rc"]["junk"] == 1
    d = decision(pool, "0002-junk")
    assert d["verdict"] == "refused_data" and d["promoted"] is False and "quality" in d["data_gate"]["failed"]
    assert fw["after_junk"] == "0001-first"
    assert (pool / "quarantine" / "junk").is_dir()
    assert not (pool / "rounds" / "0002-junk" / "train").exists()  # nothing was trained


def test_exploding_learning_rate_refused_by_the_eval_gate(fw):
    pool = fw["pool"]
    assert fw["rc"]["boom"] == 1
    d = decision(pool, "0003-boom")
    assert d["verdict"] == "refused_eval" and d["promoted"] is False
    assert d["parent_model"] == "models/0001-first" and d["train"]["lr"] == 50
    assert d["eval_gate"]["failed"]
    bad = [c for c in d["eval_gate"]["checks"] if not c["passed"]]
    assert all(c["after"] is None or c["after"] > c["before"] * (1 + c["limit"]) for c in bad)
    assert fw["after_boom"] == "0001-first"
    assert not (pool / "models" / "0003-boom").exists()
    assert not (pool / "rounds" / "0003-boom" / "train" / "final").exists()  # refused weights are not kept


def test_next_sane_round_trains_from_round_one(fw):
    pool = fw["pool"]
    d = decision(pool, "0004-second")
    assert d["parent_model"] == "models/0001-first"
    assert d["train"]["init_from"] == os.path.join(str(pool), "models", "0001-first")
    assert fw["rc"]["second"] == 0 and d["promoted"]
    assert link(pool / "models" / "current") == "0004-second" and link(pool / "models" / "previous") == "0001-first"
    # replay: a little of the earlier admitted batches (boom's data passed its gate; junk never entered)
    assert d["replay"]["records"] >= 1 and d["replay"]["from"] == ["batches/0001-first", "batches/0002-boom"]
    # both models were evaluated on the same fixed sets
    assert set(d["eval"]) == set(d["validation"]["sets"])
    for s, e in d["eval"].items():
        assert e["before"]["turns"] == e["after"]["turns"] > 0, s


def test_new_domain_grows_the_fixed_sets_and_nothing_leaks(fw):
    pool = fw["pool"]
    d = decision(pool, "0004-second")
    assert d["validation"]["added"] == ["code"]
    assert link(pool / "validation") == "rounds/0004-second/validation"
    old = pool / "rounds" / "0001-first" / "validation"
    new = pool / "validation"
    for s in os.listdir(old):  # the sets fixed earlier are the same records
        assert [r["id"] for r in shards.iter_records(str(old / s))] == [r["id"] for r in shards.iter_records(str(new / s))]
    val_ids = {r["id"] for s in os.listdir(new) for r in shards.iter_records(str(new / s))}
    for rid in ("0001-first", "0004-second"):
        final = pool / "rounds" / rid / "mix" / "final"
        train_ids = {r["id"] for st in os.listdir(final) if st.startswith("stage-")
                     for r in shards.iter_records(str(final / st))}
        assert train_ids and not train_ids & val_ids, rid
    assert set(d["leakage"]["excluded"]) == {"new", "replay"}


def test_rounds_lists_rounds_and_the_current_model(fw, capsys):
    assert cli.main(["rounds", str(fw["pool"])]) == 0
    out = capsys.readouterr().out
    assert "current model models/0004-second, previous models/0001-first" in out
    for rid, verdict in (("0001-first", "promoted"), ("0002-junk", "refused_data"), ("0003-boom", "refused_eval")):
        line = next(x for x in out.splitlines() if x.startswith(f"  {rid}"))
        assert verdict in line


def test_rollback_returns_to_the_previous_promoted_model(fw, tmp_path, capsys):
    pool = copy_pool(fw, tmp_path / "pool")
    assert cli.main(["round", "--rollback", str(pool)]) == 0
    assert link(pool / "models" / "current") == "0001-first" and link(pool / "models" / "previous") is None
    hist = [json.loads(x) for x in (pool / "models" / "history.jsonl").read_text().splitlines()]
    assert hist[-1]["event"] == "rollback" and hist[-1]["from"] == "0004-second"
    assert cli.main(["round", "--rollback", str(pool)]) == 2  # round 1's parent is the base: nothing before it
    assert "no previous promoted model" in capsys.readouterr().err


def test_since_cursor_takes_only_new_logs(fw, tmp_path, capsys):
    pool = copy_pool(fw, tmp_path / "pool")
    p = {**fw, "pool": pool}
    before = state(pool)
    assert round_(p, fw["logs"], "again", "--since", "cursor") == 1  # day1 was taken by the first round
    assert "no log file newer" in capsys.readouterr().out and state(pool) == before
    logs = tmp_path / "logs"
    shutil.copytree(fw["logs"], logs)
    files, cur = rounds.select_since(str(pool), [str(logs)], "cursor")  # another source: everything
    assert [os.path.basename(f) for f in files] == ["day1.jsonl"]
    shards.atomic_write_json(str(pool / "cursors.json"), {**json.loads((pool / "cursors.json").read_text()), **cur})
    (logs / "day2.jsonl").write_text("{}\n")
    t = os.stat(logs / "day1.jsonl").st_mtime
    os.utime(logs / "day2.jsonl", (t + 60, t + 60))
    files, _ = rounds.select_since(str(pool), [str(logs)], "cursor")
    assert [os.path.basename(f) for f in files] == ["day2.jsonl"]
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t + 30))
    assert [os.path.basename(f) for f in rounds.select_since(str(pool), [str(logs)], stamp)[0]] == ["day2.jsonl"]


def test_bad_settings_are_errors_naming_the_field(fw, capsys):
    assert round_(fw, os.path.join(SAMPLES, "openai", "openai_chat.jsonl"), "x", "--set", "eval.max_regression=-1") == 2
    assert "round.max_regression" in capsys.readouterr().err
    assert round_(fw, os.path.join(SAMPLES, "openai", "openai_chat.jsonl"), "x", "--set", "train.lrr=1") == 2
    assert "unknown train setting(s) ['lrr']" in capsys.readouterr().err
    assert cli.main(["round", "--pool", str(fw["pool"])]) == 2
    assert "--config, --train, --batch required" in capsys.readouterr().err


# ----------------------------------------------------------------------------- killed rounds

@pytest.mark.parametrize("marker", ["admitting", "admitted", "evaluating"])
def test_killed_round_leaves_the_pool_as_it_was(fw, tmp_path, marker):
    """SIGKILL the round process when it reports `marker`: during the admission build, after the
    batch entered pool.json, during the evaluation. The current model never moves; the next
    command that opens the pool's rounds undoes the rest."""
    pool = copy_pool(fw, tmp_path / "pool")
    before = state(pool)
    batch = os.path.join(SAMPLES, "logs", "chat_events_2026-11-01.jsonl")
    cmd = [sys.executable, "-m", "pipeline.cli", "round", "--pool", str(pool), "--config", fw["cfg"], "--train",
           fw["train"], "--batch", batch, "--name", "killed", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if marker in line:
            proc.kill()
            break
    proc.wait(timeout=120)
    assert proc.returncode == -9, "".join(seen)
    assert link(pool / "models" / "current") == before["current"]
    if marker != "admitting":
        assert json.loads((pool / "pool.json").read_text())["batches"][-1]["name"] == "killed"
    assert cli.main(["rounds", str(pool)]) == 0  # undoes the killed round
    assert state(pool) == before
    assert not (pool / "rounds" / ".inflight.json").exists()


def test_round_killed_after_its_commit_point_is_completed(fw, tmp_path):
    """The decision is in place but the links were not switched yet: the next command finishes."""
    pool = copy_pool(fw, tmp_path / "pool")
    os.remove(pool / "models" / "current")
    os.symlink("0001-first", pool / "models" / "current")
    os.remove(pool / "models" / "previous")
    shards.atomic_write_json(str(pool / "rounds" / ".inflight.json"),
                             {"id": "0004-second", "name": "second", "work": str(pool / "rounds" / ".0004-second.work")})
    rounds.list_rounds(str(pool), open(os.devnull, "w"))
    assert link(pool / "models" / "current") == "0004-second" and link(pool / "models" / "previous") == "0001-first"
    assert json.loads((pool / "pool.json").read_text())["batches"][-1]["name"] == "second"  # kept: it committed


def test_killed_round_can_be_rerun_under_its_name_and_judge_scores_both_models(fw, tmp_path):
    """After a crash that left the batch admitted, the same command runs the round again. The
    rerun also asks `turnforge judge` to score both models' answers: the judge is the SIMULATED
    one of tests/fake_judge.py behind tests/fake_openai.py (no LLM runs here)."""
    from fake_judge import BiasedJudge
    from fake_openai import FakeAPI

    from pipeline import flywheel

    pool = copy_pool(fw, tmp_path / "pool")
    p = {**fw, "pool": pool}
    batch = os.path.join(SAMPLES, "sharegpt", "sharegpt_array.json")
    # a crash after admission, as the journal leaves it: the batch is in pool.json, no decision
    shards.atomic_write_json(str(pool / "rounds" / ".inflight.json"),
                             {"id": "0005-late", "name": "late", "work": str(pool / "rounds" / ".0005-late.work"),
                              "batches_before": [b["id"] for b in flywheel.load_pool(str(pool))["batches"]]})
    assert flywheel.admit(fw["cfg"], [batch], str(pool), name="late", progress=False)["admitted"]
    with FakeAPI(reply=BiasedJudge(position_bias=0.0, noise=0.0)) as api:
        judge = f"{{base_url: '{api.base_url}', model: judge, cache_dir: 'off', repeats: 1, dimensions: helpful}}"
        rc = round_(p, batch, "late", "--set", f"round.judge={judge}", "--set", "round.judge_items=2",
                    "--set", "round.judge_sets=[general, redline_safety]", "--set", "round.min_win_rate=0")
        sent = len(api.requests)
    d = decision(pool, "0005-late")
    assert rc == (0 if d["promoted"] else 1)
    assert d["data_gate"]["admitted"] and d["parent_model"] == "models/0004-second"
    assert [b["name"] for b in flywheel.load_pool(str(pool))["batches"]].count("late") == 1
    j = d["judge"]
    assert j["items"] == 4 and sent > 0
    assert j["usability"]["candidate"] is not None and j["usability"]["current"] is not None
    assert j["win_rate"] is not None
    assert next(c for c in d["eval_gate"]["checks"] if c["name"] == "judge.win_rate")["passed"]
    rows = [json.loads(x) for x in (pool / "rounds" / "0005-late" / "judge" / "items.jsonl").read_text().splitlines()]
    assert [r["id"].split("/")[0] for r in rows] == ["general", "general", "redline_safety", "redline_safety"]
    assert all("answer_b" in r and r["reference"] and r["messages"][-1]["role"] == "assistant" for r in rows)


def test_undo_removes_only_the_killed_rounds_batch(tmp_path):
    """A batch whose name ends like the killed round's (very-late vs late) stays."""
    pool = tmp_path / "pool"
    for sub in ("batches/0001-very-late/data", "batches/0002-late/data", "signatures", "rounds/.0003-late.work",
                "candidates/late", "candidates/very-late"):
        (pool / sub).mkdir(parents=True)
    for f in ("0001-very-late.npz", "0002-late.npz"):
        (pool / "signatures" / f).write_bytes(b"x")
    meta = {"batches": [{"id": "0001-very-late", "name": "very-late"}, {"id": "0002-late", "name": "late"}]}
    (pool / "pool.json").write_text(json.dumps(meta))
    shards.atomic_write_json(str(pool / "rounds" / ".inflight.json"),
                             {"id": "0003-late", "name": "late", "work": str(pool / "rounds" / ".0003-late.work"),
                              "batches_before": ["0001-very-late"], "pool_existed": True})
    with rounds._round_lock(str(pool)):
        assert "undone" in rounds.recover(str(pool))
    assert json.loads((pool / "pool.json").read_text())["batches"] == meta["batches"][:1]
    assert sorted(os.listdir(pool / "batches")) == ["0001-very-late"]
    assert sorted(os.listdir(pool / "signatures")) == ["0001-very-late.npz"]
    assert sorted(os.listdir(pool / "candidates")) == ["very-late"]
    assert not (pool / "rounds" / ".0003-late.work").exists() and not (pool / "rounds" / ".inflight.json").exists()


def test_mix_settings_fit_the_domains_a_round_holds():
    p = {"strategy": "mixed_sequential", "specialist": ["code", "math"], "general": "general",
         "weights": {"math": 2, "code": 1}, "replay": 0.1}
    note = rounds._fit_domains(p, {"code", "general"})
    assert p["specialist"] == ["code"] and p["general"] == ["general"] and p["weights"] == {"code": 1}
    assert p["strategy"] == "mixed_sequential" and "['code', 'math'] -> ['code']" in note
    p = {"strategy": "dmt", "k": "1,1/2"}  # default specialists code, math: none in a general-only round
    note = rounds._fit_domains(p, {"general"})
    assert p == {"strategy": "multi_task"} and "multi_task" in note
    p = {"strategy": "multi_task", "alpha": 0.5}
    assert rounds._fit_domains(p, {"general"}) is None and p == {"strategy": "multi_task", "alpha": 0.5}


def test_exclude_near_drops_what_leaks_into_fixed_sets(tmp_path):
    """The leakage filter a round runs before mixing: same id, or a near copy under another id,
    of a fixed validation record is dropped; the rest is copied with its counts."""
    from pipeline import runner
    from pipeline.stages.mix import exclude_near

    def conv(i, words):
        return {"id": f"r{i}", "messages": [{"role": "user", "content": f"How do I {words}?"},
                                            {"role": "assistant", "content": f"To {words}, open the settings page, "
                                                                             f"choose the option and save it."}]}
    topics = ["reset my router password", "export a spreadsheet to csv", "bake sourdough bread at home",
              "renew a passport online", "tune a guitar by ear", "back up photos from a phone"]
    val = [conv(0, topics[0]), conv(1, topics[1])]
    src = [conv(0, topics[0]),                                   # the same record (id r0)
           {**conv(9, topics[1]), "id": "copy-of-r1"},           # a near copy under another id
           *[conv(i, t) for i, t in enumerate(topics[2:], 2)]]   # unrelated
    for name, rows in (("val", val), ("src", src)):
        runner.run_stage("extract", {"domain": "general"}, write_jsonl(tmp_path / f"{name}.jsonl", rows),
                         str(tmp_path / name), progress=False)
    rep = exclude_near([str(tmp_path / "val")], [str(tmp_path / "src")], [str(tmp_path / "out")])
    kept = sorted(r["id"] for r in shards.iter_records(str(tmp_path / "out")))
    assert kept == ["r2", "r3", "r4", "r5"]
    assert rep["sources"][str(tmp_path / "src")] == {"n": 6, "excluded_leakage": 2, "kept": 4}
    assert shards.load_manifest(str(tmp_path / "out"))["counts"]["records_out"] == 4
