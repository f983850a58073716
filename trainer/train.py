"""The training loop: packed shards in, Hugging Face checkpoints out.

    turnforge train CONFIG.yaml [--set key=value ...]
    torchrun --nproc_per_node=2 $(which turnforge) train CONFIG.yaml      # data parallel

One optimizer step = one global batch of micro_batch_size x grad_accum x world_size packed
rows. The loss follows docs/design.md#loss 4.d: the step's turn count is summed over all its
micro-batches and ranks before the forward pass, each micro-batch backpropagates
sum_i(l_i/n_i) * world_size / T_global, and DDP's gradient mean then yields exactly the
single-process turn mean.
"""
from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import random
import re
import shutil
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from pipeline.progress import bar as pbar

from .data import MicroBatch, PackedData, collate, global_batches
from .loss import MODES, micro_batch_loss, per_turn_sums, token_losses
from .pack import PackConfig, load_tokenizer, pack_folder


@dataclass
class TrainConfig:
    model: str = "tiny"  # `tiny` (random-init preset) or a local Hugging Face model path
    data: str = ""  # conversation shard folder, a final/ folder of stage-K, or packed shards
    out: str = "out/train"
    eval_data: str | None = None  # validation/ (one folder per domain) or one folder; default: sibling of final/
    template: str = "auto"
    max_len: int = 1024
    packing: bool = True
    micro_batch_size: int = 4
    grad_accum: int = 1
    max_steps: int = 0  # 0: run every stage for `epochs`
    epochs: float = 1.0
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 0
    weight_decay: float = 0.0
    optimizer: str = "adamw"  # adamw | sgd
    grad_clip: float = 1.0  # 0 disables
    seed: int = 0
    loss: str = "turn_mean"  # turn_mean | token_mean
    turn_loss_cap: float | None = None  # docs/design.md#gradient-stability
    eval_every: int = 0  # steps; 0: only at the end of each stage
    early_stop_patience: int = 0  # evals without improvement on any task before a stage stops; 0: off
    length_buckets: list = field(default_factory=lambda: [32, 128])  # turn lengths (tokens) for bucketed val loss
    save_every: int = 0
    resume: bool = True  # continue from OUT/checkpoints/ when present
    stop_after: int = 0  # stop this invocation after N steps (checkpointed): time-sliced jobs
    init_from: str | None = None  # start from these weights (e.g. a DMT stage-1 model)
    dtype: str = "auto"  # auto: bf16 on GPU, fp32 on CPU
    attn_implementation: str = "auto"  # auto: flash_attention_2 (varlen over position ids) on GPU if installed, else sdpa
    log_every: int = 1
    tiny_layers: int = 2

    def check(self) -> None:
        if self.loss not in MODES:
            raise ValueError(f"train.loss: {self.loss!r} not in {MODES}")
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"train.optimizer: {self.optimizer!r} not in adamw|sgd")
        if not self.data:
            raise ValueError("train.data: required (a shard folder, a final/ folder or packed shards)")
        for k in ("micro_batch_size", "grad_accum", "max_len"):
            if getattr(self, k) < 1:
                raise ValueError(f"train.{k}: must be >= 1")


# ----------------------------------------------------------------------------- data layout

def _is_packed(folder: str) -> bool:
    p = os.path.join(folder, "manifest.json")
    return os.path.exists(p) and json.load(open(p)).get("kind") == "packed"


def resolve_stages(data: str) -> list[tuple[str, str]]:
    """[(name, folder)] in training order: final/stage-1, stage-2, ... or one folder."""
    stages = sorted((p for p in glob.glob(os.path.join(data, "stage-*"))
                     if os.path.isdir(p) and re.fullmatch(r"stage-\d+", os.path.basename(p))),
                    key=lambda p: int(p.rsplit("-", 1)[1]))
    if not stages:
        return [("stage-1", data)]
    for s in stages:
        if glob.glob(os.path.join(s, "k=*")):
            raise ValueError(f"{s} holds DMT k=... folders: train with --grid, or point data at one k folder")
    return [(os.path.basename(s), s) for s in stages]


def resolve_eval(cfg: TrainConfig) -> list[tuple[str, str]]:
    ev = cfg.eval_data
    if ev is None:
        cand = os.path.join(cfg.data, "validation")
        cand2 = os.path.join(os.path.dirname(os.path.normpath(cfg.data)), "validation")
        ev = cand if os.path.isdir(cand) else (cand2 if os.path.isdir(cand2) else None)
    if ev is None:
        return []
    subs = sorted(d for d in glob.glob(os.path.join(ev, "*")) if os.path.isdir(os.path.join(d, "data")))
    if subs and not os.path.isdir(os.path.join(ev, "data")):
        return [(os.path.basename(d), d) for d in subs]
    return [("all", ev)]


def packed(folder: str, cache: str, cfg: TrainConfig, tok) -> PackedData:
    if _is_packed(folder):
        return PackedData(folder)
    pc = PackConfig(model=cfg.model, template=cfg.template, max_len=cfg.max_len, packing=cfg.packing)
    m = pack_folder(folder, cache, pc, tokenizer=tok)
    if m["rows"] == 0:
        raise ValueError(f"{folder}: nothing left to train on after packing ({m['rejected']})")
    return PackedData(cache)


# ----------------------------------------------------------------------------- distributed

class Dist:
    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = torch.device(f"cuda:{self.local_rank}" if torch.cuda.is_available() else "cpu")
        if self.world > 1 and not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def sum(self, x: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            torch.distributed.all_reduce(x)
        return x

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


# ----------------------------------------------------------------------------- model

def build_model(cfg: TrainConfig, vocab_size: int):
    from transformers import AutoModelForCausalLM

    from .tiny import tiny_model

    attn = cfg.attn_implementation
    if attn == "auto":
        attn = "sdpa"
        if torch.cuda.is_available():
            import importlib.util

            if importlib.util.find_spec("flash_attn") is not None:
                attn = "flash_attention_2"  # packs by position ids: varlen kernels, no mask
    src = cfg.init_from or (None if cfg.model == "tiny" else cfg.model)
    if src is None:
        model = tiny_model(vocab_size, seed=cfg.seed, num_hidden_layers=cfg.tiny_layers)
        model.config._attn_implementation = attn
    else:
        model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32, attn_implementation=attn)
    model.config.use_cache = False  # with the cache on, packed documents leak into each other
    return model


def lr_lambda(cfg: TrainConfig, total: int):
    def f(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        span = max(total - cfg.warmup_steps, 1)
        p = min(max(step - cfg.warmup_steps, 0) / span, 1.0)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p))
    return f


def forward_losses(model, mb: MicroBatch, autocast):
    """(l, n) per turn of one micro-batch: no attention mask, position ids restart per
    document, so attention stays inside each document (docs/design.md#packing)."""
    with autocast:
        logits = model(input_ids=mb.input_ids, position_ids=mb.position_ids).logits
    tl = token_losses(logits, mb.labels)
    return per_turn_sums(tl, mb.turn_ids[:, 1:], num_turns=mb.n_turns)


# ----------------------------------------------------------------------------- evaluation

@torch.no_grad()
def evaluate(model, evals: dict, cfg: TrainConfig, dist: Dist, pad_id: int, autocast) -> dict:
    model.eval()
    edges = torch.tensor([float(x) for x in cfg.length_buckets])
    names = ([f"<={int(cfg.length_buckets[0])}"]
             + [f"{int(a) + 1}-{int(b)}" for a, b in zip(cfg.length_buckets, cfg.length_buckets[1:])]
             + [f">{int(cfg.length_buckets[-1])}"])
    out = {}
    for dom, data in evals.items():
        # sums: [sum l/n, T, sum l, sum n, per bucket (sum l/n, count)...]
        acc = torch.zeros(4 + 2 * len(names), dtype=torch.float64)
        for s in range(dist.rank * cfg.micro_batch_size, len(data), dist.world * cfg.micro_batch_size):
            rows = [data.row(i) for i in range(s, min(s + cfg.micro_batch_size, len(data)))]
            mb = collate(rows, pad_id).to(dist.device)
            l, n = forward_losses(model, mb, autocast)
            l, n = l.double().cpu(), n.double().cpu()
            m = l / n.clamp_min(1)
            acc[0] += m.sum()
            acc[1] += len(l)
            acc[2] += l.sum()
            acc[3] += n.sum()
            b = torch.bucketize(n, edges.double())
            for k in range(len(names)):
                sel = b == k
                acc[4 + 2 * k] += m[sel].sum()
                acc[5 + 2 * k] += sel.sum()
        acc = dist.sum(acc.to(dist.device)).cpu()
        res = {"turn_mean": (acc[0] / acc[1]).item() if acc[1] else None,
               "token_mean": (acc[2] / acc[3]).item() if acc[3] else None, "turns": int(acc[1]),
               "by_turn_length": {nm: ((acc[4 + 2 * k] / acc[5 + 2 * k]).item() if acc[5 + 2 * k] else None)
                                  for k, nm in enumerate(names)}}
        out[dom] = res
    model.train()
    return out


# ----------------------------------------------------------------------------- checkpoints

def _ckpt_dirs(out: str) -> list[str]:
    return sorted(glob.glob(os.path.join(out, "checkpoints", "step-*")))


def save_checkpoint(out: str, model, opt, sched, state: dict, dist: Dist) -> None:
    if dist.main:
        d = os.path.join(out, "checkpoints", f"step-{state['step']:07d}")
        tmp = d + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        _unwrap(model).save_pretrained(tmp, safe_serialization=True)
        torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                            "python": random.getstate()}}, os.path.join(tmp, "trainer_state.pt"))
        with open(os.path.join(tmp, "state.json"), "w") as f:
            json.dump(state, f, indent=1)
        shutil.rmtree(d, ignore_errors=True)
        os.replace(tmp, d)  # a checkpoint is visible only when complete
    dist.barrier()


def _unwrap(model):
    return model.module if hasattr(model, "module") else model


def load_checkpoint(d: str, model, opt, sched) -> dict:
    from safetensors.torch import load_file

    sd = load_file(os.path.join(d, "model.safetensors"))
    m = _unwrap(model)
    missing, unexpected = m.load_state_dict(sd, strict=False)
    if unexpected or [k for k in missing if "lm_head" not in k]:  # lm_head is tied to the embeddings
        raise ValueError(f"{d}: checkpoint does not match the model (missing {missing}, unexpected {unexpected})")
    if m.config.tie_word_embeddings:
        m.tie_weights()
    st = torch.load(os.path.join(d, "trainer_state.pt"), weights_only=False)
    opt.load_state_dict(st["optimizer"])
    sched.load_state_dict(st["scheduler"])
    torch.set_rng_state(st["rng"]["torch"])
    np.random.set_state(st["rng"]["numpy"])
    random.setstate(st["rng"]["python"])
    with open(os.path.join(d, "state.json")) as f:
        return json.load(f)


# ----------------------------------------------------------------------------- the loop

def train(cfg: TrainConfig, progress: bool = False) -> dict:
    """`progress`: a bar on stderr (main process, terminal only) with the loss and tokens/s."""
    cfg.check()
    dist = Dist()
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    os.makedirs(cfg.out, exist_ok=True)
    tok = load_tokenizer(cfg.model if cfg.model != "tiny" else "tiny")
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)

    # Pack on rank 0 only; the others wait and read the same shards.
    stage_specs = resolve_stages(cfg.data)
    eval_specs = resolve_eval(cfg)
    if dist.main:
        for name, f in stage_specs:
            packed(f, os.path.join(cfg.out, "packed", name), cfg, tok)
        for name, f in eval_specs:
            packed(f, os.path.join(cfg.out, "packed", "validation", name), cfg, tok)
    dist.barrier()
    stages = [(name, packed(f, os.path.join(cfg.out, "packed", name), cfg, tok)) for name, f in stage_specs]
    evals = {name: packed(f, os.path.join(cfg.out, "packed", "validation", name), cfg, tok)
             for name, f in eval_specs}

    rows_per_step = cfg.micro_batch_size * cfg.grad_accum * dist.world
    plan = [max(1, math.ceil(cfg.epochs * len(d) / rows_per_step)) for _, d in stages]
    if cfg.max_steps:  # exactly max_steps: cut the plan, or extend the last stage (more epochs)
        cut, left = [], cfg.max_steps
        for p in plan:
            cut.append(min(p, left))
            left -= cut[-1]
        cut[-1] += left
        plan = cut
    total = sum(plan)

    model = build_model(cfg, len(tok)).to(dist.device)
    model.train()
    if dist.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dist.local_rank] if dist.device.type == "cuda" else None)
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg, total))
    use_bf16 = cfg.dtype == "bf16" or (cfg.dtype == "auto" and dist.device.type == "cuda")
    autocast = (torch.autocast(device_type=dist.device.type, dtype=torch.bfloat16) if use_bf16
                else contextlib.nullcontext())

    # best: per task over the run (reported); stage_best: per task within the stage (early stop)
    state = {"step": 0, "stage": 0, "stage_step": 0, "best": {}, "stage_best": {}, "stale": 0,
             "stopped_stages": []}
    ckpts = _ckpt_dirs(cfg.out)
    if cfg.resume and ckpts:
        state = load_checkpoint(ckpts[-1], model, opt, sched)
    metrics_path = os.path.join(cfg.out, "metrics.jsonl")
    log = open(metrics_path, "a", encoding="utf-8") if dist.main else None

    def emit(rec: dict) -> None:
        if log:
            log.write(json.dumps(rec) + "\n")
            log.flush()

    steps_this_run = 0
    t_start = time.perf_counter()
    bar = pbar(total, "train", "step", progress and dist.main, initial=state["step"])
    tokens_seen = 0
    last_loss = None
    while state["stage"] < len(stages) and state["step"] < total:
        si = state["stage"]
        sname, data = stages[si]
        batches = global_batches(len(data), rows_per_step, plan[si], cfg.seed + si, start=state["stage_step"])
        stop_stage = False
        for gb in batches:
            if state["step"] >= total:
                break
            micro = [gb[m * cfg.micro_batch_size:(m + 1) * cfg.micro_batch_size]
                     for m in range(cfg.grad_accum * dist.world)]
            mine = [collate([data.row(int(i)) for i in micro[a * dist.world + dist.rank]], pad_id).to(dist.device)
                    for a in range(cfg.grad_accum)]
            # docs/design.md#loss 4.d: the global count is known before the forward pass.
            local = sum(mb.n_turns if cfg.loss == "turn_mean" else mb.n_supervised for mb in mine)
            counts = dist.sum(torch.tensor([float(local), float(sum(mb.n_tokens for mb in mine))],
                                           dtype=torch.float64, device=dist.device))
            global_count, global_tokens = counts[0].item(), counts[1].item()
            step_loss = torch.zeros((), dtype=torch.float64, device=dist.device)
            for a, mb in enumerate(mine):
                sync = (dist.world == 1 or a == cfg.grad_accum - 1)
                with (contextlib.nullcontext() if sync else model.no_sync()):
                    l, n = forward_losses(model, mb, autocast)
                    loss = micro_batch_loss(l, n, cfg.loss, max(global_count, 1.0), dist.world, cfg.turn_loss_cap)
                    loss.backward()
                step_loss += loss.detach().double() / dist.world
            step_loss = dist.sum(step_loss)
            gn = (torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip) if cfg.grad_clip > 0
                  else torch.sqrt(sum((p.grad.double() ** 2).sum() for p in params if p.grad is not None)))
            lr = opt.param_groups[0]["lr"]
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            state["step"] += 1
            state["stage_step"] += 1
            steps_this_run += 1
            tokens_seen += int(global_tokens)
            last_loss = step_loss.item()
            bar.update(1)  # then drawn with the postfix: a step is coarse enough to redraw each time
            bar.set_postfix_str(f"loss {last_loss:.4f}, {tokens_seen / max(time.perf_counter() - t_start, 1e-9):,.0f} tokens/s")
            if state["step"] % cfg.log_every == 0 or state["step"] == total:
                el = time.perf_counter() - t_start
                emit({"step": state["step"], "stage": sname, "loss": last_loss, "loss_mode": cfg.loss,
                      "lr": lr, "grad_norm": float(gn), "global_turns" if cfg.loss == "turn_mean" else
                      "global_supervised_tokens": global_count, "tokens": int(global_tokens),
                      "tokens_per_s": tokens_seen / el if el > 0 else None, "elapsed_s": el})
            end_of_stage = state["stage_step"] >= plan[si]
            if evals and ((cfg.eval_every and state["step"] % cfg.eval_every == 0) or end_of_stage):
                ev = evaluate(model, evals, cfg, dist, pad_id, autocast)
                improved = False
                for dom, r in ev.items():
                    if r["turn_mean"] is None:
                        continue
                    if r["turn_mean"] < state["best"].get(dom, {}).get("loss", math.inf):
                        state["best"][dom] = {"loss": r["turn_mean"], "step": state["step"], "stage": sname}
                    if r["turn_mean"] < state["stage_best"].get(dom, math.inf):
                        state["stage_best"][dom] = r["turn_mean"]
                        improved = True
                state["stale"] = 0 if improved else state["stale"] + 1
                emit({"step": state["step"], "stage": sname, "eval": ev})
                if cfg.early_stop_patience and state["stale"] >= cfg.early_stop_patience:
                    stop_stage = True
                    state["stopped_stages"].append(sname)
                    emit({"step": state["step"], "stage": sname, "early_stop": True, "best": state["best"]})
            if cfg.save_every and state["step"] % cfg.save_every == 0:
                save_checkpoint(cfg.out, model, opt, sched, state, dist)
            if stop_stage or (cfg.stop_after and steps_this_run >= cfg.stop_after):
                break
        if cfg.stop_after and steps_this_run >= cfg.stop_after and state["step"] < total:
            if not (cfg.save_every and state["step"] % cfg.save_every == 0):
                save_checkpoint(cfg.out, model, opt, sched, state, dist)
            if log:
                log.close()
            bar.close()
            return {"step": state["step"], "stopped_after": steps_this_run, "loss": last_loss}
        state["stage"] += 1
        state["stage_step"] = 0
        state["stale"] = 0
        state["stage_best"] = {}

    bar.close()
    final = os.path.join(cfg.out, "final")
    if dist.main:
        _unwrap(model).save_pretrained(final, safe_serialization=True)
        tok.save_pretrained(final)
        with open(os.path.join(final, "turnforge_train.json"), "w") as f:
            json.dump({"config": asdict(cfg), "world_size": dist.world, "state": state}, f, indent=1)
    dist.barrier()
    if log:
        log.close()
    el = time.perf_counter() - t_start
    return {"step": state["step"], "loss": last_loss, "best": state["best"], "final": final,
            "tokens_per_s": tokens_seen / el if el > 0 else None}


def grid(cfg: TrainConfig, progress: bool = False) -> dict:
    """DMT grid search: train stage-1 once, then stage-2 for every k folder from the
    stage-1 weights; report per-task validation of each."""
    s1 = os.path.join(cfg.data, "stage-1")
    ks = sorted(p for p in glob.glob(os.path.join(cfg.data, "stage-2", "k=*")) if os.path.isdir(p))
    if not os.path.isdir(s1) or not ks:
        raise ValueError(f"--grid needs {cfg.data}/stage-1 and {cfg.data}/stage-2/k=*/")
    ev = cfg.eval_data or (os.path.join(cfg.data, "validation") if os.path.isdir(os.path.join(cfg.data, "validation"))
                           else None)
    base = TrainConfig(**{**asdict(cfg), "data": s1, "out": os.path.join(cfg.out, "stage-1"), "eval_data": ev})
    r1 = train(base, progress)
    results = {"stage-1": r1["best"]}
    for k in ks:
        name = os.path.basename(k)
        c = TrainConfig(**{**asdict(cfg), "data": k, "out": os.path.join(cfg.out, name), "eval_data": ev,
                           "init_from": r1["final"]})
        results[name] = train(c, progress)["best"]
    with open(os.path.join(cfg.out, "grid.json"), "w") as f:
        json.dump(results, f, indent=1)
    return results
