"""A sequential recommender: item embeddings + a sequence model (HSTU or SASRec), scored by dot product.

``similarity="cosine"`` (the reference, SPEC §2.6): queries (encoder states) and items are
L2-normalised, so scores are cosines and the loss divides them by a temperature.
``similarity="dot"``: both stay raw, so scores are plain dot products (the original SASRec's, and
most SASRec implementations' logits); the loss then uses a temperature of 1.

The sequence model runs on groups of rows of similar length, each trimmed to its longest row
(``length_groups``): its outputs at real positions do not depend on the padded width, so
this equals one call on the whole batch, but skips most of the padding of a batch with skewed lengths
(Amazon 5-core: mean 8.6 items, batches padded to 50; about 3x faster training and evaluation on CPU).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hstu_blair.models.gather import gather_rows
from hstu_blair.models.item_embedding import ItemEmbedding

ITEM_EPS = 1e-6  # clamp of the item-vector norm (reference l2_norm_eps)
SIMILARITIES = ("cosine", "dot")
"""How queries meet items: cosine (both L2-normalised; the reference) or a plain dot product."""
MIN_GROUP_WIDTH = 8  # rows of length <= 8 form one group; longer rows are grouped by powers of two


def length_groups(lengths: torch.Tensor, min_width: int = MIN_GROUP_WIDTH) -> list[tuple[torch.Tensor, int]]:
    """Rows grouped by length, as ``(row indices, width)`` with width = the group's longest row.

    Groups break where the length passes ``min_width``, ``2 * min_width``, ``4 * min_width``, ...,
    so a group is padded to at most twice its shortest row's length (rows up to ``min_width`` share
    one group). Empty groups are left out; the row indices of all groups together are a permutation
    of ``0..B-1``.

    Args:
        lengths: (B,) long number of real positions per row (>= 1).
        min_width: width of the first group.
    """
    order = torch.argsort(lengths)  # (B,) shortest first
    sorted_len = lengths[order]  # (B,)
    longest = int(sorted_len[-1])
    bounds = [min_width]
    while bounds[-1] < longest:
        bounds.append(2 * bounds[-1])
    ends = torch.searchsorted(sorted_len, torch.tensor(bounds, device=lengths.device), right=True).tolist()
    groups, start = [], 0
    for end in ends:
        if end > start:
            groups.append((order[start:end], int(sorted_len[end - 1])))
            start = end
    return groups


class SequentialModel(nn.Module):
    """Item embeddings fed to a sequence model.

    Args:
        items: the item embedding (any fusion).
        backbone: an ``HSTU`` or ``SASRec`` of the same width, called as
            ``backbone(item_emb, ids, timestamps, lengths) -> (B, T, D)`` states, L2-normalised
            for ``cosine`` and raw for ``dot``.
        similarity: ``cosine`` (items L2-normalised) or ``dot`` (items raw).

    Raises:
        ValueError: the widths differ, or an unknown similarity.

    Batch layout (all methods): ``ids`` (B, T) long right-padded with 0, ``timestamps`` (B, T+1)
    long with the next-event time at column ``lengths[b]`` (HSTU contract; SASRec ignores it),
    ``lengths`` (B,) long >= 1.
    """

    def __init__(self, items: ItemEmbedding, backbone: nn.Module, similarity: str = "cosine") -> None:
        super().__init__()
        if items.d_model != backbone.d_model:
            raise ValueError(f"item width {items.d_model} != sequence model width {backbone.d_model}")
        if similarity not in SIMILARITIES:
            raise ValueError(f"similarity {similarity!r}; valid: {', '.join(SIMILARITIES)}")
        self.items = items
        self.backbone = backbone
        self.similarity = similarity

    def _candidates(self, raw: torch.Tensor) -> torch.Tensor:
        """Item vectors as scored: L2-normalised for ``cosine``, raw for ``dot``."""
        return F.normalize(raw, dim=-1, eps=ITEM_EPS) if self.similarity == "cosine" else raw

    def _encode_groups(
        self, item_emb: torch.Tensor, ids: torch.Tensor, timestamps: torch.Tensor, lengths: torch.Tensor
    ) -> torch.Tensor:
        """The backbone on each ``length_groups`` group trimmed to its width, reassembled as (B, T, D)."""
        B, T, _ = item_emb.shape
        groups = length_groups(lengths)
        if len(groups) == 1 and groups[0][1] == T:
            return self.backbone(item_emb, ids, timestamps, lengths)  # (B, T, D)
        parts, rows = [], []
        for group, width in groups:
            states = self.backbone(
                item_emb[group, :width], ids[group, :width], timestamps[group, : width + 1], lengths[group]
            )  # (G, width, D)
            parts.append(F.pad(states, (0, 0, 0, T - width)))  # (G, T, D) padded rows are 0
            rows.append(group)
        inverse = torch.argsort(torch.cat(rows))  # (B,) position of each row in the groups' order
        return torch.cat(parts).index_select(0, inverse)  # (B, T, D)

    def forward(
        self,
        ids: torch.Tensor,
        timestamps: torch.Tensor,
        lengths: torch.Tensor,
        item_table: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """States at every position, (B, T, D), L2-normalised for ``cosine``; padded rows are 0.

        ``item_table``: the raw vectors of every item (:meth:`item_table`), computed once by a
        caller that encodes many batches with fixed weights (evaluation, serving); the inputs are
        then looked up in it instead of embedded again.
        """
        item_emb = self.items(ids) if item_table is None else F.embedding(ids, item_table)  # (B, T, D)
        return self._encode_groups(item_emb, ids, timestamps, lengths)  # (B, T, D)

    def query_vectors(
        self,
        ids: torch.Tensor,
        timestamps: torch.Tensor,
        lengths: torch.Tensor,
        item_table: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The state at each row's last real position ``lengths - 1``, (B, D): what items are scored
        against (the query time sits in ``timestamps[b, lengths[b]]``). ``item_table``: see
        :meth:`forward`."""
        states = self.forward(ids, timestamps, lengths, item_table)  # (B, T, D)
        rows = torch.arange(ids.shape[0], device=ids.device)  # (B,)
        return states[rows, lengths - 1]  # (B, D)

    def item_table(self) -> torch.Tensor:
        """Raw (unnormalised) vectors of every item index 0..n, (n+1, D): the encoder inputs."""
        return self.items.all_items()

    def item_vectors(
        self, ids: torch.Tensor | None = None, table: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Item vectors as scored (L2-normalised for ``cosine``) of ``ids`` (shape ``ids.shape + (D,)``),
        or of every id 0..n as (n+1, D) when ``ids`` is None (row 0 is padding; exclude it when
        ranking). ``table``: a precomputed :meth:`item_table` to use instead of embedding again."""
        if table is not None:
            raw = table if ids is None else F.embedding(ids, table)  # (..., D)
        else:
            raw = self.items.all_items() if ids is None else self.items(ids)  # (..., D)
        return self._candidates(raw)

    def forward_with_items(
        self,
        ids: torch.Tensor,
        timestamps: torch.Tensor,
        lengths: torch.Tensor,
        *extra_ids: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        """One training forward that embeds each distinct item of ``ids`` and of every ``extra_ids``
        tensor (positives, negatives) once: one item-embedding call and one (cosine) normalisation over the
        distinct ids, then one gather per tensor. With negatives (B*R or P*R ids, most of them
        repeats) this keeps the embedding, the normalisation and their backward at catalogue size.

        Returns:
            states (B, T, D) as ``forward``, then the scored vectors of each ``extra_ids`` tensor
            (``extra.shape + (D,)``), in order.
        """
        B, T = ids.shape
        all_ids = torch.cat([ids.reshape(-1), *(e.reshape(-1) for e in extra_ids)])  # (B*T + X,)
        raw, inverse = self.items.rows_and_index(all_ids)  # (U, D) distinct ids or (n+1, D), (B*T + X,)
        vectors = self._candidates(raw)  # (U, D)
        parts = inverse.split([B * T, *(e.numel() for e in extra_ids)])  # each tensor's positions
        # one gather per tensor, their backward adding into one (U, D) buffer (gather_rows)
        if vectors is raw:
            item_emb, *scored = gather_rows(raw, *parts)
        else:
            (item_emb,) = gather_rows(raw, parts[0])
            scored = list(gather_rows(vectors, *parts[1:])) if extra_ids else []
        states = self._encode_groups(item_emb.view(B, T, -1), ids, timestamps, lengths)  # (B, T, D)
        return (states, *(v.view(*e.shape, -1) for v, e in zip(scored, extra_ids)))
