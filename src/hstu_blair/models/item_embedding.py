"""Item embeddings: an id table, a projection of frozen text vectors, or both fused.

An ``ItemEmbedding`` maps item ids of any shape (0 = padding) to raw, unnormalised D-dim
vectors. The same vectors serve as encoder inputs, positives, negatives and ranking candidates
(SPEC §2.2), so text enters the model only through this module.

Fusions (``FUSIONS``, looked up by name):

- ``id``: the reference ``LocalEmbeddingModule``: an id table, truncated-normal(0.02) init.
- ``sum``: the reference HSTU-BLaIR ``ItemEmbeddingWithText``: ``ID[i] + W_t text[i] + b_t``.
- ``text``: text only (no id table), so items never seen in training can be scored.
- ``gated``: ours; ``ID[i] + g * W_t standardise(text[i])``, per-dimension gate ``g`` (``GatedFusion``).
- ``residual``: ours; ``W_t whiten(text[i]) + b_t + ID[i]`` with the ID a zero-initialised residual
  that training drops for a random share of items at every step (``ResidualFusion``): one
  representation that ranks warm items with their ID and cold or added items by their text.

A fusion may transform the frozen text once (``features``; ``residual`` whitens and reduces it); the
transformed matrix is what each step reads.

When a fusion has a text term, each call embeds every *distinct* id once (:func:`unique_items`)
and gathers the results, instead of projecting a 768-d row per occurrence: padding and repeated
items (and the whole batch's negatives) collapse to at most n+1 rows. When the distinct ids are
most of the catalogue (a training step with per-row negatives touches about 90% of it), the fusion
runs on the whole contiguous text matrix instead (:data:`FULL_TABLE_SHARE`): one matrix product and
no gather of 768-d rows, the same vectors up to float rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

INIT_STD = 0.02  # truncated-normal std of the reference id table and text projection
FULL_TABLE_SHARE = 0.5
"""Above this share of the catalogue among the distinct ids, text fusions embed the whole catalogue
(one GEMM over the contiguous text matrix) and pick rows, rather than gathering text rows first."""


def unique_items(ids: torch.Tensor, num_items: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.unique(ids, return_inverse=True)`` for item indices in ``0..num_items``, without sorting.

    A presence mask over the catalogue gives the distinct indices in ascending order and a running
    count maps each id to its position among them: O(n + len(ids)), several times faster than the
    sort ``torch.unique`` does, and the same result.

    Args:
        ids: long tensor of any shape, values in 0..num_items.
        num_items: n.

    Returns:
        (U,) distinct indices, ascending, and ``ids.shape`` positions into them.
    """
    flat = ids.reshape(-1)
    present = torch.zeros(num_items + 1, dtype=torch.bool, device=ids.device)  # (n+1,)
    present[flat] = True
    position = torch.cumsum(present, 0) - 1  # (n+1,) rank of each present index
    return present.nonzero().squeeze(1), position.index_select(0, flat).view(ids.shape)


def truncated_normal_(weight: torch.Tensor, std: float = INIT_STD) -> torch.Tensor:
    """Fill ``weight`` in place from N(0, std^2) truncated to +-2 std (the reference's init)."""
    return nn.init.trunc_normal_(weight, mean=0.0, std=std, a=-2 * std, b=2 * std)


def text_statistics(text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and std (clamped at 1e-6) of the real items' text rows 1..n (on the
    meta device, where a model is built only for its shapes, two empty vectors)."""
    if text.is_meta:
        return text.new_empty(text.shape[1]), text.new_empty(text.shape[1])
    rows = text[1:]  # (n, d_text)
    return rows.mean(0), rows.std(0, unbiased=False).clamp(min=1e-6)  # (d_text,), (d_text,)


def pca_whitening(
    rows: torch.Tensor, rank: int = 0, eps: float = 1e-6, whiten: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and (d_text, r) whitening matrix of ``rows``: the top ``r`` principal directions, each
    scaled by 1/sqrt(its variance), so ``(x - mean) @ W`` has zero mean and unit covariance.
    With ``whiten=False`` the directions share one scale (1/sqrt of their mean variance): the
    features keep the text's relative variances, with unit variance on average.

    Frozen sentence vectors are anisotropic (a direction shared by all items, a few dominant
    dimensions); whitening removes that, and keeping the top ``r`` directions makes the projection
    r x D instead of d_text x D. Computed in float64; each direction's sign is fixed (its largest
    coordinate positive) so that the matrix does not depend on the LAPACK build.

    Args:
        rows: (n, d_text) the catalogue's text vectors (no padding row).
        rank: r; 0 keeps every direction with non-zero variance.
        eps: variance floor, relative to the largest variance.
        whiten: scale each direction to unit variance (else all by one factor).
    """
    n, d = rows.shape
    mean = rows.sum(0, dtype=torch.float64) / n  # (d_text,)
    scatter = torch.zeros(d, d, dtype=torch.float64)  # (d_text, d_text)
    for chunk in rows.split(8192):  # float64 a chunk at a time: no full-size float64 copy
        centred = chunk.to(torch.float64) - mean
        scatter += centred.T @ centred
    cov = scatter / max(1, n - 1)
    variances, directions = torch.linalg.eigh(cov)  # ascending
    variances, directions = variances.flip(0), directions.flip(1)  # descending
    keep = int((variances > eps * variances[0].clamp(min=1e-30)).sum()) if variances[0] > 0 else 0
    if keep == 0:
        raise ValueError("the text vectors do not vary: every item has the same text vector")
    r = keep if rank <= 0 else min(rank, keep)
    directions = directions[:, :r]
    signs = torch.sign(directions.gather(0, directions.abs().argmax(0, keepdim=True)))  # (1, r)
    scale = variances[:r].sqrt() if whiten else variances[:r].mean().sqrt()
    whitening = directions * signs / scale  # (d_text, r)
    return mean.to(torch.float32), whitening.to(torch.float32)


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
      has its whole ID, a cold one none.

    The padding index maps to zero.
    """

    uses_text = True

    def __init__(
        self,
        num_items: int,
        d_model: int,
        text: torch.Tensor,
        id_dropout: float = 0.1,
        text_rank: int = 64,
        text_whiten: bool = True,
    ) -> None:
        super().__init__()
        if not 0.0 <= id_dropout < 1.0:
            raise ValueError(f"id_dropout must be in [0, 1), got {id_dropout}")
        mean, whitening = pca_whitening(text[1:], text_rank, whiten=text_whiten)
        self.register_buffer("text_mean", mean)  # (d_text,)
        self.register_buffer("whitening", whitening)  # (d_text, r)
        r = whitening.shape[1]
        self.text_proj = nn.Linear(r, d_model)
        truncated_normal_(self.text_proj.weight.data, INIT_STD / r**0.5)  # e starts at the ID table's scale
        nn.init.zeros_(self.text_proj.bias)
        self.ids = nn.Embedding(num_items + 1, d_model, padding_idx=0)
        nn.init.zeros_(self.ids.weight)
        self.id_dropout = id_dropout

    def features(self, text: torch.Tensor) -> torch.Tensor:
        """(m, d_text) raw text -> (m, r) whitened features."""
        return (text - self.text_mean) @ self.whitening

    def forward(self, ids: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        return self._fuse(self.ids(ids), features, ids != 0)  # (U, D)

    def all_rows(self, features: torch.Tensor) -> torch.Tensor:
        """Every item's vector, (n+1, D): the ID table itself instead of a lookup of every row."""
        real = torch.ones(features.shape[0], dtype=torch.bool, device=features.device)
        real[0] = False
        return self._fuse(self.ids.weight, features, real)  # (n+1, D)

    def _fuse(self, e_id: torch.Tensor, features: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """``W_t f + b_t + m * ID`` for rows that are real items, 0 for padding; ``m`` drops IDs in training."""
        keep = real
        if self.training and self.id_dropout > 0:
            keep = keep & (torch.rand(real.shape, device=real.device) >= self.id_dropout)  # (U,)
        e_id = e_id * keep.unsqueeze(-1)  # (U, D)
        return (self.text_proj(features) + e_id) * real.unsqueeze(-1)  # (U, D) padding -> 0


FUSIONS: dict[str, type[nn.Module]] = {
    "id": IdFusion,
    "sum": SumFusion,
    "text": TextFusion,
    "gated": GatedFusion,
    "residual": ResidualFusion,
}


class ItemEmbedding(nn.Module):
    """Item ids -> raw D-dim item vectors, with an optional frozen text matrix fused in.

    Args:
        num_items: n; valid ids are 1..n, 0 is padding.
        d_model: D, the output width.
        fusion: one of ``FUSIONS`` (``id``, ``sum``, ``text``, ``gated``, ``residual``).
        text: (n+1, d_text) float32 text vectors (row 0 = padding), required by every fusion
            but ``id``. Kept as a frozen, non-persistent buffer: checkpoints do not contain it,
            the builder passes it again from the embedding store.
        fusion_options: keyword arguments of the fusion (``residual``: ``id_dropout``,
            ``text_rank``, ``text_whiten``).

    Raises:
        ValueError: unknown fusion (the message lists the valid ones), text missing, not needed,
            or of the wrong shape or dtype.
    """

    def __init__(
        self,
        num_items: int,
        d_model: int,
        fusion: str = "id",
        text: torch.Tensor | None = None,
        **fusion_options: float | bool,
    ):
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
        self.fusion = fusion_cls(num_items, d_model, self.text, **fusion_options)
        self._num_items = num_items
        self._d_model = d_model
        # the fusion's transform of the text (residual: whitened), None when it reads text as it is
        self.register_buffer("_features", None, persistent=False)
        self._refresh_features()
        self.register_load_state_dict_post_hook(lambda module, _: module._refresh_features())

    @property
    def features(self) -> torch.Tensor | None:
        """(n+1, d) what each step reads: the text, or the fusion's transform of it."""
        return self.text if self._features is None else self._features

    def _refresh_features(self) -> None:
        """Recompute the transformed text (after construction, and after loading weights, since a
        transform such as ``residual``'s whitening is part of the checkpoint)."""
        transform = getattr(self.fusion, "features", None)
        if self.text is not None and transform is not None:
            with torch.no_grad():
                self._features = transform(self.text)

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
        unique_ids, inverse = unique_items(ids, self._num_items)  # (U,), ids.shape
        vectors = self.of_unique(unique_ids)  # (U, D)
        # index_select: its backward (index_add) is faster on CPU than advanced indexing's
        return vectors.index_select(0, inverse.reshape(-1)).view(*ids.shape, -1)  # (..., D)

    def of_unique(self, unique_ids: torch.Tensor) -> torch.Tensor:
        """Raw vectors (U, D) of distinct item indices (e.g. from :func:`unique_items`).

        With a text path and at least :data:`FULL_TABLE_SHARE` of the catalogue asked for, the
        fusion runs on the whole text matrix and the rows are picked after.
        """
        if self.text is None:
            return self.fusion(unique_ids, None)  # (U, D)
        if unique_ids.numel() >= FULL_TABLE_SHARE * (self._num_items + 1):
            return self.all_items().index_select(0, unique_ids)  # (U, D)
        return self.fusion(unique_ids, self.features.index_select(0, unique_ids))  # (U, D)

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
        text_rows = text_rows.to(self.text)
        self.text = torch.cat([self.text, text_rows])  # (n+1+m, d_text)
        transform = getattr(self.fusion, "features", None)
        if transform is not None:
            with torch.no_grad():
                self._features = torch.cat([self._features, transform(text_rows)])
        table = getattr(self.fusion, "ids", None)
        if isinstance(table, nn.Embedding):
            zeros = table.weight.new_zeros(m, table.embedding_dim)  # (m, D)
            table.weight = nn.Parameter(torch.cat([table.weight.data, zeros]), requires_grad=False)
            table.num_embeddings += m
        self._num_items += m

    def all_items(self) -> torch.Tensor:
        """Raw vectors of every id 0..n, shape (n+1, D); row 0 is the padding vector."""
        if hasattr(self.fusion, "all_rows"):
            return self.fusion.all_rows(self.features)  # (n+1, D)
        device = next(self.fusion.parameters()).device
        ids = torch.arange(self._num_items + 1, device=device)  # (n+1,)
        return self.fusion(ids, self.features)  # (n+1, D)
