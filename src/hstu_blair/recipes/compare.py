"""Comparing two sets of finished runs seed by seed (runs pair by their ``train.seed``).

For comparisons a report table does not make: the same model on two prepared variants of a dataset
(tie order, item universe), two code versions, fp32 against bf16, or one set of checkpoints
evaluated two ways (re-evaluated with ``eval.*`` overrides, e.g. ``eval.exclude="window"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hstu_blair.errors import RunsNotFoundError
from hstu_blair.recipes.evaluate import evaluate
from hstu_blair.reports.runs import read_run
from hstu_blair.reports.stats import mean_std, paired_test
from hstu_blair.reports.tables import PAPER_COLUMNS as METRICS
from hstu_blair.run.layout import FINAL_METRICS


@dataclass(frozen=True)
class Comparison:
    """One metric of B against A over the seeds both have."""

    metric: str
    seeds: tuple[int, ...]
    a_mean: float
    a_std: float
    b_mean: float
    b_std: float
    p_value: float | None  # paired t-test, two-sided; None for fewer than 2 seeds

    @property
    def difference(self) -> float:
        return self.b_mean - self.a_mean


def metrics_by_seed(folder: Path, overrides: list[str] | None = None) -> dict[int, dict[str, float]]:
    """seed -> test metrics of every finished run below ``folder`` (re-evaluated with ``overrides``).

    Raises:
        RunsNotFoundError: no finished run below ``folder``.
    """
    out = {}
    for final in sorted(Path(folder).rglob(FINAL_METRICS)):
        run = read_run(final.parent)
        metrics = evaluate(run.path, "test", overrides=overrides) if overrides else run.metrics
        out[run.seed] = {k: float(metrics[k]) for k in METRICS if k in metrics}
    if not out:
        raise RunsNotFoundError(f"no finished runs ({FINAL_METRICS}) under {folder}")
    return out


def compare_runs(
    a: Path, b: Path, overrides_a: list[str] | None = None, overrides_b: list[str] | None = None
) -> list[Comparison]:
    """B against A, metric by metric, over the seeds both sets have (see the module docstring)."""
    runs_a, runs_b = metrics_by_seed(a, overrides_a), metrics_by_seed(b, overrides_b)
    seeds = tuple(sorted(set(runs_a) & set(runs_b)))
    if not seeds:
        raise RunsNotFoundError(
            f"no seed in common between {a} ({sorted(runs_a)}) and {b} ({sorted(runs_b)})"
        )
    rows = []
    for metric in METRICS:
        va, vb = [runs_a[s][metric] for s in seeds], [runs_b[s][metric] for s in seeds]
        (ma, sa), (mb, sb) = mean_std(va), mean_std(vb)
        rows.append(
            Comparison(metric, seeds, ma, sa, mb, sb, paired_test(vb, va) if len(seeds) >= 2 else None)
        )
    return rows


def comparison_markdown(rows: list[Comparison], label_a: str = "A", label_b: str = "B") -> str:
    """The comparison as a Markdown table."""
    lines = [
        f"| metric | {label_a} | {label_b} | {label_b} − {label_a} | p (paired, n={len(rows[0].seeds)}) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        p = "—" if r.p_value is None else f"{r.p_value:.3f}"
        lines.append(
            f"| {r.metric.upper()} | {r.a_mean:.4f} ± {r.a_std:.4f} | {r.b_mean:.4f} ± {r.b_std:.4f} | "
            f"{r.difference:+.4f} | {p} |"
        )
    return "\n".join(lines)
