"""Training and evaluation throughput at amzn23_game size, fast path against the reference-faithful path.

Generates a prepared dataset shaped like Amazon Reviews 2023 Video_Games 5-core (94,762 users,
25,612 items, 814,586 interactions, Zipf-like item popularity, timestamps in seconds) and a random
(n+1, 768) text matrix, then, for HSTU-BLaIR (hstu + sum fusion), HSTU and SASRec with the
shipped ``configs/hstu-blair/amzn23_game/*.toml`` (B=128, L=50, R=512, 4 blocks, 4 heads, D=64):

- times ``--steps`` training steps after warm-up, each exactly the step of the training recipe
  (``train_batch`` -> ``NegativeSampler.draw`` -> ``training.step.train_step``), with per-row negatives (B, R) and
  length-bucketed batches (our default, the fast path), with batch-shared negatives (R,), and with
  per-position negatives (P, R) and random batches (the
  reference-faithful path), reporting sequences/s;
- times full-catalogue ranking (``rank_targets``) of ``--eval-users`` test users (users/s);
- records the peak RSS of every configuration, each run in its own subprocess.

The reference implementation's figures in the table were measured by the issue author on the same
2-core machine class; they are quoted, not measured here.

Run it on an otherwise idle machine: every configuration records the 1-minute load average, and
with more runnable processes than CPUs, PyTorch's OpenMP threads wait for each other at every
parallel op (2 threads can then be 10x slower than 1; ``OMP_WAIT_POLICY=PASSIVE`` in the
environment softens that). ``--threads 1`` and the seq/CPU-s column are the least sensitive to it.

    python bench/bench_train.py --steps 20 --eval-users 8192 --threads 2 --out bench_train.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "HSTU-BLaIR": ROOT / "configs/hstu-blair/amzn23_game/hstu-blair.toml",
    "HSTU": ROOT / "configs/hstu-blair/amzn23_game/hstu.toml",
    "SASRec": ROOT / "configs/hstu-blair/amzn23_game/sasrec.toml",
}
PATHS = {"fast": "per-row", "shared": "shared", "reference-faithful": "per-position"}
"""Our default (per-row negatives, length-bucketed batches), the batch-shared variant, and the
reference-faithful path (per-position negatives, random batches)."""

# Reference implementation on these data and config, measured by the issue author on the same
# 2-core machine class (not by this benchmark).
REFERENCE_SEQ_PER_S = {"HSTU-BLaIR": 30.0, "HSTU": 100.0, "SASRec": 90.0}
REFERENCE_EVAL_USERS_PER_S = 400.0
REFERENCE_PEAK_RSS_GB = 3.2
GOAL_TRAIN, GOAL_EVAL, GOAL_RSS_GB = 20.0, 5.0, 1.0

AMZN23_GAME = {"users": 94_762, "items": 25_612, "interactions": 814_586, "d_text": 768}


# ---- data -----------------------------------------------------------------------------------


def sequence_lengths(n_users: int, total: int, rng: np.random.Generator, min_len: int = 5) -> np.ndarray:
    """(U,) lengths >= ``min_len`` with a heavy (Lomax) tail, adjusted to sum exactly to ``total``."""
    mean_extra = total / n_users - min_len
    alpha = 2.2  # tail index: most users near the minimum, a few with hundreds of items
    scale = (mean_extra + 0.5) * (alpha - 1)  # +0.5 compensates the floor
    extra = np.floor(scale * (rng.random(n_users) ** (-1 / alpha) - 1)).astype(np.int64)
    lengths = min_len + np.minimum(extra, 2_000)  # (U,)
    while (diff := total - int(lengths.sum())) != 0:
        if diff > 0:
            np.add.at(lengths, rng.integers(0, n_users, diff), 1)
        else:
            above = np.flatnonzero(lengths > min_len)
            lengths[rng.choice(above, min(-diff, above.size), replace=False)] -= 1
    return lengths


def generate_dataset(out: Path, n_users: int, n_items: int, n_inter: int, d_text: int, seed: int) -> Path:
    """Write a prepared dataset of the given size into ``out`` and a random text store; return the store path."""
    import polars as pl

    from hstu_blair.data.dataset import write_dataset
    from hstu_blair.data.sources.base import RawDataset
    from hstu_blair.text.store import StoreManifest, save_embeddings

    rng = np.random.default_rng(seed)
    lengths = sequence_lengths(n_users, n_inter, rng)  # (U,)
    # every item at least 5 times (5-core), the rest Zipf-like: p(rank r) ~ 1 / (r + 10)^0.9
    popularity = 1.0 / (np.arange(n_items) + 10.0) ** 0.9
    rest = rng.choice(n_items, n_inter - 5 * n_items, p=popularity / popularity.sum())
    items = rng.permutation(np.concatenate([np.repeat(np.arange(n_items), 5), rest]))
    items = rng.permutation(n_items)[items]  # popular items get scattered ids
    # per user: a start in 2015..2023 and log-normal gaps (median about a week)
    users = np.repeat(np.arange(n_users), lengths)  # (N,)
    start = rng.integers(1_420_070_400, 1_672_531_200, n_users)
    gaps = np.exp(rng.normal(np.log(7 * 86_400), 2.0, n_inter)).astype(np.int64) + 1
    first = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    gaps[first] = 0
    times = start[users] + np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[first], lengths)
    raw = RawDataset(
        name="amzn23_game-synthetic",
        source="generic",
        interactions=pl.DataFrame(
            {
                "user_id": pl.Series(users).cast(pl.String),
                "item_id": pl.Series(items).cast(pl.String),
                "timestamp": times,
                "rating": np.full(n_inter, 5.0, dtype=np.float32),
            }
        ),
    )
    write_dataset(raw, raw.interactions, {}, {"generator": "bench/bench_train.py", "seed": seed}, out)
    text = rng.standard_normal((n_items + 1, d_text), dtype=np.float32)
    text[0] = 0.0
    store = out / "embeddings" / "random-768.safetensors"
    save_embeddings(store, text, StoreManifest(encoder="random", dim=d_text, num_items=n_items))
    return store


# ---- one configuration (run in a subprocess) --------------------------------------------------


def run_config(args: argparse.Namespace) -> dict[str, Any]:
    """Train ``args.steps`` steps (after warm-up) and evaluate ``args.eval_users`` users of one config."""
    import torch

    from hstu_blair.config import load_config
    from hstu_blair.data.dataset import SequenceData
    from hstu_blair.data.splits import EvalTargets
    from hstu_blair.evaluation.evaluate import rank_targets
    from hstu_blair.models.build import build_model
    from hstu_blair.recipes.resolve import (
        architecture,
        ensure_text,
        eval_options,
        negative_sampler,
        resolve_device,
    )
    from hstu_blair.training.batching import epoch_batches, train_batch
    from hstu_blair.training.objective import NextItemLoss
    from hstu_blair.training.step import train_step

    config = load_config(
        CONFIGS[args.model],
        [
            f'data.path="{args.data}"',
            f'text.embeddings="{args.store}"',
            f'train.negatives="{PATHS[args.path]}"',
            f"train.bucket_by_length={'false' if args.path == 'reference-faithful' else 'true'}",
            f'train.device="{args.device}"',
            f"train.threads={args.threads}",
        ],
    )
    tc = config.train
    device = resolve_device(tc.device)
    torch.set_num_threads(tc.threads)
    torch.manual_seed(tc.seed)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    # setup as in loop.train
    data = SequenceData.load(config.data.path)
    split = data.split(config.data.protocol)
    text, _ = ensure_text(config, data, progress=False)
    model = build_model(architecture(config, data.num_items, 0 if text is None else text.shape[1]), text).to(
        device
    )
    del text
    objective = NextItemLoss(model, tc.temperature)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=tc.lr, betas=tc.betas, weight_decay=tc.weight_decay, fused=True
    )
    sampler = negative_sampler(config, data, split)
    trainable = np.flatnonzero(split.train_len >= 2)
    lengths = np.minimum(split.train_len[trainable], config.data.max_len + 1)
    batches = epoch_batches(
        trainable, lengths, tc.batch_size, np.random.default_rng([tc.seed, 0]), tc.bucket_by_length
    )

    def step(b: int) -> tuple[int, int]:
        """The body of the training recipe's batch loop; returns (sequences, positions)."""
        users = batches[b]
        batch = train_batch(data, users, split.train_len, config.data.max_len).to(device)
        n_pos = int(batch.lengths.sum())
        negatives = sampler.draw(len(users), n_pos).to(device)
        train_step(objective, optimizer, batch, negatives).item()
        return len(users), n_pos

    model.train()
    for b in range(args.warmup):
        step(b)
    sync()
    n_seq = n_pos = 0
    load_before = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    for b in range(args.warmup, args.warmup + args.steps):
        s, p = step(b)
        n_seq, n_pos = n_seq + s, n_pos + p
    sync()
    train_s, train_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    result: dict[str, Any] = {
        "model": args.model,
        "path": args.path,
        "negatives": tc.negatives,
        "steps": args.steps,
        "sequences": n_seq,
        "train_seconds": train_s,
        "seconds_per_step": train_s / args.steps,
        "sequences_per_s": n_seq / train_s,
        "positions_per_s": n_pos / train_s,
        "train_cpu_seconds": train_cpu_s,  # all threads; well above train_seconds * threads = contention
        "load_avg_1min": [load_before, os.getloadavg()[0]],  # machine load before and after timing
    }

    if args.profile:  # torch.profiler over a few more steps: the ops that dominate a step
        from torch.profiler import ProfilerActivity, profile

        first = args.warmup + args.steps
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for b in range(first, first + args.profile):
                step(b)
        ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:15]
        result["profile_ms_per_step"] = {e.key: e.self_cpu_time_total / 1e3 / args.profile for e in ops}

    if args.eval_users:
        test = split.targets("test")
        pick = np.random.default_rng(0).permutation(len(test))[: args.eval_users]
        targets = EvalTargets(test.users[pick], test.positions[pick])
        warm = EvalTargets(
            test.users[pick[: config.eval.batch_size]], test.positions[pick[: config.eval.batch_size]]
        )
        options = eval_options(config)
        rank_targets(model, data, warm, config.data.max_len, options, device=device)
        sync()
        t0 = time.perf_counter()
        ranks, _ = rank_targets(model, data, targets, config.data.max_len, options, device=device)
        sync()
        eval_s = time.perf_counter() - t0
        result.update(
            {"eval_users": len(targets), "eval_seconds": eval_s, "eval_users_per_s": len(targets) / eval_s}
        )

    result["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    return result


# ---- driver ----------------------------------------------------------------------------------


def spawn(
    args: argparse.Namespace, data: Path, store: Path, model: str, path: str, eval_users: int
) -> dict[str, Any]:
    """Run one configuration in a fresh interpreter (own peak RSS) and return its result."""
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        "--model", model,
        "--path", path,
        "--data", str(data),
        "--store", str(store),
        "--steps", str(args.steps),
        "--warmup", str(args.warmup),
        "--eval-users", str(eval_users),
        "--threads", str(args.threads),
        "--device", args.device,
        "--profile", str(args.profile if path == "fast" else 0),
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{model} / {path} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(results: list[dict[str, Any]]) -> str:
    """The figures and ratios as a plain-text table."""
    by = {(r["model"], r["path"]): r for r in results}
    lines = [
        "training (sequences/s; B=128, L=50, R=512, 4 blocks x 4 heads, D=64)",
        f"{'model':<11} {'fast':>8} {'ref-path':>9} {'fast/ref-path':>14} {'ref impl*':>10} "
        f"{'fast/ref impl':>14} {'ref-path/ref impl':>18} {'s/step fast':>12} {'fast seq/CPU-s':>15} {'shared':>8}",
    ]
    for model in CONFIGS:
        fast, slow = by.get((model, "fast")), by.get((model, "reference-faithful"))
        if fast is None:
            continue
        ref = REFERENCE_SEQ_PER_S[model]
        f = fast["sequences_per_s"]
        s = slow["sequences_per_s"] if slow else float("nan")
        lines.append(
            f"{model:<11} {f:8.0f} {s:9.0f} {f / s:13.1f}x {ref:10.0f} {f / ref:13.1f}x {s / ref:17.1f}x "
            f"{fast['seconds_per_step']:12.3f} {fast['sequences'] / fast['train_cpu_seconds']:15.0f} "
            f"{by[(model, 'shared')]['sequences_per_s'] if (model, 'shared') in by else float('nan'):8.0f}"
        )
    lines += [
        "fast = per-row negatives + length-bucketed batches (our default); shared = one set of R negatives per batch;",
        "ref-path = per-position negatives + random batches (reference-faithful).",
        "",
        "evaluation (full-catalogue ranking, users/s) and peak RSS of each configuration's process",
        f"{'model':<11} {'users/s':>8} {'vs ref impl*':>13} {'RSS fast GB':>12} {'RSS ref-path GB':>16} "
        f"{'ref impl* GB':>13}",
    ]
    for model in CONFIGS:
        fast, slow = by.get((model, "fast")), by.get((model, "reference-faithful"))
        if fast is None:
            continue
        u = fast.get("eval_users_per_s", float("nan"))
        rss_slow = slow["peak_rss_bytes"] / 1e9 if slow else float("nan")
        lines.append(
            f"{model:<11} {u:8.0f} {u / REFERENCE_EVAL_USERS_PER_S:12.1f}x {fast['peak_rss_bytes'] / 1e9:12.2f} "
            f"{rss_slow:16.2f} {REFERENCE_PEAK_RSS_GB:13.1f}"
        )
    loads = [x for r in results for x in r["load_avg_1min"]]
    lines += [
        "",
        f"machine load average (1 min) while timing: {min(loads):.1f} to {max(loads):.1f} on {os.cpu_count()} "
        "CPUs; a load above the CPU count means other processes shared them and the rates are lower bounds "
        "(seq/CPU-s, sequences per second of this process's CPU time, is less sensitive to that with --threads 1)",
        "* reference implementation, measured by the issue author on the same 2-core machine class "
        "(not measured here):",
        f"  {REFERENCE_SEQ_PER_S['HSTU-BLaIR']:.0f} / {REFERENCE_SEQ_PER_S['HSTU']:.0f} / "
        f"{REFERENCE_SEQ_PER_S['SASRec']:.0f} seq/s (HSTU-BLaIR / HSTU / SASRec), "
        f"{REFERENCE_EVAL_USERS_PER_S:.0f} eval users/s, {REFERENCE_PEAK_RSS_GB} GB peak RSS. "
        f"Goal: >= {GOAL_TRAIN:.0f}x training, >= {GOAL_EVAL:.0f}x evaluation, < {GOAL_RSS_GB:.0f} GB.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=AMZN23_GAME["users"])
    parser.add_argument("--items", type=int, default=AMZN23_GAME["items"])
    parser.add_argument(
        "--interactions", type=int, default=None, help="default: 8.596 per user (814,586 at full size)"
    )
    parser.add_argument("--d-text", type=int, default=AMZN23_GAME["d_text"])
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per configuration")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before timing")
    parser.add_argument("--eval-users", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--profile", type=int, default=0, help="profile this many extra fast-path steps; print the top ops"
    )
    parser.add_argument("--models", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--data-dir", type=Path, default=None, help="keep/reuse the generated dataset here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write all figures as JSON")
    # worker mode (one configuration, called by the driver)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", choices=list(CONFIGS), help=argparse.SUPPRESS)
    parser.add_argument("--path", choices=list(PATHS), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(run_config(args)))
        return

    n_inter = args.interactions or round(args.users * AMZN23_GAME["interactions"] / AMZN23_GAME["users"])
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        data = args.data_dir or Path(tmp) / "data"
        store = data / "embeddings" / "random-768.safetensors"
        t0 = time.perf_counter()
        if not (data / "manifest.json").exists() or not store.exists():
            store = generate_dataset(data, args.users, args.items, n_inter, args.d_text, args.seed)
        print(
            f"dataset: {args.users:,} users, {args.items:,} items, {n_inter:,} interactions, "
            f"{args.d_text}-d text ({time.perf_counter() - t0:.1f} s) in {data}",
            flush=True,
        )
        load = os.getloadavg()[0]
        if load > (os.cpu_count() or 1):
            print(f"warning: load average {load:.1f} > {os.cpu_count()} CPUs: rates will be low and noisy")
        results = []
        for model in args.models:
            for path in PATHS:
                eval_users = args.eval_users if path == "fast" else 0
                r = spawn(args, data, store, model, path, eval_users)
                results.append(r)
                extra = f", eval {r['eval_users_per_s']:.0f} users/s" if "eval_users_per_s" in r else ""
                print(
                    f"  {model:<10} {path:<18} {r['sequences_per_s']:7.0f} seq/s "
                    f"({r['seconds_per_step']:.3f} s/step){extra}, peak RSS {r['peak_rss_bytes'] / 1e9:.2f} GB, "
                    f"load avg {r['load_avg_1min'][0]:.1f}",
                    flush=True,
                )
                for op, ms in r.get("profile_ms_per_step", {}).items():
                    print(f"      {ms:8.2f} ms/step  {op}")
    print()
    print(table(results))
    if args.out:
        summary = {
            "dataset": {
                "users": args.users,
                "items": args.items,
                "interactions": n_inter,
                "d_text": args.d_text,
            },
            "settings": {
                k: str(v) for k, v in vars(args).items() if k not in {"model", "path", "data", "store"}
            },
            "torch_threads": args.threads,
            "results": results,
            "reference_implementation": {
                "measured_by": "issue author, same 2-core machine class (quoted, not measured here)",
                "sequences_per_s": REFERENCE_SEQ_PER_S,
                "eval_users_per_s": REFERENCE_EVAL_USERS_PER_S,
                "peak_rss_gb": REFERENCE_PEAK_RSS_GB,
            },
        }
        args.out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
