"""``hstu-blair report``: run directories -> Markdown + JSON tables and PNG plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hstu_blair.data.manifest import write_json_atomic
from hstu_blair.errors import RunsNotFoundError
from hstu_blair.reports.plots import plot_metrics, plot_validation_curves
from hstu_blair.reports.runs import collect, collect_cold_start
from hstu_blair.reports.stats import mean_std, paired_by_seed
from hstu_blair.reports.summary import cold_summary_markdown, warm_summary_markdown
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
    baselines: tuple[str, ...] = (),
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
        title: the report's heading.
        baselines: model labels to compare every other model with (gain, paired t-test across
            seeds), besides HSTU and SASRec; in cold-start tables, the only comparisons. Each also
            gets a table of every dataset against it (:mod:`hstu_blair.reports.summary`).

    Returns:
        The JSON payload also written to ``report.json``.

    Raises:
        ValueError: no finished run was found.

    Longer than 60 lines with its documented arguments; the body writes one table after another.
    """
    grouped = collect(runs)
    cold = collect_cold_start(runs)
    if not grouped and not cold:
        raise RunsNotFoundError(f"no finished runs (final_metrics.json) under {', '.join(map(str, runs))}")
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
    tables = {}
    for dataset, models in sorted(grouped.items()):
        table = tables[dataset] = build_table(
            models, columns, paper.get(dataset.split(" (")[0]), tolerance, baselines
        )
        slug = dataset.replace(" (", "-").replace(")", "")
        md.append(table_markdown(dataset, table, columns))
        protocols = sorted({r.protocol for rs in models.values() for r in rs})
        md.append(
            f"Protocol: {', '.join(protocols)}. Runs: "
            + "; ".join(f"{m}: seeds {[r.seed for r in rs]}" for m, rs in models.items())
            + "\n"
        )
        bars = plot_metrics(dataset, models, columns, out / f"{slug}_metrics.png")
        curves = plot_validation_curves(dataset, models, curve_metric, out / f"{slug}_validation.png")
        md.append(f"![{dataset} metrics]({bars.name})")
        if curves:
            md.append(f"![{dataset} validation curves]({curves.name})")
        md.append("")
        payload["datasets"][dataset] = {
            "table": table_json(table),
            "runs": {m: [str(r.path) for r in rs] for m, rs in models.items()},
        }
    for base in baselines:
        if any(base in t for t in tables.values()):
            md.append(warm_summary_markdown(tables, base, columns))
    if cold:
        md.append(cold_start_markdown(cold, baselines=baselines))
        if baselines:
            md.append(cold_summary_markdown(cold, baselines))
        payload["cold_start"] = cold
    (out / "report.md").write_text("\n".join(md) + "\n")
    write_json_atomic(out / "report.json", payload)
    return json.loads((out / "report.json").read_text())


COLD_COLUMNS = ("hr@10", "hr@50", "hr@200", "ndcg@10", "ndcg@200", "mrr")


def cold_start_markdown(
    cold: dict[str, dict[str, list[dict[str, Any]]]],
    columns: tuple[str, ...] = COLD_COLUMNS,
    baselines: tuple[str, ...] = (),
) -> str:
    """Cold-start tables: metrics on held-out items (and on the warm test split), mean ± std over
    seeds; against each of ``baselines`` present, the paired t-test across seeds (same seed = same
    held-out items) beneath."""
    md = [
        "## Cold-start items",
        "",
        "Items held out with all their interactions; each user's first held-out item is ranked over the "
        "whole catalogue (see `hstu_blair.data.holdout`). Mean ± std over seeds (each seed draws "
        "other held-out items and trains anew).",
        "",
    ]
    for dataset, labels in sorted(cold.items()):
        first = next(iter(labels.values()))[0]
        md.append(
            f"### {dataset}: {first['cold_items']} items held out ({first['share']:.0%}), "
            f"{first['cold_targets']} cold targets (seed {first['seed']})\n"
        )
        md.append("| model | split | " + " | ".join(c.upper() for c in columns) + " |")
        md.append("|---|---|" + "---|" * len(columns))
        for label, runs in labels.items():
            for split in ("cold", "warm_test"):
                cells = []
                for c in columns:
                    m, sd = mean_std([r[split][c] for r in runs])
                    notes = []
                    for base in baselines:
                        if base == label or base not in labels:
                            continue
                        p = paired_by_seed(
                            {r["seed"]: r[split][c] for r in runs},
                            {r["seed"]: r[split][c] for r in labels[base]},
                        )
                        if p is not None:
                            notes.append(f"p={p:.3f} vs {base}")
                    cells.append(f"{m:.4f} ± {sd:.4f}" + ("<br>" + "<br>".join(notes) if notes else ""))
                md.append(
                    f"| {label} (n={len(runs)}) | {'cold items' if split == 'cold' else 'warm test'} | "
                    + " | ".join(cells)
                    + " |"
                )
        shares = {
            label: mean_std([r["warm_top10_cold_share"] for r in runs])
            for label, runs in labels.items()
            if all("warm_top10_cold_share" in r for r in runs)
        }
        if shares:
            md.append(
                f"\nShare of the warm test users' top-10 slots the held-out items take, as served (they are "
                f"{first['share']:.0%} of the catalogue and none of those users' targets): "
                + "; ".join(f"{label} {m:.1%} ± {sd:.1%}" for label, (m, sd) in shares.items())
                + "."
            )
        md.append("")
    return "\n".join(md)
