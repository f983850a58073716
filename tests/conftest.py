import json
import os
import sys

import pytest

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = os.path.join(ROOT, "data_samples")


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n")
    return str(path)


def extract_then_pii(tmp_path, convs, salt="s"):
    """Conversations written as JSONL, through extract and pii: (pii records, pii manifest)."""
    from pipeline import runner, shards

    src = write_jsonl(tmp_path / "c.jsonl", convs)
    runner.run_stage("extract", {"source": "t"}, src, str(tmp_path / "ext"), progress=False)
    m = runner.run_stage("pii", {"salt": salt}, str(tmp_path / "ext"), str(tmp_path / "pii"), progress=False)
    return list(shards.iter_records(str(tmp_path / "pii"))), m


@pytest.fixture
def extract(tmp_path):
    """Run the extract stage on a path; return (records, rejected rows, manifest)."""
    from pipeline import runner, shards

    n = [0]

    def run(inp, **params):
        n[0] += 1
        out = str(tmp_path / f"out{n[0]}")
        m = runner.run_stage("extract", params, str(inp), out, progress=False)
        return (list(shards.iter_records(out)), list(shards.iter_records(out, "rejected")), m)

    return run


def event(sid, uid, ts, role, text, **kw):
    return {"session_id": sid, "user_id": uid, "timestamp": ts, "role": role, "text": text, **kw}


def assert_accounting(m, rejected):
    c = m["counts"]
    assert c["in"] == c["kept"] + c["rejected_total"], c
    by_reason = {}
    for r in rejected:
        by_reason[r["reason"]] = by_reason.get(r["reason"], 0) + r["n_inputs"]
    assert {k: v for k, v in by_reason.items() if v} == c["rejected"], (by_reason, c["rejected"])


sys.path.insert(0, os.path.dirname(__file__))
