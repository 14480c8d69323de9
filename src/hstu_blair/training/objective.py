"""The training objective as a module (so ``DistributedDataParallel`` can wrap the whole step)."""

from __future__ import annotations

import torch
from torch import nn

from hstu_blair.models.losses import (
    full_softmax_loss,
    row_sampled_softmax_loss,
    sampled_softmax_loss,
    shared_negatives_loss,
)
from hstu_blair.models.sequential import SequentialModel
from hstu_blair.training.negatives import Negatives


class NextItemLoss(nn.Module):
    """Autoregressive sampled-softmax loss over every real position of a batch (SPEC §3).

    Position i of row b predicts ``targets[b, i]``. The negatives' layout (see
    :mod:`hstu_blair.training.negatives`) decides how their logits are computed: per-row
    negatives (B, R) with one batched (B, T, D) x (B, D, R) product, per-position ones (P, R)
    with a (P, R, D) gather, shared ones (R,) with one (P, D) x (D, R) matmul, and all items
    (n,) with one (P, D) x (D, n) matmul and a plain cross-entropy (:func:`full_softmax_loss`).
    Inputs, positives and negatives are embedded in one call, so each distinct item is embedded
    once per step.
    """

    def __init__(self, model: SequentialModel, temperature: float = 0.05) -> None:
        super().__init__()
        self.model = model
        self.temperature = temperature

    def forward(
        self,
        ids: torch.Tensor,  # (B, T)
        timestamps: torch.Tensor,  # (B, T+1)
        lengths: torch.Tensor,  # (B,)
        targets: torch.Tensor,  # (B, T)
        negatives: Negatives,
    ) -> torch.Tensor:
        T = ids.shape[1]
        valid = torch.arange(T, device=ids.device)[None, :] < lengths[:, None]  # (B, T)
        neg_ids = negatives.ids
        if negatives.mode == "per-row":  # shared by the positions of a row: no (P, R, D) gather
            states, pos_vectors, neg_vectors = self.model.forward_with_items(
                ids, timestamps, lengths, targets, neg_ids
            )  # (B, T, D), (B, T, D), (B, R, D)
            return row_sampled_softmax_loss(
                states, valid, targets, pos_vectors, neg_ids, neg_vectors, self.temperature
            )
        pos_ids = targets[valid]  # (P,)
        if negatives.mode == "all":  # every item of the pool: the targets' vectors are among them
            states, item_vectors = self.model.forward_with_items(ids, timestamps, lengths, neg_ids)
            return full_softmax_loss(states[valid], pos_ids, neg_ids, item_vectors, self.temperature)
        states, pos_vectors, neg_vectors = self.model.forward_with_items(
            ids, timestamps, lengths, pos_ids, neg_ids
        )  # (B, T, D), (P, D), and (R, D) or (P, R, D)
        query = states[valid]  # (P, D)
        if negatives.mode == "shared":
            return shared_negatives_loss(query, pos_ids, pos_vectors, neg_ids, neg_vectors, self.temperature)
        return sampled_softmax_loss(query, pos_ids, pos_vectors, neg_ids, neg_vectors, self.temperature)
