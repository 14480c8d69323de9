"""``prepare``: published files -> filtered, id-mapped, chronological prepared-dataset directory."""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl

from hstu_blair.data import filters, schema
from hstu_blair.data.dataset import SequenceData, write_dataset
from hstu_blair.data.manifest import file_record
from hstu_blair.data.options import DEFAULT_KCORE, PrepareOptions
from hstu_blair.data.sources.base import RawDataset
from hstu_blair.errors import EmptyDatasetError, HstuBlairError

log = logging.getLogger(__name__)

SOURCES: dict[str, str] = {
    "amazon2023": "hstu_blair.data.sources.amazon2023:load_amazon2023",
    "steam": "hstu_blair.data.sources.steam:load_steam",
    "movielens": "hstu_blair.data.sources.movielens:load_movielens",
    "generic": "hstu_blair.data.sources.generic:load_generic",
    "ml-latest-small": "hstu_blair.data.sources.movielens:load_bundled_ml_latest_small",
}
"""Source name -> ``module:function`` of its loader. Every loader is called as
``loader(paths, options) -> RawDataset``."""


def get_loader(source: str) -> Callable[[list[Path], PrepareOptions], RawDataset]:
    """The loader function registered for ``source``; an unknown name lists the valid ones."""
    if source not in SOURCES:
        raise HstuBlairError(f"unknown source {source!r}; valid sources: {', '.join(SOURCES)}")
    module, func = SOURCES[source].split(":")
    return getattr(importlib.import_module(module), func)


def load_source(source: str, inputs: list[Path], options: PrepareOptions) -> RawDataset:
    """Read the published files of ``source`` into canonical raw tables (no filtering yet)."""
    return get_loader(source)([Path(p) for p in inputs], options)


def filter_raw(raw: RawDataset, options: PrepareOptions) -> tuple[pl.DataFrame, dict[str, dict[str, int]]]:
    """Apply duplicates, text and k-core filters in that order; return kept rows and removals.

    Raises:
        EmptyDatasetError: when a filter leaves no interaction, naming the filter.
    """
    df = raw.interactions
    removed: dict[str, dict[str, int]] = {}
    if raw.removed:
        removed["source"] = dict(raw.removed)
    if df.height == 0:
        raise EmptyDatasetError(f"{raw.name}: the input files hold no interactions")
    users, items = filters.code_ids(df)
    mask = np.ones(df.height, dtype=bool)

    def step(name: str, new_mask: np.ndarray) -> np.ndarray:
        removed[name] = filters.removed_counts(users, items, mask, new_mask)
        if not new_mask.any():
            raise EmptyDatasetError(
                f"{raw.name}: no interactions left after the {name!r} filter (removed: {removed[name]}); "
                "loosen the option that controls it"
            )
        return new_mask

    if options.duplicates == "drop-exact":
        mask = step(
            "duplicates", mask & filters.first_occurrences(users, items, df[schema.TIMESTAMP].to_numpy())
        )
    if raw.items is not None and options.items_without_text == "drop":
        with_text = raw.items.filter(pl.col(schema.TEXT).str.strip_chars() != "")[schema.ITEM_ID]
        has_text = df[schema.ITEM_ID].is_in(with_text.implode()).to_numpy()
        mask = step("items_without_text", mask & has_text)
    k = DEFAULT_KCORE.get(raw.source, 0) if options.kcore is None else options.kcore
    if k > 1:
        new_mask, rounds = filters.kcore(users, items, k, mask, iterative=options.kcore_mode == "iterative")
        mask = step("kcore", new_mask)
        removed["kcore"].update(rounds=rounds, k=k)
    return df.filter(pl.Series(mask)), removed


def prepare(
    source: str,
    inputs: list[Path] | None,
    out: Path,
    options: PrepareOptions | None = None,
) -> SequenceData:
    """Prepare a dataset from its published files and write the prepared-dataset directory.

    Args:
        source: one of :data:`SOURCES` (``amazon2023``, ``steam``, ``movielens``, ``generic``,
            ``ml-latest-small``).
        inputs: files or directories holding the published files (ignored for the bundled set).
        out: output directory (created; existing prepared files are replaced).
        options: filtering, text and format options.

    Returns:
        The prepared dataset, loaded back from ``out``.

    Raises:
        DataFormatError: a file does not match its published format (names file, line, field).
        EmptyDatasetError: nothing is left after filtering.
    """
    options = options or PrepareOptions()
    started = time.perf_counter()
    raw = load_source(source, list(inputs or []), options)
    if options.name:
        raw.name = options.name
    log.info(
        "%s: read %d interactions in %.1fs", raw.name, raw.interactions.height, time.perf_counter() - started
    )
    # The inputs' sha256 (for the manifest) is computed in a thread while filtering and writing:
    # hashlib releases the GIL, so with a spare core it costs no wall time.
    hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256")
    try:
        records = hasher.submit(lambda: [file_record(Path(p)) for p in raw.files])
        kept, removed = filter_raw(raw, options)
        write_dataset(raw, kept, removed, options.to_dict(), Path(out), file_records=records.result)
    finally:
        hasher.shutdown(wait=False, cancel_futures=True)
    log.info("%s: prepared in %.1fs -> %s", raw.name, time.perf_counter() - started, out)
    return SequenceData.load(out)
