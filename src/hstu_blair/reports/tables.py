"""Paper-layout tables: mean +- std over seeds, % gains over HSTU / SASRec, best in bold,
paired significance across seeds, and the published numbers beside ours."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from hstu_blair.reports.runs import RunRecord
from hstu_blair.reports.stats import mean_std, paired_by_seed, relative_gain

PAPER_COLUMNS: tuple[str, ...] = ("hr@10", "hr@50", "hr@200", "ndcg@10", "ndcg@200", "mrr")
"""The HSTU-BLaIR paper's columns."""


def load_paper_results() -> dict[str, dict[str, dict[str, float]]]:
    """Published numbers of both papers (SPEC §7.3), keyed dataset -> model -> metric."""
    text = resources.files("hstu_blair.resources").joinpath("paper_results.json").read_text()
    return {k: v for k, v in json.loads(text).items() if not k.startswith("_")}


def _baseline(models: list[str], word: str) -> str | None:
    """The model label that is exactly the baseline (case-insensitive), or one ending in it."""
    for m in models:
        if m.lower() == word.lower():
            return m
    for m in models:
        if m.lower().endswith(word.lower()) and "+" not in m:
            return m
    return None


@dataclass
class Cell:
    mean: float
    std: float
    n: int
    gains: dict[str, float]  # baseline label -> % gain of the mean
    p_values: dict[str, float]  # baseline label -> paired t-test p over common seeds
    best: bool = False
    expected: float | None = None
    flagged: bool = False


def _paired(a: list[RunRecord], b: list[RunRecord], metric: str) -> float | None:
    def by_seed(runs: list[RunRecord]) -> dict[int, float]:  # the first run of each seed
        return {r.seed: r.metrics[metric] for r in reversed(runs)}

    return paired_by_seed(by_seed(a), by_seed(b))


def build_table(
    models: dict[str, list[RunRecord]],
    columns: tuple[str, ...] = PAPER_COLUMNS,
    expected: dict[str, dict[str, float]] | None = None,
    tolerance: float = 0.10,
    extra_baselines: tuple[str, ...] = (),
) -> dict[str, dict[str, Cell]]:
    """Cells ``{model: {metric: Cell}}`` of one dataset.

    Args:
        models: runs per model label (several seeds each).
        columns: metrics to show.
        expected: published means per model (matched by label, case-insensitive) to place beside ours.
        tolerance: relative difference beyond which a cell is flagged against the published value.
        extra_baselines: more model labels every other model is compared with (gain and paired
            t-test across seeds), besides HSTU and SASRec; labels absent here are ignored.
    """
    labels = list(models)
    baselines = [b for b in (_baseline(labels, "HSTU"), _baseline(labels, "SASRec")) if b]
    baselines += [b for b in extra_baselines if b in models and b not in baselines]
    expected_lc = {k.lower(): v for k, v in (expected or {}).items()}
    table: dict[str, dict[str, Cell]] = {}
    for label, runs in models.items():
        row: dict[str, Cell] = {}
        for metric in columns:
            values = [r.metrics[metric] for r in runs if metric in r.metrics]
            if not values:
                continue
            mean, std = mean_std(values)
            gains, pvals = {}, {}
            for base in baselines:
                if base == label:
                    continue
                base_values = [r.metrics[metric] for r in models[base] if metric in r.metrics]
                if base_values and mean_std(base_values)[0] > 0:
                    gains[base] = relative_gain(mean, mean_std(base_values)[0])
                p = _paired(runs, models[base], metric)
                if p is not None:
                    pvals[base] = p
            cell = Cell(mean, std, len(values), gains, pvals)
            exp = expected_lc.get(label.lower(), {}).get(metric)
            if exp is not None:
                cell.expected = exp
                cell.flagged = abs(mean - exp) > tolerance * exp
            row[metric] = cell
        table[label] = row
    for metric in columns:
        cells = [row[metric] for row in table.values() if metric in row]
        if cells:
            max(cells, key=lambda c: c.mean).best = True
    return table


def _fmt(x: float) -> str:
    return f"{x:.4f}"


def table_markdown(
    dataset: str, table: dict[str, dict[str, Cell]], columns: tuple[str, ...] = PAPER_COLUMNS
) -> str:
    """One dataset's table in Markdown: ``mean ± std`` with gains (and p-values) beneath."""
    head = f"### {dataset}\n\n| model | " + " | ".join(c.upper().replace("@", "@") for c in columns) + " |\n"
    head += "|---|" + "---|" * len(columns) + "\n"
    lines = []
    for label, row in table.items():
        cells = []
        for metric in columns:
            c = row.get(metric)
            if c is None:
                cells.append("")
                continue
            value = f"{_fmt(c.mean)} ± {_fmt(c.std)}"
            if c.best:
                value = f"**{value}**"
            extra = [
                f"{g:+.1f}% vs {b}" + (f" (p={c.p_values[b]:.3f})" if b in c.p_values else "")
                for b, g in c.gains.items()
            ]
            if c.expected is not None:
                extra.append(f"paper {_fmt(c.expected)}" + (" ⚠" if c.flagged else ""))
            cells.append(value + ("<br>" + "<br>".join(extra) if extra else ""))
        n = max((c.n for c in row.values()), default=0)
        lines.append(f"| {label} (n={n}) | " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


def table_json(table: dict[str, dict[str, Cell]]) -> dict[str, Any]:
    return {
        label: {
            metric: {
                "mean": c.mean,
                "std": c.std,
                "n": c.n,
                "gain_percent": c.gains,
                "p_value": c.p_values,
                "best": c.best,
                "paper": c.expected,
                "differs_from_paper": c.flagged,
            }
            for metric, c in row.items()
        }
        for label, row in table.items()
    }
