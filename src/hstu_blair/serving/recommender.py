"""``Recommender``: a trained run behind an API of item ids (no HTTP in here).

    rec = Recommender.load("runs/ml-hstu")
    rec.recommend(["1", "50", "260"], k=10)      # -> [Recommendation(item_id, score, title), ...]
    rec.recommend_user("42")                     # the user's full known history
    rec.add_item("new-1", text="...", title="")  # cold start through the text path
    rec.sync()                                   # items other processes added since

Ids that cross this API are external ids (``item_id``, ``user_id``); the model's item indices
(``item_idx``) stay inside. A query is prepared (ids mapped, history truncated to the most recent
``max_len`` items, timestamps
laid out as in training: column ``L`` holds the query time) and then answered in a batch: one
encoder call for all queries of a batch, then one top-k search over the item vectors.

Added items are kept in the run directory's item log (``added_items.jsonl``, see
:mod:`hstu_blair.serving.item_log`), written durably before ``add_items`` returns: loading the
run replays it, and every recommender on the same run directory (other processes included)
picks up the others' items in :meth:`Recommender.sync`, assigning the same indices in the same
order. ``persist=False`` keeps added items in memory only.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from hstu_blair.data import schema
from hstu_blair.errors import DataFormatError, HstuBlairError, UnknownIdError
from hstu_blair.models.item_embedding import ItemEmbedding
from hstu_blair.serving.index import ItemIndex, build_index, index_recall
from hstu_blair.serving.item_log import ITEM_LOG, ItemLog, ItemRecord
from hstu_blair.text.encoders import TextEncoder
from hstu_blair.text.registry import build_text_encoder, encoder_for_store
from hstu_blair.training.batching import QueryBatch, query_batch
from hstu_blair.training.run_dir import TrainedModel, load_trained

_LOG = logging.getLogger(__name__)

FUSIONS_FOR_NEW_ITEMS = ("gated", "residual", "text")
"""Fusions measured to rank an item with a zero ID part by its text (docs/results.md §3-4); adding
items to a run of another fusion (``sum``) logs a warning."""

TIME_LIMIT = 2**40
"""Timestamps (seconds) must lie in [-TIME_LIMIT, TIME_LIMIT] so time differences cannot overflow."""


class ServingError(HstuBlairError, ValueError):
    """A query or an item the recommender cannot serve (empty history, bad timestamps, ...)."""


class DuplicateItemError(ServingError):
    """New item ids that are already in the catalogue (``ids``)."""

    def __init__(self, ids: list[str]) -> None:
        self.ids = ids
        super().__init__(f"item ids must be new; already in the catalogue: {ids}")


class ItemLogError(ServingError):
    """The run directory's item log cannot be written or read back (a read-only run directory, a
    full disk, a corrupt record): the server's fault, not the request's."""


__all__ = [
    "DuplicateItemError",
    "ItemLogError",
    "PreparedQuery",
    "Query",
    "Recommendation",
    "Recommendations",
    "Recommender",
    "ServingError",
    "UnknownIdError",
    "check_item_id",
]


@dataclass(frozen=True)
class Recommendation:
    """One recommended item: external id, score (cosine of query and item vector), title."""

    item_id: str
    score: float
    title: str


class Recommendations(list):
    """A best-first ``list[Recommendation]``; ``skipped`` holds the unknown history ids that
    ``skip_unknown=True`` left out (in input order)."""

    def __init__(self, items: Sequence[Recommendation] = (), skipped: Sequence[str] = ()) -> None:
        super().__init__(items)
        self.skipped: list[str] = list(skipped)


@dataclass(frozen=True)
class Query:
    """One recommendation request: a ``history`` of item ids (oldest first) or a known ``user_id``.

    ``timestamps``: seconds, one per history item (default: 1 s apart, ending now).
    ``query_time``: when the recommendation is for (default: the last history timestamp).
    ``skip_unknown``: leave unknown history ids out instead of raising ``UnknownIdError``.
    """

    history: Sequence[str] | None = None
    user_id: str | None = None
    timestamps: Sequence[int] | None = None
    query_time: int | None = None
    k: int = 10
    exclude_seen: bool = True
    skip_unknown: bool = False


@dataclass(frozen=True)
class PreparedQuery:
    """A validated query in item indices, ready for a batch (see :meth:`Recommender.prepare`).

    The history is whole: the model reads its last ``max_len`` items, and with ``exclude_seen``
    none of its items is recommended (``batching.query_batch`` decides both, as in evaluation)."""

    ids: np.ndarray  # (L,) int64 item indices (item_idx), oldest first
    times: np.ndarray  # (L,) int64 seconds
    query_time: int
    exclude_seen: bool
    k: int
    skipped: tuple[str, ...] = ()


def append_text_items(items: ItemEmbedding, text_rows: torch.Tensor) -> None:
    """``items.add_text_items`` with serving errors (an ID-only run cannot add items)."""
    if items.text is None:
        raise _id_only_error(items.fusion_name)
    try:
        items.add_text_items(text_rows)
    except ValueError as exc:
        raise ServingError(f"{exc}: use the encoder the run was trained with") from None


def _id_only_error(fusion: str) -> ServingError:
    return ServingError(
        f"this run's model uses fusion {fusion!r} (ID-only): it has no text path, so items cannot "
        "be added at run time; train with model.fusion = residual (trained for it), text, sum or gated"
    )


def _build_text_encoder(run: TrainedModel, device: str) -> TextEncoder:
    """The encoder that made the run's text matrix: rebuilt (and checked) from the store's recorded
    fingerprint, else built by the encoder name the store recorded."""
    store = run.info["text_store"]
    if store.get("fingerprint"):
        return encoder_for_store(store["path"], device=device)
    return build_text_encoder(store["encoder"], device=device)


class Recommender:
    """Recommendations from a trained run, in external ids.

    Args:
        run: a loaded run (see :func:`hstu_blair.training.run_dir.load_trained`).
        encoder: text encoder for :meth:`add_item` (default: the encoder that wrote the run's
            embedding store, built on first use).
        index: ``exact`` (brute force, default) or a FAISS index for large catalogues
            (``faiss`` = ``faiss-ivf``, ``faiss-hnsw``).
        persist: keep added items in the run directory's item log (``added_items.jsonl``), and
            replay it now (default). ``False``: neither read nor write it; added items live in
            memory only (tests, notebooks).

    Raises:
        DataFormatError: the item log has a corrupt record (the message names file and line).
    """

    def __init__(
        self,
        run: TrainedModel,
        encoder: TextEncoder | None = None,
        index: str = "exact",
        persist: bool = True,
    ) -> None:
        self.run = run
        self.model = run.model.eval()
        self.max_len = run.arch.max_len
        self.device = next(self.model.parameters()).device
        self.index_name = index
        self._encoder = encoder
        self._lock = threading.RLock()
        self._warned_new_items = False
        self._table: torch.Tensor | None = None  # the encoder's input vectors, see _input_table
        self.model_calls = 0
        """Encoder forward passes so far (one per batch); the HTTP layer reports it."""
        items = run.data.items
        self._item_ids: list[str] = ["", *items[schema.ITEM_ID].to_list()]  # index 0 = padding
        self._titles: list[str] = ["", *items[schema.TITLE].to_list()]
        self._texts: list[str] = ["", *items[schema.TEXT].to_list()]
        self._item_idx: dict[str, int] = {item_id: i for i, item_id in enumerate(self._item_ids) if i}
        self._lower_titles = [t.lower() for t in self._titles]
        with torch.inference_mode():
            self._vectors = self.model.item_vectors().float()  # (N+1, D)
        self._index: ItemIndex = build_index(index, self._vectors)
        self._trained_items = self.num_items
        self.item_log: ItemLog | None = None
        """The run's item log (None with ``persist=False`` or an ID-only model)."""
        if persist and self.can_add_items:
            assert self.model.items.text is not None
            self.item_log = ItemLog(Path(run.run_dir) / ITEM_LOG, dim=self.model.items.text.shape[1])
            with self.item_log.locked(exclusive=False):  # no writer active: a torn tail is torn
                self._catch_up(final=True)

    @classmethod
    def load(
        cls,
        run_dir: str | Path,
        checkpoint: Literal["best", "last"] = "best",
        device: str = "cpu",
        encoder: TextEncoder | None = None,
        index: str = "exact",
        persist: bool = True,
    ) -> Recommender:
        """Load a run directory written by ``train``, with the items added to it at run time.

        Args:
            run_dir: the run directory.
            checkpoint: ``best`` or ``last``.
            device: ``cpu``, ``cuda``, ``cuda:1``, ... or ``auto``.
            encoder: text encoder for :meth:`add_item` (default: the store's, built on first use).
            index: ``exact``, ``faiss`` (IVF), ``faiss-ivf`` or ``faiss-hnsw``.
            persist: replay and extend the run's item log (see :class:`Recommender`); a read-only
                run directory serves fine, only :meth:`add_item` fails there.

        Raises:
            ConfigError: not a run directory (or one with pickled checkpoints), or no weights.
            DataFormatError: the item log has a corrupt record (the message names file and line).
        """
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        run = load_trained(run_dir, checkpoint, device)
        return cls(run, encoder=encoder, index=index, persist=persist)

    # ---- catalogue ---------------------------------------------------------------------------
    @property
    def num_items(self) -> int:
        """Items that can be recommended (the trained catalogue plus added items)."""
        return len(self._item_ids) - 1

    @property
    def fusion(self) -> str:
        return self.model.items.fusion_name

    @property
    def can_add_items(self) -> bool:
        """Whether :meth:`add_item` works (the model has a text path: fusion text, sum or gated)."""
        return self.model.items.text is not None

    def has_item(self, item_id: str) -> bool:
        return str(item_id) in self._item_idx

    def item(self, item_id: str) -> dict[str, str]:
        """``{"item_id", "title", "text"}`` of an item.

        Raises:
            UnknownIdError: not in the catalogue.
        """
        idx = self._item_indices([item_id], skip_unknown=False)[0][0]
        return {"item_id": self._item_ids[idx], "title": self._titles[idx], "text": self._texts[idx]}

    def search_items(self, query: str, limit: int = 20) -> list[dict[str, str]]:
        """Items whose title or item id contains ``query`` (case-insensitive), title prefix matches
        first, then catalogue order; each ``{"item_id", "title"}``."""
        q = query.strip().lower()
        prefix, inside = [], []
        for i in range(1, len(self._item_ids)):
            title = self._lower_titles[i]
            if title.startswith(q) or self._item_ids[i].lower() == q:
                prefix.append(i)
            elif q in title or q in self._item_ids[i].lower():
                inside.append(i)
            if len(prefix) >= limit:
                break
        return [{"item_id": self._item_ids[i], "title": self._titles[i]} for i in (prefix + inside)[:limit]]

    def _item_indices(
        self, item_ids: Sequence[str], skip_unknown: bool
    ) -> tuple[list[int], list[int], list[str]]:
        """Indices of the known item ids, their positions in ``item_ids``, and the unknown item ids
        (raises unless ``skip_unknown``)."""
        known, positions, unknown = [], [], []
        for pos, item_id in enumerate(item_ids):
            idx = self._item_idx.get(str(item_id))
            if idx is None:
                unknown.append(str(item_id))
            else:
                known.append(idx)
                positions.append(pos)
        if unknown and not skip_unknown:
            raise UnknownIdError("item", unknown)
        return known, positions, unknown

    # ---- queries -----------------------------------------------------------------------------
    def prepare(self, query: Query) -> PreparedQuery:
        """Validate ``query`` and turn it into item indices (cheap; no model call).

        Raises:
            UnknownIdError: unknown item ids (unless ``skip_unknown``) or an unknown user id.
            ServingError: neither or both of history and user_id, an empty history, timestamps of
                the wrong length or range, or ``k < 1``.
        """
        self.sync()  # items other processes added to the run directory are known before ids are mapped
        if (query.history is None) == (query.user_id is None):
            raise ServingError("give exactly one of history (item ids) or user_id")
        if isinstance(query.k, bool) or not isinstance(query.k, int) or query.k < 1:
            raise ServingError(f"k must be a positive integer, got {query.k!r}")
        skipped: list[str] = []
        if query.user_id is not None:
            user = self._user(query.user_id)
            ids = self.run.data.user_items(user).astype(np.int64)  # (L,)
            times = self.run.data.user_times(user).astype(np.int64)  # (L,)
        else:
            if isinstance(query.history, str):
                raise ServingError("history must be a list of item ids, not one string")
            history = list(query.history)
            known, positions, skipped = self._item_indices(history, query.skip_unknown)
            ids = np.asarray(known, dtype=np.int64)  # (L,)
            times = self._history_times(len(history), query.timestamps, positions)  # (L,)
        if ids.size == 0:
            what = "all its item ids are unknown" if skipped else "it is empty"
            raise ServingError(f"cannot recommend from this history: {what}")
        query_time = (
            int(times[-1]) if query.query_time is None else _check_time(query.query_time, "query_time")
        )
        return PreparedQuery(ids, times, query_time, bool(query.exclude_seen), query.k, tuple(skipped))

    def _user(self, user_id: str) -> int:
        return self.run.data.user_index(str(user_id))

    def _history_times(self, n: int, timestamps: Sequence[int] | None, kept: list[int]) -> np.ndarray:
        """Times of the kept history positions: the given ones, or 1 s apart ending now."""
        if timestamps is None:
            now = int(time.time())
            return now - np.arange(len(kept) - 1, -1, -1, dtype=np.int64)
        if isinstance(timestamps, (str, bytes)) or len(timestamps) != n:
            raise ServingError(f"got {len(timestamps)} timestamps for {n} history items")
        checked = [_check_time(t, f"timestamps[{i}]") for i, t in enumerate(timestamps)]
        return np.asarray(checked, dtype=np.int64)[kept]

    def recommend(
        self,
        history: Sequence[str],
        k: int = 10,
        exclude_seen: bool = True,
        timestamps: Sequence[int] | None = None,
        query_time: int | None = None,
        skip_unknown: bool = False,
    ) -> Recommendations:
        """The ``k`` best items after a history of item ids (oldest first).

        Args:
            history: item ids; only the most recent ``data.max_len`` are encoded.
            k: list length (fewer when the catalogue runs out).
            exclude_seen: never recommend an item of the history (the whole history, not only
                the encoded part).
            timestamps: seconds, one per history item (default: 1 s apart, ending now).
            query_time: when the recommendation is for (default: the last history timestamp).
            skip_unknown: leave unknown ids out (listed in ``result.skipped``) instead of raising.

        Raises:
            UnknownIdError: unknown ids (unless ``skip_unknown``); ServingError: see :meth:`prepare`.
        """
        query = Query(history, None, timestamps, query_time, k, exclude_seen, skip_unknown)
        return self.recommend_batch([query])[0]

    def recommend_user(self, user_id: str, k: int = 10, exclude_seen: bool = True) -> Recommendations:
        """The ``k`` best items for a user of the training data, from their full known history
        (query time = their last interaction).

        Raises:
            UnknownIdError: the user is not in the dataset.
        """
        return self.recommend_batch([Query(user_id=str(user_id), k=k, exclude_seen=exclude_seen)])[0]

    def recommend_batch(
        self,
        queries: Sequence[Query | PreparedQuery | Sequence[str]] = (),
        users: Sequence[str] = (),
        k: int = 10,
        exclude_seen: bool = True,
        skip_unknown: bool = False,
    ) -> list[Recommendations]:
        """Answer many queries with one encoder call and one top-k search.

        Args:
            queries: each a ``Query``, a ``PreparedQuery`` or a plain history (list of item ids);
                ``Query`` objects carry their own k / exclude_seen / skip_unknown.
            users: user ids, answered after ``queries`` (as :meth:`recommend_user`).
            k, exclude_seen, skip_unknown: for plain histories and ``users``.

        Returns:
            One :class:`Recommendations` per query, in order (queries, then users).
        """
        self.sync()
        everything = [*queries, *(Query(user_id=str(u), k=k, exclude_seen=exclude_seen) for u in users)]
        prepared = [self._prepare_any(q, k, exclude_seen, skip_unknown) for q in everything]
        if not prepared:
            return []
        batch = self._collate(prepared)
        with self._lock, torch.inference_mode():
            self.model_calls += 1
            queries_vec = self.model.query_vectors(
                batch.ids, batch.timestamps, batch.lengths, self._input_table()
            ).float()  # (B, D)
            k = max(p.k for p in prepared)
            values, indices = self._index.search(queries_vec, k, batch.exclude)  # (B, k)
        return [
            self._results(v, i, p.k, p.skipped)
            for v, i, p in zip(values.tolist(), indices.tolist(), prepared)
        ]

    def _input_table(self) -> torch.Tensor:
        """The raw vectors of every item, the encoder's inputs (as evaluation computes them once),
        recomputed when items were added since (call under the lock, in inference mode)."""
        if self._table is None or self._table.shape[0] != self.model.items.num_items + 1:
            self._table = self.model.item_table()  # (N+1, D)
        return self._table

    def _prepare_any(
        self, q: Query | PreparedQuery | Sequence[str], k: int, exclude_seen: bool, skip_unknown: bool
    ) -> PreparedQuery:
        if isinstance(q, PreparedQuery):
            return q
        if not isinstance(q, Query):
            q = Query(history=q, k=k, exclude_seen=exclude_seen, skip_unknown=skip_unknown)
        return self.prepare(q)

    def encode(self, queries: Sequence[Query | PreparedQuery | Sequence[str]]) -> torch.Tensor:
        """(B, D) L2-normalised query vectors of histories or queries (what items are scored against)."""
        prepared = [self._prepare_any(q, 1, False, False) for q in queries]
        batch = self._collate(prepared)
        with self._lock, torch.inference_mode():
            self.model_calls += 1
            table = self._input_table()
            return self.model.query_vectors(
                batch.ids, batch.timestamps, batch.lengths, table
            ).float()  # (B, D)

    def index_recall(self, queries: Sequence[Query | PreparedQuery | Sequence[str]], k: int = 10) -> float:
        """Recall@k of this recommender's index against exact search on ``queries`` (1.0 for ``exact``):
        the mean fraction of each exact top-k that the index returns (no exclusions)."""
        with self._lock:
            return index_recall(self._index, self._vectors, self.encode(queries), k)

    def _collate(self, prepared: list[PreparedQuery]) -> QueryBatch:
        """The batch of queries, built by the same function evaluation uses (``query_batch``):
        the last ``max_len`` history items, the query time after them, the whole history excluded
        (rows with ``exclude_seen=False`` exclude nothing)."""
        sizes = np.array([p.ids.size for p in prepared], np.int64)  # (B,)
        ends = np.cumsum(sizes)
        batch = query_batch(
            np.concatenate([p.ids for p in prepared]),
            np.concatenate([p.times for p in prepared]),
            ends - sizes,
            ends,
            np.array([p.query_time for p in prepared], np.int64),
            self.max_len,
            "history",
        )
        keep_seen = [b for b, p in enumerate(prepared) if not p.exclude_seen]
        if keep_seen and batch.exclude is not None:
            batch.exclude[keep_seen] = 0
        return batch.to(self.device)

    def _results(
        self, values: list[float], indices: list[int], k: int, skipped: Sequence[str]
    ) -> Recommendations:
        items = [
            Recommendation(self._item_ids[i], float(v), self._titles[i])
            for v, i in zip(values[:k], indices[:k])
            if i != 0
        ]
        return Recommendations(items, skipped)

    def similar_items(self, item_id: str, k: int = 10) -> Recommendations:
        """The ``k`` items whose vectors have the highest cosine with ``item_id``'s (itself excluded).

        Raises:
            UnknownIdError: not in the catalogue.
        """
        idx = self._item_indices([item_id], skip_unknown=False)[0][0]
        with self._lock:
            query = self._vectors[idx : idx + 1]  # (1, D)
            exclude = torch.tensor([[idx]], device=self._vectors.device)  # (1, 1)
            values, indices = self._index.search(query, k, exclude)  # (1, k)
        return self._results(values[0].tolist(), indices[0].tolist(), k, ())

    # ---- cold start ----------------------------------------------------------------------------
    def add_item(self, item_id: str, text: str, title: str = "") -> dict[str, str]:
        """Add an item at run time; it is recommendable (and usable in histories) at once.

        The text is embedded with the run's text encoder and goes through the model's text path
        (for ``sum``, ``gated`` and ``residual`` fusions the new item's id vector is zero; a ``sum``
        run ranks such items less well and logs a warning on the first add). Unless the
        recommender was made with ``persist=False``, the item is written durably to the run's item
        log before this returns, so restarts and other processes serving the run keep it.

        Returns:
            The new item as :meth:`item` gives it.

        Raises:
            DuplicateItemError: the id is in the catalogue (perhaps added by another process).
            ItemLogError: the item log cannot be written (e.g. a read-only run directory).
            ServingError: the run is ID-only (fusion ``id``), or the text is empty.
        """
        self.add_items([item_id], [text], [title])
        return self.item(item_id)

    def add_items(
        self, item_ids: Sequence[str], texts: Sequence[str], titles: Sequence[str] | None = None
    ) -> None:
        """Add several items at once (one encoder call, one durable write); see :meth:`add_item`.

        The items are added all or none. With the item log, the write happens under the log's
        file lock after catching up with other processes, so every process gives the new items
        the same indices."""
        titles = [t or "" for t in titles] if titles is not None else [""] * len(item_ids)
        if not len(item_ids) == len(texts) == len(titles):
            raise ServingError(f"got {len(item_ids)} ids, {len(texts)} texts and {len(titles)} titles")
        if not self.can_add_items:
            raise _id_only_error(self.fusion)
        item_ids = [str(r) for r in item_ids]
        self._check_new_ids(item_ids)
        if self.fusion not in FUSIONS_FOR_NEW_ITEMS and not self._warned_new_items:
            self._warned_new_items = True
            _LOG.warning(
                "this run's %r fusion is weaker at the top of the list for items without an ID vector: "
                "added items are ranked by their text with a zero ID part; 'gated', 'residual' and "
                "'text' runs rank them better (docs/results.md, cold-start items)",
                self.fusion,
            )
        if not all(isinstance(t, str) and t.strip() for t in texts):
            raise ServingError("every new item needs a non-empty text")
        for what, values in (("item id", item_ids), ("text", texts), ("title", titles)):
            _check_unicode(what, values)
        if self.item_log is not None and not os.access(self.item_log.path.parent, os.W_OK):
            raise self._log_failure(PermissionError(errno.EACCES, "no write access"))  # before encoding
        rows = self._embed(list(texts)).numpy()  # (m, d_text), slow: outside the lock
        assert self.model.items.text is not None
        d_text = self.model.items.text.shape[1]
        if rows.shape != (len(item_ids), d_text):
            raise ServingError(
                f"the encoder returned vectors of shape {rows.shape}; expected ({len(item_ids)}, {d_text}): "
                "use the encoder the run was trained with"
            )
        if not np.isfinite(rows).all():
            raise ServingError("the text encoder returned non-finite values (NaN or inf)")
        with self._lock:
            if self.item_log is None:
                self._check_new_ids(item_ids)  # again: another thread may have added them meanwhile
                records = [ItemRecord(*item, rows[i]) for i, item in enumerate(zip(item_ids, titles, texts))]
            else:
                records = self._append_to_log(item_ids, texts, titles, rows)
            self._apply([records])

    def _append_to_log(
        self, item_ids: list[str], texts: Sequence[str], titles: list[str], rows: np.ndarray
    ) -> list[ItemRecord]:
        """Under the file lock: catch up with other processes, check the ids, append durably."""
        assert self.item_log is not None
        try:
            with self.item_log.locked():
                self._catch_up(final=True)
                self._check_new_ids(item_ids)
                return self.item_log.append(item_ids, texts, titles, rows)
        except OSError as exc:
            raise self._log_failure(exc) from exc
        except DataFormatError as exc:
            raise ItemLogError(f"cannot add items: {exc}") from exc

    def _log_failure(self, exc: OSError) -> ItemLogError:
        assert self.item_log is not None
        why = exc.strerror or str(exc)
        if isinstance(exc, PermissionError) or exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            problem = f"the run directory {self.item_log.path.parent} is not writable ({why})"
        else:
            problem = f"writing {self.item_log.path} failed ({why})"
        return ItemLogError(
            f"cannot add items: {problem}. Added items are kept in the run directory's {ITEM_LOG} so "
            "that restarts and other server processes see them: make it writable, or load the run "
            "with persist=False to keep added items in memory only"
        )

    def _check_new_ids(self, item_ids: list[str]) -> None:
        for item_id in item_ids:
            check_item_id(item_id)
        if len(set(item_ids)) != len(item_ids):
            raise ServingError(f"item ids must be distinct, got {item_ids}")
        taken = [r for r in item_ids if r in self._item_idx]
        if taken:
            raise DuplicateItemError(taken)

    def is_same_item(self, item_id: str, text: str, title: str = "") -> bool:
        """Whether ``item_id`` is in the catalogue with this text and title (an add repeated by a
        client that lost the reply: the HTTP layer answers it 200, not 409)."""
        idx = self._item_idx.get(item_id)
        return idx is not None and self._texts[idx] == text and self._titles[idx] == (title or item_id)

    def _embed(self, texts: list[str]) -> torch.Tensor:
        if self._encoder is None:
            self._encoder = _build_text_encoder(self.run, str(self.device))
        rows = np.asarray(self._encoder.encode(texts, batch_size=32), dtype=np.float32)
        return torch.from_numpy(rows)  # (m, d_text)

    def _apply(self, groups: list[list[ItemRecord]]) -> None:
        """Append items to the model's text matrix, the item vectors, the index and the catalogue
        (under ``self._lock``). Vectors are computed group by group, as the groups were added, so a
        replay gives the same vectors bit for bit."""
        records = [r for group in groups for r in group]
        if not records:
            return
        rows = torch.from_numpy(np.stack([r.vector for r in records]))  # (m, d_text)
        first = len(self._item_ids)
        with torch.inference_mode():
            append_text_items(self.model.items, rows.to(self.device))
            parts, start = [], first
            for group in groups:
                new = torch.arange(start, start + len(group), device=self.device)  # (g,)
                parts.append(self.model.item_vectors(new).float())  # (g, D)
                start += len(group)
            vectors = torch.cat(parts)  # (m, D)
            self._vectors = torch.cat([self._vectors, vectors])
            self._index.add(vectors)
        for offset, r in enumerate(records):
            title = r.title or r.item_id
            self._item_idx[r.item_id] = first + offset
            self._item_ids.append(r.item_id)
            self._texts.append(r.text)
            self._titles.append(title)
            self._lower_titles.append(title.lower())

    # ---- the item log shared with other processes ----------------------------------------------
    def stale(self) -> bool:
        """Whether the run's item log changed since this recommender last read it (one ``os.stat``,
        no lock; call :meth:`sync` to catch up)."""
        return self.item_log is not None and self.item_log.changed()

    def sync(self) -> int:
        """Catch up with items other recommenders (other processes) added to the run directory.

        The HTTP app calls this before every request it answers. Cheap when nothing changed.

        Returns:
            The number of items added.

        Raises:
            DataFormatError: a corrupt record (file and line named); the items before it are added,
                nothing after it is (so processes never disagree on indices).
        """
        if not self.stale():
            return 0
        with self._lock:
            return self._catch_up(final=False)

    def _catch_up(self, final: bool) -> int:
        assert self.item_log is not None
        groups, error = self.item_log.read_new(self._item_idx, final=final)
        self._apply(groups)
        if error is not None:
            raise error
        return sum(len(g) for g in groups)

    def item_vectors(self, item_ids: Sequence[str]) -> torch.Tensor:
        """(m, D) L2-normalised vectors of items (what recommendations are scored against).

        Raises:
            UnknownIdError: ids not in the catalogue.
        """
        known = self._item_indices(item_ids, skip_unknown=False)[0]
        return self._vectors[torch.tensor(known, dtype=torch.long, device=self._vectors.device)].clone()

    def describe(self) -> dict[str, Any]:
        """What is being served: run, model, fusion, catalogue size, index."""
        return {
            "run_dir": str(self.run.run_dir),
            "checkpoint": self.run.checkpoint,
            "model": self.run.arch.name,
            "fusion": self.fusion,
            "dataset": self.run.data.name,
            "num_items": self.num_items,
            "num_users": self.run.data.num_users,
            "max_len": self.max_len,
            "index": self.index_name,
            "can_add_items": self.can_add_items,
            "added_items": self.num_items - self._trained_items,
            "item_log": None if self.item_log is None else str(self.item_log.path),
            "item_log_torn": 0 if self.item_log is None else self.item_log.torn,
        }


# ---- item ids: the canonical form of new ids -------------------------------------------------------
def check_item_id(item_id: str) -> str:
    """``item_id`` if it is in canonical form, the form every new item id must have: a non-empty
    string without surrounding whitespace, without control characters (Unicode category Cc:
    newlines, tabs, NUL, DEL, ...) and other than ``.`` and ``..`` (which URLs cannot carry as a
    path segment). Such an id can be fetched as ``GET /items/{id}`` (percent-encoded).

    Raises:
        ServingError: not in canonical form (the message says why).
    """
    if not isinstance(item_id, str) or not item_id:
        raise ServingError(f"an item id must be a non-empty string, got {item_id!r}")
    if item_id != item_id.strip():
        raise ServingError(f"item id {item_id!r} has surrounding whitespace; send it without")
    if any(unicodedata.category(c) == "Cc" for c in item_id):
        raise ServingError(f"item id {item_id!r} holds a control character (newline, tab, NUL, ...)")
    if item_id in (".", ".."):
        raise ServingError(f"item id {item_id!r} cannot be a URL path segment")
    return item_id


def _check_unicode(what: str, values: Sequence[str]) -> None:
    """Reject strings UTF-8 cannot encode (lone surrogates): they cannot be stored."""
    for value in values:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ServingError(f"{what} {value!r} is not valid Unicode (a lone surrogate)") from None


def _check_time(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ServingError(f"{name} must be an integer number of seconds, got {value!r}")
    if not -TIME_LIMIT <= int(value) <= TIME_LIMIT:
        raise ServingError(f"{name}={value} is outside [-2**40, 2**40] seconds")
    return int(value)
