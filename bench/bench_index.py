"""Top-k retrieval: exact brute force against FAISS HNSW / IVF, recall@k and search time.

1. A trained run (``--run-dir``, default: a small HSTU trained on ml-latest-small, 9.7k items):
   every user's full history is a query; recall@10 of each index against exact search
   (``Recommender.index_recall``) and the time of one search of 64 queries.
2. Synthetic catalogues of ``--sizes`` items (clustered D=50 unit vectors, like trained item
   vectors): build time, recall@10 and time per 64-query search, exact against each FAISS index.

    python bench/bench_index.py --sizes 100000 500000 --threads 1 --out bench_index.json

Use one thread on a shared machine: with two cores and other processes running, two OpenMP
threads made a 64 x 9.7k score matrix 15x slower (16 ms against 1 ms) than one.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from hstu_blair.serving.index import ExactIndex, FaissIndex, ItemIndex, index_recall

KINDS = ("hnsw", "ivf")


def search_ms(index: ItemIndex, queries: torch.Tensor, k: int = 10, repeats: int = 20) -> float:
    """Median milliseconds of one search of ``queries`` (one batch)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        index.search(queries, k, None)
        times.append(time.perf_counter() - start)
    return round(1000 * sorted(times)[len(times) // 2], 3)


def trained_run(run_dir: Path) -> dict[str, Any]:
    from hstu_blair.serving.recommender import Query, Recommender

    out: dict[str, Any] = {}
    exact = Recommender.load(run_dir)
    users = [str(u) for u in exact.run.data.sequences["user_id"].to_list()]
    queries = [Query(user_id=u) for u in users]
    vectors = exact.encode(queries)  # (U, D)
    out["items"], out["queries"] = exact.num_items, len(users)
    out["exact_ms_per_64"] = search_ms(ExactIndex(exact._vectors), vectors[:64])
    for name in ("faiss-hnsw", "faiss-ivf"):
        rec = Recommender.load(run_dir, index=name)
        out[name] = {
            "recall@10": round(rec.index_recall(queries, k=10), 4),
            "ms_per_64": search_ms(rec.scorer.index, vectors[:64]),
        }
    return out


def synthetic(n: int, d: int = 50, seed: int = 0) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(max(10, n // 200), d, generator=gen)

    def draw(m: int) -> torch.Tensor:
        pick = torch.randint(0, centres.shape[0], (m,), generator=gen)
        return F.normalize(centres[pick] + 0.8 * torch.randn(m, d, generator=gen), dim=-1)

    vectors, queries = draw(n + 1), draw(1000)
    vectors[0] = 0
    out: dict[str, Any] = {
        "items": n,
        "exact_ms_per_64": search_ms(ExactIndex(vectors), queries[:64], repeats=5),
    }
    for kind in KINDS:
        start = time.perf_counter()
        index = FaissIndex(vectors, kind)
        build = time.perf_counter() - start
        out[f"faiss-{kind}"] = {
            "build_s": round(build, 1),
            "recall@10": round(index_recall(index, vectors, queries, k=10), 4),
            "ms_per_64": search_ms(index, queries[:64]),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", type=Path, help="a trained run (default: train one on ml-latest-small)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="*", default=[100_000, 500_000])
    parser.add_argument("--threads", type=int, default=1, help="torch and FAISS threads (default 1)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    import faiss

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.run_dir
        if run_dir is None:
            from bench_serve import train_run

            run_dir = train_run(Path(tmp), args.epochs)
        results["trained"] = trained_run(run_dir)
        print(f"trained run: {json.dumps(results['trained'])}")
    for n in args.sizes:
        results[f"synthetic_{n}"] = synthetic(n)
        print(f"synthetic {n:,}: {json.dumps(results[f'synthetic_{n}'])}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
