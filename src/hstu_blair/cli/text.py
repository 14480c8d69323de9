"""``embed`` and ``pretrain-text``: the text subcommands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import hstu_blair as hb
from hstu_blair.data.dataset import load_dataset
from hstu_blair.errors import HstuBlairError


def add_embed_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``hstu-blair embed``."""
    p = sub.add_parser(
        "embed",
        help="embed every item text of a prepared dataset (re-encodes only changed texts)",
        description=(
            "Encode the item texts of DATASET into an embedding store (float32 (n+1, D), row 0 = padding, "
            "with a manifest of the encoder fingerprint and per-item text hashes). A rerun with the same "
            "encoder reuses every unchanged row; an interrupted run resumes. Items with empty text are "
            "encoded by their title, else 'item <item id>' (counted), never as zero vectors. "
            "Encoders: minilm (offline default), blair-base, blair-large, st:<name|dir>, "
            "hf:<name|dir>[?pooling=cls|mean&normalize=1], openai:<model> (OPENAI_API_KEY); --list shows them."
        ),
    )
    p.add_argument("dataset", type=Path, nargs="?", help="prepared-dataset directory")
    p.add_argument("--encoder", "-e", default="minilm", help="encoder name (default: minilm)")
    p.add_argument(
        "--out",
        "-o",
        type=Path,
        help="store file (.safetensors or .npy; default DATASET/embeddings/<encoder>.safetensors)",
    )
    p.add_argument("--batch-size", type=int, default=64, help="texts per forward pass (default 64)")
    p.add_argument(
        "--max-tokens",
        type=int,
        help="truncation in tokens (default: the encoder's own: 256 minilm, 512 BLaIR, 8191 OpenAI)",
    )
    p.add_argument("--dimensions", type=int, help="output size of openai: encoders (the paper: 768)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: a GPU when present)")
    p.add_argument(
        "--precision",
        "--dtype",
        choices=["auto", "fp32", "bf16", "fp16"],
        default="auto",
        help="local encoders' arithmetic: auto (fp16 autocast on a GPU, fp32 on a CPU), fp32, bf16 (GPUs and "
        "CPUs with AVX512-BF16/AMX; emulated and slower elsewhere), fp16 (GPUs); vectors are stored as float32 "
        "either way (bench/bench_embed_precision.py measures speed and cosine to fp32)",
    )
    p.add_argument(
        "--empty-text",
        choices=["fallback", "error"],
        default="fallback",
        help="items with empty text: encode title / item id (default) or stop with their count",
    )
    p.add_argument("--list", action="store_true", help="list the encoder names and exit")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(handler=_embed)


def _embed(args: argparse.Namespace) -> int:
    if args.list:
        for name, what in hb.TEXT_ENCODERS.items():
            print(f"{name:<50} {what}")
        return 0
    if args.dataset is None:
        raise HstuBlairError("embed needs a DATASET directory (or --list)")
    data = load_dataset(args.dataset)
    local = not args.encoder.startswith("openai:")
    encoder = hb.build_text_encoder(
        args.encoder,
        max_tokens=args.max_tokens,
        dimensions=args.dimensions,
        device=args.device,
        **({"precision": args.precision} if local else {}),
    )
    path = hb.embed(
        data,
        encoder,
        out=args.out,
        batch_size=args.batch_size,
        progress=not args.no_progress,
        empty_text=args.empty_text,
    )
    manifest = json.loads(path.with_suffix(".json").read_text())
    extra = manifest["extra"]
    print(
        f"{data.name}: {manifest['num_items']:,} items -> ({manifest['num_items'] + 1:,}, {manifest['dim']}) with "
        f"{manifest['encoder']} (pooling {manifest['pooling']}, normalized {manifest['normalized']}, "
        f"max tokens {manifest['max_tokens']})"
    )
    print(f"encoded {extra['encoded']:,} texts, reused {extra['reused']:,} items in {extra['seconds']:.1f}s")
    empty = extra["empty_text"]
    if empty["title"] or empty["item_id"]:
        print(f"empty texts: {empty['title']} encoded by title, {empty['item_id']} by item id")
    print(f"wrote {path}")
    return 0


def add_pretrain_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``hstu-blair pretrain-text``."""
    p = sub.add_parser(
        "pretrain-text",
        help="BLaIR-style contrastive fine-tuning of a text encoder on (review/tag, item text) pairs",
        description=(
            "Fine-tune a text encoder on the review/tag texts of DATASET paired with the item texts "
            "(symmetric InfoNCE, in-batch negatives, cosine / temperature). By default only pairs whose "
            "interaction lies in the training part of the leave-one-out split are used (no test leakage); "
            "the removed pairs are counted. With --pairs sequences (datasets without reviews) the pairs "
            "are (an item's text, the text of the item the same user took next) from the training parts "
            "of the sequences. Reports recall@1 on held-out pairs before and after, and "
            "writes a sentence-transformers folder to --out (use it with --encoder st:OUT) and "
            "OUT/pretrain.json."
        ),
    )
    p.add_argument(
        "dataset", type=Path, help="prepared-dataset directory (with reviews or tags for --pairs reviews)"
    )
    p.add_argument(
        "--pairs",
        choices=("reviews", "sequences"),  # recipes.pretrain_text.PAIR_SOURCES (importing it loads torch)
        default="reviews",
        help="reviews: (review/tag, item text); sequences: (item text, the next item's text) (default reviews)",
    )
    p.add_argument("--out", "-o", type=Path, required=True, help="output model folder")
    p.add_argument(
        "--base", default="minilm", help="encoder to start from: minilm, blair-base, st:..., hf:..."
    )
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32, help="pairs per step = in-batch negatives + 1")
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--temperature", type=float, default=0.05, help="InfoNCE temperature (BLaIR: 0.05)")
    p.add_argument("--max-pairs", type=int, help="use at most this many pairs (seeded random subset)")
    p.add_argument("--max-tokens", type=int, default=128, help="truncation during training (default 128)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--all-pairs",
        dest="train_only",
        action="store_false",
        help="also use pairs of validation/test interactions and non-interactions (leaks the test period)",
    )
    p.add_argument("--device", help="cpu, cuda ... (default: a GPU when present)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(handler=_pretrain)


def _pretrain(args: argparse.Namespace) -> int:
    out = hb.pretrain_text(
        load_dataset(args.dataset),
        args.base,
        args.out,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        temperature=args.temperature,
        max_pairs=args.max_pairs,
        seed=args.seed,
        max_tokens=args.max_tokens,
        train_only=args.train_only,
        device=args.device,
        pairs=args.pairs,
        progress=not args.no_progress,
    )
    record = json.loads((out / "pretrain.json").read_text())
    counts, valid = record["counts"], record["valid"]
    read = "reviews" if record["pairs"] == "reviews" else "transitions"
    removed = {
        k: v for k, v in counts.items() if k not in (read, "pairs", "train_pairs", "valid_pairs") and v
    }
    print(f"pairs: {counts['pairs']:,} of {counts[read]:,} {read} (removed: {removed or 'none'})")
    print(f"trained {record['steps']} steps on {counts['train_pairs']:,} pairs in {record['seconds']:.0f}s")
    print(
        f"held-out recall@1 ({valid['pairs']} pairs, {valid['candidates']} items): "
        f"{valid['recall@1_before']:.4f} -> {valid['recall@1_after']:.4f}"
    )
    print(
        f"wrote {out} (use it with --encoder {record['encoder']} or --set text.encoder={record['encoder']})"
    )
    return 0
