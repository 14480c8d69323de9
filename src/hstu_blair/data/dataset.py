"""The prepared-dataset directory: writing it, and :class:`SequenceData`, its in-memory form.

Directory contract (``FORMAT_VERSION`` 2, documented in docs/dataset-format.md):

- ``manifest.json``: counts, filter report (``removed``), options, input file hashes, versions
- ``items.parquet``: ``item_idx`` 1..n, ``item_id`` (external), ``title``, ``text``
- ``sequences.parquet``: ``user_idx`` 0..m-1, ``user_id`` (external), lists ``item_idx``,
  ``timestamp`` (s), ``rating``
- ``item_attributes.parquet`` (optional): ``item_idx`` and one column per item attribute, listed
  with their dtypes under the manifest's ``item_attributes`` (:mod:`hstu_blair.data.item_attributes`)
- ``reviews.parquet`` (optional): ``user_id``, ``item_idx``, ``text``
- ``bad_lines.jsonl`` (only when ``skip_bad_lines`` skipped lines): one JSON object per skipped line,
  ``file``, ``line``, ``field``, ``reason``; the manifest's ``bad_lines`` gives its count and the counts
  by problem (``by_problem``: ``<file>:<field>``)

Version 1 directories (``raw_id``, ``raw_user_id``, ``item_ids``... columns) are read too.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import platform
from collections import Counter
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from hstu_blair._version import __version__
from hstu_blair.data import schema
from hstu_blair.data.item_attributes import ATTRIBUTES, read_item_attributes, write_item_attributes
from hstu_blair.data.manifest import file_record, sha256_file, versions, write_json_atomic
from hstu_blair.data.sources.base import RawDataset
from hstu_blair.data.splits import Split, make_split, make_temporal_split
from hstu_blair.errors import ConfigError, DataFormatError, UnknownIdError

MANIFEST = "manifest.json"
ITEMS = "items.parquet"
SEQUENCES = "sequences.parquet"
REVIEWS = "reviews.parquet"
BAD_LINES = "bad_lines.jsonl"


def _sorted_ids(values: pl.Series) -> pl.Series:
    """Unique raw ids in a stable order: numerically when all are integers, else as strings."""
    uniq = values.unique()
    as_int = uniq.str.to_integer(strict=False)
    if as_int.null_count() == 0:
        return uniq.gather(as_int.arg_sort())
    return uniq.sort()


def _vocab(values: pl.Series, index_name: str, start: int) -> pl.DataFrame:
    """External ids -> dense indices start, start+1, ... in :func:`_sorted_ids` order."""
    ids = _sorted_ids(values)
    return pl.DataFrame({values.name: ids, index_name: pl.int_range(start, start + ids.len(), eager=True)})


def _tie_report(sequences_input: pl.DataFrame, options: dict[str, Any]) -> dict[str, Any]:
    """The manifest's ``ties``: how tie order was chosen, and how many interactions it decided."""
    groups = sequences_input.group_by(schema.USER_IDX, schema.TIMESTAMP).len().filter(pl.col("len") > 1)
    order = options.get("tie_order", "stable")
    report: dict[str, Any] = {
        "order": order,
        "groups": groups.height,
        "interactions": int(groups["len"].sum()) if groups.height else 0,
    }
    if order == "random":
        report["seed"] = options.get("tie_seed", 0)
    if order == "reference":  # numpy's quicksort decides the order: record what ran it
        report.update(numpy=np.__version__, machine=platform.machine(), simd=_simd_features())
    return report


def _simd_features() -> list[str]:
    """The SIMD extensions numpy found on this CPU (its sorts dispatch on them), from
    ``numpy.show_config``; empty when numpy does not report them."""
    simd = np.show_config(mode="dicts").get("SIMD Extensions", {})
    return [str(name) for name in (*simd.get("baseline", ()), *simd.get("found", ()))]


def _vocabularies(kept: pl.DataFrame, universe: pl.Series | None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(item vocabulary, indices 1..n, of the kept items and ``universe``; user vocabulary, 0..m-1)."""
    item_ids = kept[schema.ITEM_ID] if universe is None else pl.concat([universe, kept[schema.ITEM_ID]])
    item_vocab = _vocab(item_ids.alias(schema.ITEM_ID), schema.ITEM_IDX, 1).with_columns(
        pl.col(schema.ITEM_IDX).cast(pl.Int32)
    )
    user_vocab = _vocab(kept[schema.USER_ID], schema.USER_IDX, 0).with_columns(
        pl.col(schema.USER_IDX).cast(pl.Int32)
    )
    return item_vocab, user_vocab


def _write_items(
    raw: RawDataset, item_vocab: pl.DataFrame, removed: dict[str, dict[str, int]], out: Path
) -> pl.DataFrame:
    """``items.parquet``: the vocabulary's items with the source's title and text ("" where none);
    counts the catalogue's items that got no index under ``removed.catalogue``."""
    if raw.items is not None:
        catalogue = raw.items.unique(subset=[schema.ITEM_ID], keep="first", maintain_order=True)
        unused = catalogue.height - catalogue.join(item_vocab, on=schema.ITEM_ID, how="semi").height
        removed.setdefault("catalogue", {})["items_without_interactions"] = unused
        items = item_vocab.join(catalogue, on=schema.ITEM_ID, how="left")
    else:
        items = item_vocab.with_columns(
            pl.lit(None, pl.String).alias(schema.TITLE), pl.lit(None, pl.String).alias(schema.TEXT)
        )
    items = (
        items.with_columns(pl.col(schema.TITLE).fill_null(""), pl.col(schema.TEXT).fill_null(""))
        .sort(schema.ITEM_IDX)
        .select(schema.ITEM_IDX, schema.ITEM_ID, schema.TITLE, schema.TEXT)
    )
    items = schema.conform(items, schema.PREPARED_ITEMS_SCHEMA, "items")
    items.write_parquet(out / ITEMS)
    return items


def _write_sequences(
    kept: pl.DataFrame,
    item_vocab: pl.DataFrame,
    user_vocab: pl.DataFrame,
    tie_keys: np.ndarray,
    options: dict[str, Any],
    out: Path,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """``sequences.parquet``: each user's interactions by (timestamp, tie key); returns the
    sequences and the manifest's tie report."""
    assert tie_keys.shape == (kept.height,), "one tie key per kept interaction"
    ordered = (
        kept.with_columns(pl.Series("_tie", tie_keys, dtype=pl.Int64))
        .join(item_vocab, on=schema.ITEM_ID, how="left")
        .join(user_vocab, on=schema.USER_ID, how="left")
        .sort([schema.USER_IDX, schema.TIMESTAMP, "_tie"])
    )
    ties = _tie_report(ordered, options)
    sequences = ordered.group_by(schema.USER_IDX, maintain_order=True).agg(
        pl.col(schema.USER_ID).first(),
        pl.col(schema.ITEM_IDX),
        pl.col(schema.TIMESTAMP),
        pl.col(schema.RATING),
    )
    sequences = schema.conform(sequences, schema.SEQUENCES_SCHEMA, "sequences")
    sequences.write_parquet(out / SEQUENCES)
    return sequences, ties


def _write_reviews(raw: RawDataset, item_vocab: pl.DataFrame, out: Path) -> int:
    """``reviews.parquet`` (reviews of kept items with non-blank text, in source order); their count.

    Streamed to the file: the text column (GBs for Steam) is never copied by a join, a strip or a
    filter in memory. A stale file is removed when there are no reviews.
    """
    if raw.reviews is None or not raw.reviews.height:
        (out / REVIEWS).unlink(missing_ok=True)
        return 0
    item_idx = pl.col(schema.ITEM_ID).replace_strict(
        item_vocab[schema.ITEM_ID], item_vocab[schema.ITEM_IDX], default=None, return_dtype=pl.Int32
    )
    (
        raw.reviews.lazy()
        .select(schema.USER_ID, item_idx.alias(schema.ITEM_IDX), schema.TEXT)
        .filter(pl.col(schema.ITEM_IDX).is_not_null() & pl.col(schema.TEXT).str.contains(r"\S"))
        .sink_parquet(out / REVIEWS)
    )
    return pl.scan_parquet(out / REVIEWS).select(pl.len()).collect().item()


def _write_bad_lines(raw: RawDataset, out: Path) -> dict[str, Any] | None:
    """``bad_lines.jsonl``: every line skipped with ``skip_bad_lines``, one JSON object each (``file``,
    ``line``, ``field``, ``reason``); the manifest's ``bad_lines`` entry (its count, file, and counts by
    ``<file>:<field>``), or ``None`` (stale file removed)."""
    if not raw.bad_lines:
        (out / BAD_LINES).unlink(missing_ok=True)
        return None
    with open(out / BAD_LINES, "w", encoding="utf-8") as fh:
        for record in raw.bad_lines:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    problems = Counter(f"{r['file']}:{r['field']}" for r in raw.bad_lines)
    return {"count": len(raw.bad_lines), "file": BAD_LINES, "by_problem": dict(sorted(problems.items()))}


def write_dataset(
    raw: RawDataset,
    kept: pl.DataFrame,
    removed: dict[str, dict[str, int]],
    options: dict[str, Any],
    out: Path,
    file_records: Callable[[], list[dict[str, Any]]] | None = None,
    *,
    universe: pl.Series | None = None,
    tie_keys: np.ndarray | None = None,
) -> None:
    """Assign dense ids, build chronological sequences and write the prepared directory.

    Item indices are 1..n (0 is padding) and user indices 0..m-1, both in external-id order
    (numeric when the ids are all integers). Within a user, interactions are ordered by timestamp,
    ties by ``tie_keys`` (default: position in the source files, a stable, deterministic order).

    Args:
        file_records: returns the manifest's records (name, size, sha256) of ``raw.files``; called
            last, so the caller can hash the inputs in the background meanwhile. Default: hash here.
        universe: external ids of every item to write (a superset of the kept items); the items
            without a kept interaction are in ``items.parquet`` but in no sequence, and counted as
            ``num_items_without_interactions``. Default: the kept items only.
        tie_keys: (len(kept),) integers ordering one user's interactions with equal timestamps.
    """
    out.mkdir(parents=True, exist_ok=True)
    item_vocab, user_vocab = _vocabularies(kept, universe)
    items = _write_items(raw, item_vocab, removed, out)
    tie_keys = np.arange(kept.height) if tie_keys is None else tie_keys
    sequences, ties = _write_sequences(kept, item_vocab, user_vocab, tie_keys, options, out)
    n_reviews = _write_reviews(raw, item_vocab, out)
    attributes = write_item_attributes(raw.item_attributes, item_vocab, out)
    bad_lines = _write_bad_lines(raw, out)
    n_users, n_items, n_inter = sequences.height, items.height, kept.height
    manifest = {
        "format_version": schema.FORMAT_VERSION,
        "name": raw.name,
        "source": raw.source,
        "num_users": n_users,
        "num_items": n_items,
        "num_interactions": n_inter,
        "num_items_without_interactions": n_items - kept[schema.ITEM_ID].n_unique(),
        "num_reviews": n_reviews,
        "items_with_empty_text": int((items[schema.TEXT].str.strip_chars() == "").sum()),
        "density": n_inter / max(1, n_users * n_items),
        "timestamp_unit": "s",
        "ties": ties,
        "removed": removed,
        **({"bad_lines": bad_lines} if bad_lines else {}),
        **({"item_attributes": attributes} if attributes else {}),
        "info": raw.info,
        "options": options,
        "files": file_records() if file_records else [file_record(Path(p)) for p in raw.files],
        "outputs": {
            name: sha256_file(out / name)
            for name in (ITEMS, SEQUENCES, REVIEWS, ATTRIBUTES)
            if (out / name).exists()
        },
        "package_version": __version__,
        "versions": versions(),
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    write_json_atomic(out / MANIFEST, manifest)


class SequenceData:
    """A prepared dataset in memory: item catalogue, per-user chronological sequences, id maps.

    Sequences are held flat (CSR layout) for fast batching: user ``u``'s item indices are
    ``item_seq[offsets[u]:offsets[u+1]]`` with ``time_seq``/``rating_seq`` alongside.

    Use :meth:`load` (or :func:`load_dataset`) to read a directory written by ``prepare``.
    """

    def __init__(
        self, path: Path, manifest: dict[str, Any], items: pl.DataFrame, sequences: pl.DataFrame
    ) -> None:
        self.path = path
        self.manifest = manifest
        self.items = items
        self.sequences = sequences
        lists = sequences[schema.ITEM_IDX]
        lengths = lists.list.len().to_numpy().astype(np.int64)
        self.offsets = np.zeros(lengths.shape[0] + 1, dtype=np.int64)
        np.cumsum(lengths, out=self.offsets[1:])
        self.item_seq = lists.explode().to_numpy().astype(np.int32)
        self.time_seq = sequences[schema.TIMESTAMP].explode().to_numpy().astype(np.int64)
        self.rating_seq = sequences[schema.RATING].explode().to_numpy().astype(np.float32)
        if lengths.size and lengths.min() == 0:
            raise DataFormatError(path / SEQUENCES, "a user has an empty sequence", field=schema.ITEM_IDX)

    @classmethod
    def load(cls, path: str | Path) -> SequenceData:
        """Read a prepared-dataset directory (format version 2, or 1 renamed on load).

        Raises:
            DataFormatError: a file is missing, or the format version is not supported.
        """
        path = Path(path)
        for name in (MANIFEST, ITEMS, SEQUENCES):
            if not (path / name).exists():
                raise DataFormatError(
                    path / name, "missing: not a prepared-dataset directory (run `hstu-blair prepare`)"
                )
        manifest = json.loads((path / MANIFEST).read_text())
        version = manifest.get("format_version")
        if version not in schema.READABLE_VERSIONS:
            raise DataFormatError(
                path / MANIFEST,
                f"format_version {version!r} is not supported (this version reads "
                f"{', '.join(map(str, schema.READABLE_VERSIONS))}); prepare the dataset again",
                field="format_version",
            )
        items = pl.read_parquet(path / ITEMS)
        sequences = pl.read_parquet(path / SEQUENCES)
        if version == 1:
            items, sequences = (
                schema.rename_legacy(items, "items"),
                schema.rename_legacy(sequences, "sequences"),
            )
        return cls(path, manifest, items, sequences)

    # ---- sizes -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The dataset's name (the manifest's, else the folder's)."""
        return str(self.manifest.get("name", self.path.name))

    @property
    def num_users(self) -> int:
        """Number of users (one sequence each)."""
        return int(self.offsets.shape[0] - 1)

    @property
    def num_items(self) -> int:
        """Number of real items; valid item indices are 1..num_items (0 is padding)."""
        return int(self.items.height)

    @property
    def num_interactions(self) -> int:
        """Number of interactions over all sequences."""
        return int(self.item_seq.shape[0])

    @property
    def lengths(self) -> np.ndarray:
        """(U,) sequence length of each user."""
        return np.diff(self.offsets)

    @cached_property
    def data_hash(self) -> str:
        """sha256 over the prepared tables (identifies the exact data a model was trained on)."""
        h = hashlib.sha256()
        for name in sorted(self.manifest.get("outputs", {})):
            h.update(f"{name}:{self.manifest['outputs'][name]}".encode())
        return h.hexdigest()

    # ---- access ------------------------------------------------------------------------
    def user_items(self, user_idx: int) -> np.ndarray:
        """Chronological item indices of user ``user_idx``."""
        return self.item_seq[self.offsets[user_idx] : self.offsets[user_idx + 1]]

    def user_times(self, user_idx: int) -> np.ndarray:
        """Timestamps (seconds) of user ``user_idx``'s interactions, aligned with :meth:`user_items`."""
        return self.time_seq[self.offsets[user_idx] : self.offsets[user_idx + 1]]

    def split(
        self,
        protocol: str = "loo",
        cutoff: str | float | None = None,
        valid_cutoff: str | float | None = None,
        temporal_targets: str = "next",
    ) -> Split:
        """The ``loo`` (leave-one-out with validation), ``reference`` or ``temporal`` split (see
        :mod:`hstu_blair.data.splits`); ``cutoff``, ``valid_cutoff`` and ``temporal_targets``
        configure the temporal one.

        Raises:
            ConfigError: unknown protocol, or a temporal split without a cutoff or without targets.
        """
        if protocol != "temporal":
            return make_split(self.lengths, protocol)
        if cutoff is None:
            raise ConfigError("the temporal protocol needs data.cutoff (a date, unix seconds or a quantile)")
        return make_temporal_split(self.offsets, self.time_seq, cutoff, valid_cutoff, temporal_targets)  # type: ignore[arg-type]

    # ---- external ids ----------------------------------------------------------------------
    @cached_property
    def item_ids(self) -> np.ndarray:
        """(n+1,) external item id of each item index; index 0 (padding) holds ``None``."""
        return np.array([None, *self.items[schema.ITEM_ID].to_list()], dtype=object)

    @cached_property
    def _item_idx(self) -> dict[str, int]:
        return {item_id: i for i, item_id in enumerate(self.items[schema.ITEM_ID].to_list(), start=1)}

    @cached_property
    def _user_idx(self) -> dict[str, int]:
        return {user_id: i for i, user_id in enumerate(self.sequences[schema.USER_ID].to_list())}

    def item_indices(self, item_ids: Sequence[str]) -> np.ndarray:
        """Item indices of external item ids.

        Raises:
            UnknownIdError: some ids are not in the catalogue (all of them are named).
        """
        index = self._item_idx
        unknown = [str(i) for i in item_ids if str(i) not in index]
        if unknown:
            raise UnknownIdError("item", unknown)
        return np.array([index[str(i)] for i in item_ids], dtype=np.int64)

    def user_index(self, user_id: str) -> int:
        """User index of an external user id.

        Raises:
            UnknownIdError: the user is not in the dataset.
        """
        try:
            return self._user_idx[str(user_id)]
        except KeyError:
            raise UnknownIdError("user", [str(user_id)]) from None

    @property
    def texts(self) -> list[str]:
        """Item texts in item-index order (element 0 = item 1)."""
        return self.items[schema.TEXT].to_list()

    def item_attributes(self) -> pl.DataFrame | None:
        """The ``item_idx`` + attribute columns table (None: the dataset has no item attributes)."""
        return read_item_attributes(self.path, self.manifest)

    def reviews(self) -> pl.DataFrame | None:
        """The optional (user_id, item_idx, text) review/tag table, if the source had one."""
        p = self.path / REVIEWS
        if not p.exists():
            return None
        reviews = pl.read_parquet(p)
        return (
            schema.rename_legacy(reviews, "reviews") if self.manifest.get("format_version") == 1 else reviews
        )

    def __repr__(self) -> str:
        return (
            f"SequenceData({self.name!r}, users={self.num_users:,}, items={self.num_items:,}, "
            f"interactions={self.num_interactions:,})"
        )


def load_dataset(path: str | Path) -> SequenceData:
    """Load a prepared-dataset directory (see :class:`SequenceData`)."""
    return SequenceData.load(path)
