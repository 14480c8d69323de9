"""Fixtures of the text stage: a tiny random RoBERTa folder, MiniLM, tiny prepared datasets."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from hstu_blair.data.dataset import SequenceData, write_dataset
from hstu_blair.data.sources.base import RawDataset

CORPUS = [
    "a red ballpoint pen for the office",
    "wireless mouse with long battery life",
    "great adventure game, fun to play with friends",
    "mechanical keyboard with blue switches",
    "stapler and paper clips, office supplies",
    "electric guitar strings, light gauge",
    "racing game with online multiplayer",
    "noise cancelling headphones",
]


@pytest.fixture(scope="session")
def tiny_roberta(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer RoBERTa (hidden 16) with a byte-level BPE tokenizer trained on CORPUS."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-roberta")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        CORPUS * 3,
        vocab_size=400,
        min_frequency=1,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
    )
    bpe.save_model(str(folder))
    tokenizer = RobertaTokenizerFast(
        vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"), model_max_length=64
    )
    config = RobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=66,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    RobertaModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def minilm():
    """The offline default encoder, loaded once per test session."""
    from hstu_blair.text.registry import build_text_encoder

    return build_text_encoder("minilm", device="cpu")


def write_tiny_dataset(
    out: Path,
    texts: dict[str, str],
    rows: list[tuple[str, str, int]],
    reviews: list[tuple[str, str, str]] | None = None,
    titles: dict[str, str] | None = None,
) -> SequenceData:
    """Prepare a dataset from (user, item, time) rows, item texts and (user, item, text) reviews."""
    interactions = pl.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "timestamp": [r[2] for r in rows],
            "rating": [1.0] * len(rows),
        }
    )
    titles = titles if titles is not None else {k: k for k in texts}
    items = pl.DataFrame(
        {
            "item_id": list(texts),
            "title": [titles.get(k, "") for k in texts],
            "text": list(texts.values()),
        }
    )
    review_table = None
    if reviews is not None:
        review_table = pl.DataFrame(
            {
                "user_id": [r[0] for r in reviews],
                "item_id": [r[1] for r in reviews],
                "text": [r[2] for r in reviews],
            }
        )
    raw = RawDataset(
        name="tiny", source="generic", interactions=interactions, items=items, reviews=review_table
    )
    write_dataset(raw, raw.interactions, {}, {}, out)
    return SequenceData.load(out)
