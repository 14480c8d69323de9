"""Resolving a run config: reference preprocessing on demand and the source time unit."""

from __future__ import annotations

from pathlib import Path

from hstu_blair.config import load_config
from hstu_blair.recipes.resolve import architecture, ensure_dataset, time_scale

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
