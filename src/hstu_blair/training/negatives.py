"""Negative item draws for the sampled softmax: one sampler, one mode for a whole run.

Modes (``train.negatives``):

- ``per-row`` (default): R negatives per user row, shared by that row's positions; ids (B, R).
- ``per-position`` (the reference, SPEC §3): R negatives per training position; ids (P, R).
- ``shared``: one set of R negatives for the whole batch; ids (R,).
- ``all``: every item of the pool, the same for every batch (a full softmax; R is ignored); ids (n,).

Other draws are uniform with replacement over the pool: the whole catalogue 1..n (the reference) or a
given set of item indices (e.g. the items seen in training, for cold-start runs).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

NEGATIVE_MODES = ("per-row", "per-position", "shared", "all")


class Negatives(NamedTuple):
    """A batch's negative item indices and how they are laid out (one of :data:`NEGATIVE_MODES`)."""

    ids: torch.Tensor  # (B, R) per-row, (P, R) per-position, (R,) shared, (n,) all
    mode: str

    def to(self, device: torch.device | str) -> Negatives:
        return Negatives(self.ids.to(device), self.mode)


class NegativeSampler:
    """Uniform negatives for every training batch of a run.

    Args:
        mode: one of :data:`NEGATIVE_MODES`.
        num_negatives: R.
        num_items: n, the catalogue size (index 0 is padding and never drawn).
        pool: item indices to draw from (default: all of 1..n).
        generator: the run's negative-sampling RNG (CPU); its state goes into resume checkpoints.

    Raises:
        ValueError: unknown mode, R < 1, or an empty catalogue or pool.
    """

    def __init__(
        self,
        mode: str,
        num_negatives: int,
        num_items: int,
        pool: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        if mode not in NEGATIVE_MODES:
            raise ValueError(f"negatives mode {mode!r}; valid: {', '.join(NEGATIVE_MODES)}")
        if num_negatives < 1 or num_items < 1:
            raise ValueError(f"num_negatives and num_items must be >= 1, got {num_negatives} and {num_items}")
        if pool is not None and pool.numel() == 0:
            raise ValueError("the negative pool is empty")
        self.mode, self.num_negatives, self.num_items = mode, num_negatives, num_items
        self.pool = pool
        self.generator = generator if generator is not None else torch.Generator()

    def shape(self, batch_size: int, num_positions: int) -> tuple[int, ...]:
        """Shape of the ids for a batch of ``batch_size`` rows holding ``num_positions`` positions."""
        if self.mode == "all":
            return (self.num_items if self.pool is None else self.pool.numel(),)
        R = self.num_negatives
        return {"shared": (R,), "per-row": (batch_size, R), "per-position": (num_positions, R)}[self.mode]

    def draw(self, batch_size: int, num_positions: int) -> Negatives:
        """Draw the negatives of one batch (on the CPU; move them with ``.to(device)``)."""
        shape = self.shape(batch_size, num_positions)
        if self.mode == "all":  # no draw: the generator's state is untouched
            ids = torch.arange(1, self.num_items + 1) if self.pool is None else self.pool
        elif self.pool is None:
            ids = torch.randint(1, self.num_items + 1, shape, generator=self.generator)
        else:
            ids = self.pool[torch.randint(0, self.pool.numel(), shape, generator=self.generator)]
        return Negatives(ids, self.mode)
