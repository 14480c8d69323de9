"""Embedding throughput: length-sorted batches (ours) against the reference's unsorted batches of 8.

Same encoder (MiniLM, the offline default), same texts, same process, interleaved repeats:

- ``reference``: texts in input order, batches of 8 (as ``embed_and_save_item_texts``);
- ``sorted-8``: length-sorted batches of 8 (isolates the effect of sorting);
- ``ours``: ``TextEncoder.encode`` with length-sorted batches of ``--batch-size`` (default 64).

Texts: ``amazon`` = real review texts (+ product title) from the Amazon Reviews 2023 sample in
../shared/datasets (lengths vary as Amazon item descriptions do), or ``ml-latest-small`` = item
texts of the bundled MovieLens set (short: title, genres, tags). Prints texts/s and the ratios,
and checks that every method gives the same vectors.

    python bench/bench_embed.py --texts amazon --n 1000
    python bench/bench_embed.py --texts ml-latest-small --n 1000
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from hstu_blair.text.registry import build_text_encoder

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HSTU_BLAIR_SHARED", ROOT.parent / "shared")) / "datasets"


def amazon_texts(n: int, seed: int) -> list[str]:
    """Review title + text of the Amazon 2023 multi-category sample (real, varied lengths)."""
    path = SHARED / "amazon2023-mini-multicategory-sample" / "training.jsonl.gz"
    texts = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            for review in json.loads(line)["history"]:
                text = f"{review['product'].get('title') or ''}. {review.get('review_full') or ''}".strip()
                if text != ".":
                    texts.append(text)
    rng = np.random.default_rng(seed)
    return [texts[i] for i in rng.permutation(len(texts))[:n]]


def movielens_texts(n: int, seed: int) -> list[str]:
    """Item texts of the bundled ml-latest-small (prepared into a temporary folder)."""
    import hstu_blair

    with tempfile.TemporaryDirectory() as tmp:
        texts = hstu_blair.prepare("ml-latest-small", None, Path(tmp) / "mls").texts
    rng = np.random.default_rng(seed)
    return [texts[i] for i in rng.permutation(len(texts))[:n]]


def run(encoder, texts: list[str], method: str, batch_size: int) -> tuple[float, np.ndarray]:
    """Seconds to encode ``texts`` with ``method`` and the vectors (input order)."""
    started = time.perf_counter()
    if method == "ours":
        vectors = encoder.encode(texts, batch_size=batch_size)
    elif method == "sorted-8":
        vectors = encoder.encode(texts, batch_size=8)
    else:  # reference: unsorted chunks of 8 in input order
        with torch.inference_mode():
            vectors = np.concatenate(
                [encoder._encode_batch(texts[i : i + 8]) for i in range(0, len(texts), 8)]
            )
    return time.perf_counter() - started, vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", choices=["amazon", "ml-latest-small"], default="amazon")
    parser.add_argument("--n", type=int, default=1000, help="number of texts")
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repeats; the best time counts")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    texts = amazon_texts(args.n, args.seed) if args.texts == "amazon" else movielens_texts(args.n, args.seed)
    lengths = np.array([len(t) for t in texts])
    encoder = build_text_encoder(args.encoder)
    encoder.encode(texts[:16], batch_size=8)  # warm-up
    print(
        f"{len(texts)} {args.texts} texts, chars min/median/mean/max {lengths.min()}/{int(np.median(lengths))}/"
        f"{lengths.mean():.0f}/{lengths.max()}; encoder {encoder.name} (max {encoder.fingerprint()['max_tokens']} "
        f"tokens) on {encoder.device}, {torch.get_num_threads()} threads"
    )
    methods = ["reference", "sorted-8", "ours"]
    best = {m: float("inf") for m in methods}
    vectors = {}
    for _ in range(args.repeats):
        for method in methods:
            seconds, vectors[method] = run(encoder, texts, method, args.batch_size)
            best[method] = min(best[method], seconds)
    for method in methods:
        diff = float(np.abs(vectors[method] - vectors["reference"]).max())
        print(
            f"  {method:<10} {len(texts) / best[method]:8.1f} texts/s  ({best[method]:.2f}s, max |diff| vs reference {diff:.1e})"
        )
    print(f"ratio sorted-8 / reference: {best['reference'] / best['sorted-8']:.2f}x")
    print(
        f"ratio ours (sorted, batch {args.batch_size}) / reference: {best['reference'] / best['ours']:.2f}x"
    )


if __name__ == "__main__":
    main()
