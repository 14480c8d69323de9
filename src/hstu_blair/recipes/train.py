"""The training recipe, top to bottom: resolve the config, build, epochs of steps, validation, early stop.

``train(config)`` returns a :class:`RunResult` and leaves a run directory:

- ``config.toml`` (the fully resolved config), ``run.json`` (versions, device, dataset hashes)
- ``model.json`` (architecture, item vocabulary, dataset and text store; see ``training.run_dir``)
- ``checkpoints/best.safetensors``, ``checkpoints/last.safetensors`` (weights),
  ``checkpoints/last.resume.pt`` (optimizer and RNG state, for ``--resume``)
- ``history.json`` (metrics of every evaluated epoch), ``final_metrics.json``
- ``tb/`` TensorBoard scalars
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from hstu_blair.config import RunConfig, dump_config
from hstu_blair.data.dataset import SequenceData
from hstu_blair.data.manifest import versions, write_json_atomic
from hstu_blair.data.splits import Split
from hstu_blair.errors import ConfigError
from hstu_blair.evaluation.evaluate import EvalOptions, evaluate_model
from hstu_blair.models.build import build_model
from hstu_blair.models.sequential import SequentialModel
from hstu_blair.recipes.resolve import (
    architecture,
    ensure_dataset,
    ensure_text,
    eval_options,
    negative_sampler,
    resolve_device,
    time_scale,
    train_item_counts,
)
from hstu_blair.recipes.resolve import (
    split as resolve_split,
)
from hstu_blair.training.allocator import retain_freed_memory
from hstu_blair.training.batching import epoch_batches, train_batch
from hstu_blair.training.checkpoint import (
    load_resume_state,
    load_weights,
    rng_state,
    save_resume_state,
    save_weights,
    set_rng_state,
)
from hstu_blair.training.distributed import (
    DistInfo,
    barrier,
    mean_across,
    setup_distributed,
    teardown_distributed,
)
from hstu_blair.training.objective import NextItemLoss
from hstu_blair.training.precision import autocast_for
from hstu_blair.training.run_dir import resume_path, weights_path, write_model_info
from hstu_blair.training.step import train_step

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What ``train`` returns: the run directory, best epoch and the final (test) metrics."""

    run_dir: Path
    best_epoch: int
    metrics: dict[str, float]
    history: list[dict[str, Any]] = field(default_factory=list)


def default_run_dir(config: RunConfig) -> Path:
    """``{out_dir}/{name}-{timestamp}``."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(config.out_dir) / f"{config.name}-{stamp}"


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
    (run_dir / "config.toml").write_text(dump_config(config))
    write_json_atomic(
        run_dir / "run.json",
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
    config: RunConfig, run_dir: Path | None = None, resume: bool = False, progress: bool = True
) -> RunResult:
    """Train a model as ``config`` says, validating and checkpointing; return the test metrics.

    With the ``loo`` protocol the model is validated every ``train.eval_every`` epochs, the best
    validation checkpoint is kept, training stops after ``train.patience`` evaluations without
    improvement, and the test split is scored once with the best checkpoint. With the
    ``reference`` protocol (no validation, SPEC §5) the test split is scored at every evaluation
    and the last epoch is reported, labelled as such.

    Args:
        config: the resolved run config.
        run_dir: output directory (default ``{out_dir}/{name}-{timestamp}``).
        resume: continue from ``run_dir``'s last checkpoint (same final result as an
            uninterrupted run with the same seed).
        progress: show progress bars (epochs, and the batches of the current epoch).

    Raises:
        ConfigError: an invalid combination of settings, or ``resume`` without a checkpoint.
    """
    retain_freed_memory()
    device = resolve_device(config.train.device)
    dist_info = setup_distributed(device.type)
    if dist_info.enabled and device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
    finished = False
    try:
        result = _train(config, run_dir, resume, progress, device, dist_info)
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
) -> RunResult:
    """The body of :func:`train` inside the (optional) process group."""
    tc = config.train
    if tc.threads > 0:
        torch.set_num_threads(tc.threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = tc.tf32
        torch.backends.cudnn.allow_tf32 = tc.tf32
    torch.manual_seed(tc.seed)

    data = ensure_dataset(config)
    split = resolve_split(config, data)
    text, text_ref = ensure_text(config, data, progress=progress and dist_info.is_main)
    arch = architecture(
        config, data.num_items, 0 if text is None else int(text.shape[1]), time_scale(config, data)
    )
    model = build_model(arch, text, train_item_counts(data, split)).to(device)
    del text
    objective: torch.nn.Module = NextItemLoss(model, tc.temperature)
    if dist_info.enabled:
        objective = torch.nn.parallel.DistributedDataParallel(
            objective, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False
        )
    # fused AdamW: same update, one kernel per step instead of a dozen temporaries per tensor
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=tc.lr, betas=tc.betas, weight_decay=tc.weight_decay, fused=True
    )
    sampler = negative_sampler(config, data, split, dist_info.rank)
    options = eval_options(config)

    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(config)
    history: list[dict[str, Any]] = []
    start_epoch, step, best, best_epoch, stale = 0, 0, None, -1, 0
    if resume:
        if not resume_path(run_dir).exists():
            raise ConfigError(f"--resume: no checkpoint at {resume_path(run_dir)}")
        load_weights(weights_path(run_dir, "last"), model, device)
        state = load_resume_state(resume_path(run_dir))
        optimizer.load_state_dict(state["optimizer"])
        sampler.generator.set_state(state["neg_generator"])
        set_rng_state(state["rng"])
        p = state["progress"]
        start_epoch, step = p["epoch"] + 1, p["step"]
        best, best_epoch, stale, history = p["best"], p["best_epoch"], p["stale"], p["history"]
        log.info("resumed %s at epoch %d", run_dir, start_epoch)
    elif dist_info.is_main:
        params = sum(p.numel() for p in model.parameters())
        _write_run_record(run_dir, config, data, split, device, dist_info.world_size, params)
        write_model_info(run_dir, arch, data, text_ref, {"protocol": split.protocol})
    barrier(dist_info)

    writer = SummaryWriter(str(run_dir / "tb")) if dist_info.is_main else None
    trainable = np.flatnonzero(split.train_len >= 2)
    monitor_split = "valid" if split.valid is not None else "test"
    autocast = autocast_for(device, tc.bf16)
    show = progress and dist_info.is_main
    epochs_bar = tqdm(
        total=tc.epochs,
        initial=start_epoch,
        desc="training",
        unit="epoch",
        disable=not show,
        dynamic_ncols=True,
    )

    for epoch in range(start_epoch, tc.epochs):
        model.train()
        rng = np.random.default_rng([tc.seed, epoch])
        mine = trainable[dist_info.rank :: dist_info.world_size]
        lengths = np.minimum(split.train_len[mine], config.data.max_len + 1)
        batches = epoch_batches(mine, lengths, tc.batch_size, rng, tc.bucket_by_length)
        if tc.max_steps_per_epoch:
            batches = batches[: tc.max_steps_per_epoch]
        bar = tqdm(
            batches, desc=f"epoch {epoch}", unit="batch", disable=not show, leave=False, dynamic_ncols=True
        )
        loss_sum, t0 = 0.0, time.perf_counter()
        for b, users in enumerate(bar):
            batch = train_batch(data, users, split.train_len, config.data.max_len).to(device)
            negatives = sampler.draw(len(users), int(batch.lengths.sum())).to(device)
            loss = train_step(objective, optimizer, batch, negatives, autocast).item()
            step += 1
            loss_sum += loss
            if writer is not None:
                writer.add_scalar("train/loss", loss, step)
            bar.set_postfix(loss=f"{loss_sum / (b + 1):.4f}")
        bar.close()
        train_loss = mean_across(loss_sum / max(1, len(batches)), dist_info)
        record: dict[str, Any] = {
            "epoch": epoch,
            "step": step,
            "train_loss": train_loss,
            "seconds": time.perf_counter() - t0,
        }

        last_epoch = epoch == tc.epochs - 1
        if (epoch + 1) % tc.eval_every == 0 or last_epoch:
            metrics = evaluate_model(
                model, data, split.targets(monitor_split), config.data.max_len, options, device, dist_info
            )
            record[monitor_split] = metrics
            value = metrics[tc.monitor]
            if best is None or value > best:
                best, best_epoch, stale = value, epoch, 0
                if dist_info.is_main and split.valid is not None:
                    save_weights(weights_path(run_dir, "best"), model, {"epoch": str(epoch)})
            else:
                stale += 1
            if writer is not None:
                for k, v in metrics.items():
                    writer.add_scalar(f"{monitor_split}/{k}", v, epoch)
            if dist_info.is_main:
                log.info(
                    "epoch %d  loss %.4f  %s %s %.4f (best %.4f @ %d)",
                    epoch,
                    train_loss,
                    monitor_split,
                    tc.monitor,
                    value,
                    best,
                    best_epoch,
                )
            epochs_bar.set_postfix({tc.monitor: f"{value:.4f}", "best": f"{best:.4f}@{best_epoch}"})
        if writer is not None:
            writer.add_scalar("train/epoch_loss", train_loss, epoch)
        history.append(record)
        epochs_bar.update(1)
        stop = tc.patience > 0 and split.valid is not None and stale >= tc.patience
        if dist_info.is_main and ((epoch + 1) % tc.checkpoint_every == 0 or last_epoch or stop):
            save_weights(weights_path(run_dir, "last"), model, {"epoch": str(epoch)})
            save_resume_state(
                resume_path(run_dir),
                {
                    "optimizer": optimizer.state_dict(),
                    "neg_generator": sampler.generator.get_state(),
                    "rng": rng_state(),
                    "progress": {
                        "epoch": epoch,
                        "step": step,
                        "best": best,
                        "best_epoch": best_epoch,
                        "stale": stale,
                        "history": history,
                    },
                },
            )
            write_json_atomic(run_dir / "history.json", history)
        barrier(dist_info)
        if stop:
            log.info("early stop at epoch %d: %d evaluations without improvement", epoch, stale)
            break
    epochs_bar.close()

    final = finish_run(model, data, split, config, options, run_dir, best_epoch, device, dist_info)
    if writer is not None:
        writer.close()
    return RunResult(run_dir=run_dir, best_epoch=best_epoch, metrics=final, history=history)


def finish_run(
    model: SequentialModel,
    data: SequenceData,
    split: Split,
    config: RunConfig,
    options: EvalOptions,
    run_dir: Path,
    best_epoch: int,
    device: torch.device,
    dist_info: DistInfo,
) -> dict[str, float]:
    """Score the test split with the best-validation weights (loo) or the last model (reference)."""
    if split.valid is not None and weights_path(run_dir, "best").exists():
        load_weights(weights_path(run_dir, "best"), model, device)
        selection = f"best validation {config.train.monitor} (epoch {best_epoch})"
    else:
        selection = (
            f"last epoch ({split.protocol} protocol without a validation split: test scored every evaluation)"
        )
    metrics = evaluate_model(model, data, split.test, config.data.max_len, options, device, dist_info)
    if dist_info.is_main:
        write_json_atomic(
            run_dir / "final_metrics.json",
            {
                "split": "test",
                "protocol": split.protocol,
                **({"split_info": split.info} if split.info else {}),
                "selection": selection,
                "best_epoch": best_epoch,
                "metrics": metrics,
            },
        )
    return metrics
