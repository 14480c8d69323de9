"""What several fusions share: the reference init, text statistics and whitening, and the ID part.

The ID part of a fusion with an ID table (``sum``, ``gated``, ``residual``) can be absent for an
item: its row was emptied (:func:`drop_id_rows`: items added at run time, held-out cold items as
served), it had fewer than ``id_min_count`` training interactions, or ``id_dropout`` dropped it for
this training step. An absent ID part is a zero vector in the fusion's formula.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

INIT_STD = 0.02  # truncated-normal std of the reference id table and text projection


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


class ShapeDependsOnText(Exception):
    """Raised when a fusion is built on the meta device (for its shapes only) but one of its shapes
    depends on the text values (:func:`pca_whitening`'s rank)."""


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
    if rows.is_meta:
        raise ShapeDependsOnText("the whitening rank depends on the text values")
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


@dataclass(frozen=True)
class IdPartOptions:
    """Options of every fusion with an ID table and a text path."""

    id_min_count: int = field(
        default=0,
        metadata={"doc": "items with fewer training interactions get no ID part, text only (0 = off)"},
    )
    id_dropout: float = field(
        default=0.0, metadata={"doc": "share of items whose ID part each training step drops"}
    )

    def check(self) -> None:
        """Raise ``ValueError`` naming the first option out of range."""
        if self.id_min_count < 0:
            raise ValueError(f"id_min_count must be >= 0, got {self.id_min_count}")
        if not 0.0 <= self.id_dropout < 1.0:
            raise ValueError(f"id_dropout must be in [0, 1), got {self.id_dropout}")


@dataclass(frozen=True)
class TextRankOptions(IdPartOptions):
    """Options of a fusion with an ID table that can read the text's top PCA-whitened directions."""

    text_rank: int = field(
        default=0,
        metadata={"doc": "0: the raw text, as published; r > 0: its top-r PCA-whitened directions"},
    )
    text_whiten: bool = field(
        default=True,
        metadata={"doc": "with text_rank > 0: scale each direction to unit variance (false: one scale)"},
    )
    text_scale: float = field(
        default=1.0,
        metadata={
            "doc": "with text_rank > 0: multiply the reduced text by this and divide the projection's "
            "init by it: the same vectors at the start, a text part that learns this much faster "
            "under Adam (1/sqrt(text_rank): the raw sentence vector's norm, 1)"
        },
    )

    def check(self) -> None:
        super().check()
        if self.text_rank < 0:
            raise ValueError(f"text_rank must be >= 0, got {self.text_rank}")
        if not self.text_scale > 0:
            raise ValueError(f"text_scale must be > 0, got {self.text_scale}")


def init_text_rank(
    module: nn.Module, text: torch.Tensor, rank: int, whiten: bool = True, scale: float = 1.0
) -> int:
    """With ``rank > 0``, fix ``module``'s whitening (buffers ``text_mean`` (d_text,) and ``whitening``
    (d_text, r), kept in the checkpoint; ``whiten=False``: the top-r directions at one common scale;
    ``scale``: a factor on the features, folded into the matrix) and return r; else return the raw
    width d_text."""
    module.text_rank = rank
    if rank == 0:
        return int(text.shape[1])
    mean, whitening = pca_whitening(text[1:], rank, whiten=whiten)
    module.register_buffer("text_mean", mean)  # (d_text,)
    module.register_buffer("whitening", whitening * scale)  # (d_text, r)
    return int(whitening.shape[1])


def low_rank_features(module: nn.Module, text: torch.Tensor) -> torch.Tensor | None:
    """(m, d_text) raw text -> (m, r) whitened features; None (read the raw text) when ``text_rank = 0``."""
    if module.text_rank == 0:
        return None
    return (text - module.text_mean) @ module.whitening


def init_id_part(
    module: nn.Module, num_items: int, options: IdPartOptions, item_counts: torch.Tensor | None
) -> None:
    """Set up the ID-part rules of ``module`` (whose table is ``module.ids``).

    With ``id_min_count > 0`` the (n+1,) training-interaction counts are a buffer ``train_counts``,
    kept in the checkpoint (zeros until loaded when ``item_counts`` is None); without it there is
    no buffer, so the state dict is the one of a model without the rule.
    """
    module.id_min_count = options.id_min_count
    module.id_dropout = options.id_dropout
    if options.id_min_count > 0:
        if item_counts is None:
            counts = torch.zeros(num_items + 1, dtype=torch.long)
        else:
            if tuple(item_counts.shape) != (num_items + 1,):
                raise ValueError(
                    f"item_counts must have shape ({num_items + 1},) (index 0 = padding), "
                    f"got {tuple(item_counts.shape)}"
                )
            counts = item_counts.detach().to(torch.long).clone()
        module.register_buffer("train_counts", counts)  # (n+1,)


def id_keep(module: nn.Module, ids: torch.Tensor | None, shape: torch.Size) -> torch.Tensor | None:
    """(U,) bool: the rows whose ID part is used in this call, or None when every row's is.

    Args:
        module: a fusion set up by :func:`init_id_part`.
        ids: (U,) item indices of the rows, or None for the whole table in order.
        shape: (U,), the rows' shape (for the dropout draw).
    """
    keep = None
    if module.id_min_count > 0:
        counts = module.train_counts if ids is None else module.train_counts.index_select(0, ids)
        keep = counts >= module.id_min_count  # (U,)
    if module.training and module.id_dropout > 0:
        kept = torch.rand(shape, device=module.ids.weight.device) >= module.id_dropout  # (U,)
        keep = kept if keep is None else keep & kept
    return keep


def id_part(module: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """(U, D) the ID part of items ``ids`` (U,): their table rows, zero where :func:`id_keep` drops it."""
    e_id = module.ids(ids)  # (U, D)
    keep = id_keep(module, ids, ids.shape)
    return e_id if keep is None else e_id * keep.unsqueeze(-1)


def drop_id_rows(module: nn.Module, rows: torch.Tensor) -> None:
    """Give ``rows`` (item indices) no ID part: zero their ID table rows (and their training counts)."""
    with torch.no_grad():
        module.ids.weight.index_fill_(0, rows, 0.0)
        counts = getattr(module, "train_counts", None)
        if counts is not None:
            counts.index_fill_(0, rows, 0)


def grow_id_table(module: nn.Module, m: int) -> None:
    """Append ``m`` rows to ``module.ids`` (frozen from then on) and to its training counts; the new
    rows are then emptied by :func:`drop_id_rows`, so new items have no ID part."""
    table: nn.Embedding = module.ids
    n_old = table.num_embeddings
    fresh = table.weight.new_empty(m, table.embedding_dim)  # (m, D)
    table.weight = nn.Parameter(torch.cat([table.weight.data, fresh]), requires_grad=False)
    table.num_embeddings += m
    counts = getattr(module, "train_counts", None)
    if counts is not None:
        module.train_counts = torch.cat([counts, counts.new_empty(m)])
    drop_id_rows(module, torch.arange(n_old, n_old + m, device=table.weight.device))
