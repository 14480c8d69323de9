"""``pretrain-text``: BLaIR-style contrastive domain adaptation of a text encoder.

Training pairs are (a user's review or tag text, the text of the item it is about), read from the
dataset's review table (``SequenceData.reviews()``), or, for datasets without reviews,
(an item's text, the text of the item the same user took next) from the interaction sequences
(:func:`sequence_pairs`), which puts items bought one after the other close in text space. The loss is BLaIR's: cosine similarity over
a temperature (0.05), InfoNCE with in-batch negatives, here symmetric (review -> item and
item -> review, averaged). In-batch entries that share the positive's item or review text are
masked out, so duplicates are not pushed apart as negatives.

Leakage: reviews exist for every interaction, test-period ones included. With ``train_only``
(default) only pairs whose (user, item) interaction lies in the training part of the split are
used; the pairs removed (held-out interactions, pairs that are no interaction at all) are counted
in the training record.

Here are the components (pairs, the trainable encoder, the loss, recall@1, one epoch); the recipe
that runs them, :func:`hstu_blair.recipes.pretrain_text.pretrain_text`, holds a small random part of
the pairs out (recall@1 of the true item text among the held-out items' texts, given the review,
before and after training) and writes a sentence-transformers folder: ``build_text_encoder("st:<out>")``
loads it (for a BLaIR/``hf:`` base also ``hf:<out>``), and ``pretrain.json`` beside it records the run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from hstu_blair.data import schema
from hstu_blair.data.dataset import REVIEWS, SequenceData
from hstu_blair.errors import DataFormatError
from hstu_blair.text.encoders import HFEncoder, SentenceTransformerEncoder
from hstu_blair.text.registry import build_text_encoder

log = logging.getLogger(__name__)

RECORD = "pretrain.json"


# ---- pairs ----------------------------------------------------------------------------------------
def _in_training_part(data: SequenceData, protocol: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N,) user index of each interaction, (N,) its position in the user's sequence, and (N,)
    whether it lies in the user's training part of ``protocol``'s split."""
    split = data.split(protocol)
    user = np.repeat(np.arange(data.lengths.shape[0], dtype=np.int32), data.lengths)  # (N,)
    position = np.arange(user.shape[0]) - data.offsets[user]  # (N,)
    return user, position, position < split.train_len[user]


def review_pairs(
    data: SequenceData, train_only: bool = True, protocol: str = "loo"
) -> tuple[pl.DataFrame, dict[str, int]]:
    """(review text, item id, item text) pairs of ``data`` and the counts of what was removed.

    Args:
        data: a prepared dataset with a review/tag table.
        train_only: keep only pairs whose (user, item) interaction is in the training part of
            ``protocol``'s split.
        protocol: the split (``loo`` or ``reference``).

    Returns:
        (pairs, counts): pairs with columns ``text``, ``item_id``, ``item_text``; counts with
        ``reviews`` (read), ``unknown_user``, ``item_without_text``, ``held_out_interaction``,
        ``not_an_interaction`` (removed) and ``pairs`` (kept).

    Raises:
        DataFormatError: the dataset has no review table.
    """
    reviews = data.reviews()
    if reviews is None or reviews.height == 0:
        raise DataFormatError(
            data.path / REVIEWS,
            "no review/tag texts: prepare the dataset from a source that has them (Amazon reviews, "
            "MovieLens tags) without --no-reviews",
        )
    counts = {"reviews": reviews.height}
    users = data.sequences.select(schema.USER_ID, schema.USER_IDX)
    items = data.items.select(pl.col(schema.ITEM_IDX), pl.col(schema.TEXT).alias("item_text"))
    # the pairs' order feeds the seeded shuffle: keep the reviews' order (polars does not by default)
    df = reviews.join(users, on=schema.USER_ID, how="left", maintain_order="left").join(
        items, on=schema.ITEM_IDX, how="left", maintain_order="left"
    )
    counts["unknown_user"] = int(df[schema.USER_IDX].null_count())
    df = df.filter(pl.col(schema.USER_IDX).is_not_null())
    has_text = pl.col("item_text").fill_null("").str.strip_chars() != ""
    counts["item_without_text"] = int(df.height - df.filter(has_text).height)
    df = df.filter(has_text)
    counts["held_out_interaction"] = counts["not_an_interaction"] = 0
    if train_only:
        user, _, in_train = _in_training_part(data, protocol)
        seen = (
            pl.DataFrame({schema.USER_IDX: user, schema.ITEM_IDX: data.item_seq, "in_train": in_train})
            .group_by(schema.USER_IDX, schema.ITEM_IDX)
            .agg(pl.col("in_train").any())
        )
        df = df.join(seen, on=[schema.USER_IDX, schema.ITEM_IDX], how="left", maintain_order="left")
        counts["not_an_interaction"] = int(df["in_train"].null_count())
        counts["held_out_interaction"] = int(df["in_train"].not_().sum())  # nulls are not counted
        df = df.filter(pl.col("in_train"))
    counts["pairs"] = df.height
    return df.select(schema.TEXT, schema.ITEM_IDX, "item_text"), counts


def sequence_pairs(data: SequenceData, protocol: str = "loo") -> tuple[pl.DataFrame, dict[str, int]]:
    """(previous item's text, next item id, next item's text) pairs: each two consecutive items of a
    user's training part of ``protocol``'s split (held-out items never appear), and the counts.

    Returns:
        (pairs, counts): pairs with the columns of :func:`review_pairs` (``text`` = the previous
        item's text); counts with ``transitions`` (consecutive pairs in the training parts, read),
        ``repeat`` (the same item twice), ``item_without_text`` (either side, removed) and ``pairs``.
    """
    _, position, in_train = _in_training_part(data, protocol)
    nxt = np.flatnonzero(in_train & (position > 0))  # (T,) the second item's index of each transition
    prev_item, next_item = data.item_seq[nxt - 1].astype(np.int64), data.item_seq[nxt].astype(np.int64)
    counts = {"transitions": int(nxt.shape[0]), "repeat": int((prev_item == next_item).sum())}
    text = data.items.select(schema.ITEM_IDX, pl.col(schema.TEXT).fill_null(""))
    df = (
        pl.DataFrame({"prev": prev_item, schema.ITEM_IDX: next_item})
        .filter(pl.col("prev") != pl.col(schema.ITEM_IDX))
        .join(text.rename({schema.ITEM_IDX: "prev"}), on="prev", how="left", maintain_order="left")
        .join(text.rename({schema.TEXT: "item_text"}), on=schema.ITEM_IDX, how="left", maintain_order="left")
    )
    has_text = (pl.col(schema.TEXT).fill_null("").str.strip_chars() != "") & (
        pl.col("item_text").fill_null("").str.strip_chars() != ""
    )
    counts["item_without_text"] = int(df.height - df.filter(has_text).height)
    df = df.filter(has_text)
    counts["pairs"] = df.height
    return df.select(schema.TEXT, schema.ITEM_IDX, "item_text"), counts


# ---- model -------------------------------------------------------------------------------------------
def load_trainable(base_encoder: str, device: torch.device, max_tokens: int) -> tuple[Any, int]:
    """A SentenceTransformer for ``base_encoder`` (any ``build_text_encoder`` name but ``openai:``).

    Returns:
        (model, original max_seq_length); the model's max_seq_length is set to ``max_tokens``.
    """
    from sentence_transformers import SentenceTransformer

    try:  # sentence-transformers >= 6
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    except ImportError:
        from sentence_transformers.models import Normalize, Pooling, Transformer

    enc = build_text_encoder(base_encoder, device=str(device))
    if isinstance(enc, SentenceTransformerEncoder):
        model = enc.model
    elif isinstance(enc, HFEncoder):
        path = enc.source
        if not Path(path).is_dir():
            from huggingface_hub import snapshot_download

            path = snapshot_download(path, local_files_only=True)
        transformer = Transformer(path, max_seq_length=enc.max_tokens)
        modules = [transformer, Pooling(enc.dim, pooling_mode=enc.pooling)]
        if enc.normalize:
            modules.append(Normalize())
        model = SentenceTransformer(modules=modules, device=str(device))
    else:
        raise ValueError(f"cannot fine-tune encoder {base_encoder!r}: use minilm, blair-*, st: or hf:")
    original = int(model.max_seq_length or max_tokens)
    model.max_seq_length = min(max_tokens, original)
    return model, original


def _embed(model: Any, texts: list[str], device: torch.device) -> torch.Tensor:
    """(B, D) sentence vectors with gradients (when enabled)."""
    prepare = getattr(model, "preprocess", None) or model.tokenize
    features = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in prepare(texts).items()}
    return model(features)["sentence_embedding"]


def symmetric_info_nce(
    reviews: torch.Tensor, items: torch.Tensor, same: torch.Tensor, temperature: float
) -> torch.Tensor:
    """BLaIR's contrastive loss, both directions averaged.

    Args:
        reviews: (B, D) review vectors; ``reviews[i]`` belongs with ``items[i]``.
        items: (B, D) item-text vectors.
        same: (B, B) bool, True where pair j shares pair i's item or review text; those
            off-diagonal entries are not used as negatives.
        temperature: softmax temperature over cosine similarities.
    """
    logits = F.normalize(reviews, dim=-1) @ F.normalize(items, dim=-1).T / temperature  # (B, B)
    eye = torch.eye(logits.shape[0], dtype=torch.bool, device=logits.device)
    logits = logits.masked_fill(same & ~eye, float("-inf"))
    target = torch.arange(logits.shape[0], device=logits.device)  # (B,)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


@torch.inference_mode()
def recall_at_1(
    model: Any,
    reviews: list[str],
    item_ids: np.ndarray,
    item_text: dict[int, str],
    device: torch.device,
    batch_size: int = 64,
) -> float:
    """Share of reviews whose most similar item text (among the items of ``item_ids``) is their own."""
    model.eval()
    candidates = np.unique(item_ids)  # (C,)

    def embed_all(texts: list[str]) -> torch.Tensor:
        parts = [
            _embed(model, texts[i : i + batch_size], device).float() for i in range(0, len(texts), batch_size)
        ]
        return F.normalize(torch.cat(parts), dim=-1)  # (N, D)

    queries = embed_all(reviews)  # (Q, D)
    docs = embed_all([item_text[int(i)] for i in candidates])  # (C, D)
    best = (queries @ docs.T).argmax(dim=1).cpu().numpy()  # (Q,)
    return float((candidates[best] == item_ids).mean())


# ---- training -------------------------------------------------------------------------------------------
@dataclass
class ReviewPairs:
    """Training pairs in the arrays a step reads: ``texts[i]`` (the review) belongs with item
    ``item_ids[i]`` (its text ``item_text[item_ids[i]]``); ``review_key[i]`` is the same for the
    same review text (such pairs are not each other's negatives)."""

    texts: list[str]
    item_ids: np.ndarray  # (P,) int64 item indices
    item_text: dict[int, str]
    review_key: np.ndarray  # (P,) int64

    @classmethod
    def of(cls, pairs: pl.DataFrame) -> ReviewPairs:
        """From :func:`review_pairs`' table."""
        texts = pairs[schema.TEXT].to_list()
        item_ids = pairs[schema.ITEM_IDX].to_numpy().astype(np.int64)
        item_text = dict(zip(item_ids.tolist(), pairs["item_text"].to_list(), strict=True))
        review_key = np.unique(np.array(texts, dtype=object), return_inverse=True)[1]
        return cls(texts, item_ids, item_text, review_key)


def warmup_schedule(
    model: Any, lr: float, total: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW (weight decay 0.01) with a linear warm-up over 10% of ``total`` steps, then linear decay."""
    warmup = max(1, total // 10)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup)))
    )
    return optimizer, schedule


def train_epoch(
    model: Any,
    pairs: ReviewPairs,
    batches: list[np.ndarray],
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LambdaLR,
    temperature: float,
    device: torch.device,
    bar: tqdm,
) -> float:
    """One pass over ``batches`` (each (B,) pair indices) with :func:`symmetric_info_nce`; returns
    the mean loss (NaN without batches)."""
    model.train()
    losses = []
    for batch in batches:
        ids = torch.as_tensor(pairs.item_ids[batch], device=device)  # (B,)
        keys = torch.as_tensor(pairs.review_key[batch], device=device)  # (B,)
        same = (ids[:, None] == ids[None, :]) | (keys[:, None] == keys[None, :])  # (B, B)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            r = _embed(model, [pairs.texts[i] for i in batch], device)  # (B, D)
            d = _embed(model, [pairs.item_text[int(i)] for i in pairs.item_ids[batch]], device)  # (B, D)
        loss = symmetric_info_nce(r.float(), d.float(), same, temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    return float(np.mean(losses)) if losses else float("nan")
