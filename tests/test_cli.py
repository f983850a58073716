"""The `turnforge` commands as a user runs them."""
import json
import os

from conftest import SAMPLES, write_jsonl
from pipeline.cli import main

LOG = os.path.join(SAMPLES, "logs", "chat_events_2026-11-01.jsonl")


def test_validate_reports_every_bad_line_and_exits_nonzero(capsys):
    assert main(["validate", LOG]) == 1
    out = capsys.readouterr().out
    notes = json.load(open(LOG.replace(".jsonl", ".notes.json"), encoding="utf-8"))
    for b in notes["malformed_lines"]:
        assert f"{LOG}:{b['line']}: " in out
    # the 10 malformed lines, and the reply cut off by the empty user event at line 211 (a
    # missing message splits the session: docs/stages/extract.md), which answers nothing
    assert f"{LOG}:211: no_exchange: " in out
    assert f"input records checked, {len(notes['malformed_lines']) + 1} bad" in out


def test_validate_clean_file_and_shard_folder(tmp_path, capsys):
    p = write_jsonl(tmp_path / "ok.jsonl", [{"messages": [{"role": "user", "content": "q"},
                                                          {"role": "assistant", "content": "a"}]}])
    assert main(["validate", p]) == 0
    assert main(["stage", "extract", "--in", p, "--out", str(tmp_path / "o"), "--quiet"]) == 0
    assert main(["validate", str(tmp_path / "o")]) == 0
    assert "1 records checked, 0 problems" in capsys.readouterr().out


def test_stage_inspect_export(tmp_path, capsys):
    out = str(tmp_path / "o")
    assert main(["stage", "extract", "--in", LOG, "--out", out, "--set", "source=chatlog", "--set", "domain=general",
                 "--quiet"]) == 0
    capsys.readouterr()
    assert main(["inspect", out, "-n", "1"]) == 0
    text = capsys.readouterr().out
    assert "accounting_ok=True" in text and "malformed_json=4" in text and "source=chatlog" in text
    assert main(["inspect", out, "--rejected", "-n", "2"]) == 0
    assert "n_inputs=" in capsys.readouterr().out
    assert main(["export", out, "--format", "sharegpt", "--out", str(tmp_path / "x.jsonl")]) == 0
    first = json.loads(open(tmp_path / "x.jsonl", encoding="utf-8").readline())
    assert first["conversations"][0]["from"] in ("human", "system")


def test_bad_set_and_bad_config_are_clear(tmp_path, capsys):
    assert main(["stage", "extract", "--in", LOG, "--out", str(tmp_path / "o"), "--set", "markup=erase"]) == 2
    assert "extract.markup: 'erase' not in strip|flag|reject" in capsys.readouterr().err
    cfg = tmp_path / "c.yaml"
    cfg.write_text("seed: 1\n")
    assert main(["build", str(cfg), "--out", str(tmp_path / "b")]) == 2
    assert "needs a `stages:` list" in capsys.readouterr().err
