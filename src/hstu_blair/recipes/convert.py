"""Converting a run directory written by hstu-blair 0.1 (pickled ``*.pt`` checkpoints) to model files.

The old checkpoints are read with ``torch.load(weights_only=True)``, which rebuilds only tensors
and plain containers and refuses anything else, so a tampered file cannot run code here either:
it fails to convert instead. The result is what ``train`` writes today: ``model.json``,
``checkpoints/{best,last}.safetensors`` and ``checkpoints/last.resume.pt``. The old files are
left in place and never read again.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from hstu_blair.config import load_config
from hstu_blair.data.dataset import SequenceData
from hstu_blair.errors import ConfigError
from hstu_blair.models.build import build_model
from hstu_blair.recipes.resolve import architecture, ensure_text, time_scale
from hstu_blair.training.checkpoint import save_resume_state, save_weights
from hstu_blair.training.run_dir import MODEL_INFO, resume_path, weights_path, write_model_info

LEGACY_PREFIXES = {"encoder.": "backbone."}
"""State-dict key prefixes renamed since 0.1."""


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


def convert_run(run_dir: str | Path) -> list[Path]:
    """Write safetensors weights, resume state and ``model.json`` for an hstu-blair 0.1 run directory.

    Returns:
        The files written.

    Raises:
        ConfigError: not a 0.1 run directory, already converted, or a checkpoint that holds
            anything but tensors and plain values.
    """
    run_dir = Path(run_dir)
    old = {name: run_dir / "checkpoints" / f"{name}.pt" for name in ("best", "last")}
    if (run_dir / MODEL_INFO).exists():
        raise ConfigError(f"{run_dir} already has {MODEL_INFO}: nothing to convert")
    if not old["last"].exists() or not (run_dir / "config.toml").exists():
        raise ConfigError(
            f"{run_dir} is not a run directory of hstu-blair 0.1 (no config.toml or checkpoints/last.pt)"
        )
    config = load_config(run_dir / "config.toml")
    data = SequenceData.load(config.data.path)
    text, text_ref = ensure_text(config, data, progress=False)
    arch = architecture(
        config, data.num_items, 0 if text is None else int(text.shape[1]), time_scale(config, data)
    )
    model = build_model(arch, text)
    written = []
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
            "progress": {k: last[k] for k in ("epoch", "step", "best", "best_epoch", "stale", "history")},
        },
    )
    write_model_info(run_dir, arch, data, text_ref, {"converted_from": "hstu-blair 0.1 pickle checkpoints"})
    return [*written, resume_path(run_dir), run_dir / MODEL_INFO]
