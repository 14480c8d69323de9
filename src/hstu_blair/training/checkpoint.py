"""Checkpoint files without pickle: model weights in safetensors, resume state loaded with ``weights_only``.

- Weights (``*.safetensors``): the model's ``state_dict`` (parameters and persistent buffers) and
  nothing else; loading them runs no code.
- Resume state (``*.resume.pt``): optimizer state, RNG states and the loop's counters, written with
  ``torch.save`` and read with ``torch.load(weights_only=True)``, which only rebuilds tensors and
  plain containers (never arbitrary objects). The loop's counters travel as a JSON string.

Every file is written to a temporary name, fsync'd and renamed over the target, so a run killed
while saving keeps the previous file.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import nn

from hstu_blair.errors import DataFormatError


def _write_atomic(path: Path, write: Callable[[BinaryIO], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def save_weights(path: Path, model: nn.Module, metadata: dict[str, str] | None = None) -> None:
    """Write ``model.state_dict()`` to ``path`` (safetensors), atomically."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}

    _write_atomic(path, lambda fh: fh.write(safetensors_bytes(tensors, metadata=metadata)))


def load_weights(path: Path, model: nn.Module, device: str | torch.device = "cpu") -> None:
    """Load weights written by :func:`save_weights` into ``model`` (strict: every key must match).

    Raises:
        FileNotFoundError: no such file.
        RuntimeError: the keys or shapes do not match the model.
    """
    state = load_file(str(path), device=str(device))
    model.load_state_dict(state)


def save_resume_state(path: Path, state: dict[str, Any]) -> None:
    """Write resume state: tensors and plain containers (optimizer, RNG), with ``progress`` as JSON."""
    payload = dict(state)
    if "progress" in payload:
        payload["progress"] = json.dumps(payload["progress"])
    _write_atomic(path, lambda fh: torch.save(payload, fh))


def load_resume_state(path: Path) -> dict[str, Any]:
    """Read resume state with ``torch.load(weights_only=True)`` (no code can run while loading).

    Raises:
        DataFormatError: the file holds anything but tensors and plain containers (it is refused,
            not loaded).
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise DataFormatError(
            path,
            "holds objects other than tensors and plain values; refused (loading it could run code). "
            f"Detail: {str(exc).splitlines()[0]}",
        ) from None
    if "progress" in state:
        state["progress"] = json.loads(state["progress"])
    return state


def rng_state() -> dict[str, Any]:
    """The global torch RNG states (CPU and, where present, CUDA): dropout draws from these."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
