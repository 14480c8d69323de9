"""``hstu-blair report``: run directories -> Markdown + JSON tables and PNG plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hstu_blair.data.manifest import write_json_atomic
from hstu_blair.reports.plots import plot_metrics, plot_validation_curves
from hstu_blair.reports.runs import collect
from hstu_blair.reports.tables import (
    PAPER_COLUMNS,
    build_table,
    load_paper_results,
    table_json,
    table_markdown,
)


def write_report(
    runs: list[Path],
    out: Path,
    expected: str | None = None,
    tolerance: float = 0.10,
    columns: tuple[str, ...] = PAPER_COLUMNS,
    curve_metric: str = "ndcg@10",
    title: str = "Results",
) -> dict[str, Any]:
    """Write ``report.md``, ``report.json`` and plots for every dataset found under ``runs``.

    Args:
        runs: run directories or folders holding them.
        out: output directory.
        expected: ``"paper"`` to place the published numbers beside ours (matched by dataset folder
            name, e.g. ``amzn23_game``, and model label, e.g. ``HSTU-BLaIR``), or None.
        tolerance: relative difference from a published value beyond which a cell is flagged.
        columns: metric columns.
        curve_metric: metric of the validation-curve plots.

    Returns:
        The JSON payload also written to ``report.json``.

    Raises:
        ValueError: no finished run was found.
    """
    grouped = collect(runs)
    if not grouped:
        raise ValueError(f"no finished runs (final_metrics.json) under {', '.join(map(str, runs))}")
    paper = load_paper_results() if expected == "paper" else {}
    out.mkdir(parents=True, exist_ok=True)
    md = [f"# {title}", ""]
    md.append(
        "Each cell: mean ± sample std over seeds (n = number of seeds); beneath it the % gain of the "
        "mean over HSTU / SASRec and the two-sided paired t-test p-value across seeds. Best mean per "
        "column in bold. Test split, full ranking over the whole catalogue."
    )
    if paper:
        md.append(
            f"'paper' = the published value; ⚠ marks a difference of more than {tolerance:.0%} from it."
        )
    md.append("")
    payload: dict[str, Any] = {"columns": list(columns), "datasets": {}}
    for dataset, models in sorted(grouped.items()):
        table = build_table(models, columns, paper.get(dataset), tolerance)
        md.append(table_markdown(dataset, table, columns))
        protocols = sorted({r.protocol for rs in models.values() for r in rs})
        md.append(
            f"Protocol: {', '.join(protocols)}. Runs: "
            + "; ".join(f"{m}: seeds {[r.seed for r in rs]}" for m, rs in models.items())
            + "\n"
        )
        bars = plot_metrics(dataset, models, columns, out / f"{dataset}_metrics.png")
        curves = plot_validation_curves(dataset, models, curve_metric, out / f"{dataset}_validation.png")
        md.append(f"![{dataset} metrics]({bars.name})")
        if curves:
            md.append(f"![{dataset} validation curves]({curves.name})")
        md.append("")
        payload["datasets"][dataset] = {
            "table": table_json(table),
            "runs": {m: [str(r.path) for r in rs] for m, rs in models.items()},
        }
    (out / "report.md").write_text("\n".join(md) + "\n")
    write_json_atomic(out / "report.json", payload)
    return json.loads((out / "report.json").read_text())
