"""The training loop both ``train`` and ``update`` run: a :class:`Trainer` (what is trained, on what,
with what) and a :class:`LoopState` (where the loop is), then epochs of steps, validation, early
stop and checkpoints, read top to bottom.

- :func:`make_trainer`: the objective (wrapped in DDP under ``torchrun``), optimizer, negative
  sampler and evaluation options around a built model.
- :func:`save_checkpoint` / :func:`resume`: the last weights plus the optimizer, RNG and loop
  state, written and read in one place (``checkpoints/last.*`` of the trainer's directory).
- :func:`run_epochs`: epochs ``state.epoch .. epochs-1``; each trains, validates every
  ``train.eval_every`` epochs (keeping the best weights), checkpoints every
  ``train.checkpoint_every`` epochs and stops after ``train.patience`` evaluations without
  improvement.
- :func:`finish_run`: the test split scored with the best-validation weights, beside the
  most-popular list on the same targets (a warning when the model is not above it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from hstu_blair.config import RunConfig, TrainConfig
from hstu_blair.data.dataset import SequenceData
from hstu_blair.data.manifest import write_json_atomic
from hstu_blair.data.splits import Split
from hstu_blair.errors import ConfigError
from hstu_blair.evaluation.evaluate import EvalOptions, evaluate_model
from hstu_blair.evaluation.popularity import evaluate_popularity
from hstu_blair.models.sequential import SequentialModel
from hstu_blair.recipes.resolve import eval_options, negative_sampler, train_item_counts
from hstu_blair.run.layout import final_metrics_path, history_path, resume_path, weights_path
from hstu_blair.training.batching import epoch_batches, train_batch
from hstu_blair.training.checkpoint import (
    load_resume_state,
    load_weights,
    rng_state,
    save_resume_state,
    save_weights,
    set_rng_state,
)
from hstu_blair.training.distributed import DistInfo, barrier, mean_across
from hstu_blair.training.negatives import NegativeSampler
from hstu_blair.training.objective import NextItemLoss
from hstu_blair.training.precision import autocast_for
from hstu_blair.training.step import train_step

log = logging.getLogger(__name__)


def setup_torch(tc: TrainConfig, device: torch.device) -> None:
    """Threads, TF32 and the seed, before anything draws random numbers."""
    if tc.threads > 0:
        torch.set_num_threads(tc.threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = tc.tf32
        torch.backends.cudnn.allow_tf32 = tc.tf32
    torch.manual_seed(tc.seed)


@dataclass
class Trainer:
    """What the loop trains, on what, and where it writes (``out_dir``: checkpoints, ``tb/``,
    ``history.json``)."""

    config: RunConfig
    data: SequenceData
    split: Split
    model: SequentialModel
    objective: torch.nn.Module
    optimizer: torch.optim.Optimizer
    sampler: NegativeSampler
    options: EvalOptions
    device: torch.device
    dist: DistInfo
    out_dir: Path
    baselines: dict[str, Any] = field(default_factory=dict)
    """What :func:`finish_run` scored beside the model: ``most_popular`` -> split -> metrics."""


@dataclass
class LoopState:
    """Where the loop is: the next epoch, steps so far, the best monitored value and its epoch,
    evaluations without improvement, and the record of every epoch run."""

    epoch: int = 0
    step: int = 0
    best: float | None = None
    best_epoch: int = -1
    stale: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def make_trainer(
    config: RunConfig,
    data: SequenceData,
    split: Split,
    model: SequentialModel,
    device: torch.device,
    dist_info: DistInfo,
    out_dir: Path,
) -> Trainer:
    """The objective, optimizer and negative sampler around ``model`` (already on ``device``)."""
    tc = config.train
    objective: torch.nn.Module = NextItemLoss(model, config.resolved_temperature())
    if dist_info.enabled:
        objective = torch.nn.parallel.DistributedDataParallel(
            objective, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False
        )
    # fused AdamW: same update, one kernel per step instead of a dozen temporaries per tensor
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=tc.lr, betas=tc.betas, weight_decay=tc.weight_decay, fused=True
    )
    sampler = negative_sampler(config, data, split, dist_info.rank)
    return Trainer(
        config,
        data,
        split,
        model,
        objective,
        optimizer,
        sampler,
        eval_options(config),
        device,
        dist_info,
        out_dir,
    )


def save_checkpoint(trainer: Trainer, state: LoopState) -> None:
    """The last weights, the optimizer, RNG and loop state, and ``history.json`` (main rank only)."""
    out = trainer.out_dir
    save_weights(weights_path(out, "last"), trainer.model, {"epoch": str(state.epoch)})
    save_resume_state(
        resume_path(out),
        {
            "optimizer": trainer.optimizer.state_dict(),
            "neg_generator": trainer.sampler.generator.get_state(),
            "rng": rng_state(),
            "progress": asdict(state),
        },
    )
    write_json_atomic(history_path(out), state.history)


def resume(trainer: Trainer) -> LoopState:
    """Restore what :func:`save_checkpoint` wrote; the loop continues after the saved epoch.

    Raises:
        ConfigError: no checkpoint in the trainer's directory.
    """
    path = resume_path(trainer.out_dir)
    if not path.exists():
        raise ConfigError(f"--resume: no checkpoint at {path}")
    load_weights(weights_path(trainer.out_dir, "last"), trainer.model, trainer.device)
    saved = load_resume_state(path)
    trainer.optimizer.load_state_dict(saved["optimizer"])
    trainer.sampler.generator.set_state(saved["neg_generator"])
    set_rng_state(saved["rng"])
    state = LoopState(**saved["progress"])
    state.epoch += 1
    log.info("resumed %s at epoch %d", trainer.out_dir, state.epoch)
    return state


def train_epoch(
    trainer: Trainer, state: LoopState, writer: SummaryWriter | None, show: bool
) -> dict[str, Any]:
    """One epoch of steps over the trainable users (this rank's share); returns the epoch's record."""
    tc, split, dist = trainer.config.train, trainer.split, trainer.dist
    max_len = trainer.config.data.max_len
    trainer.model.train()
    rng = np.random.default_rng([tc.seed, state.epoch])
    trainable = np.flatnonzero(split.train_len >= 2)
    mine = trainable[dist.rank :: dist.world_size]
    lengths = np.minimum(split.train_len[mine], max_len + 1)
    batches = epoch_batches(mine, lengths, tc.batch_size, rng, tc.bucket_by_length)
    if tc.max_steps_per_epoch:
        batches = batches[: tc.max_steps_per_epoch]
    autocast = autocast_for(trainer.device, tc.bf16)
    bar = tqdm(
        batches, desc=f"epoch {state.epoch}", unit="batch", disable=not show, leave=False, dynamic_ncols=True
    )
    loss_sum, t0 = 0.0, time.perf_counter()
    for b, users in enumerate(bar):
        batch = train_batch(trainer.data, users, split.train_len, max_len).to(trainer.device)
        negatives = trainer.sampler.draw(len(users), int(batch.lengths.sum())).to(trainer.device)
        loss = train_step(trainer.objective, trainer.optimizer, batch, negatives, autocast).item()
        state.step += 1
        loss_sum += loss
        if writer is not None:
            writer.add_scalar("train/loss", loss, state.step)
        bar.set_postfix(loss=f"{loss_sum / (b + 1):.4f}")
    bar.close()
    train_loss = mean_across(loss_sum / max(1, len(batches)), dist)
    return {
        "epoch": state.epoch,
        "step": state.step,
        "train_loss": train_loss,
        "seconds": time.perf_counter() - t0,
    }


def validate(
    trainer: Trainer, state: LoopState, record: dict[str, Any], writer: SummaryWriter | None
) -> float:
    """Score the monitored split (``valid``, else ``test``) into ``record``; keep the best weights.
    Returns the monitored value."""
    tc, split = trainer.config.train, trainer.split
    monitor_split = "valid" if split.valid is not None else "test"
    metrics = evaluate_model(
        trainer.model,
        trainer.data,
        split.targets(monitor_split),
        trainer.config.data.max_len,
        trainer.options,
        trainer.device,
        trainer.dist,
    )
    record[monitor_split] = metrics
    value = metrics[tc.monitor]
    if state.best is None or value > state.best:
        state.best, state.best_epoch, state.stale = value, state.epoch, 0
        if trainer.dist.is_main and split.valid is not None:
            save_weights(weights_path(trainer.out_dir, "best"), trainer.model, {"epoch": str(state.epoch)})
    else:
        state.stale += 1
    if writer is not None:
        for k, v in metrics.items():
            writer.add_scalar(f"{monitor_split}/{k}", v, state.epoch)
    if trainer.dist.is_main:
        log.info(
            "epoch %d  loss %.4f  %s %s %.4f (best %.4f @ %d)",
            state.epoch,
            record["train_loss"],
            monitor_split,
            tc.monitor,
            value,
            state.best,
            state.best_epoch,
        )
    return value


EpochHook = Callable[[int, float], None]
"""Called after each validation with the epoch and the monitored value (the tuner reports it to
Optuna, whose pruning raises from inside the hook to stop the run)."""


def run_epochs(
    trainer: Trainer,
    state: LoopState,
    epochs: int,
    progress: bool = True,
    on_validate: EpochHook | None = None,
) -> LoopState:
    """Run epochs ``state.epoch .. epochs-1`` (see the module docstring); returns the final state."""
    tc, dist = trainer.config.train, trainer.dist
    writer = SummaryWriter(str(trainer.out_dir / "tb")) if dist.is_main else None
    show = progress and dist.is_main
    epochs_bar = tqdm(
        total=epochs, initial=state.epoch, desc="training", unit="epoch", disable=not show, dynamic_ncols=True
    )
    while state.epoch < epochs and not _stopped(trainer, state):  # a resumed run may have stopped already
        record = train_epoch(trainer, state, writer, show)
        last_epoch = state.epoch == epochs - 1
        if (state.epoch + 1) % tc.eval_every == 0 or last_epoch:
            value = validate(trainer, state, record, writer)
            epochs_bar.set_postfix(
                {tc.monitor: f"{value:.4f}", "best": f"{state.best:.4f}@{state.best_epoch}"}
            )
            if on_validate is not None:
                on_validate(state.epoch, value)
        if writer is not None:
            writer.add_scalar("train/epoch_loss", record["train_loss"], state.epoch)
        state.history.append(record)
        epochs_bar.update(1)
        stop = _stopped(trainer, state)
        if dist.is_main and ((state.epoch + 1) % tc.checkpoint_every == 0 or last_epoch or stop):
            save_checkpoint(trainer, state)
        barrier(dist)
        if stop:
            log.info("early stop at epoch %d: %d evaluations without improvement", state.epoch, state.stale)
            break
        state.epoch += 1
    epochs_bar.close()
    if writer is not None:
        writer.close()
    return state


def _stopped(trainer: Trainer, state: LoopState) -> bool:
    """Early stopping: ``train.patience`` validations in a row without a better figure."""
    tc = trainer.config.train
    return tc.patience > 0 and trainer.split.valid is not None and state.stale >= tc.patience


def popularity_baseline(trainer: Trainer) -> dict[str, dict[str, Any]]:
    """The most-popular list (training counts, the user's history excluded as for the model) on
    the validation split (when there is one) and the test split."""
    config, split = trainer.config, trainer.split
    counts = train_item_counts(trainer.data, split)
    out = {}
    for name in ("valid", "test"):
        if name == "valid" and split.valid is None:
            continue
        out[name] = evaluate_popularity(
            trainer.data, split.targets(name), counts, config.data.max_len, trainer.options
        )
    return out


def warn_below_popular(metrics: dict[str, Any], popular: dict[str, Any], monitor: str, what: str) -> bool:
    """Log a warning when ``metrics[monitor]`` is not above the most-popular list's; True if so."""
    if monitor not in popular or metrics[monitor] > popular[monitor]:
        return False
    log.warning(
        "%s: %s %.4f is not above the most-popular list's %.4f: the model ranks no better than "
        "training counts (too few epochs, a learning rate too high or low, or too little data)",
        what,
        monitor,
        metrics[monitor],
        popular[monitor],
    )
    return True


def finish_run(trainer: Trainer, best_epoch: int, note: str = "") -> dict[str, float]:
    """Score the test split with the best-validation weights (loo; a refit's weights when it
    wrote them, ``note`` says so) or the last model (reference), and write ``final_metrics.json``
    with the most-popular list's metrics beside (``baselines``)."""
    config, split, out = trainer.config, trainer.split, trainer.out_dir
    if split.valid is not None and weights_path(out, "best").exists():
        load_weights(weights_path(out, "best"), trainer.model, trainer.device)
        selection = f"best validation {config.train.monitor} (epoch {best_epoch}){note}"
    else:
        selection = (
            f"last epoch ({split.protocol} protocol without a validation split: test scored every evaluation)"
        )
    metrics = evaluate_model(
        trainer.model,
        trainer.data,
        split.test,
        config.data.max_len,
        trainer.options,
        trainer.device,
        trainer.dist,
    )
    if trainer.dist.is_main:
        popular = popularity_baseline(trainer)
        trainer.baselines["most_popular"] = popular
        below = warn_below_popular(metrics, popular["test"], config.train.monitor, f"{out} test")
        write_json_atomic(
            final_metrics_path(out),
            {
                "split": "test",
                "protocol": split.protocol,
                **({"split_info": split.info} if split.info else {}),
                "selection": selection,
                "best_epoch": best_epoch,
                "metrics": metrics,
                "baselines": {"most_popular": popular},
                "below_most_popular": below,
            },
        )
    return metrics
