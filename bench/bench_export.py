"""Batch export (``Recommender.export_recommendations``): memory bounded by the batch, and throughput
beside evaluation's on the same run.

Generates a prepared dataset of ``--users`` users (default 100,000; ``bench_train.generate_dataset``:
heavy-tailed lengths, Zipf-like items), trains a small ID-only HSTU on it for ``--epochs`` epoch(s),
then, each in a fresh process (so that peaks are independent):

- ``export-1k``: the top 20 of the first 1,000 users to Parquet (the baseline);
- ``export-10k``: the first 10,000 users (10 batches: the allocator's steady state);
- ``export-all``: the top 20 of every user (``--users``) to Parquet;
- ``evaluate``: the evaluation code path on the same run (``evaluation.evaluate.evaluate_model`` on
  the test split, as ``hstu-blair evaluate`` runs it: full ranking of every test user).

Each export process loads the run, reads its RSS (``rss_cold_mib``), exports one batch (the first
1,024 users) to a scratch file while a thread samples VmRSS every 2 ms, reads its RSS again
(``rss_before_mib``), then runs the measured export, still sampled: ``peak_growth_mib`` is the
largest RSS above ``rss_before_mib`` (what the export adds to a warm recommender), and
``cold_peak_growth_mib`` the largest above ``rss_cold_mib`` (warm-up included: what an export
builds once, such as the user index, the encoder's input table and torch's thread pools, whatever
the users). ``hwm_mib`` is the process's VmHWM at the end. Goal: ``export-all``'s peak growth at
most 1.5x ``export-1k``'s (memory bounded by the batch, not by the number of users). Throughput is
users per second of the export call (the run already loaded) against evaluation's users per second
(model loaded; timed over ``evaluate_model``). ``--compare`` adds ``export-all-no-release``: every
user exported without giving freed memory back after each batch (the export before the fix).

    python bench/bench_export.py --out bench/results/export.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import generate_dataset, machine, machine_line  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BATCH = 1024  # users per batch (the export's default)


def rss_mib(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def train_run(workdir: Path, n_users: int, epochs: int, threads: int) -> Path:
    """A small ID-only HSTU on a generated dataset of ``n_users`` users (reused when present)."""
    from hstu_blair.config import load_config
    from hstu_blair.recipes.train import train

    run_dir = workdir / "run"
    if (run_dir / "model.json").exists():
        return run_dir
    data = workdir / "data"
    generate_dataset(data, n_users, n_items=min(5_000, n_users), n_inter=8 * n_users, d_text=8, seed=0)
    overrides = {
        "data.path": f'"{data}"',
        "out_dir": f'"{workdir}"',
        "data.max_len": 50,
        "model.d_model": 32,
        "model.d_qk": 16,
        "model.d_v": 16,
        "model.ffn_dim": 32,
        "model.num_heads": 2,
        "train.epochs": epochs,
        "train.patience": 0,
        "train.batch_size": 512,
        "train.num_negatives": 64,
        "train.threads": threads,
        "eval.batch_size": 512,
    }
    config = load_config(None, [f"{k}={v}" for k, v in overrides.items()])
    return train(config, run_dir=run_dir, progress=False).run_dir


def child_export(
    run_dir: Path, n_users: int | None, out: Path, threads: int, release: bool = True
) -> dict[str, Any]:
    """One export in this process: RSS before, peak growth during, VmHWM after, users/s;
    ``release=False``: without giving freed memory back after each batch (the code before the fix)."""
    import torch

    from hstu_blair.serving import export
    from hstu_blair.serving.recommender import Recommender

    if not release:
        export.release_freed_memory = lambda: False  # type: ignore[assignment]

    torch.set_num_threads(threads)
    rec = Recommender.load(run_dir, persist=False)
    every = [str(u) for u in rec.run.data.sequences["user_id"].to_list()]
    users = None if n_users is None else every[:n_users]
    peak, done = [0.0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_mib())
            done.wait(0.002)

    cold = peak[0] = rss_mib()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    # one batch first, to a scratch file: what any export builds once (the user index, the
    # encoder's input table, torch's thread pools) is not growth with the users exported
    warm_file = out.with_name(out.stem + "-warmup" + out.suffix)
    rec.export_recommendations(warm_file, k=20, batch_size=BATCH, users=every[:BATCH], progress=False)
    warm_file.unlink()
    warm_peak = peak[0]
    before = peak[0] = rss_mib()
    summary = rec.export_recommendations(out, k=20, batch_size=BATCH, users=users, progress=False)
    done.set()
    sampler.join()
    peak[0] = max(peak[0], rss_mib())
    return {
        "users": summary.users,
        "skipped": summary.skipped,
        "rows": summary.rows,
        "seconds": summary.seconds,
        "users_per_s": summary.users_per_s,
        "rss_cold_mib": cold,
        "warmup_peak_growth_mib": warm_peak - cold,
        "rss_before_mib": before,
        "peak_growth_mib": peak[0] - before,
        "cold_peak_growth_mib": max(warm_peak, peak[0]) - cold,
        "hwm_mib": rss_mib("VmHWM"),
        "file_mib": out.stat().st_size / 2**20,
    }


def child_evaluate(run_dir: Path, threads: int) -> dict[str, Any]:
    """The evaluation code path of ``hstu-blair evaluate`` (test split), timed over ``evaluate_model``."""
    import torch

    from hstu_blair.config import load_config
    from hstu_blair.evaluation.evaluate import evaluate_model
    from hstu_blair.recipes.resolve import eval_options
    from hstu_blair.recipes.resolve import split as resolve_split
    from hstu_blair.run.layout import config_path
    from hstu_blair.run.model_files import load_trained

    torch.set_num_threads(threads)
    config = load_config(config_path(run_dir))
    trained = load_trained(run_dir, "best", "cpu")
    targets = resolve_split(config, trained.data).targets("test")
    started = time.perf_counter()
    metrics = evaluate_model(trained.model, trained.data, targets, config.data.max_len, eval_options(config))
    seconds = time.perf_counter() - started
    return {"users": metrics["n_users"], "seconds": seconds, "users_per_s": metrics["n_users"] / seconds}


def in_child(args: list[str]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, cwd=ROOT, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def report(results: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Print each measurement and the ratios; returns the ratios."""
    base, full, ev = results["export-1k"], results["export-all"], results["evaluate"]
    ratios = {
        "peak_growth_all_over_1k": full["peak_growth_mib"] / max(base["peak_growth_mib"], 1e-9),
        "peak_growth_all_over_10k": full["peak_growth_mib"]
        / max(results["export-10k"]["peak_growth_mib"], 1e-9),
        "cold_peak_growth_all_over_1k": full["cold_peak_growth_mib"]
        / max(base["cold_peak_growth_mib"], 1e-9),
        "hwm_all_over_1k": full["hwm_mib"] / base["hwm_mib"],
        "export_all_users_per_s_over_evaluate": full["users_per_s"] / ev["users_per_s"],
    }
    for name, r in results.items():
        extra = (
            f", peak growth {r['peak_growth_mib']:.1f} MiB (from cold {r['cold_peak_growth_mib']:.1f}),"
            f" VmHWM {r['hwm_mib']:.0f} MiB"
            if "hwm_mib" in r
            else ""
        )
        print(
            f"{name:>10}: {r['users']:,} users in {r['seconds']:.1f} s = {r['users_per_s']:,.0f} users/s{extra}"
        )
    print(
        f"peak growth all/1k = {ratios['peak_growth_all_over_1k']:.2f}x (goal <= 1.5x), all/10k = "
        f"{ratios['peak_growth_all_over_10k']:.2f}x, from cold all/1k = "
        f"{ratios['cold_peak_growth_all_over_1k']:.2f}x, VmHWM all/1k = "
        f"{ratios['hwm_all_over_1k']:.2f}x; export/evaluate users/s = "
        f"{ratios['export_all_users_per_s_over_evaluate']:.2f}x"
    )
    return ratios


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workdir", type=Path, help="keep the dataset and run here (default: a temporary folder)")
    p.add_argument("--out", type=Path, help="write the results as JSON")
    p.add_argument("--child", choices=["export", "evaluate"], help=argparse.SUPPRESS)
    p.add_argument("--run-dir", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--n-users", type=int, help=argparse.SUPPRESS)
    p.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--no-release", action="store_true", help=argparse.SUPPRESS)
    p.add_argument(
        "--compare", action="store_true", help="also export every user without releasing freed memory"
    )
    args = p.parse_args()
    if args.child == "export":
        print(
            json.dumps(child_export(args.run_dir, args.n_users, args.file, args.threads, not args.no_release))
        )
        return
    if args.child == "evaluate":
        print(json.dumps(child_evaluate(args.run_dir, args.threads)))
        return
    m = machine()
    print(machine_line(m), f"load {m['load_avg_1min']:.2f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        run_dir = train_run(workdir, args.users, args.epochs, args.threads)
        print(f"dataset + run: {time.perf_counter() - started:.0f} s ({run_dir})", flush=True)
        common = ["--run-dir", str(run_dir), "--threads", str(args.threads)]
        results = {
            "export-1k": in_child(
                ["--child", "export", *common, "--n-users", "1000", "--file", str(workdir / "1k.parquet")]
            ),
            "export-10k": in_child(
                ["--child", "export", *common, "--n-users", "10000", "--file", str(workdir / "10k.parquet")]
            ),
            "export-all": in_child(["--child", "export", *common, "--file", str(workdir / "all.parquet")]),
            "evaluate": in_child(["--child", "evaluate", *common]),
        }
        if args.compare:
            results["export-all-no-release"] = in_child(
                ["--child", "export", *common, "--no-release", "--file", str(workdir / "all-nr.parquet")]
            )
    ratios = report(results)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        record = {"machine": m, "users": args.users, "results": results, "ratios": ratios}
        args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
