"""Grids run resumably; reports compute the right statistics and write tables and plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hstu_blair.cli import main
from hstu_blair.errors import ConfigError
from hstu_blair.recipes.reproduce import plan_grid, reproduce
from hstu_blair.reports.runs import collect
from hstu_blair.reports.stats import mean_std, relative_gain
from hstu_blair.reports.summary import cold_summary_markdown
from hstu_blair.reports.tables import build_table, load_paper_results
from tests.conftest import tiny_overrides

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def grid_runs(tiny_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("grid")
    overrides = [
        o for o in tiny_overrides(tiny_dataset, root, **{"train.epochs": 2}) if not o.startswith("out_dir")
    ]
    sets = "\n".join(f"  {json.dumps(o)}," for o in overrides)
    grid = root / "grid.toml"
    grid.write_text(
        f'out_dir = "{root / "runs"}"\nseeds = [1, 2]\noverrides = [\n{sets}\n]\n'
        '[[run]]\nlabel = "SASRec"\nconfig = "sasrec.toml"\n'
        '[[run]]\nlabel = "HSTU"\nconfig = "hstu.toml"\n'
    )
    (root / "sasrec.toml").write_text('[model]\nname = "sasrec"\n')
    (root / "hstu.toml").write_text('[model]\nname = "hstu"\n')
    first = reproduce(grid, progress=False)
    return grid, root / "runs", first


def test_grid_runs_every_seed_and_skips_finished(grid_runs):
    grid, runs, first = grid_runs
    assert len(first.finished) == 4 and not first.already_done
    again = reproduce(grid, progress=False)
    assert not again.finished and len(again.already_done) == 4


def test_grid_resumes_a_killed_run(grid_runs):
    grid, runs, _ = grid_runs
    planned, _ = plan_grid(grid)
    victim = planned[0].run_dir
    before = json.loads((victim / "final_metrics.json").read_text())
    (victim / "final_metrics.json").unlink()  # as if killed after its last checkpoint
    result = reproduce(grid, progress=False)
    assert result.finished == [victim]
    assert json.loads((victim / "final_metrics.json").read_text())["metrics"] == before["metrics"]


def test_grid_runs_only_the_labels_asked_for(grid_runs):
    grid, _, _ = grid_runs
    planned, _ = plan_grid(grid)
    victims = {run.label: run.run_dir for run in planned if run.seed == 2}
    for run_dir in victims.values():
        (run_dir / "final_metrics.json").unlink()
    assert reproduce(grid, progress=False, labels=["HSTU"]).finished == [victims["HSTU"]]
    with pytest.raises(ConfigError, match=r"no \[\[run\]\] labelled 'SASrec'.*\['SASRec', 'HSTU'\]"):
        reproduce(grid, progress=False, labels=["SASrec"])
    assert reproduce(grid, progress=False).finished == [victims["SASRec"]]


def test_table_statistics(grid_runs):
    _, runs, _ = grid_runs
    grouped = collect([runs])
    ((dataset, models),) = grouped.items()
    assert set(models) == {"most popular", "SASRec", "HSTU"} and all(len(v) == 2 for v in models.values())
    # the popularity row is what each seed's runs recorded beside their own metrics
    for popular in models["most popular"]:
        final = json.loads((popular.path / "final_metrics.json").read_text())
        assert popular.metrics["ndcg@10"] == final["baselines"]["most_popular"]["test"]["ndcg@10"]
    models = {m: rs for m, rs in models.items() if m != "most popular"}
    table = build_table(models)
    hstu = [r.metrics["ndcg@10"] for r in models["HSTU"]]
    sas = [r.metrics["ndcg@10"] for r in models["SASRec"]]
    cell = table["HSTU"]["ndcg@10"]
    assert cell.mean == pytest.approx(mean_std(hstu)[0]) and cell.std == pytest.approx(mean_std(hstu)[1])
    assert cell.gains["SASRec"] == pytest.approx(relative_gain(mean_std(hstu)[0], mean_std(sas)[0]))
    assert "SASRec" in cell.p_values
    assert sum(table[m]["ndcg@10"].best for m in table) == 1


def test_report_cli_writes_tables_and_plots(grid_runs, tmp_path):
    _, runs, _ = grid_runs
    assert main(["report", str(runs), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| HSTU (n=2) |" in md and "vs SASRec" in md and "**" in md
    payload = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert payload["columns"][0] == "hr@10"
    pngs = sorted(p.name for p in (tmp_path / "rep").glob("*.png"))
    assert len(pngs) == 2 and all((tmp_path / "rep" / p).stat().st_size > 5000 for p in pngs)


def test_report_without_runs_is_an_error(tmp_path, capsys):
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "rep")]) == 2
    assert "no finished runs" in capsys.readouterr().err


def test_paper_results_shipped():
    paper = load_paper_results()
    assert paper["amzn23_game"]["HSTU-BLaIR"]["hr@10"] == 0.1353
    assert paper["ml-1m"]["HSTU-large"]["ndcg@200"] == 0.2771


def test_shipped_grids_plan(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data here: paper grids must report missing data, not fail
    runs, missing = plan_grid(ROOT / "configs/grids/hstu-blair-paper.toml")
    assert not runs and len(missing) == 16
    runs, missing = plan_grid(ROOT / "configs/grids/ml-latest-small.toml")
    assert len(runs) == 30 and not missing  # 6 models x 5 seeds; bundled data is always present


@pytest.mark.parametrize(
    "grid",
    sorted(g.name for g in (ROOT / "configs/grids").glob("*.toml") if not g.name.startswith("tmp-")),
)
def test_every_shipped_grid_plans(grid, tmp_path, monkeypatch):
    """Each grid parses and every entry's config loads: a run is planned or its data reported missing."""
    monkeypatch.chdir(tmp_path)
    runs, missing = plan_grid(ROOT / "configs/grids" / grid)
    assert runs or missing


def test_cold_start_grid(tiny_dataset, tmp_path):
    overrides = [
        o
        for o in tiny_overrides(tiny_dataset, tmp_path, **{"train.epochs": 2, "model.fusion": "id"})
        if not o.startswith("out_dir")
    ]
    sets = "\n".join(f"  {json.dumps(o)}," for o in overrides)
    grid = tmp_path / "cold.toml"
    grid.write_text(
        f'out_dir = "{tmp_path / "runs"}"\ncold_start_share = 0.2\nseeds = [1]\noverrides = [\n{sets}\n]\n'
        '[[run]]\nlabel = "HSTU-ID"\nconfig = "hstu.toml"\n'
    )
    (tmp_path / "hstu.toml").write_text('[model]\nname = "hstu"\n')
    first = reproduce(grid, progress=False)
    (run,) = first.finished
    payload = json.loads((run / "run" / "cold_start.json").read_text())
    assert payload["seed"] == 1 and payload["cold_items"] == 8 and payload["label"] == "HSTU-ID"
    assert len(reproduce(grid, progress=False).already_done) == 1
    with pytest.raises(Exception, match="cold_start_share"):
        bad = tmp_path / "bad.toml"
        bad.write_text(grid.read_text().replace("cold_start_share = 0.2", "cold_start_share = 2"))
        plan_grid(bad)


def test_extra_baselines_are_compared():
    from hstu_blair.reports.runs import RunRecord

    def runs(label, values):
        return [RunRecord(Path("x"), "d", label, s, {"hr@10": v}) for s, v in enumerate(values)]

    models = {"A": runs("A", [0.10, 0.12, 0.11]), "B": runs("B", [0.12, 0.15, 0.13])}
    table = build_table(models, ("hr@10",), extra_baselines=("A", "missing"))
    cell = table["B"]["hr@10"]
    assert cell.gains["A"] == pytest.approx(relative_gain(0.4 / 3, 0.33 / 3))
    assert 0 < cell.p_values["A"] < 0.05 and "A" not in table["A"]["hr@10"].gains


def test_report_tables_every_dataset_against_a_baseline(grid_runs, tmp_path):
    _, runs, _ = grid_runs
    assert main(["report", str(runs), "--out", str(tmp_path / "rep"), "--baseline", "SASRec"]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    section = md.split("## Every dataset against SASRec")[1]
    (models,) = collect([runs]).values()
    hstu, sas = ([r.metrics["hr@10"] for r in models[m]] for m in ("HSTU", "SASRec"))
    gain = relative_gain(mean_std(hstu)[0], mean_std(sas)[0])
    row = next(line for line in section.splitlines() if "| HSTU |" in line)
    assert row.split(" | ")[4].strip("*").startswith(f"{gain:+.1f}%")  # HR@10 column, with its p
    assert "| SASRec | 2 / 2 |" in section


def test_cold_summary_ratios_and_paired_differences():
    cold = {
        "d": {
            label: [{"seed": s, "cold": {"hr@50": v}} for s, v in zip((1, 2, 3), values)]
            for label, values in {"text": (0.1, 0.2, 0.3), "sum": (0.3, 0.4, 0.6)}.items()
        }
    }
    md = cold_summary_markdown(cold, ("text",))
    sum_row = next(line for line in md.splitlines() if "| sum |" in line)
    assert "| 0.4333 ± 0.1528 | 2.17 | **+0.2333 (0.020)** |" in sum_row  # paired over seeds 1-3
    assert "| text | 3 | 0.2000 ± 0.1000 | 1.00 | — |" in md
