"""pretrain_text: pairs and leakage counts, the loss against an explicit softmax, a tiny run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from hstu_blair.data.dataset import SequenceData
from hstu_blair.errors import DataFormatError
from hstu_blair.recipes.pretrain_text import pretrain_text
from hstu_blair.text.pretrain import review_pairs, sequence_pairs, symmetric_info_nce
from hstu_blair.text.registry import build_text_encoder

from .conftest import CORPUS, write_tiny_dataset


@pytest.fixture
def data(tmp_path: Path) -> SequenceData:
    """4 users x 5 items (loo: items 0-2 train, 3 valid, 4 test), reviews of every interaction."""
    texts = {f"i{k}": CORPUS[k] for k in range(8)}
    rows = [(f"u{u}", f"i{(u + j) % 8}", j) for u in range(4) for j in range(5)]
    reviews = [(u, i, f"{u} liked {CORPUS[int(i[1:])].split()[1]}") for u, i, _ in rows]
    reviews += [("u0", "i7", "never interacted"), ("ghost", "i1", "unknown user")]
    return write_tiny_dataset(tmp_path / "data", texts, rows, reviews=reviews)


def test_pairs_count_what_train_only_removes(data: SequenceData) -> None:
    pairs, counts = review_pairs(data, train_only=True)
    assert counts == {
        "reviews": 22,
        "unknown_user": 1,  # "ghost"
        "item_without_text": 0,
        "held_out_interaction": 8,  # the valid and test interactions of 4 users
        "not_an_interaction": 1,  # u0 never had i7
        "pairs": 12,  # 3 training interactions x 4 users
    }
    assert pairs.height == 12 and set(pairs.columns) == {"text", "item_idx", "item_text"}
    all_pairs, all_counts = review_pairs(data, train_only=False)
    assert all_pairs.height == 21 and all_counts["held_out_interaction"] == 0
    for text, item_text in zip(pairs["text"], pairs["item_text"], strict=True):
        assert text.split(" liked ")[1] in item_text


def test_sequence_pairs_are_consecutive_training_items(tmp_path: Path) -> None:
    texts = {f"i{k}": CORPUS[k] for k in range(8)}
    # u0: i0 i1 i1 i2 | i3 i4 (valid, test); u1: i5 i6 | i7 i0; u2: i2 i3 (training part: i2 only)
    seqs = {"u0": [0, 1, 1, 2, 3, 4], "u1": [5, 6, 7, 0], "u2": [2, 3, 4]}
    rows = [(u, f"i{i}", t) for u, seq in seqs.items() for t, i in enumerate(seq)]
    data = write_tiny_dataset(tmp_path / "d", texts, rows)
    pairs, counts = sequence_pairs(data)
    assert counts == {"transitions": 4, "repeat": 1, "item_without_text": 0, "pairs": 3}
    got = {(t.split()[0], it.split()[0]) for t, it in zip(pairs["text"], pairs["item_text"], strict=True)}
    first = {k: CORPUS[k].split()[0] for k in range(8)}
    assert got == {(first[0], first[1]), (first[1], first[2]), (first[5], first[6])}  # never a held-out item
    idx = dict(zip(data.items["item_id"].to_list(), data.items["item_idx"].to_list(), strict=True))
    assert sorted(pairs["item_idx"].to_list()) == sorted([idx["i1"], idx["i2"], idx["i6"]])
    # in sequence order: the seeded shuffle of pretrain-text starts from this order
    assert pairs["item_idx"].to_list() == [idx["i1"], idx["i2"], idx["i6"]]


def test_pretrain_on_sequence_pairs(tmp_path: Path) -> None:
    texts = {f"i{k}": CORPUS[k] for k in range(8)}
    rows = [(f"u{u}", f"i{(u + j) % 8}", j) for u in range(8) for j in range(6)]
    data = write_tiny_dataset(tmp_path / "d", texts, rows)
    out = pretrain_text(
        data, "minilm", tmp_path / "m", batch_size=4, max_tokens=16, pairs="sequences", progress=False
    )
    record = json.loads((out / "pretrain.json").read_text())
    assert record["pairs"] == "sequences" and record["counts"]["transitions"] == 8 * 3
    assert record["counts"]["pairs"] == 24 and record["steps"] == (24 - 2) // 4
    with pytest.raises(ValueError, match="always the training part"):
        pretrain_text(data, "minilm", tmp_path / "m2", pairs="sequences", train_only=False, progress=False)
    with pytest.raises(ValueError, match="pairs must be one of"):
        pretrain_text(data, "minilm", tmp_path / "m3", pairs="clicks", progress=False)


def test_no_reviews_is_a_clear_error(tmp_path: Path) -> None:
    data = write_tiny_dataset(tmp_path / "d", {"a": "x", "b": "y"}, [("u", "a", 1), ("u", "b", 2)])
    with pytest.raises(DataFormatError, match="reviews.parquet: no review/tag texts"):
        review_pairs(data)


def test_info_nce_equals_explicit_softmax_and_masks_duplicates() -> None:
    torch.manual_seed(0)
    r, d = torch.randn(3, 5), torch.randn(3, 5)
    none = torch.zeros(3, 3, dtype=torch.bool)
    cos = torch.nn.functional.cosine_similarity(r[:, None], d[None, :], dim=-1) / 0.1  # (3, 3)
    explicit = 0.0
    for i in range(3):
        explicit += -math.log(math.exp(cos[i, i]) / sum(math.exp(cos[i, j]) for j in range(3))) / 6
        explicit += -math.log(math.exp(cos[i, i]) / sum(math.exp(cos[j, i]) for j in range(3))) / 6
    assert float(symmetric_info_nce(r, d, none, 0.1)) == pytest.approx(explicit, rel=1e-5)
    same = torch.tensor(
        [[True, True, False], [True, True, False], [False, False, True]]
    )  # pairs 0, 1 share an item
    masked = float(symmetric_info_nce(r, d, same, 0.1))
    row0 = -math.log(math.exp(cos[0, 0]) / (math.exp(cos[0, 0]) + math.exp(cos[0, 2])))
    col0 = -math.log(math.exp(cos[0, 0]) / (math.exp(cos[0, 0]) + math.exp(cos[2, 0])))
    row1 = -math.log(math.exp(cos[1, 1]) / (math.exp(cos[1, 1]) + math.exp(cos[1, 2])))
    col1 = -math.log(math.exp(cos[1, 1]) / (math.exp(cos[1, 1]) + math.exp(cos[2, 1])))
    row2 = -math.log(math.exp(cos[2, 2]) / sum(math.exp(cos[2, j]) for j in range(3)))
    col2 = -math.log(math.exp(cos[2, 2]) / sum(math.exp(cos[j, 2]) for j in range(3)))
    assert masked == pytest.approx((row0 + row1 + row2 + col0 + col1 + col2) / 6, rel=1e-5)


def test_pretrain_tiny_roberta_saves_a_loadable_encoder(
    data: SequenceData, tiny_roberta: Path, tmp_path: Path
) -> None:
    base = f"hf:{tiny_roberta}"
    out = pretrain_text(
        data, base, tmp_path / "tuned", epochs=3, batch_size=4, lr=1e-3, max_tokens=16, seed=1, progress=False
    )
    record = json.loads((out / "pretrain.json").read_text())
    assert record["encoder"] == f"st:{out}" and record["train_only"] is True
    assert record["counts"]["held_out_interaction"] == 8 and record["counts"]["pairs"] == 12
    assert record["counts"]["train_pairs"] + record["counts"]["valid_pairs"] == 12
    assert len(record["loss_per_epoch"]) == 3 and all(np.isfinite(record["loss_per_epoch"]))
    assert (
        0.0 <= record["valid"]["recall@1_before"] <= 1.0 and 0.0 <= record["valid"]["recall@1_after"] <= 1.0
    )
    tuned = build_text_encoder(record["encoder"], device="cpu")
    fp = tuned.fingerprint()
    assert (fp["dim"], fp["pooling"], fp["normalized"], fp["max_tokens"]) == (16, "cls", False, 64)
    as_hf = build_text_encoder(f"hf:{out}", device="cpu")  # same CLS vectors through plain transformers
    np.testing.assert_allclose(as_hf.encode(CORPUS[:3]), tuned.encode(CORPUS[:3]), atol=1e-5)
    original = build_text_encoder(base, device="cpu")
    assert not np.allclose(original.encode(CORPUS[:3]), tuned.encode(CORPUS[:3]), atol=1e-4)


def test_pretrain_minilm_one_epoch(data: SequenceData, tmp_path: Path) -> None:
    out = pretrain_text(
        data,
        "minilm",
        tmp_path / "m",
        batch_size=4,
        max_tokens=16,
        max_pairs=10,
        train_only=False,
        progress=False,
    )
    record = json.loads((out / "pretrain.json").read_text())
    assert record["counts"]["pairs"] == 21 and record["counts"]["over_max_pairs"] == 11
    assert record["counts"]["train_pairs"] == 8 and record["steps"] == 2
    fp = build_text_encoder(f"st:{out}", device="cpu").fingerprint()
    assert (fp["dim"], fp["pooling"], fp["normalized"], fp["max_tokens"]) == (384, "mean", True, 256)


def test_pretrain_subcommand(
    data: SequenceData, tiny_roberta: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from hstu_blair.cli.text import add_pretrain_parser

    parser = argparse.ArgumentParser()
    add_pretrain_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "cli"
    args = parser.parse_args(
        [
            "pretrain-text",
            str(data.path),
            "-o",
            str(out),
            "--base",
            f"hf:{tiny_roberta}",
            "--batch-size",
            "4",
            "--no-progress",
        ]
    )
    assert args.handler(args) == 0
    printed = capsys.readouterr().out
    assert "pairs: 12 of 22 reviews" in printed and "held_out_interaction': 8" in printed
    assert f"--encoder st:{out}" in printed and (out / "pretrain.json").exists()
