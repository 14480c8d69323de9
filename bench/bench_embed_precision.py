"""Text encoding in bf16 (and fp16 on a GPU) against fp32: texts/s and how close the vectors stay.

For MiniLM (the offline default) and a RoBERTa-base-sized encoder built in a local directory
(12 layers, hidden 768, 12 heads, a byte-level BPE tokenizer trained on the texts; random weights,
as no hub model can be fetched here: its speed is RoBERTa-base's, its vectors are not BLaIR's),
encodes the same texts with ``precision`` fp32, bf16 (and fp16 on CUDA), interleaved, and prints
texts/s, the ratio to fp32 and the cosine similarity of each vector to its fp32 vector (mean and
minimum; >= 0.999 is what bf16 should keep). Prints the CPU model and flags: bf16 is fast only with
AVX512-BF16 or AMX; elsewhere PyTorch emulates it.

    python bench/bench_embed_precision.py --n 512
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_embed import amazon_texts  # noqa: E402
from bench_train import machine, machine_line  # noqa: E402
from hstu_blair.text.registry import build_text_encoder  # noqa: E402


def roberta_base_dir(texts: list[str], folder: Path) -> Path:
    """A RoBERTa-base-sized model (random weights) and a BPE tokenizer trained on ``texts``."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        texts, vocab_size=8000, min_frequency=2, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    )
    bpe.save_model(str(folder))
    tokenizer = RobertaTokenizerFast(
        vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"), model_max_length=512
    )
    tokenizer.save_pretrained(folder)
    config = RobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        max_position_embeddings=514,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    RobertaModel(config).save_pretrained(folder)
    return folder


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=512, help="texts (Amazon review texts of the shared sample)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    info = machine()
    print(machine_line(info), f"threads {args.threads}", flush=True)
    texts = amazon_texts(args.n, seed=0)
    precisions = ["fp32", "bf16"] + (["fp16"] if args.device.startswith("cuda") else [])
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        encoders = {"minilm": "minilm", "roberta-base-sized": f"hf:{roberta_base_dir(texts, Path(tmp))}"}
        for label, name in encoders.items():
            vectors, seconds = {}, {p: [] for p in precisions}
            built = {p: build_text_encoder(name, device=args.device, precision=p) for p in precisions}
            built["fp32"].encode(texts[:16], args.batch_size)  # warm-up
            for _ in range(args.repeats):
                for p in precisions:
                    t0 = time.perf_counter()
                    vectors[p] = built[p].encode(texts, args.batch_size)
                    seconds[p].append(time.perf_counter() - t0)
            for p in precisions:
                rate = len(texts) / min(seconds[p])
                cos = cosine(vectors[p], vectors["fp32"])
                row = {
                    "encoder": label,
                    "precision": p,
                    "texts_per_s": rate,
                    "vs_fp32": rate / (len(texts) / min(seconds["fp32"])),
                    "cosine_mean": float(cos.mean()),
                    "cosine_min": float(cos.min()),
                }
                results.append(row)
                print(
                    f"  {label:<19} {p:<5} {rate:8.1f} texts/s ({row['vs_fp32']:.2f}x fp32)  "
                    f"cosine to fp32: mean {row['cosine_mean']:.5f}, min {row['cosine_min']:.5f}",
                    flush=True,
                )
    if args.out:
        args.out.write_text(
            json.dumps({"machine": info, "texts": len(texts), "results": results}, indent=2) + "\n"
        )


if __name__ == "__main__":
    main()
