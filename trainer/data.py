"""Packed shards in memory, the global-batch order, and the micro-batch collator.

The order of global batches depends only on the data, the seed and the global batch size in
rows (micro_batch_size x grad_accum x world_size), never on how a global batch is split over
ranks and accumulation steps (docs/design.md#loss 4.d): global batch t is rows [t*G, (t+1)*G) of an
endless stream of per-epoch permutations drawn from (seed, epoch).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from pipeline import shards


class PackedData:
    """All rows of a packed shard folder, as flat numpy arrays plus row offsets."""

    def __init__(self, folder: str):
        parts = shards.verified_files(folder)  # each part as its manifest says: set, sizes, rows
        if not parts:
            raise ValueError(f"{folder}: no packed rows")
        rows = shards.expected_rows(folder)
        table = pa.concat_tables([shards.read_table(p, rows.get(p)) for p in parts])
        self.folder = folder

        def flat(name):
            col = table.column(name).combine_chunks()
            return col.values.to_numpy(zero_copy_only=False), col.offsets.to_numpy()

        self.input_ids, self.offsets = flat("input_ids")
        self.labels, _ = flat("labels")
        self.position_ids, _ = flat("position_ids")
        self.turn_ids, _ = flat("turn_ids")
        self.n_turns = table.column("n_turns").to_numpy()
        self.n_supervised = table.column("n_supervised").to_numpy()
        self.domains = table.column("domains").to_pylist()

    def __len__(self) -> int:
        return len(self.n_turns)

    def row(self, i: int) -> dict:
        s, e = self.offsets[i], self.offsets[i + 1]
        return {"input_ids": self.input_ids[s:e], "labels": self.labels[s:e],
                "position_ids": self.position_ids[s:e], "turn_ids": self.turn_ids[s:e],
                "n_turns": int(self.n_turns[i])}


def global_batches(n_rows: int, rows_per_step: int, steps: int, seed: int, start: int = 0) -> list[np.ndarray]:
    """Row indices of global batches start..steps-1 (see module doc)."""
    need = steps * rows_per_step
    stream, epoch = [], 0
    total = 0
    while total < need:
        p = np.random.default_rng([seed, epoch]).permutation(n_rows)
        stream.append(p)
        total += len(p)
        epoch += 1
    flat = np.concatenate(stream) if stream else np.zeros(0, dtype=np.int64)
    return [flat[t * rows_per_step:(t + 1) * rows_per_step] for t in range(start, steps)]


@dataclass
class MicroBatch:
    input_ids: torch.Tensor
    labels: torch.Tensor
    position_ids: torch.Tensor
    turn_ids: torch.Tensor  # -1 unsupervised; 0..n_turns-1 unique over the micro-batch
    n_turns: int
    n_supervised: int
    n_tokens: int

    def to(self, device) -> "MicroBatch":
        return MicroBatch(self.input_ids.to(device), self.labels.to(device), self.position_ids.to(device),
                          self.turn_ids.to(device), self.n_turns, self.n_supervised, self.n_tokens)


def collate(rows: list[dict], pad_id: int) -> MicroBatch:
    """Pad rows to the longest; padding is its own position run (never attended to by real
    tokens, which come before it) with label -100 and turn -1."""
    L = max(len(r["input_ids"]) for r in rows)
    B = len(rows)
    ids = np.full((B, L), pad_id, dtype=np.int64)
    labels = np.full((B, L), -100, dtype=np.int64)
    pos = np.tile(np.arange(L, dtype=np.int64), (B, 1))
    turns = np.full((B, L), -1, dtype=np.int64)
    offset = 0
    n_tok = 0
    for b, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[b, :n] = r["input_ids"]
        labels[b, :n] = r["labels"]
        pos[b, :n] = r["position_ids"]
        pos[b, n:] = np.arange(L - n)
        t = r["turn_ids"].astype(np.int64)
        turns[b, :n] = np.where(t >= 0, t + offset, -1)
        offset += r["n_turns"]
        n_tok += n
    return MicroBatch(torch.from_numpy(ids), torch.from_numpy(labels), torch.from_numpy(pos),
                      torch.from_numpy(turns), offset, int((labels != -100).sum()), n_tok)
