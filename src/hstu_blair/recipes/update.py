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
4. The version directory (``versions/<n>/``: model.json, weights, the added items' text rows,
   history, final and update metrics) is written under a temporary name and renamed into place,
   then the pointer is replaced; servers switch to it between requests
   (:class:`hstu_blair.serving.live.LiveRecommender`). Versions beyond the ``keep`` newest are
   deleted.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from hstu_blair.config import load_config
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
from hstu_blair.run.layout import config_path, is_run_dir, store_path, update_info_path
from hstu_blair.run.model_files import (
    TextStoreRef,
    TrainedModel,
    load_trained,
    save_added_text,
    write_model_info,
)
from hstu_blair.run.store import ItemRecord, Store
from hstu_blair.run.versions import (
    commit_version,
    next_version,
    prune,
    publish,
    staging_dir,
    writer_lock,
)
from hstu_blair.training.distributed import DistInfo

log = logging.getLogger(__name__)


@dataclass
class UpdateResult:
    """What :func:`update` did: the version written (and served), the one it started from, its test
    metrics, the served model's and the new model's validation score, what the store added, the
    versions pruned and the wall time."""

    run_dir: Path
    version: int
    base_version: int
    metrics: dict[str, float]
    valid_before: float | None
    valid_after: float | None
    added: AppendReport
    pruned: list[int]
    seconds: float


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
) -> UpdateResult:
    """Refresh a run with its stored events and items and publish a new model version.

    Args:
        run_dir: a run directory written by ``train`` (and possibly updated before).
        epochs: epochs to train (default: a quarter of the run's ``train.epochs``, at least 1).
        keep: model versions to keep (older ones are deleted; version 0 and the served one stay).
        overrides: ``section.key=value`` changes to the run's config (e.g. ``train.threads=1``).
        store: the run's store, if not ``RUN_DIR/store.sqlite`` (a SQLite path or PostgreSQL URL).
        progress: show progress bars.

    Raises:
        ConfigError: not a run directory, bad overrides, ``keep`` < 1, another ``update`` of the
            run in progress (:func:`~hstu_blair.run.versions.writer_lock`), or a store that
            does not match the served version.
    """
    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    if keep < 1:
        raise ConfigError(f"--keep must be at least 1, got {keep}")
    if not is_run_dir(run_dir):
        raise ConfigError(f"{run_dir} is not a run directory (no {config_path(run_dir).name})")
    with writer_lock(run_dir):
        return _refresh(run_dir, epochs, keep, overrides, store, progress, t0)


def _read_store(
    run_dir: Path, store: str | Path | None, served: TrainedModel
) -> tuple[list[ItemRecord], list[tuple[str, str, int]]]:
    """The store's items (for a model with a text path) and events; none without a store yet."""
    if store is None and not store_path(run_dir).exists():  # no store yet: nothing was added
        return [], []
    stored = Store.for_run(run_dir, store)
    try:
        text = served.model.items.text
        records = (
            []
            if text is None
            else _stored_items(stored, int(text.shape[1]), served.info, served.data.num_items)
        )
        return records, stored.all_events()
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


def _refresh(
    run_dir: Path,
    epochs: int | None,
    keep: int,
    overrides: list[str] | None,
    store: str | Path | None,
    progress: bool,
    t0: float,
) -> UpdateResult:
    """:func:`update`'s work, under the run's writer lock: read, grow, train, write, publish."""
    config = load_config(config_path(run_dir), overrides)
    epochs = _epochs(config.train.epochs, epochs)
    device = resolve_device(config.train.device)
    setup_torch(config.train, device)
    served = load_trained(run_dir, "best", device)
    records, events = _read_store(run_dir, store, served)
    data, added = _training_data(served, records, events)
    split = resolve_split(config, data)
    model, arch = _grown_model(served, records, data, split, device)

    version = next_version(run_dir)
    out = staging_dir(run_dir, version)
    trainer = make_trainer(config, data, split, model, device, DistInfo(), out)
    monitor = "valid" if split.valid is not None else "test"
    before = evaluate_model(
        model, data, split.targets(monitor), config.data.max_len, trainer.options, device, DistInfo()
    )[config.train.monitor]
    loop = run_epochs(trainer, LoopState(), epochs, progress)
    metrics = finish_run(trainer, loop.best_epoch)

    extra: dict[str, Any] = {
        "protocol": split.protocol,
        "version": version,
        "base_version": served.version,
        "store_items": len(records),
        "store_events": len(events),
    }
    _write_model_files(out, served, arch, records, extra)
    seconds = time.perf_counter() - t0
    write_json_atomic(
        update_info_path(out),
        {
            "base_version": served.version,
            "epochs": epochs,
            "best_epoch": loop.best_epoch,
            "added": dataclasses.asdict(added),
            "split": {"protocol": split.protocol, "skipped": split.skipped},
            f"{monitor}_{config.train.monitor}_before": before,
            f"{monitor}_{config.train.monitor}_after": loop.best,
            "test_metrics": metrics,
            "seconds": seconds,
            "overrides": overrides or [],
        },
    )
    commit_version(run_dir, out, version)
    publish(run_dir, version)
    pruned = prune(run_dir, keep)
    log.info("published version %d of %s (from version %d)", version, run_dir, served.version)
    return UpdateResult(run_dir, version, served.version, metrics, before, loop.best, added, pruned, seconds)
