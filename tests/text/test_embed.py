"""embed_dataset / embed_texts: store layout, cache reuse, empty texts, resume, encoder rebuild."""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch

from hstu_blair.data.dataset import SequenceData
from hstu_blair.errors import DataFormatError
from hstu_blair.text.embed import embed_dataset, embed_texts, item_texts
from hstu_blair.text.encoders import EncoderError, TextEncoder
from hstu_blair.text.registry import encoder_for_store
from hstu_blair.text.store import load_embeddings, store_path, text_hash

from .conftest import CORPUS, write_tiny_dataset


class CountingEncoder:
    """Deterministic fake encoder: a vector from the text's crc32; remembers what it encoded."""

    name = "fake"
    dim = 4

    def __init__(self, fail_after: int | None = None) -> None:
        self.encoded: list[str] = []
        self.fail_after = fail_after

    def fingerprint(self) -> dict[str, Any]:
        return {
            "encoder": self.name,
            "revision": "1",
            "pooling": "none",
            "normalized": False,
            "max_tokens": 8,
            "dim": 4,
        }

    def encode(self, texts: list[str], batch_size: int = 64, progress: Any = None) -> np.ndarray:
        if self.fail_after is not None and len(self.encoded) + len(texts) > self.fail_after:
            raise EncoderError("simulated failure")
        self.encoded += texts
        if progress is not None:
            progress(len(texts))
        return np.stack([vector(t) for t in texts])


def vector(text: str) -> np.ndarray:
    return np.random.default_rng(zlib.crc32(text.encode())).standard_normal(4).astype(np.float32)


@pytest.fixture
def data(tmp_path: Path) -> SequenceData:
    texts = {f"i{k}": CORPUS[k] for k in range(6)}
    rows = [(f"u{u}", f"i{(u + j) % 6}", j) for u in range(4) for j in range(4)]
    return write_tiny_dataset(tmp_path / "data", texts, rows)


def _set_texts(data: SequenceData, texts: list[str], titles: list[str] | None = None) -> SequenceData:
    items = data.items.with_columns(pl.Series("text", texts))
    if titles is not None:
        items = items.with_columns(pl.Series("title", titles))
    items.write_parquet(data.path / "items.parquet")
    return SequenceData.load(data.path)


def test_store_layout_and_manifest(data: SequenceData) -> None:
    enc = CountingEncoder()
    path = embed_dataset(data, enc, progress=False)
    assert path == store_path(data.path, "fake")
    matrix, manifest = load_embeddings(path, num_items=data.num_items)
    assert matrix.shape == (data.num_items + 1, 4) and matrix.dtype == torch.float32
    assert torch.all(matrix[0] == 0)
    for item_id, text in enumerate(data.texts, start=1):
        np.testing.assert_array_equal(matrix[item_id].numpy(), vector(text))
    assert manifest.encoder == "fake" and manifest.dataset_hash == data.data_hash
    assert manifest.text_hashes == [text_hash(t) for t in data.texts]
    assert manifest.extra["fingerprint"] == enc.fingerprint()
    assert (manifest.extra["encoded"], manifest.extra["reused"]) == (6, 0)


def test_rerun_reuses_and_only_changed_texts_are_encoded(data: SequenceData) -> None:
    out = data.path / "emb.npy"
    embed_dataset(data, CountingEncoder(), out=out, progress=False)
    again = CountingEncoder()
    embed_dataset(data, again, out=out, progress=False)
    assert again.encoded == []
    texts = data.texts
    texts[2] = "a brand new description"
    data = _set_texts(data, texts)
    third = CountingEncoder()
    embed_dataset(data, third, out=out, progress=False)
    assert third.encoded == ["a brand new description"]
    matrix, manifest = load_embeddings(out, num_items=data.num_items)
    np.testing.assert_array_equal(matrix[3].numpy(), vector("a brand new description"))
    assert (manifest.extra["encoded"], manifest.extra["reused"]) == (1, 5)


def test_another_encoder_setup_encodes_everything(data: SequenceData) -> None:
    out = data.path / "emb.safetensors"
    embed_dataset(data, CountingEncoder(), out=out, progress=False)
    other = CountingEncoder()
    other.fingerprint = lambda: {**CountingEncoder().fingerprint(), "revision": "2"}  # type: ignore[method-assign]
    embed_dataset(data, other, out=out, progress=False)
    assert len(other.encoded) == 6


def test_identical_texts_are_encoded_once(data: SequenceData) -> None:
    data = _set_texts(data, ["same text"] * 3 + data.texts[3:])
    enc = CountingEncoder()
    embed_dataset(data, enc, progress=False)
    assert enc.encoded.count("same text") == 1 and len(enc.encoded) == 4


def test_empty_text_uses_title_then_item_id_never_zero(data: SequenceData) -> None:
    titles = data.items["title"].to_list()
    data = _set_texts(data, ["", "  ", *data.texts[2:]], ["A Title", "", *titles[2:]])
    texts, counts = item_texts(data)
    assert texts[:2] == ["A Title", f"item {data.items['item_id'][1]}"] and counts == {
        "title": 1,
        "item_id": 1,
    }
    path = embed_dataset(data, CountingEncoder(), progress=False)
    matrix, manifest = load_embeddings(path)
    assert torch.all(matrix[1:].abs().sum(1) > 0)
    assert manifest.extra["empty_text"] == {"mode": "fallback", "title": 1, "item_id": 1}
    with pytest.raises(
        DataFormatError,
        match=r"items.parquet \(field 'text'\): 2 of 6 items have empty text \(item ids \[1, 2\]",
    ):
        embed_dataset(data, CountingEncoder(), progress=False, empty_text="error")


def test_failed_run_resumes_from_saved_chunks(data: SequenceData) -> None:
    out = data.path / "emb.safetensors"
    with pytest.raises(EncoderError, match="simulated"):
        embed_dataset(data, CountingEncoder(fail_after=4), out=out, progress=False, checkpoint_every=2)
    assert not out.exists()
    resumed = CountingEncoder()
    embed_dataset(data, resumed, out=out, progress=False, checkpoint_every=2)
    assert len(resumed.encoded) == 2  # 4 of 6 were saved in chunks of 2
    matrix, _ = load_embeddings(out)
    for item_id, text in enumerate(data.texts, start=1):
        np.testing.assert_array_equal(matrix[item_id].numpy(), vector(text))
    assert not list(data.path.glob("embeddings/.*partial*")) and not list(data.path.glob(".*partial*"))


def test_minilm_store_rows_equal_direct_encoding(data: SequenceData, minilm: TextEncoder) -> None:
    path = embed_dataset(data, minilm, batch_size=4, progress=False)
    assert path.name == "minilm.safetensors"
    matrix, manifest = load_embeddings(path, num_items=data.num_items)
    assert (manifest.pooling, manifest.normalized, manifest.max_tokens, manifest.dim) == (
        "mean",
        True,
        256,
        384,
    )
    np.testing.assert_allclose(matrix[1:].numpy(), minilm.encode(data.texts, batch_size=1), atol=1e-5)
    new = embed_texts(["a brand new pen", CORPUS[0]], minilm)
    np.testing.assert_allclose(new[1], matrix[1].numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="1 empty texts"):
        embed_texts(["ok", " "], minilm)


def test_encoder_for_store_rebuilds_and_detects_changed_weights(
    data: SequenceData, tiny_roberta: Path, tmp_path: Path
) -> None:
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny_roberta, folder)
    name = f"hf:{folder}?pooling=mean"
    path = embed_dataset(data, name, out=tmp_path / "e.safetensors", progress=False)
    manifest = json.loads(path.with_suffix(".json").read_text())
    assert manifest["pooling"] == "mean" and manifest["revision"].startswith("sha256:")
    enc = encoder_for_store(path, device="cpu")
    np.testing.assert_allclose(enc.encode([data.texts[0]]), load_embeddings(path)[0][1:2].numpy(), atol=1e-5)
    from transformers import AutoModel

    model = AutoModel.from_pretrained(folder)
    with torch.no_grad():
        model.embeddings.word_embeddings.weight.add_(1.0)
    model.save_pretrained(folder)
    with pytest.raises(EncoderError, match="revision"):
        encoder_for_store(path)


def test_embed_subcommand(data: SequenceData, tiny_roberta: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from hstu_blair.cli.text import add_embed_parser

    parser = argparse.ArgumentParser()
    add_embed_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["embed", "--list"])
    assert args.handler(args) == 0 and "blair-base" in capsys.readouterr().out
    out = data.path / "tiny.npy"
    args = parser.parse_args(
        ["embed", str(data.path), "-e", f"hf:{tiny_roberta}", "-o", str(out), "--no-progress"]
    )
    assert args.handler(args) == 0
    printed = capsys.readouterr().out
    assert "encoded 6 texts, reused 0 items" in printed and f"wrote {out}" in printed
    assert load_embeddings(out, num_items=6)[0].shape == (7, 16)
