"""Full-catalogue ranking against plain loops and against the reference's top-k-then-filter procedure."""

from __future__ import annotations

import math

import pytest
import torch

from hstu_blair.evaluation import ranking
from hstu_blair.evaluation.metrics import DEFAULT_HR_KS, DEFAULT_NDCG_KS, metrics_from_ranks
from hstu_blair.evaluation.ranking import target_ranks, topk_items


def make_batch(seed: int, batch: int, n_cols: int, width: int, repeat_fraction: float = 0.2):
    """Random scores (no ties), targets and zero-padded histories with repeats; some targets repeat."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(batch, n_cols, generator=g)
    targets = torch.randint(1, n_cols, (batch,), generator=g)
    exclude = torch.randint(1, n_cols, (batch, width), generator=g)
    exclude[:, width // 2 :] = exclude[:, : width - width // 2].clone()  # repeated ids
    exclude[:, -2:] = 0  # padding
    repeat = torch.rand(batch, generator=g) < repeat_fraction
    exclude[repeat, 0] = targets[repeat]  # repeat consumption: the target is in the history
    return scores, targets, exclude


def loop_ranks(scores, targets, exclude, max_rank=None):
    """Sort each user's candidate list by score and find the target, one user at a time."""
    ranks = []
    for b in range(scores.shape[0]):
        row = scores[b].tolist()
        masked = set() if exclude is None else set(exclude[b].tolist())
        target = int(targets[b])
        if target in masked:
            ranks.append(math.inf)
            continue
        candidates = [j for j in range(1, len(row)) if j not in masked]
        ordered = sorted(candidates, key=lambda j: -row[j])
        rank = ordered.index(target) + 1
        ranks.append(math.inf if max_rank is not None and rank > max_rank else float(rank))
    return ranks


def loop_metrics_from_scores(scores, targets, exclude, hr_ks, ndcg_ks):
    """HR/NDCG/MRR by definition from the sorted candidate lists (misses score 0)."""
    sums = {f"hr@{k}": 0.0 for k in hr_ks} | {f"ndcg@{k}": 0.0 for k in ndcg_ks} | {"mrr": 0.0}
    for rank in loop_ranks(scores, targets, exclude):
        for k in hr_ks:
            sums[f"hr@{k}"] += 1.0 if rank <= k else 0.0
        for k in ndcg_ks:
            sums[f"ndcg@{k}"] += 1.0 / math.log2(rank + 1) if rank <= k else 0.0
        sums["mrr"] += 0.0 if rank == math.inf else 1.0 / rank
    return {key: value / scores.shape[0] for key, value in sums.items()}


def reference_ranks(scores, exclude, targets, max_k=2500):
    """SPEC §5.1 written plainly: top-k' by score, drop history ids, keep the first k, rank or 2501."""
    n_items = scores.shape[1] - 1  # candidates are item ids 1..n (the reference has no padding column)
    k = min(max_k, n_items)
    k_prime = min(k + exclude.shape[1], n_items)
    top_ids = scores[:, 1:].topk(k_prime, dim=1).indices + 1
    ranks = []
    for b in range(scores.shape[0]):
        history = set(exclude[b].tolist())
        kept = [int(i) for i in top_ids[b] if int(i) not in history][:k]
        target = int(targets[b])
        ranks.append(kept.index(target) + 1 if target in kept else max_k + 1)
    return ranks


@pytest.mark.parametrize(("batch", "n_cols", "width"), [(16, 300, 12), (1, 50, 5), (7, 9, 4)])
def test_ranks_match_sorted_loop(batch, n_cols, width):
    scores, targets, exclude = make_batch(0, batch, n_cols, width, repeat_fraction=0.3)
    before = scores.clone()
    result = target_ranks(scores, targets, exclude)
    assert result.ranks.dtype == torch.float64
    assert result.ranks.tolist() == loop_ranks(scores, targets, exclude)
    assert result.n_target_excluded == sum(int(t) in set(e.tolist()) for t, e in zip(targets, exclude))
    assert result.n_beyond_max_rank == 0 and result.n_tied == 0
    assert torch.equal(scores, before)  # scores are not modified


def test_ranks_without_exclusion_and_float64():
    scores, targets, _ = make_batch(1, 10, 200, 4)
    got = target_ranks(scores.double(), targets, None)
    assert got.ranks.tolist() == loop_ranks(scores, targets, None)
    assert got.n_target_excluded == 0


@pytest.mark.parametrize("seed", [0, 1])
def test_metrics_from_scores_match_definition(seed):
    scores, targets, exclude = make_batch(seed, 32, 400, 20)
    hr_ks, ndcg_ks = (*DEFAULT_HR_KS, 1000), DEFAULT_NDCG_KS  # @1000 > the 399-item catalogue
    got = metrics_from_ranks(target_ranks(scores, targets, exclude).ranks, hr_ks, ndcg_ks)
    want = loop_metrics_from_scores(scores, targets, exclude, hr_ks, ndcg_ks)
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-6), key


@pytest.mark.parametrize(("batch", "n_cols", "width"), [(24, 6000, 50), (1, 3000, 10), (5, 40, 8)])
def test_reference_procedure_equivalence(batch, n_cols, width):
    scores, targets, exclude = make_batch(2, batch, n_cols, width)
    if n_cols > 2600:  # push some targets deep into the list so that the 2,500 cut-off matters
        low = torch.arange(batch) % 3 == 0
        scores[low, targets[low]] = scores.min() - 1.0
        mid = torch.arange(batch) % 3 == 1
        ordered = scores[mid].sort(dim=1, descending=True).values
        scores[mid, targets[mid]] = (ordered[:, 2448] + ordered[:, 2449]) / 2  # near rank 2450, no tie
    result = target_ranks(scores, targets, exclude, max_rank=2500)
    ours = result.ranks.clamp(max=2501).tolist()
    assert ours == [float(r) for r in reference_ranks(scores, exclude, targets)]
    if n_cols > 2600:
        assert result.n_beyond_max_rank >= (torch.arange(batch) % 3 == 0).sum() - result.n_target_excluded


def test_reference_boundary_at_rank_2500():
    # Scores strictly decreasing in the item index: item j has plain rank j. History items above the
    # target lift it, so item 2502 with two excluded items above it is exactly at rank 2500.
    n_cols = 2700
    scores = -torch.arange(n_cols, dtype=torch.float32).repeat(4, 1)
    targets = torch.tensor([2500, 2501, 2502, 2502])
    exclude = torch.tensor([[0, 0], [0, 0], [1, 2], [1, 2600]])
    ours = target_ranks(scores, targets, exclude, max_rank=2500).ranks.clamp(max=2501).tolist()
    assert ours == [2500.0, 2501.0, 2500.0, 2501.0]
    assert ours == [float(r) for r in reference_ranks(scores, exclude, targets)]


def test_max_rank_turns_deep_targets_into_misses():
    scores = torch.tensor([[0.0, 5.0, 4.0, 3.0, 2.0, 1.0]] * 2)
    targets = torch.tensor([3, 5])
    got = target_ranks(scores, targets, torch.tensor([[1, 0], [0, 0]]), max_rank=2)
    assert got.ranks.tolist() == [2.0, math.inf]  # item 1 excluded lifts item 3 to rank 2; item 5 is 5th
    assert (got.n_target_excluded, got.n_beyond_max_rank) == (0, 1)


def test_ties_are_optimistic_and_counted():
    scores = torch.tensor(
        [
            [9.0, 1.0, 2.0, 2.0, 2.0, 0.5],  # target 3 tied with 2 and 4; column 0 never counts
            [0.0, 1.0, 1.0, 1.0, 1.0, 1.0],  # constant scores: rank 1 for any target
            [0.0, 3.0, 1.0, 2.0, 2.0, 0.0],  # target 3 tied only with excluded item 4
        ]
    )
    targets = torch.tensor([3, 5, 3])
    exclude = torch.tensor([[0, 0], [0, 0], [4, 4]])
    got = target_ranks(scores, targets, exclude)
    assert got.ranks.tolist() == [1.0, 1.0, 2.0]
    assert got.n_tied == 2


def test_chunked_counting_equals_single_chunk(monkeypatch):
    scores, targets, exclude = make_batch(3, 50, 101, 10)
    whole = target_ranks(scores, targets, exclude)
    monkeypatch.setattr(ranking, "_CHUNK_ELEMENTS", 150)  # one row per chunk
    assert torch.equal(target_ranks(scores, targets, exclude).ranks, whole.ranks)
    monkeypatch.setattr(ranking, "_CHUNK_ELEMENTS", 700)  # uneven chunks of 6 rows
    assert torch.equal(target_ranks(scores, targets, exclude).ranks, whole.ranks)


def test_bad_inputs_raise():
    scores, targets, exclude = make_batch(4, 4, 30, 3)
    with pytest.raises(ValueError, match="float32 or float64"):
        target_ranks(scores.half(), targets, exclude)
    with pytest.raises(ValueError, match=r"\[1, 29\]"):
        target_ranks(scores, torch.tensor([0, 1, 2, 3]), exclude)
    with pytest.raises(ValueError, match="targets must be int64"):
        target_ranks(scores, targets[:3], exclude)
    with pytest.raises(ValueError, match="outside"):
        target_ranks(scores, targets, exclude + 30)
    with pytest.raises(ValueError, match="exclude must be"):
        target_ranks(scores, targets, exclude[:2])
    nan_scores = scores.clone()
    nan_scores[0, targets[0]] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        target_ranks(nan_scores, targets, exclude)


def test_topk_items_match_sorted_loop_and_skip_excluded():
    scores, _, exclude = make_batch(5, 6, 80, 10)
    before = scores.clone()
    values, ids = topk_items(scores, 15, exclude)
    assert torch.equal(scores, before)
    for b in range(6):
        masked = set(exclude[b].tolist()) | {0}
        ordered = sorted((j for j in range(80) if j not in masked), key=lambda j: -scores[b, j].item())
        assert ids[b].tolist() == ordered[:15]
        assert torch.equal(values[b], scores[b, ids[b]])


def test_topk_items_short_rows_inplace_and_bad_k():
    scores = torch.tensor([[7.0, 1.0, 3.0, 2.0], [7.0, 1.0, 3.0, 2.0]])
    exclude = torch.tensor([[2, 3], [0, 0]])
    values, ids = topk_items(scores, 3, exclude, inplace=True)
    assert ids.tolist() == [[1, 0, 0], [2, 3, 1]]  # row 0 has one candidate left
    assert values[0, 1:].tolist() == [-math.inf, -math.inf]
    assert scores[0].tolist() == [-math.inf, 1.0, -math.inf, -math.inf]  # masked in place
    with pytest.raises(ValueError, match=r"k must lie in \[1, 3\]"):
        topk_items(scores, 4)


def test_empty_batch_gives_no_ranks():
    empty = target_ranks(
        torch.zeros(0, 5), torch.zeros(0, dtype=torch.long), torch.zeros(0, 3, dtype=torch.long)
    )
    assert empty.ranks.shape == (0,)
    assert (empty.n_target_excluded, empty.n_beyond_max_rank, empty.n_tied) == (0, 0, 0)
