"""Cold-start protocol: held-out items vanish from training, a text path can rank them, and the
reported cold numbers are what serving gives an item added by its text."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hstu_blair.config import load_config
from hstu_blair.data.dataset import SequenceData
from hstu_blair.data.holdout import cold_targets, pick_cold_items, write_warm_dataset
from hstu_blair.errors import ConfigError
from hstu_blair.evaluation.evaluate import rank_targets, top_k_share
from hstu_blair.evaluation.metrics import metrics_from_ranks
from hstu_blair.recipes.cold_start import as_served, cold_start
from hstu_blair.run.model_files import load_trained
from hstu_blair.serving.recommender import Recommender
from hstu_blair.text.store import StoreManifest, save_embeddings
from hstu_blair.training.batching import eval_batch
from tests.conftest import HashEncoder, tiny_overrides


def test_warm_dataset_and_targets(tiny_dataset, tmp_path):
    data = SequenceData.load(tiny_dataset)
    cold = pick_cold_items(data.num_items, 0.2, seed=0)
    with pytest.raises(ConfigError, match="share must be in"):
        pick_cold_items(data.num_items, 2.0, seed=0)
    assert cold.size == 8 and cold.min() >= 1 and cold.max() <= data.num_items
    warm = write_warm_dataset(data, cold, tmp_path / "warm")
    assert warm.num_items == data.num_items  # same ids, same catalogue
    assert not np.isin(warm.item_seq, cold).any()
    assert warm.num_interactions == data.num_interactions - np.isin(data.item_seq, cold).sum()
    assert (
        warm.manifest["cold_start"]["removed_interactions"] == data.num_interactions - warm.num_interactions
    )
    targets = cold_targets(data, cold)
    for u, p in zip(targets.users, targets.positions):
        seq = data.user_items(u)
        assert seq[p] in cold and p > 0 and not np.isin(seq[:p], cold).any()


def _cycle_text(tmp_path, data):
    """Item text vectors that encode each item's place on the synthetic cycle (generalises to unseen items)."""
    idx = np.array([int(r[1:]) for r in data.items["item_id"].to_list()])  # item ids "i17" -> 17
    angles = 2 * np.pi * idx / 40
    feats = np.stack([f(k * angles) for k in (1, 2, 3, 4) for f in (np.cos, np.sin)], axis=1)  # (n, 8)
    matrix = np.vstack([np.zeros((1, 8)), feats]).astype(np.float32)
    path = tmp_path / "cycle.safetensors"
    save_embeddings(path, matrix, StoreManifest(encoder="test-cycle", dim=8, num_items=data.num_items))
    return path


@pytest.mark.slow
def test_text_path_ranks_cold_items_better_than_id_only(tiny_dataset, tmp_path):
    data = SequenceData.load(tiny_dataset)
    emb = _cycle_text(tmp_path, data)
    results = {}
    for fusion in ("id", "text"):
        extra = {
            "train.epochs": 30,
            "train.lr": 5e-3,
            "model.fusion": fusion,
            "text.embeddings": str(emb),
            "model.dropout": 0.0,
            "model.input_dropout": 0.0,
            "train.patience": 0,
        }
        config = load_config(None, tiny_overrides(tiny_dataset, tmp_path / fusion, **extra))
        results[fusion] = cold_start(config, share=0.2, seed=0, work_dir=tmp_path / fusion)
    assert results["text"]["cold_targets"] > 10
    assert results["text"]["cold"]["hr@10"] > results["id"]["cold"]["hr@10"] + 0.2

    from hstu_blair.reports.report import write_report

    write_report([tmp_path], tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text()
    assert "## Cold-start items" in md and "cold items" in md and "warm test" in md


@pytest.mark.parametrize("fusion", ["sum", "gated"])
def test_cold_scores_are_what_serving_gives_an_item_added_with_the_same_text(
    tiny_dataset, tiny_text_store, tmp_path, fusion
):
    """``cold`` ranks held-out items as served: the score of a held-out item equals the score the
    Recommender gives the same text added with ``add_item``; ``cold_trained_rows`` keeps the old
    protocol (the items' ID rows, trained only as negatives)."""
    data = SequenceData.load(tiny_dataset)
    extra = {"model.fusion": fusion, "text.embeddings": str(tiny_text_store), "train.epochs": 2}
    config = load_config(None, tiny_overrides(tiny_dataset, tmp_path, **extra))
    result = cold_start(config, share=0.2, seed=0, work_dir=tmp_path / "cold")
    assert result["cold"] != result["cold_trained_rows"]
    cold = pick_cold_items(data.num_items, 0.2, seed=0)
    targets = cold_targets(data, cold)
    served = as_served(load_trained(result["run_dir"]), cold)
    ranks, _ = rank_targets(served.model, data, targets, config.data.max_len)
    assert result["cold"]["hr@10"] == pytest.approx(metrics_from_ranks(ranks.numpy())["hr@10"])

    rec = Recommender.load(result["run_dir"], encoder=HashEncoder(), persist=False)
    for user, position in list(zip(targets.users, targets.positions))[:5]:
        items, times = data.user_items(user), data.user_times(user)
        target = int(items[position])
        batch, _ = eval_batch(data, np.array([user]), np.array([position]), config.data.max_len)
        with torch.inference_mode():
            query = served.model.query_vectors(batch.ids, batch.timestamps, batch.lengths)  # (1, D)
            cold_score = float(query[0] @ served.model.item_vectors(torch.tensor([target]))[0])
        new_id = f"added-{user}"
        rec.add_item(new_id, text=data.texts[target - 1])
        listed = rec.recommend(
            [data.item_ids[i] for i in items[:position]],
            k=rec.num_items,
            exclude_seen=False,
            timestamps=times[:position].tolist(),
            query_time=int(times[position]),
        )
        served_score = next(r.score for r in listed if r.item_id == new_id)
        assert served_score == pytest.approx(cold_score, abs=1e-5)


def test_warm_top10_cold_share_counts_the_held_out_items_in_warm_users_lists(
    tiny_dataset, tiny_text_store, tmp_path
):
    """``warm_top10_cold_share`` is the share of warm test users' top-10 slots that held-out items
    take as served: recomputed here from each user's own top 10 (history excluded), and the shares
    of complementary item sets add up to the whole list."""
    extra = {"model.fusion": "sum", "text.embeddings": str(tiny_text_store), "train.epochs": 2}
    config = load_config(None, tiny_overrides(tiny_dataset, tmp_path, **extra))
    result = cold_start(config, share=0.2, seed=0, work_dir=tmp_path / "cold")
    data = SequenceData.load(tiny_dataset)
    cold = pick_cold_items(data.num_items, 0.2, seed=0)
    served = as_served(load_trained(result["run_dir"]), cold)
    warm, targets = served.data, served.data.split("loo").targets("test")
    warm_items = torch.ones(data.num_items + 1, dtype=torch.bool)
    warm_items[torch.as_tensor(cold, dtype=torch.long)] = False
    among_warm, _ = rank_targets(served.model, warm, targets, config.data.max_len, candidates=warm_items)
    taken = slots = 0
    with torch.inference_mode():
        items = served.model.item_vectors()  # (n+1, D)
        for i, (user, position) in enumerate(zip(targets.users, targets.positions)):
            batch, target = eval_batch(warm, np.array([user]), np.array([position]), config.data.max_len)
            scores = (served.model.query_vectors(batch.ids, batch.timestamps, batch.lengths) @ items.T)[0]
            scores[0] = -np.inf
            scores[torch.as_tensor(warm.user_items(user)[:position], dtype=torch.long)] = -np.inf
            top = scores.topk(10).indices.numpy()
            taken += int(np.isin(top, cold).sum())
            slots += 10
            if int(target[0]) in warm.user_items(user)[:position]:  # a repeat: a miss, as for the metrics
                assert among_warm[i] == float("inf")
                continue
            above = scores[warm_items] > scores[int(target[0])]
            assert among_warm[i] == 1 + int(above.sum())  # candidates: only the warm items compete
    assert result["warm_top10_cold_share"] == pytest.approx(taken / slots)
    from hstu_blair.reports.report import write_report

    write_report([tmp_path / "cold"], tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text()
    assert f"{taken / slots:.1%} ± 0.0%" in md and "top-10 slots the held-out items take" in md

    mask = torch.zeros(data.num_items + 1, dtype=torch.bool)
    mask[1::2] = True
    whole = torch.ones_like(mask)
    whole[0] = False
    share = [
        top_k_share(served.model, warm, targets, config.data.max_len, m) for m in (mask, whole & ~mask, whole)
    ]
    assert share[0] + share[1] == pytest.approx(1.0) and share[2] == 1.0
    # a list longer than some users' candidates: only real slots count
    assert top_k_share(served.model, warm, targets, config.data.max_len, whole, k=data.num_items) == 1.0
    with pytest.raises(ValueError, match="items must be a bool mask of shape"):
        top_k_share(served.model, warm, targets, config.data.max_len, mask[1:])
    with pytest.raises(ValueError, match="candidates must be a bool mask of shape"):
        rank_targets(served.model, warm, targets, config.data.max_len, candidates=mask.long())
