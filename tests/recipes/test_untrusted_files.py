"""Run directories someone sent you: no load path unpickles anything, and 0.1 runs convert safely."""

from __future__ import annotations

import os
import shutil

import pytest
import torch

from hstu_blair.cli import main
from hstu_blair.config import load_config
from hstu_blair.errors import ConfigError, DataFormatError
from hstu_blair.recipes.convert import convert_run
from hstu_blair.recipes.evaluate import evaluate
from hstu_blair.recipes.train import train
from hstu_blair.run.layout import resume_path, weights_path
from hstu_blair.run.model_files import load_trained
from hstu_blair.serving.recommender import Recommender


class Payload:
    """Unpickling this runs ``touch <marker>``: proof that code executed."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _pickle(path, marker) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": Payload(marker), "optimizer": Payload(marker), "epoch": 3}, path)


def test_the_payload_really_runs_code_when_unpickled(tmp_path):
    marker = tmp_path / "ran"
    _pickle(tmp_path / "x.pt", marker)
    torch.load(tmp_path / "x.pt", weights_only=False)  # what every load path must never do
    assert marker.exists()


def test_old_run_with_malicious_pickles_is_refused_by_every_load_path(id_run, tmp_path, capsys):
    run = tmp_path / "old-run"
    shutil.copytree(id_run, run)
    for name in ("model.json",):
        (run / name).unlink()
    for f in (run / "checkpoints").iterdir():
        f.unlink()
    marker = tmp_path / "ran"
    _pickle(run / "checkpoints" / "best.pt", marker)
    _pickle(run / "checkpoints" / "last.pt", marker)

    with pytest.raises(ConfigError, match="convert-run"):
        Recommender.load(run)
    with pytest.raises(ConfigError, match="convert-run"):
        load_trained(run, "last")
    with pytest.raises(ConfigError, match="convert-run"):
        evaluate(run, "test")
    with pytest.raises(ConfigError, match="not converted"):
        convert_run(run)
    assert main(["evaluate", str(run)]) == 2 and "convert-run" in capsys.readouterr().err
    assert main(["recommend", str(run), "--history", "i1"]) == 2
    assert not marker.exists()


def test_malicious_resume_state_and_weights_are_refused(id_run, tiny_dataset, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(id_run, run)
    marker = tmp_path / "ran"
    _pickle(resume_path(run), marker)
    config = load_config(run / "config.toml")
    with pytest.raises(DataFormatError, match="refused"):
        train(config, run_dir=run, resume=True, progress=False)
    _pickle(weights_path(run, "best"), marker)  # a pickle where safetensors weights belong
    with pytest.raises(Exception, match="(?i)header|safetensor|deserializ"):
        load_trained(run, "best")
    assert not marker.exists()


def test_convert_a_genuine_old_run(id_run, tmp_path):
    """A 0.1 run directory (pickled dicts of tensors and plain values, ``encoder.`` keys) converts to
    model files that give the same recommendations."""
    run = tmp_path / "old"
    shutil.copytree(id_run, run)
    trained = load_trained(id_run, "best")
    legacy = {k.replace("backbone.", "encoder.", 1): v for k, v in trained.model.state_dict().items()}
    optimizer = torch.optim.AdamW(trained.model.parameters())
    state = {
        "model": legacy,
        "optimizer": optimizer.state_dict(),
        "epoch": 7,
        "step": 32,
        "neg_generator": torch.Generator().manual_seed(1).get_state(),
        "rng": {"torch": torch.get_rng_state()},
        "best": 0.25,
        "best_epoch": 7,
        "stale": 0,
        "history": [{"epoch": 0, "train_loss": 3.5}],
    }
    (run / "model.json").unlink()
    for f in (run / "checkpoints").iterdir():
        f.unlink()
    torch.save(state, run / "checkpoints" / "last.pt")
    torch.save({"model": legacy, "epoch": 7, "metrics": {"ndcg@10": 0.25}}, run / "checkpoints" / "best.pt")
    written = convert_run(run)
    assert weights_path(run, "best") in written and (run / "model.json").exists()
    before = Recommender.load(id_run).recommend(["i1", "i2", "i3"], k=5)
    after = Recommender.load(run).recommend(["i1", "i2", "i3"], k=5)
    assert [r.item_id for r in after] == [r.item_id for r in before]
    with pytest.raises(ConfigError, match="nothing to convert"):
        convert_run(run)
