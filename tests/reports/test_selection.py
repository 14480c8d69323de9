"""The default is chosen on validation metrics and cold-start runs only, with leave-one-dataset-out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hstu_blair.cli import main
from hstu_blair.errors import DataFormatError
from hstu_blair.reports.selection import best_validation, select_default


def _warm_run(root: Path, dataset: str, label: str, seed: int, valid: float, test: float) -> None:
    run = root / dataset / label / f"seed-{seed}"
    run.mkdir(parents=True)
    (run / "config.toml").write_text(
        f'name = "{label}"\n[data]\npath = "data/{dataset}"\n[train]\nseed = {seed}\n'
    )
    (run / "final_metrics.json").write_text(
        json.dumps({"split": "test", "best_epoch": 1, "metrics": {"ndcg@10": test, "hr@10": test}})
    )
    history = [
        {"epoch": 0, "valid": {"ndcg@10": valid / 2}},
        {"epoch": 1, "valid": {"ndcg@10": valid}},
        {"epoch": 2, "valid": {"ndcg@10": valid * 1.5}},  # after the kept epoch: never read
    ]
    (run / "history.json").write_text(json.dumps(history))


def _cold_run(root: Path, dataset: str, label: str, seed: int, hr50: float) -> None:
    run = root / dataset / label / f"seed-{seed}" / "run"
    run.mkdir(parents=True)
    payload = {"dataset": dataset, "label": label, "seed": seed, "fusion": "x", "cold": {"hr@50": hr50}}
    (run / "cold_start.json").write_text(json.dumps(payload))


@pytest.fixture
def runs(tmp_path):
    warm, cold = tmp_path / "warm", tmp_path / "cold"
    # validation says: A beats sum on every dataset, B is best on d1/d2 but poor on d3.
    # The test split says the opposite everywhere, and must not matter.
    valid = {
        "d1": {"sum": 0.10, "A": 0.105, "B": 0.12, "text": 0.08},
        "d2": {"sum": 0.20, "A": 0.21, "B": 0.24, "text": 0.15},
        "d3": {"sum": 0.30, "A": 0.30, "B": 0.25, "text": 0.20},
    }
    cold_hr = {"sum": 0.05, "A": 0.19, "B": 0.2, "text": 0.2}
    for dataset, models in valid.items():
        for label, v in models.items():
            for seed in (1, 2):
                _warm_run(warm, dataset, label, seed, v + 0.001 * seed, test=1.0 - v)
                _cold_run(cold, dataset, label, seed, cold_hr[label])
    return warm, cold


def test_best_validation_reads_the_kept_epoch():
    history = [
        {"epoch": 0, "valid": {"m": 0.1}},
        {"epoch": 1, "valid": {"m": 0.3}},
        {"epoch": 2, "valid": {"m": 0.2}},
    ]
    assert best_validation(history, 2, "m") == 0.2
    assert best_validation(history, None, "m") == 0.3
    assert best_validation([{"epoch": 0, "train_loss": 1.0}], 0, "m") is None


def test_choice_reads_validation_not_test(runs):
    warm, cold = runs
    sel = select_default([warm], [cold], ["A", "B", "text"], baseline="sum", cold_reference="text")
    # B has the best geometric mean on d1, d2 but fails the warm floor on d3; A qualifies everywhere.
    assert not sel.scores["d3"]["B"].qualifies
    assert sel.scores["d1"]["A"].warm_ratio == pytest.approx((0.105 + 0.0015) / (0.10 + 0.0015))
    assert sel.choice == "A"
    # without d3, B qualifies on the rest and wins; checked on d3 it does not hold
    assert sel.leave_one_out["d3"]["choice_without_it"] == "B"
    assert sel.leave_one_out["d3"]["qualifies"] is False
    assert sel.leave_one_out["d1"]["choice_without_it"] == "A"


def test_falls_back_to_the_baseline_when_no_candidate_qualifies(runs, tmp_path):
    warm, cold = runs
    sel = select_default([warm], [cold], ["A", "B"], baseline="sum", cold_reference="text", cold_floor=0.99)
    assert sel.choice == "sum"  # A's cold ratio 0.95 is below 0.99, B fails d3


def test_speed_bar_reads_a_bench_file(runs, tmp_path):
    warm, cold = runs
    bench = tmp_path / "bench.json"
    results = [
        {"model": "HSTU", "path": "fast", "seconds_per_step": 0.10},
        {"model": "A", "path": "fast", "seconds_per_step": 0.20},  # 2x an ID step: too slow
        {"model": "B", "path": "fast", "seconds_per_step": 0.12},
        {"model": "A", "path": "reference-faithful", "seconds_per_step": 0.05},  # other path: ignored
    ]
    bench.write_text(json.dumps({"results": results}))
    sel = select_default([warm], [cold], ["A", "B"], speed=bench, baseline="sum", cold_reference="text")
    assert sel.scores["d1"]["A"].step_ratio == pytest.approx(2.0)
    assert not sel.scores["d1"]["A"].qualifies and sel.scores["d1"]["B"].qualifies
    assert sel.choice == "sum"  # A is too slow, B fails d3
    relaxed = select_default(
        [warm], [cold], ["A", "B"], speed=bench, baseline="sum", cold_reference="text", max_step_ratio=2.5
    )
    assert relaxed.choice == "A"
    bench.write_text("{}")
    with pytest.raises(DataFormatError, match="bench.json.*not a bench_train.py --out file"):
        select_default([warm], [cold], ["A"], speed=bench)


def test_cli_writes_the_selection(runs, tmp_path, capsys):
    warm, cold = runs
    out = tmp_path / "sel"
    code = main(
        ["select", str(warm), "--cold", str(cold), "--candidates", "A,B", "--baseline", "sum",
         "--cold-reference", "text", "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    payload = json.loads((out / "selection.json").read_text())
    assert payload["choice"] == "A"
    assert "Choice over all datasets: A" in (out / "selection.md").read_text()
    out = capsys.readouterr().out
    assert "| d3 | B |" in out and "| step ratio | qualifies |" in out
