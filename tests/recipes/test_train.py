"""Training end to end on a tiny dataset: outputs, determinism, resume, protocols, distributed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from hstu_blair.config import load_config
from hstu_blair.errors import ConfigError
from hstu_blair.recipes import loop as train_loop
from hstu_blair.recipes.evaluate import evaluate, evaluate_by_popularity
from hstu_blair.recipes.train import train
from tests.conftest import tiny_overrides


def _train(tiny_dataset, tmp_path, name="run", resume=False, **extra):
    config = load_config(None, tiny_overrides(tiny_dataset, tmp_path, **extra))
    return train(config, run_dir=tmp_path / name, resume=resume, progress=False)


def test_run_directory_contents(tiny_dataset, tmp_path):
    result = _train(tiny_dataset, tmp_path)
    run = result.run_dir
    for name in (
        "config.toml",
        "run.json",
        "model.json",
        "history.json",
        "final_metrics.json",
        "checkpoints/last.safetensors",
        "checkpoints/last.resume.pt",
        "checkpoints/best.safetensors",
    ):
        assert (run / name).exists(), name
    assert any((run / "tb").iterdir())
    info = json.loads((run / "run.json").read_text())
    assert info["dataset"]["data_hash"] and info["versions"]["torch"]
    final = json.loads((run / "final_metrics.json").read_text())
    assert final["split"] == "test" and "best validation" in final["selection"]
    assert set(result.metrics) >= {"hr@10", "ndcg@10", "mrr", "hr@200"}
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1, 2] and "valid" in history[0]
    # re-evaluation of the saved run reproduces the reported test metrics
    again = evaluate(run, "test")
    assert again["ndcg@10"] == pytest.approx(result.metrics["ndcg@10"], abs=1e-9)


def test_learns_the_synthetic_order(tiny_dataset, tmp_path):
    result = _train(
        tiny_dataset,
        tmp_path,
        **{"train.epochs": 30, "train.lr": 5e-3, "model.dropout": 0.0, "model.input_dropout": 0.0},
    )
    # 40 items: a random ranking has hr@10 = 0.25; the cycle structure is learnable
    assert result.metrics["hr@10"] > 0.5


@pytest.mark.parametrize(
    "extra",
    [
        {"model.similarity": "dot"},
        {"model.name": "sasrec", "model.similarity": "dot", "model.learned_norms": True},
    ],
    ids=["hstu-dot", "sasrec-dot-learned-norms"],
)
def test_dot_product_models_learn_and_reload(tiny_dataset, tmp_path, extra):
    result = _train(
        tiny_dataset,
        tmp_path,
        **{"train.epochs": 30, "train.lr": 5e-3, "model.dropout": 0.0, "model.input_dropout": 0.0, **extra},
    )
    assert result.metrics["hr@10"] > 0.5
    assert result.metrics["ndcg@10"] > 2 * result.baselines["most_popular"]["test"]["ndcg@10"]
    model = json.loads((result.run_dir / "model.json").read_text())
    assert model["architecture"]["similarity"] == "dot"
    # the saved run scores as trained: raw dot products, not cosines
    assert evaluate(result.run_dir, "test")["ndcg@10"] == pytest.approx(result.metrics["ndcg@10"], abs=1e-9)


def test_learned_norms_are_sasrec_only(tiny_dataset, tmp_path):
    with pytest.raises(ConfigError, match="learned_norms"):
        _train(tiny_dataset, tmp_path, **{"model.learned_norms": True})


@pytest.mark.parametrize("model", ["hstu", "sasrec"])
def test_same_seed_same_result(tiny_dataset, tmp_path, model):
    a = _train(tiny_dataset, tmp_path, "a", **{"model.name": model})
    b = _train(tiny_dataset, tmp_path, "b", **{"model.name": model})
    assert a.metrics == b.metrics
    c = _train(tiny_dataset, tmp_path, "c", **{"model.name": model, "train.seed": 7})
    assert c.metrics != a.metrics


def test_resume_after_kill_equals_uninterrupted(tiny_dataset, tmp_path, monkeypatch):
    full = _train(tiny_dataset, tmp_path, "full", **{"train.epochs": 4})

    saves = {"n": 0}
    real_save = train_loop.save_resume_state

    def save_then_die(path, state):
        real_save(path, state)
        saves["n"] += 1
        if saves["n"] == 2:
            raise KeyboardInterrupt("simulated kill after epoch 1")

    monkeypatch.setattr(train_loop, "save_resume_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        _train(tiny_dataset, tmp_path, "killed", **{"train.epochs": 4})
    monkeypatch.setattr(train_loop, "save_resume_state", real_save)
    resumed = _train(tiny_dataset, tmp_path, "killed", resume=True, **{"train.epochs": 4})
    assert resumed.metrics == full.metrics
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in full.history]


def test_resume_after_early_stop_and_a_kill_in_the_refit(tiny_dataset, tmp_path, monkeypatch):
    # the main phase stops early, the refit is killed after its first epoch: --resume must not train
    # the stopped phase again, must continue the refit, and must keep the validation-chosen weights
    extra = {"train.epochs": 50, "train.patience": 2, "train.lr": 3e-3, "train.refit": True}
    full = _train(tiny_dataset, tmp_path, "full", **extra)
    assert len(full.history) < 50

    real_save = train_loop.save_resume_state

    def die_in_the_refit(path, state):
        real_save(path, state)
        if "refit" in str(path):
            raise KeyboardInterrupt("simulated kill after the refit's first epoch")

    monkeypatch.setattr(train_loop, "save_resume_state", die_in_the_refit)
    with pytest.raises(KeyboardInterrupt):
        _train(tiny_dataset, tmp_path, "killed", **extra)
    monkeypatch.setattr(train_loop, "save_resume_state", real_save)
    resumed = _train(tiny_dataset, tmp_path, "killed", resume=True, **extra)
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in full.history]
    assert resumed.metrics == full.metrics
    for name in ("selected", "best"):
        a = load_file(full.run_dir / "checkpoints" / f"{name}.safetensors")
        b = load_file(resumed.run_dir / "checkpoints" / f"{name}.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a), name
    # resuming a finished run changes nothing: the selected weights stay the validation-chosen ones
    again = _train(tiny_dataset, tmp_path, "full", resume=True, **extra)
    assert again.metrics == full.metrics
    selected = load_file(full.run_dir / "checkpoints" / "selected.safetensors")
    best = load_file(full.run_dir / "checkpoints" / "best.safetensors")
    assert not all(torch.equal(selected[k], best[k]) for k in selected)


def test_reference_protocol_is_labelled(tiny_dataset, tmp_path):
    config = load_config(None, tiny_overrides(tiny_dataset, tmp_path), reference=True)
    result = train(config, run_dir=tmp_path / "ref", progress=False)
    final = json.loads((result.run_dir / "final_metrics.json").read_text())
    assert final["protocol"] == "reference" and "reference protocol" in final["selection"]
    assert "test" in result.history[0] and "valid" not in result.history[0]
    assert not (result.run_dir / "checkpoints" / "best.safetensors").exists()


def test_early_stopping(tiny_dataset, tmp_path):
    result = _train(tiny_dataset, tmp_path, **{"train.epochs": 50, "train.patience": 2, "train.lr": 1e-6})
    assert len(result.history) < 50


@pytest.mark.slow
def test_torchrun_two_gloo_processes(tiny_dataset, tmp_path):
    args = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # rendezvous on a free port chosen by torchrun (no fixed port to collide on)
        "--nproc_per_node=2",
        "-m",
        "hstu_blair.cli",
        "train",
        "--no-progress",
        "--run-dir",
        str(tmp_path / "ddp"),
    ]
    for item in tiny_overrides(tiny_dataset, tmp_path, **{"train.device": "cpu"}):
        args += ["--set", item]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "terminate called" not in proc.stderr and "SIGABRT" not in proc.stderr
    final = json.loads((tmp_path / "ddp" / "final_metrics.json").read_text())
    assert final["metrics"]["n_users"] == 64  # every user evaluated once across both ranks


def test_per_row_negatives_train(tiny_dataset, tmp_path):
    result = _train(tiny_dataset, tmp_path, **{"train.negatives": "per-row"})
    assert (
        0 <= result.metrics["hr@10"] <= 1
        and result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    )


def test_temporal_protocol_end_to_end(tiny_dataset, tmp_path):
    result = _train(tiny_dataset, tmp_path, **{"data.protocol": "temporal", "data.cutoff": 0.8})
    final = json.loads((result.run_dir / "final_metrics.json").read_text())
    assert final["protocol"] == "temporal" and "best validation" in final["selection"]
    assert final["split_info"]["cutoff"] > final["split_info"]["valid_cutoff"]
    info = json.loads((result.run_dir / "run.json").read_text())["split"]
    assert info["protocol"] == "temporal" and "test_targets_without_history" in info["skipped"]
    assert 0 < result.metrics["n_users"] <= 64
    again = evaluate(result.run_dir, "test")
    assert again["ndcg@10"] == pytest.approx(result.metrics["ndcg@10"], abs=1e-9)
    config = load_config(None, tiny_overrides(tiny_dataset, tmp_path, **{"data.protocol": "temporal"}))
    with pytest.raises(Exception, match="data.cutoff"):
        train(config, run_dir=tmp_path / "no-cutoff", progress=False)


def test_runs_of_one_name_started_in_one_second_get_their_own_folders(tmp_path, monkeypatch):
    import datetime as real_dt

    from hstu_blair.recipes import train as train_recipe

    class FrozenClock(real_dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 12, 7, 3, 0, 0, tzinfo=tz)

    monkeypatch.setattr(train_recipe.dt, "datetime", FrozenClock)
    config = load_config(None, [f"out_dir={str(tmp_path)!r}", 'name="same"'])
    dirs = [train_recipe.default_run_dir(config) for _ in range(3)]
    assert [d.name for d in dirs] == [
        "same-20261207-030000",
        "same-20261207-030000-2",
        "same-20261207-030000-3",
    ]
    assert all(d.is_dir() and not any(d.iterdir()) for d in dirs)


@pytest.mark.parametrize("served", ["versions", "store.sqlite"])
def test_refuses_a_run_directory_a_server_uses(tiny_dataset, tmp_path, served):
    run_dir = tmp_path / "served-run"
    run_dir.mkdir()
    (run_dir / served).mkdir() if served == "versions" else (run_dir / served).write_bytes(b"")
    config = load_config(None, tiny_overrides(tiny_dataset, tmp_path, **{"train.epochs": 1}))
    with pytest.raises(ConfigError, match=f"holds {served} of a served run.*use a new run directory"):
        train(config, run_dir=run_dir, progress=False)
    assert sorted(p.name for p in run_dir.iterdir()) == [served]  # nothing written


def test_refit_trains_on_the_validation_targets_and_is_what_is_tested(tiny_dataset, tmp_path):
    result = _train(tiny_dataset, tmp_path, **{"train.epochs": 4, "train.refit": True})
    run = result.run_dir
    final = json.loads((run / "final_metrics.json").read_text())
    assert f"refit for {result.best_epoch + 1} epochs" in final["selection"]
    refit_history = json.loads((run / "refit" / "history.json").read_text())
    assert len(refit_history) == result.best_epoch + 1
    # the run's history stays the validation curve that chose the epoch count
    assert all("valid" in r for r in json.loads((run / "history.json").read_text()))
    best, selected = (load_file(run / "checkpoints" / f"{n}.safetensors") for n in ("best", "selected"))
    assert any(not torch.equal(best[k], selected[k]) for k in best)
    assert evaluate(run, "test")["ndcg@10"] == pytest.approx(result.metrics["ndcg@10"], abs=1e-9)
    # the validation-chosen weights stay reachable: their validation score is the chosen epoch's
    chosen = json.loads((run / "history.json").read_text())[result.best_epoch]["valid"]
    assert evaluate(run, "valid", "selected")["ndcg@10"] == pytest.approx(chosen["ndcg@10"], abs=1e-9)


def test_metrics_by_popularity_add_up_to_the_run_metrics(tiny_dataset, tmp_path):
    result = _train(tiny_dataset, tmp_path, **{"train.epochs": 1})
    overall = evaluate(result.run_dir, "test")
    rows = evaluate_by_popularity(result.run_dir, "test")
    assert sum(r["n_targets"] for r in rows) == overall["n_users"]
    for key in ("hr@10", "ndcg@10", "mrr"):
        assert sum(r["share"] * r[key] for r in rows if r["n_targets"]) == pytest.approx(
            overall[key], abs=1e-9
        )


def test_selected_weights_exist_only_in_a_refit_run(tiny_dataset, tmp_path):
    result = _train(tiny_dataset, tmp_path, **{"train.epochs": 1})
    with pytest.raises(ConfigError, match="only a run with train.refit"):
        evaluate(result.run_dir, "test", "selected")


def test_refit_needs_the_loo_protocol(tiny_dataset, tmp_path):
    with pytest.raises(ConfigError, match="refit"):
        _train(tiny_dataset, tmp_path, **{"train.refit": True, "data.protocol": "reference"})
