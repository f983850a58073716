"""Per-turn loss definitions and the turn-loss cap on the design's test vectors (docs/design.md#loss)."""
import torch

from trainer.loss import micro_batch_loss, per_turn_sums, reduce, turn_means


def split_reference(turns: list[list[float]]) -> float:
    """4.a: one sample per turn, each sample's mean token loss, averaged over samples."""
    return sum(sum(t) / len(t) for t in turns) / len(turns)


def flat(turns):
    tok = torch.tensor([x for t in turns for x in t], dtype=torch.float64)
    tid = torch.tensor([i for i, t in enumerate(turns) for _ in t])
    return tok, tid


def test_seed_vector_one():
    turns = [[1.0, 1.0], [0.5, 0.5, 0.5, 0.5]]
    l, n = per_turn_sums(*flat(turns))
    assert l.tolist() == [2.0, 2.0] and n.tolist() == [2.0, 4.0]
    assert reduce(l, n, "turn_mean").item() == 0.75 == split_reference(turns)
    assert abs(reduce(l, n, "token_mean").item() - 2 / 3) < 1e-15


def test_seed_vector_two_dialogues():
    # dialogue A: one turn (n=2, l=2.0); dialogue B: (2, 2.0), (4, 4.0), (2, 0.4)
    turns = [[1.0, 1.0], [1.0, 1.0], [1.0] * 4, [0.2, 0.2]]
    l, n = per_turn_sums(*flat(turns))
    assert torch.allclose(l, torch.tensor([2.0, 2.0, 4.0, 0.4], dtype=torch.float64))
    assert abs(reduce(l, n, "turn_mean").item() - 0.8) < 1e-12
    assert abs(reduce(l, n, "token_mean").item() - 0.84) < 1e-12
    assert abs(reduce(l, n, "turn_mean").item() - split_reference(turns)) < 1e-12


def test_equal_length_turns_make_both_means_equal():
    g = torch.Generator().manual_seed(0)
    tok = torch.rand(5 * 7, generator=g, dtype=torch.float64)
    tid = torch.arange(5).repeat_interleave(7)
    l, n = per_turn_sums(tok, tid)
    assert torch.allclose(reduce(l, n, "turn_mean"), reduce(l, n, "token_mean"))
    # ...and differ once lengths differ
    tid2 = torch.tensor([0] * 30 + [1] * 5)
    l2, n2 = per_turn_sums(tok, tid2)
    assert not torch.allclose(reduce(l2, n2, "turn_mean"), reduce(l2, n2, "token_mean"))


def test_unsupervised_tokens_ignored_and_gradients_flow():
    tok = torch.tensor([5.0, 1.0, 2.0, 7.0, 3.0], requires_grad=True)
    tid = torch.tensor([-1, 0, 0, -1, 1])
    l, n = per_turn_sums(tok, tid)
    loss = reduce(l, n, "turn_mean")
    loss.backward()
    assert loss.item() == (1.5 + 3.0) / 2
    assert tok.grad.tolist() == [0.0, 0.25, 0.25, 0.0, 0.5]


def test_turn_cap_limits_value_but_keeps_gradient_direction():
    tok = torch.tensor([1.0, 1.0, 20.0, 20.0], requires_grad=True)
    l, n = per_turn_sums(tok, torch.tensor([0, 0, 1, 1]))
    m = turn_means(l, n, cap=5.0)
    assert m.tolist() == [1.0, 5.0]
    m.sum().backward()
    assert tok.grad.tolist() == [0.5, 0.5, 0.125, 0.125]  # capped turn scaled by 5/20, not zeroed


def test_micro_batches_over_ranks_sum_to_the_global_mean():
    """4.d with 2 ranks x 2 accumulation steps: sum of micro-batch losses / world == mean."""
    g = torch.Generator().manual_seed(1)
    mbs = []
    for _ in range(4):
        k = int(torch.randint(1, 5, (1,), generator=g))
        lens = torch.randint(1, 9, (k,), generator=g)
        mbs.append(flat([torch.rand(int(x), generator=g, dtype=torch.float64).tolist() for x in lens]))
    sums = [per_turn_sums(*mb) for mb in mbs]
    for mode, count in (("turn_mean", sum(len(l) for l, _ in sums)), ("token_mean", sum(n.sum() for _, n in sums))):
        world = 2
        total = sum(micro_batch_loss(l, n, mode, float(count), world) for l, n in sums) / world
        all_l = torch.cat([l for l, _ in sums])
        all_n = torch.cat([n for _, n in sums])
        assert torch.allclose(total, reduce(all_l, all_n, mode))
