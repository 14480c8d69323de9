"""The temporal refresh study: four arms on the same targets, through the serving API."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hstu_blair.cli import main
from hstu_blair.config import load_config
from hstu_blair.data.dataset import SequenceData
from hstu_blair.recipes.reproduce import plan_grid
from hstu_blair.recipes.temporal_study import rescore, study_targets, temporal_study
from hstu_blair.reports.temporal import ARMS
from tests.conftest import make_raw, synthetic_rows, tiny_overrides

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def staggered_dataset(tmp_path_factory) -> Path:
    """The tiny synthetic users plus 8 who arrive between the two cutoffs (6 interactions there,
    then 2 after): new users for arm (a), known ones from their events on."""
    from hstu_blair.data.dataset import write_dataset
    from hstu_blair.data.prepare import PrepareOptions, filter_raw

    rows = synthetic_rows()
    times = np.sort([t for *_, t in rows])
    arrive, leave = int(np.quantile(times, 0.89)), int(np.quantile(times, 0.99))
    for u in range(8):
        rows += [(f"late{u}", f"i{(u + k) % 40}", arrive + 60 * k) for k in range(6)]
        rows += [(f"late{u}", f"i{(u + 6 + k) % 40}", leave + 60 * k) for k in range(2)]
    out = tmp_path_factory.mktemp("staggered") / "data"
    raw = make_raw(rows, texts={f"i{i}": f"item number {i} in group {i % 5}" for i in range(40)})
    options = PrepareOptions(kcore=0)
    kept, removed = filter_raw(raw, options)
    write_dataset(raw, kept, removed, options.to_dict(), out)
    return out


def test_targets_are_each_users_first_interaction_after_the_events_cutoff(staggered_dataset):
    data = SequenceData.load(staggered_dataset)
    targets = study_targets(data, 0.8, 0.9)
    assert targets.train_cutoff < targets.events_cutoff
    for user, item in zip(targets.users, targets.items):
        u = data.user_index(user)
        times, items = data.user_times(u), data.user_items(u)
        first = int(np.flatnonzero(times >= targets.events_cutoff)[0])
        assert first > 0 and data.item_ids[items[first]] == item
    new = {targets.users[i] for i in targets.new}
    assert new and all(u.startswith("late") for u in new)
    for user in targets.users:
        assert (user in new) == (data.user_times(data.user_index(user)).min() >= targets.train_cutoff)


def test_study_runs_four_arms_and_reports(staggered_dataset, tmp_path, capsys):
    config = load_config(None, tiny_overrides(staggered_dataset, tmp_path, **{"train.epochs": 2}))
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
    for arm in record["arms"].values():  # each target's rank gives the arm's metrics
        ranks = np.array([np.inf if r is None else r for r in arm["ranks"]])
        assert len(ranks) == n and arm["metrics"]["hr@10"] == pytest.approx(np.mean(ranks <= 10))
    # (a) answers the users new since t1 with the popular items; (b) knows their events
    assert (
        record["arms"]["no_events"]["popular_fallback"] == len(record["targets_new_since_train_cutoff"]) > 0
    )
    assert record["arms"]["live_events"]["popular_fallback"] == 0
    # scoring again from the saved runs gives the same ranks
    again = rescore(config, tmp_path / "study")
    for name, arm in record["arms"].items():
        assert (
            again["arms"][name]["ranks"] == arm["ranks"] and again["arms"][name]["seconds"] == arm["seconds"]
        )
    assert main(["temporal-study", "--report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| retrain |" in out and "update vs retrain" in out and "users new since t1" in out
    assert "| (b)/(a) (p) |" in out and f"| {record['dataset']} | {record['name']} | 1 |" in out


def test_shipped_grid_plans_five_seeds(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # ml-latest-small is bundled, so its entries plan without data here
    runs, _ = plan_grid(ROOT / "configs/grids/temporal-refresh.toml")
    assert runs and all(
        r.temporal == {"train_quantile": 0.8, "events_quantile": 0.9, "update_epochs": 5} for r in runs
    )
    assert sorted({r.seed for r in runs}) == [1, 2, 3, 4, 5]
