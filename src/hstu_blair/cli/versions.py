"""``update`` and ``rollback`` (new model versions of a served run, and going back one), and
``temporal-study`` (what events and ``update`` are worth against a retrain)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import hstu_blair as hb
from hstu_blair.cli.common import add_set_option, print_metrics
from hstu_blair.run.versions import DEFAULT_TOLERANCE, UpdateRefused


def add_update(sub: argparse._SubParsersAction) -> None:
    """Register ``hstu-blair update``."""
    p = sub.add_parser(
        "update",
        help="continue training a run on its stored events and added items; publish a new model version",
        description=(
            "Continue training RUN_DIR's served model version on its dataset plus the users' events and the "
            "items stored since (POST /events, POST /items, `events import`): events are appended to each "
            "user's sequence in time order, new users become new sequences, items added at run time keep "
            "the vectors serving gave them (their text, no ID part) as their starting point. Trains with the "
            "run's settings and the shared training loop (validation, early stopping), then writes "
            "RUN_DIR/versions/<n>/ and points the run at it atomically: servers switch between requests, "
            "without a restart. Versions beyond --keep are deleted (version 0, the trained run, stays). "
            "Safe to run from cron or a systemd timer: with no events or items stored since the served "
            "version it does nothing; staging directories left by a killed update are deleted; and the new "
            "model is published only if its validation metric (train.monitor), measured on the same "
            "targets as the served model's, is not below the served one by more than --tolerance. "
            "Exit status: 0 published or nothing to do, 1 refused (the served version unchanged), 2 error."
        ),
    )
    p.add_argument("run_dir", type=Path, help="run directory written by `hstu-blair train`")
    p.add_argument(
        "--epochs",
        type=int,
        help="epochs to train (default: a quarter of the run's train.epochs, at least 1)",
    )
    p.add_argument("--keep", type=int, default=3, help="model versions to keep (default 3)")
    p.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help="largest validation drop published, as a fraction of the served model's value "
        "(default %(default)s: up to 2%% below it)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="publish whatever validation says, and train even with no new events",
    )
    p.add_argument(
        "--store", help="the run's store, if not RUN_DIR/store.sqlite (SQLite path or PostgreSQL URL)"
    )
    add_set_option(p, "override a value of the run's config, e.g. --set train.threads=1 (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(handler=_update)


def _update(args: argparse.Namespace) -> int:
    try:
        result = hb.update(
            args.run_dir,
            args.epochs,
            args.keep,
            args.overrides,
            args.store,
            progress=not args.no_progress,
            tolerance=args.tolerance,
            force=args.force,
        )
    except UpdateRefused as exc:
        print(f"hstu-blair update: refused: {exc}", file=sys.stderr)
        return 1
    for path in result.cleaned:
        print(f"deleted {path} (left by an update that was killed)")
    if not result.published:
        print(f"{result.run_dir}: {result.note}")
        return 0
    a = result.added
    print(
        f"version {result.version} of {result.run_dir} (from version {result.base_version}) in "
        f"{result.seconds:.1f} s: {a.events} events ({a.new_users} new users), {a.items} added items"
        + (f", {a.unknown_item_events} events on unknown items left out" if a.unknown_item_events else "")
        + (f", {a.duplicate_events} duplicate events left out" if a.duplicate_events else "")
    )
    if result.valid_before is not None and result.valid_after is not None:
        print(f"validation: {result.valid_before:.4f} before, {result.valid_after:.4f} after")
    print_metrics(result.metrics, "test metrics of the new version:")
    if result.pruned:
        print(f"deleted versions {', '.join(map(str, result.pruned))}")
    return 0


def add_rollback(sub: argparse._SubParsersAction) -> None:
    """Register ``hstu-blair rollback``."""
    p = sub.add_parser(
        "rollback",
        help="serve the model version before the current one",
        description=(
            "Point RUN_DIR at the model version before the one served (atomically); servers switch between "
            "requests. The newer version stays on disk until pruned by `update --keep`."
        ),
    )
    p.add_argument("run_dir", type=Path)
    p.set_defaults(handler=_rollback)


def _rollback(args: argparse.Namespace) -> int:
    was, now = hb.rollback(args.run_dir)
    print(f"{args.run_dir}: now serving version {now} (was {was})")
    return 0


def add_temporal_study(sub: argparse._SubParsersAction) -> None:
    """Register ``hstu-blair temporal-study``."""
    p = sub.add_parser(
        "temporal-study",
        help="events and update against a retrain, on a time split (one config and seed, or --report)",
        description=(
            "Cut CONFIG's dataset at two time quantiles t1 < t2 (--train-quantile, --events-quantile), train "
            "on the interactions before t1, and rank each user's first interaction after t2 with (a) that "
            "model, (b) the same model after the interactions in [t1, t2) were sent as events through its "
            "store, (c) after `update --epochs N` on them, (d) a model trained from scratch on everything "
            "before t2; prints HR@10, NDCG@10 and wall time per arm and writes WORK_DIR/study.json. Seeds: "
            "--set train.seed=N, or a grid with a [temporal_study] table (configs/grids/temporal-refresh.toml, "
            "run with `hstu-blair reproduce`). --report DIR... tabulates finished studies (mean ± std over seeds, "
            "NDCG@10 of users known at t1 and of users new since, paired t-tests of (b) against (a) and (c) "
            "against (d)); --rescore scores a finished study again from its saved runs."
        ),
    )
    p.add_argument("config", type=Path, nargs="?", help="TOML config of a dataset with timestamps")
    p.add_argument("--work-dir", type=Path, default=Path("runs/temporal-study"), help="output directory")
    p.add_argument("--train-quantile", type=float, default=0.8, help="t1 as a quantile of the times (0.8)")
    p.add_argument("--events-quantile", type=float, default=0.9, help="t2 as a quantile of the times (0.9)")
    p.add_argument("--update-epochs", type=int, default=3, help="epochs of update in arm (c) (default 3)")
    p.add_argument("--report", type=Path, nargs="+", help="folders holding study.json files (searched below)")
    p.add_argument(
        "--rescore",
        action="store_true",
        help="score WORK_DIR's finished study again from its saved runs (adds each target's rank; no training)",
    )
    add_set_option(p, "override a config value, e.g. --set train.threads=1 (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(handler=_temporal_study)


def _temporal_study(args: argparse.Namespace) -> int:
    if args.report:
        print(hb.temporal_report(args.report))
        return 0
    config = hb.load_config(args.config, args.overrides)
    if args.rescore:
        hb.temporal_rescore(config, args.work_dir)
        print(hb.temporal_report([Path(args.work_dir)]))
        return 0
    record = hb.temporal_study(
        config,
        args.work_dir,
        args.train_quantile,
        args.events_quantile,
        args.update_epochs,
        progress=not args.no_progress,
    )
    print(
        f"{record['dataset']}: {record['targets']} test users, {record['events']} events in [t1, t2), "
        f"seed {record['seed']}"
    )
    print(hb.temporal_report([Path(args.work_dir)]))
    print(f"written: {Path(args.work_dir) / 'study.json'}")
    return 0
