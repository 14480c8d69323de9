"""The CLI end to end: each subcommand through ``main([...])``, outputs checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hstu_blair.cli import main
from hstu_blair.config import load_config
from hstu_blair.models.build import build_model
from hstu_blair.models.fusions import FUSIONS
from hstu_blair.recipes.resolve import architecture
from tests.conftest import tiny_overrides

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted(
    p for p in (ROOT / "configs").rglob("*.toml") if not p.name.startswith("_") and p.parent.name != "grids"
)


def test_prepare_and_stats_bundled(tmp_path, capsys):
    assert main(["prepare", "ml-latest-small", "--out", str(tmp_path / "mls")]) == 0
    out = capsys.readouterr().out
    assert "interactions  100,836" in out and "items_without_interactions 18" in out
    assert main(["stats", str(tmp_path / "mls"), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["users"] == 610 and stats["items"] == 9724


def test_bad_input_exits_2_with_a_message(tmp_path, capsys):
    bad = tmp_path / "ratings.csv"
    bad.write_text("user,item,timestamp\nu1,i1,notanumber\n")
    code = main(
        [
            "prepare",
            "generic",
            "--input",
            str(bad),
            "--out",
            str(tmp_path / "o"),
            "--user-col",
            "user",
            "--item-col",
            "item",
            "--rating-col",
            "none",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "ratings.csv" in err and "timestamp" in err


def test_train_evaluate_cold_start(tiny_dataset, tmp_path, capsys):
    sets = [x for o in tiny_overrides(tiny_dataset, tmp_path) for x in ("--set", o)]
    assert main(["train", *sets, "--run-dir", str(tmp_path / "run"), "--no-progress"]) == 0
    assert "test metrics" in capsys.readouterr().out
    assert main(["evaluate", str(tmp_path / "run"), "--split", "valid", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["n_users"] == 64 and 0 <= metrics["hr@10"] <= 1
    assert main(["evaluate", str(tmp_path / "run"), "--by-popularity"]) == 0
    out = capsys.readouterr().out
    assert "by the target's training interactions" in out and "100-499" in out and "500+" in out
    assert main(["cold-start", *sets, "--share", "0.2", "--work-dir", str(tmp_path / "cold")]) == 0
    out = capsys.readouterr().out
    assert (
        "cold-start items as served (8 held out" in out
        and "trained ID rows" in out
        and (tmp_path / "cold" / "run" / "cold_start.json").exists()
    )


def test_unknown_config_key_is_named(tmp_path, capsys):
    assert main(["train", "--set", "train.learning_rate=0.1"]) == 2
    assert "learning_rate" in capsys.readouterr().err


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(ROOT / "configs")) for p in CONFIGS])
def test_every_shipped_config_loads_and_builds(path):
    import torch

    config = load_config(path)
    text = torch.randn(51, 8) if config.model.fusion != "id" else None
    model = build_model(architecture(config, 50, 0 if text is None else 8), text)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_fusions_lists_every_registered_fusion_with_its_options(capsys):
    assert main(["fusions"]) == 0
    out = capsys.readouterr().out
    assert all(f"\n{name}: " in f"\n{out}" for name in FUSIONS)
    assert "    text_rank = 0: " in out and "    id_min_count = 0: " in out  # sum's options
    assert main(["train", "--set", "model.fusion=nope", "--set", "train.epochs=0"]) == 2
    assert "valid fusions: id, sum, text, gated, residual" in capsys.readouterr().err
