"""Warm validation NDCG@10 of cold-start runs with and without the held-out items among the candidates.

    python docs/results/issue23/warm_without_held_out.py runs/iddrop-dev/sports/*/seed-1/run

Splits a warm loss into what the held-out items take by crowding the lists (they are never a warm
target) and what the model lost in training (e.g. early stopping misled by a crowded validation).
Ranks as training validated: the held-out items keep their (untrained) ID rows.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from hstu_blair.config import load_config
from hstu_blair.evaluation.evaluate import rank_targets
from hstu_blair.evaluation.metrics import metrics_from_ranks
from hstu_blair.recipes.resolve import eval_options
from hstu_blair.recipes.resolve import split as resolve_split
from hstu_blair.run.layout import config_path
from hstu_blair.run.model_files import load_trained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="cold-start run folders (holding cold_start.json)")
    args = parser.parse_args()
    for run in args.runs:
        config = load_config(config_path(run))
        trained = load_trained(run)
        data = trained.data
        targets = resolve_split(config, data).targets("valid")
        warm = torch.zeros(data.num_items + 1, dtype=torch.bool)
        warm[torch.as_tensor(data.item_seq, dtype=torch.long)] = True  # items the warm data has
        ndcg = []
        for candidates in (None, warm):
            ranks, _ = rank_targets(
                trained.model, data, targets, config.data.max_len, eval_options(config), candidates=candidates
            )
            ndcg.append(metrics_from_ranks(ranks.numpy())["ndcg@10"])
        print(
            f"{run}: valid NDCG@10 {ndcg[0]:.4f} with the {int((~warm[1:]).sum())} held-out items "
            f"among the candidates, {ndcg[1]:.4f} without them"
        )


if __name__ == "__main__":
    main()
