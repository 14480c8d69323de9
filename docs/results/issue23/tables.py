"""The tables of docs/results.md §0a from the run folders under runs/exp (see the commands there):
ID-only SASRec (``dr``) against SASRec + text (``sdr``), seeds 1-5, and the gap table of seed 1.

    python docs/results/issue23/tables.py > /tmp/tables.md
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import stats

RUNS = Path("runs/exp")
KEYS = ("hr@10", "hr@50", "hr@200", "ndcg@10", "ndcg@200", "mrr")
PUBLISHED = {
    "sports": [
        ("published SASRec + sampled softmax (eSASRec benchmark)", {"hr@10": 0.0569, "ndcg@10": 0.0314}),
        ("published eSASRec", {"hr@10": 0.0560, "ndcg@10": 0.0323}),
        ("published HSTU (same authors)", {"hr@10": 0.0437, "ndcg@10": 0.0243}),
    ]
}
LABELS = {"dr": "ours, ID-only SASRec (`sasrec.toml`)", "sdr": "ours, SASRec + text (`sasrec-text.toml`)"}
GAP = [
    ("cos-s1", "cosine, temperature 0.05 (the reference loss), no refit"),
    ("dot-s1", "dot product, temperature 1, no refit"),
    ("dotln-s1", "dot + learned LayerNorms, no refit"),
    ("dotlnpp-s1", "dot + learned LayerNorms + per-position negatives, no refit"),
    ("refcos-s1", "cosine, refit (99 epochs: validation's choice)"),
    ("refdot-s1", "**dot, refit** (50 epochs: validation's choice)"),
    ("dlp-s1", "dot + learned LayerNorms + per-position negatives, refit"),
]


def load(name: str) -> dict | None:
    """A finished run's test metrics, best validation metrics, baselines and chosen epoch."""
    run = RUNS / name
    if not (run / "final_metrics.json").exists():
        return None
    final = json.loads((run / "final_metrics.json").read_text())
    # refdot-s1 / refcos-s1: the refit of dot-s1 / cos-s1 run as the reference protocol for the
    # epochs their validation chose (before train.refit existed): validation is the first run's
    first = {"refdot-s1": "dot-s1", "refcos-s1": "cos-s1"}.get(name)
    source = RUNS / first if first else run
    history = json.loads((source / "history.json").read_text())
    valid = [r["valid"] for r in history if "valid" in r]
    best = json.loads((source / "final_metrics.json").read_text())["best_epoch"]
    return {
        "test": final["metrics"],
        "valid": max(valid, key=lambda m: m["ndcg@10"]) if valid else None,
        "pop": final["baselines"]["most_popular"],
        "best": best,
    }


def seed_runs(prefix: str) -> dict[str, dict[int, dict | None]]:
    out = {}
    for model in ("dr", "sdr"):
        out[model] = {}
        for seed in range(1, 6):
            name = f"{prefix}{model}-s{seed}"
            if prefix == "" and model == "dr" and seed == 1 and not (RUNS / name).exists():
                name = "refdot-s1"
            out[model][seed] = load(name)
    return out


def _cell(values: list[float]) -> str:
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1) if len(values) > 1 else 0.0:.4f}"


def seed_table(dataset: str, prefix: str, split: str) -> None:
    runs = seed_runs(prefix)
    print(f"\n{dataset}, {split} split:\n")
    print("| model | seeds | " + " | ".join(k.upper() for k in KEYS) + " |")
    print("|---|---|" + "---|" * len(KEYS))
    for model in ("dr", "sdr"):
        done = [r for r in runs[model].values() if r and r[split]]
        if done:
            cells = [_cell([r[split][k] for r in done]) for k in KEYS]
            print(f"| {LABELS[model]} | {len(done)} | " + " | ".join(cells) + " |")
    popular = next(r["pop"][split] for m in runs.values() for r in m.values() if r and split in r["pop"])
    print("| most popular (history excluded) | - | " + " | ".join(f"{popular[k]:.4f}" for k in KEYS) + " |")
    if split == "test":
        for label, values in PUBLISHED.get(dataset, []):
            print(
                f"| {label} | - | "
                + " | ".join(f"{values[k]:.4f}" if k in values else "" for k in KEYS)
                + " |"
            )
    both = [
        s
        for s in range(1, 6)
        if runs["dr"][s] and runs["sdr"][s] and runs["dr"][s][split] and runs["sdr"][s][split]
    ]
    if len(both) >= 2:
        parts = []
        for k in ("hr@10", "ndcg@10", "mrr"):
            a = np.array([runs["dr"][s][split][k] for s in both])
            b = np.array([runs["sdr"][s][split][k] for s in both])
            p = stats.ttest_rel(b, a).pvalue
            parts.append(f"{k.upper()} {100 * (b.mean() / a.mean() - 1):+.1f}% (p = {p:.2g})")
        print(f"\nText over ID-only, paired over seeds {','.join(map(str, both))}: " + "; ".join(parts) + ".")
    epochs = {m: [r["best"] + 1 for r in runs[m].values() if r] for m in runs}
    print(f"Epochs validation chose (the refit's epochs): ID-only {epochs['dr']}, text {epochs['sdr']}.")


def gap_table() -> None:
    for name, label in GAP:
        r = load(name)
        if r is None:
            continue
        v, t = r["valid"], r["test"]
        print(f"| {label} | {v['hr@10']:.4f} | {v['ndcg@10']:.4f} | {t['hr@10']:.4f} | {t['ndcg@10']:.4f} |")


if __name__ == "__main__":
    print("gap table rows (Sports, seed 1):\n")
    gap_table()
    for dataset, prefix in (("sports", ""), ("scientific", "sci-")):
        for split in ("valid", "test"):
            seed_table(dataset, prefix, split)
