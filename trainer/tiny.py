"""The `tiny` preset: a small byte-level BPE tokenizer shipped in the package and a randomly
initialised Llama-style model, for tests, the demo and CPU benchmarks.

On CPU a 100k+ vocabulary makes the logits the whole cost, so the preset's tokenizer has a
few thousand tokens. It was trained on the team's own data_samples/ text by

    python -m trainer.tiny --out trainer/assets/tiny-tokenizer

and byte-level fallback means no character is ever unknown (Chinese included). Its chat
template is ChatML with `{% generation %}` markers (pipeline/templates.py): it renders the same
text as plain ChatML, so the trainer's own mask is unchanged, and TRL's assistant_only_loss
finds the assistant tokens by the markers.
"""
from __future__ import annotations

import argparse
import glob
import json
import os

from pipeline.templates import CHATML_GENERATION

ASSET_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "tiny-tokenizer")

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

TINY_MODEL = dict(hidden_size=64, intermediate_size=192, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=4, max_position_embeddings=4096, rms_norm_eps=1e-6,
                  tie_word_embeddings=True, attention_dropout=0.0)


def _sample_texts(root: str):
    for path in sorted(glob.glob(os.path.join(root, "**", "*.json*"), recursive=True)):
        with open(path, "rb") as f:
            for line in f:
                yield line.decode("utf-8", "ignore")


def train_tokenizer(texts, out: str, vocab_size: int = 4096) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    os.makedirs(out, exist_ok=True)
    tok.save(os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": None, "eos_token": "<|im_end|>",
                   "pad_token": "<|endoftext|>", "unk_token": None, "model_max_length": 1 << 20,
                   "chat_template": CHATML_GENERATION, "clean_up_tokenization_spaces": False}, f, indent=1)


def load_tokenizer(path: str | None = None):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path or ASSET_DIR)


def tiny_model(vocab_size: int, seed: int = 0, **overrides):
    """A Llama-architecture model with random weights (deterministic for a seed)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=vocab_size, **{**TINY_MODEL, **overrides})
    cfg.use_cache = False  # with the cache on, packed documents would leak into each other
    torch.manual_seed(seed)
    return LlamaForCausalLM(cfg)


def save_tiny(out: str, seed: int = 0) -> str:
    """Save the shipped tokenizer and a random tiny model to `out`, loadable by
    AutoModelForCausalLM / AutoTokenizer (the synth stage's local backend in tests and bench)."""
    tok = load_tokenizer()
    model = tiny_model(len(tok), seed=seed)
    model.config.use_cache = True  # generation, not packed training
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(os.path.dirname(ASSET_DIR), "..", "..", "data_samples"))
    ap.add_argument("--out", default=ASSET_DIR)
    ap.add_argument("--vocab-size", type=int, default=4096)
    a = ap.parse_args()
    train_tokenizer(_sample_texts(a.data), a.out, a.vocab_size)
    print(f"tokenizer -> {a.out}")
