"""The training recipe: resolve the config, build the model, run the shared loop (``recipes.loop``).

``train(config)`` returns a :class:`RunResult` and leaves a run directory:

- ``config.toml`` (the fully resolved config), ``run.json`` (versions, device, dataset hashes)
- ``model.json`` (architecture, item vocabulary, dataset and text store; see ``run.model_files``)
- ``checkpoints/best.safetensors``, ``checkpoints/last.safetensors`` (weights),
  ``checkpoints/last.resume.pt`` (optimizer and RNG state, for ``--resume``)
- ``history.json`` (metrics of every evaluated epoch), ``final_metrics.json`` (with the
  most-popular list's metrics on the same targets under ``baselines``)
- ``tb/`` TensorBoard scalars
- with ``train.refit``: ``refit/`` (the refit's history, scalars and checkpoints),
  ``checkpoints/selected.safetensors`` (the validation-chosen weights; ``best`` is the refit model)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from hstu_blair.config import RunConfig, dump_config
from hstu_blair.data.dataset import SequenceData
from hstu_blair.data.manifest import versions, write_json_atomic
from hstu_blair.data.splits import Split, refit_split
from hstu_blair.errors import ConfigError
from hstu_blair.models.build import Architecture, build_model
from hstu_blair.recipes.loop import (
    EpochHook,
    LoopState,
    finish_run,
    make_trainer,
    run_epochs,
    setup_torch,
)
from hstu_blair.recipes.loop import resume as resume_loop
from hstu_blair.recipes.resolve import (
    ensure_dataset,
    ensure_text,
    resolve_device,
    run_architecture,
    train_item_counts,
)
from hstu_blair.recipes.resolve import (
    split as resolve_split,
)
from hstu_blair.run.layout import (
    config_path,
    refit_dir,
    resume_path,
    run_info_path,
    selected_weights_path,
    store_path,
    versions_dir,
    weights_path,
)
from hstu_blair.run.model_files import write_model_info
from hstu_blair.training.allocator import retain_freed_memory
from hstu_blair.training.distributed import (
    DistInfo,
    barrier,
    broadcast_from_main,
    setup_distributed,
    teardown_distributed,
)

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What ``train`` returns: the run directory, best epoch and the final (test) metrics."""

    run_dir: Path
    best_epoch: int
    metrics: dict[str, float]
    history: list[dict[str, Any]] = field(default_factory=list)
    baselines: dict[str, Any] = field(default_factory=dict)
    """Scored on the same targets: ``most_popular`` -> ``valid`` / ``test`` -> metrics."""


def default_run_dir(config: RunConfig) -> Path:
    """A new, empty ``{out_dir}/{name}-{timestamp}``, created here; runs of one name started in the
    same second (a grid's variants of one config, workers of one queue) get ``-2``, ``-3``, ..."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(config.out_dir) / f"{config.name}-{stamp}"
    base.parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        path = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            path.mkdir()  # exclusive: exactly one process creates each name
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"{base}: 10,000 runs of this name started in one second")


def _write_run_record(
    run_dir: Path,
    config: RunConfig,
    data: SequenceData,
    split: Split,
    device: torch.device,
    world: int,
    params: int,
) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path(run_dir).write_text(dump_config(config))
    write_json_atomic(
        run_info_path(run_dir),
        {
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "device": str(device),
            "world_size": world,
            "versions": versions(),
            "dataset": {
                "path": str(Path(config.data.path).resolve()),
                "name": data.name,
                "data_hash": data.data_hash,
                "manifest_sha256": hashlib.sha256((data.path / "manifest.json").read_bytes()).hexdigest(),
                "num_users": data.num_users,
                "num_items": data.num_items,
                "num_interactions": data.num_interactions,
            },
            "split": {"protocol": split.protocol, "skipped": split.skipped, **(split.info or {})},
            "parameters": params,
        },
    )


def train(
    config: RunConfig,
    run_dir: Path | None = None,
    resume: bool = False,
    progress: bool = True,
    on_validate: EpochHook | None = None,
) -> RunResult:
    """Train a model as ``config`` says, validating and checkpointing; return the test metrics.

    With the ``loo`` protocol the model is validated every ``train.eval_every`` epochs, the best
    validation checkpoint is kept, training stops after ``train.patience`` evaluations without
    improvement, and the test split is scored once with the best checkpoint. With the
    ``reference`` protocol (no validation, SPEC §5) the test split is scored at every evaluation
    and the last epoch is reported, labelled as such.

    Args:
        config: the resolved run config.
        run_dir: output directory (default: a new ``{out_dir}/{name}-{timestamp}``, see
            :func:`default_run_dir`).
        resume: continue from ``run_dir``'s last checkpoint (same final result as an
            uninterrupted run with the same seed).
        progress: show progress bars (epochs, and the batches of the current epoch).
        on_validate: called after each validation with the epoch and the monitored value (the
            tuner's pruning hook; an exception it raises ends the run).

    Raises:
        ConfigError: an invalid combination of settings, ``resume`` without a checkpoint, or a
            ``run_dir`` a server already uses (model versions or a store) without ``resume``.
    """
    if run_dir is not None and not resume:
        served = [p for p in (versions_dir(run_dir), store_path(run_dir)) if p.exists()]
        if served:
            raise ConfigError(
                f"{run_dir} holds {', '.join(p.name for p in served)} of a served run: training into it "
                "would leave them pointing at old weights and events; use a new run directory"
            )
    retain_freed_memory()
    device = resolve_device(config.train.device)
    dist_info = setup_distributed(device.type)
    if dist_info.enabled and device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
    finished = False
    try:
        result = _train(config, run_dir, resume, progress, device, dist_info, on_validate)
        finished = True
    finally:
        teardown_distributed(dist_info, wait_for_peers=finished)
    return result


def _train(
    config: RunConfig,
    run_dir: Path | None,
    resume: bool,
    progress: bool,
    device: torch.device,
    dist_info: DistInfo,
    on_validate: EpochHook | None = None,
) -> RunResult:
    """The body of :func:`train` inside the (optional) process group: build, (resume,) loop, test."""
    setup_torch(config.train, device)
    data = ensure_dataset(config)
    split = resolve_split(config, data)
    text, text_ref = ensure_text(config, data, progress=progress and dist_info.is_main)
    arch = run_architecture(config, data, text)
    model = build_model(arch, text, train_item_counts(data, split)).to(device)
    if run_dir is None:  # claimed by the main rank, so every rank writes to the same folder
        run_dir = broadcast_from_main(default_run_dir(config) if dist_info.is_main else None, dist_info)
    run_dir = Path(run_dir)
    trainer = make_trainer(config, data, split, model, device, dist_info, run_dir)
    if resume:
        state = resume_loop(trainer)
    else:
        state = LoopState()
        if dist_info.is_main:
            params = sum(p.numel() for p in model.parameters())
            _write_run_record(run_dir, config, data, split, device, dist_info.world_size, params)
            write_model_info(run_dir, arch, data, text_ref, {"protocol": split.protocol})
    barrier(dist_info)
    state = run_epochs(trainer, state, config.train.epochs, progress, on_validate)
    note = ""
    if config.train.refit:
        epochs = state.best_epoch + 1
        _refit(config, data, split, arch, text, run_dir, device, dist_info, epochs, progress, resume)
        note = f"; then refit for {epochs} epochs with the validation targets (refit/)"
    del text
    final = finish_run(trainer, state.best_epoch, note)
    return RunResult(
        run_dir=run_dir,
        best_epoch=state.best_epoch,
        metrics=final,
        history=state.history,
        baselines=trainer.baselines,
    )


def _refit(
    config: RunConfig,
    data: SequenceData,
    split: Split,
    arch: Architecture,
    text: torch.Tensor | None,
    run_dir: Path,
    device: torch.device,
    dist_info: DistInfo,
    epochs: int,
    progress: bool,
    resume: bool = False,
) -> None:
    """``train.refit``: a fresh model (same seed) trains ``epochs`` epochs on every interaction
    before the test targets in ``run_dir/refit``; its weights become ``checkpoints/best`` (what
    the test, ``evaluate`` and ``serve`` use) and the validation-chosen ones ``selected``. With
    ``resume``, a refit that a kill interrupted continues from its own last checkpoint."""
    refit = refit_split(split)
    setup_torch(config.train, device)
    model = build_model(arch, text, train_item_counts(data, refit)).to(device)
    once = replace(config, train=replace(config.train, eval_every=epochs, patience=0))
    trainer = make_trainer(once, data, refit, model, device, dist_info, refit_dir(run_dir))
    if dist_info.is_main:
        log.info("refit: %d epochs on every interaction before the test targets", epochs)
    state = resume_loop(trainer) if resume and resume_path(trainer.out_dir).exists() else LoopState()
    run_epochs(trainer, state, epochs, progress)
    if dist_info.is_main:
        if not (resume and selected_weights_path(run_dir).exists()):  # a resumed run may have kept them
            shutil.copyfile(weights_path(run_dir, "best"), selected_weights_path(run_dir))
        shutil.copyfile(weights_path(trainer.out_dir, "last"), weights_path(run_dir, "best"))
    barrier(dist_info)
