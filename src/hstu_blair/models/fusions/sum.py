"""``sum``: ID plus linearly projected text (the reference HSTU-BLaIR ``ItemEmbeddingWithText``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hstu_blair.models.fusions.common import (
    INIT_STD,
    TextRankOptions,
    id_keep,
    id_part,
    init_id_part,
    init_text_rank,
    low_rank_features,
    truncated_normal_,
)
from hstu_blair.models.fusions.registry import FusionSpec, register_fusion


@dataclass(frozen=True)
class SumOptions(TextRankOptions):
    """Options of ``sum`` (defaults: the paper's fusion)."""


class SumFusion(nn.Module):
    """``ID[i] + W_t text[i] + b_t`` (reference HSTU-BLaIR ``ItemEmbeddingWithText``).

    Projection weight and bias are truncated-normal(0.02) as in the reference; the padding id
    maps to ``ID[0] + b_t`` (masked downstream). With ``text_rank = r > 0`` the projection reads the
    text's top-r PCA-whitened directions (:func:`pca_whitening`, fixed at construction and kept in
    the checkpoint; init std 0.02/sqrt(r), divided by ``text_scale``), an r x D projection instead of
    d_text x D. The ID part
    follows :class:`IdPartOptions` (absent: a zero vector).
    """

    def __init__(
        self,
        num_items: int,
        d_model: int,
        text: torch.Tensor,
        options: SumOptions | None = None,
        item_counts: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        options = options or SumOptions()
        d_in = init_text_rank(self, text, options.text_rank, options.text_whiten, options.text_scale)
        self.ids = nn.Embedding(num_items + 1, d_model, padding_idx=0)
        self.text_proj = nn.Linear(d_in, d_model)
        truncated_normal_(self.ids.weight.data)
        reduced = options.text_rank > 0
        init_std = INIT_STD / (d_in**0.5 * options.text_scale) if reduced else INIT_STD
        truncated_normal_(self.text_proj.weight.data, init_std)
        truncated_normal_(self.text_proj.bias.data)
        init_id_part(self, num_items, options, item_counts)

    def features(self, text: torch.Tensor) -> torch.Tensor | None:
        """(m, d_text) raw text -> (m, r) whitened features; None (the raw text) when ``text_rank = 0``."""
        return low_rank_features(self, text)

    def forward(self, ids: torch.Tensor, text: torch.Tensor | None) -> torch.Tensor:
        return id_part(self, ids) + self.text_proj(text)  # (U, D)

    def all_rows(self, text: torch.Tensor) -> torch.Tensor:
        """Every id's vector, (n+1, D), the same as ``forward`` of ids 0..n: the ID table itself
        instead of a lookup of every row (no copy, no scatter in the backward), in two passes
        (``b_t + keep * ID``, then the projection's GEMM accumulating into it).

        Unlike a lookup, the padding row of the ID table is not cut off from the gradient here: it
        gets the padding vector's gradient, which is zero because every encoder masks its padding
        positions and no padding id is scored."""
        weight = self.ids.weight  # (n+1, D)
        keep = id_keep(self, None, weight.shape[:1])  # (n+1,) or None
        if keep is None:
            base = weight + self.text_proj.bias  # (n+1, D)
        else:
            base = torch.addcmul(self.text_proj.bias, weight, keep.unsqueeze(-1).to(weight.dtype))
        return torch.addmm(base, text, self.text_proj.weight.t())  # (n+1, D)


SPEC = register_fusion(
    FusionSpec(
        name="sum",
        module=SumFusion,
        options=SumOptions,
        summary="the paper's HSTU-BLaIR: ID + Linear(text)",
        ranks_items_without_id_row=lambda o: o.id_min_count > 0 or o.id_dropout > 0,
    )
)
