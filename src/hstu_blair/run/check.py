"""``check_run``: the health of a run directory as a server would find it, without loading the model.

What is looked at: the served model version (``versions/current.json``; 0 without one), its
``model.json`` and the weights with the checks loading does before allocating anything
(:mod:`hstu_blair.run.model_check`: keys, types and sizes; each safetensors header against
the file's size and the architecture's tensors and shapes), the dataset and text store the model names, staging directories left by a killed ``update``, and the store (schema
version, counts of items, events and users, damaged rows, what was set aside). A run directory of an
earlier layout is named as such, with how to convert it (:mod:`hstu_blair.run.convert`). Nothing is
written.

The store is also checked as a whole (:mod:`hstu_blair.run.store_health`): SQLite's integrity check,
and whether it still holds the events and items the run's model versions were trained on; a store
the run had (:mod:`hstu_blair.run.store_marker`) that is missing or empty is unusable.

Status: ``ok`` (exit 0), ``set_aside`` (records were set aside or are damaged: served without
them, exit 1), ``damaged`` (the store failed its integrity check or lost events or items: served,
but restore it from a backup; exit 2), ``unusable`` (the run cannot be served: exit 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hstu_blair.data.manifest import read_json_file
from hstu_blair.errors import ConfigError, DataFormatError, HstuBlairError
from hstu_blair.run.convert import earlier_layout
from hstu_blair.run.layout import (
    CHECKPOINT_NAMES,
    STORE_FILE,
    checkpoints_dir,
    model_info_path,
    store_path,
    version_dir,
    weights_path,
)
from hstu_blair.run.model_check import check_model_info, check_weights
from hstu_blair.run.store import SCHEMA_VERSION, Store
from hstu_blair.run.store_health import integrity_problems, missing_from_versions
from hstu_blair.run.store_marker import marker_key, missing_store_message, store_expected
from hstu_blair.run.versions import current_version, list_versions, stale_staging

EXIT_CODES = {"ok": 0, "set_aside": 1, "damaged": 2, "unusable": 2}


@dataclass
class RunHealth:
    """What :func:`check_run` found: ``problems`` make the run unusable, ``damaged`` says what the
    store lost or fails (served, but restore it), ``set_aside`` lists damaged records (served
    without them), ``facts`` are counts and versions."""

    run_dir: Path
    problems: list[str] = field(default_factory=list)
    set_aside: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    damaged: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        if self.problems:
            return "unusable"
        return "damaged" if self.damaged else "set_aside" if self.set_aside else "ok"

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]


def check_run(run_dir: str | Path, store: str | Path | None = None) -> RunHealth:
    """The health of a run directory and its store (see the module docstring)."""
    run_dir = Path(run_dir)
    health = RunHealth(run_dir)
    if not run_dir.is_dir():
        health.problems.append(f"{run_dir}: not a directory")
        return health
    model_dir = run_dir
    try:
        version = current_version(run_dir)
        model_dir = version_dir(run_dir, version)
        health.facts["version"] = f"{version} (kept: {', '.join(map(str, list_versions(run_dir)))})"
    except ConfigError as exc:
        health.problems.append(str(exc))
    stale = stale_staging(run_dir)
    if stale:
        health.facts["stale staging"] = (
            f"{', '.join(str(p) for p in stale)} (left by a killed update; the next update deletes it)"
        )
    info = _check_model(model_dir, health)
    d_text = int(info["architecture"].get("d_text") or 0) if info else 0
    _check_store(run_dir, store, d_text, health)
    return health


def _check_model(run_dir: Path, health: RunHealth) -> dict[str, Any] | None:
    """``model.json`` and the weights, with the checks loading runs before allocating anything
    (:mod:`hstu_blair.run.model_check`): each damaged file is one problem naming it."""
    path = model_info_path(run_dir)
    if not path.exists():
        health.problems.append(earlier_layout(run_dir) or f"{path}: missing (not a run directory)")
        return None
    try:
        info = read_json_file(path)
        arch = check_model_info(path, info)
    except DataFormatError as exc:
        health.problems.append(str(exc))
        return None
    health.facts["model"] = f"{arch.name} fusion={arch.fusion} items={arch.num_items}"
    usable = []
    for name in CHECKPOINT_NAMES:
        weights = weights_path(run_dir, name)
        if not weights.exists():
            continue
        try:
            check_weights(weights, arch, path)
        except DataFormatError as exc:
            health.problems.append(str(exc))
        else:
            usable.append(name)
    if not usable and not any(p.startswith(str(checkpoints_dir(run_dir))) for p in health.problems):
        names = " or ".join(weights_path(run_dir, name).name for name in CHECKPOINT_NAMES)
        health.problems.append(f"{checkpoints_dir(run_dir)}: no {names}")
    health.facts["weights"] = ", ".join(usable) or "none"
    dataset = info["dataset"]["path"]
    if not Path(dataset).exists():
        health.problems.append(f"{dataset}: the dataset the model was trained on is missing")
    text_store = info.get("text_store") or {}
    if text_store.get("path") and not Path(text_store["path"]).exists():
        health.problems.append(f"{text_store['path']}: the text embedding store of the model is missing")
    return info


def _check_store(run_dir: Path, location: str | Path | None, d_text: int, health: RunHealth) -> None:
    """The store: that a store the run had is there, SQLite's integrity check, its schema version,
    counts, what was set aside and what will be (damaged rows), and what it lost since the model
    versions were trained."""
    path = store_path(run_dir)
    expected = store_expected(run_dir, marker_key(run_dir, location))
    if location is None and (not path.exists() or path.stat().st_size == 0):
        if expected is not None:
            health.problems.append(missing_store_message(str(path), expected, run_dir, path.exists()))
            return
        if not path.exists():
            health.facts["store"] = f"none yet ({STORE_FILE} is created on the first serve)"
            return
    try:
        store = Store(location or path, read_only=True)
    except HstuBlairError as exc:
        health.problems.append(str(exc))
        return
    try:
        health.facts["store"] = store.describe()
        health.facts["schema version"] = f"{store.version} (this hstu-blair: {SCHEMA_VERSION})"
        if store.version == 0 and expected is not None:
            health.problems.append(missing_store_message(store.describe(), expected, run_dir, True))
        health.damaged += integrity_problems(store)
        if store.version < SCHEMA_VERSION:
            health.facts["migration"] = f"to version {SCHEMA_VERSION} on the next serve"
            return
        _check_rows(store, run_dir, d_text, health)
    except HstuBlairError as exc:
        health.problems.append(str(exc))
    finally:
        store.close()


def _check_rows(store: Store, run_dir: Path, d_text: int, health: RunHealth) -> None:
    """Counts, set-aside records, damaged item rows, and what the store lost since the versions."""
    counts = store.counts()
    health.facts.update(counts)
    health.set_aside += [f"{r['source']}: {r['reason']}" for r in store.set_aside_records()]
    if d_text:
        _, damaged = store.read_items(0, d_text)
        health.set_aside += [f"{r.source}: {r.reason} (set aside on the next serve)" for _, r in damaged]
    missing = missing_from_versions(store, run_dir, counts)
    if missing is not None:
        health.damaged.append(missing)
