"""Item embeddings: an id table, a projection of frozen text vectors, or both fused.

An ``ItemEmbedding`` maps item ids of any shape (0 = padding) to raw, unnormalised D-dim
vectors. The same vectors serve as encoder inputs, positives, negatives and ranking candidates
(SPEC §2.2), so text enters the model only through this module.

Fusions are looked up by name in the registry (:mod:`hstu_blair.models.fusions`, one module each:
``id``, ``sum``, ``text``, ``gated``, ``residual``); each declares its options and capabilities there.

A fusion may transform the frozen text once (``features``; ``residual``, and ``sum`` with a
``text_rank``, whiten and reduce it); the transformed matrix is what each step reads.

When a fusion has a text term, each call embeds every *distinct* id once (:func:`unique_items`)
and gathers the results, instead of projecting a 768-d row per occurrence: padding and repeated
items (and the whole batch's negatives) collapse to at most n+1 rows. When the distinct ids are
most of the catalogue (a training step with per-row negatives touches about 90% of it), the fusion
runs on the whole contiguous text matrix instead (:data:`FULL_TABLE_SHARE`,
:meth:`ItemEmbedding.rows_and_index`): one matrix product, no gather of 768-d rows, and the ids
index the (n+1, D) result directly; the same vectors up to float rounding.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hstu_blair.models.fusions import FUSIONS, FusionSpec, get_fusion  # noqa: F401  (FUSIONS re-exported)
from hstu_blair.models.fusions.common import (  # noqa: F401  (re-exported)
    INIT_STD,
    drop_id_rows,
    grow_id_table,
    pca_whitening,
    text_statistics,
    truncated_normal_,
)

FULL_TABLE_SHARE = 0.5
"""Above this share of the catalogue among the distinct ids, text fusions embed the whole catalogue
(one GEMM over the contiguous text matrix) and pick rows, rather than gathering text rows first."""


def unique_items(ids: torch.Tensor, num_items: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.unique(ids, return_inverse=True)`` for item indices in ``0..num_items``, without sorting.

    A presence mask over the catalogue gives the distinct indices in ascending order and a running
    count maps each id to its position among them: O(n + len(ids)), several times faster than the
    sort ``torch.unique`` does, and the same result.

    Args:
        ids: long tensor of any shape, values in 0..num_items.
        num_items: n.

    Returns:
        (U,) distinct indices, ascending, and ``ids.shape`` positions into them.
    """
    flat = ids.reshape(-1)
    present = torch.zeros(num_items + 1, dtype=torch.bool, device=ids.device)  # (n+1,)
    present[flat] = True
    position = torch.cumsum(present, 0) - 1  # (n+1,) rank of each present index
    return present.nonzero().squeeze(1), position.index_select(0, flat).view(ids.shape)


class ItemEmbedding(nn.Module):
    """Item ids -> raw D-dim item vectors, with an optional frozen text matrix fused in.

    Args:
        num_items: n; valid ids are 1..n, 0 is padding.
        d_model: D, the output width.
        fusion: a registered fusion name (``FUSIONS``: ``id``, ``sum``, ``text``, ``gated``,
            ``residual``, and any fusion registered since).
        text: (n+1, d_text) float32 text vectors (row 0 = padding), required by every fusion
            that uses text. Kept as a frozen, non-persistent buffer: checkpoints do not contain it,
            the builder passes it again from the embedding store.
        item_counts: (n+1,) training interactions per item, for fusions whose ``id_min_count`` is
            set (kept in the checkpoint; None: zeros until a checkpoint is loaded).
        fusion_options: the fusion's options (its options dataclass's fields, e.g. ``residual``:
            ``id_dropout``, ``text_rank``, ``text_whiten``; defaults for the ones not given).

    Raises:
        ValueError: unknown fusion (the message lists the valid ones) or option, text missing,
            not needed, or of the wrong shape or dtype.
    """

    def __init__(
        self,
        num_items: int,
        d_model: int,
        fusion: str = "id",
        text: torch.Tensor | None = None,
        item_counts: torch.Tensor | None = None,
        **fusion_options: Any,
    ):
        super().__init__()
        spec = get_fusion(fusion)
        if num_items < 1 or d_model < 1:
            raise ValueError(f"num_items and d_model must be >= 1, got {num_items} and {d_model}")
        options = spec.make_options(fusion_options)
        if spec.uses_text:
            if text is None:
                raise ValueError(f"fusion {fusion!r} needs a text matrix of shape ({num_items + 1}, d_text)")
            if text.dim() != 2 or text.shape[0] != num_items + 1:
                raise ValueError(
                    f"text matrix must have shape ({num_items + 1}, d_text) (row 0 = padding), "
                    f"got {tuple(text.shape)}"
                )
            if not text.is_floating_point():
                raise ValueError(f"text matrix must be floating point, got {text.dtype}")
            self.register_buffer("text", text.detach().to(torch.float32), persistent=False)
        elif text is not None:
            raise ValueError(f"fusion {fusion!r} does not use text; pass text=None")
        else:
            self.text = None
        self.fusion_name = fusion
        self.spec: FusionSpec = spec
        self.options = options
        self.fusion = spec.module(num_items, d_model, self.text, options, item_counts)
        self._num_items = num_items
        self._d_model = d_model
        # the fusion's transform of the text (residual: whitened), None when it reads text as it is
        self.register_buffer("_features", None, persistent=False)
        self._refresh_features()
        self.register_load_state_dict_post_hook(lambda module, _: module._refresh_features())

    @property
    def ranks_items_without_id_row(self) -> bool:
        """Whether the fusion was trained to rank items whose ID part is absent (added, cold items)."""
        return self.spec.ranks_without_id_row(self.options)

    def _transform(self, text: torch.Tensor) -> torch.Tensor | None:
        """The fusion's transform of text rows (``features``), or None when it reads them as they are."""
        transform = getattr(self.fusion, "features", None)
        if transform is None:
            return None
        with torch.no_grad():
            return transform(text)

    @property
    def features(self) -> torch.Tensor | None:
        """(n+1, d) what each step reads: the text, or the fusion's transform of it."""
        return self.text if self._features is None else self._features

    def _refresh_features(self) -> None:
        """Recompute the transformed text (after construction, and after loading weights, since a
        transform such as ``residual``'s whitening is part of the checkpoint)."""
        if self.text is not None:
            self._features = self._transform(self.text)

    @property
    def num_items(self) -> int:
        """n, the number of real items (ids 1..n)."""
        return self._num_items

    @property
    def d_model(self) -> int:
        """D, the width of the item vectors."""
        return self._d_model

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Raw item vectors of ``ids`` (any shape, long) -> ``ids.shape + (D,)``."""
        if self.text is None:
            return self.fusion(ids, None)  # (..., D)
        rows, index = self.rows_and_index(ids.reshape(-1))  # (R, D), (N,)
        # index_select: its backward (index_add) is faster on CPU than advanced indexing's
        return rows.index_select(0, index).view(*ids.shape, -1)  # (..., D)

    def rows_and_index(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw vectors (R, D) that ``ids`` (N,) gather from, and the (N,) index into them: the
        distinct ids' vectors and the inverse, or, when the distinct ids are at least
        :data:`FULL_TABLE_SHARE` of a text fusion's catalogue, every id's (n+1, D) and ``ids`` itself
        (one gather instead of two, and no (U, D) buffer in the backward)."""
        unique_ids, inverse = unique_items(ids, self._num_items)  # (U,), (N,)
        if self.text is not None and unique_ids.numel() >= FULL_TABLE_SHARE * (self._num_items + 1):
            return self.all_items(), ids  # (n+1, D), (N,)
        return self.of_unique(unique_ids), inverse  # (U, D), (N,)

    def of_unique(self, unique_ids: torch.Tensor) -> torch.Tensor:
        """Raw vectors (U, D) of distinct item indices (e.g. from :func:`unique_items`), each row
        embedded on its own; :meth:`rows_and_index` decides when the whole catalogue is cheaper."""
        if self.text is None:
            return self.fusion(unique_ids, None)  # (U, D)
        return self.fusion(unique_ids, self.features.index_select(0, unique_ids))  # (U, D)

    def add_text_items(self, text_rows: torch.Tensor) -> None:
        """Grow the catalogue by ``len(text_rows)`` items known only by their text (ids n+1..n+m).

        The rows are appended to the frozen text matrix; fusions with an id table get new rows with
        no ID part (:meth:`drop_id_rows`), so the new items' vectors come from text alone.

        Raises:
            ValueError: the fusion has no text path (``id``), or the rows have the wrong width.
        """
        if self.text is None:
            raise ValueError(f"fusion {self.fusion_name!r} has no text path: items cannot be added by text")
        if text_rows.ndim != 2 or text_rows.shape[1] != self.text.shape[1]:
            raise ValueError(
                f"new text rows have shape {tuple(text_rows.shape)}; expected (m, {self.text.shape[1]})"
            )
        m = text_rows.shape[0]
        text_rows = text_rows.to(self.text)
        self.text = torch.cat([self.text, text_rows])  # (n+1+m, d_text)
        features = self._transform(text_rows)
        if features is not None:
            self._features = torch.cat([self._features, features])
        if self.spec.has_id_table:
            grow_id_table(self.fusion, m)
        self._num_items += m

    def drop_id_rows(self, rows: torch.Tensor) -> None:
        """Give the items ``rows`` (indices) no ID part, as items added by text have: the vectors of
        held-out cold items as serving would give them. A no-op for fusions without an ID table."""
        if self.spec.has_id_table:
            drop_id_rows(self.fusion, rows.to(self.fusion.ids.weight.device))

    def all_items(self) -> torch.Tensor:
        """Raw vectors of every id 0..n, shape (n+1, D); row 0 is the padding vector."""
        if hasattr(self.fusion, "all_rows"):
            return self.fusion.all_rows(self.features)  # (n+1, D)
        device = next(self.fusion.parameters()).device
        ids = torch.arange(self._num_items + 1, device=device)  # (n+1,)
        return self.fusion(ids, self.features)  # (n+1, D)
