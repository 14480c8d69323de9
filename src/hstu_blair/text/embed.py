"""``embed``: a dataset's item texts -> an embedding store, re-encoding only what changed.

The store (:mod:`hstu_blair.text.store`) holds an (n+1, D) float32 matrix, row 0 zeros for
padding, row i the vector of item id i, and a manifest with the encoder's fingerprint, the
dataset hash and a hash of every item's text. A later run with the same encoder fingerprint
reuses every row whose text hash it already has (texts moved to other ids included) and encodes
only new or changed texts; identical texts are encoded once.

Empty item texts are never given a zero vector: by default (``empty_text="fallback"``) the item's
title is encoded instead, else ``"item <item id>"``; both are counted in the manifest and logged.
``empty_text="error"`` stops with the count and the first item ids instead.

Long runs (e.g. OpenAI over 77K items) save every ``checkpoint_every`` encoded texts to
``.<name>.partial/`` beside the output; a rerun after a failure resumes from there.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm.auto import tqdm

from hstu_blair.data.dataset import ITEMS, SequenceData
from hstu_blair.errors import DataFormatError
from hstu_blair.text.encoders import EncoderError, TextEncoder
from hstu_blair.text.registry import resolve_encoder
from hstu_blair.text.store import StoreManifest, load_embeddings, save_embeddings, store_path, text_hash

log = logging.getLogger(__name__)

EmptyText = Literal["fallback", "error"]
CHECKPOINT_EVERY = 8192


def item_texts(data: SequenceData, empty_text: EmptyText = "fallback") -> tuple[list[str], dict[str, int]]:
    """The text encoded for each item id 1..n, and how many empty texts were replaced.

    Args:
        data: the prepared dataset.
        empty_text: ``fallback`` (title, else ``"item <item id>"``) or ``error``.

    Returns:
        (texts, counts) with ``texts[i]`` for item id ``i + 1`` and ``counts`` =
        ``{"title": ..., "item_id": ...}``, the number of empty texts replaced by each.

    Raises:
        DataFormatError: ``empty_text="error"`` and some item text is empty.
    """
    texts = data.texts
    titles = data.items["title"].to_list()
    item_ids = data.items["item_id"].to_list()
    if empty_text not in ("fallback", "error"):
        raise ValueError(f"empty_text={empty_text!r}; valid: fallback, error")
    empty = [i for i, t in enumerate(texts) if not (t or "").strip()]
    counts = {"title": 0, "item_id": 0}
    if empty and empty_text == "error":
        raise DataFormatError(
            data.path / ITEMS,
            f"{len(empty)} of {len(texts)} items have empty text (item ids {[i + 1 for i in empty[:10]]}"
            f"{' ...' if len(empty) > 10 else ''}); an empty text has no embedding: fill them in, prepare with "
            "--items-without-text drop, or embed with the title / item-id fallback",
            field="text",
        )
    texts = list(texts)
    for i in empty:
        title = (titles[i] or "").strip()
        if title:
            texts[i], counts["title"] = title, counts["title"] + 1
        else:
            texts[i], counts["item_id"] = f"item {item_ids[i]}", counts["item_id"] + 1
    if empty:
        log.warning(
            "%d items have empty text: encoding the title for %d and 'item <item id>' for %d",
            len(empty),
            counts["title"],
            counts["item_id"],
        )
    return texts, counts


def _check_vectors(vectors: np.ndarray, n: int, dim: int, who: str) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.shape != (n, dim):
        raise EncoderError(f"{who} returned shape {vectors.shape}, expected ({n}, {dim})")
    bad = int((~np.isfinite(vectors).all(axis=1)).sum())
    if bad:
        raise EncoderError(f"{who} returned {bad} vectors with NaN/inf (try precision='fp32')")
    return vectors


def embed_texts(
    texts: Sequence[str],
    encoder: str | TextEncoder,
    *,
    batch_size: int = 64,
    max_tokens: int | None = None,
    dimensions: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Vectors of ``texts`` (e.g. new items at serving time), in input order.

    Args:
        texts: non-empty texts.
        encoder: an encoder or its name (use the store's encoder: ``registry.encoder_for_store``).
        batch_size: texts per forward pass (local encoders).
        max_tokens, dimensions: see ``registry.build_text_encoder`` (only when ``encoder`` is a name).
        progress: show a progress bar.

    Returns:
        (len(texts), D) float32.

    Raises:
        ValueError: an empty text (it has no embedding).
        EncoderError: the encoder failed.
    """
    texts = list(texts)
    empty = [i for i, t in enumerate(texts) if not (t or "").strip()]
    if empty:
        raise ValueError(f"{len(empty)} empty texts (positions {empty[:10]}): an empty text has no embedding")
    enc = resolve_encoder(encoder, max_tokens, dimensions)
    with tqdm(total=len(texts), unit="text", desc=f"embed {enc.name}", disable=not progress) as bar:
        vectors = enc.encode(texts, batch_size, progress=bar.update)
    return _check_vectors(vectors, len(texts), enc.dim, enc.name)


def _partial_dir(out: Path) -> Path:
    return out.parent / f".{out.stem}.partial"


def _known_vectors(out: Path, fingerprint: dict[str, Any]) -> dict[str, np.ndarray]:
    """Text hash -> vector from an earlier store and unfinished chunks made with ``fingerprint``."""
    known: dict[str, np.ndarray] = {}
    if out.exists():
        try:
            matrix, manifest = load_embeddings(out)
        except DataFormatError as exc:
            log.warning("%s is unreadable, encoding every item again (%s)", out, exc)
        else:
            old = manifest.extra.get("fingerprint")
            if old == fingerprint:
                rows = matrix.numpy()
                known.update((h, rows[i + 1]) for i, h in enumerate(manifest.text_hashes))
            else:
                changed = sorted(
                    k for k in set(old or {}) | set(fingerprint) if (old or {}).get(k) != fingerprint.get(k)
                )
                log.info(
                    "%s was made with another encoder setup (differs in %s); encoding every item",
                    out,
                    changed,
                )
    for chunk in sorted(_partial_dir(out).glob("chunk-*.npz")):
        with np.load(chunk) as z:
            if json.loads(str(z["fingerprint"])) == fingerprint:
                known.update(zip(z["hashes"].tolist(), z["vectors"], strict=True))
    return known


def _save_chunk(out: Path, hashes: list[str], vectors: np.ndarray, fingerprint: dict[str, Any]) -> None:
    folder = _partial_dir(out)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"chunk-{time.time_ns()}.npz"
    tmp = folder / f".{path.name}.tmp"
    with open(tmp, "wb") as fh:
        np.savez(fh, hashes=np.array(hashes), vectors=vectors, fingerprint=np.array(json.dumps(fingerprint)))
    tmp.replace(path)


def embed_dataset(
    data: SequenceData,
    encoder: str | TextEncoder,
    out: Path | None = None,
    batch_size: int = 64,
    max_tokens: int | None = None,
    dimensions: int | None = None,
    progress: bool = True,
    empty_text: EmptyText = "fallback",
    checkpoint_every: int = CHECKPOINT_EVERY,
) -> Path:
    """Embed every item text of ``data`` into an embedding store (reusing an earlier one).

    Args:
        data: the prepared dataset.
        encoder: an encoder or its name (``minilm``, ``blair-base``, ``openai:...``, see ``registry.TEXT_ENCODERS``).
        out: store file (``.safetensors`` or ``.npy``); default ``<dataset>/embeddings/<encoder>.safetensors``.
        batch_size: texts per forward pass (local encoders).
        max_tokens: truncation in tokens; None = the encoder's own limit (256 MiniLM, 512 BLaIR,
            8191 OpenAI). Used only when ``encoder`` is a name, like ``dimensions``.
        dimensions: output size of ``openai:`` encoders (the paper: 768).
        progress: show a progress bar (rate and ETA).
        empty_text: what to encode for items with empty text (see :func:`item_texts`).
        checkpoint_every: save finished vectors every this many texts so a failed run resumes.

    Returns:
        The store path; its manifest's ``extra`` records the fingerprint, ``encoded`` (texts encoded
        in this run), ``reused`` (items whose vector was kept) and the empty-text fallbacks.

    Raises:
        EncoderError: the encoder cannot load or failed (nothing is written then, finished chunks
            are kept for the next run).
        DataFormatError: ``empty_text="error"`` and some text is empty.

    Longer than 60 lines with its documented arguments; the body is one job (texts in, one
    store out).
    """
    started = time.perf_counter()
    enc = resolve_encoder(encoder, max_tokens, dimensions)
    out = Path(out) if out is not None else store_path(data.path, enc.name)
    texts, fallbacks = item_texts(data, empty_text)
    hashes = [text_hash(t) for t in texts]
    fingerprint = enc.fingerprint()
    known = _known_vectors(out, fingerprint)

    todo: dict[str, str] = {}  # hash -> text, each new text once, in item order
    for h, t in zip(hashes, texts, strict=True):
        if h not in known and h not in todo:
            todo[h] = t
    reused = sum(1 for h in hashes if h not in todo)
    todo_hashes = sorted(todo, key=lambda h: -len(todo[h]))  # longest first, across chunks
    log.info(
        "%s: %d items, %d reused, %d texts to encode with %s",
        data.name,
        len(texts),
        reused,
        len(todo),
        enc.name,
    )
    with tqdm(total=len(todo), unit="text", desc=f"embed {enc.name}", disable=not progress) as bar:
        for start in range(0, len(todo_hashes), checkpoint_every):
            chunk = todo_hashes[start : start + checkpoint_every]
            vectors = enc.encode([todo[h] for h in chunk], batch_size, progress=bar.update)
            vectors = _check_vectors(vectors, len(chunk), enc.dim, enc.name)
            known.update(zip(chunk, vectors, strict=True))
            if len(todo_hashes) > checkpoint_every:
                _save_chunk(out, chunk, vectors, fingerprint)

    matrix = np.zeros((len(texts) + 1, enc.dim), dtype=np.float32)  # (n+1, D), row 0 = padding
    if texts:
        matrix[1:] = np.stack([known[h] for h in hashes])
    manifest = StoreManifest(
        encoder=enc.name,
        dim=enc.dim,
        num_items=len(texts),
        pooling=str(fingerprint.get("pooling", "unknown")),
        normalized=bool(fingerprint.get("normalized", False)),
        max_tokens=fingerprint.get("max_tokens"),
        revision=fingerprint.get("revision"),
        dataset_hash=data.data_hash,
        extra={
            "fingerprint": fingerprint,
            "encoded": len(todo),
            "reused": reused,
            "empty_text": {"mode": empty_text, **fallbacks},
            "seconds": round(time.perf_counter() - started, 3),
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        },
        text_hashes=hashes,
    )
    save_embeddings(out, matrix, manifest)
    shutil.rmtree(_partial_dir(out), ignore_errors=True)
    log.info("wrote %s: (%d, %d), encoded %d texts, reused %d items", out, *matrix.shape, len(todo), reused)
    return out
