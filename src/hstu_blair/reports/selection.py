"""Choosing a default model on validation metrics of development runs, with leave-one-dataset-out.

The rule (docs/results.md section 0) reads only what the choice may see:

- **warm**: each run's *validation* metric at the epoch early stopping kept (``history.json``), the
  mean over the development seeds, as a ratio to the baseline's (the paper's ``sum``) on the same
  dataset. The test split is never read.
- **cold**: the cold-start runs' metric on held-out items (``cold_start.json``, the items drawn
  with the development seeds), as a ratio to the cold reference's (text only).
- **speed** (when a ``bench/bench_train.py --out`` file is given): the candidate's training step
  time over the ID-only model's, measured in the same bench run.

A candidate *qualifies* on a dataset when its warm ratio is at least ``warm_floor``, its cold
ratio at least ``cold_floor`` and its step ratio at most ``max_step_ratio``. The choice over a set of datasets is the candidate that qualifies
on every one of them with the highest geometric mean of its warm ratios; when none does, the
baseline (the evidence is mixed, so the paper's fusion stays). Leave-one-dataset-out repeats the
choice without each dataset and checks the result on the dataset left out.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hstu_blair.data.manifest import read_json_file
from hstu_blair.errors import DataFormatError
from hstu_blair.reports.runs import collect, collect_cold_start
from hstu_blair.reports.stats import mean_std
from hstu_blair.run.layout import final_metrics_path


@dataclass(frozen=True)
class SelectionRule:
    """The bars a candidate must pass and the labels it is measured against."""

    baseline: str = "HSTU+text-sum"
    cold_reference: str = "HSTU+text-only"
    metric: str = "ndcg@10"
    cold_metric: str = "hr@50"
    warm_floor: float = 0.97
    cold_floor: float = 0.9
    max_step_ratio: float = 1.3


@dataclass
class Score:
    """One candidate on one dataset: mean validation metric, ratios to the references, verdict."""

    warm: float | None
    warm_std: float | None
    seeds: int
    warm_ratio: float | None
    cold: float | None
    cold_ratio: float | None
    step_ratio: float | None
    qualifies: bool


@dataclass
class Selection:
    rule: SelectionRule
    candidates: list[str]
    scores: dict[str, dict[str, Score]]  # dataset -> candidate -> score
    choice: str
    leave_one_out: dict[str, dict[str, Any]] = field(default_factory=dict)

    def markdown(self) -> str:
        """Per-dataset scores, the choice and the leave-one-dataset-out check (:func:`selection_markdown`)."""
        return selection_markdown(self)


def best_validation(history: list[dict[str, Any]], best_epoch: int | None, metric: str) -> float | None:
    """The validation ``metric`` at ``best_epoch`` (the checkpoint early stopping kept), else the
    best value in the history; None without validation entries."""
    entries = [h for h in history if isinstance(h.get("valid"), dict) and metric in h["valid"]]
    if not entries:
        return None
    for h in entries:
        if best_epoch is not None and h.get("epoch") == best_epoch:
            return float(h["valid"][metric])
    return max(float(h["valid"][metric]) for h in entries)


def _validation_by_model(runs: list[Path], metric: str) -> dict[str, dict[str, list[float]]]:
    out: dict[str, dict[str, list[float]]] = {}
    for dataset, models in collect(runs).items():
        for model, records in models.items():
            values = []
            for r in records:
                final = read_json_file(final_metrics_path(r.path))
                v = best_validation(r.history, final.get("best_epoch"), metric)
                if v is not None:
                    values.append(v)
            if values:
                out.setdefault(dataset, {})[model] = values
    return out


def _cold_by_model(runs: list[Path], metric: str) -> dict[str, dict[str, float]]:
    return {
        dataset: {
            label: sum(p["cold"][metric] for p in payloads) / len(payloads)
            for label, payloads in labels.items()
        }
        for dataset, labels in collect_cold_start(runs).items()
    }


def step_ratios(bench_json: Path, id_model: str = "HSTU", path: str = "fast") -> dict[str, float]:
    """Seconds per training step of each model over ``id_model``'s, from one ``bench_train.py --out`` file.

    Raises:
        DataFormatError: not a bench file, or no ``id_model`` result on ``path``.
    """
    try:
        results = [r for r in read_json_file(Path(bench_json))["results"] if r["path"] == path]
        base = {r["model"]: r["seconds_per_step"] for r in results}.get(id_model)
    except (KeyError, TypeError) as exc:
        raise DataFormatError(bench_json, f"not a bench_train.py --out file (no {exc})") from None
    if not base:
        raise DataFormatError(bench_json, f"no {id_model!r} result on the {path!r} path to divide by")
    return {r["model"]: r["seconds_per_step"] / base for r in results}


def score(
    warm: dict[str, dict[str, list[float]]],
    cold: dict[str, dict[str, float]],
    candidates: list[str],
    rule: SelectionRule,
    speed: dict[str, float] | None = None,
) -> dict[str, dict[str, Score]]:
    """Every candidate's :class:`Score` on every dataset that has the baseline's runs (``speed``:
    step ratios by model label; None leaves speed out of the rule)."""
    scores: dict[str, dict[str, Score]] = {}
    for dataset, models in sorted(warm.items()):
        if rule.baseline not in models:
            continue
        base = mean_std(models[rule.baseline])[0]
        cold_here = cold.get(dataset, {})
        cold_ref = cold_here.get(rule.cold_reference)
        row: dict[str, Score] = {}
        for c in candidates:
            values = models.get(c)
            mean, std = mean_std(values) if values else (None, None)
            warm_ratio = mean / base if mean is not None and base > 0 else None
            c_value = cold_here.get(c)
            cold_ratio = c_value / cold_ref if c_value is not None and cold_ref else None
            step = None if speed is None else speed.get(c)
            ok = (
                warm_ratio is not None
                and warm_ratio >= rule.warm_floor
                and cold_ratio is not None
                and cold_ratio >= rule.cold_floor
                and (speed is None or (step is not None and step <= rule.max_step_ratio))
            )
            row[c] = Score(mean, std, len(values or []), warm_ratio, c_value, cold_ratio, step, ok)
        scores[dataset] = row
    return scores


def choose(scores: dict[str, dict[str, Score]], datasets: list[str], rule: SelectionRule) -> str:
    """The candidate qualifying on every dataset of ``datasets`` with the highest geometric mean of
    warm ratios; the baseline when none qualifies everywhere."""
    best, best_value = rule.baseline, -math.inf
    candidates = sorted({c for d in datasets for c in scores[d]})
    for c in candidates:
        rows = [scores[d].get(c) for d in datasets]
        if not rows or any(s is None or not s.qualifies for s in rows):
            continue
        value = math.fsum(math.log(s.warm_ratio) for s in rows) / len(rows)  # type: ignore[union-attr,arg-type]
        if value > best_value:
            best, best_value = c, value
    return best


def select_default(
    warm_runs: list[Path],
    cold_runs: list[Path],
    candidates: list[str],
    out: Path | None = None,
    speed: Path | None = None,
    **rule: Any,
) -> Selection:
    """Apply the rule to development runs: the choice over all datasets and leave-one-dataset-out.

    Args:
        warm_runs: run directories (or folders of them) of the development seeds.
        cold_runs: cold-start run directories (or folders) of the development seeds.
        candidates: model labels that may be chosen (the baseline is the fallback).
        out: where to write ``selection.md`` / ``selection.json`` (not written when None).
        speed: a ``bench/bench_train.py --out`` file; candidates must then step within
            ``max_step_ratio`` of ID-only HSTU (not read when None).
        **rule: :class:`SelectionRule` fields (``baseline``, ``warm_floor``, ...); defaults otherwise.
    """
    rule = SelectionRule(**rule)
    scores = score(
        _validation_by_model(warm_runs, rule.metric),
        _cold_by_model(cold_runs, rule.cold_metric),
        candidates,
        rule,
        None if speed is None else step_ratios(speed),
    )
    datasets = sorted(scores)
    selection = Selection(rule, list(candidates), scores, choose(scores, datasets, rule))
    for left_out in datasets:
        others = [d for d in datasets if d != left_out]
        if not others:
            continue
        chosen = choose(scores, others, rule)
        held = scores[left_out].get(chosen)
        selection.leave_one_out[left_out] = {
            "choice_without_it": chosen,
            "warm_ratio": held.warm_ratio if held else 1.0,
            "cold_ratio": held.cold_ratio if held else None,
            "qualifies": held.qualifies if held else chosen == rule.baseline,
        }
    if out is not None:
        write_selection(selection, out)
    return selection


def _fmt(v: float | None, digits: int = 3) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def selection_markdown(selection: Selection) -> str:
    """Per-dataset scores, the choice and the leave-one-dataset-out check as Markdown."""
    rule = selection.rule
    lines = [
        f"Rule: warm = validation {rule.metric} (mean over development seeds) / {rule.baseline}'s, at least "
        f"{rule.warm_floor}; cold = cold-start {rule.cold_metric} / {rule.cold_reference}'s, at least "
        f"{rule.cold_floor}; step time / ID-only HSTU's at most {rule.max_step_ratio} (when measured). "
        f"Choice: qualifies everywhere, highest geometric mean of warm ratios; else {rule.baseline}.",
        "",
        "| dataset | candidate | seeds | validation "
        + rule.metric
        + " | warm ratio | cold "
        + rule.cold_metric
        + " | cold ratio | step ratio | qualifies |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for dataset, row in selection.scores.items():
        for c, s in row.items():
            warm = "—" if s.warm is None else f"{s.warm:.4f} ± {s.warm_std:.4f}"
            lines.append(
                f"| {dataset} | {c} | {s.seeds} | {warm} | {_fmt(s.warm_ratio)} | {_fmt(s.cold, 4)} | "
                f"{_fmt(s.cold_ratio)} | {_fmt(s.step_ratio, 2)} | {'yes' if s.qualifies else 'no'} |"
            )
    lines += ["", f"**Choice over all datasets: {selection.choice}**", ""]
    if selection.leave_one_out:
        lines += [
            "| left out | choice without it | its warm ratio there | cold ratio there | holds there |",
            "|---|---|---|---|---|",
        ]
        for d, r in selection.leave_one_out.items():
            lines.append(
                f"| {d} | {r['choice_without_it']} | {_fmt(r['warm_ratio'])} | {_fmt(r['cold_ratio'])} | "
                f"{'yes' if r['qualifies'] else 'no'} |"
            )
    return "\n".join(lines) + "\n"


def write_selection(selection: Selection, out: Path) -> None:
    """``selection.md`` and ``selection.json`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "selection.md").write_text(selection_markdown(selection))
    payload = {
        "rule": asdict(selection.rule),
        "candidates": selection.candidates,
        "choice": selection.choice,
        "scores": {d: {c: asdict(s) for c, s in row.items()} for d, row in selection.scores.items()},
        "leave_one_out": selection.leave_one_out,
    }
    (out / "selection.json").write_text(json.dumps(payload, indent=2) + "\n")
