"""``hstu-blair reproduce GRID``: run datasets x models x seeds, resumably, with one progress view.

A grid file (TOML)::

    title = "ml-latest-small: SASRec vs HSTU vs HSTU + text"
    out_dir = "runs/grids/ml-latest-small"      # relative to the working directory
    seeds = [1, 2, 3]
    overrides = ["train.epochs=60"]              # applied to every run (optional)

    [[run]]
    label = "SASRec"                             # the model's name in reports
    config = "../ml-latest-small/sasrec.toml"    # relative to the grid file
    overrides = []                               # optional, for this entry only

Each run goes to ``{out_dir}/{dataset}/{label}/seed-{seed}``. A run with ``final_metrics.json`` is
skipped; one with a checkpoint but no final metrics (a killed grid) is resumed; entries whose
dataset is not present are reported and skipped.

``cold_start_share = 0.1`` at the top makes every run a cold-start run (``hstu-blair cold-start``:
that share of the items held out, drawn with the run's seed); its training run goes to
``.../seed-{seed}/run`` and it is finished when that holds ``cold_start.json``.

A ``[temporal_study]`` table at the top (``train_quantile``, ``events_quantile``, ``update_epochs``)
makes every run the refresh study of :mod:`hstu_blair.recipes.temporal_study` instead (four arms:
no events, events as live history, ``update``, full retrain); it is finished when
``.../seed-{seed}/study.json`` exists, and ``hstu-blair temporal-study --report`` tabulates them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from hstu_blair._compat import tomllib
from hstu_blair.config import RunConfig, load_config
from hstu_blair.errors import ConfigError
from hstu_blair.recipes.cold_start import cold_start
from hstu_blair.recipes.temporal_study import temporal_study
from hstu_blair.recipes.train import train
from hstu_blair.reports.temporal import STUDY_FILE
from hstu_blair.run.layout import cold_start_path, final_metrics_path, resume_path

log = logging.getLogger(__name__)


@dataclass
class GridRun:
    label: str
    seed: int
    config: RunConfig
    run_dir: Path
    cold_start_share: float | None = None
    temporal: dict[str, float] | None = None

    @property
    def done_marker(self) -> Path:
        if self.temporal is not None:
            return self.run_dir / STUDY_FILE
        if self.cold_start_share is None:
            return final_metrics_path(self.run_dir)
        return cold_start_path(self.run_dir / "run")


@dataclass
class GridResult:
    """What a grid did: run directories finished now, skipped as done, and missing data."""

    finished: list[Path] = field(default_factory=list)
    already_done: list[Path] = field(default_factory=list)
    missing_data: list[str] = field(default_factory=list)

    @property
    def run_dirs(self) -> list[Path]:
        return [*self.already_done, *self.finished]


def _data_present(config: RunConfig) -> bool:
    if (Path(config.data.path) / "manifest.json").exists():
        return True
    if config.data.source == "ml-latest-small":
        return True
    return (
        config.data.source is not None
        and bool(config.data.input)
        and all(Path(p).exists() for p in config.data.input)
    )


def plan_grid(grid_path: Path, overrides: list[str] | None = None) -> tuple[list[GridRun], list[str]]:
    """Expand a grid file into runs; also return the entries skipped for missing data."""
    grid_path = Path(grid_path)
    try:
        grid = tomllib.loads(grid_path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"grid file not found: {grid_path}") from None
    unknown = set(grid) - {
        "title",
        "out_dir",
        "seeds",
        "overrides",
        "run",
        "cold_start_share",
        "temporal_study",
    }
    if unknown:
        raise ConfigError(f"{grid_path}: unknown key(s) {', '.join(sorted(unknown))}")
    if not grid.get("run"):
        raise ConfigError(f"{grid_path}: no [[run]] entries")
    out_dir = Path(grid.get("out_dir", f"runs/grids/{grid_path.stem}"))
    share = grid.get("cold_start_share")
    if share is not None and not (isinstance(share, float) and 0 < share < 1):
        raise ConfigError(f"{grid_path}: cold_start_share must be a number in (0, 1), got {share!r}")
    temporal = grid.get("temporal_study")
    keys = {"train_quantile", "events_quantile", "update_epochs"}
    if temporal is not None and (not isinstance(temporal, dict) or set(temporal) - keys):
        raise ConfigError(f"{grid_path}: [temporal_study] takes {', '.join(sorted(keys))}, got {temporal!r}")
    if temporal is not None and share is not None:
        raise ConfigError(f"{grid_path}: cold_start_share and [temporal_study] cannot be combined")
    runs, missing = [], []
    for entry in grid["run"]:
        if set(entry) - {"label", "config", "overrides"} or "label" not in entry or "config" not in entry:
            raise ConfigError(
                f"{grid_path}: each [[run]] needs label and config (and optional overrides): {entry}"
            )
        config_path = (grid_path.parent / entry["config"]).resolve()
        for seed in grid.get("seeds", [42]):
            sets = [
                *grid.get("overrides", []),
                *entry.get("overrides", []),
                *(overrides or []),
                f"train.seed={seed}",
                f'name="{entry["label"]}"',
            ]
            config = load_config(config_path, sets)
            if not _data_present(config):
                missing.append(
                    f"{entry['label']} ({config.data.path}: not prepared and inputs {config.data.input} absent)"
                )
                break
            run_dir = out_dir / Path(config.data.path).name / entry["label"] / f"seed-{seed}"
            runs.append(GridRun(entry["label"], seed, config, run_dir, share, temporal))
    return runs, missing


def reproduce(
    grid_path: Path,
    overrides: list[str] | None = None,
    dry_run: bool = False,
    progress: bool = True,
    labels: list[str] | None = None,
) -> GridResult:
    """Run every (entry, seed) of a grid that is not finished yet; resume interrupted ones.

    ``labels``: only the entries with these labels (None: all), so that one grid can run in several
    processes at once, one per label (each run has its own folder).

    Raises:
        ConfigError: a label that no entry of the grid has (the message lists the grid's labels).
    """
    runs, missing = plan_grid(grid_path, overrides)
    if labels:
        known = list(dict.fromkeys(run.label for run in runs))
        unknown = [label for label in labels if label not in known]
        if unknown:
            raise ConfigError(
                f"{grid_path}: no [[run]] labelled {', '.join(map(repr, unknown))}; labels: {known}"
            )
        runs = [run for run in runs if run.label in labels]
    result = GridResult(missing_data=missing)
    for line in missing:
        log.warning("skipped, data not present: %s", line)
    todo = []
    for run in runs:
        if run.done_marker.exists():
            result.already_done.append(run.run_dir)
        else:
            todo.append(run)
    log.info(
        "grid %s: %d runs, %d already done, %d to run",
        grid_path,
        len(runs),
        len(result.already_done),
        len(todo),
    )
    if dry_run:
        for run in todo:
            print(f"would run {run.label} seed {run.seed} -> {run.run_dir}")
        return result
    bar = tqdm(todo, desc="grid", unit="run", disable=not progress, dynamic_ncols=True)
    for run in bar:
        bar.set_postfix_str(f"{Path(run.config.data.path).name} / {run.label} / seed {run.seed}")
        if run.temporal is not None:
            temporal_study(run.config, run.run_dir, **run.temporal, progress=False)  # type: ignore[arg-type]
        elif run.cold_start_share is not None:
            cold_start(run.config, run.cold_start_share, run.seed, work_dir=run.run_dir, progress=False)
        else:
            resume = resume_path(run.run_dir).exists()
            train(run.config, run_dir=run.run_dir, resume=resume, progress=False)
        result.finished.append(run.run_dir)
    return result
