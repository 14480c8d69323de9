"""``Recommender``: a trained run behind an API of item ids (no HTTP in here).

    rec = Recommender.load("runs/ml-hstu")
    rec.recommend(["1", "50", "260"], k=10)      # -> [Recommendation(item_id, score, title), ...]
    rec.recommend_user("42")                     # the user's full known history
    rec.add_item("new-1", text="...", title="")  # cold start through the text path
    rec.add_item("new-2", fields={"name": "...", "description": "..."})  # text composed as prepare did
    rec.add_events([("42", "1", 1700000000)])    # what a user did since training
    rec.recommend_user("42")                     # now after their training history plus that event
    rec.forget_user("42")                        # their stored events deleted
    rec.sync()                                   # items other processes added since
    rec.recommend(["1"], filter={"where": {"in_stock": True}})  # business filters (ItemFilter)

Ids that cross this API are external ids (``item_id``, ``user_id``); the model's item indices
(``item_idx``) stay inside. A query is built (ids mapped, timestamps checked) and then answered in
a batch: one encoder call for all queries of a batch, then one top-k search over the item vectors.

A ``Recommender`` composes parts that each do one job, and keeps none of their state itself:

- :class:`~hstu_blair.serving.scorer.Scorer`: the model, its item vectors and the top-k index;
- :class:`~hstu_blair.serving.catalogue.Catalogue`: item ids, titles and texts by item index;
- :class:`~hstu_blair.serving.growth.CatalogueGrowth`: items added at run time (by text, or by
  other processes through the store);
- :class:`~hstu_blair.serving.events.UserEvents`: users' events and histories;
- :class:`~hstu_blair.serving.attribute_sync.AttributeSync`: items' attributes (for filters,
  :mod:`~hstu_blair.serving.item_filter`), the dataset's and those set at run time by any process;
- :class:`~hstu_blair.serving.store_link.StoreLink`: the run's store (a database, by default
  ``RUN_DIR/store.sqlite``) as this recommender sees it: what it has read, what it set aside.

Added items, events and attribute changes are committed to the store before the call returns:
loading the run reads it, and every recommender on the same store (other processes included) picks
up the others' items and attributes in :meth:`Recommender.sync` (items get the same indices in the
same order); events are read at each query. A damaged stored item is set aside (see
:class:`~hstu_blair.serving.store_link.StoreLink`), counted in ``describe()["set_aside"]``.
``persist=False`` keeps all of it in memory only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from hstu_blair.data import schema
from hstu_blair.errors import UnknownIdError
from hstu_blair.models.sequential import SequentialModel
from hstu_blair.run.model_files import TrainedModel, load_trained
from hstu_blair.run.store import Store
from hstu_blair.serving.attribute_sync import AttributeSync
from hstu_blair.serving.catalogue import Catalogue
from hstu_blair.serving.errors import DuplicateItemError, ServingError, StoreWriteError
from hstu_blair.serving.events import UserEvents
from hstu_blair.serving.export import ExportSummary, export_recommendations
from hstu_blair.serving.growth import CatalogueGrowth, fusions_for_new_items
from hstu_blair.serving.ids import check_new_id
from hstu_blair.serving.item_attributes import ItemAttributes
from hstu_blair.serving.item_filter import FilterLike, ItemFilter, as_filter
from hstu_blair.serving.item_writes import ItemWrites
from hstu_blair.serving.popularity import Popularity
from hstu_blair.serving.queries import PreparedQuery, Query, Reason, Recommendation, Recommendations
from hstu_blair.serving.query_builder import AnyQuery, as_query, build_query
from hstu_blair.serving.reasons import add_reasons
from hstu_blair.serving.scorer import Scorer
from hstu_blair.serving.store_link import StoreLink
from hstu_blair.text.encoders import TextEncoder

__all__ = [
    "DuplicateItemError",
    "ItemFilter",
    "ExportSummary",
    "PreparedQuery",
    "Query",
    "Reason",
    "Recommendation",
    "Recommendations",
    "Recommender",
    "ServingError",
    "StoreWriteError",
    "UnknownIdError",
    "check_new_id",
    "fusions_for_new_items",
]


class Recommender(ItemWrites):
    """Recommendations from a trained run, in external ids.

    Args:
        run: a loaded run (see :func:`hstu_blair.run.model_files.load_trained`).
        encoder: text encoder for :meth:`add_item` (default: the encoder that wrote the run's
            embedding store, built on first use).
        index: ``exact`` (brute force, default) or a FAISS index for large catalogues
            (``faiss`` = ``faiss-ivf``, ``faiss-hnsw``).
        persist: keep added items and events in the run's store, and read it now (default).
            ``False``: neither read nor write it (tests, notebooks). ``"read"``: read an existing
            store read-only, never create, migrate or write one (``hstu-blair recommend``).
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
        persist: bool | Literal["read"] = True,
        store: str | Path | Store | None = None,
    ) -> None:
        self.run = run
        self.version = run.version
        """The model version served (0: the trained run; see ``hstu-blair update``)."""
        self.index_name = index
        items = run.data.items
        self.catalogue = Catalogue(
            items[schema.ITEM_ID].to_list(), items[schema.TITLE].to_list(), items[schema.TEXT].to_list()
        )
        self.scorer = Scorer(run.model, run.arch.max_len, index)
        self.link = StoreLink(run.run_dir, store, persist)
        self.growth = CatalogueGrowth(self.catalogue, self.scorer, self.link, run.info, run.version, encoder)
        self.events = UserEvents(run.data, self.catalogue, self.link, run.arch.max_len)
        self.popularity = Popularity(run.data)
        self.attribute_sync = AttributeSync(ItemAttributes.of_data(run.data), self.link)
        if self.can_add_items:
            self.growth.load_stored()
        self.attribute_sync.catch_up(self.catalogue)
        self.link.count_set_aside()

    @classmethod
    def load(
        cls,
        run_dir: str | Path,
        checkpoint: Literal["best", "last"] = "best",
        device: str = "cpu",
        encoder: TextEncoder | None = None,
        index: str = "exact",
        persist: bool | Literal["read"] = True,
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

    def close(self) -> None:
        """Close the store's connections if this recommender opened it (a store passed in belongs
        to its caller). Also on leaving a ``with Recommender.load(...) as rec:`` block."""
        self.link.close()

    def __enter__(self) -> Recommender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- what is served ----------------------------------------------------------------------
    @property
    def model(self) -> SequentialModel:
        return self.scorer.model

    @property
    def max_len(self) -> int:
        return self.scorer.max_len

    @property
    def device(self) -> torch.device:
        return self.scorer.device

    @property
    def store(self) -> Store:
        """Added items and events (an in-memory database with ``persist=False``)."""
        return self.link.store

    @property
    def model_calls(self) -> int:
        """Encoder forward passes so far (one per batch); the HTTP layer reports it."""
        return self.scorer.model_calls

    @property
    def num_items(self) -> int:
        """Items that can be recommended (the trained catalogue plus added items)."""
        return len(self.catalogue)

    @property
    def fusion(self) -> str:
        return self.model.items.fusion_name

    @property
    def can_add_items(self) -> bool:
        """Whether :meth:`add_item` works (the model's fusion has a text path)."""
        return self.growth.can_add_items

    @property
    def records_set_aside(self) -> int:
        """Damaged records kept out of service (in the store's ``set_aside`` table, or skipped)."""
        return self.link.records_set_aside

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
            "added_items": self.num_items - self.catalogue.trained,
            "store": self.store.describe(),
            "store_schema": self.store.version,
            "set_aside": self.records_set_aside,
        }

    # ---- the catalogue -------------------------------------------------------------------------
    def has_item(self, item_id: str) -> bool:
        return item_id in self.catalogue

    @property
    def attributes(self) -> ItemAttributes:
        """The items' attributes (what filters select on)."""
        return self.attribute_sync.attributes

    def item(self, item_id: str) -> dict[str, Any]:
        """``{"item_id", "title", "text", "attributes"}`` of an item (UnknownIdError: not in the catalogue)."""
        idx = self._index_of(item_id)
        return {**self.catalogue.item(idx), "attributes": self.attributes.get(idx)}

    def update_item_attributes(self, item_id: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """Merge ``values`` into an item's attributes (a None value removes one), committed to the
        store: every recommender on it sees the change at its next query. Returns the attributes.

        Raises:
            UnknownIdError: not in the catalogue; ServingError: a value not a string, finite
                number or bool, or not of the attribute's kind; StoreWriteError: see :meth:`add_item`.
        """
        self.sync()
        return self.attribute_sync.update(self.catalogue, item_id, values)

    def allowed(self, filter: FilterLike) -> np.ndarray | None:
        """(N+1,) bool mask of the items ``filter`` allows, None for no filter (:meth:`ItemFilter.mask`
        says what it raises)."""
        parsed = as_filter(filter)
        return None if parsed is None else parsed.mask(self.catalogue, self.attributes)

    def search_items(self, query: str, limit: int = 20) -> list[dict[str, str]]:
        """Items whose title or item id contains ``query`` (case- and accent-insensitive), title prefix matches
        first, then catalogue order; each ``{"item_id", "title"}``."""
        return self.catalogue.search(query, limit)

    def item_vectors(self, item_ids: Sequence[str]) -> torch.Tensor:
        """(m, D) L2-normalised vectors of items (what recommendations are scored against);
        UnknownIdError for ids not in the catalogue."""
        return self.scorer.item_vectors(self.catalogue.indices(item_ids, skip_unknown=False)[0])

    def is_same_item(self, item_id: str, text: str, title: str = "") -> bool:
        """Whether ``item_id`` is in the catalogue with this text and title (an add repeated by a
        client that lost the reply: the HTTP layer answers it 200, not 409)."""
        return self.catalogue.is_same_item(item_id, text, title)

    def _index_of(self, item_id: str) -> int:
        return self.catalogue.indices([item_id], skip_unknown=False)[0][0]

    # ---- queries -------------------------------------------------------------------------------
    def build_query(self, query: Query) -> PreparedQuery:
        """Validate ``query`` and turn it into item indices and a filter mask (no model call); see
        :func:`~hstu_blair.serving.query_builder.build_query` for what it raises (also a malformed
        filter: ServingError)."""
        self.sync()  # items other processes added to the run directory are known before ids are mapped
        return build_query(query, self.catalogue, self.user_history, self.allowed(query.filter))

    def user_history(self, user_id: str, seen: bool = True) -> tuple[np.ndarray, np.ndarray, bool]:
        """A user's training interactions and last ``max_len`` stored events by time (see
        :meth:`UserEvents.history`): (L,) item indices, (L,) timestamps, whether training knows them."""
        return self.events.history(user_id, seen)

    def _build_any(
        self, q: AnyQuery, k: int, exclude_seen: bool, skip_unknown: bool, filter: FilterLike = None
    ) -> PreparedQuery:
        q = as_query(q, k, exclude_seen, skip_unknown)
        if isinstance(q, PreparedQuery):
            return q
        return self.build_query(q if q.filter is not None or filter is None else replace(q, filter=filter))

    def recommend(
        self,
        history: Sequence[str],
        k: int = 10,
        exclude_seen: bool = True,
        timestamps: Sequence[int] | None = None,
        query_time: int | None = None,
        skip_unknown: bool = False,
        filter: FilterLike = None,
        explain: bool = False,
    ) -> Recommendations:
        """The ``k`` best items after a history of item ids (oldest first).

        Args:
            history: item ids; only the most recent ``data.max_len`` are encoded.
            k: list length (fewer when the catalogue, or the items the filter allows, run out).
            exclude_seen: never recommend an item of the history (the whole history, not only
                the encoded part).
            timestamps: seconds, one per history item (default: 1 s apart, ending now).
            query_time: when the recommendation is for (default: the last history timestamp).
            skip_unknown: leave unknown ids out (listed in ``result.skipped``) instead of raising.
            filter: only items it allows (an :class:`ItemFilter` or its JSON form; None: all).
            explain: fill each item's ``reasons`` (see :meth:`explain`).

        Raises:
            UnknownIdError: unknown ids (unless ``skip_unknown``); ServingError: see :meth:`build_query`.
        """
        query = Query(history, None, timestamps, query_time, k, exclude_seen, skip_unknown, filter)
        return self.recommend_batch([query], explain=explain)[0]

    def recommend_user(
        self,
        user_id: str,
        k: int = 10,
        exclude_seen: bool = True,
        new_user: str = "error",
        filter: FilterLike = None,
        explain: bool = False,
    ) -> Recommendations:
        """The ``k`` best items for a user, after their training history plus their stored events
        (see :meth:`add_events`; query time = their last interaction); only items ``filter`` allows.

        Args:
            new_user: for a user with no history at all (neither in the training data nor in the
                stored events): ``error`` (raise ``UnknownIdError``) or ``popular`` (:meth:`popular`).
            explain: fill each item's ``reasons`` (none for popular items).

        Raises:
            UnknownIdError: a user without history and ``new_user="error"``.
        """
        if new_user not in ("error", "popular"):
            raise ServingError(f"new_user must be 'error' or 'popular', got {new_user!r}")
        query = Query(user_id=str(user_id), k=k, exclude_seen=exclude_seen, filter=filter)
        if new_user == "error":
            return self.recommend_batch([query], explain=explain)[0]
        self.sync()
        ids, _, _ = self.user_history(str(user_id), seen=False)
        if ids.size == 0:
            return self.popular(k, filter)
        try:
            return self.recommend_batch([query], explain=explain)[0]
        except UnknownIdError:  # their stored events were deleted after the read above
            return self.popular(k, filter)

    def popular(self, k: int = 10, filter: FilterLike = None) -> Recommendations:
        """The ``k`` items with the most training interactions (what a user without history gets),
        only items ``filter`` allows; score = the item's share of all training interactions."""
        self.sync()
        return self.popularity.top(self.catalogue, k, self.allowed(filter))

    def recommend_batch(
        self,
        queries: Sequence[AnyQuery] = (),
        users: Sequence[str] = (),
        k: int = 10,
        exclude_seen: bool = True,
        skip_unknown: bool = False,
        filter: FilterLike = None,
        explain: bool = False,
    ) -> list[Recommendations]:
        """Answer many queries with one encoder call and one top-k search.

        Args:
            queries: each a ``Query``, a ``PreparedQuery`` or a plain history (list of item ids);
                ``Query`` objects carry their own k / exclude_seen / skip_unknown / filter.
            users: user ids, answered after ``queries`` (as :meth:`recommend_user`).
            k, exclude_seen, skip_unknown: for plain histories and ``users``.
            filter: for plain histories, ``users`` and ``Query`` objects without their own.
            explain: fill each item's ``reasons`` (see :meth:`explain`; one more model call).

        Returns:
            One :class:`Recommendations` per query, in order (queries, then users).
        """
        self.sync()
        everything = [*queries, *(Query(user_id=str(u), k=k, exclude_seen=exclude_seen) for u in users)]
        prepared = [self._build_any(q, k, exclude_seen, skip_unknown, filter) for q in everything]
        if not prepared:
            return []
        values, indices = self.scorer.top_k(prepared)
        results = [self.catalogue.results(v, i, p.k, p.skipped) for v, i, p in zip(values, indices, prepared)]
        return self.explain(prepared, results) if explain else results

    def explain(
        self, prepared: Sequence[PreparedQuery], results: Sequence[Recommendations], last: int = 5
    ) -> list[Recommendations]:
        """``results`` of ``prepared`` with each item's ``reasons``: the (at most 3) history items of
        the ``last`` most recent distinct ones whose removal lowers its score most, by how much,
        best first (see :mod:`hstu_blair.serving.reasons`; one model call for all queries)."""
        return add_reasons(self.scorer, self.catalogue, prepared, results, last)

    def export_recommendations(
        self,
        path: str | Path,
        k: int = 20,
        batch_size: int = 1024,
        exclude_seen: bool = True,
        users: Sequence[str] | None = None,
        filter: FilterLike = None,
        progress: bool = True,
    ) -> ExportSummary:
        """Write the top ``k`` of every user (or of ``users``) to a Parquet or CSV file, streamed in
        batches, only items ``filter`` allows. See
        :func:`hstu_blair.serving.export.export_recommendations`."""
        return export_recommendations(self, path, k, batch_size, exclude_seen, users, filter, progress)

    def encode(self, queries: Sequence[AnyQuery]) -> torch.Tensor:
        """(B, D) L2-normalised query vectors of histories or queries (what items are scored against)."""
        return self.scorer.query_vectors([self._build_any(q, 1, False, False) for q in queries])

    def index_recall(self, queries: Sequence[AnyQuery], k: int = 10) -> float:
        """Recall@k of this recommender's index against exact search on ``queries`` (1.0 for ``exact``):
        the mean fraction of each exact top-k that the index returns (no exclusions)."""
        return self.scorer.recall(self.encode(queries), k)

    def similar_items(self, item_id: str, k: int = 10, filter: FilterLike = None) -> Recommendations:
        """The ``k`` items whose vectors have the highest cosine with ``item_id``'s (itself excluded),
        only items ``filter`` allows.

        Raises UnknownIdError (not in the catalogue) or ServingError (a malformed filter).
        """
        self.sync()
        values, indices = self.scorer.similar(self._index_of(item_id), k, self.allowed(filter))
        return self.catalogue.results(values, indices, k)

    # ---- users' events -------------------------------------------------------------------------
    def add_events(self, events: Sequence[tuple[Any, ...]], idempotency_key: str | None = None) -> int:
        """Store ``(user_id, item_id, timestamp[, event_id])`` rows, all or none, durably, each event
        once; used by :meth:`recommend_user` at once, in every process. Returns the distinct events of
        the batch; see :meth:`UserEvents.add <hstu_blair.serving.events.UserEvents.add>` (and what it raises)."""
        self.sync()
        return self.events.add(events, idempotency_key)

    def forget_user(self, user_id: str) -> int:
        """Delete a user's stored events (their training history is part of the model and stays);
        returns how many. StoreWriteError: the store cannot be written."""
        return self.events.forget(user_id)

    # ---- the store shared with other processes -------------------------------------------------
    def stale(self) -> bool:
        """Whether items were added to the store since this recommender last read it (one cheap
        query; call :meth:`sync` to catch up). Events need no catching up: they are read at
        each query."""
        return self.can_add_items and self.link.stale()

    def sync(self) -> int:
        """Catch up with items other recommenders (other processes) added to the store, and with
        item attributes they changed.

        The HTTP app calls this before every request it answers. Cheap when nothing changed.
        Damaged items are skipped, counted in ``describe()["set_aside"]`` and logged once.

        Returns:
            The number of items added.
        """
        before = self.num_items
        if self.stale():
            with self.scorer.lock:
                self.growth.catch_up()
        self.attribute_sync.catch_up(self.catalogue)
        return self.num_items - before
