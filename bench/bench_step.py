"""Training-step time of run configs on a prepared dataset, as ratios against the first config
(the step bar of issue 16: a text model's step at most 1.3x its ID-only model's).

Each config (``PATH`` or ``PATH::KEY=VALUE::KEY=VALUE``, the same overrides as ``--set``) is built
as ``hstu-blair train`` builds it (``recipes.resolve`` + ``recipes.loop.make_trainer``: model,
objective, fused AdamW, negative sampler) and timed on the training recipe's own step
(``train_batch`` -> ``sampler.draw`` -> ``train_step``, a whole optimizer step). The configs take
turns in rounds over the same batches of users, so a background load slows them alike; the figure
is the median over rounds of the mean ms per step. One thread per config unless ``--threads``.

    python bench/bench_step.py --data data/games configs/games/sasrec-tuned.toml \\
        configs/games/sasrec-text-tuned.toml \\
        "configs/games/sasrec-text-tuned.toml::model.fusion_options.text_rank=0"
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import machine, machine_line  # noqa: E402
from hstu_blair.config import load_config  # noqa: E402
from hstu_blair.models.build import build_model  # noqa: E402
from hstu_blair.recipes.loop import make_trainer, setup_torch  # noqa: E402
from hstu_blair.recipes.resolve import (  # noqa: E402
    ensure_dataset,
    ensure_text,
    run_architecture,
    train_item_counts,
)
from hstu_blair.recipes.resolve import split as resolve_split  # noqa: E402
from hstu_blair.training.batching import epoch_batches, train_batch  # noqa: E402
from hstu_blair.training.distributed import DistInfo  # noqa: E402
from hstu_blair.training.step import train_step  # noqa: E402


def build(spec: str, data_path: str | None, threads: int) -> tuple[Any, Any, Any]:
    """(trainer, data, split) for ``PATH[::KEY=VALUE...]``, as ``hstu-blair train`` builds them."""
    path, *sets = spec.split("::")
    if data_path:
        sets.insert(0, f"data.path={json.dumps(data_path)}")
    config = load_config(path, [f"train.threads={threads}", *sets])
    device = torch.device("cpu")
    setup_torch(config.train, device)
    data = ensure_dataset(config)
    split = resolve_split(config, data)
    text, _ = ensure_text(config, data, progress=False)
    arch = run_architecture(config, data, text)
    model = build_model(arch, text, train_item_counts(data, split)).to(device)
    trainer = make_trainer(config, data, split, model, device, DistInfo(), Path("unused"))
    model.train()
    return trainer, data, split


def time_steps(trainer: Any, data: Any, split: Any, batches: list[np.ndarray]) -> float:
    """Mean seconds per training step over ``batches``."""
    max_len = trainer.config.data.max_len
    start = time.perf_counter()
    for users in batches:
        batch = train_batch(data, users, split.train_len, max_len)
        negatives = trainer.sampler.draw(len(users), int(batch.lengths.sum()))
        train_step(trainer.objective, trainer.optimizer, batch, negatives, None)
    return (time.perf_counter() - start) / len(batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="+", help="PATH or PATH::KEY=VALUE::...; the first is the baseline")
    parser.add_argument("--data", help="prepared dataset (overrides data.path of every config)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20, help="steps per config per round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write the figures as JSON")
    args = parser.parse_args()

    built = [build(spec, args.data, args.threads) for spec in args.configs]
    trainer, data, split = built[0]
    tc = trainer.config.train
    trainable = np.flatnonzero(split.train_len >= 2)
    lengths = np.minimum(split.train_len[trainable], trainer.config.data.max_len + 1)
    rng = np.random.default_rng(0)
    batches = epoch_batches(trainable, lengths, tc.batch_size, rng, tc.bucket_by_length)
    need = args.warmup + args.rounds * args.steps
    batches = [batches[i % len(batches)] for i in range(need)]
    for t, d, s in built:
        time_steps(t, d, s, batches[: args.warmup])
    per_round: list[list[float]] = [[] for _ in built]
    for r in range(args.rounds):
        chunk = batches[args.warmup + r * args.steps : args.warmup + (r + 1) * args.steps]
        for i, (t, d, s) in enumerate(built):
            per_round[i].append(time_steps(t, d, s, chunk))
    m = machine()
    print(machine_line(m))
    print(
        f"dataset {data.name}: {data.num_items:,} items; {args.threads} thread(s) per config; "
        f"{args.rounds} rounds x {args.steps} steps; load average {m['load_avg_1min']:.1f} at the end"
    )
    base = statistics.median(per_round[0])
    rows = []
    print(f"{'config':<90} {'ms/step':>8} {'x first':>8}")
    for spec, times in zip(args.configs, per_round):
        ms = statistics.median(times) * 1000
        rows.append(
            {
                "config": spec,
                "ms_per_step": ms,
                "ratio": ms / (base * 1000),
                "rounds_ms": [t * 1000 for t in times],
            }
        )
        print(f"{spec:<90} {ms:8.1f} {ms / (base * 1000):7.2f}x")
    if args.out:
        args.out.write_text(json.dumps({"machine": m, "dataset": data.name, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
