"""The tuner: a study over a config's [tune] space on validation metrics, its outputs, pruning,
resuming after kill -9, and two processes sharing one study (SQLite and PostgreSQL)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from hstu_blair.config import load_config  # noqa: E402
from hstu_blair.errors import ConfigError  # noqa: E402
from hstu_blair.recipes.tune import parse_space, trial_seeded_sampler, tune  # noqa: E402
from hstu_blair.recipes.tune_storage import HeartbeatStorage  # noqa: E402
from tests.conftest import tiny_overrides  # noqa: E402

SPACE = """
[tune]
epochs = 3
startup_trials = 2
warmup_epochs = 1
grace_seconds = {grace}

[tune.space]
"train.lr" = {{low = 1e-3, high = 1e-2, log = true}}
"model.d_model,model.d_qk,model.d_v,model.ffn_dim" = [8, 16]
"""


def _config(tmp_path: Path, grace: int = 90) -> Path:
    path = tmp_path / "tune.toml"
    path.write_text('name = "tiny-tune"\n' + SPACE.format(grace=grace))
    return path


def test_space_is_checked():
    with pytest.raises(ConfigError, match="empty"):
        parse_space({})
    with pytest.raises(ConfigError, match="unknown key"):
        parse_space({"train.not_a_key": [1, 2]})
    with pytest.raises(ConfigError, match="low must be below high"):
        parse_space({"train.lr": {"low": 1e-2, "high": 1e-3}})
    settings = parse_space(
        {"model.d_model,model.d_qk": [8, 16], "train.lr": {"low": 1e-4, "high": 1e-2, "log": True}}
    )
    assert settings[0].keys == ("model.d_model", "model.d_qk") and settings[1].log
    # fusion options are checked against the config's fusion, not the defaults' ("id")
    rank = {"model.fusion_options.text_rank": [0, 64, 128]}
    with pytest.raises(ConfigError, match="text_rank"):
        parse_space(rank)
    assert parse_space(rank, overrides=['model.fusion="sum"'])[0].choices == (0, 64, 128)


def test_tune_writes_best_config_and_report(tiny_dataset, tmp_path):
    config, sets = _config(tmp_path), [*tiny_overrides(tiny_dataset, tmp_path), "train.refit=true"]
    result = tune(config, trials=4, out_dir=tmp_path / "tune", overrides=sets, progress=False)
    assert result.finished >= 4
    # trials are judged on validation and skip the refit; the best config keeps it
    assert not list((tmp_path / "tune" / "trials").glob("*/refit"))
    assert load_config(result.best_config).train.refit
    rows = json.loads((tmp_path / "tune" / "trials.json").read_text())
    complete = [r for r in rows if r["state"] == "complete"]
    assert complete and max(r["value"] for r in complete) == pytest.approx(result.best_value)
    # the value is the best *validation* epoch of the trial's run
    best_run = next(r for r in rows if r["params"] == result.best_params and r["state"] == "complete")
    history = json.loads((Path(best_run["run_dir"]) / "history.json").read_text())
    assert max(h["valid"]["ndcg@10"] for h in history if "valid" in h) == pytest.approx(result.best_value)
    best = load_config(result.best_config)
    assert best.train.lr == pytest.approx(result.best_params["train.lr"])
    d = result.best_params["model.d_model,model.d_qk,model.d_v,model.ffn_dim"]
    assert (best.model.d_model, best.model.d_qk, best.model.d_v, best.model.ffn_dim) == (d, d, d, d)
    assert "[tune]" not in result.best_config.read_text()
    assert (tmp_path / "tune" / "report.md").read_text().count("| ") > 4
    assert (tmp_path / "tune" / "search.png").stat().st_size > 1000
    # asking again for the same number of trials trains nothing more
    again = tune(config, trials=4, out_dir=tmp_path / "tune", overrides=sets, progress=False)
    assert again.finished == result.finished


def _tune_cmd(
    tiny_dataset: Path, config: Path, out: Path, trials: int, storage: str | None = None
) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "hstu_blair.cli",
        "tune",
        str(config),
        "--trials",
        str(trials),
        "--out",
        str(out),
    ]
    for override in tiny_overrides(tiny_dataset, config.parent):
        cmd += ["--set", override]
    return cmd + (["--storage", storage] if storage else []) + ["--no-progress"]


def _states(storage: str, name: str = "tiny-tune") -> list[str]:
    study = optuna.load_study(study_name=name, storage=storage)
    return [t.state.name for t in study.get_trials(deepcopy=False)]


def _running_after_first(storage: str) -> bool:
    """Whether a trial other than the first is running in the study."""
    study = optuna.load_study(study_name="tiny-tune", storage=storage)
    return any(t.number >= 1 and t.state.name == "RUNNING" for t in study.get_trials(deepcopy=False))


@pytest.mark.slow
def test_resumes_after_kill(tiny_dataset, tmp_path):
    grace = 3
    config = _config(tmp_path, grace=grace)
    out = tmp_path / "tune"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    storage = f"sqlite:///{(out / 'study.sqlite3').resolve()}"
    # kill while a trial after the first runs; a tiny trial can finish between our look and the
    # kill, leaving nothing running, so a kill that caught no trial is simply made again
    for _ in range(5):
        proc = subprocess.Popen(_tune_cmd(tiny_dataset, config, out, 100), env=env)
        deadline = time.time() + 120
        while not (out / "trials" / "trial-0").exists() and time.time() < deadline:  # the study exists
            time.sleep(0.05)
        while not _running_after_first(storage) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if "RUNNING" in _states(storage):
            break
    states = _states(storage)
    assert "RUNNING" in states
    wanted = states.count("COMPLETE") + states.count("PRUNED") + 2
    time.sleep(grace + 1)
    subprocess.run(_tune_cmd(tiny_dataset, config, out, wanted), env=env, check=True, timeout=600)
    states = _states(storage)
    assert states.count("COMPLETE") + states.count("PRUNED") >= wanted
    assert "RUNNING" not in states and "FAIL" in states  # the killed trial, failed and retried
    assert (out / "best.toml").exists()


def _shared_study(tiny_dataset, tmp_path, storage: str) -> None:
    config = _config(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(_tune_cmd(tiny_dataset, config, tmp_path / f"tune-{i}", 6, storage), env=env)
        for i in range(2)
    ]
    for p in procs:
        assert p.wait(timeout=900) == 0
    study = optuna.load_study(study_name="tiny-tune", storage=storage)
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert 6 <= len(finished) <= 7  # each process stops once the study holds 6
    assert len({t.user_attrs["process"] for t in finished}) == 2  # both did some of the work
    assert len({t.number for t in trials}) == len(trials)


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
def test_a_trial_killed_before_its_first_heartbeat_is_failed_and_retried(tmp_path):
    """Optuna fails only trials whose heartbeat went silent; one killed before its first beat has
    none. Our storage fails it too once it is older than the grace period, and retries it."""

    def study_on(storage_class):
        storage = storage_class(
            f"sqlite:///{tmp_path / storage_class.__name__}.sqlite3",
            heartbeat_interval=1,
            grace_period=1,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2),
        )
        study = optuna.create_study(storage=storage, study_name="s")
        silent = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})  # asked, never beat
        beating = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        return study, silent, beating

    plain, _, _ = study_on(optuna.storages.RDBStorage)
    ours, silent, beating = study_on(HeartbeatStorage)
    time.sleep(1.5)
    for study in (plain, ours):
        study._storage.record_heartbeat(study.trials[1]._trial_id)  # the live one beats
        optuna.storages.fail_stale_trials(study)
    assert [t.state.name for t in plain.trials] == ["RUNNING", "RUNNING"]  # the gap we close
    states = [t.state.name for t in ours.trials]
    assert states == ["FAIL", "RUNNING", "WAITING"]  # failed, live one kept, settings retried
    assert ours.trials[2].params == {"x": silent.params["x"]}


@pytest.mark.slow
def test_two_processes_share_a_sqlite_study(tiny_dataset, tmp_path):
    _shared_study(tiny_dataset, tmp_path, f"sqlite:///{(tmp_path / 'shared.sqlite3').resolve()}")


@pytest.mark.slow
def test_two_processes_share_a_postgresql_study(tiny_dataset, tmp_path):
    url = os.environ.get("HSTU_BLAIR_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("HSTU_BLAIR_TEST_POSTGRES_URL not set: no PostgreSQL server for the shared-study test")
    storage = url.replace("postgresql://", "postgresql+psycopg://", 1)  # the psycopg 3 driver
    with contextlib.suppress(KeyError):  # a leftover of an interrupted earlier run
        optuna.delete_study(study_name="tiny-tune", storage=storage)
    _shared_study(tiny_dataset, tmp_path, storage)
    optuna.delete_study(study_name="tiny-tune", storage=storage)


def test_workers_sharing_a_study_draw_different_settings():
    # two workers = two samplers with the same seed on one storage: before the fix both drew the
    # same settings for their first trials (the same random state); now each trial number has its own
    storage = optuna.storages.InMemoryStorage()
    studies = [
        optuna.create_study(
            storage=storage, study_name="s", sampler=trial_seeded_sampler(0), load_if_exists=True
        )
        for _ in range(2)
    ]
    drawn = []
    for study in studies:  # interleaved, as two processes would
        trial = study.ask()
        drawn.append((trial.suggest_float("lr", 1e-4, 1e-2, log=True), trial.suggest_int("d", 1, 1000)))
        study.tell(trial, 0.0)
    assert drawn[0] != drawn[1]
    again = optuna.create_study(sampler=trial_seeded_sampler(0))  # same seed, same trial number: same draw
    trial = again.ask()
    assert (trial.suggest_float("lr", 1e-4, 1e-2, log=True), trial.suggest_int("d", 1, 1000)) == drawn[0]
