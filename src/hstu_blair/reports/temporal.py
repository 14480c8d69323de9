"""The temporal refresh study's report: tables over ``study.json`` records (one per config and
seed, written by :func:`hstu_blair.recipes.temporal_study.temporal_study`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from hstu_blair.errors import ConfigError
from hstu_blair.evaluation.metrics import metrics_from_ranks
from hstu_blair.reports.stats import mean_std, paired_test

STUDY_FILE = "study.json"
"""A finished study's record, in its work directory."""
ARMS = ("no_events", "live_events", "update", "retrain")
"""The study's arms: (a) no events, (b) live events, (c) update, (d) retrain."""


def _ndcg10(ranks: list[int | None], keep: list[int]) -> float:
    """NDCG@10 of the targets ``keep`` from their top-k ranks (None: beyond the top k; NaN when
    ``keep`` is empty), by evaluation's metric functions."""
    if not keep:
        return float("nan")
    kept = np.array([np.inf if ranks[i] is None else ranks[i] for i in keep], dtype=np.float64)  # (U,)
    return metrics_from_ranks(kept, hr_ks=(10,), ndcg_ks=(10,))["ndcg@10"]


def study_table(records: list[dict[str, Any]], metric: str = "ndcg@10") -> str:
    """A markdown table of study records (seeds of one config): per arm the mean ± std over seeds
    of ``hr@10``, ``ndcg@10`` (also split into users with a history before t1 and users new since
    then, where ranks were recorded) and the seconds; then (b) against (a) and (c) against (d),
    with paired t-tests over seeds."""

    def cell(values: list[float], digits: int = 4) -> str:
        values = [v for v in values if not np.isnan(v)]
        if not values:
            return "—"
        if len(values) == 1:
            return f"{values[0]:.{digits}f}"
        m, s = mean_std(values)
        return f"{m:.{digits}f} ± {s:.{digits}f}"

    def group(arm: str, new: bool) -> list[float]:
        out = []
        for r in records:
            ranks = r["arms"][arm].get("ranks")
            if ranks is None or "targets_new_since_train_cutoff" not in r:
                continue
            fresh = set(r["targets_new_since_train_cutoff"])
            out.append(_ndcg10(ranks, [i for i in range(len(ranks)) if (i in fresh) == new]))
        return out

    n_new = [len(r.get("targets_new_since_train_cutoff", [])) for r in records]
    lines = [
        f"targets per seed: {cell([float(r['targets']) for r in records], 0)} "
        f"(new since t1: {cell([float(n) for n in n_new], 0)}); events: {cell([float(r['events']) for r in records], 0)}",
        "",
        "| arm | hr@10 | ndcg@10 | ndcg@10, users known at t1 | ndcg@10, users new since t1 | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for arm in ARMS:
        rows = [r["arms"][arm] for r in records]
        lines.append(
            f"| {arm} | {cell([x['metrics']['hr@10'] for x in rows])} | "
            f"{cell([x['metrics'][metric] for x in rows])} | {cell(group(arm, False))} | "
            f"{cell(group(arm, True))} | {cell([x['seconds'] for x in rows], 1)} |"
        )

    def versus(a: str, b: str) -> str:
        x = [r["arms"][a]["metrics"][metric] for r in records]
        y = [r["arms"][b]["metrics"][metric] for r in records]
        gain = f"{100 * (np.mean(x) / np.mean(y) - 1):+.1f} %" if np.mean(y) > 0 else "(base 0)"
        p_value = f", paired p = {paired_test(x, y):.3f}" if len(records) > 1 else ""
        return f"{metric} {np.mean(x):.4f} against {np.mean(y):.4f}: {gain}{p_value}"

    share = [_update_time_share(r) for r in records]
    seeds = f"{len(records)} seed{'s' if len(records) > 1 else ''}"
    lines += [
        "",
        f"live events vs no events: {versus('live_events', 'no_events')} ({seeds})",
        f"update vs retrain: {versus('update', 'retrain')}, time {cell([100 * x for x in share], 1)} % ({seeds})",
    ]
    return "\n".join(lines)


def _update_time_share(record: dict[str, Any]) -> float:
    """Arm (c)'s seconds over arm (d)'s in one study."""
    return record["arms"]["update"]["seconds"] / max(record["arms"]["retrain"]["seconds"], 1e-9)


def _ratio_p(x: list[float], y: list[float]) -> str:
    """``mean(x) / mean(y)`` with the paired p over seeds (none for one seed)."""
    value = f"{np.mean(x) / np.mean(y):.2f}" if np.mean(y) > 0 else "—"
    return f"{value} ({paired_test(x, y):.3f})" if len(x) > 1 else value


def summary_table(groups: dict[tuple[str, str], list[dict[str, Any]]], metric: str = "ndcg@10") -> str:
    """One row per (dataset, model): the four arms' mean ``metric`` over seeds, (b) against (a) and
    (c) against (d) as ratios of the means with paired p over seeds, and (c)'s share of (d)'s time."""
    lines = [
        "| dataset | model | seeds | targets | (a) no events | (b) live events | (c) update | (d) retrain "
        "| (b)/(a) (p) | (c)/(d) (p) | (c) time / (d) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (dataset, name), records in groups.items():
        values = {arm: [r["arms"][arm]["metrics"][metric] for r in records] for arm in ARMS}
        share = np.mean([_update_time_share(r) for r in records])
        lines.append(
            f"| {dataset} | {name} | {len(records)} | {int(np.mean([r['targets'] for r in records]))} | "
            + " | ".join(f"{np.mean(values[arm]):.4f}" for arm in ARMS)
            + f" | {_ratio_p(values['live_events'], values['no_events'])}"
            f" | {_ratio_p(values['update'], values['retrain'])} | {share:.2f} |"
        )
    return "\n".join(lines)


def temporal_report(folders: list[Path]) -> str:
    """The studies below ``folders`` (every ``study.json``, e.g. a grid's output), grouped by dataset
    and model: a :func:`summary_table` row each, then each group's :func:`study_table`.

    Raises:
        ConfigError: no ``study.json`` below them.
    """
    paths = sorted(p for folder in folders for p in Path(folder).rglob(STUDY_FILE))
    if not paths:
        raise ConfigError(f"no {STUDY_FILE} under {', '.join(map(str, folders))}")
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for path in paths:
        record = json.loads(path.read_text())
        groups.setdefault((record["dataset"], record["name"]), []).append(record)
    parts = [summary_table(groups), ""]
    for (dataset, name), records in groups.items():
        seeds = ", ".join(str(r["seed"]) for r in records)
        parts += [f"### {dataset}: {name} (seeds {seeds})", "", study_table(records), ""]
    return "\n".join(parts).rstrip() + "\n"
