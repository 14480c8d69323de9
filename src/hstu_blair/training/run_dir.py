"""Reading a run directory back: its config, dataset and trained model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from hstu_blair.config import RunConfig, load_config
from hstu_blair.data.dataset import SequenceData
from hstu_blair.errors import ConfigError
from hstu_blair.models.build import build_model, load_text_for
from hstu_blair.models.sequential import SequentialModel
from hstu_blair.training.checkpoint import load_checkpoint


@dataclass
class TrainedRun:
    """A finished (or interrupted) run: config, dataset, model with loaded weights."""

    run_dir: Path
    config: RunConfig
    data: SequenceData
    model: SequentialModel
    checkpoint: str
    info: dict[str, Any]


def load_run(
    run_dir: str | Path,
    checkpoint: Literal["best", "last"] = "best",
    device: str | torch.device = "cpu",
    data_path: str | Path | None = None,
) -> TrainedRun:
    """Load a run directory written by ``train``.

    Args:
        run_dir: the run directory.
        checkpoint: ``best`` (best validation; falls back to ``last`` when absent) or ``last``.
        device: where to put the model.
        data_path: the prepared dataset, if it moved since training (default: the recorded path).

    Raises:
        ConfigError: not a run directory, no checkpoint, or the dataset differs from the one trained on.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.toml").exists():
        raise ConfigError(f"{run_dir} is not a run directory (no config.toml)")
    config = load_config(run_dir / "config.toml")
    info = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").exists() else {}
    path = Path(data_path) if data_path else Path(info.get("dataset", {}).get("path", config.data.path))
    data = SequenceData.load(path)
    recorded = info.get("dataset", {}).get("data_hash")
    if recorded and recorded != data.data_hash:
        raise ConfigError(
            f"dataset at {path} differs from the one {run_dir} was trained on (data hash mismatch)"
        )
    config.data.path = str(path)
    ckpts = run_dir / "checkpoints"
    name = checkpoint if (ckpts / f"{checkpoint}.pt").exists() else "last"
    if not (ckpts / f"{name}.pt").exists():
        raise ConfigError(f"{run_dir}: no checkpoint in {ckpts}")
    model = build_model(config.model, data.num_items, config.data.max_len, load_text_for(config, data))
    model.load_state_dict(load_checkpoint(ckpts / f"{name}.pt", "cpu")["model"])
    model.to(device).eval()
    return TrainedRun(run_dir, config, data, model, name, info)
