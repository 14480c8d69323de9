"""``Recommender``: a trained run behind an API of item ids (no HTTP in here).

    rec = Recommender.load("runs/ml-hstu")
    rec.recommend(["1", "50", "260"], k=10)      # -> [Recommendation(item_id, score, title), ...]
    rec.recommend_user("42")                     # the user's full known history
    rec.add_item("new-1", text="...", title="")  # cold start through the text path
    rec.add_events([("42", "1", 1700000000)])    # what a user did since training
    rec.recommend_user("42")                     # now after their training history plus that event
    rec.forget_user("42")                        # their stored events deleted
    rec.sync()                                   # items other processes added since

Ids that cross this API are external ids (``item_id``, ``user_id``); the model's item indices
(``item_idx``) stay inside. A query is prepared (ids mapped, history truncated to the most recent
``max_len`` items, timestamps
laid out as in training: column ``L`` holds the query time) and then answered in a batch: one
encoder call for all queries of a batch, then one top-k search over the item vectors.

Added items and users' events are kept in the run's store (a database, by default
``RUN_DIR/store.sqlite``; see :mod:`hstu_blair.run.store`), committed before ``add_items`` /
``add_events`` return: loading the run reads it, and every recommender on the same store (other
processes included) picks up the others' items in :meth:`Recommender.sync`, assigning the same
indices in the same order; events are read from the store at each query. A damaged stored item
never stops serving: it is set aside (moved to the store's ``set_aside`` table when it can be
written, skipped otherwise), counted in ``describe()["set_aside"]`` and logged once.
``persist=False`` keeps added items and events in memory only.
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
from hstu_blair.errors import HstuBlairError, UnknownIdError
from hstu_blair.models.fusions import FUSIONS
from hstu_blair.models.item_embedding import ItemEmbedding
from hstu_blair.run.layout import STORE_FILE, store_path
from hstu_blair.run.model_files import TrainedModel, load_trained
from hstu_blair.run.store import DamagedRecord, DuplicateIdsError, ItemRecord, Store, StoreError
from hstu_blair.serving.index import ItemIndex, build_index, index_recall
from hstu_blair.text.encoders import TextEncoder
from hstu_blair.text.registry import build_text_encoder, encoder_for_store
from hstu_blair.training.batching import QueryBatch, query_batch

_LOG = logging.getLogger(__name__)

TIME_LIMIT = 2**40
"""Timestamps (seconds) must lie in [-TIME_LIMIT, TIME_LIMIT] so time differences cannot overflow."""


class ServingError(HstuBlairError, ValueError):
    """A query or an item the recommender cannot serve (empty history, bad timestamps, ...)."""


class DuplicateItemError(ServingError):
    """New item ids that are already in the catalogue (``ids``)."""

    def __init__(self, ids: list[str]) -> None:
        self.ids = ids
        super().__init__(f"item ids must be new; already in the catalogue: {ids}")


class StoreWriteError(ServingError):
    """The store cannot be written (a read-only run directory, a full disk, an unreachable
    database server): the server's fault, not the request's."""


__all__ = [
    "DuplicateItemError",
    "PreparedQuery",
    "Query",
    "Recommendation",
    "Recommendations",
    "Recommender",
    "ServingError",
    "StoreWriteError",
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


def fusions_for_new_items() -> str:
    """The registered fusions that can add items by text, those trained for it first (for messages)."""
    trained = [s.name for s in FUSIONS.values() if s.uses_text and s.ranks_without_id_row(s.make_options())]
    others = [s.name for s in FUSIONS.values() if s.uses_text and s.name not in trained]
    return ", ".join(trained) + " (trained for it)" + (f", or {', '.join(others)}" if others else "")


def _id_only_error(fusion: str) -> ServingError:
    return ServingError(
        f"this run's model uses fusion {fusion!r} (ID-only): it has no text path, so items cannot "
        f"be added at run time; train with model.fusion = {fusions_for_new_items()}"
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
        run: a loaded run (see :func:`hstu_blair.run.model_files.load_trained`).
        encoder: text encoder for :meth:`add_item` (default: the encoder that wrote the run's
            embedding store, built on first use).
        index: ``exact`` (brute force, default) or a FAISS index for large catalogues
            (``faiss`` = ``faiss-ivf``, ``faiss-hnsw``).
        persist: keep added items and events in the run's store, and read it now (default).
            ``False``: neither read nor write it; added items and events live in memory only
            (tests, notebooks).
        store: where the store is: a SQLite file path or a PostgreSQL URL (default
            ``RUN_DIR/store.sqlite``), or an open :class:`Store` to share (with ``persist`` ignored).

    Raises:
        StoreError: the store cannot be opened (an unreachable server, a newer schema). A
            read-only run directory without a store serves with an in-memory one.
    """

    def __init__(
        self,
        run: TrainedModel,
        encoder: TextEncoder | None = None,
        index: str = "exact",
        persist: bool = True,
        store: str | Path | Store | None = None,
    ) -> None:
        self.run = run
        self.version = run.version
        """The model version served (0: the trained run; see ``hstu-blair update``)."""
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
        self._popularity: np.ndarray | None = None  # (N+1,) training interactions per item
        self._writable = True  # False: a read-only run directory without a store, served from memory
        self._owns_store = not isinstance(store, Store)
        if isinstance(store, Store):  # shared, e.g. by the versions a LiveRecommender swaps
            self.store = store
        else:
            self.store = self._open_store(store) if persist else Store("sqlite://")
        """Added items and events (an in-memory database with ``persist=False``)."""
        self._store_seq = 0  # the highest item seq read from the store
        self._store_head = 0  # the store's max(seq) when last looked at
        self._skipped: set[int] = set()  # seqs of damaged items skipped while serving
        self._set_aside = 0
        if self.can_add_items:
            self._load_items()
        self._set_aside = len(self.store.set_aside_records()) + len(self._skipped)

    def close(self) -> None:
        """Close the store's connections if this recommender opened it (a store passed in belongs
        to its caller). Also on leaving a ``with Recommender.load(...) as rec:`` block."""
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> Recommender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open_store(self, location: str | Path | None) -> Store:
        try:
            return Store.for_run(self.run.run_dir, location)
        except StoreError as exc:
            if location is None and not store_path(self.run.run_dir).exists():
                # a read-only run directory without a store: nothing to read, nothing can be written
                _LOG.warning("%s: serving without a store (writes are refused)", exc)
                self._writable = False
                return Store("sqlite://")
            raise

    @property
    def _d_text(self) -> int:
        assert self.model.items.text is not None
        return int(self.model.items.text.shape[1])

    def _load_items(self) -> None:
        """Read every stored item; damaged ones are moved to ``set_aside`` (when writable)."""
        damaged = self._catch_up()
        if damaged and not self.store.read_only:
            try:
                self.store.move_items_aside(damaged)
                self._skipped -= {seq for seq, _ in damaged}
            except StoreError as exc:
                _LOG.warning("cannot move damaged items aside: %s", exc)

    @classmethod
    def load(
        cls,
        run_dir: str | Path,
        checkpoint: Literal["best", "last"] = "best",
        device: str = "cpu",
        encoder: TextEncoder | None = None,
        index: str = "exact",
        persist: bool = True,
        store: str | Path | Store | None = None,
    ) -> Recommender:
        """Load a run directory written by ``train``, with the items added to it at run time.

        Args:
            run_dir: the run directory.
            checkpoint: ``best`` or ``last``.
            device: ``cpu``, ``cuda``, ``cuda:1``, ... or ``auto``.
            encoder: text encoder for :meth:`add_item` (default: the store's, built on first use).
            index: ``exact``, ``faiss`` (IVF), ``faiss-ivf`` or ``faiss-hnsw``.
            persist: read and extend the run's store (see :class:`Recommender`); a read-only
                run directory serves fine, only writes (:meth:`add_item`, :meth:`add_events`) fail.
            store: a SQLite file path or PostgreSQL URL (default ``RUN_DIR/store.sqlite``).

        Raises:
            ConfigError: not a run directory (or one with pickled checkpoints), or no weights.
            StoreError: the store cannot be opened.
        """
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        run = load_trained(run_dir, checkpoint, device)
        return cls(run, encoder=encoder, index=index, persist=persist, store=store)

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
        """Whether :meth:`add_item` works (the model's fusion has a text path)."""
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
            ids, times, known_user = self.user_history(str(query.user_id))
            if not known_user and ids.size == 0:
                raise UnknownIdError("user", [str(query.user_id)])
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

    def user_history(self, user_id: str) -> tuple[np.ndarray, np.ndarray, bool]:
        """A user's history: their training interactions and stored events, ordered by time (ties:
        training first, then events in the order stored). Stored events on items no longer in the
        catalogue (set aside) are left out.

        Returns:
            (L,) int64 item indices, (L,) int64 timestamps, and whether the training data knows
            the user.
        """
        try:
            user: int | None = self.run.data.user_index(user_id)
        except UnknownIdError:
            user = None
        if user is None:
            ids, times = np.zeros(0, np.int64), np.zeros(0, np.int64)
        else:
            ids = self.run.data.user_items(user).astype(np.int64)  # (L0,)
            times = self.run.data.user_times(user).astype(np.int64)  # (L0,)
        stored_ids, stored_times = self.store.user_events(user_id)  # (L1,)
        if stored_ids:
            known, positions, _ = self._item_indices(stored_ids, skip_unknown=True)
            ids = np.concatenate([ids, np.asarray(known, np.int64)])
            times = np.concatenate([times, stored_times[positions]])
            order = np.argsort(times, kind="stable")
            ids, times = ids[order], times[order]
        return ids, times, user is not None

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

    def recommend_user(
        self, user_id: str, k: int = 10, exclude_seen: bool = True, new_user: str = "error"
    ) -> Recommendations:
        """The ``k`` best items for a user, after their training history plus their stored events
        (see :meth:`add_events`; query time = their last interaction).

        Args:
            new_user: for a user with no history at all (neither in the training data nor in the
                stored events): ``error`` (raise ``UnknownIdError``) or ``popular`` (the items with
                the most training interactions; score = their share of interactions).

        Raises:
            UnknownIdError: a user without history and ``new_user="error"``.
        """
        if new_user not in ("error", "popular"):
            raise ServingError(f"new_user must be 'error' or 'popular', got {new_user!r}")
        query = Query(user_id=str(user_id), k=k, exclude_seen=exclude_seen)
        if new_user == "error":
            return self.recommend_batch([query])[0]
        self.sync()
        ids, _, _ = self.user_history(str(user_id))
        if ids.size == 0:
            return self.popular(k)
        try:
            return self.recommend_batch([query])[0]
        except UnknownIdError:  # their stored events were deleted after the read above
            return self.popular(k)

    def popular(self, k: int = 10) -> Recommendations:
        """The ``k`` items with the most training interactions (what a user without history gets);
        score = the item's share of all training interactions."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ServingError(f"k must be a positive integer, got {k!r}")
        if self._popularity is None:
            data = self.run.data
            counts = np.bincount(data.item_seq, minlength=data.num_items + 1).astype(np.float64)  # (N+1,)
            counts[0] = -1.0  # padding
            self._popularity = counts / max(1, data.num_interactions)
        order = np.argsort(-self._popularity, kind="stable")[:k]
        return Recommendations(
            [Recommendation(self._item_ids[i], float(self._popularity[i]), self._titles[i]) for i in order]
        )

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
        (fusions with an ID table give the new item no ID part; a run whose fusion was not trained
        for such items, e.g. the paper's ``sum``, logs a warning on the first add). Unless the
        recommender was made with ``persist=False``, the item is committed to the run's store before
        this returns, so restarts and other processes serving the run keep it.

        Returns:
            The new item as :meth:`item` gives it.

        Raises:
            DuplicateItemError: the id is in the catalogue (perhaps added by another process).
            StoreWriteError: the store cannot be written (e.g. a read-only run directory).
            ServingError: the run is ID-only (fusion ``id``), or the text is empty.
        """
        self.add_items([item_id], [text], [title])
        return self.item(item_id)

    def add_items(
        self, item_ids: Sequence[str], texts: Sequence[str], titles: Sequence[str] | None = None
    ) -> None:
        """Add several items at once (one encoder call, one durable write); see :meth:`add_item`.

        The items are added all or none, in one transaction after catching up with other
        processes; every process applies stored items in the store's order, so all give the new
        items the same indices."""
        titles = [t or "" for t in titles] if titles is not None else [""] * len(item_ids)
        if not len(item_ids) == len(texts) == len(titles):
            raise ServingError(f"got {len(item_ids)} ids, {len(texts)} texts and {len(titles)} titles")
        if not self.can_add_items:
            raise _id_only_error(self.fusion)
        item_ids = [str(r) for r in item_ids]
        self._check_new_ids(item_ids)
        if not self.model.items.ranks_items_without_id_row and not self._warned_new_items:
            self._warned_new_items = True
            _LOG.warning(
                "this run's %r fusion was not trained to rank items without an ID part: added items "
                "are ranked by their text with no ID part; fusions trained for it: %s "
                "(docs/results.md, cold-start items)",
                self.fusion,
                fusions_for_new_items(),
            )
        if not all(isinstance(t, str) and t.strip() for t in texts):
            raise ServingError("every new item needs a non-empty text")
        for what, values in (("item id", item_ids), ("text", texts), ("title", titles)):
            _check_unicode(what, values)
        self._check_writable()  # before encoding
        rows = self._embed(list(texts)).numpy()  # (m, d_text), slow: outside the lock
        d_text = self._d_text
        if rows.shape != (len(item_ids), d_text):
            raise ServingError(
                f"the encoder returned vectors of shape {rows.shape}; expected ({len(item_ids)}, {d_text}): "
                "use the encoder the run was trained with"
            )
        if not np.isfinite(rows).all():
            raise ServingError("the text encoder returned non-finite values (NaN or inf)")
        records = [ItemRecord(*item, rows[i]) for i, item in enumerate(zip(item_ids, titles, texts))]
        with self._lock:
            self._catch_up()  # ids other processes took since the last request are refused
            self._check_new_ids(item_ids)
            try:
                self.store.add_items(records)
            except DuplicateIdsError as exc:  # taken since the catch-up (another process)
                self._catch_up()
                raise DuplicateItemError(exc.ids) from None
            except StoreError as exc:
                raise self._write_failure(exc) from exc
            self._catch_up()  # applies ours, after anything committed before them

    def _check_writable(self) -> None:
        """Refuse a write to a store that cannot take it (a read-only SQLite file or directory)."""
        path = self.store.sqlite_path
        if not self._writable:
            raise StoreWriteError(
                f"cannot write: the run directory {self.run.run_dir} is not writable and has no "
                f"{STORE_FILE}; name a writable store (--store), or load the run with persist=False"
            )
        if self.store.read_only or (path is not None and not os.access(path.parent, os.W_OK)):
            raise self._write_failure(PermissionError(errno.EACCES, "no write access"))

    def _write_failure(self, exc: Exception) -> StoreWriteError:
        why = getattr(exc, "strerror", None) or str(exc)
        path = self.store.sqlite_path
        if path is not None and (isinstance(exc, PermissionError) or self.store.read_only):
            problem = f"the run directory {path.parent} is not writable ({why})"
        else:
            problem = f"writing to the store {self.store.describe()} failed ({why})"
        return StoreWriteError(
            f"cannot write: {problem}. Added items and events are kept in the run's store so that "
            "restarts and other server processes see them: make it writable, or load the run "
            "with persist=False to keep them in memory only"
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

    def _apply(self, records: list[ItemRecord]) -> None:
        """Append items to the model's text matrix, the item vectors, the index and the catalogue
        (under ``self._lock``). Vectors are computed batch by batch, as the items were added, so
        every process gives the same vectors bit for bit."""
        if not records:
            return
        first = len(self._item_ids)
        in_model = max(0, min(len(records), self.model.items.num_items + 1 - first))
        if in_model:  # items a refreshed version was trained with: already in the model and its vectors
            expected = self.run.info["item_ids"][first - 1 : first - 1 + in_model]
            if [r.item_id for r in records[:in_model]] != expected:
                raise StoreError(
                    f"the store {self.store.describe()} does not hold the added items model version "
                    f"{self.version} was trained with, in its order; serve it with the store it was trained with"
                )
        self._extend_model(records[in_model:], first + in_model)
        for offset, r in enumerate(records):
            title = r.title or r.item_id
            self._item_idx[r.item_id] = first + offset
            self._item_ids.append(r.item_id)
            self._texts.append(r.text)
            self._titles.append(title)
            self._lower_titles.append(title.lower())

    def _extend_model(self, records: list[ItemRecord], first: int) -> None:
        """Append new items to the model's text matrix, the item vectors and the index."""
        if not records:
            return
        rows = torch.from_numpy(np.stack([r.vector for r in records]))  # (m, d_text)
        with torch.inference_mode():
            append_text_items(self.model.items, rows.to(self.device))
            parts, start = [], first
            for size in _batch_sizes(records):
                new = torch.arange(start, start + size, device=self.device)  # (g,)
                parts.append(self.model.item_vectors(new).float())  # (g, D)
                start += size
            vectors = torch.cat(parts)  # (m, D)
            self._vectors = torch.cat([self._vectors, vectors])
            self._index.add(vectors)

    # ---- users' events -------------------------------------------------------------------------
    def add_events(self, events: Sequence[tuple[str, str, int]]) -> int:
        """Store what users did: ``(user_id, item_id, timestamp)`` rows, all or none, committed
        before this returns; :meth:`recommend_user` uses them at once, in every process.

        Returns:
            The number of events stored.

        Raises:
            UnknownIdError: events name items not in the catalogue (every one named; nothing stored).
            ServingError: an empty user id or a timestamp that is not an integer in range.
            StoreWriteError: the store cannot be written.
        """
        self.sync()
        rows: list[tuple[str, str, int]] = []
        unknown: list[str] = []
        for n, event in enumerate(events):
            if len(event) != 3:
                raise ServingError(f"events[{n}]: expected (user_id, item_id, timestamp), got {event!r}")
            user_id, item_id, timestamp = str(event[0]), str(event[1]), event[2]
            if not self._is_training_user(user_id):  # new users: ids in canonical form
                check_item_id(user_id, f"events[{n}].user_id")
            _check_unicode(f"events[{n}].user_id", [user_id])
            if item_id not in self._item_idx:
                check_item_id(item_id, f"events[{n}].item_id")  # a malformed id is named as such
                unknown.append(item_id)
            rows.append((user_id, item_id, _check_time(timestamp, f"events[{n}].timestamp")))
        if unknown:
            raise UnknownIdError("item", list(dict.fromkeys(unknown)))
        self._check_writable()
        try:
            self.store.add_events(rows)
        except StoreError as exc:
            raise self._write_failure(exc) from exc
        return len(rows)

    def _is_training_user(self, user_id: str) -> bool:
        try:
            self.run.data.user_index(user_id)
        except UnknownIdError:
            return False
        return True

    def forget_user(self, user_id: str) -> int:
        """Delete a user's stored events (their training history is part of the model and stays).

        Returns:
            The number of events deleted.

        Raises:
            StoreWriteError: the store cannot be written.
        """
        self._check_writable()
        try:
            return self.store.forget_user(str(user_id))
        except StoreError as exc:
            raise self._write_failure(exc) from exc

    # ---- the store shared with other processes -------------------------------------------------
    def stale(self) -> bool:
        """Whether items were added to the store since this recommender last read it (one cheap
        query; call :meth:`sync` to catch up). Events need no catching up: they are read at
        each query."""
        return self.can_add_items and self.store.item_head() != self._store_head

    def sync(self) -> int:
        """Catch up with items other recommenders (other processes) added to the store.

        The HTTP app calls this before every request it answers. Cheap when nothing changed.
        Damaged items are skipped, counted in ``describe()["set_aside"]`` and logged once.

        Returns:
            The number of items added.
        """
        if not self.stale():
            return 0
        with self._lock:
            before = self.num_items
            self._catch_up()
            return self.num_items - before

    def _catch_up(self) -> list[tuple[int, DamagedRecord]]:
        """Apply the items stored after the last read (under the lock); returns the damaged ones."""
        if not self.can_add_items:
            return []
        head = self.store.item_head()
        records, damaged = self.store.read_items(self._store_seq, self._d_text)
        good: list[ItemRecord] = []
        for r in records:
            assert r.seq is not None
            if r.item_id in self._item_idx:
                why = f"item id {r.item_id!r} is already in the catalogue"
                damaged.append((r.seq, DamagedRecord(f"items seq {r.seq}", why, r.item_id.encode())))
            else:
                good.append(r)
        self._apply(good)
        new = [(seq, r) for seq, r in damaged if seq not in self._skipped]
        self._skipped.update(seq for seq, _ in new)
        self._set_aside += len(new)
        self._log_set_aside([r for _, r in new])
        seqs = [r.seq for r in records if r.seq is not None] + [seq for seq, _ in damaged]
        self._store_seq = max([self._store_seq, *seqs])
        self._store_head = max(head, self._store_seq)
        return damaged

    @staticmethod
    def _log_set_aside(records: Sequence[DamagedRecord]) -> None:
        for r in records:
            _LOG.warning(
                "set aside %s: %s (kept in the store's set_aside table; other records are served)",
                r.source,
                r.reason,
            )

    @property
    def set_aside(self) -> int:
        """Damaged records kept out of service (in the store's ``set_aside`` table, or skipped)."""
        return self._set_aside

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
            "version": self.version,
            "model": self.run.arch.name,
            "fusion": self.fusion,
            "dataset": self.run.data.name,
            "num_items": self.num_items,
            "num_users": self.run.data.num_users,
            "max_len": self.max_len,
            "index": self.index_name,
            "can_add_items": self.can_add_items,
            "added_items": self.num_items - self._trained_items,
            "store": self.store.describe(),
            "store_schema": self.store.version,
            "set_aside": self.set_aside,
        }


def _batch_sizes(records: Sequence[ItemRecord]) -> list[int]:
    """Sizes of the runs of consecutive records added by one call (same ``batch``)."""
    sizes: list[int] = []
    for i, r in enumerate(records):
        if i and r.batch == records[i - 1].batch and r.batch:
            sizes[-1] += 1
        else:
            sizes.append(1)
    return sizes


# ---- item ids: the canonical form of new ids -------------------------------------------------------
def check_item_id(item_id: str, what: str = "item id") -> str:
    """``item_id`` if it is in canonical form, the form every new item id (and the id of a user
    first seen in events) must have: a non-empty string without surrounding whitespace, without
    control characters (Unicode category Cc: newlines, tabs, NUL, DEL, ...) and other than ``.``
    and ``..`` (which URLs cannot carry as a path segment). Such an id can be fetched as
    ``GET /items/{id}`` (``/users/{id}/recommendations``), percent-encoded.

    Args:
        item_id: the id.
        what: how messages name it (``item id``, ``events[3].user_id``).

    Raises:
        ServingError: not in canonical form (the message says why).
    """
    if not isinstance(item_id, str) or not item_id:
        raise ServingError(f"{what}: must be a non-empty string, got {item_id!r}")
    if item_id != item_id.strip():
        raise ServingError(f"{what} {item_id!r} has surrounding whitespace; send it without")
    if any(unicodedata.category(c) == "Cc" for c in item_id):
        raise ServingError(f"{what} {item_id!r} holds a control character (newline, tab, NUL, ...)")
    if item_id in (".", ".."):
        raise ServingError(f"{what} {item_id!r} cannot be a URL path segment")
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
