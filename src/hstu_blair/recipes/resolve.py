"""What a run config means in components' terms, worked out in one place.

Each function reads the parts of a :class:`RunConfig` it needs and returns plain values or
components: the device, the dataset (prepared on demand), the text matrix (embedded on demand),
the architecture, the negative sampler and the evaluation options.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from hstu_blair.config import RunConfig
from hstu_blair.data.dataset import SequenceData
from hstu_blair.data.options import PrepareOptions
from hstu_blair.data.prepare import prepare
from hstu_blair.data.splits import Split
from hstu_blair.errors import ConfigError
from hstu_blair.evaluation.evaluate import REFERENCE_MAX_RANK, REFERENCE_MISS_RANK, EvalOptions
from hstu_blair.models.build import Architecture, architecture_options
from hstu_blair.models.fusions import get_fusion
from hstu_blair.run.model_files import TextStoreRef
from hstu_blair.text.embed import embed_dataset
from hstu_blair.text.store import load_embeddings, store_path
from hstu_blair.training.negatives import NegativeSampler

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """``auto`` is the first CUDA GPU when there is one, else the CPU; anything else is taken as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def ensure_dataset(config: RunConfig) -> SequenceData:
    """Load ``data.path``, preparing it first from ``data.source`` when it does not exist yet.

    Raises:
        ConfigError: the dataset does not exist and ``data.source`` is not set.
    """
    path = Path(config.data.path)
    if (path / "manifest.json").exists():
        return SequenceData.load(path)
    if config.data.source is None:
        raise ConfigError(f"data.path {path} is not a prepared dataset and data.source is not set")
    reference = config.data.protocol == "reference"
    log.info(
        "preparing %s from %s into %s%s",
        config.data.source,
        config.data.input or "bundled files",
        path,
        " with the reference preprocessing" if reference else "",
    )
    inputs = [Path(p) for p in config.data.input]
    kcore = {} if config.data.kcore is None else {"kcore": config.data.kcore}
    options = PrepareOptions.reference(config.data.source, **kcore) if reference else PrepareOptions(**kcore)
    return prepare(config.data.source, inputs, path, options)


def split(config: RunConfig, data: SequenceData) -> Split:
    """The run's train / validation / test split (``data.protocol`` and, for ``temporal``, its cutoffs)."""
    dc = config.data
    return data.split(dc.protocol, dc.cutoff, dc.valid_cutoff, dc.temporal_targets)


def text_store(config: RunConfig, data: SequenceData) -> Path:
    """The embedding store a text-fused run reads: ``text.embeddings`` or the dataset's store for
    ``text.encoder``."""
    return (
        Path(config.text.embeddings) if config.text.embeddings else store_path(data.path, config.text.encoder)
    )


def uses_text(config: RunConfig) -> bool:
    """Whether the run's fusion reads item texts (asked of the fusion, :class:`FusionSpec`)."""
    return get_fusion(config.model.fusion).uses_text


def ensure_text(
    config: RunConfig, data: SequenceData, progress: bool = True
) -> tuple[torch.Tensor | None, TextStoreRef | None]:
    """The (n+1, d_text) text matrix of a text-fused run and a reference to its store (None, None
    for ID-only models). The dataset's store for ``text.encoder`` is computed first when missing;
    an explicit ``text.embeddings`` file must exist."""
    if not uses_text(config):
        return None, None
    path = text_store(config, data)
    if not path.exists() and not config.text.embeddings:
        tc = config.text
        embed_dataset(
            data,
            tc.encoder,
            out=path,
            batch_size=tc.batch_size,
            max_tokens=tc.max_tokens,
            dimensions=tc.dimensions,
            progress=progress,
        )
    matrix, manifest = load_embeddings(path, num_items=data.num_items)
    return matrix, TextStoreRef.of(path, matrix, manifest)


TIME_UNITS_PER_SECOND = {"s": 1, "ms": 1000, "us": 1_000_000, "ns": 1_000_000_000}


def time_scale(config: RunConfig, data: SequenceData) -> int:
    """Units per second of the time differences HSTU buckets: 1, or with ``data.time_unit = "source"``
    the unit the source files used (the manifest's ``info.source_timestamp_unit``; Amazon 2023: ms)."""
    if config.data.time_unit == "s":
        return 1
    unit = str(data.manifest.get("info", {}).get("source_timestamp_unit", "s"))
    return TIME_UNITS_PER_SECOND.get(unit, 1)


def run_architecture(config: RunConfig, data: SequenceData, text: torch.Tensor | None) -> Architecture:
    """The architecture a run of ``config`` on ``data`` builds: its catalogue, the width of its text
    matrix (:func:`ensure_text`; None for ID-only) and the dataset's time unit."""
    d_text = 0 if text is None else int(text.shape[1])
    return architecture(config, data.num_items, d_text, time_scale(config, data))


def architecture(config: RunConfig, num_items: int, d_text: int = 0, time_scale: int = 1) -> Architecture:
    """The model architecture of ``config`` for a catalogue of ``num_items`` (text width ``d_text``)."""
    mc = config.model
    return Architecture(
        name=mc.name,
        fusion=mc.fusion,
        num_items=num_items,
        max_len=config.data.max_len,
        attn_len=mc.resolved_attn_len(config.data.max_len),
        d_model=mc.d_model,
        num_blocks=mc.num_blocks,
        num_heads=mc.num_heads,
        d_qk=mc.d_qk,
        d_v=mc.d_v,
        ffn_dim=mc.ffn_dim,
        dropout=mc.dropout,
        input_dropout=mc.input_dropout,
        d_text=d_text,
        time_scale=time_scale,
        fusion_options=architecture_options(mc.fusion, mc.fusion_options),
        similarity=mc.similarity,
        learned_norms=mc.learned_norms,
    )


def train_item_counts(data: SequenceData, split: Split) -> torch.Tensor:
    """(n+1,) int64: each item's interactions in the training split (the prefixes of users with a
    training pair, ``train_len >= 2``); index 0 (padding) and items never trained on count 0.
    What the fusions' ``id_min_count`` rule reads."""
    lengths = np.diff(data.offsets)  # (U,)
    limit = np.where(split.train_len >= 2, split.train_len, 0)  # (U,)
    position = np.arange(data.item_seq.size) - np.repeat(data.offsets[:-1], lengths)  # (N,)
    trained = position < np.repeat(limit, lengths)  # (N,)
    counts = np.bincount(data.item_seq[trained], minlength=data.num_items + 1)  # (n+1,)
    return torch.from_numpy(counts.astype(np.int64))


def negative_sampler(config: RunConfig, data: SequenceData, split: Split, rank: int = 0) -> NegativeSampler:
    """The run's negative sampler: ``train.negatives`` layout, ``train.num_negatives`` per draw, over
    the whole catalogue or (``negatives_pool = "seen"``) the items of the training prefixes.
    Each rank of a distributed run gets its own seeded generator."""
    tc = config.train
    pool = None
    if tc.negatives_pool == "seen":
        trainable = np.flatnonzero(split.train_len >= 2)
        pool = torch.from_numpy(
            np.unique(np.concatenate([data.user_items(u)[: split.train_len[u]] for u in trainable]))
        )
    generator = torch.Generator().manual_seed(tc.seed + 1_000_003 * (rank + 1))
    return NegativeSampler(tc.negatives, tc.num_negatives, data.num_items, pool, generator)


def eval_options(config: RunConfig) -> EvalOptions:
    """``[eval]`` as evaluation options (``reference_ranks`` = the reference's rank cap and miss rank)."""
    ec = config.eval
    return EvalOptions(
        batch_size=ec.batch_size,
        exclude=ec.exclude,
        max_rank=REFERENCE_MAX_RANK if ec.reference_ranks else None,
        miss_rank=REFERENCE_MISS_RANK if ec.reference_ranks else None,
    )
