"""Training and evaluation throughput at Video Games size, timed over whole epochs, fast path against
the reference-faithful path measured in the same run.

Generates a prepared dataset shaped like Amazon Reviews 2023 Video_Games 5-core (94,762 users,
25,612 items, 814,586 interactions, heavy-tailed lengths, Zipf-like item popularity) and a random
(n+1, 768) text matrix, then for each model of the shipped ``configs/hstu-blair/amzn23_game/*.toml``
(B=128, L=50, R=512, 4 blocks x 4 heads, D=64) and each path, in its own process:

- trains one epoch (all 741 batches of the epoch, or ``--epoch-fraction`` of them drawn at random
  from the epoch: the sample's length mix is printed beside the epoch's to show it matches), each
  step exactly the training recipe's (``train_batch`` -> ``NegativeSampler.draw`` ->
  ``training.step.train_step``, after ``retain_freed_memory``);
- ranks the test targets of ``--eval-users`` users (or all) over the whole catalogue, exact ranks
  (``evaluation.evaluate.rank_targets``);
- records its peak RSS; ``--profile K`` profiles K more steps with torch.profiler, prints the ops
  that dominate and saves a Chrome trace (open it in chrome://tracing or Perfetto).

Paths: ``fast`` = our default (per-row negatives, length-bucketed batches); ``reference-faithful``
= the reference's algorithm in our code (per-position negatives, random batches); ``shared`` = one
set of R negatives per batch; ``all`` = a full softmax over the catalogue. Models: HSTU-BLaIR (the
paper's ``sum`` fusion), HSTU+text (``residual`` fusion, ours), HSTU+text-gated (``gated``, ours),
the ``sum`` fusion over whitened rank-64 text with ID dropout or the minimum-count rule
(``HSTU+text-sum-r64-*``), HSTU, SASRec.

Every figure is printed with the CPU model and flags, the thread count and the load average: rates
differ between AVX2 and AVX-512 machines and drop when other processes share the cores (a load above
the number of CPUs makes them lower bounds). The reference implementation is not run here; the
figures its issue author measured are printed as labelled context only.

    python bench/bench_train.py --threads 2 --out bench_train.json            # whole epochs
    python bench/bench_train.py --epoch-fraction 0.1 --paths fast             # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GAME = ROOT / "configs/hstu-blair/amzn23_game"
CONFIGS: dict[str, tuple[Path, list[str]]] = {
    "HSTU-BLaIR": (GAME / "hstu-blair.toml", []),
    "HSTU+text-residual": (GAME / "hstu-blair.toml", ['model.fusion="residual"']),
    "HSTU+text-gated": (GAME / "hstu-blair.toml", ['model.fusion="gated"']),
    "HSTU+text-sum-r64-drop": (
        GAME / "hstu-blair.toml",
        ["model.fusion_options.text_rank=64", "model.fusion_options.id_dropout=0.1"],
    ),
    "HSTU+text-only": (GAME / "hstu-blair.toml", ['model.fusion="text"']),
    "HSTU+text-gated-r64": (
        GAME / "hstu-blair.toml",
        ['model.fusion="gated"', "model.fusion_options.text_rank=64"],
    ),
    "HSTU+text-sum-r64-mc5": (
        GAME / "hstu-blair.toml",
        ["model.fusion_options.text_rank=64", "model.fusion_options.id_min_count=5"],
    ),
    "HSTU": (GAME / "hstu.toml", []),
    "SASRec": (GAME / "sasrec.toml", []),
}
PATHS: dict[str, list[str]] = {
    "fast": ['train.negatives="per-row"', "train.bucket_by_length=true"],
    "reference-faithful": ['train.negatives="per-position"', "train.bucket_by_length=false"],
    "shared": ['train.negatives="shared"', "train.bucket_by_length=true"],
    "all": ['train.negatives="all"', "train.bucket_by_length=true"],
}
CONTEXT_REFERENCE_SEQ_PER_S = {"HSTU-BLaIR": 79.0, "HSTU": 232.0, "SASRec": 191.0}
"""The reference implementation on the same data sizes and config, measured by the issue author on a
2-core AMD EPYC with AVX-512 (issue 12): context only, never measured by this script."""
AMZN23_GAME = {"users": 94_762, "items": 25_612, "interactions": 814_586, "d_text": 768}


# ---- machine -----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """CPU model, the SIMD flags that matter here, core count, load, library versions."""
    import torch

    model, flags = platform.processor() or "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("unknown", ""):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ["avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16"]
    return {
        "cpu": model,
        "flags": [f for f in wanted if f in flags],
        "cpus": os.cpu_count(),
        "load_avg_1min": os.getloadavg()[0],
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "python": platform.python_version(),
    }


def machine_line(m: dict[str, Any]) -> str:
    return (
        f"CPU: {m['cpu']} ({m['cpus']} CPUs; flags: {', '.join(m['flags']) or 'none of avx2/avx512/amx'}; "
        f"torch {m['torch']} dispatching {m['torch_cpu_capability']})"
    )


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
    """One epoch (or a sample of it) of one model and path, then evaluation; see the module docstring."""
    import torch

    from hstu_blair.config import load_config
    from hstu_blair.data.dataset import SequenceData
    from hstu_blair.data.splits import EvalTargets
    from hstu_blair.evaluation.evaluate import rank_targets
    from hstu_blair.models.build import build_model
    from hstu_blair.recipes.resolve import (
        ensure_text,
        eval_options,
        negative_sampler,
        resolve_device,
        run_architecture,
        train_item_counts,
    )
    from hstu_blair.training.allocator import retain_freed_memory
    from hstu_blair.training.batching import epoch_batches, train_batch
    from hstu_blair.training.objective import NextItemLoss
    from hstu_blair.training.precision import autocast_for
    from hstu_blair.training.step import train_step

    path, overrides = CONFIGS[args.model]
    config = load_config(
        path,
        [
            *overrides,
            *PATHS[args.path],
            f'data.path="{args.data}"',
            f'text.embeddings="{args.store}"',
            f'train.device="{args.device}"',
            f"train.threads={args.threads}",
            f"train.bf16={'true' if args.bf16 else 'false'}",
        ],
    )
    tc = config.train
    retain_freed_memory()  # as the training recipe does
    device = resolve_device(tc.device)
    torch.set_num_threads(tc.threads)
    torch.manual_seed(tc.seed)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    data = SequenceData.load(config.data.path)
    split = data.split(config.data.protocol)
    text, _ = ensure_text(config, data, progress=False)
    arch = run_architecture(config, data, text)
    model = build_model(arch, text, train_item_counts(data, split)).to(device)  # as the recipe builds it
    del text
    objective = NextItemLoss(model, tc.temperature)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=tc.lr, betas=tc.betas, weight_decay=tc.weight_decay, fused=True
    )
    sampler = negative_sampler(config, data, split)
    autocast = autocast_for(device, tc.bf16)
    trainable = np.flatnonzero(split.train_len >= 2)
    lengths = np.minimum(split.train_len, config.data.max_len + 1)
    epoch = epoch_batches(
        trainable, lengths[trainable], tc.batch_size, np.random.default_rng([tc.seed, 0]), tc.bucket_by_length
    )
    n_steps = max(1, round(args.epoch_fraction * len(epoch)))
    order = np.random.default_rng(1).permutation(len(epoch))
    timed = sorted(order[:n_steps].tolist()) if n_steps < len(epoch) else list(range(len(epoch)))
    spare = order[n_steps:].tolist() or list(range(len(epoch)))

    def width(batch_users: np.ndarray) -> int:
        return int(lengths[batch_users].max()) - 1  # padded positions per row

    def mix(indices: list[int]) -> dict[str, float]:
        """Length mix of a set of batches: mean padded width and real positions per batch."""
        w = [width(epoch[i]) for i in indices]
        p = [int((lengths[epoch[i]] - 1).sum()) for i in indices]
        return {"mean_padded_width": float(np.mean(w)), "mean_positions_per_batch": float(np.mean(p))}

    def step(users: np.ndarray) -> int:
        """The training recipe's batch loop body; returns the number of positions."""
        batch = train_batch(data, users, split.train_len, config.data.max_len).to(device)
        n_pos = int(batch.lengths.sum())
        negatives = sampler.draw(len(users), n_pos).to(device)
        train_step(objective, optimizer, batch, negatives, autocast).item()
        return n_pos

    model.train()
    for i in spare[: args.warmup]:
        step(epoch[i])
    sync()
    n_seq = n_pos = 0
    load_before = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    for i in timed:
        n_pos += step(epoch[i])
        n_seq += len(epoch[i])
    sync()
    train_s, train_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    result: dict[str, Any] = {
        "model": args.model,
        "path": args.path,
        "bf16": args.bf16,
        "epoch_steps": len(epoch),
        "steps": len(timed),
        "sequences": n_seq,
        "train_seconds": train_s,
        "seconds_per_step": train_s / len(timed),
        "epoch_seconds": train_s / len(timed) * len(epoch),
        "sequences_per_s": n_seq / train_s,
        "positions_per_s": n_pos / train_s,
        "train_cpu_seconds": train_cpu_s,
        "length_mix": {"timed": mix(timed), "epoch": mix(list(range(len(epoch))))},
        "load_avg_1min": [load_before, os.getloadavg()[0]],
    }

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for i in spare[args.warmup : args.warmup + args.profile]:
                step(epoch[i])
        ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:15]
        result["profile_ms_per_step"] = {e.key: e.self_cpu_time_total / 1e3 / args.profile for e in ops}
        if args.trace_dir:
            trace = Path(args.trace_dir) / f"trace-{args.model}-{args.path}.json"
            trace.parent.mkdir(parents=True, exist_ok=True)
            prof.export_chrome_trace(str(trace))
            result["trace"] = str(trace)

    if args.eval_users:
        test = split.targets("test")
        pick = np.random.default_rng(0).permutation(len(test))
        if args.eval_users > 0:
            pick = pick[: args.eval_users]
        targets = EvalTargets(test.users[pick], test.positions[pick])
        options = eval_options(config)
        warm = EvalTargets(targets.users[: options.batch_size], targets.positions[: options.batch_size])
        rank_targets(model, data, warm, config.data.max_len, options, device=device)
        sync()
        t0 = time.perf_counter()
        rank_targets(model, data, targets, config.data.max_len, options, device=device)
        sync()
        eval_s = time.perf_counter() - t0
        result.update(eval_users=len(targets), eval_seconds=eval_s, eval_users_per_s=len(targets) / eval_s)

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
        "--epoch-fraction", str(args.epoch_fraction if path == "fast" else args.slow_fraction),
        "--warmup", str(args.warmup),
        "--eval-users", str(eval_users),
        "--threads", str(args.threads),
        "--device", args.device,
        "--profile", str(args.profile if path == "fast" else 0),
        "--trace-dir", str(args.trace_dir or ""),
        *(["--bf16"] if args.bf16 else []),
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{model} / {path} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(results: list[dict[str, Any]], info: dict[str, Any]) -> str:
    """The figures and ratios as plain text, each ratio between runs of this same invocation."""
    by = {(r["model"], r["path"]): r for r in results}
    lines = [
        machine_line(info),
        f"threads {info['threads']}; load average (1 min) while timing: {info['load_min']:.1f} to {info['load_max']:.1f}",
        "",
        "training, sequences/s over the timed steps (B=128, L=50, R=512, 4 blocks x 4 heads, D=64)",
        f"{'model':<19} {'path':<19} {'steps':>11} {'seq/s':>7} {'s/step':>7} {'epoch s':>8} "
        f"{'x ref-path':>10} {'peak RSS':>9}",
    ]
    for (model, path), r in by.items():
        ref = by.get((model, "reference-faithful"))
        speedup = f"{r['sequences_per_s'] / ref['sequences_per_s']:9.1f}x" if ref else f"{'':>10}"
        lines.append(
            f"{model:<19} {path:<19} {r['steps']:>5}/{r['epoch_steps']:<5} {r['sequences_per_s']:7.0f} "
            f"{r['seconds_per_step']:7.3f} {r['epoch_seconds']:8.1f} {speedup} {r['peak_rss_bytes'] / 1e9:7.2f}GB"
        )
    hstu = by.get(("HSTU", "fast"))
    for model in ("HSTU-BLaIR", "HSTU+text-residual", "HSTU+text-gated"):
        if hstu and (model, "fast") in by:
            ratio = by[(model, "fast")]["seconds_per_step"] / hstu["seconds_per_step"]
            lines.append(f"text / ID step time, {model} / HSTU (fast path): {ratio:.2f}x")
    lines += ["", "evaluation (full-catalogue ranking, exact ranks)"]
    for r in results:
        if "eval_users_per_s" in r:
            lines.append(
                f"  {r['model']:<19} {r['eval_users']:>7,} users  {r['eval_users_per_s']:8.0f} users/s"
            )
    lines += ["", "length mix (timed sample vs whole epoch): mean padded width, mean positions per batch"]
    for r in results:
        t, e = r["length_mix"]["timed"], r["length_mix"]["epoch"]
        lines.append(
            f"  {r['model']:<19} {r['path']:<19} {t['mean_padded_width']:5.1f} vs {e['mean_padded_width']:5.1f}, "
            f"{t['mean_positions_per_batch']:6.0f} vs {e['mean_positions_per_batch']:6.0f}"
        )
    lines += [
        "",
        "context only, not measured here: the reference implementation at these sizes, measured by the issue "
        "author on a 2-core AMD EPYC with AVX-512: "
        + ", ".join(f"{m} {v:.0f} seq/s" for m, v in CONTEXT_REFERENCE_SEQ_PER_S.items()),
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
    parser.add_argument(
        "--epoch-fraction",
        type=float,
        default=1.0,
        help="share of the epoch's batches timed on the fast paths",
    )
    parser.add_argument(
        "--slow-fraction", type=float, default=0.25, help="share timed on the reference-faithful path"
    )
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before timing")
    parser.add_argument("--eval-users", type=int, default=-1, help="users evaluated (-1: all; 0: none)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true", help="train.bf16 (autocast) for every configuration")
    parser.add_argument("--profile", type=int, default=0, help="profile this many more fast-path steps")
    parser.add_argument(
        "--trace-dir", type=Path, default=None, help="save the profiles as Chrome traces here"
    )
    parser.add_argument("--models", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--paths", nargs="+", default=["fast", "reference-faithful"], choices=list(PATHS))
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
        args.trace_dir = args.trace_dir if str(args.trace_dir or "") not in ("", ".") else None
        print(json.dumps(run_config(args)))
        return

    n_inter = args.interactions or round(args.users * AMZN23_GAME["interactions"] / AMZN23_GAME["users"])
    info = machine()
    print(machine_line(info), flush=True)
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
        if info["load_avg_1min"] > (os.cpu_count() or 1):
            print(
                f"warning: load average {info['load_avg_1min']:.1f} > {os.cpu_count()} CPUs: rates will be low"
            )
        results = []
        for model in args.models:
            for path in args.paths:
                eval_users = args.eval_users if path == "fast" else 0
                r = spawn(args, data, store, model, path, eval_users)
                results.append(r)
                extra = f", eval {r['eval_users_per_s']:.0f} users/s" if "eval_users_per_s" in r else ""
                print(
                    f"  {model:<19} {path:<19} {r['sequences_per_s']:7.0f} seq/s ({r['seconds_per_step']:.3f} s/step, "
                    f"{r['steps']} of {r['epoch_steps']} steps){extra}, peak RSS {r['peak_rss_bytes'] / 1e9:.2f} GB, "
                    f"load {r['load_avg_1min'][0]:.1f}",
                    flush=True,
                )
                for op, ms in r.get("profile_ms_per_step", {}).items():
                    print(f"      {ms:8.2f} ms/step  {op}")
                if "trace" in r:
                    print(f"      trace: {r['trace']}")
    loads = [x for r in results for x in r["load_avg_1min"]]
    info.update(threads=args.threads, load_min=min(loads), load_max=max(loads))
    print()
    print(table(results, info))
    if args.out:
        summary = {
            "machine": info,
            "dataset": {
                "users": args.users,
                "items": args.items,
                "interactions": n_inter,
                "d_text": args.d_text,
            },
            "settings": {
                k: str(v) for k, v in vars(args).items() if k not in {"model", "path", "data", "store"}
            },
            "results": results,
            "context_reference_implementation_seq_per_s": {
                "measured_by": "issue author, 2-core AMD EPYC with AVX-512 (context only, not measured here)",
                "values": CONTEXT_REFERENCE_SEQ_PER_S,
            },
        }
        args.out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
