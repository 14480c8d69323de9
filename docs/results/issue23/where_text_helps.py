"""Where text's hits come from, and what the refit changed: two models' runs over the same seeds.

    python docs/results/issue23/where_text_helps.py --split test \
        --model "ID=runs/games-confirm-id-s*" --model "text=runs/games-confirm-text088-s*"

Prints (1) NDCG@10 / HR@10 by the target item's training interactions
(``hstu-blair evaluate --by-popularity``), mean over seeds, with the second model's gain over the
first per bin, and (2) for refit runs, the test figures of the validation-chosen weights
(``--checkpoint selected``) beside the refit model's, so the refit's share of each model's figure
can be read. A run folder's seed is read from its ``config.toml``.
"""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

import hstu_blair as hb
from hstu_blair.reports.runs import read_run
from hstu_blair.reports.stats import mean_std, paired_by_seed, relative_gain
from hstu_blair.run.layout import selected_weights_path


def runs_by_seed(pattern: str) -> dict[int, Path]:
    """seed -> run folder, for the finished runs matching ``pattern``."""
    runs = [Path(p) for p in sorted(glob.glob(pattern)) if (Path(p) / "final_metrics.json").exists()]
    return {read_run(run).seed: run for run in runs}


def bins_table(models: dict[str, dict[int, Path]], split: str, keys: tuple[str, ...]) -> None:
    """Markdown: one row per popularity bin, mean over seeds per model, gain of the second."""
    (a_label, a), (b_label, b) = list(models.items())[:2]
    seeds = sorted(a.keys() & b.keys())
    rows = {
        label: {s: hb.evaluate_by_popularity(runs[s], split) for s in seeds} for label, runs in models.items()
    }
    bins = [r["bin"] for r in rows[a_label][seeds[0]]]
    header = "| target's training interactions | share of targets | "
    header += " | ".join(f"{k.upper()} {label}" for k in keys for label in (a_label, b_label))
    print(header + " | " + " | ".join(f"{k.upper()} gain (p)" for k in keys) + " |")
    print("|---|---|" + "---|" * (3 * len(keys)))
    for i, name in enumerate(bins):
        first = rows[a_label][seeds[0]][i]
        if not first["n_targets"]:
            continue
        cells = []
        gains = []
        for k in keys:
            x = {s: rows[a_label][s][i][k] for s in seeds}
            y = {s: rows[b_label][s][i][k] for s in seeds}
            mx, my = mean_std(list(x.values()))[0], mean_std(list(y.values()))[0]
            cells += [f"{mx:.4f}", f"{my:.4f}"]
            p = paired_by_seed(y, x)
            gain = relative_gain(my, mx) if mx else float("nan")
            gains.append(f"{gain:+.1f}%" + (f" ({p:.2g})" if p is not None else ""))
        print(f"| {name} | {first['share']:.1%} | " + " | ".join(cells) + " | " + " | ".join(gains) + " |")
    print(f"\n{b_label} against {a_label}, seeds {seeds}, {split} split.")


def refit_table(models: dict[str, dict[int, Path]], keys: tuple[str, ...]) -> None:
    """Markdown: test figures of the validation-chosen weights and of the refit model, per model."""
    print(
        "\n| model | seeds | "
        + " | ".join(f"{k.upper()} selected | {k.upper()} refit | refit gain" for k in keys)
        + " |"
    )
    print("|---|---|" + "---|" * (3 * len(keys)))
    for label, runs in models.items():
        seeds = [s for s in sorted(runs) if selected_weights_path(runs[s]).exists()]
        if not seeds:
            continue
        selected = {s: hb.evaluate(runs[s], "test", "selected") for s in seeds}
        refit = {s: read_run(runs[s]).metrics for s in seeds}  # the test figures the run recorded
        cells = []
        for k in keys:
            x = {s: selected[s][k] for s in seeds}
            y = {s: refit[s][k] for s in seeds}
            mx, my = mean_std(list(x.values()))[0], mean_std(list(y.values()))[0]
            p = paired_by_seed(y, x)
            cells += [
                f"{mx:.4f}",
                f"{my:.4f}",
                f"{relative_gain(my, mx):+.1f}%" + (f" (p = {p:.2g})" if p is not None else ""),
            ]
        print(f"| {label} | {len(seeds)} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=("valid", "test"), default="test")
    parser.add_argument("--model", action="append", default=[], help="LABEL=GLOB of run folders (two)")
    args = parser.parse_args()
    models = {}
    for spec in args.model:
        label, pattern = spec.rsplit("=", 1)
        models[label] = runs_by_seed(pattern)
        if not models[label]:
            raise SystemExit(f"{label}: no finished run matches {pattern}")
    if len(models) != 2:
        raise SystemExit("give exactly two --model LABEL=GLOB")
    keys = ("ndcg@10", "hr@10")
    bins_table(models, args.split, keys)
    refit_table(models, keys)


if __name__ == "__main__":
    main()
