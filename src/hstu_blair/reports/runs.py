"""Collecting finished run directories into records grouped by dataset and model."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hstu_blair._compat import tomllib
from hstu_blair.run.layout import (
    COLD_START,
    FINAL_METRICS,
    cold_start_path,
    config_path,
    final_metrics_path,
    history_path,
)


@dataclass
class RunRecord:
    """One finished run: where it is, what it was (dataset, model label, seed) and its metrics."""

    path: Path
    dataset: str
    model: str
    seed: int
    metrics: dict[str, float]
    history: list[dict[str, Any]] = field(default_factory=list)
    protocol: str = "loo"
    most_popular: dict[str, float] | None = None
    """The most-popular list's test metrics on the same targets (runs made since it was recorded)."""


def find_runs(paths: list[Path], marker: str = FINAL_METRICS) -> list[Path]:
    """Run directories holding ``marker`` given directly or found below ``paths``.

    Cold-start runs (holding ``cold_start.json``) follow another protocol and are only returned
    when ``marker`` is ``cold_start.json``.
    """
    found: list[Path] = []
    for p in paths:
        p = Path(p)
        candidates = (
            [p] if (p / marker).exists() else sorted(q.parent for q in p.rglob(marker)) if p.is_dir() else []
        )
        found.extend(c for c in candidates if marker == COLD_START or not cold_start_path(c).exists())
    return found


def collect_cold_start(paths: list[Path]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """``{dataset: {label: [cold_start.json payloads sorted by seed]}}``."""
    grouped: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for run in find_runs(paths, COLD_START):
        payload = json.loads(cold_start_path(run).read_text())
        grouped.setdefault(payload.get("dataset", "?"), {}).setdefault(
            payload.get("label", payload["fusion"]), []
        ).append(payload)
    for labels in grouped.values():
        for runs in labels.values():
            runs.sort(key=lambda r: r["seed"])
    return grouped


def read_run(path: Path) -> RunRecord:
    """Read a run directory: dataset = basename of ``data.path`` (with the protocol in brackets when
    it is not ``loo``, so runs of different protocols never share a table), model = the config's
    ``name``."""
    config = tomllib.loads(config_path(path).read_text())
    final = json.loads(final_metrics_path(path).read_text())
    history_file = history_path(path)
    history = json.loads(history_file.read_text()) if history_file.exists() else []
    metrics = _ranking_metrics(final["metrics"])
    popular = final.get("baselines", {}).get("most_popular", {}).get("test")
    protocol = final.get("protocol", "loo")
    dataset = Path(config["data"]["path"]).name + ("" if protocol == "loo" else f" ({protocol})")
    return RunRecord(
        path=path,
        dataset=dataset,
        model=config.get("name", path.parent.name),
        seed=int(config["train"]["seed"]),
        metrics=metrics,
        history=history,
        protocol=protocol,
        most_popular=_ranking_metrics(popular) if popular else None,
    )


def _ranking_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if "@" in k or k == "mrr"}


MOST_POPULAR = "most popular"
"""The label of the popularity row every report table gets (from the runs' recorded baselines)."""


def popularity_rows(models: dict[str, list[RunRecord]]) -> list[RunRecord]:
    """The most-popular list as runs of its own, one per seed (it depends on the split only, so any
    run of a seed gives it)."""
    by_seed: dict[int, RunRecord] = {}
    for runs in models.values():
        for r in runs:
            if r.most_popular is not None and r.seed not in by_seed:
                by_seed[r.seed] = RunRecord(
                    r.path, r.dataset, MOST_POPULAR, r.seed, r.most_popular, [], r.protocol
                )
    return [by_seed[s] for s in sorted(by_seed)]


def collect(paths: list[Path]) -> dict[str, dict[str, list[RunRecord]]]:
    """``{dataset: {model: [runs sorted by seed]}}`` from run directories (or folders of them)."""
    grouped: dict[str, dict[str, list[RunRecord]]] = {}
    for run in map(read_run, find_runs(paths)):
        grouped.setdefault(run.dataset, {}).setdefault(run.model, []).append(run)
    for dataset, models in grouped.items():
        for runs in models.values():
            runs.sort(key=lambda r: r.seed)
        popular = popularity_rows(models)
        if popular and MOST_POPULAR not in models:
            models[MOST_POPULAR] = popular
        grouped[dataset] = dict(sorted(models.items(), key=lambda kv: model_order(kv[0])))
    return grouped


def model_order(label: str) -> tuple[int, str]:
    """Sort key: the most-popular list, SASRec, HSTU, then every other model by name (tables and
    plots agree)."""
    rank = {MOST_POPULAR: -1, "sasrec": 0, "hstu": 1}.get(label.lower(), 2)
    return rank, label.lower()
