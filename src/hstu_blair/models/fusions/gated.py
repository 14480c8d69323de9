"""``gated`` (ours): ID plus a per-dimension gated projection of the standardised text."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hstu_blair.models.fusions.common import (
    INIT_STD,
    TextRankOptions,
    id_part,
    init_id_part,
    init_text_rank,
    low_rank_features,
    text_statistics,
    truncated_normal_,
)
from hstu_blair.models.fusions.registry import FusionSpec, register_fusion


@dataclass(frozen=True)
class GatedOptions(TextRankOptions):
    """Options of ``gated``: the ID-part rules and the text's rank (0: every standardised dimension)."""


class GatedFusion(nn.Module):
    """Id vector plus a gated projection of standardised text (ours).

    ``e = ID[i] + g * t`` with ``t = W_t standardise(text[i])`` and
    ``g = sigmoid(W_g [ID[i]; t] + b_g)`` per dimension (``b_g = 0``, so g starts near 0.5).

    Rationale: the ``sum`` fusion adds the raw projected text with the same weight for every
    item. Frozen CLS vectors are anisotropic (a component shared by all items and a few dominant
    dimensions), so that projection adds a near-constant offset that makes item vectors alike
    after L2 normalisation; standardising each text dimension with fixed catalogue statistics
    (as ``TextFusion``) removes it. The gate sees the item's id vector, so frequently trained
    items can turn down text dimensions their id vector explains better, while rare items (id
    vectors near their 0.02 init) keep the text. Cost over ``sum``: 2*D*D + D parameters.
    With ``text_rank = r > 0`` the text is the top-r PCA-whitened directions instead of every
    standardised dimension (:func:`pca_whitening`, fixed at construction, kept in the checkpoint),
    so the projection is r x D and a step costs about what an ID-only step does.
    The padding id maps to a zero vector; an absent ID part (:class:`IdPartOptions`) is zero.
    """

    def __init__(
        self,
        num_items: int,
        d_model: int,
        text: torch.Tensor,
        options: GatedOptions | None = None,
        item_counts: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        options = options or GatedOptions()
        d_in = init_text_rank(self, text, options.text_rank, options.text_whiten, options.text_scale)
        if options.text_rank == 0:
            mean, std = text_statistics(text)
            self.register_buffer("text_mean", mean)  # (d_text,)
            self.register_buffer("text_std", std)  # (d_text,)
        self.ids = nn.Embedding(num_items + 1, d_model, padding_idx=0)
        self.text_proj = nn.Linear(d_in, d_model)
        self.gate = nn.Linear(2 * d_model, d_model)
        truncated_normal_(self.ids.weight.data)
        scale = options.text_scale if options.text_rank > 0 else 1.0
        truncated_normal_(self.text_proj.weight.data, INIT_STD / scale)
        nn.init.zeros_(self.text_proj.bias)
        truncated_normal_(self.gate.weight.data)
        nn.init.zeros_(self.gate.bias)
        init_id_part(self, num_items, options, item_counts)

    def features(self, text: torch.Tensor) -> torch.Tensor | None:
        """(m, d_text) raw text -> (m, r) whitened features; None (the raw text) when ``text_rank = 0``."""
        return low_rank_features(self, text)

    def forward(self, ids: torch.Tensor, text: torch.Tensor | None) -> torch.Tensor:
        e = id_part(self, ids)  # (U, D)
        x = text if self.text_rank > 0 else (text - self.text_mean) / self.text_std  # (U, d_in)
        t = self.text_proj(x)  # (U, D)
        g = torch.sigmoid(self.gate(torch.cat([e, t], dim=-1)))  # (U, D)
        return (e + g * t) * (ids != 0).unsqueeze(-1)  # (U, D) padding -> 0


SPEC = register_fusion(
    FusionSpec(
        name="gated",
        module=GatedFusion,
        options=GatedOptions,
        summary="ours: ID + a per-dimension gate times Linear(standardised text)",
        ranks_items_without_id_row=True,
    )
)
