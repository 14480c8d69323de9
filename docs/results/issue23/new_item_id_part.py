"""What a new item's ID part should be: zero (as served today) against its text neighbours' ID rows.

    python docs/results/issue23/new_item_id_part.py runs/iddrop-dev/*/*/seed-*/run --k 0 5 20 --out FILE.json

For each cold-start run (a folder holding ``cold_start.json``) the held-out items are given, in
turn: no ID part (``zero``, what ``POST /items`` and the cold-start recipe do), or the mean ID row
of the ``k`` warm items whose raw text vectors are nearest by cosine (``knn-k``). Each way reports
the held-out items' cold HR@50 (each user's first held-out item over the whole catalogue, as the
recipe ranks it), warm test NDCG@10 with the held-out items among the candidates, and the share of
warm test users' top-10 slots the held-out items take. Evaluation only: nothing is retrained.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from hstu_blair.config import load_config
from hstu_blair.data.dataset import SequenceData
from hstu_blair.data.holdout import cold_targets, pick_cold_items
from hstu_blair.evaluation.evaluate import evaluate_model, top_k_share
from hstu_blair.recipes.resolve import eval_options
from hstu_blair.recipes.resolve import split as resolve_split
from hstu_blair.run.layout import config_path
from hstu_blair.run.model_files import load_trained


def neighbour_rows(text: torch.Tensor, ids: torch.Tensor, cold: torch.Tensor, k: int) -> torch.Tensor:
    """(len(cold), D): the mean ID row of each cold item's ``k`` text-nearest warm items."""
    warm = torch.ones(text.shape[0], dtype=torch.bool)
    warm[0] = False
    warm[cold] = False
    warm_idx = warm.nonzero().squeeze(1)
    unit = F.normalize(text, dim=1)
    sims = unit[cold] @ unit[warm_idx].T  # (C, W)
    nearest = warm_idx[sims.topk(k, dim=1).indices]  # (C, k)
    return ids[nearest].mean(1)  # (C, D)


def measure(run: Path, ks: list[int]) -> dict | None:
    """The figures of one run for each k; None for a model without an ID table (text only)."""
    trained = load_trained(run)
    fusion = trained.model.items.fusion
    if not hasattr(fusion, "ids") or trained.model.items.text is None:
        return None
    payload = json.loads((run / "cold_start.json").read_text())
    config = load_config(config_path(run))
    full = SequenceData.load(Path(trained.data.manifest["cold_start"]["source_dataset"]))
    cold = torch.as_tensor(
        pick_cold_items(full.num_items, payload["share"], payload["seed"]), dtype=torch.long
    )
    targets = cold_targets(full, cold.numpy())
    warm_test = resolve_split(config, trained.data).targets("test")
    options = eval_options(config)
    table = fusion.ids.weight.data
    trained_rows = table.clone()
    text = trained.model.items.text
    held_out = torch.zeros(full.num_items + 1, dtype=torch.bool)
    held_out[cold] = True
    out = {"run": str(run), "dataset": payload["dataset"], "label": payload["label"], "seed": payload["seed"]}
    for k in ks:
        table.copy_(trained_rows)
        table[cold] = 0.0 if k == 0 else neighbour_rows(text, trained_rows, cold, k)
        name = "zero" if k == 0 else f"knn-{k}"
        cold_m = evaluate_model(trained.model, full, targets, config.data.max_len, options)
        warm_m = evaluate_model(trained.model, trained.data, warm_test, config.data.max_len, options)
        share = top_k_share(
            trained.model, trained.data, warm_test, config.data.max_len, held_out, 10, options
        )
        out[name] = {"cold_hr@50": cold_m["hr@50"], "warm_ndcg@10": warm_m["ndcg@10"], "top10_share": share}
        print(
            f"{payload['dataset']:16s} {payload['label']:32s} s{payload['seed']:<3d} {name:7s} "
            f"cold HR@50 {cold_m['hr@50']:.4f}  warm NDCG@10 {warm_m['ndcg@10']:.4f}  share {share:.3f}",
            flush=True,
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="cold-start run folders (holding cold_start.json)")
    parser.add_argument(
        "--k", nargs="+", type=int, default=[0, 5, 20], help="neighbour counts (0: zero ID part)"
    )
    parser.add_argument("--out", type=Path, help="write every figure to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    measured = (measure(run, args.k) for run in args.runs if (run / "cold_start.json").exists())
    results = [r for r in measured if r is not None]
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
