"""``pretrain_text``: BLaIR-style contrastive domain adaptation of a text encoder, as a recipe over
the components of :mod:`hstu_blair.text.pretrain` (pairs, loss, one epoch, recall@1).

The steps: the dataset's (review, item text) pairs (training-period ones with ``train_only``), a
seeded random order and a held-out part; recall@1 on it before; ``epochs`` passes with AdamW and a
warm-up schedule; recall@1 after; the model saved as a sentence-transformers folder with
``pretrain.json`` beside it.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from hstu_blair._version import __version__
from hstu_blair.data.dataset import SequenceData
from hstu_blair.data.manifest import versions, write_json_atomic
from hstu_blair.errors import ConfigError
from hstu_blair.text.encoders import pick_device
from hstu_blair.text.pretrain import (
    RECORD,
    ReviewPairs,
    load_trainable,
    recall_at_1,
    review_pairs,
    sequence_pairs,
    train_epoch,
    warmup_schedule,
)

log = logging.getLogger(__name__)


PAIR_SOURCES = ("reviews", "sequences")


def _pair_order(
    data: SequenceData, source: str, train_only: bool, max_pairs: int | None, rng: np.random.Generator
) -> tuple[ReviewPairs, np.ndarray, dict[str, int]]:
    """The pairs of ``source`` (``PAIR_SOURCES``), a seeded random order of the ones used, and the
    counts of what was left out.

    Raises:
        ConfigError: an unknown source, or ``sequences`` without ``train_only``.
        ValueError: fewer than 4 usable pairs.
    """
    if source not in PAIR_SOURCES:
        raise ConfigError(f"pairs must be one of {PAIR_SOURCES}, got {source!r}")
    if source == "sequences":
        if not train_only:
            raise ConfigError(
                "pairs='sequences' are always the training part's (train_only=False is for reviews)"
            )
        pairs, counts = sequence_pairs(data)
    else:
        pairs, counts = review_pairs(data, train_only=train_only)
    order = rng.permutation(pairs.height)
    if max_pairs is not None and pairs.height > max_pairs:
        counts["over_max_pairs"] = pairs.height - max_pairs
        order = order[:max_pairs]
    if order.shape[0] < 4:
        raise ValueError(
            f"{data.path}: only {order.shape[0]} usable {source} pairs (counts: {counts}); need at least 4"
        )
    return ReviewPairs.of(pairs), order, counts


def _train(
    model: Any,
    pairs: ReviewPairs,
    train: np.ndarray,
    settings: tuple[int, int, float, float],
    rng: np.random.Generator,
    device: torch.device,
    progress: bool,
) -> list[float]:
    """``epochs`` passes over the ``train`` pairs in full batches of a fresh random order each;
    ``settings`` = (epochs, batch_size, lr, temperature). Returns the mean loss of each epoch."""
    epochs, batch_size, lr, temperature = settings
    steps_per_epoch = max(1, len(train) // batch_size)
    total = steps_per_epoch * epochs
    optimizer, schedule = warmup_schedule(model, lr, total)
    losses: list[float] = []
    with tqdm(total=total, unit="step", desc="pretrain-text", disable=not progress) as bar:
        for _ in range(epochs):
            shuffled = rng.permutation(train)
            batches = [
                shuffled[s : s + batch_size] for s in range(0, steps_per_epoch * batch_size, batch_size)
            ]
            losses.append(train_epoch(model, pairs, batches, optimizer, schedule, temperature, device, bar))
    return losses


def pretrain_text(
    data: SequenceData,
    base_encoder: str,
    out: Path,
    epochs: int = 1,
    batch_size: int = 32,
    lr: float = 2e-5,
    temperature: float = 0.05,
    max_pairs: int | None = None,
    seed: int = 0,
    max_tokens: int = 128,
    train_only: bool = True,
    valid_fraction: float = 0.1,
    max_valid: int = 1000,
    device: str | None = None,
    progress: bool = True,
    pairs: str = "reviews",
) -> Path:
    """Fine-tune ``base_encoder`` on (review, item text) pairs of ``data`` with symmetric InfoNCE.

    Args:
        data: prepared dataset with reviews or tags (any dataset with item text for ``sequences``).
        base_encoder: ``minilm``, ``blair-base``, ``st:<...>`` or ``hf:<...>``.
        out: output folder (a sentence-transformers model + ``pretrain.json``).
        epochs: passes over the training pairs.
        batch_size: pairs per step (each pair's partner texts are its in-batch negatives).
        lr: AdamW learning rate (linear warm-up over 10% of the steps, then linear decay).
        temperature: InfoNCE temperature (BLaIR: 0.05).
        max_pairs: use at most this many pairs (a seeded random subset).
        seed: seeds shuffling, the validation hold-out and torch.
        max_tokens: truncation of both texts during training (the saved model keeps its own limit).
        train_only: only pairs whose interaction is in the training part of the loo split.
        valid_fraction, max_valid: size of the held-out pairs for recall@1.
        device: default a GPU when present.
        progress: show a progress bar.
        pairs: ``reviews`` (review/tag text, item text) or ``sequences`` (an item's text, the text
            of the item the same user took next, training parts only).

    Returns:
        ``out``.

    Raises:
        DataFormatError: the dataset has no review table.
        ConfigError: an unknown ``pairs`` source, or ``sequences`` without ``train_only``.
        ValueError: fewer than 4 usable pairs.

    Longer than 60 lines for its signature and this docstring: the 15 parameters of the public
    ``hb.pretrain_text`` and the ``pretrain-text`` CLI, kept as they were.
    """
    started = time.perf_counter()
    out = Path(out)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    examples, order, counts = _pair_order(data, pairs, train_only, max_pairs, rng)
    n_valid = max(2, min(max_valid, int(order.shape[0] * valid_fraction)))
    valid, train = order[:n_valid], order[n_valid:]
    dev = pick_device(device)
    model, original_max_len = load_trainable(base_encoder, dev, max_tokens)
    valid_texts, valid_items = [examples.texts[i] for i in valid], examples.item_ids[valid]
    before = recall_at_1(model, valid_texts, valid_items, examples.item_text, dev)
    log.info(
        "pretrain-text: %d train / %d valid pairs; valid recall@1 before %.4f", len(train), n_valid, before
    )

    steps_per_epoch = max(1, len(train) // batch_size)
    total = steps_per_epoch * epochs
    losses = _train(model, examples, train, (epochs, batch_size, lr, temperature), rng, dev, progress)

    after = recall_at_1(model, valid_texts, valid_items, examples.item_text, dev)
    log.info("pretrain-text: valid recall@1 %.4f -> %.4f", before, after)
    model.max_seq_length = original_max_len
    out.mkdir(parents=True, exist_ok=True)
    model.save(str(out))
    settings = {
        "epochs": epochs,
        "steps": total,
        "batch_size": batch_size,
        "lr": lr,
        "temperature": temperature,
    }
    record: dict[str, Any] = {
        "encoder": f"st:{out}",
        "base_encoder": base_encoder,
        "dataset": str(data.path),
        "dataset_hash": data.data_hash,
        "pairs": pairs,
        "train_only": train_only,
        "counts": {**counts, "train_pairs": len(train), "valid_pairs": n_valid},
        "pairs_skipped_per_epoch": max(
            0, len(train) - steps_per_epoch * batch_size
        ),  # the last partial batch
        **settings,
        "max_tokens": max_tokens,
        "seed": seed,
        "loss_per_epoch": losses,
        "valid": {
            "pairs": n_valid,
            "candidates": int(np.unique(valid_items).shape[0]),
            "recall@1_before": before,
            "recall@1_after": after,
        },
        "device": str(dev),
        "seconds": round(time.perf_counter() - started, 2),
        "package_version": __version__,
        "versions": versions(),
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    write_json_atomic(out / RECORD, record)
    return out
