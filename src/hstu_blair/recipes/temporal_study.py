"""The refresh study on time: is a model kept current by events and ``update`` as good as a retrain?

For a dataset with timestamps, the global time quantiles ``train_quantile`` (t1, default 0.8) and
``events_quantile`` (t2, default 0.9) cut the interactions (the ``temporal`` protocol of
:mod:`hstu_blair.data.splits`: its test targets are each user's first interaction at or after t2,
with the user's earlier interactions as history). Four arms answer those targets, all through the
serving API (:class:`~hstu_blair.serving.recommender.Recommender`, ``recommend_user``):

(a) ``no_events``: a model trained on the interactions before t1; histories end at t1.
(b) ``live_events``: the same model, after the interactions in [t1, t2) were sent as events
    through the run's store (``add_events``): histories reach t2, the weights do not change.
(c) ``update``: (b) after ``hstu-blair update`` for ``update_epochs`` epochs (a new version).
(d) ``retrain``: a model trained from scratch on everything before t2.

Training uses the config's settings with the ``loo`` protocol on the truncated datasets (written
under ``work_dir``). A test user without any interaction before t1 gets the most popular items in
(a) (a new user, as the service answers one). Reported per arm: HR@k and NDCG@k over the top
``max(ks)`` items, each target's rank (so that users with a history before t1 and users new since
then can be told apart, :func:`~hstu_blair.reports.temporal.study_table`), and the wall time of what the arm adds (training,
event ingest, update). Every arm is scored from what the study saved (:func:`score_arms`), so a
finished study can be scored again (``rescore``) without training anything.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from hstu_blair.config import RunConfig
from hstu_blair.data import schema
from hstu_blair.data.dataset import SequenceData
from hstu_blair.data.derive import save_dataset, truncate_before
from hstu_blair.data.manifest import write_json_atomic
from hstu_blair.data.splits import make_temporal_split
from hstu_blair.errors import ConfigError
from hstu_blair.evaluation.metrics import metrics_from_ranks
from hstu_blair.recipes.resolve import ensure_dataset, ensure_text, text_store, uses_text
from hstu_blair.recipes.train import train
from hstu_blair.recipes.update import update
from hstu_blair.reports.temporal import STUDY_FILE
from hstu_blair.run.model_files import load_trained
from hstu_blair.serving.recommender import Recommender

log = logging.getLogger(__name__)

HR_KS = (10, 50)
NDCG_KS = (10, 50)


@dataclass
class Arm:
    """One arm's quality on the test targets and the wall time of what it adds."""

    name: str
    metrics: dict[str, float]
    seconds: float
    popular_fallback: int = 0
    ranks: list[int | None] | None = None
    """Each target's rank in the arm's top ``max(ks)`` list (None: not in it), targets in order."""


@dataclass
class StudyTargets:
    """The test targets: external user ids and target item ids, with the cutoffs (seconds)."""

    users: list[str]
    items: list[str]
    train_cutoff: int
    events_cutoff: int
    skipped: dict[str, int]
    new: list[int]
    """Indices of the targets whose user has no interaction before the train cutoff (new users of
    arm (a), which answers them with the popular items)."""


def study_targets(data: SequenceData, train_quantile: float, events_quantile: float) -> StudyTargets:
    """The cutoffs and each user's first interaction at or after the events cutoff (the temporal
    protocol's ``next`` targets).

    Raises:
        ConfigError: quantiles not in 0 < train < events < 1.
    """
    if not 0 < train_quantile < events_quantile < 1:
        raise ConfigError(
            f"quantiles must satisfy 0 < train ({train_quantile}) < events ({events_quantile}) < 1"
        )
    split = make_temporal_split(data.offsets, data.time_seq, events_quantile, train_quantile, "next")
    info = split.info or {}
    users = split.test.users
    flat = data.offsets[users] + split.test.positions  # (E,)
    user_ids = data.sequences[schema.USER_ID].to_numpy()[users]
    item_ids = data.item_ids[data.item_seq[flat]]
    first_time = data.time_seq[data.offsets[users]]  # sequences are in time order
    return StudyTargets(
        [str(u) for u in user_ids],
        [str(i) for i in item_ids],
        int(info["valid_cutoff"]),
        int(info["cutoff"]),
        dict(split.skipped),
        np.flatnonzero(first_time >= int(info["valid_cutoff"])).tolist(),
    )


def score(rec: Recommender, targets: StudyTargets, k: int) -> tuple[dict[str, float], int, list[int | None]]:
    """HR/NDCG of ``rec.recommend_user`` over the targets (top ``k``; users without any history get
    the popular items), how many users got the popular items, and each target's rank (None: not in
    the top ``k``)."""
    ranks = np.full(len(targets.users), np.inf)
    fallback = 0
    for n, (user, item) in enumerate(zip(targets.users, targets.items)):
        if rec.user_history(user)[0].size == 0:
            fallback += 1
        listed = [r.item_id for r in rec.recommend_user(user, k=k, new_user="popular")]
        if item in listed:
            ranks[n] = listed.index(item) + 1
    metrics = metrics_from_ranks(ranks, HR_KS, NDCG_KS)
    metrics.pop("mrr", None)  # a full-ranking metric: not from a top-k list
    listed_ranks = [None if np.isinf(r) else int(r) for r in ranks]
    return {**metrics, "n_users": float(len(ranks))}, fallback, listed_ranks


def score_arms(
    work_dir: str | Path, targets: StudyTargets
) -> dict[str, tuple[dict[str, float], int, list[int | None]]]:
    """:func:`score` of every arm, from what a study saved in ``work_dir``: (a) ``run-a``'s version 0
    without its store's events, (b) with them, (c) its newest version (``update``) with them, (d)
    ``run-d``."""
    work = Path(work_dir)
    k = max(*HR_KS, *NDCG_KS)
    loads = {
        "no_events": lambda: Recommender(load_trained(work / "run-a", version=0), persist=False),
        "live_events": lambda: Recommender(load_trained(work / "run-a", version=0)),
        "update": lambda: Recommender(load_trained(work / "run-a")),
        "retrain": lambda: Recommender(load_trained(work / "run-d")),
    }
    scored = {}
    for arm, load in loads.items():
        with load() as rec:
            scored[arm] = score(rec, targets, k)
    return scored


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t0


def _clear_unfinished(work: Path) -> None:
    """Create ``work``; an interrupted study in it (runs but no record) is removed, to start again whole."""
    work.mkdir(parents=True, exist_ok=True)
    stale = [p for p in (work / "run-a", work / "run-d") if p.exists()]
    if stale and not (work / STUDY_FILE).exists():
        log.warning(
            "%s: an unfinished study; removing %s and starting again", work, ", ".join(p.name for p in stale)
        )
        for path in stale:
            shutil.rmtree(path)


def _truncated_datasets(full: SequenceData, targets: StudyTargets, work: Path) -> dict[str, Any]:
    """The dataset cut before t1 (arms a-c train on it) and before t2 (arm d), saved in ``work``."""
    datasets: dict[str, Any] = {}
    for tag, cutoff in (
        ("before_train_cutoff", targets.train_cutoff),
        ("before_events_cutoff", targets.events_cutoff),
    ):
        part, dropped = truncate_before(full, cutoff, f"{full.name}<{cutoff}")
        saved = save_dataset(part, work / f"data-{tag}")
        datasets[tag] = {
            "path": str(saved.path),
            "interactions": saved.num_interactions,
            "users_dropped": dropped,
        }
    return datasets


def _window_events(full: SequenceData, targets: StudyTargets) -> list[tuple[str, str, int]]:
    """The interactions in [t1, t2) as ``(user_id, item_id, timestamp)`` events, in time order."""
    t = full.time_seq
    window = np.flatnonzero((t >= targets.train_cutoff) & (t < targets.events_cutoff))  # (M,) flat positions
    window = window[np.argsort(t[window], kind="stable")]
    user_of = np.repeat(full.sequences[schema.USER_ID].to_numpy(), full.lengths)  # (N,)
    return [(str(user_of[i]), str(full.item_ids[full.item_seq[i]]), int(t[i])) for i in window]


def temporal_study(
    config: RunConfig,
    work_dir: str | Path,
    train_quantile: float = 0.8,
    events_quantile: float = 0.9,
    update_epochs: int = 3,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the four arms (module docstring) for one config and seed; writes ``work_dir/study.json``.

    Args:
        config: the run config (its ``data.path`` is the full dataset; ``train.seed`` the seed).
        work_dir: where the truncated datasets, the two runs and the result go.
        train_quantile, events_quantile: t1 and t2 as quantiles of the interaction times.
        update_epochs: epochs of ``update`` in arm (c).
        progress: show progress bars.

    Returns:
        The ``study.json`` record: cutoffs, targets, and per arm its metrics and seconds.

    Longer than 60 lines with its documented arguments; the body reads as the four arms in order,
    each step a call.
    """
    work = Path(work_dir)
    _clear_unfinished(work)
    full = ensure_dataset(config)
    targets = study_targets(full, train_quantile, events_quantile)
    text = config.text
    if uses_text(config):
        ensure_text(config, full, progress)  # the full catalogue's store serves both truncated datasets
        text = replace(text, embeddings=str(text_store(config, full).resolve()))

    def config_for(data_dir: Path) -> RunConfig:
        return replace(config, data=replace(config.data, path=str(data_dir), protocol="loo"), text=text)

    datasets = _truncated_datasets(full, targets, work)
    seconds: dict[str, float] = {}

    result, seconds["no_events"] = _timed(
        lambda: train(
            config_for(work / "data-before_train_cutoff"), run_dir=work / "run-a", progress=progress
        )
    )
    events = _window_events(full, targets)
    with Recommender(load_trained(result.run_dir)) as rec:
        _, seconds["live_events"] = _timed(
            lambda: [rec.add_events(events[i : i + 5000]) for i in range(0, len(events), 5000)]
        )
    # the study measures what update's training gives: published whatever validation says
    refreshed = update(result.run_dir, update_epochs, keep=2, progress=progress, force=True)
    seconds["update"] = refreshed.seconds
    _, seconds["retrain"] = _timed(
        lambda: train(
            config_for(work / "data-before_events_cutoff"), run_dir=work / "run-d", progress=progress
        )
    )
    arms = [
        Arm(name, m, seconds[name], fallback, ranks)
        for name, (m, fallback, ranks) in score_arms(work, targets).items()
    ]

    record = {
        "name": config.name,
        "seed": config.train.seed,
        "dataset": full.name,
        "train_quantile": train_quantile,
        "events_quantile": events_quantile,
        "train_cutoff": targets.train_cutoff,
        "events_cutoff": targets.events_cutoff,
        "events": len(events),
        "update_epochs": update_epochs,
        "targets": len(targets.users),
        **_target_fields(targets),
        "targets_skipped": targets.skipped,
        "datasets": datasets,
        "arms": {a.name: asdict(a) for a in arms},
    }
    write_json_atomic(work / STUDY_FILE, record)
    return record


def _target_fields(targets: StudyTargets) -> dict[str, list[str] | list[int]]:
    """What ``study.json`` keeps of each target (in the order of every arm's ``ranks``)."""
    return {
        "target_users": targets.users,
        "target_items": targets.items,
        "targets_new_since_train_cutoff": targets.new,
    }


def rescore(config: RunConfig, work_dir: str | Path) -> dict[str, Any]:
    """Score a finished study's arms again from its saved runs (:func:`score_arms`), adding each
    target's rank to ``study.json`` (studies written before ranks were recorded); seconds are kept.

    Raises:
        ConfigError: ``work_dir`` holds no finished study, or one of another dataset or cut.
    """
    path = Path(work_dir) / STUDY_FILE
    if not path.is_file():
        raise ConfigError(f"{path}: no finished study to score again")
    record = json.loads(path.read_text())
    targets = study_targets(ensure_dataset(config), record["train_quantile"], record["events_quantile"])
    if (targets.train_cutoff, targets.events_cutoff) != (record["train_cutoff"], record["events_cutoff"]):
        raise ConfigError(f"{path}: made with other cutoffs than {config.data.path} gives; wrong config?")
    for name, (metrics, fallback, ranks) in score_arms(work_dir, targets).items():
        record["arms"][name].update(metrics=metrics, popular_fallback=fallback, ranks=ranks)
    record.update(_target_fields(targets))
    write_json_atomic(path, record)
    return record
