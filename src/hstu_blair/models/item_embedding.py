"""Item embeddings: an id table, a projection of frozen text vectors, or both fused.

An ``ItemEmbedding`` maps item ids of any shape (0 = padding) to raw, unnormalised D-dim
vectors. The same vectors serve as encoder inputs, positives, negatives and ranking candidates
(SPEC §2.2), so text enters the model only through this module.

Fusions (``FUSIONS``, looked up by name):

- ``id``: the reference ``LocalEmbeddingModule``: an id table, truncated-normal(0.02) init.
- ``sum``: the reference HSTU-BLaIR ``ItemEmbeddingWithText``: ``ID[i] + W_t text[i] + b_t``.
- ``text``: text only (no id table), so items never seen in training can be scored.
- ``gated``: ours; ``ID[i] + g * W_t standardise(text[i])``, per-dimension gate ``g`` (``GatedFusion``).

When a fusion has a text term, each call looks up every *distinct* id once (``torch.unique``)
and gathers the results, instead of projecting a 768-d row per occurrence: padding and repeated
items (and, for per-position negatives, the whole batch's draws) collapse to at most n+1 rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

INIT_STD = 0.02  # truncated-normal std of the reference id table and text projection


def truncated_normal_(weight: torch.Tensor, std: float = INIT_STD) -> torch.Tensor:
    """Fill ``weight`` in place from N(0, std^2) truncated to +-2 std (the reference's init)."""
    return nn.init.trunc_normal_(weight, mean=0.0, std=std, a=-2 * std, b=2 * std)


def text_statistics(text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and std (clamped at 1e-6) of the real items' text rows 1..n."""
    rows = text[1:]  # (n, d_text)
    return rows.mean(0), rows.std(0, unbiased=False).clamp(min=1e-6)  # (d_text,), (d_text,)


class IdFusion(nn.Module):
    """Id table only (reference ``LocalEmbeddingModule``).

    Row 0 (padding) is also overwritten by the init, as in the reference; ``padding_idx=0``
    keeps it out of the gradient, and padded positions are masked downstream.
    """

    uses_text = False

    def __init__(self, num_items: int, d_model: int, text: torch.Tensor | None = None) -> None:
        super().__init__()
        self.ids = nn.Embedding(num_items + 1, d_model, padding_idx=0)
        truncated_normal_(self.ids.weight.data)

    def forward(self, ids: torch.Tensor, text: torch.Tensor | None) -> torch.Tensor:
        return self.ids(ids)  # (..., D)


class SumFusion(nn.Module):
    """Id vector plus linearly projected raw text (reference HSTU-BLaIR ``ItemEmbeddingWithText``).

    Projection weight and bias are truncated-normal(0.02) as in the reference; the padding id
    maps to ``ID[0] + b_t`` (masked downstream).
    """

    uses_text = True

    def __init__(self, num_items: int, d_model: int, text: torch.Tensor) -> None:
        super().__init__()
        self.ids = nn.Embedding(num_items + 1, d_model, padding_idx=0)
        self.text_proj = nn.Linear(text.shape[1], d_model)
        truncated_normal_(self.ids.weight.data)
        truncated_normal_(self.text_proj.weight.data)
        truncated_normal_(self.text_proj.bias.data)

    def forward(self, ids: torch.Tensor, text: torch.Tensor | None) -> torch.Tensor:
        return self.ids(ids) + self.text_proj(text)  # (U, D)


class TextFusion(nn.Module):
    """Text only: ``W2 GELU(W1 standardise(text))``, no id table, so every item with text gets a vector.

    An item absent from training is scored from its text alone (cold start); two items with the
    same text get the same vector. ``standardise`` subtracts the per-dimension catalogue mean and
    divides by the std (fixed statistics of rows 1..n at construction, kept in the checkpoint):
    frozen CLS vectors are anisotropic (a component shared by all items and a few dominant
    dimensions), which would otherwise make all projected items alike. Padding maps to 0.
    """

    uses_text = True

    def __init__(self, num_items: int, d_model: int, text: torch.Tensor) -> None:
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
    The padding id maps to a zero vector.
    """

    uses_text = True

    def __init__(self, num_items: int, d_model: int, text: torch.Tensor) -> None:
        super().__init__()
        mean, std = text_statistics(text)
        self.register_buffer("text_mean", mean)  # (d_text,)
        self.register_buffer("text_std", std)  # (d_text,)
        self.ids = nn.Embedding(num_items + 1, d_model, padding_idx=0)
        self.text_proj = nn.Linear(text.shape[1], d_model)
        self.gate = nn.Linear(2 * d_model, d_model)
        truncated_normal_(self.ids.weight.data)
        truncated_normal_(self.text_proj.weight.data)
        nn.init.zeros_(self.text_proj.bias)
        truncated_normal_(self.gate.weight.data)
        nn.init.zeros_(self.gate.bias)

    def forward(self, ids: torch.Tensor, text: torch.Tensor | None) -> torch.Tensor:
        e = self.ids(ids)  # (U, D)
        t = self.text_proj((text - self.text_mean) / self.text_std)  # (U, D)
        g = torch.sigmoid(self.gate(torch.cat([e, t], dim=-1)))  # (U, D)
        return (e + g * t) * (ids != 0).unsqueeze(-1)  # (U, D) padding -> 0


FUSIONS: dict[str, type[nn.Module]] = {
    "id": IdFusion,
    "sum": SumFusion,
    "text": TextFusion,
    "gated": GatedFusion,
}


class ItemEmbedding(nn.Module):
    """Item ids -> raw D-dim item vectors, with an optional frozen text matrix fused in.

    Args:
        num_items: n; valid ids are 1..n, 0 is padding.
        d_model: D, the output width.
        fusion: one of ``FUSIONS`` (``id``, ``sum``, ``text``, ``gated``).
        text: (n+1, d_text) float32 text vectors (row 0 = padding), required by every fusion
            but ``id``. Kept as a frozen, non-persistent buffer: checkpoints do not contain it,
            the builder passes it again from the embedding store.

    Raises:
        ValueError: unknown fusion (the message lists the valid ones), text missing, not needed,
            or of the wrong shape or dtype.
    """

    def __init__(self, num_items: int, d_model: int, fusion: str = "id", text: torch.Tensor | None = None):
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {fusion!r}; valid fusions: {', '.join(FUSIONS)}")
        if num_items < 1 or d_model < 1:
            raise ValueError(f"num_items and d_model must be >= 1, got {num_items} and {d_model}")
        fusion_cls = FUSIONS[fusion]
        if fusion_cls.uses_text:
            if text is None:
                raise ValueError(f"fusion {fusion!r} needs a text matrix of shape ({num_items + 1}, d_text)")
            if text.dim() != 2 or text.shape[0] != num_items + 1:
                raise ValueError(
                    f"text matrix must have shape ({num_items + 1}, d_text) (row 0 = padding), "
                    f"got {tuple(text.shape)}"
                )
            if not text.is_floating_point():
                raise ValueError(f"text matrix must be floating point, got {text.dtype}")
            self.register_buffer("text", text.detach().to(torch.float32), persistent=False)
        elif text is not None:
            raise ValueError(f"fusion {fusion!r} does not use text; pass text=None")
        else:
            self.text = None
        self.fusion_name = fusion
        self.fusion = fusion_cls(num_items, d_model, self.text)
        self._num_items = num_items
        self._d_model = d_model

    @property
    def num_items(self) -> int:
        """n, the number of real items (ids 1..n)."""
        return self._num_items

    @property
    def d_model(self) -> int:
        """D, the width of the item vectors."""
        return self._d_model

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Raw item vectors of ``ids`` (any shape, long) -> ``ids.shape + (D,)``."""
        if self.text is None:
            return self.fusion(ids, None)  # (..., D)
        unique_ids, inverse = torch.unique(ids, return_inverse=True)  # (U,), ids.shape
        vectors = self.fusion(unique_ids, self.text.index_select(0, unique_ids))  # (U, D)
        # index_select: its backward (index_add) is faster on CPU than advanced indexing's
        return vectors.index_select(0, inverse.reshape(-1)).view(*ids.shape, -1)  # (..., D)

    def add_text_items(self, text_rows: torch.Tensor) -> None:
        """Grow the catalogue by ``len(text_rows)`` items known only by their text (ids n+1..n+m).

        The rows are appended to the frozen text matrix; fusions with an id table (``sum``,
        ``gated``) get zero id vectors for the new items, so their vectors come from text alone.

        Raises:
            ValueError: the fusion has no text path (``id``), or the rows have the wrong width.
        """
        if self.text is None:
            raise ValueError(f"fusion {self.fusion_name!r} has no text path: items cannot be added by text")
        if text_rows.ndim != 2 or text_rows.shape[1] != self.text.shape[1]:
            raise ValueError(
                f"new text rows have shape {tuple(text_rows.shape)}; expected (m, {self.text.shape[1]})"
            )
        m = text_rows.shape[0]
        self.text = torch.cat([self.text, text_rows.to(self.text)])  # (n+1+m, d_text)
        table = getattr(self.fusion, "ids", None)
        if isinstance(table, nn.Embedding):
            zeros = table.weight.new_zeros(m, table.embedding_dim)  # (m, D)
            table.weight = nn.Parameter(torch.cat([table.weight.data, zeros]), requires_grad=False)
            table.num_embeddings += m
        self._num_items += m

    def all_items(self) -> torch.Tensor:
        """Raw vectors of every id 0..n, shape (n+1, D); row 0 is the padding vector."""
        device = next(self.fusion.parameters()).device
        ids = torch.arange(self._num_items + 1, device=device)  # (n+1,)
        return self.fusion(ids, self.text)  # (n+1, D)
