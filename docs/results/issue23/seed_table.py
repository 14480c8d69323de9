"""Mean ± std tables over seeds from run folders, with a paired t-test of one model against another.

    python docs/results/issue23/seed_table.py --split test \
        --model "ours, ID-only SASRec, tuned=runs/sports/tuned-s*" \
        --model "ours, SASRec + text, tuned=runs/sports/text-tuned-s*" \
        --published "published SASRec + sampled softmax=hr@10:.0569,ndcg@10:.0314"

A run folder's seed is read from its ``config.toml``; the paired test uses the seeds both models
have. The validation figures are the best epoch's (the one validation chose); test figures are the
final model's (the refit's where the config refits). The most-popular row is the first run's.
"""

from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path

from hstu_blair.reports.runs import read_run
from hstu_blair.reports.stats import mean_std, paired_by_seed, relative_gain

KEYS = ("hr@10", "hr@50", "hr@200", "ndcg@10", "ndcg@200", "mrr")


def load(run: Path) -> dict:
    """Seed, best validation metrics, test metrics, most-popular baselines and epochs of one run."""
    record = read_run(run)
    final = json.loads((run / "final_metrics.json").read_text())
    return {
        "seed": record.seed,
        "valid": max((r["valid"] for r in record.history if "valid" in r), key=lambda m: m["ndcg@10"]),
        "test": record.metrics,
        "pop": final["baselines"]["most_popular"],
        "epochs": final["best_epoch"] + 1,
    }


def cell(values: list[float]) -> str:
    mean, std = mean_std(values)
    return f"{mean:.4f} ± {std:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=("valid", "test"), default="test")
    parser.add_argument("--model", action="append", default=[], help="LABEL=GLOB of run folders")
    parser.add_argument("--published", action="append", default=[], help="LABEL=metric:value,...")
    args = parser.parse_args()
    models = {}
    for spec in args.model:
        label, pattern = spec.rsplit("=", 1)
        runs = [
            load(Path(p)) for p in sorted(glob.glob(pattern)) if (Path(p) / "final_metrics.json").exists()
        ]
        if not runs:
            print(f"{label}: no finished run matches {pattern}")
            continue
        models[label] = {r["seed"]: r for r in runs}
    print_table(models, args.split, args.published)


def print_table(models: dict[str, dict[int, dict]], split: str, published: list[str] = ()) -> None:
    """The markdown table of ``models`` (label -> seed -> :func:`load`'s record), the most-popular
    row, the published rows (test split), paired tests against the first model, chosen epochs."""
    print("| model | seeds | " + " | ".join(k.upper() for k in KEYS) + " |")
    print("|---|---|" + "---|" * len(KEYS))
    for label, runs in models.items():
        rows = [r[split] for r in runs.values()]
        print(f"| {label} | {len(rows)} | " + " | ".join(cell([m[k] for m in rows]) for k in KEYS) + " |")
    first = next(r for runs in models.values() for r in runs.values())
    popular = first["pop"][split]
    print("| most popular (history excluded) | - | " + " | ".join(f"{popular[k]:.4f}" for k in KEYS) + " |")
    if split == "test":
        for spec in published:
            label, values = spec.split("=", 1)
            figures = dict(v.split(":") for v in values.split(","))
            print(f"| {label} | - | " + " | ".join(figures.get(k, "") for k in KEYS) + " |")
    labels = list(models)
    for other in labels[1:]:
        a, b = models[labels[0]], models[other]
        both = sorted(set(a) & set(b))
        if len(both) < 2:
            continue
        parts = []
        for k in KEYS:
            x = {s: a[s][split][k] for s in both}
            y = {s: b[s][split][k] for s in both}
            gain = relative_gain(mean_std(list(y.values()))[0], mean_std(list(x.values()))[0])
            parts.append(f"{k.upper()} {gain:+.1f}% (p = {paired_by_seed(y, x):.2g})")
        print(f"\n{other} over {labels[0]}, paired over seeds {both}: " + "; ".join(parts) + ".")
    for label, runs in models.items():
        print(f"Epochs validation chose, {label}: {[runs[s]['epochs'] for s in sorted(runs)]}")


if __name__ == "__main__":
    main()
