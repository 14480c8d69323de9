"""Batch export: the top ``k`` of every user to a Parquet or CSV file, streamed batch by batch.

    rec.export_recommendations("recs.parquet", k=20)   # -> ExportSummary(users=..., rows=..., ...)

The file is in long format, one row per (user, recommended item): ``user_id``, ``rank`` (1 =
best), ``item_id``, ``score``, ``title``. Users are the training data's, then those known only
from the store's events (sorted), or the ids given. Memory is bounded by one batch: each batch is
prepared, answered in one model call (more when a heavy history would make its exclusion matrix
large: :func:`model_calls`) and written (a Parquet row group, or CSV lines) before the next, and
the memory it freed is given back to the OS (glibc's ``malloc_trim``; without it the heap kept
freed batch temporaries and the RSS crept up with the users exported). Users without any history
are skipped and counted. The file is written under a temporary name beside ``path`` and renamed
when complete.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from tqdm import tqdm

from hstu_blair.errors import UnknownIdError
from hstu_blair.serving.errors import ServingError
from hstu_blair.serving.item_filter import FilterLike
from hstu_blair.serving.queries import PreparedQuery, Query, Recommendations
from hstu_blair.serving.query_builder import build_query
from hstu_blair.training.allocator import release_freed_memory

if TYPE_CHECKING:
    from hstu_blair.serving.recommender import Recommender

FORMATS = (".parquet", ".csv")
"""File suffixes :func:`export_recommendations` writes (the suffix picks the format)."""

SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("rank", pa.int32()),
        ("item_id", pa.string()),
        ("score", pa.float64()),
        ("title", pa.string()),
    ]
)
"""The exported table's columns."""

HISTORY_CELLS = 256
"""History items per user of a batch that one model call's exclusion matrix may hold (see
:func:`model_calls`)."""


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote: ``users`` with recommendations, ``skipped`` users without any
    history, ``rows`` written, and the wall time."""

    path: Path
    users: int
    skipped: int
    rows: int
    seconds: float

    @property
    def users_per_s(self) -> float:
        """Users answered (written or skipped) per second."""
        return (self.users + self.skipped) / max(self.seconds, 1e-9)


def check_format(path: str | Path) -> Path:
    """``path`` as a ``Path`` if its suffix names a format we write.

    Raises:
        ServingError: another suffix (the message names the path).
    """
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise ServingError(f"{path}: cannot tell the format from the suffix; use .parquet or .csv")
    return path


def read_user_ids(path: str | Path) -> list[str]:
    """User ids from a text file, one per line (blank lines ignored, surrounding spaces removed)."""
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def all_user_ids(rec: Recommender) -> list[str]:
    """The training data's user ids, then the users known only from the store's events (sorted)."""
    training = [str(u) for u in rec.run.data.sequences["user_id"].to_list()]
    known = set(training)
    return training + sorted(u for u in rec.store.event_users() if u not in known)


def prepare_users(
    rec: Recommender, user_ids: Sequence[str], k: int, exclude_seen: bool, allowed: np.ndarray | None = None
) -> tuple[list[PreparedQuery], list[str]]:
    """The prepared queries of the users that have a history, and their ids (the rest left out);
    ``allowed``: the (N+1,) mask of the items a filter allows (None: all)."""
    prepared, kept = [], []
    for user_id in user_ids:
        try:
            query = Query(user_id=user_id, k=k, exclude_seen=exclude_seen)
            prepared.append(build_query(query, rec.catalogue, rec.user_history, allowed))
        except (UnknownIdError, ServingError):  # no history at all (or none left in the catalogue)
            continue
        kept.append(user_id)
    return prepared, kept


def to_table(user_ids: Sequence[str], results: Sequence[Recommendations]) -> pa.Table:
    """The long-format rows of one batch."""
    columns: dict[str, list[Any]] = {name: [] for name in SCHEMA.names}
    for user_id, result in zip(user_ids, results):
        for rank, r in enumerate(result, start=1):
            columns["user_id"].append(user_id)
            columns["rank"].append(rank)
            columns["item_id"].append(r.item_id)
            columns["score"].append(r.score)
            columns["title"].append(r.title)
    return pa.table(columns, schema=SCHEMA)


def model_calls(prepared: Sequence[PreparedQuery], batch_size: int) -> list[slice]:
    """Consecutive groups of ``prepared``, each answered by one model call. A call's exclusion
    matrix is (users, longest history among them): a batch holding a heavy user is cut so that
    users x longest history stays within ``batch_size`` x :data:`HISTORY_CELLS` (a user whose
    history alone is longer is a call of one), so memory does not grow with the heaviest history
    the export meets (one user of 1,270 items made the (1024, 1270) int64 matrix of its batch)."""
    budget = max(batch_size, 1) * HISTORY_CELLS
    calls, start, longest = [], 0, 0
    for i, p in enumerate(prepared):
        wider = max(longest, p.ids.size)
        if i > start and (i - start + 1) * wider > budget:
            calls.append(slice(start, i))
            start, wider = i, p.ids.size
        longest = wider
    if start < len(prepared):
        calls.append(slice(start, len(prepared)))
    return calls


def write_batch(
    rec: Recommender,
    writer: pq.ParquetWriter | pacsv.CSVWriter,
    user_ids: Sequence[str],
    k: int,
    exclude_seen: bool,
    allowed: np.ndarray | None,
) -> tuple[int, int]:
    """Answer one batch of users (:func:`model_calls`) and write their rows; returns (users written,
    rows written). Everything the batch allocated is garbage when it returns."""
    prepared, kept = prepare_users(rec, user_ids, k, exclude_seen, allowed)
    results = [
        r for call in model_calls(prepared, len(user_ids)) for r in rec.recommend_batch(prepared[call])
    ]
    table = to_table(kept, results)
    writer.write_table(table)
    return len(kept), table.num_rows


def open_writer(path: Path, suffix: str) -> pq.ParquetWriter | pacsv.CSVWriter:
    """An incremental writer of :data:`SCHEMA` rows to ``path``: Parquet or CSV by ``suffix``."""
    if suffix.lower() == ".parquet":
        return pq.ParquetWriter(path, SCHEMA)
    return pacsv.CSVWriter(path, SCHEMA)


def export_recommendations(
    rec: Recommender,
    path: str | Path,
    k: int = 20,
    batch_size: int = 1024,
    exclude_seen: bool = True,
    users: Sequence[str] | None = None,
    filter: FilterLike = None,
    progress: bool = True,
) -> ExportSummary:
    """Write the top ``k`` items of every user (or of ``users``) to ``path``, batch by batch.

    Args:
        rec: the recommender.
        path: a ``.parquet`` or ``.csv`` file (replaced when the export completes).
        k: items per user.
        batch_size: users per batch: per model call (fewer beside a heavy history, see
            :func:`model_calls`) and per Parquet row group.
        exclude_seen: never recommend an item of a user's history.
        users: these user ids only, in this order (default: :func:`all_user_ids`).
        filter: only items it allows (an :class:`~hstu_blair.serving.item_filter.ItemFilter` or
            its JSON form; the mask is computed once for the whole export).
        progress: a progress bar (rate and ETA) on stderr.

    Returns:
        An :class:`ExportSummary`.

    Raises:
        ServingError: a suffix other than .parquet / .csv, ``k < 1``, ``batch_size < 1`` or a
            malformed filter.
    """
    path = check_format(path)
    if k < 1 or batch_size < 1:
        raise ServingError(f"k and batch_size must be at least 1, got {k} and {batch_size}")
    started = time.perf_counter()
    rec.sync()
    allowed = rec.allowed(filter)  # (N+1,) or None
    user_ids = list(users) if users is not None else all_user_ids(rec)
    part = path.with_name(path.name + ".part")
    written = rows = 0
    writer = open_writer(part, path.suffix)
    try:
        with tqdm(total=len(user_ids), unit="user", file=sys.stderr, disable=not progress) as bar:
            for start in range(0, len(user_ids), batch_size):
                batch = user_ids[start : start + batch_size]
                users_done, rows_done = write_batch(rec, writer, batch, k, exclude_seen, allowed)
                written, rows = written + users_done, rows + rows_done
                release_freed_memory()  # the batch's temporaries, freed, back to the OS
                bar.update(len(batch))
    except BaseException:
        writer.close()
        part.unlink(missing_ok=True)  # no half-written file left behind
        raise
    writer.close()
    part.replace(path)
    seconds = time.perf_counter() - started
    return ExportSummary(path, written, len(user_ids) - written, rows, seconds)
