"""The model builder: an :class:`Architecture` (plain values) -> a constructed :class:`SequentialModel`.

An ``Architecture`` is everything needed to rebuild a model's modules: the recipes fill it from
the run config, run directories store it in ``model.json``, and serving rebuilds the model from
it. The sequence models are looked up by name in :data:`SEQUENCE_MODELS`; item fusions in the
fusion registry (:mod:`hstu_blair.models.fusions`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from hstu_blair.errors import ConfigError
from hstu_blair.models.fusions import get_fusion
from hstu_blair.models.hstu import HSTU
from hstu_blair.models.item_embedding import ItemEmbedding
from hstu_blair.models.sasrec import SASRec
from hstu_blair.models.sequential import SequentialModel

SEQUENCE_MODELS: dict[str, type[nn.Module]] = {"hstu": HSTU, "sasrec": SASRec}
"""Sequence model name (``model.name``) -> class."""


@dataclass(frozen=True)
class Architecture:
    """What a model is made of (no weights): the sequence model, the item fusion and their sizes.

    Attributes:
        name: sequence model, a key of :data:`SEQUENCE_MODELS` (``hstu`` or ``sasrec``).
        fusion: item representation, a registered fusion (:func:`~hstu_blair.models.fusions.fusion_names`).
        num_items: n; item indices are 1..n (0 = padding).
        max_len: history length L_max the model reads.
        attn_len: N of SPEC §2: rows of the positional table, relative-position range and HSTU's
            attention divisor (the reference: L_max + 11).
        d_model: D; num_blocks, num_heads, d_qk, d_v: HSTU sizes; ffn_dim: SASRec's feed-forward
            width; dropout: block dropout; input_dropout: dropout on the input sum.
        d_text: width of the text vectors (0 for ``fusion="id"``).
        time_scale: units per second of the time differences HSTU buckets (1; 1000 reproduces
            the reference on Amazon 2023, whose timestamps it keeps in milliseconds).
        fusion_options: the fusion's options, every field of its options dataclass (what
            :func:`architecture_options` resolves; missing keys take their defaults).
        similarity: ``cosine`` (queries and items L2-normalised; the reference) or ``dot``.
        learned_norms: SASRec's LayerNorms with learned parameters plus a final LayerNorm (the
            original SASRec); the reference's have none.
    """

    name: str
    fusion: str
    num_items: int
    max_len: int
    attn_len: int
    d_model: int = 50
    num_blocks: int = 2
    num_heads: int = 1
    d_qk: int = 50
    d_v: int = 50
    ffn_dim: int = 50
    dropout: float = 0.2
    input_dropout: float = 0.2
    d_text: int = 0
    time_scale: int = 1
    fusion_options: dict[str, Any] = field(default_factory=dict)
    similarity: str = "cosine"
    learned_norms: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Architecture:
        """The inverse of :meth:`to_dict`; unknown keys are an error naming them.

        ``model.json`` files written before the fusion options held the ``residual`` fusion's
        options as top-level keys (``id_dropout``, ``text_rank``, ``text_whiten``); they are read as
        its ``fusion_options`` (other fusions ignored them, and still do).
        """
        values = upgrade_architecture_keys(values)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"unknown architecture key(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}"
            )
        return cls(**values)


ARCHITECTURE_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {f.name: f.default for f in fields(Architecture) if f.default is not MISSING}
)
"""The model sizes' defaults, in one place: :class:`Architecture`'s (the run config's
``ModelConfig`` reads them from here; a ``model.json`` without a size gets them too)."""

LEGACY_RESIDUAL_KEYS = ("id_dropout", "text_rank", "text_whiten")
"""Top-level architecture and ``[model]`` keys of runs and configs made before ``fusion_options``."""


def upgrade_architecture_keys(values: dict[str, Any]) -> dict[str, Any]:
    """A copy of a ``model.json`` architecture with the ``residual`` fusion's options of runs made
    before ``fusion_options`` (:data:`LEGACY_RESIDUAL_KEYS` at the top level) moved into it (other
    fusions ignored those keys, and still do)."""
    values = dict(values)
    legacy = {key: values.pop(key) for key in LEGACY_RESIDUAL_KEYS if key in values}
    if legacy and values.get("fusion") == "residual" and "fusion_options" not in values:
        values["fusion_options"] = legacy
    return values


def architecture_options(fusion: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every option of ``fusion`` with ``options`` applied (defaults for the rest), as plain values.

    Raises:
        ConfigError: unknown fusion (the registered ones are listed) or option (the valid ones are
            listed), or a bad value (the option is named).
    """
    return asdict(get_fusion(fusion).make_options(options))


def build_model(
    arch: Architecture, text: torch.Tensor | None = None, item_counts: torch.Tensor | None = None
) -> SequentialModel:
    """Item embedding + sequence model as ``arch`` says, freshly initialised.

    Args:
        arch: the architecture.
        text: (n+1, d_text) item text matrix (row 0 = padding), required when the fusion uses
            text. The builder never computes it: the caller loads it from an embedding store.
        item_counts: (n+1,) training interactions per item (the fusions' ``id_min_count`` rule):
            the training recipe passes them; a model whose weights are loaded next reads them
            from its checkpoint instead (None).

    Raises:
        ConfigError: unknown model or fusion name (the valid ones are listed), missing text,
            or ``attn_len`` below ``max_len + 1``.
    """
    if arch.name not in SEQUENCE_MODELS:
        raise ConfigError(f"model.name={arch.name!r}; valid: {', '.join(SEQUENCE_MODELS)}")
    spec = get_fusion(arch.fusion)
    if spec.uses_text and text is None:
        raise ConfigError(f"model.fusion={arch.fusion!r} needs a text matrix (an embedding store)")
    if arch.learned_norms and arch.name != "sasrec":
        raise ConfigError(f"model.learned_norms is a SASRec option; model.name is {arch.name!r}")
    if arch.attn_len < arch.max_len + 1:
        raise ConfigError(
            f"model.attn_len={arch.attn_len} must be at least data.max_len + 1 = {arch.max_len + 1}"
        )
    items = ItemEmbedding(
        arch.num_items,
        arch.d_model,
        arch.fusion,
        text if spec.uses_text else None,
        item_counts,
        **arch.fusion_options,
    )
    return SequentialModel(items, _backbone(arch), arch.similarity)


def _backbone(arch: Architecture) -> nn.Module:
    """The sequence model of ``arch`` (HSTU or SASRec), freshly initialised."""
    if arch.name == "hstu":
        return HSTU(
            arch.attn_len,
            arch.d_model,
            arch.num_blocks,
            arch.num_heads,
            arch.d_qk,
            arch.d_v,
            arch.dropout,
            arch.input_dropout,
            time_scale=arch.time_scale,
            normalize=arch.similarity == "cosine",
        )
    return SASRec(
        arch.attn_len,
        arch.d_model,
        arch.num_blocks,
        arch.num_heads,
        arch.ffn_dim,
        arch.dropout,
        arch.input_dropout,
        learned_norms=arch.learned_norms,
        normalize=arch.similarity == "cosine",
    )
