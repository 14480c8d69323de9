"""How close each item's nearest text neighbour is, by the item's interactions (near-duplicate titles).

    python docs/results/issue23/text_neighbours.py data/games data/scientific

For every item with text, the cosine of its nearest other item in the dataset's MiniLM embeddings
(``embeddings/minilm.safetensors``), grouped by the item's interactions in the whole dataset:
the share with a neighbour above 0.9, the share with a more popular neighbour above 0.95, and the
median nearest-neighbour cosine.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from safetensors.torch import load_file

from hstu_blair.data.dataset import SequenceData

BINS = ((1, 5), (5, 20), (20, 100), (100, None))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dirs", nargs="+")
    parser.add_argument("--encoder", default="minilm")
    args = parser.parse_args()
    print(
        "| dataset | interactions | items | neighbour > 0.9 | more popular neighbour > 0.95 | median neighbour cosine |"
    )
    print("|---|---|---|---|---|---|")
    for path in args.data_dirs:
        data = SequenceData.load(path)
        (table,) = load_file(f"{path}/embeddings/{args.encoder}.safetensors").values()
        vectors = torch.nn.functional.normalize(table[1:].float(), dim=1)  # (n, d); row 0 is padding
        sim = vectors @ vectors.T  # (n, n)
        sim.fill_diagonal_(-1.0)
        best, nearest = (t.numpy() for t in sim.max(dim=1))  # (n,)
        counts = np.bincount(data.item_seq, minlength=data.num_items + 1)[1:]  # (n,)
        more_popular = counts[nearest] > counts
        for lo, hi in BINS:
            mask = (counts >= lo) & (counts < (hi or np.inf))
            if not mask.any():
                continue
            label = f"{lo}-{hi - 1}" if hi else f"{lo}+"
            print(
                f"| {path} | {label} | {int(mask.sum())} | {(best[mask] > 0.9).mean():.0%} | "
                f"{((best[mask] > 0.95) & more_popular[mask]).mean():.0%} | {np.median(best[mask]):.3f} |"
            )


if __name__ == "__main__":
    main()
