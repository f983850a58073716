"""Data flywheel: `turnforge admit` admits a clean batch, refuses overlap, residual PII
and garbage into quarantine, and records every check in pool.json."""
import json
import os

import numpy as np
import pytest
import yaml

from conftest import SAMPLES, write_jsonl
from pipeline import cli, flywheel, shards
from pipeline.dedup.minhash import MinHasher

OPENAI = os.path.join(SAMPLES, "openai", "openai_chat.jsonl")
STAGES = [{"name": "extract"}, {"name": "quality"}, {"name": "pii"}, {"name": "dedup", "methods": "exact,minhash"}]
CHECKS = ["size", "compliance", "quality", "consistency_pseudo_share", "consistency_mean_turns", "novelty", "safety"]


def config(tmp_path, stages=STAGES, **extra):
    p = tmp_path / f"cfg{len(list(tmp_path.glob('cfg*')))}.yaml"
    # the mix section must be skipped at admission
    p.write_text(yaml.safe_dump({"seed": 0, "stages": stages, "mix": {"strategy": "multi_task"}, **extra}))
    return str(p)


def admit(cfg, batch, pool, name, *sets):
    args = ["admit", "--config", cfg, "--batch", batch, "--pool", str(pool), "--name", name, "--quiet"]
    for s in sets:
        args += ["--set", s]
    return cli.main(args)


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    """A pool with the OpenAI sample admitted, then the same content refused under another name."""
    tmp = tmp_path_factory.mktemp("fw")
    cfg = config(tmp)
    pool = tmp / "pool"
    rc1 = admit(cfg, OPENAI, pool, "first")
    rc2 = admit(cfg, OPENAI, pool, "again")
    return tmp, cfg, pool, rc1, rc2


def test_clean_batch_admitted_as_shard_folder(pool):
    _, _, p, rc, _ = pool
    assert rc == 0
    meta = json.loads((p / "pool.json").read_text())
    assert [b["name"] for b in meta["batches"]] == ["first"]
    folder = p / "batches" / "0001-first"
    assert shards.is_complete(str(folder))
    recs = list(shards.iter_records(str(folder)))
    assert len(recs) == meta["batches"][0]["counts"]["conversations"] > 0
    assert not (p / "quarantine" / "first").exists()
    with np.load(p / meta["batches"][0]["signatures"]) as z:
        assert z["signatures"].shape == (len(recs), 128)


def test_pool_json_records_every_check_with_values(pool):
    meta = json.loads((pool[2] / "pool.json").read_text())
    checks = {c["name"]: c for c in meta["batches"][0]["checks"]}
    assert list(checks) == CHECKS
    assert all(c["passed"] for c in checks.values())
    assert checks["compliance"]["value"] == 0 and checks["compliance"]["limit"] == 0
    assert checks["quality"]["value"] <= 0.2 and checks["novelty"]["value"] == 0.0
    assert checks["consistency_pseudo_share"]["value"] is None  # no topic stage in this config
    assert checks["consistency_mean_turns"]["value"] >= 1
    assert meta["batches"][0]["sources"][0]["path"] == OPENAI
    assert meta["minhash"]["num_perm"] == 128


def test_same_content_under_new_name_refused_for_overlap(pool):
    _, _, p, _, rc = pool
    assert rc == 1
    d = json.loads((p / "quarantine" / "again" / "decision.json").read_text())
    assert d["admitted"] is False and d["failed"] == ["novelty"]
    assert next(c for c in d["checks"] if c["name"] == "novelty")["value"] == 1.0
    assert not any("again" in x for x in os.listdir(p / "batches"))


def test_same_name_twice_is_an_error(pool, capsys):
    tmp, cfg, p, _, _ = pool
    assert admit(cfg, OPENAI, p, "first") == 2
    assert admit(cfg, OPENAI, p, "again") == 2  # refused before: quarantined
    assert "already in the pool" in capsys.readouterr().err


def test_pool_command_prints_batches_and_totals(pool, capsys):
    assert cli.main(["pool", str(pool[2])]) == 0
    out = capsys.readouterr().out
    assert "batches/0001-first" in out and "total: conversations=" in out and "again" in out


def test_residual_pii_refused_for_compliance(tmp_path):
    batch = write_jsonl(tmp_path / "pii.jsonl", [
        {"messages": [{"role": "user", "content": f"我的手机号是 1381234{i:04d}，请帮我查一下快递到哪了"},
                      {"role": "assistant", "content": "好的，已经帮您查询，包裹明天送达。"}]} for i in range(3)] + [
        {"messages": [{"role": "user", "content": f"Please email me at jane.doe{i}@example.com about my order status"},
                      {"role": "assistant", "content": "Sure, I will send the tracking details there today."}]}
        for i in range(3)])
    cfg = config(tmp_path, [s for s in STAGES if s["name"] != "pii"])
    assert admit(cfg, batch, tmp_path / "pool", "leaky", "red_lines.max_residual_pii=0") == 1
    d = json.loads((tmp_path / "pool" / "quarantine" / "leaky" / "decision.json").read_text())
    assert "compliance" in d["failed"]
    assert next(c for c in d["checks"] if c["name"] == "compliance")["value"] > 0
    assert not os.path.exists(tmp_path / "pool" / "pool.json")
    assert not (tmp_path / "pool" / "batches").exists()


def test_garbage_refused_for_quality(tmp_path):
    good = [{"messages": [{"role": "user", "content": "怎么用 Python 读取一个 CSV 文件？"},
                          {"role": "assistant", "content": "可以用 csv 模块或者 pandas.read_csv，后者更方便。"}]}]
    junk = [{"messages": [{"role": "user", "content": "#$%^&*()_+#$%^&*()_+" * (i + 1)},
                          {"role": "assistant", "content": "..."}]} for i in range(6)]
    junk += [{"messages": [{"role": "user", "content": "加微信 abc123 免费领取，click here"},
                           {"role": "assistant", "content": "好的 " * 3 + str(i)}]} for i in range(3)]
    batch = write_jsonl(tmp_path / "junk.jsonl", good + junk)
    assert admit(config(tmp_path), batch, tmp_path / "pool", "junk") == 1
    d = json.loads((tmp_path / "pool" / "quarantine" / "junk" / "decision.json").read_text())
    q = next(c for c in d["checks"] if c["name"] == "quality")
    assert "quality" in d["failed"] and q["value"] > 0.2


def test_refusal_share_and_limits_from_config(tmp_path):
    rows = [{"messages": [{"role": "user", "content": f"Tell me something about topic number {i} please"},
                          {"role": "assistant", "content": f"As an AI language model, I cannot help with request {i}."}]}
            for i in range(3)]
    rows += [{"messages": [{"role": "user", "content": f"第{i}个问题：怎么做红烧肉？"},
                           {"role": "assistant", "content": f"很抱歉，我无法回答第{i}个问题。"}]} for i in range(2)]
    batch = write_jsonl(tmp_path / "refuse.jsonl", rows)
    cfg = config(tmp_path, [{"name": "extract"}], flywheel={"min_conversations": 2})
    assert admit(cfg, batch, tmp_path / "pool", "refusals") == 1
    d = json.loads((tmp_path / "pool" / "quarantine" / "refusals" / "decision.json").read_text())
    assert d["failed"] == ["safety"] and d["limits"]["min_conversations"] == 2
    assert next(c for c in d["checks"] if c["name"] == "safety")["value"] == 1.0
    assert next(c for c in d["checks"] if c["name"] == "quality")["value"] is None  # stage not run


def test_topic_stage_measured_and_turns_limit(tmp_path):
    cfg = config(tmp_path, [{"name": "extract"}, {"name": "topic", "pseudo_ratio": 0.1}])
    assert admit(cfg, OPENAI, tmp_path / "pool", "short", "flywheel.min_mean_turns=5") == 1
    d = json.loads((tmp_path / "pool" / "quarantine" / "short" / "decision.json").read_text())
    checks = {c["name"]: c for c in d["checks"]}
    assert d["failed"] == ["consistency_mean_turns"]
    assert isinstance(checks["consistency_pseudo_share"]["value"], float)
    assert checks["consistency_mean_turns"]["limit"] == 5


def test_pool_overlap_finds_near_duplicates_only():
    mh = MinHasher(128, 1, 3, 2)
    base = ["the quick brown fox jumps over the lazy dog near the river bank today",
            "今天天气很好，我们一起去公园散步，然后去吃火锅吧"]
    pool = mh.signatures(base, ["en", "zh"])
    cand = mh.signatures([base[0] + " again", base[1], "completely different words about cooking pasta at home",
                          "明天下雨，我在家里看书写代码"], ["en", "zh", "en", "zh"])
    hit = flywheel.pool_overlap(cand, pool, 0.8)
    assert hit.tolist() == [True, True, False, False]
    assert flywheel.pool_overlap(cand, pool[:0], 0.8).tolist() == [False] * 4


def test_split_sets():
    fly, stages = flywheel.split_sets({"red_lines.max_residual_pii": 0, "flywheel.min_mean_turns": 2,
                                       "max_pool_overlap": 0.1, "dedup.threshold": 0.6})
    assert fly == {"max_residual_pii": 0, "min_mean_turns": 2, "max_pool_overlap": 0.1}
    assert stages == {"dedup": {"threshold": 0.6}}


def test_stage_red_line_refuses_batch(tmp_path, monkeypatch):
    from pipeline.stages.base import StageFailed

    def failing_build(cfg_path, out, **kw):
        raise StageFailed("pii: 2 residual PII findings after anonymisation exceed the red line")

    monkeypatch.setattr(flywheel.runner, "build", failing_build)
    assert admit(config(tmp_path), OPENAI, tmp_path / "pool", "redline") == 1
    d = json.loads((tmp_path / "pool" / "quarantine" / "redline" / "decision.json").read_text())
    assert d["failed"] == ["pipeline_red_line"] and "residual" in d["checks"][0]["detail"]
