"""The temporal refresh study: four arms on the same targets, through the serving API."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hstu_blair.cli import main
from hstu_blair.config import load_config
from hstu_blair.data.dataset import SequenceData
from hstu_blair.recipes.reproduce import plan_grid
from hstu_blair.recipes.temporal_study import ARMS, study_targets, temporal_study
from tests.conftest import tiny_overrides

ROOT = Path(__file__).resolve().parents[2]


def test_targets_are_each_users_first_interaction_after_the_events_cutoff(tiny_dataset):
    data = SequenceData.load(tiny_dataset)
    targets = study_targets(data, 0.8, 0.9)
    assert targets.train_cutoff < targets.events_cutoff
    for user, item in zip(targets.users, targets.items):
        u = data.user_index(user)
        times, items = data.user_times(u), data.user_items(u)
        first = int(np.flatnonzero(times >= targets.events_cutoff)[0])
        assert first > 0 and data.item_ids[items[first]] == item


def test_study_runs_four_arms_and_reports(tiny_dataset, tmp_path, capsys):
    config = load_config(None, tiny_overrides(tiny_dataset, tmp_path, **{"train.epochs": 2}))
    record = temporal_study(config, tmp_path / "study", update_epochs=1, progress=False)
    assert list(record["arms"]) == list(ARMS)
    n = record["targets"]
    assert n > 0 and record["events"] > 0
    for arm in record["arms"].values():
        assert arm["metrics"]["n_users"] == n and arm["seconds"] > 0
    before = SequenceData.load(tmp_path / "study" / "data-before_train_cutoff")
    assert before.time_seq.max() < record["train_cutoff"]
    stored = json.loads((tmp_path / "study" / "study.json").read_text())
    assert stored["arms"]["update"]["metrics"] == record["arms"]["update"]["metrics"]
    assert (tmp_path / "study" / "run-a" / "versions" / "1" / "model.json").exists()
    assert main(["temporal-study", "--report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| retrain |" in out and "update vs retrain" in out


def test_shipped_grid_plans_five_seeds(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # ml-latest-small is bundled, so its entries plan without data here
    runs, _ = plan_grid(ROOT / "configs/grids/temporal-refresh.toml")
    assert runs and all(
        r.temporal == {"train_quantile": 0.8, "events_quantile": 0.9, "update_epochs": 5} for r in runs
    )
    assert sorted({r.seed for r in runs}) == [1, 2, 3, 4, 5]
