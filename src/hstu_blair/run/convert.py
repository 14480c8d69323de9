"""Run directories of earlier layouts: how to recognise them and convert them.

The one earlier layout is hstu-blair 0.1's: pickled ``checkpoints/{best,last}.pt`` and no
``model.json``. Its checkpoints are read with ``torch.load(weights_only=True)``, which rebuilds
only tensors and plain containers and refuses anything else, so a tampered file cannot run code
here either: it fails to convert instead. The result is what ``train`` writes today: safetensors
weights and the resume state (``recipes/convert.py`` builds the model from the run's config and
writes ``model.json``). The old files are left in place and never read again.

Only ``convert-run`` and ``check`` call this module (and loading a run, to word its error when
``model.json`` is missing); nothing on the serving path does.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from hstu_blair.errors import ConfigError
from hstu_blair.run.layout import (
    CHECKPOINT_NAMES,
    checkpoints_dir,
    config_path,
    model_info_path,
    resume_path,
    weights_path,
)
from hstu_blair.training.checkpoint import save_resume_state, save_weights

LEGACY_PREFIXES = {"encoder.": "backbone."}
"""State-dict key prefixes renamed since 0.1."""
PROGRESS_KEYS = ("epoch", "step", "best", "best_epoch", "stale", "history")
"""The training progress a 0.1 checkpoint kept beside the model and optimizer."""


def legacy_checkpoints(run_dir: str | Path) -> dict[str, Path]:
    """``best`` / ``last`` -> the pickled checkpoint of a 0.1 run directory (present or not)."""
    return {name: checkpoints_dir(run_dir) / f"{name}.pt" for name in CHECKPOINT_NAMES}


def earlier_layout(run_dir: str | Path) -> str | None:
    """Why a directory without ``model.json`` cannot be loaded, when it is a run of an earlier
    layout (what to do about it); None when it is not."""
    if not list(checkpoints_dir(run_dir).glob("*.pt")):
        return None
    return (
        f"{run_dir} was written by hstu-blair 0.1: its checkpoints are pickles, which are not "
        "loaded because unpickling can execute code. Convert it once with `hstu-blair convert-run "
        f"{run_dir}` (reads only tensors and plain values, never code), then load it again."
    )


def check_convertible(run_dir: str | Path) -> None:
    """Raises ConfigError unless ``run_dir`` is a 0.1 run directory not yet converted."""
    if model_info_path(run_dir).exists():
        raise ConfigError(f"{run_dir} already has {model_info_path(run_dir).name}: nothing to convert")
    if not legacy_checkpoints(run_dir)["last"].exists() or not config_path(run_dir).exists():
        raise ConfigError(
            f"{run_dir} is not a run directory of hstu-blair 0.1 (no config.toml or checkpoints/last.pt)"
        )


def _load_legacy(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ConfigError(
            f"{path} holds objects other than tensors and plain values; it is not converted "
            f"(loading it would mean unpickling arbitrary code). Detail: {str(exc).splitlines()[0]}"
        ) from None


def _renamed(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        for old, new in LEGACY_PREFIXES.items():
            if key.startswith(old):
                key = new + key[len(old) :]
        out[key] = value
    return out


def convert_checkpoints(run_dir: str | Path, model: nn.Module) -> list[Path]:
    """Load each 0.1 checkpoint into ``model`` (built from the run's config) and write it as
    safetensors weights, then the last one's optimizer, RNG and progress as the resume state.

    Returns:
        The files written.

    Raises:
        ConfigError: a checkpoint holds anything but tensors and plain values.
    """
    written = []
    old = legacy_checkpoints(run_dir)
    last = _load_legacy(old["last"])
    for name, path in old.items():
        if not path.exists():
            continue
        state = last if name == "last" else _load_legacy(path)
        model.load_state_dict(_renamed(state["model"]))
        save_weights(weights_path(run_dir, name), model, {"epoch": str(state.get("epoch", ""))})
        written.append(weights_path(run_dir, name))
    save_resume_state(
        resume_path(run_dir),
        {
            "optimizer": last["optimizer"],
            "neg_generator": last["neg_generator"],
            "rng": last["rng"],
            "progress": {k: last[k] for k in PROGRESS_KEYS},
        },
    )
    return [*written, resume_path(run_dir)]
