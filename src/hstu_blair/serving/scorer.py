"""``Scorer``: one model and its item vectors, answering batches of prepared queries with one
encoder call and one top-k search (the same batch layout evaluation uses)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import torch

from hstu_blair.models.sequential import SequentialModel
from hstu_blair.serving.errors import ServingError
from hstu_blair.serving.index import ItemIndex, build_index, index_recall
from hstu_blair.serving.queries import PreparedQuery
from hstu_blair.training.batching import QueryBatch, query_batch


class Scorer:
    """Query vectors, item vectors and the top-k index of one model.

    Args:
        model: the trained model (put in eval mode).
        max_len: the history length the model reads.
        index: ``exact`` or a FAISS index name (see :func:`~hstu_blair.serving.index.build_index`).

    ``lock`` guards the model, the vectors and the index: a model call, a search and the growth
    of the catalogue never interleave.
    """

    def __init__(self, model: SequentialModel, max_len: int, index: str = "exact") -> None:
        self.model = model.eval()
        self.max_len = max_len
        self.device = next(self.model.parameters()).device
        self.lock = threading.RLock()
        with torch.inference_mode():
            self.vectors = self.model.item_vectors().float()  # (N+1, D)
        self.index: ItemIndex = build_index(index, self.vectors)
        self._table: torch.Tensor | None = None  # the encoder's input vectors, see _input_table
        self.model_calls = 0
        """Encoder forward passes so far (one per batch); the HTTP layer reports it."""

    def query_vectors(self, prepared: Sequence[PreparedQuery]) -> torch.Tensor:
        """(B, D) L2-normalised query vectors (what items are scored against)."""
        batch = self._collate(prepared)
        with self.lock, torch.inference_mode():
            return self._encode(batch)

    def top_k(self, prepared: Sequence[PreparedQuery]) -> tuple[list[list[float]], list[list[int]]]:
        """Scores and item indices of the ``max(k)`` best items of each query, best first (its
        history excluded when it says so, only the items its ``allowed`` mask allows)."""
        batch = self._collate(prepared)
        with self.lock, torch.inference_mode():
            queries = self._encode(batch)  # (B, D)
            k = max(p.k for p in prepared)
            allowed = _allowed_rows([p.allowed for p in prepared], self.vectors.shape[0])
            values, indices = self.index.search(queries, k, batch.exclude, allowed)  # (B, k)
        return values.tolist(), indices.tolist()

    def similar(self, idx: int, k: int, allowed: np.ndarray | None = None) -> tuple[list[float], list[int]]:
        """Scores and indices of the ``k`` items nearest to item ``idx`` (itself excluded; only
        items of the (N+1,) bool mask ``allowed`` when given)."""
        with self.lock:
            query = self.vectors[idx : idx + 1]  # (1, D)
            exclude = torch.tensor([[idx]], device=self.vectors.device)  # (1, 1)
            mask = _allowed_rows([allowed], self.vectors.shape[0])
            values, indices = self.index.search(query, k, exclude, mask)  # (1, k)
        return values[0].tolist(), indices[0].tolist()

    def item_vectors(self, indices: Sequence[int]) -> torch.Tensor:
        """(m, D) copies of the item vectors of ``indices``."""
        return self.vectors[torch.tensor(list(indices), dtype=torch.long, device=self.vectors.device)].clone()

    def recall(self, queries: torch.Tensor, k: int) -> float:
        """Recall@k of the index against exact search on (B, D) query vectors."""
        with self.lock:
            return index_recall(self.index, self.vectors, queries, k)

    def grow(self, text_rows: torch.Tensor, batch_sizes: Sequence[int]) -> None:
        """Append items to the model's text matrix, then their vectors to the vectors and the index,
        computed group by group (``batch_sizes``: the items added by one call, in order), so every
        process that applies the same additions gets the same vectors bit for bit (call under
        ``lock``)."""
        first = self.vectors.shape[0]
        with torch.inference_mode():
            try:
                self.model.items.add_text_items(text_rows.to(self.device))  # (m, d_text)
            except ValueError as exc:
                raise ServingError(f"{exc}: use the encoder the run was trained with") from None
            parts, start = [], first
            for size in batch_sizes:
                new = torch.arange(start, start + size, device=self.device)  # (g,)
                parts.append(self.model.item_vectors(new).float())  # (g, D)
                start += size
            vectors = torch.cat(parts)  # (m, D)
            self.vectors = torch.cat([self.vectors, vectors])
            self.index.add(vectors)

    def _encode(self, batch: QueryBatch) -> torch.Tensor:
        """The model call (under the lock, in inference mode)."""
        self.model_calls += 1
        return self.model.query_vectors(
            batch.ids, batch.timestamps, batch.lengths, self._input_table()
        ).float()  # (B, D)

    def _input_table(self) -> torch.Tensor:
        """The raw vectors of every item, the encoder's inputs (as evaluation computes them once),
        recomputed when items were added since."""
        if self._table is None or self._table.shape[0] != self.model.items.num_items + 1:
            self._table = self.model.item_table()  # (N+1, D)
        return self._table

    def _collate(self, prepared: Sequence[PreparedQuery]) -> QueryBatch:
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


def _allowed_rows(masks: Sequence[np.ndarray | None], n: int) -> np.ndarray | None:
    """The queries' filter masks for a search over ``n`` item rows: None (no query has one), one
    shared (N+1,) mask (all share it), or (B, N+1), all True for a query without one."""
    if all(m is None for m in masks):
        return None
    first = masks[0]
    if first is not None and all(m is first for m in masks):
        return _fit(first, n)
    rows = np.ones((len(masks), n), dtype=bool)  # (B, N+1)
    for row, m in enumerate(masks):
        if m is not None:
            rows[row] = _fit(m, n)
    return rows


def _fit(mask: np.ndarray, n: int) -> np.ndarray:
    """An (N+1,) mask cut or padded (False: items added since it was made) to ``n`` rows."""
    if mask.shape[0] >= n:
        return mask[:n]
    return np.concatenate([mask, np.zeros(n - mask.shape[0], dtype=bool)])
