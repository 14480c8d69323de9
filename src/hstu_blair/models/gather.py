"""Several row gathers from one tensor whose backward fills one gradient buffer.

A training step reads the same (U, D) item vectors three times (the encoder's inputs, the targets,
the negatives). Three ``index_select`` calls cost three (U, D) zero buffers in the backward and two
more passes to add them up; :func:`gather_rows` allocates one buffer and adds every gradient into
it, the same gradient up to float rounding of the sum order.
"""

from __future__ import annotations

from typing import Any

import torch


class _GatherRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, source: torch.Tensor, *indices: torch.Tensor) -> tuple[torch.Tensor, ...]:
        ctx.set_materialize_grads(False)  # an unused output costs nothing in the backward
        ctx.save_for_backward(*indices)
        ctx.source_shape = source.shape
        return tuple(source.index_select(0, index) for index in indices)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        indices = ctx.saved_tensors
        present = [(i, g) for i, g in zip(indices, grads) if g is not None]
        if not ctx.needs_input_grad[0] or not present:
            return (None, *(None for _ in indices))
        grad = present[0][1].new_zeros(ctx.source_shape)  # (U, D)
        for index, g in present:
            grad.index_add_(0, index, g.reshape(index.numel(), -1))
        return (grad, *(None for _ in indices))


def gather_rows(source: torch.Tensor, *indices: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``source.index_select(0, index)`` for each 1-D ``index``, with one gradient buffer.

    Args:
        source: (U, D) rows.
        indices: 1-D long tensors of row positions into ``source``.

    Returns:
        one (len(index), D) tensor per index, in order.
    """
    return _GatherRows.apply(source, *indices)
