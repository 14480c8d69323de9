"""Builders: config sections -> constructed modules (the only place configs reach the models)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from hstu_blair.config import ModelConfig
from hstu_blair.errors import ConfigError
from hstu_blair.models.hstu import HSTUEncoder
from hstu_blair.models.item_embedding import ItemEmbedding
from hstu_blair.models.sasrec import SASRecEncoder
from hstu_blair.models.sequential import SequentialModel

if TYPE_CHECKING:
    from hstu_blair.config import RunConfig
    from hstu_blair.data.dataset import SequenceData

ENCODERS = ("hstu", "sasrec")


def build_model(
    mc: ModelConfig, num_items: int, max_len: int, text: torch.Tensor | None = None
) -> SequentialModel:
    """Item embedding + encoder as ``mc`` says.

    Args:
        mc: the ``[model]`` section.
        num_items: n; item ids are 1..n.
        max_len: history length L_max (``data.max_len``); positions table size is ``mc.attn_len``
            (default L_max + 11 = the reference's L_max + G + 1).
        text: (n+1, d_text) item text matrix, required unless ``mc.fusion == "id"``.
    """
    if mc.fusion != "id" and text is None:
        raise ConfigError(
            f"model.fusion={mc.fusion!r} needs text embeddings (set text.embeddings or text.encoder)"
        )
    n_pos = mc.resolved_attn_len(max_len)
    if n_pos < max_len + 1:
        raise ConfigError(f"model.attn_len={n_pos} must be at least data.max_len + 1 = {max_len + 1}")
    items = ItemEmbedding(num_items, mc.d_model, mc.fusion, text if mc.fusion != "id" else None)
    if mc.name == "hstu":
        encoder: torch.nn.Module = HSTUEncoder(
            n_pos, mc.d_model, mc.num_blocks, mc.num_heads, mc.d_qk, mc.d_v, mc.dropout, mc.input_dropout
        )
    elif mc.name == "sasrec":
        encoder = SASRecEncoder(
            n_pos, mc.d_model, mc.num_blocks, mc.num_heads, mc.ffn_dim, mc.dropout, mc.input_dropout
        )
    else:
        raise ConfigError(f"model.name={mc.name!r}; valid: {', '.join(ENCODERS)}")
    return SequentialModel(items, encoder)


def load_text_for(config: RunConfig, data: SequenceData) -> torch.Tensor | None:
    """The text matrix a run needs (None for ID-only models); embeds the items first if needed."""
    if config.model.fusion == "id":
        return None
    from hstu_blair.text.store import default_store_path, load_embeddings

    tc = config.text
    path = Path(tc.embeddings) if tc.embeddings else default_store_path(data.path, tc.encoder)
    if not path.exists() and not tc.embeddings:
        from hstu_blair.text.embed import embed_dataset

        embed_dataset(
            data,
            tc.encoder,
            out=path,
            batch_size=tc.batch_size,
            max_tokens=tc.max_tokens,
            dimensions=tc.dimensions,
        )
    matrix, _ = load_embeddings(path, num_items=data.num_items)
    return matrix
