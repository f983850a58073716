"""Trainer on CPU: packed attention isolation, 4.a == 4.c, 4.d under torchrun, resume."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import write_jsonl
from pipeline import runner
from trainer.data import PackedData, collate, global_batches
from trainer.loss import per_turn_sums, reduce, token_losses
from trainer.pack import Encoder, make_row
from trainer.tiny import load_tokenizer, tiny_model
from trainer.train import TrainConfig, train

TURNFORGE = os.path.join(os.path.dirname(sys.executable), "turnforge")


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


def conv(i, k):
    m, t = [], 0
    for t in range(k):
        m += [{"role": "user", "content": f"问题 {i}.{t}: what is {i} + {t}?", "turn": t},
              {"role": "assistant", "content": ("答 " + "answer " * (1 + (3 * i + 5 * t) % 9)).strip(), "turn": t}]
    return m


@pytest.fixture(scope="module")
def shard_folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("train")
    rows = [{"id": f"c{i}", "messages": [{k: v for k, v in x.items() if k != "turn"} for x in conv(i, 1 + i % 3)]}
            for i in range(40)]
    src = write_jsonl(d / "c.jsonl", rows)
    runner.run_stage("extract", {"domain": "general"}, src, str(d / "ext"), progress=False)
    val = [{"id": f"v{i}", "messages": [{k: v for k, v in x.items() if k != "turn"} for x in conv(100 + i, 2)]}
           for i in range(6)]
    runner.run_stage("extract", {"domain": "math"}, write_jsonl(d / "v.jsonl", val), str(d / "val" / "math"),
                     progress=False)
    return d


def test_packed_documents_do_not_see_each_other(tok):
    model = tiny_model(len(tok), seed=0).eval()
    docs = [{**e, "id": str(i), "domain": "g"} for i, e in
            enumerate(Encoder(tok, "chatml", 4096).encode_many([conv(1, 2), conv(2, 1), conv(3, 3)]))]
    row = make_row(docs)
    mb = collate([row], tok.pad_token_id)
    with torch.no_grad():
        packed = model(input_ids=mb.input_ids, position_ids=mb.position_ids).logits[0]
        off = 0
        for d in docs:
            n = len(d["input_ids"])
            alone = model(input_ids=torch.tensor(d["input_ids"], dtype=torch.long)[None]).logits[0]
            assert (packed[off:off + n] - alone).abs().max().item() < 1e-5
            off += n


def test_split_per_turn_gradients_equal_packed_turn_mean(tok):
    """4.a == 4.c: one sample per turn (context up to the turn, only that turn supervised),
    averaged over turns, gives the gradients of the packed turn mean."""
    model = tiny_model(len(tok), seed=1)
    convs = [conv(4, 3), conv(5, 1), conv(6, 2)]
    enc = Encoder(tok, "chatml", 4096)
    # packed
    row = make_row([{**e, "id": str(i), "domain": "g"} for i, e in enumerate(enc.encode_many(convs))])
    mb = collate([row], tok.pad_token_id)
    l, n = per_turn_sums(token_losses(model(input_ids=mb.input_ids, position_ids=mb.position_ids).logits, mb.labels),
                         mb.turn_ids[:, 1:], mb.n_turns)
    reduce(l, n, "turn_mean").backward()
    g_packed = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    # split: one sample per turn
    samples = []
    for c in convs:
        for t in sorted({m["turn"] for m in c}):
            (e,) = enc.encode_many([[m for m in c if m["turn"] <= t]])
            lab = np.where(e["turn_ids"] == t, e["labels"], -100)
            samples.append((e["input_ids"], lab))
    assert len(samples) == mb.n_turns == 6
    total = 0
    for ids, lab in samples:
        logits = model(input_ids=torch.tensor(ids, dtype=torch.long)[None]).logits
        tl = token_losses(logits, torch.tensor(lab, dtype=torch.long)[None])
        total = total + tl.sum() / (torch.tensor(lab[1:]) != -100).sum() / len(samples)
    total.backward()
    assert abs(total.item() - reduce(l, n, "turn_mean").item()) < 1e-5
    for gp, p in zip(g_packed, model.parameters()):
        torch.testing.assert_close(p.grad, gp, rtol=1e-5, atol=1e-7)


def run_train(args, nproc=1, timeout=300):
    if nproc == 1:
        cmd = [TURNFORGE, "train", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               TURNFORGE, "train", *args]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


@pytest.mark.parametrize("loss", ["turn_mean", "token_mean"])
def test_dp_and_accumulation_equal_single_process(shard_folder, tmp_path, loss, tok):
    """4.d: torchrun 2 ranks x grad_accum 2 == 1 process x grad_accum 4 after one SGD step,
    and the logged loss is the global mean computed by hand."""
    common = ["--set", f"data={shard_folder / 'ext'}", "--set", "max_len=96", "--set", "micro_batch_size=1",
              "--set", "max_steps=1", "--set", "optimizer=sgd", "--set", "lr=0.5", "--set", "grad_clip=0",
              "--set", f"loss={loss}", "--set", "seed=3"]
    run_train([*common, "--set", f"out={tmp_path / 'dp'}", "--set", "grad_accum=2"], nproc=2)
    run_train([*common, "--set", f"out={tmp_path / 'one'}", "--set", "grad_accum=4"])
    assert json.load(open(tmp_path / "dp" / "final" / "turnforge_train.json"))["world_size"] == 2
    a = load_file(str(tmp_path / "dp" / "final" / "model.safetensors"))
    b = load_file(str(tmp_path / "one" / "final" / "model.safetensors"))
    init = tiny_model(len(tok), seed=3).state_dict()
    moved = 0
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-7)
        moved += not torch.equal(a[k], init[k])
    assert moved > 0  # the step really changed the weights
    # the logged loss equals the global mean over the 4 rows of the first global batch
    logs = [json.loads(x) for x in open(tmp_path / "dp" / "metrics.jsonl")]
    data = PackedData(str(tmp_path / "dp" / "packed" / "stage-1"))
    (gb,) = global_batches(len(data), 4, 1, seed=3)
    model = tiny_model(len(tok), seed=3).eval()
    ls, ns = [], []
    with torch.no_grad():
        for i in gb:
            mb = collate([data.row(int(i))], tok.pad_token_id)
            l, n = per_turn_sums(token_losses(model(input_ids=mb.input_ids, position_ids=mb.position_ids).logits,
                                              mb.labels), mb.turn_ids[:, 1:], mb.n_turns)
            ls.append(l)
            ns.append(n)
    want = reduce(torch.cat(ls), torch.cat(ns), loss).item()
    assert abs(logs[0]["loss"] - want) < 1e-5 * abs(want)
    assert logs[0]["loss"] == pytest.approx(json.loads(open(tmp_path / "one" / "metrics.jsonl").readline())["loss"],
                                            rel=1e-5)


def test_resume_equals_uninterrupted(shard_folder, tmp_path):
    base = TrainConfig(data=str(shard_folder / "ext"), max_len=96, micro_batch_size=2, grad_accum=2, max_steps=6,
                       lr=3e-3, warmup_steps=2, seed=5, eval_data=str(shard_folder / "val"), eval_every=3)
    full = train(TrainConfig(**{**base.__dict__, "out": str(tmp_path / "full")}))
    part = train(TrainConfig(**{**base.__dict__, "out": str(tmp_path / "cut"), "stop_after": 4}))
    assert part["step"] == 4 and "stopped_after" in part
    rest = train(TrainConfig(**{**base.__dict__, "out": str(tmp_path / "cut")}))
    assert rest["step"] == full["step"] == 6
    a = load_file(str(tmp_path / "full" / "final" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "final" / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-7)
    full_log = [json.loads(x) for x in open(tmp_path / "full" / "metrics.jsonl")]
    cut_log = [json.loads(x) for x in open(tmp_path / "cut" / "metrics.jsonl")]
    loss = lambda log: [r["loss"] for r in log if "loss" in r]  # noqa: E731
    assert loss(full_log) == pytest.approx(loss(cut_log), rel=1e-5)
    evals = [r for r in full_log if "eval" in r]
    assert [r["step"] for r in evals] == [3, 6]
    ev = evals[-1]["eval"]["math"]
    assert ev["turns"] == 12 and ev["turn_mean"] > 0 and set(ev["by_turn_length"]) == {"<=32", "33-128", ">128"}
    assert os.path.exists(tmp_path / "full" / "final" / "config.json")
    # packed shards are accepted as data directly, and the final model loads as a HF model
    from transformers import AutoModelForCausalLM
    r = train(TrainConfig(data=str(tmp_path / "full" / "packed" / "stage-1"), out=str(tmp_path / "p"), max_len=96,
                          max_steps=1, init_from=str(tmp_path / "full" / "final")))
    assert r["step"] == 1 and not os.path.exists(tmp_path / "p" / "packed")
    assert AutoModelForCausalLM.from_pretrained(str(tmp_path / "p" / "final")).config.vocab_size > 0


def _extract_to(folder, rows, domain):
    src = write_jsonl(os.path.join(os.path.dirname(folder), os.path.basename(folder) + ".jsonl"), rows)
    runner.run_stage("extract", {"domain": domain}, src, folder, progress=False)


def _rows(start, n, k=2):
    return [{"id": f"r{i}", "messages": [{kk: v for kk, v in x.items() if kk != "turn"} for x in conv(i, k)]}
            for i in range(start, start + n)]


def test_final_stages_in_order_grid_and_early_stop(tmp_path):
    final = tmp_path / "final"
    os.makedirs(final / "stage-2" / "k=1")
    os.makedirs(final / "validation")
    _extract_to(str(final / "stage-1"), _rows(0, 8), "code")
    _extract_to(str(final / "stage-2" / "k=1"), _rows(8, 8), "general")
    _extract_to(str(final / "stage-2" / "k=1_2"), _rows(16, 4), "general")
    _extract_to(str(final / "validation" / "code"), _rows(40, 3), "code")
    _extract_to(str(final / "validation" / "general"), _rows(50, 3), "general")
    # a final/ with k folders needs --grid
    with pytest.raises(ValueError, match="--grid"):
        train(TrainConfig(data=str(final), out=str(tmp_path / "x"), max_len=96))
    r = run_train(["--grid", "--set", f"data={final}", "--set", f"out={tmp_path / 'grid'}", "--set", "max_len=96",
                   "--set", "micro_batch_size=2"])
    grid = json.load(open(tmp_path / "grid" / "grid.json"))
    assert set(grid) == {"stage-1", "k=1", "k=1_2"} and set(grid["k=1"]) == {"code", "general"}
    assert "k=1_2" in r.stdout and "code=" in r.stdout
    # plain stages run in order; lr=0 never improves, so patience 1 stops each stage after 2 evals
    plain = tmp_path / "plain"
    shutil.copytree(final / "stage-1", plain / "stage-1")
    shutil.copytree(final / "stage-2" / "k=1", plain / "stage-2")
    shutil.copytree(final / "validation", plain / "validation")
    out = tmp_path / "es"
    res = train(TrainConfig(data=str(plain), out=str(out), max_len=96, micro_batch_size=1, lr=0.0, eval_every=1,
                            early_stop_patience=1))
    log = [json.loads(x) for x in open(out / "metrics.jsonl")]
    steps = [(r["stage"], r["step"]) for r in log if "loss" in r]
    assert [s for s, _ in steps] == ["stage-1", "stage-1", "stage-2", "stage-2"]
    assert [r["stage"] for r in log if r.get("early_stop")] == ["stage-1", "stage-2"]
    assert res["step"] == 4
