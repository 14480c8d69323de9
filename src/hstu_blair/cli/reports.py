"""``report``: paper-style tables and plots from run directories."""

from __future__ import annotations

import argparse
from pathlib import Path

import hstu_blair as hb


def add_report(sub: argparse._SubParsersAction) -> None:
    """Register ``hstu-blair report``."""
    p = sub.add_parser(
        "report",
        help="paper-style tables and plots from run directories",
        description=(
            "Write report.md / report.json (a table per dataset: mean ± std over seeds, %% gain over HSTU "
            "and SASRec, best in bold, paired t-test across seeds) and PNG plots (metrics with error "
            "bars, validation curves) for the runs found under RUNS."
        ),
    )
    p.add_argument("runs", type=Path, nargs="+", help="run directories or folders holding them")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--expected", choices=["paper"], help="place the published numbers beside ours")
    p.add_argument(
        "--tolerance", type=float, default=0.10, help="relative difference flagged against the paper"
    )
    p.add_argument("--title", default="Results")
    p.add_argument(
        "--baseline",
        dest="baselines",
        action="append",
        default=[],
        metavar="LABEL",
        help=(
            "also compare every model with this one (gain, paired t-test across seeds) and add a "
            "table of every dataset against it (cold start: ratio and paired difference); repeatable"
        ),
    )
    p.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    hb.report(
        args.runs, args.out, args.expected, args.tolerance, title=args.title, baselines=tuple(args.baselines)
    )
    print((args.out / "report.md").read_text())
    print(f"wrote {args.out}/report.md, report.json and plots")
    return 0


def add_compare(sub: argparse._SubParsersAction) -> None:
    """Register ``hstu-blair compare``."""
    p = sub.add_parser(
        "compare",
        help="compare two sets of runs seed by seed (paired t-test)",
        description=(
            "Test metrics of the runs under A and under B, paired by seed: mean ± std of each, the "
            "difference and the two-sided paired t-test across seeds, as a Markdown table. --eval-a / "
            "--eval-b re-evaluate one side with eval.* overrides first (e.g. --eval-b 'eval.exclude=\"window\"')."
        ),
    )
    p.add_argument("a", type=Path, help="folder of run directories (the baseline)")
    p.add_argument("b", type=Path, help="folder of run directories")
    p.add_argument("--eval-a", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--eval-b", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--label-a", default="A")
    p.add_argument("--label-b", default="B")
    p.set_defaults(handler=_compare)


def _compare(args: argparse.Namespace) -> int:
    rows = hb.compare_runs(args.a, args.b, args.eval_a, args.eval_b)
    print(hb.comparison_markdown(rows, args.label_a, args.label_b))
    return 0


def add_select(sub: argparse._SubParsersAction) -> None:
    """Register ``hstu-blair select``."""
    p = sub.add_parser(
        "select",
        help="choose a default model on validation metrics of development runs (leave-one-dataset-out)",
        description=(
            "Read the validation metric at the kept epoch of each warm run under RUNS (never the test "
            "split) and the cold-start runs under --cold; a candidate qualifies on a dataset when its warm "
            "ratio to --baseline is at least --warm-floor, its cold ratio to --cold-reference at least "
            "--cold-floor and (with --speed) its training step at most --max-step-ratio times ID-only HSTU's. "
            "The choice: qualifies on every dataset, highest geometric mean of warm ratios, "
            "else the baseline; then the same choice without each dataset, checked on the one left out. "
            "Writes selection.md and selection.json to --out."
        ),
    )
    p.add_argument("runs", type=Path, nargs="+", help="warm run directories of the development seeds")
    p.add_argument("--cold", type=Path, action="append", default=[], help="cold-start runs; repeatable")
    p.add_argument("--candidates", required=True, help="comma-separated model labels that may be chosen")
    p.add_argument(
        "--baseline", default="HSTU+text-sum", help="warm reference and fallback (default %(default)s)"
    )
    p.add_argument("--cold-reference", default="HSTU+text-only", help="cold reference (default %(default)s)")
    p.add_argument("--metric", default="ndcg@10", help="validation metric (default %(default)s)")
    p.add_argument("--cold-metric", default="hr@50", help="cold-start metric (default %(default)s)")
    p.add_argument("--warm-floor", type=float, default=0.97, help="minimum warm ratio (default %(default)s)")
    p.add_argument("--cold-floor", type=float, default=0.9, help="minimum cold ratio (default %(default)s)")
    p.add_argument(
        "--speed",
        type=Path,
        help="a bench/bench_train.py --out file: candidates must also step within --max-step-ratio of HSTU",
    )
    p.add_argument(
        "--max-step-ratio",
        type=float,
        default=1.3,
        help="maximum step time / ID-only's (default %(default)s)",
    )
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.set_defaults(handler=_select)


def _select(args: argparse.Namespace) -> int:
    candidates = [c.strip() for c in args.candidates.split(",") if c.strip()]
    selection = hb.select_default(
        args.runs,
        args.cold,
        candidates,
        out=args.out,
        speed=args.speed,
        baseline=args.baseline,
        cold_reference=args.cold_reference,
        metric=args.metric,
        cold_metric=args.cold_metric,
        warm_floor=args.warm_floor,
        cold_floor=args.cold_floor,
        max_step_ratio=args.max_step_ratio,
    )
    print(selection.markdown())
    print(f"wrote {args.out}/selection.md and selection.json")
    return 0
