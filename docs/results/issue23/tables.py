"""The tables of docs/results.md §0a from the run folders under runs/exp (see the commands there):
ID-only SASRec (``dr``) against SASRec + text (``sdr``), seeds 1-5, and the gap table of seed 1.

    python docs/results/issue23/tables.py > /tmp/tables.md
"""

from __future__ import annotations

from pathlib import Path

from seed_table import load as load_run
from seed_table import print_table

RUNS = Path("runs/exp")
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
    """A finished run as :func:`seed_table.load` reads it (seed, best validation, test, baselines,
    epochs), or None."""
    run = RUNS / name
    if not (run / "final_metrics.json").exists():
        return None
    record = load_run(run)
    # refdot-s1 / refcos-s1: the refit of dot-s1 / cos-s1 run as the reference protocol for the
    # epochs their validation chose (before train.refit existed): validation is the first run's
    first = {"refdot-s1": "dot-s1", "refcos-s1": "cos-s1"}.get(name)
    if first:
        source = load_run(RUNS / first)
        record.update(valid=source["valid"], epochs=source["epochs"])
    return record


def seed_runs(prefix: str) -> dict[str, dict[int, dict]]:
    """LABELS' model -> seed -> run, for the finished runs of seeds 1-5."""
    out = {}
    for model in ("dr", "sdr"):
        out[LABELS[model]] = {}
        for seed in range(1, 6):
            name = f"{prefix}{model}-s{seed}"
            if prefix == "" and model == "dr" and seed == 1 and not (RUNS / name).exists():
                name = "refdot-s1"
            run = load(name)
            if run is not None:
                out[LABELS[model]][seed] = run
    return out


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
            print(f"\n{dataset}, {split} split:\n")
            published = [
                f"{label}=" + ",".join(f"{k}:{v}" for k, v in values.items())
                for label, values in PUBLISHED.get(dataset, [])
            ]
            print_table(seed_runs(prefix), split, published)
