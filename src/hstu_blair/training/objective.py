"""The training objective as a module (so ``DistributedDataParallel`` can wrap the whole step)."""

from __future__ import annotations

import torch
from torch import nn

from hstu_blair.models.losses import sampled_softmax_from_logits, sampled_softmax_loss, shared_negatives_loss
from hstu_blair.models.sequential import SequentialModel


class NextItemLoss(nn.Module):
    """Autoregressive sampled-softmax loss over every real position of a batch (SPEC §3).

    Position i of row b predicts ``targets[b, i]``. Negatives are either shared by the whole batch
    (``neg_ids`` of shape (R,), one matmul), by each row (``(B, R)``, ``per_row=True``: one batched
    matmul, B*R distinct draws per step), or drawn per position (``(P, R)``, the reference).
    Inputs, positives and negatives are embedded in one call, so with text fusion each distinct
    item's text is projected once per step.
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
        neg_ids: torch.Tensor,  # (R,) shared, (B, R) per row, or (P, R) per position
        per_row: bool = False,
    ) -> torch.Tensor:
        T = ids.shape[1]
        valid = torch.arange(T, device=ids.device)[None, :] < lengths[:, None]  # (B, T)
        pos_ids = targets[valid]  # (P,)
        extra = torch.cat([pos_ids, neg_ids.reshape(-1)])  # (P + R) or (P + P*R)
        states, _, extra_vectors = self.model.forward_with_items(ids, timestamps, lengths, extra)
        query = states[valid]  # (P, D)
        P = pos_ids.numel()
        pos_vectors = extra_vectors[:P]  # (P, D)
        neg_vectors = extra_vectors[P:].view(*neg_ids.shape, -1)  # (R, D) or (P, R, D)
        if (
            per_row
        ):  # negatives shared by the positions of one row: (B, T, D) x (B, D, R), no (P, R, D) gather
            neg_vectors = extra_vectors[P:].view(*neg_ids.shape, -1)  # (B, R, D)
            logits = torch.bmm(states, neg_vectors.transpose(1, 2))[valid]  # (P, R)
            neg_of_pos = neg_ids[valid.nonzero()[:, 0]]  # (P, R) ids, for collision masking only
            return sampled_softmax_from_logits(
                query, pos_vectors, pos_ids, logits, neg_of_pos, self.temperature
            )
        if neg_ids.dim() == 1:
            return shared_negatives_loss(query, pos_ids, pos_vectors, neg_ids, neg_vectors, self.temperature)
        return sampled_softmax_loss(query, pos_ids, pos_vectors, neg_ids, neg_vectors, self.temperature)
