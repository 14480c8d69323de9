"""The embedding store: item vectors aligned to a dataset's item ids, with a manifest.

File layout: ``<name>.safetensors`` (or ``.npy``) holding one float32 matrix of shape
(num_items + 1, dim) whose row ``i`` is item id ``i`` (row 0, padding, is zeros), and
``<name>.json`` beside it: encoder name and revision, pooling, normalisation, dimension, max
tokens, the dataset's hash, and a short hash of each item's text (to re-encode only what changed).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from hstu_blair.data.manifest import write_json_atomic
from hstu_blair.errors import DataFormatError

TENSOR_NAME = "embeddings"


def text_hash(text: str) -> str:
    """Short stable hash of an item text (first 16 hex digits of sha256)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass
class StoreManifest:
    """What made an embedding file. ``text_hashes[i]`` belongs to item id ``i + 1``."""

    encoder: str
    dim: int
    num_items: int
    pooling: str = "unknown"
    normalized: bool = False
    max_tokens: int | None = None
    revision: str | None = None
    dataset_hash: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    text_hashes: list[str] = field(default_factory=list)


def manifest_path(path: Path) -> Path:
    return Path(path).with_suffix(".json")


def store_path(data_path: str | Path, encoder: str) -> Path:
    """``<dataset>/embeddings/<encoder slug>.safetensors``: where ``embed`` writes by default (the one
    place this path is worked out)."""
    slug = encoder.replace("/", "__").replace(":", "_")
    return Path(data_path) / "embeddings" / f"{slug}.safetensors"


def save_embeddings(path: str | Path, vectors: np.ndarray | torch.Tensor, manifest: StoreManifest) -> Path:
    """Write an (num_items + 1, dim) matrix (row 0 = padding) and its manifest, atomically.

    The format follows the suffix: ``.safetensors`` (default) or ``.npy``.
    """
    path = Path(path)
    matrix = torch.as_tensor(vectors, dtype=torch.float32).contiguous()
    if matrix.ndim != 2 or matrix.shape[0] != manifest.num_items + 1 or matrix.shape[1] != manifest.dim:
        raise ValueError(
            f"embedding matrix has shape {tuple(matrix.shape)}, expected ({manifest.num_items + 1}, {manifest.dim})"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if path.suffix == ".npy":
        with open(tmp, "wb") as fh:
            np.save(fh, matrix.numpy())
    else:
        save_file({TENSOR_NAME: matrix}, str(tmp), metadata={"encoder": manifest.encoder})
    tmp.replace(path)
    write_json_atomic(manifest_path(path), asdict(manifest))
    return path


def load_embeddings(path: str | Path, num_items: int | None = None) -> tuple[torch.Tensor, StoreManifest]:
    """Read an embedding file and its manifest; check alignment with ``num_items`` when given.

    Raises:
        DataFormatError: missing file, wrong shape, or a row count that does not match the dataset.
    """
    path = Path(path)
    if not path.exists():
        raise DataFormatError(path, "embedding file not found (create it with `hstu-blair embed`)")
    if path.suffix == ".npy":
        matrix = torch.from_numpy(np.load(path)).float()
    else:
        tensors = load_file(str(path))
        if TENSOR_NAME not in tensors:
            raise DataFormatError(
                path, f"no tensor named {TENSOR_NAME!r} (has {sorted(tensors)})", field=TENSOR_NAME
            )
        matrix = tensors[TENSOR_NAME].float()
    mpath = manifest_path(path)
    if mpath.exists():
        manifest = StoreManifest(**json.loads(mpath.read_text()))
    else:
        manifest = StoreManifest(
            encoder="unknown", dim=int(matrix.shape[1]), num_items=int(matrix.shape[0]) - 1
        )
    if matrix.ndim != 2:
        raise DataFormatError(path, f"expected a 2-D matrix, got shape {tuple(matrix.shape)}")
    if num_items is not None and matrix.shape[0] != num_items + 1:
        raise DataFormatError(
            path,
            f"has {matrix.shape[0]} rows but the dataset has {num_items} items (expected {num_items + 1} rows, row 0 = padding)",
        )
    if not torch.isfinite(matrix).all():
        raise DataFormatError(path, "contains NaN or infinite values")
    return matrix, manifest
