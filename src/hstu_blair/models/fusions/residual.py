"""``residual`` (ours): whitened, reduced text first, the ID a zero-initialised residual."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from hstu_blair.models.fusions.common import (
    INIT_STD,
    IdPartOptions,
    id_keep,
    init_id_part,
    pca_whitening,
    truncated_normal_,
)
from hstu_blair.models.fusions.registry import FusionSpec, register_fusion


@dataclass(frozen=True)
class ResidualOptions(IdPartOptions):
    """Options of ``residual``."""

    id_dropout: float = field(
        default=0.1, metadata={"doc": "share of items whose ID part each training step drops"}
    )
    text_rank: int = field(default=64, metadata={"doc": "text directions kept (0 = all)"})
    text_whiten: bool = field(
        default=True, metadata={"doc": "scale each text direction to unit variance (else one common scale)"}
    )

    def check(self) -> None:
        super().check()
        if self.text_rank < 0:
            raise ValueError(f"text_rank must be >= 0, got {self.text_rank}")


class ResidualFusion(nn.Module):
    """Text first, the ID a learned residual (ours): ``e = W_t whiten(text[i]) + b_t + m * ID[i]``.

    - ``whiten`` (:func:`pca_whitening`, fixed at construction from the catalogue's rows 1..n and
      kept in the checkpoint) removes the anisotropy of frozen sentence vectors and keeps
      ``text_rank`` directions, so the step's projection is ``text_rank x D`` instead of
      ``d_text x D``: text costs about as much as an ID table.
    - ``ID`` starts at zero, so every item starts as its text, and learns what the text misses.
    - ``m`` (training only) drops the ID of each item with probability ``id_dropout`` at every step,
      the same draw for all of the item's occurrences in the step (inputs, positives, negatives):
      the text path alone must rank items, which is all it has for items never trained (cold
      items, items added at run time: their ID is zero). Not rescaled: at inference a warm item
      has its whole ID, a cold one none. ``id_min_count`` removes the ID of rarely trained items.

    The padding index maps to zero.
    """

    def __init__(
        self,
        num_items: int,
        d_model: int,
        text: torch.Tensor,
        options: ResidualOptions | None = None,
        item_counts: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        options = options or ResidualOptions()
        mean, whitening = pca_whitening(text[1:], options.text_rank, whiten=options.text_whiten)
        self.register_buffer("text_mean", mean)  # (d_text,)
        self.register_buffer("whitening", whitening)  # (d_text, r)
        r = whitening.shape[1]
        self.text_proj = nn.Linear(r, d_model)
        truncated_normal_(self.text_proj.weight.data, INIT_STD / r**0.5)  # e starts at the ID table's scale
        nn.init.zeros_(self.text_proj.bias)
        self.ids = nn.Embedding(num_items + 1, d_model, padding_idx=0)
        nn.init.zeros_(self.ids.weight)
        init_id_part(self, num_items, options, item_counts)

    def features(self, text: torch.Tensor) -> torch.Tensor:
        """(m, d_text) raw text -> (m, r) whitened features."""
        return (text - self.text_mean) @ self.whitening

    def forward(self, ids: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        return self._fuse(self.ids(ids), features, ids, ids != 0)  # (U, D)

    def all_rows(self, features: torch.Tensor) -> torch.Tensor:
        """Every item's vector, (n+1, D): the ID table itself instead of a lookup of every row."""
        real = torch.ones(features.shape[0], dtype=torch.bool, device=features.device)
        real[0] = False
        return self._fuse(self.ids.weight, features, None, real)  # (n+1, D)

    def _fuse(
        self, e_id: torch.Tensor, features: torch.Tensor, ids: torch.Tensor | None, real: torch.Tensor
    ) -> torch.Tensor:
        """``W_t f + b_t + m * ID`` for rows that are real items, 0 for padding; ``m`` drops IDs."""
        keep = id_keep(self, ids, real.shape)
        keep = real if keep is None else real & keep  # (U,)
        e_id = e_id * keep.unsqueeze(-1)  # (U, D)
        return (self.text_proj(features) + e_id) * real.unsqueeze(-1)  # (U, D) padding -> 0


SPEC = register_fusion(
    FusionSpec(
        name="residual",
        module=ResidualFusion,
        options=ResidualOptions,
        summary="ours: Linear(whitened top-r text) + a zero-initialised ID residual with ID dropout",
        ranks_items_without_id_row=True,
    )
)
