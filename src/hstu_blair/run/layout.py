"""Where everything in a run directory is: the one module that types its file names.

    RUN_DIR/
      config.toml                 the resolved run config (what ``update`` and ``evaluate`` reread)
      run.json                    package versions, data hashes
      model.json                  architecture, item vocabulary, dataset and text store (model_files)
      checkpoints/best.safetensors, checkpoints/last.safetensors, checkpoints/last.resume.pt
      checkpoints/selected.safetensors  with train.refit: the validation-chosen model (best is the refit one)
      refit/                      with train.refit: the refit's history.json, tb/ and checkpoints/
      history.json, final_metrics.json
      cold_start.json             a cold-start run's two measurements
      store.sqlite                added items, users' events, records set aside (the default store)
      store.json                  the stores this run has had (a missing one is refused, not recreated)
      versions/current.json       the served version's pointer (versions.py)
      versions/<n>/               model.json, checkpoints/, added_text.safetensors, update.json
      versions/.writer.lock       one ``update`` or ``rollback`` at a time
      versions/.<n>.<pid>.tmp/    a version being written

Every other module asks for a path here instead of joining a name itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

CONFIG = "config.toml"
RUN_INFO = "run.json"
MODEL_INFO = "model.json"
CHECKPOINTS = "checkpoints"
HISTORY = "history.json"
FINAL_METRICS = "final_metrics.json"
COLD_START = "cold_start.json"
STORE_FILE = "store.sqlite"
"""File name of the default SQLite store (serving's items and events) inside a run directory."""
STORE_MARKER = "store.json"
"""File name of the record of the stores a run has had (written when one is first opened)."""
ADDED_TEXT = "added_text.safetensors"
UPDATE_INFO = "update.json"
VERSIONS = "versions"
POINTER = "current.json"
WRITER_LOCK = ".writer.lock"
REFIT = "refit"
SELECTED = "selected.safetensors"

Checkpoint = Literal["best", "last", "selected"]  # selected: a refit run's validation-chosen weights
CHECKPOINT_NAMES: tuple[Checkpoint, ...] = ("best", "last")


def config_path(run_dir: str | Path) -> Path:
    """``RUN_DIR/config.toml``."""
    return Path(run_dir) / CONFIG


def run_info_path(run_dir: str | Path) -> Path:
    """``RUN_DIR/run.json``."""
    return Path(run_dir) / RUN_INFO


def model_info_path(model_dir: str | Path) -> Path:
    """``model.json`` of a run directory or of a version directory."""
    return Path(model_dir) / MODEL_INFO


def checkpoints_dir(model_dir: str | Path) -> Path:
    """``checkpoints/`` of a run directory or of a version directory."""
    return Path(model_dir) / CHECKPOINTS


def weights_path(model_dir: str | Path, checkpoint: Checkpoint) -> Path:
    """``checkpoints/{best,last,selected}.safetensors``."""
    return checkpoints_dir(model_dir) / f"{checkpoint}.safetensors"


def selected_weights_path(run_dir: str | Path) -> Path:
    """``checkpoints/selected.safetensors``: a refit run's validation-chosen weights."""
    return checkpoints_dir(run_dir) / SELECTED


def refit_dir(run_dir: str | Path) -> Path:
    """``RUN_DIR/refit``: the refit model's own history, TensorBoard scalars and checkpoints."""
    return Path(run_dir) / REFIT


def resume_path(run_dir: str | Path) -> Path:
    """``checkpoints/last.resume.pt``: optimizer and RNG state for ``--resume``."""
    return checkpoints_dir(run_dir) / "last.resume.pt"


def history_path(run_dir: str | Path) -> Path:
    """``history.json``: the validation metrics of every epoch."""
    return Path(run_dir) / HISTORY


def final_metrics_path(run_dir: str | Path) -> Path:
    """``final_metrics.json``: a finished run's test metrics (its presence marks a finished run)."""
    return Path(run_dir) / FINAL_METRICS


def cold_start_path(run_dir: str | Path) -> Path:
    """``cold_start.json`` of a cold-start run."""
    return Path(run_dir) / COLD_START


def store_path(run_dir: str | Path) -> Path:
    """``RUN_DIR/store.sqlite``: the default store."""
    return Path(run_dir) / STORE_FILE


def store_marker_path(run_dir: str | Path) -> Path:
    """``RUN_DIR/store.json``: the stores the run has had (:mod:`hstu_blair.run.store_marker`)."""
    return Path(run_dir) / STORE_MARKER


def store_location(run_dir: str | Path, location: str | Path | None = None) -> str | Path:
    """Where a run's store is: ``location`` when given (a SQLite path or a database URL), else
    ``RUN_DIR/store.sqlite``."""
    return store_path(run_dir) if location is None else location


def added_text_path(model_dir: str | Path) -> Path:
    """``added_text.safetensors`` of a version directory."""
    return Path(model_dir) / ADDED_TEXT


def update_info_path(model_dir: str | Path) -> Path:
    """``update.json`` of a version written by ``update``."""
    return Path(model_dir) / UPDATE_INFO


def versions_dir(run_dir: str | Path) -> Path:
    """``RUN_DIR/versions``."""
    return Path(run_dir) / VERSIONS


def pointer_path(run_dir: str | Path) -> Path:
    """``RUN_DIR/versions/current.json``."""
    return versions_dir(run_dir) / POINTER


def writer_lock_path(run_dir: str | Path) -> Path:
    """``RUN_DIR/versions/.writer.lock``."""
    return versions_dir(run_dir) / WRITER_LOCK


def version_dir(run_dir: str | Path, version: int) -> Path:
    """The directory holding version ``version``'s model (version 0: the run directory itself)."""
    return Path(run_dir) if version == 0 else versions_dir(run_dir) / str(version)


def staging_name(version: str) -> str:
    """The name of a version this process is writing (``*`` as the version: a glob of them)."""
    return f".{version}.{os.getpid()}.tmp"


STAGING_GLOB = ".*.*.tmp"
"""Every staging directory's name, whichever process wrote it."""


def staging_pid(name: str) -> int | None:
    """The pid in a staging directory's name (``.<n>.<pid>.tmp``), None for any other name."""
    parts = name.split(".")
    if len(parts) == 4 and parts[0] == "" and parts[3] == "tmp" and parts[1].isdigit() and parts[2].isdigit():
        return int(parts[2])
    return None


def is_run_dir(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a run config (what ``train`` writes first)."""
    return config_path(run_dir).is_file()
