"""Per-turn loss (docs/design.md#loss, docs/design.md#gradient-stability).

A *turn* is one user message and the assistant reply that answers it. For turn i, l_i is the
sum of its token losses and n_i its number of supervised tokens.

- 4.a split, one sample per turn:       L = (1/T) sum_i l_i / n_i         ("turn_mean")
- 4.b merged, torch's reduction='mean': L = sum_i l_i / sum_i n_i         ("token_mean")
- 4.c packing must still give the 4.a turn mean: turn ids are unique per packed row, so
  documents never share a turn.
- 4.d across micro-batches, gradient accumulation and data-parallel ranks: each micro-batch
  contributes sum_i l_i/n_i, and the step divides once by the global turn count T_global
  (see `micro_batch_loss`).

Test vectors (docs/design.md#loss):

>>> import torch
>>> tok = torch.tensor([1.0, 1.0, 0.5, 0.5, 0.5, 0.5]); tid = torch.tensor([0, 0, 1, 1, 1, 1])
>>> l, n = per_turn_sums(tok, tid)
>>> round(reduce(l, n, "turn_mean").item(), 6), round(reduce(l, n, "token_mean").item(), 6)
(0.75, 0.666667)
"""
from __future__ import annotations

import torch

MODES = ("turn_mean", "token_mean")


def per_turn_sums(token_loss: torch.Tensor, turn_id: torch.Tensor, num_turns: int | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(l, n): per-turn sum of token losses and count of supervised tokens.

    `turn_id` has the shape of `token_loss`; -1 marks tokens that are not supervised. Turn ids
    are 0..T-1 (T = `num_turns`, or max id + 1). One scatter_add, no Python loop over turns.

    >>> l, n = per_turn_sums(torch.tensor([2., 9., 1., 3.]), torch.tensor([0, -1, 1, 1]))
    >>> l.tolist(), n.tolist()
    ([2.0, 4.0], [1.0, 2.0])
    """
    tl = token_loss.reshape(-1)
    ti = turn_id.reshape(-1).to(torch.long)
    keep = ti >= 0
    T = int(num_turns) if num_turns is not None else (int(ti.max().item()) + 1 if keep.any() else 0)
    ids = ti[keep]
    l = torch.zeros(T, dtype=tl.dtype, device=tl.device).scatter_add(0, ids, tl[keep])
    n = torch.zeros(T, dtype=tl.dtype, device=tl.device).scatter_add(0, ids, torch.ones_like(tl[keep]))
    return l, n


def turn_means(l: torch.Tensor, n: torch.Tensor, cap: float | None = None) -> torch.Tensor:
    """l_i / n_i, optionally capped: a turn whose mean loss exceeds `cap` counts as
    `cap`, with its gradient scaled by cap / mean rather than zeroed, so an abnormal turn still
    learns but cannot dominate the step."""
    m = l / n.clamp_min(1)
    if cap is not None:
        scale = (cap / m.detach().clamp_min(1e-12)).clamp(max=1.0)
        m = m * scale
    return m


def reduce(l: torch.Tensor, n: torch.Tensor, mode: str = "turn_mean", cap: float | None = None) -> torch.Tensor:
    """Loss of one batch from per-turn sums: turn_mean (4.a) or token_mean (4.b).

    >>> l, n = torch.tensor([2.0, 2.0, 4.0, 0.4]), torch.tensor([2.0, 2.0, 4.0, 2.0])
    >>> round(reduce(l, n, "turn_mean").item(), 6), round(reduce(l, n, "token_mean").item(), 6)
    (0.8, 0.84)
    """
    if mode == "turn_mean":
        return turn_means(l, n, cap).sum() / max(len(l), 1)
    if mode == "token_mean":
        return l.sum() / n.sum().clamp_min(1)
    raise ValueError(f"loss mode {mode!r} not in {MODES}")


def micro_batch_loss(l: torch.Tensor, n: torch.Tensor, mode: str, global_count: float, world_size: int,
                     cap: float | None = None) -> torch.Tensor:
    """docs/design.md#loss 4.d: the loss one micro-batch backpropagates.

    turn_mean: sum_i(l_i/n_i) * world_size / T_global; token_mean: sum_i l_i * world_size /
    N_global. DDP then averages gradients over ranks (divides by world_size) and accumulation
    sums micro-batches, so the step's gradient is exactly that of the global mean. The global
    count is summed over all micro-batches and ranks before the forward pass.
    """
    if mode == "turn_mean":
        return turn_means(l, n, cap).sum() * world_size / global_count
    if mode == "token_mean":
        return l.sum() * world_size / global_count
    raise ValueError(f"loss mode {mode!r} not in {MODES}")


def token_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Causal-LM token losses aligned with `labels[..., 1:]` (0 where the label is -100)."""
    V = logits.shape[-1]
    return torch.nn.functional.cross_entropy(
        logits[..., :-1, :].reshape(-1, V).float(), labels[..., 1:].reshape(-1), ignore_index=-100,
        reduction="none").view(labels.shape[:-1] + (labels.shape[-1] - 1,))
