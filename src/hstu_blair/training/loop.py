"""The training loop, top to bottom: data, model, optimiser, epochs of steps, validation, early stop.

``train(config)`` returns a :class:`RunResult` and leaves a run directory:

- ``config.toml`` (the fully resolved config), ``run.json`` (versions, device, dataset hashes)
- ``history.json`` (metrics of every evaluated epoch), ``final_metrics.json``
- ``checkpoints/last.pt`` (resume point, written atomically), ``checkpoints/best.pt``
- ``tb/`` TensorBoard scalars
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from hstu_blair.config import RunConfig, dump_config
from hstu_blair.data.dataset import SequenceData
from hstu_blair.data.manifest import versions, write_json_atomic
from hstu_blair.errors import ConfigError
from hstu_blair.evaluation.evaluate import evaluate
from hstu_blair.models.build import build_model, load_text_for
from hstu_blair.models.sequential import SequentialModel
from hstu_blair.training.batching import epoch_batches, train_batch
from hstu_blair.training.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from hstu_blair.training.distributed import (
    DistInfo,
    barrier,
    mean_across,
    setup_distributed,
    teardown_distributed,
)
from hstu_blair.training.objective import NextItemLoss

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What ``train`` returns: the run directory, best epoch and the final (test) metrics."""

    run_dir: Path
    best_epoch: int
    metrics: dict[str, float]
    history: list[dict[str, Any]] = field(default_factory=list)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def ensure_dataset(config: RunConfig) -> SequenceData:
    """Load ``data.path``, preparing it first from ``data.source`` when it does not exist yet."""
    path = Path(config.data.path)
    if not (path / "manifest.json").exists():
        if config.data.source is None:
            raise ConfigError(f"data.path {path} is not a prepared dataset and data.source is not set")
        from hstu_blair.data.prepare import PrepareOptions, prepare

        log.info(
            "preparing %s from %s into %s", config.data.source, config.data.input or "bundled files", path
        )
        return prepare(
            config.data.source,
            [Path(p) for p in config.data.input],
            path,
            PrepareOptions(kcore=config.data.kcore),
        )
    return SequenceData.load(path)


def _run_dir(config: RunConfig, run_dir: Path | None) -> Path:
    if run_dir is not None:
        return Path(run_dir)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(config.out_dir) / f"{config.name}-{stamp}"


def _improved(value: float, best: float | None) -> bool:
    return best is None or value > best


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
        resume: continue from ``run_dir/checkpoints/last.pt`` (same final result as an
            uninterrupted run with the same seed).
        progress: show progress bars.
    """
    tc, mc = config.train, config.model
    device = resolve_device(tc.device)
    dist_info = setup_distributed(str(device))
    if dist_info.enabled and device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
    if tc.threads > 0:
        torch.set_num_threads(tc.threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = tc.tf32
        torch.backends.cudnn.allow_tf32 = tc.tf32
    torch.manual_seed(tc.seed)

    data = ensure_dataset(config)
    split = data.split(config.data.protocol)
    text = load_text_for(config, data)
    model = build_model(mc, data.num_items, config.data.max_len, text).to(device)
    objective: torch.nn.Module = NextItemLoss(model, tc.temperature)
    if dist_info.enabled:
        objective = torch.nn.parallel.DistributedDataParallel(
            objective, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False
        )
    # fused AdamW: same update, one kernel per step instead of a dozen temporaries per tensor
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=tc.lr, betas=tc.betas, weight_decay=tc.weight_decay, fused=True
    )
    neg_gen = torch.Generator().manual_seed(tc.seed + 1_000_003 * (dist_info.rank + 1))

    run_dir = _run_dir(config, run_dir)
    ckpt_dir = run_dir / "checkpoints"
    history: list[dict[str, Any]] = []
    start_epoch, step, best, best_epoch, stale = 0, 0, None, -1, 0
    if resume:
        if not (ckpt_dir / "last.pt").exists():
            raise ConfigError(f"--resume: no checkpoint at {ckpt_dir / 'last.pt'}")
        state = load_checkpoint(ckpt_dir / "last.pt")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        neg_gen.set_state(state["neg_generator"])
        set_rng_state(state["rng"])
        start_epoch, step = state["epoch"] + 1, state["step"]
        best, best_epoch, stale, history = (
            state["best"],
            state["best_epoch"],
            state["stale"],
            state["history"],
        )
        log.info("resumed %s at epoch %d", run_dir, start_epoch)
    elif dist_info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.toml").write_text(dump_config(config))
        write_json_atomic(
            run_dir / "run.json",
            {
                "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "device": str(device),
                "world_size": dist_info.world_size,
                "versions": versions(),
                "dataset": {
                    "path": str(Path(config.data.path).resolve()),
                    "name": data.name,
                    "data_hash": data.data_hash,
                    "manifest_sha256": __import__("hashlib")
                    .sha256((data.path / "manifest.json").read_bytes())
                    .hexdigest(),
                    "num_users": data.num_users,
                    "num_items": data.num_items,
                    "num_interactions": data.num_interactions,
                },
                "split": {"protocol": split.protocol, "skipped": split.skipped},
                "parameters": sum(p.numel() for p in model.parameters()),
            },
        )
    barrier(dist_info)

    writer = None
    if dist_info.is_main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "tb"))

    trainable = np.flatnonzero(split.train_len >= 2)
    neg_pool = None  # negatives uniform over the whole catalogue 1..n (the reference)
    if tc.negatives_pool == "seen":  # only items that occur in the training prefixes (cold-start runs)
        neg_pool = torch.from_numpy(
            np.unique(np.concatenate([data.user_items(u)[: split.train_len[u]] for u in trainable]))
        )
    monitor_split = "valid" if split.valid is not None else "test"
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if (tc.bf16 and device.type == "cuda") else nullcontext()
    )
    R = tc.num_negatives

    for epoch in range(start_epoch, tc.epochs):
        model.train()
        rng = np.random.default_rng([tc.seed, epoch])
        mine = trainable[dist_info.rank :: dist_info.world_size]
        batches = epoch_batches(
            mine,
            np.minimum(split.train_len[mine], config.data.max_len + 1),
            tc.batch_size,
            rng,
            tc.bucket_by_length,
        )
        if tc.max_steps_per_epoch:
            batches = batches[: tc.max_steps_per_epoch]
        n_batches = len(batches)
        bar = tqdm(
            range(n_batches),
            desc=f"epoch {epoch}",
            unit="batch",
            disable=not (progress and dist_info.is_main),
            leave=False,
            dynamic_ncols=True,
        )
        loss_sum, t0 = 0.0, time.perf_counter()
        for b in bar:
            batch = train_batch(data, batches[b], split.train_len, config.data.max_len).to(device)
            n_pos = int(batch.lengths.sum())
            neg_shape = {"shared": (R,), "per-row": (len(batches[b]), R), "per-position": (n_pos, R)}[
                tc.negatives
            ]
            if neg_pool is None:
                neg_ids = torch.randint(1, data.num_items + 1, neg_shape, generator=neg_gen).to(device)
            else:
                neg_ids = neg_pool[torch.randint(0, neg_pool.numel(), neg_shape, generator=neg_gen)].to(
                    device
                )
            with autocast:
                loss = objective(
                    batch.ids,
                    batch.timestamps,
                    batch.lengths,
                    batch.targets,
                    neg_ids,
                    tc.negatives == "per-row",
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            loss_sum += loss.item()
            if writer is not None:
                writer.add_scalar("train/loss", loss.item(), step)
            bar.set_postfix(loss=f"{loss_sum / (b + 1):.4f}")
        bar.close()
        train_loss = mean_across(loss_sum / max(1, n_batches), dist_info)
        record: dict[str, Any] = {
            "epoch": epoch,
            "step": step,
            "train_loss": train_loss,
            "seconds": time.perf_counter() - t0,
        }

        last_epoch = epoch == tc.epochs - 1
        if (epoch + 1) % tc.eval_every == 0 or last_epoch:
            metrics = evaluate(
                model, data, split.targets(monitor_split), config, device, dist_info, progress=False
            )
            record[monitor_split] = metrics
            value = metrics[tc.monitor]
            if _improved(value, best):
                best, best_epoch, stale = value, epoch, 0
                if dist_info.is_main and split.valid is not None:
                    save_checkpoint(
                        ckpt_dir / "best.pt",
                        {"model": model.state_dict(), "epoch": epoch, "metrics": metrics},
                    )
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
        if writer is not None:
            writer.add_scalar("train/epoch_loss", train_loss, epoch)
        history.append(record)
        stop = tc.patience > 0 and split.valid is not None and stale >= tc.patience
        if dist_info.is_main and ((epoch + 1) % tc.checkpoint_every == 0 or last_epoch or stop):
            save_checkpoint(
                ckpt_dir / "last.pt",
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "epoch": epoch,
                    "step": step,
                    "neg_generator": neg_gen.get_state(),
                    "rng": rng_state(),
                    "best": best,
                    "best_epoch": best_epoch,
                    "stale": stale,
                    "history": history,
                },
            )
            write_json_atomic(run_dir / "history.json", history)
        barrier(dist_info)
        if stop:
            log.info("early stop at epoch %d: %d evaluations without improvement", epoch, stale)
            break

    final = finish_run(model, data, split, config, run_dir, best_epoch, device, dist_info)
    if writer is not None:
        writer.close()
    teardown_distributed(dist_info)
    return RunResult(run_dir=run_dir, best_epoch=best_epoch, metrics=final, history=history)


def finish_run(
    model: SequentialModel,
    data: SequenceData,
    split: Any,
    config: RunConfig,
    run_dir: Path,
    best_epoch: int,
    device: torch.device,
    dist_info: DistInfo,
) -> dict[str, float]:
    """Score the test split with the best-validation checkpoint (loo) or the last model (reference)."""
    if split.valid is not None and (run_dir / "checkpoints" / "best.pt").exists():
        model.load_state_dict(load_checkpoint(run_dir / "checkpoints" / "best.pt", device)["model"])
        selection = f"best validation {config.train.monitor} (epoch {best_epoch})"
    else:
        selection = "last epoch (reference protocol: no validation split; test scored every evaluation)"
    metrics = evaluate(model, data, split.test, config, device, dist_info, progress=False)
    if dist_info.is_main:
        write_json_atomic(
            run_dir / "final_metrics.json",
            {
                "split": "test",
                "protocol": split.protocol,
                "selection": selection,
                "best_epoch": best_epoch,
                "metrics": metrics,
            },
        )
    return metrics


def load_run_config(run_dir: Path) -> RunConfig:
    """The resolved config a run directory recorded."""
    from hstu_blair.config import load_config

    return load_config(run_dir / "config.toml")


def read_final_metrics(run_dir: Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / "final_metrics.json").read_text())
