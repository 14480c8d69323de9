"""``prepare``: published files -> filtered, id-mapped, chronological prepared-dataset directory."""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    "xwines": "hstu_blair.data.sources.xwines:load_xwines",
    "lastfm-hetrec": "hstu_blair.data.sources.lastfm:load_lastfm",
    "yelp-taste": "hstu_blair.data.sources.yelp_taste:load_yelp_taste",
    "user-sequences": "hstu_blair.data.sources.user_sequences:load_user_sequences",
    "recbole": "hstu_blair.data.sources.recbole:load_recbole",
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


@dataclass
class Filtered:
    """Keep-masks over ``raw.interactions`` and what each filter removed.

    Attributes:
        kept: (N,) rows written to the sequences.
        before_user_drop: (N,) rows kept by every filter before the single-pass k-core's last
            step (users left with fewer than k rows dropped); equal to ``kept`` in the other
            k-core modes. The reference fixes its item id space and sorts by time at this point.
        removed: per filter step, what it removed (interactions, users, items, ...).
    """

    kept: np.ndarray
    before_user_drop: np.ndarray
    removed: dict[str, dict[str, int]]


def filter_rows(raw: RawDataset, options: PrepareOptions) -> Filtered:
    """Apply duplicates, text and k-core filters in that order, as keep-masks over the raw rows.

    Raises:
        EmptyDatasetError: when a filter leaves no interaction, naming the filter.
    """
    options = options.for_source(raw.source)
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
    if raw.items is not None and options.items_without_text != "keep":
        listed = raw.items[schema.ITEM_ID]
        if options.items_without_text == "drop":
            listed = _items_with_text(raw.items)
        has_text = df[schema.ITEM_ID].is_in(listed.implode()).to_numpy()
        mask = step("items_without_text", mask & has_text)
    before_user_drop = mask
    k = DEFAULT_KCORE.get(raw.source, 0) if options.kcore is None else options.kcore
    if k > 1:
        rounds = 1
        if options.kcore_mode == "single-pass":
            before_user_drop = filters.single_pass_rows(users, items, k, mask)
            new_mask = filters.min_user_rows(users, k, before_user_drop)
        elif options.kcore_mode == "users-only":
            new_mask = filters.min_user_rows(users, k, mask)
        else:
            new_mask, rounds = filters.kcore(users, items, k, mask)
        mask = step("kcore", new_mask)
        removed["kcore"].update(rounds=rounds, k=k)
    if options.kcore_mode != "single-pass":
        before_user_drop = mask
    return Filtered(mask, before_user_drop, removed)


def filter_raw(raw: RawDataset, options: PrepareOptions) -> tuple[pl.DataFrame, dict[str, dict[str, int]]]:
    """Apply duplicates, text and k-core filters in that order; return kept rows and removals.

    Raises:
        EmptyDatasetError: when a filter leaves no interaction, naming the filter.
    """
    filtered = filter_rows(raw, options)
    return raw.interactions.filter(pl.Series(filtered.kept)), filtered.removed


def _items_with_text(items: pl.DataFrame) -> pl.Series:
    """External ids of the catalogue items whose text is not blank."""
    return items.filter(pl.col(schema.TEXT).str.strip_chars() != "")[schema.ITEM_ID]


# ---- which items, and the order of ties: the reference's behaviour is chosen here ----------------
def item_universe(raw: RawDataset, filtered: Filtered, options: PrepareOptions) -> pl.Series | None:
    """External ids of every item ``items.parquet`` holds, or ``None`` for the interacted items.

    ``before-user-drop``: the items of ``filtered.before_user_drop`` (the reference's Amazon id
    space, SPEC §1.3 step 6). ``catalogue``: every item of the source's item table (with non-blank
    text when ``items_without_text="drop"``), else of its interactions (the reference's
    MovieLens candidates, SPEC §1.2); plus the interacted items in both cases.
    """
    options = options.for_source(raw.source)
    if options.item_universe == "interacted":
        return None
    if options.item_universe == "before-user-drop":
        return raw.interactions[schema.ITEM_ID].filter(pl.Series(filtered.before_user_drop)).unique()
    if raw.items is None:
        catalogue = raw.interactions[schema.ITEM_ID]
    elif options.items_without_text == "drop":
        catalogue = _items_with_text(raw.items)
    else:
        catalogue = raw.items[schema.ITEM_ID]
    kept = raw.interactions[schema.ITEM_ID].filter(pl.Series(filtered.kept))
    return pl.concat([catalogue, kept]).unique()


def _reference_frame(raw: RawDataset, rows: np.ndarray) -> np.ndarray:
    """``rows`` (raw row numbers) in the order of the frame the reference sorts by time.

    MovieLens, Amazon and generic sources: file order. Steam (SPEC §1.3 Steam step 2): users in
    order of their first review, each user's rows sorted by ``(timestamp, item id)``.
    """
    if raw.source != "steam":
        return rows
    df = raw.interactions.with_row_index("_row")
    first = df.group_by(schema.USER_ID).agg(pl.col("_row").min().alias("_first"))
    selected = np.zeros(df.height, dtype=bool)
    selected[rows] = True
    frame = (
        df.filter(pl.Series(selected))
        .join(first, on=schema.USER_ID, how="left")
        .sort(["_first", schema.TIMESTAMP, schema.ITEM_ID, "_row"])
    )
    return frame["_row"].to_numpy().astype(np.int64)


def reference_order(raw: RawDataset, rows: np.ndarray) -> np.ndarray:
    """``rows`` ordered as the reference's ``sort_values("timestamp")`` orders them.

    pandas sorts one column with numpy's ``argsort(kind="quicksort")`` (introsort, or a SIMD sort
    where numpy has one for the CPU): not stable, so ties come out in an order that depends on the
    whole column. We run the same sort on the same values (``raw.source_times`` when the source
    had finer timestamps) in the same row order (:func:`_reference_frame`). The result matches the
    reference's only with the same numpy on the same CPU class (docs/reference.md).
    """
    frame = _reference_frame(raw, rows)
    if raw.source_times is not None:
        times = raw.source_times
    else:
        times = raw.interactions[schema.TIMESTAMP].to_numpy()
    return frame[np.argsort(times[frame], kind="quicksort")]


def tie_keys(raw: RawDataset, filtered: Filtered, options: PrepareOptions) -> np.ndarray:
    """(K,) a key per kept row that orders one user's interactions with equal timestamps.

    ``stable``: the row's position in the source files. ``random``: a random permutation of the
    rows drawn with ``tie_seed``. ``reference``: the row's position in :func:`reference_order` of
    the rows at the reference's sort point (``filtered.before_user_drop``); since that order
    sorts by time, sorting by (user, timestamp, key) then gives the reference's sequences.
    """
    kept = np.flatnonzero(filtered.kept)
    if options.tie_order == "stable":
        return kept
    n = raw.interactions.height
    if options.tie_order == "random":
        return np.random.default_rng(options.tie_seed).permutation(n)[kept]
    rank = np.full(n, -1, dtype=np.int64)
    order = reference_order(raw, np.flatnonzero(filtered.before_user_drop))
    rank[order] = np.arange(order.shape[0])
    return rank[kept]


def prepare_raw(
    raw: RawDataset,
    options: PrepareOptions,
    out: Path,
    file_records: Callable[[], list[dict[str, Any]]] | None = None,
) -> None:
    """Filter ``raw``, choose its items and the order of ties, and write the prepared directory.

    Args:
        raw: the source's canonical tables.
        options: filtering and ordering options.
        out: output directory.
        file_records: see :func:`~hstu_blair.data.dataset.write_dataset`.
    """
    options = options.for_source(raw.source)
    filtered = filter_rows(raw, options)
    kept = raw.interactions.filter(pl.Series(filtered.kept))
    write_dataset(
        raw,
        kept,
        filtered.removed,
        options.to_dict(),
        out,
        file_records=file_records,
        universe=item_universe(raw, filtered, options),
        tie_keys=tie_keys(raw, filtered, options),
    )


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
        prepare_raw(raw, options, Path(out), file_records=records.result)
    finally:
        hasher.shutdown(wait=False, cancel_futures=True)
    log.info("%s: prepared in %.1fs -> %s", raw.name, time.perf_counter() - started, out)
    return SequenceData.load(out)
