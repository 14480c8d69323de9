"""``update`` and ``rollback``: a new model version trained on the stored events and items, added
items starting from the vectors serving gave them, versions kept and pruned, the old layout read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hstu_blair.cli import main
from hstu_blair.errors import ConfigError
from hstu_blair.recipes.update import update
from hstu_blair.run.layout import pointer_path
from hstu_blair.run.model_files import load_trained
from hstu_blair.run.versions import current_version, list_versions, rollback, writer_lock
from hstu_blair.serving.recommender import Recommender
from tests.conftest import HashEncoder

LATER = 2_000_000_000
FAST = ["train.threads=1"]


@pytest.fixture
def run(text_run, copy_run) -> Path:
    return copy_run(text_run)


def _served(run: Path) -> Recommender:
    return Recommender.load(run, encoder=HashEncoder())


def test_update_trains_on_events_and_added_items(run):
    rec = _served(run)
    user = rec.run.data.sequences["user_id"][0]
    rec.add_item("new-1", "item number 3 in group 3 and something new")
    rec.add_events([(user, "new-1", LATER), ("newcomer", "i1", LATER), ("newcomer", "new-1", LATER + 1)])
    result = update(run, epochs=2, overrides=FAST, progress=False, force=True)
    assert (result.version, result.base_version) == (1, 0)
    assert (result.added.items, result.added.events, result.added.new_users) == (1, 3, 1)
    info = json.loads((run / "versions" / "1" / "model.json").read_text())
    assert info["item_ids"][-1] == "new-1" and info["architecture"]["num_items"] == rec.num_items
    served = _served(run)
    assert served.version == current_version(run) == 1
    # the added item keeps its index, and is now part of the model, not re-added from the store
    assert served.num_items == rec.num_items and served.run.arch.num_items == rec.num_items
    assert served.item("new-1")["text"] == "item number 3 in group 3 and something new"
    assert [r.item_id for r in served.recommend_user("newcomer", k=3)]
    update_record = json.loads((run / "versions" / "1" / "update.json").read_text())
    assert update_record["added"]["events"] == 3 and update_record["epochs"] == 2


def test_added_items_start_from_their_served_vectors(run):
    """With lr=0 the new version is the served model grown as serving grows it: every item vector
    (the added item's included) equals what was served."""
    rec = _served(run)
    rec.add_item("new-1", "item number 7 in group 2 and more")
    rec.add_events([("u-new", "new-1", LATER)])
    ids = ["new-1", "i1", "i7"]
    before = rec.item_vectors(ids)
    update(run, epochs=1, overrides=[*FAST, "train.lr=0.0"], progress=False)
    after = _served(run).item_vectors(ids)
    torch.testing.assert_close(after, before, atol=1e-6, rtol=0)


def test_keep_prunes_and_rollback_goes_back_one(run):
    for _ in range(3):
        update(run, epochs=1, keep=2, overrides=FAST, progress=False, force=True)
    assert list_versions(run) == [0, 2, 3]  # version 0 (the trained run) is never pruned
    assert rollback(run) == (3, 2) and current_version(run) == 2
    assert _served(run).version == 2
    assert main(["rollback", str(run)]) == 0 and current_version(run) == 0
    assert load_trained(run).version == 0
    with pytest.raises(ConfigError, match="nothing to roll back"):
        rollback(run)


def test_cli_update(run, capsys):
    assert (
        main(
            [
                "update",
                str(run),
                "--epochs",
                "1",
                "--keep",
                "1",
                "--set",
                "train.threads=1",
                "--no-progress",
                "--force",
            ]
        )
        == 0
    )
    assert "version 1 of" in capsys.readouterr().out
    assert main(["update", str(run), "--keep", "0"]) == 2
    assert "--keep must be at least 1" in capsys.readouterr().err


def test_old_layout_is_version_0(id_run, copy_run):
    run = copy_run(id_run)
    assert not pointer_path(run).exists() and list_versions(run) == [0]
    assert Recommender.load(run).version == 0
    result = update(run, epochs=1, overrides=FAST, progress=False, force=True)  # ID-only: events only
    assert result.version == 1 and Recommender.load(run).version == 1


def test_bad_pointer_is_named(run):
    pointer_path(run).parent.mkdir(parents=True, exist_ok=True)
    pointer_path(run).write_text('{"version": 7}')
    with pytest.raises(ConfigError, match="names version 7"):
        load_trained(run)


def test_check_reports_the_served_version(run, capsys):
    rec = _served(run)
    rec.add_item("new-1", "item number 3 in group 3 and something new")
    update(run, epochs=1, overrides=FAST, progress=False, force=True)
    assert main(["check", str(run)]) == 0  # the folded item is not a duplicate of the catalogue
    out = capsys.readouterr().out
    assert "version" in out and "1 (kept: 0, 1)" in out


def test_a_second_update_of_a_run_is_refused_while_one_writes(run):
    """Two updates of one run would both build version n; the second is refused at once, naming
    the holder, and rollback waits for its turn the same way."""
    with (
        writer_lock(run),
        pytest.raises(ConfigError, match=r"another update is writing a new version \(pid \d+"),
    ):
        update(run, epochs=1, overrides=FAST, progress=False)
    assert (
        update(run, epochs=1, overrides=FAST, progress=False, force=True).version == 1
    )  # released afterwards
    with writer_lock(run), pytest.raises(ConfigError, match="another update"):
        rollback(run)
    assert rollback(run) == (1, 0)


def test_a_failed_update_leaves_the_run_as_it_was(run, monkeypatch):
    """An update that fails while training leaves no staged version and no ``versions/`` behind,
    so ``train`` still accepts the directory as an unserved run."""
    import hstu_blair.recipes.update as update_module

    def fail(*args, **kwargs):
        raise RuntimeError("out of memory, say")

    monkeypatch.setattr(update_module, "run_epochs", fail)
    with pytest.raises(RuntimeError, match="out of memory"):
        update(run, epochs=1, overrides=FAST, progress=False, force=True)
    assert not (run / "versions").exists()


def test_update_never_trains_on_a_duplicate(run):
    rec = _served(run)
    user = rec.run.data.sequences["user_id"][0]
    item, when = rec.run.data.item_ids[rec.run.data.user_items(0)[-1]], int(rec.run.data.user_times(0)[-1])
    batch = [(user, item, when), ("newcomer", "i1", LATER), ("newcomer", "i1", LATER)]
    rec.add_events(batch)
    rec.add_events(batch)  # a retry
    result = update(run, epochs=1, overrides=FAST, progress=False)
    assert (result.added.events, result.added.duplicate_events) == (1, 1)  # the training interaction
