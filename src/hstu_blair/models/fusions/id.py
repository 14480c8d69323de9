"""``id``: an ID table only (the reference ``LocalEmbeddingModule``)."""

from __future__ import annotations

import torch
from torch import nn

from hstu_blair.models.fusions.common import truncated_normal_
from hstu_blair.models.fusions.registry import FusionSpec, NoOptions, register_fusion


class IdFusion(nn.Module):
    """Id table only (reference ``LocalEmbeddingModule``), truncated-normal(0.02) init.

    Row 0 (padding) is also overwritten by the init, as in the reference; ``padding_idx=0``
    keeps it out of the gradient, and padded positions are masked downstream.
    """

    def __init__(
        self,
        num_items: int,
        d_model: int,
        text: torch.Tensor | None = None,
        options: NoOptions | None = None,
        item_counts: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.ids = nn.Embedding(num_items + 1, d_model, padding_idx=0)
        truncated_normal_(self.ids.weight.data)

    def forward(self, ids: torch.Tensor, text: torch.Tensor | None) -> torch.Tensor:
        return self.ids(ids)  # (..., D)


SPEC = register_fusion(
    FusionSpec(
        name="id",
        module=IdFusion,
        summary="an ID table only (HSTU, SASRec as published)",
        uses_text=False,
        has_id_table=True,
        ranks_items_without_id_row=False,
    )
)
