"""``train``, ``evaluate``, ``cold-start``, ``reproduce`` and ``convert-run``: the run subcommands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import hstu_blair as hb
from hstu_blair.cli.common import add_set_option, print_comparison, print_metrics
from hstu_blair.errors import HstuBlairError


def add_train(sub: argparse._SubParsersAction) -> None:
    """Register ``hstu-blair train``."""
    p = sub.add_parser(
        "train",
        help="train and evaluate a model from a config file",
        description=(
            "Train HSTU / SASRec (ID-only or text-fused) as CONFIG says, validate every epoch with early "
            "stopping, keep the best weights and report test metrics (full ranking, the user's known history "
            "excluded as the serving API does). Protocols (data.protocol): loo (default), reference, temporal "
            "(data.cutoff = a date, unix seconds or a quantile such as 0.9). Writes a run directory: config, "
            "run.json, model.json + safetensors weights, history, final metrics, TensorBoard logs. Configs for "
            "every row of both papers are under configs/. Override any key with --set section.key=value."
        ),
    )
    p.add_argument("config", type=Path, nargs="?", help="TOML config file (default: built-in defaults)")
    add_set_option(
        p,
        "override a config value, e.g. --set train.epochs=5 or --set model.fusion=sum --set "
        "model.fusion_options.text_rank=64 (repeatable; `hstu-blair fusions` lists the fusions and options)",
    )
    p.add_argument(
        "--reference",
        action="store_true",
        help="the reference protocol as a whole: no validation, per-position negatives, random batches, "
        "truncated-history masking, ranks capped at 2500 (misses at 2501 in MRR), source time unit; a "
        "dataset prepared on demand gets the reference preprocessing (docs/reference.md)",
    )
    p.add_argument(
        "--run-dir",
        type=Path,
        help="output directory (default: a new {out_dir}/{name}-{timestamp}, -2, -3 ... when taken)",
    )
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --run-dir from its last checkpoint"
    )
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(handler=_train)


def _train(args: argparse.Namespace) -> int:
    if args.resume and args.run_dir is None:
        raise HstuBlairError("--resume needs --run-dir")
    config = hb.load_config(args.config, args.overrides, reference=args.reference)
    result = hb.train(config, run_dir=args.run_dir, resume=args.resume, progress=not args.no_progress)
    print_metrics(
        result.metrics,
        f"test metrics ({config.model.name}, fusion={config.model.fusion}, best epoch {result.best_epoch}):",
    )
    popular = result.baselines.get("most_popular", {}).get("test")
    if popular:
        print_comparison(result.metrics, popular, "most popular items (same targets, history excluded)")
    print(f"run directory: {result.run_dir}")
    return 0


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    """Register ``hstu-blair evaluate``."""
    p = sub.add_parser(
        "evaluate",
        help="re-evaluate a saved run",
        description="Score a run's best (or last) checkpoint on the validation or test split "
        "with full ranking over the whole catalogue.",
    )
    p.add_argument("run_dir", type=Path)
    p.add_argument("--split", choices=["valid", "test"], default="test")
    p.add_argument(
        "--checkpoint",
        choices=["best", "last", "selected"],
        default="best",
        help="best (of a train.refit run: the refit model), last, or selected (a refit run's "
        "validation-chosen weights, to see what the refit changed)",
    )
    add_set_option(
        p,
        'override eval.* settings (or data.temporal_targets), e.g. --set eval.exclude="window" for the '
        "reference's truncated-history masking",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default cpu)")
    p.add_argument(
        "--by-popularity",
        action="store_true",
        help="metrics by the target item's training interactions (bins 0, 1-4, 5-19, 20-99, 100-499, "
        "500+): where in the catalogue the hits come from (text is expected to help most in the tail)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    if args.by_popularity:
        rows = hb.evaluate_by_popularity(
            args.run_dir, args.split, args.checkpoint, args.overrides, args.device
        )
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            title = f"{args.split} metrics of {args.run_dir} ({args.checkpoint} checkpoint)"
            _print_bins(rows, f"{title} by the target's training interactions:")
        return 0
    metrics = hb.evaluate(args.run_dir, args.split, args.checkpoint, args.overrides, args.device)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print_metrics(metrics, f"{args.split} metrics of {args.run_dir} ({args.checkpoint} checkpoint):")
    return 0


def _print_bins(
    rows: list[dict], title: str, keys: tuple[str, ...] = ("hr@10", "hr@50", "ndcg@10", "mrr")
) -> None:
    """One line per popularity bin: targets, share and ``keys`` ('-' for an empty bin)."""
    print(title)
    print(f"  {'bin':<9} {'targets':>8} {'share':>6}" + "".join(f" {k:>8}" for k in keys))
    for row in rows:
        values = "".join(f" {row[k]:8.4f}" if k in row else f" {'-':>8}" for k in keys)
        print(f"  {row['bin']:<9} {row['n_targets']:8d} {row['share']:6.1%}" + values)


def add_cold_start(sub: argparse._SubParsersAction) -> None:
    """Register ``hstu-blair cold-start``."""
    p = sub.add_parser(
        "cold-start",
        help="hold out items, train without them, rank them through the text path",
        description=(
            "Hold out a random share of items with all their interactions, train CONFIG on the rest "
            "(negatives drawn from seen items only), then rank each user's first held-out item over the "
            "whole catalogue, as served (the held-out items have no ID part, as items added with POST /items; "
            "'cold' in cold_start.json) and with their trained ID rows ('cold_trained_rows', the protocol "
            "before). ID-only models cannot rank such items; text-only and fused models can."
        ),
    )
    p.add_argument("config", type=Path, nargs="?", help="TOML config file (default: built-in defaults)")
    p.add_argument("--share", type=float, default=0.1, help="share of items held out (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the held-out item draw")
    p.add_argument("--work-dir", type=Path, help="where the warm dataset and the run go")
    add_set_option(p, "override a config value, e.g. --set model.fusion=text (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(handler=_cold_start)


def _cold_start(args: argparse.Namespace) -> int:
    config = hb.load_config(args.config, args.overrides)
    result = hb.cold_start(config, args.share, args.seed, args.work_dir, progress=not args.no_progress)
    what = f"{result['cold_items']} held out, {result['cold_targets']} targets"
    print_metrics(result["cold"], f"cold-start items as served ({what}; no ID part, as added items):")
    print_metrics(result["cold_trained_rows"], "cold-start items with their trained ID rows:")
    print_metrics(result["warm_test"], "warm test split:")
    print(f"run directory: {result['run_dir']}")
    return 0


def add_convert(sub: argparse._SubParsersAction) -> None:
    """Register ``hstu-blair convert-run``."""
    p = sub.add_parser(
        "convert-run",
        help="convert a run directory of hstu-blair 0.1 (pickle checkpoints) to safetensors model files",
        description=(
            "Run directories written by hstu-blair 0.1 hold pickled checkpoints (checkpoints/*.pt), which "
            "this version never unpickles because unpickling can execute code. This command reads them "
            "with torch.load(weights_only=True) (tensors and plain values only: a file holding anything "
            "else is refused) and writes model.json, checkpoints/{best,last}.safetensors and "
            "checkpoints/last.resume.pt. The old files are left in place."
        ),
    )
    p.add_argument("run_dir", type=Path, help="run directory written by hstu-blair 0.1")
    p.set_defaults(handler=_convert)


def add_fusions(sub: argparse._SubParsersAction) -> None:
    """Register ``hstu-blair fusions``."""
    p = sub.add_parser(
        "fusions",
        help="list the item fusions (model.fusion) with their options and what they can do",
        description=(
            "List every registered item fusion (the model.fusion values): what it is, whether it reads text, "
            "whether it has an ID table, whether it was trained to rank items without an ID part (items added "
            "at run time, held-out cold items), and its options with defaults. Set options in TOML under "
            "[model.fusion_options] or with --set model.fusion_options.NAME=VALUE."
        ),
    )
    p.set_defaults(handler=_fusions)


def _fusions(args: argparse.Namespace) -> int:
    for spec in hb.FUSIONS.values():  # imports torch: only for this command
        can = [
            "reads text" if spec.uses_text else "no text",
            "ID table" if spec.has_id_table else "no ID table",
        ]
        if spec.uses_text:
            trained = spec.ranks_without_id_row(spec.make_options())
            can.append(
                ("trained" if trained else "not trained") + " (by default) to rank items without an ID part"
            )
        print(f"{spec.name}: {spec.summary} [{'; '.join(can)}]")
        for name, default, doc in spec.option_docs():
            print(f"    {name} = {json.dumps(default)}: {doc}")
    return 0


def _convert(args: argparse.Namespace) -> int:
    for path in hb.convert_run(args.run_dir):
        print(f"wrote {path}")
    return 0


def add_reproduce(sub: argparse._SubParsersAction) -> None:
    """Register ``hstu-blair reproduce``."""
    p = sub.add_parser(
        "reproduce",
        help="run a grid of datasets x models x seeds (resumable)",
        description=(
            "Run every (model, seed) of a grid file (configs/grids/*.toml) whose run is not finished: "
            "finished runs are skipped, interrupted ones resumed, entries whose data is absent reported. "
            "Then `hstu-blair report` the output folder."
        ),
    )
    p.add_argument("grid", type=Path, help="grid TOML file")
    add_set_option(p, "override a config value in every run (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="list what would run")
    p.add_argument(
        "--label",
        action="append",
        dest="labels",
        metavar="LABEL",
        help="only the [[run]] entries with this label (repeatable); run one process per label "
        "to use more cores",
    )
    p.set_defaults(handler=_reproduce)


def _reproduce(args: argparse.Namespace) -> int:
    result = hb.reproduce(args.grid, args.overrides, dry_run=args.dry_run, labels=args.labels)
    print(
        f"finished {len(result.finished)}, already done {len(result.already_done)}, "
        f"skipped for missing data {len(result.missing_data)}"
    )
    for line in result.missing_data:
        print(f"  missing data: {line}")
    return 0


def add_tune(sub: argparse._SubParsersAction) -> None:
    """Register ``hstu-blair tune``."""
    p = sub.add_parser(
        "tune",
        help="search a config's [tune] settings on validation metrics (Optuna; resumable, shareable)",
        description=(
            "Train one run per trial with settings drawn from CONFIG's [tune.space] (TPE sampler), score "
            "each on the validation split only (tune.metric, default ndcg@10; the test split is never read), "
            "prune trials whose per-epoch validation curve falls below the median of earlier trials, and stop "
            "when the study holds --trials finished trials. The study is kept in OUT/study.sqlite3 (or "
            "--storage postgresql://...): run the same command again after a kill to resume, or on several "
            "machines at once to share the work. Writes OUT/best.toml (the config with the best settings), "
            "OUT/report.md, OUT/trials.json and OUT/search.png."
        ),
    )
    p.add_argument("config", type=Path, help="TOML config file with a [tune] section")
    p.add_argument("--trials", type=int, required=True, help="finished trials the study should hold")
    p.add_argument("--out", type=Path, help="output folder (default {out_dir}/tune-{name})")
    p.add_argument(
        "--storage", help="Optuna storage URL, e.g. postgresql://user:pw@host/db (default SQLite in --out)"
    )
    p.add_argument("--study", help="study name (default the config's name)")
    add_set_option(p, "override a config value in every trial (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(handler=_tune)


def _tune(args: argparse.Namespace) -> int:
    result = hb.tune(
        args.config,
        args.trials,
        out_dir=args.out,
        storage=args.storage,
        study_name=args.study,
        overrides=args.overrides,
        progress=not args.no_progress,
    )
    print(
        f"{result.finished} trials finished ({result.pruned} pruned); best validation value "
        f"{result.best_value:.4f} with {result.best_params}"
    )
    print(f"best config: {result.best_config}")
    print(f"report: {result.out_dir / 'report.md'}")
    return 0


def add_init_config(sub: argparse._SubParsersAction) -> None:
    """Register ``hstu-blair init-config``."""
    p = sub.add_parser(
        "init-config",
        help="write a starting config for a prepared dataset, from its shape",
        description=(
            "Read a prepared dataset (history lengths, catalogue size, interactions per item, item text, "
            "whether time is real) and write a run config whose every value carries a comment saying why. "
            "Train it as it is (`hstu-blair train FILE`) or refine it with `hstu-blair tune`."
        ),
    )
    p.add_argument("data_dir", type=Path, help="a prepared dataset directory (hstu-blair prepare --out)")
    p.add_argument("--out", type=Path, help="config file to write (default: print it)")
    p.add_argument("--name", help="the runs' name (default DATA_DIR's name + '-start')")
    p.set_defaults(handler=_init_config)


def _init_config(args: argparse.Namespace) -> int:
    if args.out is None:
        print(hb.starting_config(args.data_dir, args.name), end="")
        return 0
    print(f"wrote {hb.init_config(args.data_dir, args.out, args.name)}")
    return 0
