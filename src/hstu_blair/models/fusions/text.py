"""``text``: text only, no ID table."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hstu_blair.models.fusions.common import text_statistics
from hstu_blair.models.fusions.registry import FusionSpec, NoOptions, register_fusion


class TextFusion(nn.Module):
    """Text only: ``W2 GELU(W1 standardise(text))``, no id table, so every item with text gets a vector.

    An item absent from training is scored from its text alone (cold start); two items with the
    same text get the same vector. ``standardise`` subtracts the per-dimension catalogue mean and
    divides by the std (fixed statistics of rows 1..n at construction, kept in the checkpoint):
    frozen CLS vectors are anisotropic (a component shared by all items and a few dominant
    dimensions), which would otherwise make all projected items alike. Padding maps to 0.
    """

    def __init__(
        self,
        num_items: int,
        d_model: int,
        text: torch.Tensor,
        options: NoOptions | None = None,
        item_counts: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        mean, std = text_statistics(text)
        self.register_buffer("text_mean", mean)  # (d_text,)
        self.register_buffer("text_std", std)  # (d_text,)
        self.fc1 = nn.Linear(text.shape[1], d_model)
        self.fc2 = nn.Linear(d_model, d_model)
        nn.init.zeros_(self.fc1.bias)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, ids: torch.Tensor, text: torch.Tensor | None) -> torch.Tensor:
        t = (text - self.text_mean) / self.text_std  # (U, d_text)
        x = self.fc2(F.gelu(self.fc1(t)))  # (U, D)
        return x * (ids != 0).unsqueeze(-1)  # (U, D) padding -> 0


SPEC = register_fusion(
    FusionSpec(
        name="text",
        module=TextFusion,
        summary="text only (an MLP of the standardised text), no ID table",
        has_id_table=False,
        ranks_items_without_id_row=True,
    )
)
