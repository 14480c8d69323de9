"""The model files of a run directory, and loading a trained model back from them.

A run directory's model is plain data, loadable without executing anything:

- ``model.json``: the :class:`~hstu_blair.models.build.Architecture`, the item vocabulary
  (``item_ids[i]`` is the external id of item index ``i + 1``), the dataset it was trained on
  (path, name, data hash) and, for text-fused models, the embedding store it read (path, encoder,
  fingerprint and the sha256 of the matrix, checked on load);
- ``checkpoints/best.safetensors`` (best validation) and ``checkpoints/last.safetensors``: weights;
- ``checkpoints/last.resume.pt``: optimizer and RNG state for ``--resume`` (``weights_only`` load).

A run refreshed by ``hstu-blair update`` holds further model versions under ``versions/<n>/``
(see :mod:`hstu_blair.run.versions`): the same files, plus ``added_text.safetensors``, the
text rows of the items added at run time that the version was trained with (appended to the run's
text store, checked by sha256). Loading a run loads the version its pointer names.

Run directories written before these files existed hold pickled ``*.pt`` checkpoints; they are
never unpickled here. ``hstu-blair convert-run`` converts them explicitly
(:mod:`hstu_blair.run.convert`, asked here only to word the error when ``model.json`` is missing).

File names and paths come from :mod:`hstu_blair.run.layout`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from hstu_blair.data.dataset import SequenceData
from hstu_blair.data.manifest import read_json_file, versions, write_json_atomic
from hstu_blair.errors import ConfigError, DataFormatError
from hstu_blair.models.build import Architecture, build_model
from hstu_blair.models.sequential import SequentialModel
from hstu_blair.run.convert import earlier_layout
from hstu_blair.run.layout import (
    CHECKPOINT_NAMES,
    Checkpoint,
    added_text_path,
    checkpoints_dir,
    model_info_path,
    version_dir,
    weights_path,
)
from hstu_blair.run.model_check import check_model_info, check_weights
from hstu_blair.run.versions import current_version
from hstu_blair.text.store import StoreManifest, load_embeddings
from hstu_blair.training.checkpoint import load_weights

MODEL_FORMAT_VERSION = 1


def matrix_sha256(matrix: torch.Tensor) -> str:
    """sha256 of a float32 matrix's values (what a model's text store must still hold)."""
    array = matrix.detach().to(torch.float32).contiguous().numpy()
    return hashlib.sha256(memoryview(array).cast("B")).hexdigest()  # no copy of the matrix


@dataclass(frozen=True)
class TextStoreRef:
    """The embedding store a text-fused model was trained with."""

    path: str
    sha256: str
    encoder: str
    dim: int
    fingerprint: dict[str, Any] | None = None

    @classmethod
    def of(cls, path: Path, matrix: torch.Tensor, manifest: StoreManifest) -> TextStoreRef:
        """A reference to the store at ``path`` holding ``matrix`` described by ``manifest``."""
        return cls(
            str(Path(path).resolve()),
            matrix_sha256(matrix),
            manifest.encoder,
            int(matrix.shape[1]),
            manifest.extra.get("fingerprint"),
        )


def write_model_info(
    run_dir: Path,
    arch: Architecture,
    data: SequenceData,
    text: TextStoreRef | None,
    extra: dict[str, Any] | None = None,
    item_ids: list[str] | None = None,
) -> None:
    """Write ``model.json`` (see the module docstring); ``item_ids`` defaults to the dataset's
    catalogue (a refreshed version lists the items added at run time after it)."""
    write_json_atomic(
        model_info_path(run_dir),
        {
            "format": "hstu-blair-model",
            "format_version": MODEL_FORMAT_VERSION,
            "architecture": arch.to_dict(),
            "dataset": {
                "path": str(Path(data.path).resolve()),
                "name": data.name,
                "data_hash": data.data_hash,
            },
            "text_store": None if text is None else text.__dict__,
            "weights": {c: str(weights_path(Path("."), c)) for c in CHECKPOINT_NAMES},
            "versions": versions(),
            **(extra or {}),
            "item_ids": data.items["item_id"].to_list() if item_ids is None else item_ids,
        },
    )


def read_model_info(run_dir: Path) -> dict[str, Any]:
    """``model.json`` of a run directory.

    Raises:
        ConfigError: not a run directory, or one written with pickled checkpoints (says how to
            convert it).
        DataFormatError: not JSON, not an object, or of another format version.
    """
    path = model_info_path(run_dir)
    if not path.exists():
        raise ConfigError(earlier_layout(run_dir) or f"{run_dir} is not a run directory (no {path.name})")
    info = read_json_file(path)
    if info.get("format_version") != MODEL_FORMAT_VERSION:
        raise DataFormatError(path, f"model format_version {info.get('format_version')!r} is not supported")
    return info


def load_text_matrix(ref: dict[str, Any], num_items: int, store: str | Path | None = None) -> torch.Tensor:
    """The text matrix a model was trained with, checked against the recorded sha256.

    Args:
        ref: the ``text_store`` record of ``model.json``.
        num_items: n (the matrix has n+1 rows).
        store: where the store is now, if it moved (default: the recorded path).

    Raises:
        DataFormatError: the store is missing or holds other vectors than the model was trained on.
    """
    path = Path(store or ref["path"])
    matrix, _ = load_embeddings(path, num_items=num_items)
    if matrix_sha256(matrix) != ref["sha256"]:
        raise DataFormatError(
            path,
            f"holds other vectors than the model was trained with (encoder {ref['encoder']!r}); "
            "re-embed with the same encoder and texts, or pass the original store",
        )
    return matrix


def save_added_text(model_dir: Path, rows: torch.Tensor) -> dict[str, Any]:
    """Write the (m, d_text) text rows of added items; returns the ``added_text`` record of
    ``model.json``."""
    rows = rows.detach().to(torch.float32).contiguous().cpu()
    path = added_text_path(model_dir)
    save_file({"rows": rows}, str(path))
    return {"file": path.name, "rows": int(rows.shape[0]), "sha256": matrix_sha256(rows)}


def _model_text(
    model_dir: Path, info: dict[str, Any], num_items: int, store: str | Path | None
) -> torch.Tensor:
    """The (n+1, d_text) text matrix of a model: its store's rows, then its added rows, if any."""
    added = info.get("added_text")
    if not added:
        return load_text_matrix(info["text_store"], num_items, store)
    base = load_text_matrix(info["text_store"], num_items - int(added["rows"]), store)
    path = Path(model_dir) / added["file"]
    rows = load_file(str(path))["rows"]
    if tuple(rows.shape) != (int(added["rows"]), base.shape[1]) or matrix_sha256(rows) != added["sha256"]:
        raise DataFormatError(path, "holds other text rows than the model was trained with")
    return torch.cat([base, rows])


@dataclass
class TrainedModel:
    """A trained model with what it needs to be used: its architecture, dataset and record."""

    run_dir: Path
    arch: Architecture
    model: SequentialModel
    data: SequenceData
    info: dict[str, Any]
    checkpoint: str
    version: int = 0
    model_dir: Path | None = None
    """Where the served version's files are (the run directory for version 0)."""


def load_trained(
    run_dir: str | Path,
    checkpoint: Checkpoint = "best",
    device: str | torch.device = "cpu",
    data_path: str | Path | None = None,
    store: str | Path | None = None,
    version: int | None = None,
) -> TrainedModel:
    """Load the model of a run directory from ``model.json`` and safetensors weights (no pickle).

    Args:
        run_dir: the run directory.
        checkpoint: ``best`` (best validation, or the refit model of a ``train.refit`` run;
            ``last`` when the run has no best), ``last``, or ``selected`` (a refit run's
            validation-chosen weights).
        device: where to put the model.
        data_path: the prepared dataset, if it moved since training (default: the recorded path).
        store: the text embedding store, if it moved (default: the recorded path).
        version: the model version (default: the one the run's pointer names; 0 without one).

    Raises:
        ConfigError: not a run directory (or an old one, with how to convert it), no weights, or
            the dataset differs from the one trained on.
        DataFormatError: ``model.json`` or the weights are damaged or disagree (one line naming
            the file; checked before the model is allocated), or the text store changed since
            training.
    """
    run_dir = Path(run_dir)
    version = current_version(run_dir) if version is None else version
    model_dir = version_dir(run_dir, version)
    info = read_model_info(model_dir)
    arch = check_model_info(model_info_path(model_dir), info)
    if checkpoint == "selected" and not weights_path(model_dir, checkpoint).exists():
        raise ConfigError(
            f"{model_dir}: no {weights_path(model_dir, checkpoint)}: only a run with train.refit keeps "
            "its validation-chosen weights apart from the refit model (best)"
        )
    name = checkpoint if weights_path(model_dir, checkpoint).exists() else "last"
    if not weights_path(model_dir, name).exists():
        raise ConfigError(f"{model_dir}: no weights in {checkpoints_dir(model_dir)}")
    check_weights(
        weights_path(model_dir, name), arch, model_info_path(model_dir)
    )  # before allocating anything
    path = Path(data_path) if data_path else Path(info["dataset"]["path"])
    data = SequenceData.load(path)
    if info["dataset"]["data_hash"] != data.data_hash:
        raise ConfigError(
            f"dataset at {path} differs from the one {run_dir} was trained on (data hash mismatch)"
        )
    text = None if info["text_store"] is None else _model_text(model_dir, info, arch.num_items, store)
    model = build_model(arch, text)
    try:
        load_weights(weights_path(model_dir, name), model)
    except RuntimeError as exc:  # keys or shapes the checks above could not see (text-dependent shapes)
        raise DataFormatError(weights_path(model_dir, name), " ".join(str(exc).split())[:300]) from None
    model.to(device).eval()
    return TrainedModel(run_dir, arch, model, data, info, name, version, model_dir)
