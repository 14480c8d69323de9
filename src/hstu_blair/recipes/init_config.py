"""``hstu-blair init-config DATA_DIR``: a starting run config from a prepared dataset's shape.

The choices are rules over what the dataset's manifest and sequences say (history lengths,
catalogue size, interactions per item, whether items have text, whether time is real), each
written into the file with the measurement behind it, so a user sees why and can change it. The
rules encode what validation metrics of development seeds chose across the datasets we have
(docs/results.md section 0a); they are a starting point that ``hstu-blair tune`` refines.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hstu_blair._compat import tomllib
from hstu_blair.config import config_from_dict
from hstu_blair.data.dataset import SequenceData

TUNED = "the Sports tune's choice; it also won for text on Scientific validation (docs/results.md 0a)"
"""Where the width, dropout, learning rate, weight decay and negatives come from."""

FULL_SOFTMAX_MAX_ITEMS = 30_000
"""Catalogues up to this size train with a full softmax (``train.negatives = "all"``); larger ones with
128 sampled negatives per user row (a full-softmax step costs in proportion to the catalogue)."""

HISTORY_LENGTHS = (20, 50, 100, 200)
"""``data.max_len`` choices: the smallest that holds the 90th percentile of user histories."""


@dataclass(frozen=True)
class Choice:
    """One config value and the sentence that says why."""

    section: str
    key: str
    value: Any
    why: str


@dataclass(frozen=True)
class DataShape:
    """What the rules read of a prepared dataset."""

    name: str
    users: int
    items: int
    interactions: int
    length_p50: float
    length_p99: float
    per_item_median: float
    text_share: float
    order_only: bool

    @classmethod
    def of(cls, data: SequenceData) -> DataShape:
        lengths = data.lengths
        per_item = np.bincount(data.item_seq, minlength=data.num_items + 1)[1:]
        with_text = sum(bool(t.strip()) for t in data.texts)
        time_note = str(data.manifest.get("info", {}).get("time", ""))
        return cls(
            name=data.name,
            users=data.num_users,
            items=data.num_items,
            interactions=data.num_interactions,
            length_p50=float(np.percentile(lengths, 50)),
            length_p99=float(np.percentile(lengths, 99)),
            per_item_median=float(np.median(per_item)),
            text_share=with_text / max(1, data.num_items),
            order_only=time_note.startswith("order-only"),
        )


def choose(shape: DataShape) -> list[Choice]:
    """The rules: the dataset's shape -> config values, each with its reason."""
    max_len = next((n for n in HISTORY_LENGTHS if n >= shape.length_p99), HISTORY_LENGTHS[-1])
    choices = [
        Choice(
            "data",
            "max_len",
            max_len,
            f"99% of users have at most {shape.length_p99:.0f} interactions (median {shape.length_p50:.0f}): "
            f"the smallest of {list(HISTORY_LENGTHS)} that holds them",
        ),
    ]
    choices += _model_choices(shape)
    choices += _train_choices(shape)
    return choices


def _model_choices(shape: DataShape) -> list[Choice]:
    text = shape.text_share >= 0.5
    d = 128
    out = [
        Choice(
            "model",
            "name",
            "sasrec",
            "SASRec with dot-product scores: on Sports and Scientific it matches the published tuned "
            "SASRec ID-only and, with text, beats it (docs/results.md section 0a)"
            + (" (HSTU's time buckets carry nothing here: time is order-only)" if shape.order_only else ""),
        ),
        Choice(
            "model",
            "similarity",
            "dot",
            "raw dot-product scores, temperature 1: validation as cosine at 0.05, in half the epochs",
        ),
        Choice("model", "d_model", d, f"{d} wide: {TUNED}"),
        Choice("model", "d_qk", d, "= d_model"),
        Choice("model", "d_v", d, "= d_model"),
        Choice("model", "ffn_dim", d, "= d_model"),
        Choice("model", "num_blocks", 2 if shape.length_p50 >= 20 else 1, _blocks_why(shape)),
        Choice("model", "num_heads", 1, "one head"),
        Choice("model", "dropout", 0.5, f"block dropout; {TUNED}"),
        Choice("model", "input_dropout", 0.5, "dropout on the input sum, = dropout"),
    ]
    if text:
        out.append(
            Choice(
                "model",
                "fusion",
                "sum",
                f"{shape.text_share:.0%} of items have text: ID + Linear(text), the paper's fusion",
            )
        )
        out.append(
            Choice(
                "model.fusion_options",
                "text_rank",
                d,
                f"the text's top {d} PCA-whitened directions (= d_model): 64 was 2-3% lower on Sports "
                "and Scientific validation; the raw text (0) was 2-4% higher on Games and Sports but "
                "3% lower on Scientific, lower on ml-latest-small, and costs 1.2-1.3x the step "
                "(docs/results.md 0a); tune it with model.fusion_options.text_rank in [tune.space]",
            )
        )
        out.append(
            Choice(
                "model.fusion_options",
                "text_scale",
                1.0,
                "the reduced text at unit variance per direction, the pace its projection learns at: "
                f"1/sqrt({d}) (the raw text's norm) was 3.0% higher on Games validation but 3.3% lower on "
                "Scientific and level on Sports (docs/results.md 0a); tune it with "
                "model.fusion_options.text_scale in [tune.space]",
            )
        )
        out.append(
            Choice(
                "model.fusion_options",
                "id_dropout",
                0.1,
                "ID part dropped for 10% of items per step: it teaches where a text-only (new) item belongs; "
                "without it, items added with text alone took 12-44% of warm users' top 10 on Sports and "
                "Games and warm NDCG@10 fell 35-37% (docs/results.md 0a)",
            )
        )
    else:
        out.append(Choice("model", "fusion", "id", "items have no text: ID embeddings only"))
    return out


def _blocks_why(shape: DataShape) -> str:
    if shape.length_p50 >= 20:
        return f"median history {shape.length_p50:.0f}: long enough for two blocks"
    return f"median history {shape.length_p50:.0f}: one block (short sequences)"


def _train_choices(shape: DataShape) -> list[Choice]:
    return [
        Choice("train", "epochs", 200, "an upper bound: early stopping ends training"),
        Choice("train", "patience", 20, "20 validations without a better ndcg@10"),
        Choice(
            "train",
            "refit",
            True,
            "after validation picks the epoch count, retrain with the validation items (the tested model)",
        ),
        Choice("train", "batch_size", 128, "users per step"),
        Choice("train", "lr", 7.8e-4, f"AdamW's learning rate; {TUNED}"),
        Choice("train", "weight_decay", 1e-4, f"AdamW's decoupled weight decay; {TUNED}"),
        *_negatives_choices(shape),
    ]


def _negatives_choices(shape: DataShape) -> list[Choice]:
    if shape.items <= FULL_SOFTMAX_MAX_ITEMS:
        return [
            Choice(
                "train",
                "negatives",
                "all",
                f"a full softmax over all {shape.items:,} items: on validation it beat 128 sampled negatives "
                'on every dataset measured (docs/results.md 0a: "A full softmax"); above '
                f"{FULL_SOFTMAX_MAX_ITEMS:,} items init-config writes 128 sampled negatives (a step costs "
                "in proportion to the catalogue)",
            )
        ]
    return [
        Choice("train", "negatives", "per-row", "sampled negatives, drawn per user row"),
        Choice(
            "train",
            "num_negatives",
            128,
            f"sampled softmax over 128 uniform negatives of the {shape.items:,} items (a full softmax, "
            f'negatives = "all", costs a step in proportion to the catalogue); {TUNED}',
        ),
    ]


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def starting_config(data_dir: str | Path, name: str | None = None) -> str:
    """The TOML text of a starting config for the prepared dataset in ``data_dir``.

    Raises:
        DataFormatError: ``data_dir`` is not a prepared dataset.
    """
    data_dir = Path(data_dir)
    shape = DataShape.of(SequenceData.load(data_dir))
    choices = choose(shape)
    name = name or f"{data_dir.name}-start"
    lines = [
        f"# Written by `hstu-blair init-config {data_dir}`: a starting config from the dataset's shape",
        f"# ({shape.users:,} users, {shape.items:,} items, {shape.interactions:,} interactions; median "
        f"{shape.per_item_median:.0f} interactions per item). Each value says why; `hstu-blair tune` refines them.",
        f'name = "{name}"',
        'out_dir = "runs"',
    ]
    section = None
    for c in choices:
        if c.section != section:
            section = c.section
            lines += ["", f"[{section}]"]
            if section == "data":
                lines.append(f'path = "{data_dir}"')
        lines.append(f"{c.key} = {_fmt(c.value)}  # {c.why}")
    text = "\n".join(lines) + "\n"
    _check(text)
    return text


def _check(text: str) -> None:
    config_from_dict(tomllib.loads(text), "init-config")


def init_config(data_dir: str | Path, out: str | Path, name: str | None = None) -> Path:
    """Write :func:`starting_config` to ``out``; returns the path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(starting_config(data_dir, name))
    return out
