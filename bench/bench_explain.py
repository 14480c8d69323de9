"""Reasons (``explain=True``): the latency they add per request, HSTU and SASRec, in the same run.

Generates a prepared dataset (``bench_train.generate_dataset``; ``--users`` users, 3,000 items),
trains a small ID-only HSTU and a small SASRec on it (``--epochs``), then for each run times
``--requests`` single requests ``Recommender.recommend_user(user, k=10)`` of random users, with and
without ``explain=True``, interleaved (so both see the same load), after a warm-up. Reports p50/p99
milliseconds of each and the added latency (explain - plain) and ratio at p50 and p99. Explain
re-encodes the last 5 distinct history items' leave-one-out variants in one more model call, so
it is expected to cost about one more (wider) model call per request.

    python bench/bench_explain.py --out bench/results/explain.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import generate_dataset, machine, machine_line  # noqa: E402


def train_runs(workdir: Path, n_users: int, epochs: int, threads: int) -> dict[str, Path]:
    """A small HSTU and a small SASRec on one generated dataset (reused when present)."""
    from hstu_blair.config import load_config
    from hstu_blair.recipes.train import train

    data = workdir / "data"
    if not (data / "manifest.json").exists():
        generate_dataset(data, n_users, n_items=3_000, n_inter=12 * n_users, d_text=8, seed=0)
    runs = {}
    for model in ("hstu", "sasrec"):
        run_dir = workdir / model
        runs[model] = run_dir
        if (run_dir / "model.json").exists():
            continue
        overrides = {
            "data.path": f'"{data}"',
            "out_dir": f'"{workdir}"',
            "model.name": f'"{model}"',
            "data.max_len": 50,
            "model.d_model": 64,
            "model.num_heads": 2,
            "train.epochs": epochs,
            "train.patience": 0,
            "train.batch_size": 256,
            "train.threads": threads,
        }
        config = load_config(None, [f"{k}={v}" for k, v in overrides.items()])
        train(config, run_dir=run_dir, progress=False)
    return runs


def percentiles(ms: list[float]) -> dict[str, float]:
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "n": len(ms)}


def time_run(run_dir: Path, requests: int, seed: int) -> dict[str, Any]:
    """p50/p99 ms of ``recommend_user`` with and without explain, interleaved."""
    from hstu_blair.serving.recommender import Recommender

    rec = Recommender.load(run_dir, persist=False)
    users = [str(u) for u in rec.run.data.sequences["user_id"].to_list()]
    rng = random.Random(seed)
    for user in rng.sample(users, 20):  # warm-up
        rec.recommend_user(user, 10, explain=True)
    times: dict[str, list[float]] = {"plain": [], "explain": []}
    for _ in range(requests):
        user = rng.choice(users)
        order = ["plain", "explain"] if rng.random() < 0.5 else ["explain", "plain"]
        for mode in order:
            started = time.perf_counter()
            rec.recommend_user(user, 10, explain=mode == "explain")
            times[mode].append((time.perf_counter() - started) * 1000)
    plain, explain = percentiles(times["plain"]), percentiles(times["explain"])
    return {
        "plain": plain,
        "explain": explain,
        "added_p50_ms": explain["p50_ms"] - plain["p50_ms"],
        "added_p99_ms": explain["p99_ms"] - plain["p99_ms"],
        "ratio_p50": explain["p50_ms"] / plain["p50_ms"],
        "ratio_p99": explain["p99_ms"] / plain["p99_ms"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=5_000)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--requests", type=int, default=500)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--workdir", type=Path, help="keep the dataset and runs here (default: a temporary folder)"
    )
    p.add_argument("--out", type=Path, help="write the results as JSON")
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    m = machine()
    print(machine_line(m), f"load {m['load_avg_1min']:.2f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        runs = train_runs(workdir, args.users, args.epochs, args.threads)
        results = {model: time_run(run_dir, args.requests, seed=1) for model, run_dir in runs.items()}
    for model, r in results.items():
        print(
            f"{model:>6}: plain p50 {r['plain']['p50_ms']:.2f} / p99 {r['plain']['p99_ms']:.2f} ms; explain p50 "
            f"{r['explain']['p50_ms']:.2f} / p99 {r['explain']['p99_ms']:.2f} ms; added {r['added_p50_ms']:.2f} "
            f"/ {r['added_p99_ms']:.2f} ms ({r['ratio_p50']:.2f}x / {r['ratio_p99']:.2f}x)"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        record = {"machine": m, "users": args.users, "requests": args.requests, "results": results}
        args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
