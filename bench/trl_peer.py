"""Peer measurement: TRL's SFTTrainer (packing) tokens/s on the same model and data as our trainer, CPU only.

    python bench/trl_peer.py            # self-test: tiny preset model, ~300 synthetic zh/en conversations

`run_trl` is the entry point for the benchmark; see its docstring for what is measured and how.
Requires `trl` (tested with trl 1.16.0, transformers 5.24.0, torch 2.13.0+cpu, accelerate 1.15.0).
Everything runs offline: the HF offline switches are set below, before datasets/transformers/trl load
(if the caller already imported them, the switches set here may come too late for those modules, but
nothing in `run_trl` asks the Hub for anything: model and tokenizer come from a local folder and the
dataset is built in memory).
"""
from __future__ import annotations

import os

for _k in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[_k] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import dataclasses  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from pipeline.templates import CHATML_GENERATION  # noqa: E402


def _training_template(tok, conversations) -> tuple[str | None, str]:
    """(template for TRL's assistant-only loss or None, description). None => fall back to full loss."""
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    own = tok.chat_template
    if isinstance(own, dict):
        own = own.get("default")
    if not own:
        return None, "tokenizer has no chat template"
    if has_generation_markers(own):
        return own, "tokenizer template (already has generation markers)"
    # Our ChatML + generation markers, if it renders exactly what the tokenizer's template renders.
    same = all(
        tok.apply_chat_template(c, tokenize=False) == tok.apply_chat_template(c, tokenize=False,
                                                                             chat_template=CHATML_GENERATION)
        for c in conversations
    )
    if same:
        return CHATML_GENERATION, "ChatML + {% generation %} markers (pipeline/templates.py; renders identically)"
    try:  # TRL's own patched templates for known model families
        t = get_training_chat_template(tok)
        return (t or own), "TRL training template for the tokenizer's family"
    except Exception:  # noqa: BLE001 -- unknown template family: TRL raises ValueError
        return None, "no generation-marked template available"


def run_trl(model_dir: str, conversations: list[list[dict]], max_len: int, micro_batch_size: int,
            steps: int, lr: float = 1e-3, seed: int = 0, workdir: str | None = None) -> dict:
    """Train `steps` optimizer steps of TRL SFTTrainer with packing on `conversations` and time them.

    Setup (TRL as shipped, with the settings the comparison needs):
      * model/tokenizer from `model_dir`, model loaded in fp32 on CPU (`use_cpu=True`, bf16=fp16=False:
        TRL's SFTConfig defaults bf16 to True, so it is switched off explicitly);
      * `packing=True`, `max_length=max_len`, TRL's default packing strategy "bfd" (best-fit decreasing;
        conversations longer than max_len are truncated, overflow discarded), which forces padding-free
        batches: the micro-batch's packed rows are flattened into one [1, N] sequence with position_ids
        restarting per conversation and no attention mask (transformers' SDPA path turns the position ids
        into a block-diagonal causal mask -- the same mechanism our trainer uses);
      * per_device_train_batch_size=micro_batch_size, gradient_accumulation_steps=1, max_steps=steps,
        learning_rate=lr, seed=seed, gradient_checkpointing=False (TRL's default is True; our trainer does
        not checkpoint), optim="adamw_torch" (plain torch.optim.AdamW, like our trainer), weight_decay=0,
        max_grad_norm=1.0, cosine schedule decaying to 0.1*lr with no warm-up (our trainer's defaults),
        dataloader_num_workers=0, report_to="none", save_strategy="no", logging_strategy="no",
        progress bar off;
      * assistant-only loss when a template with {% generation %} markers is available: the tokenizer's
        own, else our ChatML copy with markers (used only if it renders every conversation identically
        to the tokenizer's template), else TRL's family template; otherwise full-sequence loss. The
        returned "assistant_only_loss" / "chat_template" say which happened. Conversations without an
        assistant message are dropped in assistant-only mode (TRL would raise), see "dropped".

    Timing: `seconds` is the wall time from `on_step_begin` of the first optimizer step to
    `on_step_end` of the last, measured in a TrainerCallback. It therefore excludes model load, dataset
    tokenisation/packing, trainer construction and dataloader creation (and the collation of the very
    first batch), and includes everything between steps (collation of later batches, TRL's per-step
    metric bookkeeping). No warm-up step is excluded, like our trainer's tokens/s which starts its clock
    before its first step; `seconds_excl_first` / `tokens_per_s_excl_first` give the steady-state figure
    without step 1 for reference (None when steps < 2).

    Tokens: counted in `training_step` (which receives exactly the micro-batches that are trained, unlike
    a collator, which the accelerate dataloader runs one batch ahead). With padding-free batches and
    pad_to_multiple_of=None there is no padding, so real tokens = input_ids.numel() (the function checks
    that no padding setting is active; were an attention mask present it would sum the mask instead).
    `supervised_tokens` counts labels != -100 as TRL builds them (before the model's shift), and
    `documents` the packed conversations (position_ids == 0) the steps consumed.

    Returns {"tokens_per_s", "tokens", "seconds", "steps", "trl_version", "packing_strategy",
    "assistant_only_loss", ...extra diagnostics}.
    """
    import datasets
    import torch
    import transformers
    import trl
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    datasets.disable_progress_bars()
    convs = [[{"role": m["role"], "content": m["content"]} for m in c] for c in conversations]

    tok = AutoTokenizer.from_pretrained(model_dir)
    template, template_note = _training_template(tok, convs)
    assistant_only = template is not None
    dropped = 0
    if assistant_only:
        keep = [c for c in convs if any(m["role"] == "assistant" for m in c)]
        dropped = len(convs) - len(keep)
        convs = keep
        tok.chat_template = template  # a private copy of the tokenizer; model_dir is not touched
    if not convs:
        raise ValueError("no conversations to train on")

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.config.use_cache = False

    own_dir = workdir is None
    out = workdir or tempfile.mkdtemp(prefix="trl_peer_")
    try:
        # TRL defaults gradient checkpointing to True; transformers 5.x renamed it activation_checkpointing
        # (the old name still works but warns), so switch off whichever this version has.
        names = {f.name for f in dataclasses.fields(SFTConfig)}
        ckpt_off = ({"activation_checkpointing": False} if "activation_checkpointing" in names
                    else {"gradient_checkpointing": False})
        args = SFTConfig(
            output_dir=out,
            use_cpu=True, bf16=False, fp16=False,
            packing=True, max_length=max_len, packing_strategy="bfd", pad_to_multiple_of=None,
            assistant_only_loss=assistant_only, completion_only_loss=False,
            per_device_train_batch_size=micro_batch_size, gradient_accumulation_steps=1,
            max_steps=steps, learning_rate=lr, seed=seed, data_seed=seed,
            optim="adamw_torch", weight_decay=0.0, max_grad_norm=1.0, warmup_steps=0,
            lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr_rate": 0.1},
            **ckpt_off,
            report_to="none", save_strategy="no", eval_strategy="no", logging_strategy="no",
            disable_tqdm=True, dataloader_num_workers=0, dataloader_pin_memory=False,
        )
        assert not args.bf16 and not args.fp16 and not args.gradient_checkpointing and args.device.type == "cpu"

        class Clock(TrainerCallback):
            def __init__(self):
                self.t0 = self.t1 = self.t_first_end = None

            def on_step_begin(self, a, state, control, **kw):
                if self.t0 is None:
                    self.t0 = time.perf_counter()

            def on_step_end(self, a, state, control, **kw):
                self.t1 = time.perf_counter()
                if self.t_first_end is None:
                    self.t_first_end = self.t1

        counts = []  # per trained micro-batch: (real tokens, supervised tokens, documents)

        class CountingSFTTrainer(SFTTrainer):
            def training_step(self, model, inputs, num_items_in_batch=None):
                ids = inputs["input_ids"]
                if "attention_mask" in inputs:
                    real = int(inputs["attention_mask"].sum())
                else:
                    real = ids.numel()
                labels = inputs.get("labels")
                sup = int((labels != -100).sum()) if labels is not None else real
                pos = inputs.get("position_ids")
                docs = int((pos == 0).sum()) if pos is not None else ids.shape[0]
                counts.append((real, sup, docs))
                return super().training_step(model, inputs, num_items_in_batch)

        clock = Clock()
        ds = datasets.Dataset.from_list([{"messages": c} for c in convs])
        trainer = CountingSFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok,
                                     callbacks=[clock])
        trainer.remove_callback(PrinterCallback)  # no end-of-training metrics dump on stdout
        padding_free = bool(getattr(trainer, "padding_free", False))
        if padding_free:  # padding-free output is unpadded only without pad_to_multiple_of
            assert trainer.data_collator.pad_to_multiple_of is None
        packed_rows = len(trainer.train_dataset)
        result = trainer.train()
        if clock.t0 is None or len(counts) != steps:
            raise RuntimeError(f"expected {steps} trained micro-batches, saw {len(counts)}")
        seconds = clock.t1 - clock.t0
        tokens = sum(c[0] for c in counts)
        excl = clock.t1 - clock.t_first_end if steps > 1 else None
        tokens_excl = tokens - counts[0][0]
        return {
            "tokens_per_s": tokens / seconds,
            "tokens": tokens,
            "seconds": seconds,
            "steps": steps,
            "trl_version": trl.__version__,
            "packing_strategy": args.packing_strategy,
            "assistant_only_loss": assistant_only,
            # diagnostics
            "padding_free": padding_free,
            "chat_template": template_note if assistant_only else f"full-sequence loss ({template_note})",
            "supervised_tokens": sum(c[1] for c in counts),
            "documents": sum(c[2] for c in counts),
            "packed_rows_in_dataset": packed_rows,
            "conversations": len(convs),
            "dropped": dropped,
            "seconds_excl_first": excl,
            "tokens_per_s_excl_first": (tokens_excl / excl) if excl else None,
            "train_loss": float(result.training_loss),
            "optim": str(args.optim), "lr_scheduler": str(args.lr_scheduler_type),
            "attn_implementation": model.config._attn_implementation,
            "torch_threads": torch.get_num_threads(),
            "versions": {"trl": trl.__version__, "transformers": transformers.__version__,
                         "torch": torch.__version__, "datasets": datasets.__version__},
        }
    finally:
        if own_dir:
            shutil.rmtree(out, ignore_errors=True)


# ----------------------------------------------------------------------------- self-test

def synthetic_conversations(n: int = 300, seed: int = 0) -> list[list[dict]]:
    """n zh/en conversations, 1-4 user/assistant turns, optional system prompt, varied lengths."""
    import random

    rng = random.Random(seed)
    en_words = ("the model data training batch token loss packing sequence length conversation turn "
                "assistant user answer question explain please how why what when budget report weather "
                "recipe python function error memory speed graph result example number river mountain "
                "city music history science because therefore however also very quickly carefully").split()
    zh_chars = ("我你他她们的是在有不了人这中大为上个国到说们和地也子时道出而要于就下得可以生会自着去之过家学"
                "对能都里后然多么没成经还发好看天已样把所现想开用作从面前起同问题数据训练模型长度对话回答请解释"
                "为什么怎么天气今天明天城市音乐历史科学因为所以但是非常快速仔细")
    systems = ["You are a helpful assistant.", "你是一个乐于助人的助手。", "Answer concisely.", "请用中文回答。"]

    def en(k):
        s = " ".join(rng.choice(en_words) for _ in range(k))
        return s[:1].upper() + s[1:] + rng.choice([".", "?", "!"])

    def zh(k):
        return "".join(rng.choice(zh_chars) for _ in range(k)) + rng.choice(["。", "？", "！"])

    out = []
    for _ in range(n):
        lang = rng.choice(["en", "zh"])
        gen = en if lang == "en" else zh
        scale = rng.choice([1, 1, 2, 4, 8])  # mostly short, some long (a few exceed max_len=512)
        conv = []
        if rng.random() < 0.4:
            conv.append({"role": "system", "content": rng.choice(systems)})
        for _t in range(rng.randint(1, 4)):
            conv.append({"role": "user", "content": gen(rng.randint(3, 15) * scale)})
            conv.append({"role": "assistant", "content": gen(rng.randint(5, 30) * scale)})
        out.append(conv)
    return out


def _self_test() -> None:
    import json
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, root)
    from trainer.tiny import load_tokenizer, tiny_model

    with tempfile.TemporaryDirectory(prefix="trl_peer_model_") as d:
        tok = load_tokenizer()
        model = tiny_model(len(tok), seed=0)
        model.save_pretrained(d)
        tok.save_pretrained(d)
        convs = synthetic_conversations(300, seed=0)
        t = time.perf_counter()
        r = run_trl(d, convs, max_len=512, micro_batch_size=4, steps=20, lr=1e-3, seed=0)
        r["total_wall_s"] = time.perf_counter() - t
        print(json.dumps(r, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    _self_test()
