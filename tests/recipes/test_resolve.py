"""Resolving a run config: reference preprocessing on demand, the source time unit, the fusion's
options and the training counts of its ``id_min_count`` rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hstu_blair.config import load_config
from hstu_blair.data.dataset import SequenceData
from hstu_blair.recipes.resolve import architecture, ensure_dataset, split, time_scale, train_item_counts

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "amazon2023"


def _config(tmp_path, reference: bool):
    sets = [
        f'data.path="{tmp_path / "data"}"',
        'data.source="amazon2023"',
        f'data.input=["{FIXTURE / "Tiny_Games.csv"}", "{FIXTURE / "meta_Tiny_Games.jsonl.gz"}"]',
        "data.kcore=2",
    ]
    return load_config(None, sets, reference=reference)


def test_reference_prepares_with_the_reference_preprocessing_and_milliseconds(tmp_path):
    config = _config(tmp_path, reference=True)
    data = ensure_dataset(config)
    assert data.manifest["options"]["kcore_mode"] == "single-pass"
    assert data.manifest["options"]["kcore"] == 2  # an explicit data.kcore still wins
    assert time_scale(config, data) == 1000  # Amazon 2023 files hold milliseconds
    assert architecture(config, data.num_items, 0, time_scale(config, data)).time_scale == 1000


def test_default_prepares_our_way_in_seconds(tmp_path):
    config = _config(tmp_path, reference=False)
    data = ensure_dataset(config)
    assert data.manifest["options"]["kcore_mode"] == "iterative"
    assert time_scale(config, data) == 1


def test_architecture_holds_every_option_of_the_fusion():
    config = load_config(None, ["model.fusion=sum", "model.fusion_options.id_min_count=5"])
    arch = architecture(config, num_items=10, d_text=8)
    assert arch.fusion_options == {
        "id_min_count": 5,
        "id_dropout": 0.0,
        "text_rank": 0,
        "text_whiten": True,
        "text_scale": 1.0,
    }


def test_train_item_counts_count_the_training_prefixes(tiny_dataset):
    data = SequenceData.load(tiny_dataset)
    for protocol in ("loo", "reference"):
        s = split(load_config(None, [f'data.path="{tiny_dataset}"', f"data.protocol={protocol}"]), data)
        counts = train_item_counts(data, s).numpy()
        want = np.zeros(data.num_items + 1, np.int64)
        for u in range(data.num_users):
            if s.train_len[u] >= 2:
                np.add.at(want, data.user_items(u)[: s.train_len[u]], 1)
        assert counts.shape == (data.num_items + 1,) and counts[0] == 0
        np.testing.assert_array_equal(counts, want)
        assert counts.sum() < data.num_interactions  # validation and test targets are not counted
