"""A sequential recommender: item embeddings + a sequence encoder, scored by dot product.

Queries (encoder states) and items are L2-normalised, so scores are cosines (SPEC §2.6); the
temperature lives in the loss only.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from hstu_blair.models.item_embedding import ItemEmbedding

ITEM_EPS = 1e-6  # clamp of the item-vector norm (reference l2_norm_eps)


class SequenceEncoder(Protocol):
    """What ``SequentialModel`` needs from an encoder (``HSTUEncoder``, ``SASRecEncoder``)."""

    d_model: int
    max_len: int

    def __call__(
        self, item_emb: torch.Tensor, ids: torch.Tensor, timestamps: torch.Tensor, lengths: torch.Tensor
    ) -> torch.Tensor: ...


class SequentialModel(nn.Module):
    """Item embeddings fed to a sequence encoder.

    Args:
        items: the item embedding (any fusion).
        encoder: an ``HSTUEncoder`` or ``SASRecEncoder`` of the same width.

    Raises:
        ValueError: the widths differ.

    Batch layout (all methods): ``ids`` (B, T) long right-padded with 0, ``timestamps`` (B, T+1)
    long with the next-event time at column ``lengths[b]`` (HSTU contract; SASRec ignores it),
    ``lengths`` (B,) long >= 1.
    """

    def __init__(self, items: ItemEmbedding, encoder: nn.Module) -> None:
        super().__init__()
        if items.d_model != encoder.d_model:
            raise ValueError(f"item width {items.d_model} != encoder width {encoder.d_model}")
        self.items = items
        self.encoder = encoder

    def forward(self, ids: torch.Tensor, timestamps: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """L2-normalised states at every position, (B, T, D); padded rows are 0."""
        return self.encoder(self.items(ids), ids, timestamps, lengths)  # (B, T, D)

    def encode(self, ids: torch.Tensor, timestamps: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The state at each row's last real position ``lengths - 1``, (B, D)."""
        states = self.forward(ids, timestamps, lengths)  # (B, T, D)
        rows = torch.arange(ids.shape[0], device=ids.device)  # (B,)
        return states[rows, lengths - 1]  # (B, D)

    def item_vectors(self, ids: torch.Tensor | None = None) -> torch.Tensor:
        """L2-normalised item vectors of ``ids`` (shape ``ids.shape + (D,)``), or of every id
        0..n as (n+1, D) when ``ids`` is None (row 0 is padding; exclude it when ranking)."""
        raw = self.items.all_items() if ids is None else self.items(ids)  # (..., D)
        return F.normalize(raw, dim=-1, eps=ITEM_EPS)

    def forward_with_items(
        self, ids: torch.Tensor, timestamps: torch.Tensor, lengths: torch.Tensor, extra_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One training forward that embeds ``ids`` and ``extra_ids`` (e.g. negatives) in a single
        item-embedding call, so an id present in both has its text projected once.

        Returns:
            states (B, T, D) as ``forward``; normalised vectors of ``ids`` (B, T, D) (positives are
            a shifted slice of these); normalised vectors of ``extra_ids`` (``extra_ids.shape + (D,)``).
        """
        B, T = ids.shape
        all_ids = torch.cat([ids.reshape(-1), extra_ids.reshape(-1)])  # (B*T + X,)
        raw = self.items(all_ids)  # (B*T + X, D)
        item_emb = raw[: B * T].view(B, T, -1)  # (B, T, D)
        states = self.encoder(item_emb, ids, timestamps, lengths)  # (B, T, D)
        vectors = F.normalize(raw, dim=-1, eps=ITEM_EPS)  # (B*T + X, D)
        id_vectors = vectors[: B * T].view(B, T, -1)  # (B, T, D)
        extra_vectors = vectors[B * T :].view(*extra_ids.shape, -1)  # (..., D)
        return states, id_vectors, extra_vectors
