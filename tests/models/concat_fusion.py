"""A fusion defined outside the package, in ONE module: what a contributor writes to add a fusion.

``plugin-concat``: ``W [ID[i]; scale * P text[i]]``. Importing this module registers it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from hstu_blair.models.fusions import FusionSpec, register_fusion
from hstu_blair.models.fusions.common import IdPartOptions, id_part, init_id_part, truncated_normal_


@dataclass(frozen=True)
class ConcatOptions(IdPartOptions):
    """Options of ``concat``."""

    scale: float = field(default=1.0, metadata={"doc": "weight of the text half"})

    def check(self) -> None:
        super().check()
        if self.scale <= 0:
            raise ValueError(f"scale must be > 0, got {self.scale}")


class ConcatFusion(nn.Module):
    """``W [ID[i]; scale * P text[i]]``; padding maps to 0."""

    def __init__(
        self,
        num_items: int,
        d_model: int,
        text: torch.Tensor,
        options: ConcatOptions | None = None,
        item_counts: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        options = options or ConcatOptions()
        self.scale = options.scale
        self.ids = nn.Embedding(num_items + 1, d_model, padding_idx=0)
        self.text_proj = nn.Linear(text.shape[1], d_model)
        self.out = nn.Linear(2 * d_model, d_model)
        truncated_normal_(self.ids.weight.data)
        init_id_part(self, num_items, options, item_counts)

    def forward(self, ids: torch.Tensor, text: torch.Tensor | None) -> torch.Tensor:
        e = id_part(self, ids)  # (U, D)
        x = self.out(torch.cat([e, self.scale * self.text_proj(text)], dim=-1))  # (U, D)
        return x * (ids != 0).unsqueeze(-1)


SPEC = register_fusion(
    FusionSpec(
        name="plugin-concat",
        module=ConcatFusion,
        options=ConcatOptions,
        summary="test plug-in: Linear([ID; text])",
        ranks_items_without_id_row=lambda o: o.id_dropout > 0,
    )
)
