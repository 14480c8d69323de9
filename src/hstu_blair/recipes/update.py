"""``update``: continue training a served run on its dataset plus what its store learned since
(users' events, items added at run time), and publish the result as a new model version.

The steps, top to bottom:

1. Load the served version (its weights, architecture and dataset) and read the run's store.
2. The training data: the run's dataset with every stored event appended to its user's sequence in
   time order (new users become new sequences) and the stored items added to the catalogue
   (:func:`hstu_blair.data.derive.append_events`); the run's split protocol on it.
3. The model: the served weights, grown by the items added since the served version exactly as
   serving grows it for an added item (text rows appended; fusions with an ID table get a zero
   ID row, the text path as it is), then trained with the run's settings for ``epochs`` epochs by
   the loop ``train`` runs (:mod:`hstu_blair.recipes.loop`), with validation and early stopping.
   The served model's validation score on the same split is recorded beside the new one.
4. The check: the new model is published only if its validation score is not below the served
   model's (measured on the same targets) by more than ``tolerance`` (a fraction of the served
   score); otherwise :class:`UpdateRefused` and the served version stays (``force`` skips the
   check). Before any of this, a store holding exactly what the served version was trained with
   (no new events or items) ends the update with nothing done, and staging directories left by a
   killed update (``versions/.<n>.<pid>.tmp`` of a pid no longer running) are deleted.
5. The version directory (``versions/<n>/``: model.json, weights, the added items' text rows,
   history, final and update metrics) is written under a temporary name and renamed into place,
   then the pointer is replaced; servers switch to it between requests
   (:class:`hstu_blair.serving.live.LiveRecommender`). Versions beyond the ``keep`` newest are
   deleted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from hstu_blair.config import RunConfig, load_config
from hstu_blair.data import schema
from hstu_blair.data.dataset import SequenceData
from hstu_blair.data.derive import AppendReport, append_events
from hstu_blair.data.manifest import write_json_atomic
from hstu_blair.data.splits import Split
from hstu_blair.errors import ConfigError
from hstu_blair.evaluation.evaluate import evaluate_model
from hstu_blair.models.build import Architecture, build_model
from hstu_blair.models.sequential import SequentialModel
from hstu_blair.recipes.loop import LoopState, finish_run, make_trainer, run_epochs, setup_torch
from hstu_blair.recipes.resolve import resolve_device, train_item_counts
from hstu_blair.recipes.resolve import split as resolve_split
from hstu_blair.run.layout import config_path, is_run_dir, update_info_path, version_dir
from hstu_blair.run.model_files import (
    TextStoreRef,
    TrainedModel,
    load_trained,
    read_model_info,
    save_added_text,
    write_model_info,
)
from hstu_blair.run.store import ItemRecord, Store
from hstu_blair.run.store_marker import has_store
from hstu_blair.run.versions import (
    DEFAULT_TOLERANCE,
    UpdateRefused,
    commit_version,
    current_version,
    next_version,
    prune,
    publish,
    remove_stale_staging,
    staging_dir,
    writer_lock,
)
from hstu_blair.training.distributed import DistInfo

log = logging.getLogger(__name__)


@dataclass
class UpdateResult:
    """What :func:`update` did: the version written (and served), the one it started from, its test
    metrics, the served model's and the new model's validation score, what the store added, the
    versions pruned and the wall time. ``published`` is False when there was nothing to do
    (``note`` says why; ``version`` is then the served one); ``cleaned`` lists the staging
    directories of killed updates it deleted."""

    run_dir: Path
    version: int
    base_version: int
    metrics: dict[str, float]
    valid_before: float | None
    valid_after: float | None
    added: AppendReport
    pruned: list[int]
    seconds: float
    published: bool = True
    note: str = ""
    cleaned: list[Path] = dataclasses.field(default_factory=list)


@dataclass(frozen=True)
class RefreshOptions:
    """:func:`update`'s settings besides the run, epochs and ``keep`` (see there)."""

    overrides: list[str] | None = None
    store: str | Path | None = None
    progress: bool = True
    tolerance: float = DEFAULT_TOLERANCE
    force: bool = False


def _stored_items(store: Store, d_text: int, info: dict[str, Any], n_data: int) -> list[ItemRecord]:
    """The store's items in store order (damaged ones are left to serving, which sets them aside);
    the ones the served version already holds must come first, in its order."""
    records, damaged = store.read_items(0, d_text)
    catalogue = set(info["item_ids"][:n_data])
    duplicates = [r for r in records if r.item_id in catalogue]
    records = [r for r in records if r.item_id not in catalogue]
    if damaged or duplicates:
        log.warning(
            "%d damaged and %d duplicate stored items are not trained on (serving sets them aside)",
            len(damaged),
            len(duplicates),
        )
    folded = info["item_ids"][n_data:]
    if [r.item_id for r in records[: len(folded)]] != folded:
        raise ConfigError(
            f"the store {store.describe()} does not start with the {len(folded)} added items the served "
            "version was trained with: was it replaced? Serve it with the store it was trained with"
        )
    return records


def update(
    run_dir: str | Path,
    epochs: int | None = None,
    keep: int = 3,
    overrides: list[str] | None = None,
    store: str | Path | None = None,
    progress: bool = True,
    tolerance: float = DEFAULT_TOLERANCE,
    force: bool = False,
) -> UpdateResult:
    """Refresh a run with its stored events and items and publish a new model version, if it is
    not worse on validation than the served one (see the module docstring).

    Args:
        run_dir: a run directory written by ``train`` (and possibly updated before).
        epochs: epochs to train (default: a quarter of the run's ``train.epochs``, at least 1).
        keep: model versions to keep (older ones are deleted; version 0 and the served one stay).
        overrides: ``section.key=value`` changes to the run's config (e.g. ``train.threads=1``).
        store: the run's store, if not ``RUN_DIR/store.sqlite`` (a SQLite path or PostgreSQL URL).
        progress: show progress bars.
        tolerance: the largest validation drop published, as a fraction of the served model's
            value (:data:`DEFAULT_TOLERANCE`).
        force: publish whatever the validation says, and train even without new events.

    Returns:
        What was done; ``published`` is False when the store holds nothing new.

    Raises:
        UpdateRefused: the new model is worse than the served one beyond ``tolerance``.
        ConfigError: not a run directory, bad overrides, ``keep`` < 1, ``tolerance`` < 0, another ``update`` of the
            run in progress (:func:`~hstu_blair.run.versions.writer_lock`), or a store that
            does not match the served version.
    """
    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    if keep < 1:
        raise ConfigError(f"--keep must be at least 1, got {keep}")
    if not tolerance >= 0:
        raise ConfigError(f"--tolerance must be a fraction >= 0, got {tolerance}")
    if not is_run_dir(run_dir):
        raise ConfigError(f"{run_dir} is not a run directory (no {config_path(run_dir).name})")
    options = RefreshOptions(overrides, store, progress, tolerance, force)
    with writer_lock(run_dir):
        return _refresh(run_dir, epochs, keep, options, t0)


def _store_events(run_dir: Path, store: str | Path | None) -> tuple[list[tuple[str, str, int]], list[str]]:
    """The store's events and item ids; none without a store yet."""
    if not has_store(run_dir, store):  # no store yet: nothing was added
        return [], []
    stored = Store.for_run(run_dir, store)
    try:
        return stored.all_events(), stored.item_ids()
    finally:
        stored.close()


def _read_items(run_dir: Path, store: str | Path | None, served: TrainedModel) -> list[ItemRecord]:
    """The store's items, for a model with a text path; none without a store yet."""
    text = served.model.items.text
    if text is None or not has_store(run_dir, store):
        return []
    stored = Store.for_run(run_dir, store)
    try:
        return _stored_items(stored, int(text.shape[1]), served.info, served.data.num_items)
    finally:
        stored.close()


def _training_data(
    served: TrainedModel, records: list[ItemRecord], events: list[tuple[str, str, int]]
) -> tuple[SequenceData, AppendReport]:
    """The run's dataset with the stored events appended and the stored items in its catalogue."""
    new_items = pl.DataFrame(
        {
            schema.ITEM_ID: [r.item_id for r in records],
            schema.TITLE: [r.title or r.item_id for r in records],
            schema.TEXT: [r.text for r in records],
        },
        schema={schema.ITEM_ID: pl.String, schema.TITLE: pl.String, schema.TEXT: pl.String},
    )
    return append_events(served.data, events, new_items)


def _grown_model(
    served: TrainedModel, records: list[ItemRecord], data: SequenceData, split: Split, device: torch.device
) -> tuple[SequentialModel, Architecture]:
    """The served model grown by the stored items it does not hold yet, as serving grows it for an
    added item (text row appended, no ID part), with the new data's training counts."""
    model = served.model
    grow = records[served.arch.num_items - served.data.num_items :]
    if grow:
        rows = torch.from_numpy(np.stack([r.vector for r in grow]))  # (m, d_text)
        model.items.add_text_items(rows.to(device))
    arch = dataclasses.replace(served.arch, num_items=data.num_items)
    text = None if model.items.text is None else model.items.text.detach().cpu()
    fresh = build_model(arch, text, train_item_counts(data, split))
    state = model.state_dict()
    for key, value in fresh.state_dict().items():
        if key.endswith("train_counts"):  # the counts of the new training data, for id_min_count
            state[key] = value
    fresh.load_state_dict(state)
    return fresh.to(device), arch


def _write_model_files(
    out: Path, served: TrainedModel, arch: Architecture, records: list[ItemRecord], extra: dict[str, Any]
) -> None:
    """``model.json`` of the new version (its item ids: the dataset's, then the stored items) and
    the stored items' text rows."""
    if records:
        extra["added_text"] = save_added_text(out, torch.from_numpy(np.stack([r.vector for r in records])))
    text_ref = None if served.info["text_store"] is None else TextStoreRef(**served.info["text_store"])
    n_data = served.data.num_items
    item_ids = [*served.info["item_ids"][:n_data], *(r.item_id for r in records)]
    write_model_info(out, arch, served.data, text_ref, extra, item_ids)


def _epochs(trained: int, epochs: int | None) -> int:
    """Epochs to train: ``epochs``, default a quarter of the run's (at least 1)."""
    epochs = max(1, trained // 4) if epochs is None else epochs
    if epochs < 1:
        raise ConfigError(f"--epochs must be at least 1, got {epochs}")
    return epochs


def _store_digest(events: list[tuple[str, str, int]], item_ids: list[str]) -> str:
    """A fingerprint of the store's events and items (what a version was trained with)."""
    digest = hashlib.sha256()
    for user, item, when in events:
        digest.update(f"e\t{user}\t{item}\t{when}\n".encode())
    for item in item_ids:
        digest.update(f"i\t{item}\n".encode())
    return digest.hexdigest()


def _unchanged(info: dict[str, Any], events: list[tuple[str, str, int]], item_ids: list[str]) -> bool:
    """Whether the store holds what the served version was trained with (its digest; a version
    written before digests were recorded, or version 0, by the numbers of events and items)."""
    if "store_digest" in info:
        return bool(info["store_digest"] == _store_digest(events, item_ids))
    return (len(events), len(item_ids)) == (info.get("store_events", 0), info.get("store_items", 0))


def _check_gain(
    run_dir: Path, metric: str, served: int, before: float, after: float, tolerance: float
) -> None:
    """Refuse a model whose ``metric`` (named with its split) is below the served one's by more than
    ``tolerance`` (a fraction of the served value).

    Raises:
        UpdateRefused: it is.
    """
    if after >= before * (1.0 - tolerance):
        return
    raise UpdateRefused(
        f"{run_dir}: not published: the refreshed model's {metric} is {after:.4f} against "
        f"{before:.4f} for the served version {served} on the same targets, a drop of more than the "
        f"tolerance ({tolerance:g} of it); version {served} stays served (--force publishes anyway)"
    )


def _refresh(
    run_dir: Path, epochs: int | None, keep: int, options: RefreshOptions, t0: float
) -> UpdateResult:
    """:func:`update`'s work, under the run's writer lock: clean up, read, and unless the store
    holds nothing new, train, check and publish."""
    cleaned = remove_stale_staging(run_dir)
    for path in cleaned:
        log.info("deleted %s, left by an update that was killed", path)
    config = load_config(config_path(run_dir), options.overrides)
    epochs = _epochs(config.train.epochs, epochs)
    base = current_version(run_dir)
    events, item_ids = _store_events(run_dir, options.store)
    if not options.force and _unchanged(read_model_info(version_dir(run_dir, base)), events, item_ids):
        note = f"no new events or items since version {base}: nothing to do"
        seconds = time.perf_counter() - t0
        return UpdateResult(
            run_dir, base, base, {}, None, None, AppendReport(0, 0, 0, 0), [], seconds, False, note, cleaned
        )
    digest = _store_digest(events, item_ids)
    result = _train_and_publish(run_dir, config, epochs, keep, options, (events, digest), t0)
    result.cleaned = cleaned
    return result


def _train_and_publish(
    run_dir: Path,
    config: RunConfig,
    epochs: int,
    keep: int,
    options: RefreshOptions,
    stored: tuple[list[tuple[str, str, int]], str],
    t0: float,
) -> UpdateResult:
    """Grow the served model, train it on the store's events (``stored``: them and the store's
    digest), check it against the served one and publish it (see the module docstring)."""
    events, digest = stored
    device = resolve_device(config.train.device)
    setup_torch(config.train, device)
    served = load_trained(run_dir, "best", device)
    records = _read_items(run_dir, options.store, served)
    data, added = _training_data(served, records, events)
    split = resolve_split(config, data)
    model, arch = _grown_model(served, records, data, split, device)
    version = next_version(run_dir)
    out = staging_dir(run_dir, version)
    trainer = make_trainer(config, data, split, model, device, DistInfo(), out)
    monitor, metric = "valid" if split.valid is not None else "test", config.train.monitor
    before = evaluate_model(
        model, data, split.targets(monitor), config.data.max_len, trainer.options, device, DistInfo()
    )[metric]
    loop = run_epochs(trainer, LoopState(), epochs, options.progress)
    after = loop.best if loop.best is not None else float("-inf")
    if not options.force:
        _check_gain(
            run_dir, f"{metric} on the {monitor} split", served.version, before, after, options.tolerance
        )
    metrics = finish_run(trainer, loop.best_epoch)
    extra: dict[str, Any] = {
        "protocol": split.protocol,
        "version": version,
        "base_version": served.version,
        "store_items": len(records),
        "store_events": len(events),
        "store_digest": digest,
    }
    _write_model_files(out, served, arch, records, extra)
    seconds = time.perf_counter() - t0
    record = {
        "base_version": served.version,
        "epochs": epochs,
        "best_epoch": loop.best_epoch,
        "added": dataclasses.asdict(added),
        "split": {"protocol": split.protocol, "skipped": split.skipped},
        f"{monitor}_{metric}_before": before,
        f"{monitor}_{metric}_after": loop.best,
        "tolerance": options.tolerance,
        "forced": options.force,
        "test_metrics": metrics,
        "seconds": seconds,
        "overrides": options.overrides or [],
    }
    write_json_atomic(update_info_path(out), record)
    commit_version(run_dir, out, version)
    publish(run_dir, version)
    pruned = prune(run_dir, keep)
    log.info("published version %d of %s (from version %d)", version, run_dir, served.version)
    return UpdateResult(run_dir, version, served.version, metrics, before, loop.best, added, pruned, seconds)
