"""Mistakes an operator makes at the command line (a typo, a wrong path, Ctrl-C) end with a
clear message and a non-zero exit, never a silent pass, and leave nothing that blocks the
corrected command."""
import json
import os

import pytest
import yaml

from conftest import write_jsonl
from pipeline.cli import main


def chats(path, n=4):
    return write_jsonl(path, [{"messages": [{"role": "user", "content": f"question {i}"},
                                            {"role": "assistant", "content": f"answer number {i}"}]}
                              for i in range(n)])


def build_config(tmp_path, **cfg):
    p = tmp_path / "build.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return str(p)


def error_lines(capsys):
    err = capsys.readouterr().err
    return [line.strip() for line in err.splitlines()]


# ------------------------------------------------------------------ unknown keys, whole config

def test_unknown_keys_everywhere_are_named_with_the_closest_known_one(tmp_path, capsys):
    src = chats(tmp_path / "a.jsonl")
    cfg = build_config(tmp_path, mixx={"strategy": "multi_task"}, colour="red",
                       inputs=[{"path": src, "sourse": "t"}], stages=[{"name": "extract"}])
    out = tmp_path / "out"
    assert main(["build", cfg, "--out", str(out), "--set", "extrakt.tail_turns=3", "--quiet"]) == 2
    lines = error_lines(capsys)
    assert "mixx: unknown key; did you mean mix?" in lines
    assert "colour: unknown key" in lines
    assert "inputs[0].sourse: unknown key; did you mean source?" in lines
    assert "--set extrakt.tail_turns: unknown stage 'extrakt'; did you mean extract?" in lines
    assert not out.exists()


def test_every_problem_is_reported_before_the_first_stage_runs(tmp_path, capsys):
    src = chats(tmp_path / "a.jsonl")
    cfg = build_config(tmp_path, inputs=[{"path": src}],
                       stages=[{"name": "extract"}, {"name": "quality"},
                               {"name": "dedup", "treshold": 0.5, "keep": "biggest"}, {"name": "topc"}],
                       mix={"alpah": 0.5}, engine={"name": "local", "adress": "x"})
    out = tmp_path / "out"
    assert main(["build", cfg, "--out", str(out), "--set", "quality.rulez=spam", "--quiet"]) == 2
    lines = error_lines(capsys)
    assert lines[0].startswith(f"turnforge: error: {cfg}: ") and "nothing was run" in lines[0]
    want = ["stages[2].treshold: unknown key; did you mean threshold?",
            "--set quality.rulez: unknown key; did you mean rules?",
            "stages[3].name: unknown stage 'topc'; did you mean topic?",
            "mix.alpah: unknown key; did you mean alpha?",
            "engine.adress: unknown key; did you mean address?"]
    assert [w for w in want if w not in lines] == []
    assert any(line.startswith("stages[2]: ") and "biggest" in line for line in lines)
    assert not out.exists()  # no stage ran, no folder was made


def test_a_set_for_a_stage_the_build_does_not_run_is_an_error(tmp_path, capsys):
    cfg = build_config(tmp_path, inputs=[{"path": chats(tmp_path / "a.jsonl")}], stages=["extract"])
    assert main(["build", cfg, "--out", str(tmp_path / "o"), "--set", "dedup.threshold=0.6"]) == 2
    assert "--set dedup.threshold: this build has no dedup stage" in capsys.readouterr().err


def test_stage_set_typo_names_the_closest_setting(tmp_path, capsys):
    src = chats(tmp_path / "a.jsonl")
    assert main(["stage", "extract", "--in", src, "--out", str(tmp_path / "o"), "--set", "tail_turn=3"]) == 2
    assert "(tail_turn: did you mean tail_turns?)" in capsys.readouterr().err


# ------------------------------------------------------------------ a failed start blocks nothing

def test_a_missing_input_leaves_nothing_that_blocks_the_corrected_stage(tmp_path, capsys):
    good = chats(tmp_path / "a.jsonl")
    out = str(tmp_path / "o")
    assert main(["stage", "extract", "--in", str(tmp_path / "typo.jsonl"), "--out", out, "--quiet"]) == 2
    assert "typo.jsonl" in capsys.readouterr().err and not os.path.exists(out)
    assert main(["stage", "extract", "--in", good, "--out", out, "--quiet"]) == 0


def test_a_missing_input_leaves_nothing_that_blocks_the_corrected_build(tmp_path, capsys):
    good = chats(tmp_path / "a.jsonl")
    out = str(tmp_path / "o")
    bad = build_config(tmp_path, inputs=[{"path": str(tmp_path / "typo.jsonl")}], stages=["extract"])
    assert main(["build", bad, "--out", out, "--quiet"]) == 2
    assert "inputs[0].path: input path" in capsys.readouterr().err
    fixed = build_config(tmp_path, inputs=[{"path": good}], stages=["extract"])
    assert main(["build", fixed, "--out", out, "--quiet"]) == 0


def test_a_start_that_failed_before_any_task_finished_is_replaced(tmp_path, capsys):
    """The input exists, but no format is detected in its only file: nothing finished, so the
    corrected command (with `fields:`) is not blocked."""
    src = write_jsonl(tmp_path / "odd.jsonl", [{"sid": 1, "who": r, "said": t}
                                                for r, t in (("user", "hi"), ("assistant", "hello"))])
    out = str(tmp_path / "o")
    assert main(["stage", "extract", "--in", src, "--out", out, "--quiet"]) == 2
    assert "cannot detect the input format" in capsys.readouterr().err
    assert main(["stage", "extract", "--in", src, "--out", out, "--quiet",
                 "--set", "fields={session_id: sid, role: who, text: said}"]) == 0


# ------------------------------------------------------------------ paths that are not shard folders

@pytest.mark.parametrize("cmd", [["inspect"], ["export", "--out", "EXPORT"], ["scan"]])
def test_a_missing_or_foreign_folder_is_an_error_not_an_empty_result(tmp_path, capsys, cmd):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("not data")
    for path, says in ((tmp_path / "typo", "no such"), (tmp_path / "notes", "not a shard folder")):
        args = [str(tmp_path / "x.jsonl") if c == "EXPORT" else c for c in cmd]
        assert main([args[0], str(path), *args[1:]]) == 2, path
        err = capsys.readouterr().err
        assert str(path) in err and says in err
    assert not (tmp_path / "x.jsonl").exists()  # export made no file


def test_export_of_a_build_folder_exports_its_last_stage(tmp_path, capsys):
    cfg = build_config(tmp_path, inputs=[{"path": chats(tmp_path / "a.jsonl", n=3)}], stages=["extract"])
    assert main(["build", cfg, "--out", str(tmp_path / "b"), "--quiet"]) == 0
    assert main(["export", str(tmp_path / "b"), "--out", str(tmp_path / "x.jsonl")]) == 0
    assert len((tmp_path / "x.jsonl").read_text().splitlines()) == 3


def test_scan_reads_a_folder_of_raw_input_files(tmp_path, capsys):
    raw = tmp_path / "raw"
    raw.mkdir()
    write_jsonl(raw / "a.jsonl", [{"messages": [{"role": "user", "content": "mail me at jane.doe@example.com"},
                                                {"role": "assistant", "content": "ok"}]}, "{broken"])
    assert main(["scan", str(raw)]) == 1
    out = capsys.readouterr().out
    assert "2 messages scanned" in out and "EMAIL_ADDRESS" in out
    assert "jane.doe" not in out  # offsets only, never the value
    assert "not scanned: 1 input units" in out and "malformed_json" in out


# ------------------------------------------------------------------ Ctrl-C

def test_ctrl_c_prints_one_line_exits_130_and_the_rerun_resumes(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT

    raw = tmp_path / "raw"
    raw.mkdir()
    for f in range(8):  # long enough (seconds) to be interrupted mid-stage
        write_jsonl(raw / f"log{f}.jsonl", [{"session_id": f"s{i // 6}", "user_id": "u", "text": f"m {i}",
                                             "role": "assistant" if i % 2 else "user", "timestamp": 1_700_000_000 + 10 * i}
                                            for i in range(40_000)])
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "pipeline.cli", "stage", "extract", "--in", str(raw), "--out", str(out), "--workers", "2",
           "--quiet"]
    # its own process group, as a terminal's foreground job: Ctrl-C signals every process in it
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    deadline = time.time() + 60
    while not (out / ".work" / "fingerprint").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    os.killpg(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "Traceback" not in err
    assert err.splitlines() == ["turnforge: interrupted; rerun the same command to resume"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr


# ------------------------------------------------------------------ help and version

def subparsers(p):
    import argparse

    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sp in a.choices.items():
                yield name, sp
                yield from ((f"{name} {n}", s) for n, s in subparsers(sp))


def test_every_option_of_every_command_has_a_help_text():
    from pipeline.cli import _parser

    missing = [f"{name} {a.dest}" for name, sp in subparsers(_parser()) for a in sp._actions
               if not (a.help or "").strip() and not a.dest == "help"]
    assert missing == []


@pytest.mark.parametrize("stage", ["dedup", "extract"])
def test_stage_help_lists_every_setting_with_its_default(stage, capsys):
    import dataclasses

    from pipeline.runner import get_stage

    with pytest.raises(SystemExit) as e:
        main(["stage", stage, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--out" in out and "--workers" in out and "--set" in out
    for f in dataclasses.fields(get_stage(stage).Config):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        assert f"  {f.name}: " in out and f" = {default!r}" in out, f.name
    assert f"docs/stages/{stage}.md" in out


def test_version_is_the_package_version(capsys):
    import re

    from conftest import ROOT
    import pipeline

    want = re.search(r'^version = "(.+)"', open(os.path.join(ROOT, "pyproject.toml")).read(), re.M).group(1)
    assert pipeline._source_version() == want  # what a source tree that is not installed reports
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"turnforge {want}"


# ------------------------------------------------------------------ owner-only before pii

def modes(folder):
    """(mode of every folder, mode of every file) under `folder`, itself included."""
    dirs, files = set(), set()
    for root, _, fs in os.walk(folder):
        dirs.add(os.stat(root).st_mode & 0o777)
        files |= {os.stat(os.path.join(root, f)).st_mode & 0o777 for f in fs}
    return dirs, files


def test_stage_folders_that_may_hold_raw_personal_data_are_owner_only(tmp_path):
    old = os.umask(0o022)  # a usual umask: what is not owner-only would be readable by others
    try:
        topics = ["my parcel is late", "how do I reset a router", "best soup for winter", "fix a flat bike tyre",
                  "learn Python quickly", "plan a trip to Lisbon"]
        src = write_jsonl(tmp_path / "a.jsonl", [{"messages": [
            {"role": "user", "content": f"I am Jane Roe, call me on +1 202 555 01{i:02d}: {t}?"},
            {"role": "assistant", "content": f"Here is what I suggest about {t}."}]} for i, t in enumerate(topics)])
        cfg = build_config(tmp_path, inputs=[{"path": src}],
                           stages=["extract", "quality", "pii", {"name": "dedup", "methods": "exact"}],
                           mix={"val_size": 1, "long_size": 0})
        out = tmp_path / "b"
        assert main(["build", cfg, "--out", str(out), "--workers", "2", "--quiet"]) == 0
        stages = out / "stages"
        for raw in ("01-extract", "02-quality"):  # before pii: raw text
            assert modes(stages / raw) == ({0o700}, {0o600}), raw
        for anon in ("03-pii", "04-dedup"):
            assert 0o644 in modes(stages / anon)[1], anon
        assert os.stat(stages).st_mode & 0o777 == 0o755 and 0o644 in modes(out / "final")[1]
        # `stage` runs follow their input: raw input makes an owner-only folder, anonymised input does not
        assert main(["stage", "quality", "--in", str(stages / "01-extract"), "--out", str(tmp_path / "q1"),
                     "--quiet"]) == 0
        assert modes(tmp_path / "q1") == ({0o700}, {0o600})
        assert main(["stage", "quality", "--in", str(stages / "03-pii"), "--out", str(tmp_path / "q2"),
                     "--quiet"]) == 0
        assert 0o644 in modes(tmp_path / "q2")[1]
        # a mix of raw sources is owner-only too
        assert main(["mix", "--in", str(tmp_path / "q1"), "--out", str(tmp_path / "m"), "--set", "val_size=1",
                     "--set", "long_size=0", "--quiet"]) == 0
        assert modes(tmp_path / "m" / "final") == ({0o700}, {0o600})
    finally:
        os.umask(old)


# ------------------------------------------------------------------ a changed input is never served stale

def test_a_changed_input_file_is_not_served_from_the_old_build(tmp_path, capsys):
    src = chats(tmp_path / "a.jsonl", n=5)
    cfg = build_config(tmp_path, inputs=[{"path": src}], stages=[{"name": "extract"}, {"name": "quality"}])
    out = tmp_path / "out"
    assert main(["build", cfg, "--out", str(out), "--quiet"]) == 0
    assert main(["build", cfg, "--out", str(out), "--quiet"]) == 0  # unchanged: reused
    size = os.path.getsize(src)
    chats(tmp_path / "a.jsonl", n=15)  # the log grew
    capsys.readouterr()
    assert main(["build", cfg, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{src} changed (size {size} -> {os.path.getsize(src)} bytes)" in err
    assert "rm -r" in err and "01-extract" in err
    import shutil

    shutil.rmtree(out)
    assert main(["build", cfg, "--out", str(out), "--quiet"]) == 0
    import json

    with open(out / "manifest.json") as f:
        assert json.load(f)["funnel"][0]["in"] == 15


def test_stage_runs_refuse_a_truncated_input_and_a_rebuilt_input_folder(tmp_path, capsys):
    src = chats(tmp_path / "a.jsonl", n=6)
    ext, qual = str(tmp_path / "ext"), str(tmp_path / "qual")
    assert main(["stage", "extract", "--in", src, "--out", ext, "--quiet"]) == 0
    assert main(["stage", "quality", "--in", ext, "--out", qual, "--quiet"]) == 0
    with open(src) as f:
        first = f.readline()
    with open(src, "w") as f:  # truncated to one record
        f.write(first)
    capsys.readouterr()
    assert main(["stage", "extract", "--in", src, "--out", ext, "--quiet"]) == 2
    assert f"{src} changed (size" in capsys.readouterr().err
    import shutil

    shutil.rmtree(ext)
    assert main(["stage", "extract", "--in", src, "--out", ext, "--quiet"]) == 0
    assert main(["stage", "quality", "--in", ext, "--out", qual, "--quiet"]) == 2
    assert f"its input folder {ext} (that folder was rebuilt since)" in capsys.readouterr().err


# ------------------------------------------------------------------ unusable files in an input folder

def unusable_files(folder):
    """One file of each kind extract cannot read, with the reason it is skipped for."""
    (folder / "empty.jsonl").write_bytes(b"")
    (folder / "photo.json").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (folder / "export.csv").write_text("1,u1,100,customer,hi\n1,u1,101,agent,hello\n", encoding="utf-8")
    (folder / "notes.jsonl").write_text('{"title": "minutes", "body": "no chat here"}\n', encoding="utf-8")
    return {"empty.jsonl": "empty_file", "photo.json": "binary_file", "export.csv": "missing_columns",
            "notes.jsonl": "unknown_format"}


def test_unusable_files_are_skipped_one_by_one_and_the_rest_is_built(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    want = unusable_files(folder)
    chats(folder / "good.jsonl", n=3)
    out = tmp_path / "o"
    assert main(["stage", "extract", "--in", str(folder), "--out", str(out), "--quiet"]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["counts"]["kept"] == 3 and m["counts"]["in"] == 3
    skipped = {os.path.basename(s["path"]): s for s in m["skipped_files"]}
    assert {k: s["reason"] for k, s in skipped.items()} == want
    assert {k: s["bytes"] for k, s in skipped.items()} == {k: (folder / k).stat().st_size for k in want}
    assert m["skipped_by_reason"] == {r: 1 for r in want.values()}
    err = capsys.readouterr().err
    for name in want:  # each file named on stderr with what is wrong with it
        (line,) = [x for x in err.splitlines() if name in x]
        assert "warning" in line and skipped[name]["detail"] in line
    csv_detail = skipped["export.csv"]["detail"]
    assert "customer" in csv_detail and "role" in csv_detail and "text" in csv_detail and "fields" in csv_detail
    assert "NUL" in skipped["photo.json"]["detail"] or "UTF-8" in skipped["photo.json"]["detail"]
    assert all(f in skipped["notes.jsonl"]["detail"] for f in ("openai", "sharegpt", "alpaca", "events"))
    # resumed after every task finished: the skipped files come back from their tasks' markers
    first = (out / "manifest.json").read_bytes()
    (out / "_SUCCESS").unlink(), (out / "manifest.json").unlink()
    assert main(["stage", "extract", "--in", str(folder), "--out", str(out), "--quiet"]) == 0
    assert (out / "manifest.json").read_bytes() == first


def test_a_build_of_only_unusable_files_fails_and_names_each(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    want = unusable_files(folder)
    out = tmp_path / "o"
    assert main(["stage", "extract", "--in", str(folder), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "every input file" in err
    for name, reason in want.items():
        assert any(name in line and reason in line for line in err.splitlines()), name
    assert not out.exists()  # nothing blocks the corrected command


def test_validate_names_every_file_extract_would_skip(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    want = unusable_files(folder)
    chats(folder / "good.jsonl", n=2)
    assert main(["validate", str(folder)]) != 0
    out = capsys.readouterr().out.splitlines()
    for name, reason in want.items():
        assert any(line.startswith(str(folder / name)) and f": {reason}: " in line for line in out), name
