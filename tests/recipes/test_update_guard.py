"""``update`` as a cron job runs it: nothing to do without new events or items, a model worse on
validation than the served one refused (the served version unchanged) unless ``--force``, and
staging directories of killed updates deleted (and reported by ``check``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hstu_blair.cli import main
from hstu_blair.errors import ConfigError
from hstu_blair.recipes.update import UpdateRefused, update
from hstu_blair.run.layout import versions_dir
from hstu_blair.run.versions import DEFAULT_TOLERANCE, current_version, list_versions, stale_staging
from hstu_blair.serving.recommender import Recommender

LATER = 2_000_000_000
FAST = ["train.threads=1"]
WORSE = [*FAST, "train.lr=3.0"]
"""A learning rate that wrecks the tiny model in one epoch: the refreshed model is worse."""


@pytest.fixture
def run(id_run, copy_run) -> Path:
    return copy_run(id_run)


def _add_events(run: Path, rows: list[tuple[str, str, int]], store: str | None = None) -> None:
    with Recommender.load(run, store=store) as rec:
        rec.add_events(rows)


def _dead_pid() -> int:
    """The pid of a process that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_nothing_new_is_nothing_to_do(run, store_location, capsys):
    """Without events since the served version, update publishes nothing and says so in one line
    (exit 0); a store that changed (even to as many events as before) is trained on."""
    result = update(run, store=store_location, overrides=FAST, progress=False)
    assert not result.published and "no new events or items since version 0" in result.note
    assert list_versions(run) == [0] and not versions_dir(run).exists()
    _add_events(run, [("newcomer", "i1", LATER), ("newcomer", "i2", LATER + 1)], store_location)
    args = ["update", str(run), "--store", store_location, "--epochs", "1", "--set", "train.threads=1"]
    assert main([*args, "--no-progress", "--tolerance", "1"]) == 0 and current_version(run) == 1
    capsys.readouterr()
    assert main([*args, "--no-progress"]) == 0 and current_version(run) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [f"{run}: no new events or items since version 1: nothing to do"]
    with Recommender.load(run, store=store_location) as rec:  # as many events as before, not the same
        rec.forget_user("newcomer")
        rec.add_events([("other", "i3", LATER), ("other", "i4", LATER + 1)])
    assert (
        update(run, epochs=1, store=store_location, overrides=FAST, progress=False, tolerance=1).version == 2
    )


def test_a_worse_model_is_refused_unless_forced(run, capsys):
    _add_events(run, [("newcomer", "i1", LATER), ("u1", "i5", LATER)])
    args = ["update", str(run), "--epochs", "1", "--no-progress"]
    for value in WORSE:
        args += ["--set", value]
    assert main(args) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("hstu-blair")]
    assert len(err) == 1 and err[0].startswith("hstu-blair update: refused: ")
    assert "stays served" in err[0] and "the same targets" in err[0]
    assert current_version(run) == 0 and list_versions(run) == [0]
    assert not versions_dir(run).exists() or not list(versions_dir(run).glob(".*.tmp"))
    with pytest.raises(UpdateRefused, match="ndcg@10 on the valid split is"):
        update(run, epochs=1, overrides=WORSE, progress=False)
    result = update(run, epochs=1, overrides=WORSE, progress=False, force=True)
    assert result.published and current_version(run) == 1
    assert result.valid_after is not None and result.valid_before is not None
    assert result.valid_after < result.valid_before * (1 - DEFAULT_TOLERANCE)


def test_a_bad_tolerance_is_named(run, capsys):
    with pytest.raises(ConfigError, match="--tolerance must be a fraction >= 0"):
        update(run, tolerance=-0.1, progress=False)
    assert main(["update", str(run), "--tolerance", "nan"]) == 2
    assert "--tolerance" in capsys.readouterr().err


def test_stale_staging_is_reported_and_deleted(run, capsys):
    """A killed update's staging directory (its pid no longer running) is listed by check and
    deleted by the next update; one of a running process is left alone."""
    dead = versions_dir(run) / f".1.{_dead_pid()}.tmp"
    alive = versions_dir(run) / f".2.{os.getppid()}.tmp"
    for path in (dead, alive):
        path.mkdir(parents=True)
        (path / "model.json").write_text("{}")
    assert stale_staging(run) == [dead]
    assert main(["check", str(run)]) == 0
    out = capsys.readouterr().out
    assert f"stale staging      {dead} (left by a killed update" in out and str(alive) not in out
    result = update(run, overrides=FAST, progress=False)
    assert result.cleaned == [dead] and not dead.exists() and alive.exists()
    assert main(["check", str(run)]) == 0 and "stale staging" not in capsys.readouterr().out
    assert main(["update", str(run), "--no-progress"]) == 0
