"""Every dataset in one table per baseline: each model's % difference to the baseline with the paired
p across seeds (warm), and each fusion's cold-start metric as a ratio of and difference to each
baseline (cold). The condensed view that docs/results.md quotes."""

from __future__ import annotations

from typing import Any

from hstu_blair.reports.stats import mean_std, paired_by_seed
from hstu_blair.reports.tables import Cell


def _bold_if(text: str, p: float | None) -> str:
    return f"**{text}**" if p is not None and p < 0.05 else text


def warm_summary_markdown(
    tables: dict[str, dict[str, dict[str, Cell]]],
    baseline: str,
    columns: tuple[str, ...],
    absolute: str = "ndcg@10",
) -> str:
    """One row per (dataset, model) of every dataset that has ``baseline``: the model's own
    ``absolute`` metric (mean ± std), then per column the % difference of its mean to the
    baseline's and the paired t-test p across seeds (bold below 0.05)."""
    md = [
        f"## Every dataset against {baseline}",
        "",
        f"`{absolute.upper()}` is the model's own mean ± std; the other columns are the % difference "
        f"of its mean to {baseline}'s and the two-sided paired t-test p across seeds (bold: p < 0.05).",
        "",
        f"| dataset | model | seeds (model / baseline) | {absolute.upper()} mean ± std | "
        + " | ".join(c.upper() for c in columns)
        + " |",
        "|---|---|---|---|" + "---|" * len(columns),
    ]
    for dataset, table in sorted(tables.items()):
        if baseline not in table:
            continue
        for model in [baseline] + [m for m in table if m != baseline]:
            row = table[model]
            cells = []
            for c in columns:
                gain, p = row[c].gains.get(baseline), row[c].p_values.get(baseline)
                if gain is None:
                    cells.append("—")
                else:
                    cells.append(_bold_if(f"{gain:+.1f}%" + (f" ({p:.3f})" if p is not None else ""), p))
            own = row.get(absolute)
            md.append(
                f"| {dataset} | {model} | {row[columns[0]].n} / {table[baseline][columns[0]].n} | "
                + (f"{own.mean:.4f} ± {own.std:.4f}" if own else "—")
                + " | "
                + " | ".join(cells)
                + " |"
            )
    md.append("")
    return "\n".join(md)


def cold_summary_markdown(
    cold: dict[str, dict[str, list[dict[str, Any]]]],
    baselines: tuple[str, ...],
    metric: str = "hr@50",
) -> str:
    """One row per (dataset, model) of the cold-start runs: the held-out items' ``metric``
    (mean ± std), and against each baseline present the ratio of the means and the difference of
    the means with its paired p across seeds (same seed = same held-out items)."""
    heads = [h for b in baselines for h in (f"/ {b}", f"− {b} (paired p)")]
    md = [
        f"## Cold-start items against {', '.join(baselines)}",
        "",
        f"| dataset | model | seeds | cold {metric.upper()} | " + " | ".join(heads) + " |",
        "|---|---|---|---|" + "---|" * len(heads),
    ]
    for dataset, labels in sorted(cold.items()):
        values = {label: {r["seed"]: r["cold"][metric] for r in runs} for label, runs in labels.items()}
        stats = {label: mean_std(list(by_seed.values())) for label, by_seed in values.items()}
        for label, by_seed in values.items():
            mean, std = stats[label]
            cells = []
            for base in baselines:
                if base not in values:
                    cells += ["—", "—"]
                    continue
                base_mean = stats[base][0]
                cells.append(f"{mean / base_mean:.2f}" if base_mean else "—")
                p = paired_by_seed(by_seed, values[base]) if base != label else None
                diff = f"{mean - base_mean:+.4f}" + (f" ({p:.3f})" if p is not None else "")
                cells.append("—" if base == label else _bold_if(diff, p))
            md.append(
                f"| {dataset} | {label} | {len(by_seed)} | {mean:.4f} ± {std:.4f} | "
                + " | ".join(cells)
                + " |"
            )
    md.append("")
    return "\n".join(md)
