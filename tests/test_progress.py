"""Progress on stderr: bars with records/s (steps, loss and tokens/s for training) on a terminal,
nothing with --quiet or in a pipe, and a reused stage said as such. Runs the CLI with stderr on
a pseudo-terminal, as a user at a shell sees it."""
import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios

import yaml

from conftest import ROOT, write_jsonl


def on_terminal(args, timeout=300):
    """(exit code, what the command wrote to its terminal stderr)."""
    master, slave = pty.openpty()
    # a real terminal has a size; a bare pty reports 0 columns and tqdm then draws nothing
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    p = subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                         stderr=slave)
    os.close(slave)
    out = b""
    while True:
        r, _, _ = select.select([master], [], [], timeout)
        if not r:
            p.kill()
            raise TimeoutError(args)
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return p.wait(), out.decode("utf-8", "replace")


def chats(path, n):
    return write_jsonl(path, [{"id": f"c{i}", "messages": [
        {"role": "user", "content": f"question {i} about topic {i % 7}"},
        {"role": "assistant", "content": f"answer number {i} with some words"},
        {"role": "user", "content": f"and a follow-up on {i}"},
        {"role": "assistant", "content": "a second answer"}]} for i in range(n)])


def test_stages_draw_bars_with_records_per_second_and_say_when_reused(tmp_path):
    src = chats(tmp_path / "a.jsonl", 300)
    cfg = tmp_path / "b.yaml"
    cfg.write_text(yaml.safe_dump({"inputs": [{"path": src}], "stages": [
        {"name": "extract"}, {"name": "dedup", "methods": "exact,minhash"}, {"name": "topic"}]}))
    out = str(tmp_path / "out")
    rc, err = on_terminal(["build", str(cfg), "--out", out])
    assert rc == 0, err
    assert "records/s" in err  # extract's and dedup's task bars
    for desc in ("dedup map", "dedup reduce 0", "topic scoring"):
        assert desc in err, desc
    assert "reused" not in err
    rc, err = on_terminal(["build", str(cfg), "--out", out])
    assert rc == 0 and err.count("reused (finished earlier") == 3, err
    rc, err = on_terminal(["stage", "quality", "--in", os.path.join(out, "stages", "01-extract"),
                           "--out", str(tmp_path / "q"), "--quiet"])
    assert rc == 0 and "records/s" not in err and "quality" not in err, err
    # in a pipe (a log file, CI) no bar is drawn even without --quiet
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", "stage", "quality", "--in",
                        os.path.join(out, "stages", "01-extract"), "--out", str(tmp_path / "q2")],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and "records/s" not in r.stderr and "\r" not in r.stderr


def test_training_draws_steps_loss_and_tokens_per_second(tmp_path):
    src = chats(tmp_path / "a.jsonl", 24)
    ext = str(tmp_path / "ext")
    assert on_terminal(["stage", "extract", "--in", src, "--out", ext, "--quiet"])[0] == 0
    args = ["train", "--set", f"data={ext}", "--set", f"out={tmp_path / 'run'}", "--set", "max_len=96",
            "--set", "micro_batch_size=2", "--set", "max_steps=3", "--set", "warmup_steps=1"]
    rc, err = on_terminal(args)
    assert rc == 0, err
    assert "train: " in err and "3/3" in err and "loss " in err and "tokens/s" in err
    rc, err = on_terminal(args[:1] + ["--quiet"] + args[1:] + ["--set", f"out={tmp_path / 'run2'}"])
    assert rc == 0 and "tokens/s" not in err, err
