"""One optimisation step: loss on a batch, backward, optimizer step (the body of the training loop).

Kept apart so the benchmarks time exactly the code the training recipe runs.
"""

from __future__ import annotations

import torch

from hstu_blair.training.batching import Batch
from hstu_blair.training.negatives import Negatives


def train_step(
    objective: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    negatives: Negatives,
    autocast: torch.autocast | None = None,
) -> torch.Tensor:
    """Forward, backward and update on one batch; returns the (detached) loss.

    Args:
        objective: a :class:`~hstu_blair.training.objective.NextItemLoss` (or its DDP wrapper).
        optimizer: the optimizer over the model's parameters.
        batch: a training batch (``batching.train_batch``) on the model's device.
        negatives: the batch's negatives on the model's device.
        autocast: mixed-precision context for the forward pass, or None.
    """
    if autocast is None:
        loss = objective(batch.ids, batch.timestamps, batch.lengths, batch.targets, negatives)
    else:
        with autocast:
            loss = objective(batch.ids, batch.timestamps, batch.lengths, batch.targets, negatives)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()
