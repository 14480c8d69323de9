"""Warm (validation) and cold (held-out items as served) figures of the default text model with and
without its ID dropout, per dataset, from the cold-start grids `configs/grids/iddrop-dev-*.toml`.

    python docs/results/issue23/id_dropout_choice.py runs/iddrop-dev

For each dataset folder below the root: validation NDCG@10 at the epoch validation chose (the warm
choice metric; the run trains on the 90% of items that were not held out), cold HR@50 of the held-out
items ranked as served (no ID part), and the ratio of each to text only's cold HR@50 (issue 16's
0.9x bar), as mean ± std over the seeds, with a paired t-test of each variant against the default,
and the share of warm test users' top-10 slots the held-out items take as served
(``warm_top10_cold_share``; computed here for runs made before cold_start.json recorded it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hstu_blair.config import load_config
from hstu_blair.data.holdout import pick_cold_items
from hstu_blair.recipes.cold_start import as_served, warm_top10_cold_share
from hstu_blair.reports.runs import read_run
from hstu_blair.reports.stats import mean_std, paired_by_seed, relative_gain
from hstu_blair.run.layout import config_path
from hstu_blair.run.model_files import load_trained

DEFAULT = "SASRec+text-default"
TEXT_ONLY = "SASRec+text-only"


def cold_share(run: Path, payload: dict) -> float:
    """``warm_top10_cold_share`` of a cold-start run: recorded, or computed as cold_start does."""
    if "warm_top10_cold_share" in payload:
        return payload["warm_top10_cold_share"]
    trained = load_trained(run)
    cold = pick_cold_items(trained.data.num_items, payload["share"], payload["seed"])
    return warm_top10_cold_share(as_served(trained, cold), cold, load_config(config_path(run)))


def seeds_of(model_dir: Path) -> dict[int, dict[str, float]]:
    """seed -> {"valid": best validation NDCG@10, "cold": cold HR@50, "share": held-out share of
    warm top-10s} for one model's finished runs."""
    out = {}
    for cold_file in sorted(model_dir.glob("seed-*/run/cold_start.json")):
        record = read_run(cold_file.parent)
        best = max((r["valid"] for r in record.history if "valid" in r), key=lambda m: m["ndcg@10"])
        payload = json.loads(cold_file.read_text())
        out[record.seed] = {
            "valid": best["ndcg@10"],
            "cold": payload["cold"]["hr@50"],
            "share": cold_share(cold_file.parent, payload),
        }
    return out


def cell(values: list[float], digits: int = 4) -> str:
    mean, std = mean_std(values)
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def compare(variant: dict[int, dict], base: dict[int, dict], key: str) -> str:
    """Relative gain of ``variant`` over ``base`` on the seeds both have, with the paired p."""
    both = sorted(variant.keys() & base.keys())
    if not both or variant is base:
        return ""
    gain = relative_gain(
        mean_std([variant[s][key] for s in both])[0], mean_std([base[s][key] for s in both])[0]
    )
    p = paired_by_seed({s: variant[s][key] for s in both}, {s: base[s][key] for s in both})
    return f" ({gain:+.1f}%" + (f", p = {p:.2g})" if p is not None else ")")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="the grids' out_dir (runs/iddrop-dev)")
    args = parser.parse_args()
    print(
        "| dataset | model | seeds | valid NDCG@10 | cold HR@50 | cold HR@50 / text only's, per seed "
        "| held-out share of warm top-10, per seed |"
    )
    print("|---|---|---|---|---|---|---|")
    for dataset in sorted(p for p in args.root.iterdir() if p.is_dir()):
        models = {m.name: seeds_of(m) for m in sorted(dataset.iterdir()) if m.is_dir()}
        base, text = models.get(DEFAULT, {}), models.get(TEXT_ONLY, {})
        order = [DEFAULT] + sorted(m for m in models if m not in (DEFAULT, TEXT_ONLY)) + [TEXT_ONLY]
        for name in order:
            runs = models.get(name)
            if not runs:
                continue
            seeds = ", ".join(str(s) for s in sorted(runs))
            valid = cell([r["valid"] for r in runs.values()]) + (compare(runs, base, "valid") if base else "")
            cold = cell([r["cold"] for r in runs.values()]) + (compare(runs, base, "cold") if base else "")
            ratios = [f"{runs[s]['cold'] / text[s]['cold']:.2f}x" for s in sorted(runs.keys() & text.keys())]
            shares = [f"{runs[s]['share']:.1%}" for s in sorted(runs)]
            cells = [dataset.name, name, seeds, valid, cold, ", ".join(ratios), ", ".join(shares)]
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
