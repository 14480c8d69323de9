"""Comparing two sets of runs seed by seed, and one set evaluated two ways."""

from __future__ import annotations

import pytest

from hstu_blair.cli import main
from hstu_blair.config import load_config
from hstu_blair.errors import RunsNotFoundError
from hstu_blair.recipes.compare import compare_runs, comparison_markdown
from hstu_blair.recipes.train import train
from tests.conftest import tiny_overrides


@pytest.fixture(scope="module")
def two_sets(tiny_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    for model in ("hstu", "sasrec"):
        for seed in (1, 2):
            sets = tiny_overrides(
                tiny_dataset, root, **{"model.name": model, "train.seed": seed, "train.epochs": 2}
            )
            train(load_config(None, sets), run_dir=root / model / f"seed-{seed}", progress=False)
    return root


def test_compare_pairs_by_seed(two_sets, capsys):
    rows = compare_runs(two_sets / "hstu", two_sets / "sasrec")
    assert [r.metric for r in rows][:2] == ["hr@10", "hr@50"] and rows[0].seeds == (1, 2)
    assert rows[0].p_value is not None and 0 <= rows[0].p_value <= 1
    same = compare_runs(two_sets / "hstu", two_sets / "hstu")
    assert all(r.difference == 0 and r.p_value == 1.0 for r in same)
    # the same checkpoints evaluated with the reference's truncated-history masking
    window = compare_runs(two_sets / "hstu", two_sets / "hstu", overrides_b=['eval.exclude="window"'])
    assert len(window) == 6
    assert "| HR@10 |" in comparison_markdown(rows, "HSTU", "SASRec")
    assert main(["compare", str(two_sets / "hstu"), str(two_sets / "sasrec")]) == 0
    assert "p (paired, n=2)" in capsys.readouterr().out
    with pytest.raises(RunsNotFoundError):
        compare_runs(two_sets / "hstu", two_sets / "nothing")
