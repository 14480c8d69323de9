"""The tuning recipe: an Optuna study over the settings a config's ``[tune]`` section declares.

``tune(config_path, trials)`` trains one run per trial (``{out}/trials/trial-{number}``), scores it
on the **validation** split only (the best epoch's ``tune.metric``; the test split is never read),
reports every validation to Optuna so that a hopeless trial is pruned from its per-epoch curve,
and stops when the study holds ``trials`` finished trials (complete or pruned), whichever process
finished them. The study lives in ``{out}/study.sqlite3`` by default, or in any database Optuna
takes (``postgresql://...``), so several processes on one or more machines share it.

A process killed mid-trial leaves that trial ``RUNNING``; the storage's heartbeat marks it failed
once it has been silent for ``tune.grace_seconds`` (also when it was killed before its first beat:
:mod:`hstu_blair.recipes.tune_storage`), and the next process to start a trial retries
its settings, so a killed search resumes where it was. What is written:

- ``best.toml``: the config with the best trial's settings (every section resolved; no ``[tune]``),
- ``trials.json`` and ``report.md``: every trial (state, settings, value, epochs, seconds),
- ``search.png``: the value of every trial and the best so far, in the order trials finished.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
from tqdm.auto import tqdm

from hstu_blair.config import TuneConfig, dump_config, load_config
from hstu_blair.errors import ConfigError
from hstu_blair.recipes.train import train
from hstu_blair.recipes.tune_storage import HeartbeatStorage

log = logging.getLogger(__name__)

STUDY_FILE = "study.sqlite3"
STORAGE_ATTEMPTS = 5


@dataclass(frozen=True)
class Setting:
    """One searched setting: the config keys it sets and its choices (a list, or a range)."""

    name: str
    keys: tuple[str, ...]
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None


@dataclass
class TuneResult:
    """What :func:`tune` returns: the study's best trial and where everything was written."""

    out_dir: Path
    best_config: Path
    best_value: float
    best_params: dict[str, Any]
    finished: int
    pruned: int


def parse_space(
    space: dict[str, Any], config_path: str | Path | None = None, overrides: list[str] | None = None
) -> list[Setting]:
    """``[tune.space]`` -> settings; every key and value is checked on the config they apply to
    (``config_path`` with ``overrides``; the defaults without it), so ``model.fusion_options.*``
    is checked against the config's fusion.

    Raises:
        ConfigError: an empty space, an unknown config key, or choices that are neither a non-empty
            list nor a ``{low, high[, log][, step]}`` range; the message names the setting.
    """
    if not space:
        raise ConfigError(
            'tune.space is empty: declare the settings to search, e.g. "train.lr" = [1e-3, 3e-3]'
        )
    settings = []
    for name, choices in space.items():
        keys = tuple(k.strip() for k in name.split(","))
        where = f"tune.space.{name!r}"
        if isinstance(choices, list):
            if not choices:
                raise ConfigError(f"{where}: an empty list of choices")
            setting = Setting(name, keys, choices=tuple(choices))
        elif isinstance(choices, dict) and {"low", "high"} <= set(choices):
            extra = sorted(set(choices) - {"low", "high", "log", "step"})
            if extra:
                raise ConfigError(
                    f"{where}: unknown range key(s) {', '.join(extra)}; valid: low, high, log, step"
                )
            if not choices["low"] < choices["high"]:
                raise ConfigError(
                    f"{where}: low must be below high, got {choices['low']} and {choices['high']}"
                )
            setting = Setting(
                name,
                keys,
                low=choices["low"],
                high=choices["high"],
                log=bool(choices.get("log", False)),
                step=choices.get("step"),
            )
        else:
            raise ConfigError(
                f"{where}: expected a list of choices or {{low = ..., high = ...}}, got {choices!r}"
            )
        for value in setting.choices or (setting.low, setting.high):
            # each key exists, each value fits
            load_config(config_path, [*(overrides or []), *(f"{key}={_toml(value)}" for key in keys)])
        settings.append(setting)
    return settings


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def _suggest(trial: Any, setting: Setting) -> Any:
    if setting.choices is not None:
        return trial.suggest_categorical(setting.name, list(setting.choices))
    if isinstance(setting.low, int) and isinstance(setting.high, int):
        return trial.suggest_int(
            setting.name, setting.low, setting.high, step=int(setting.step or 1), log=setting.log
        )
    return trial.suggest_float(
        setting.name, float(setting.low), float(setting.high), step=setting.step, log=setting.log
    )


def trial_overrides(params: dict[str, Any], settings: list[Setting]) -> list[str]:
    """The ``section.key=value`` overrides of a trial's parameters."""
    return [f"{key}={_toml(params[s.name])}" for s in settings for key in s.keys]


def _storage(url: str | None, out_dir: Path, grace_seconds: int) -> Any:
    """Optuna's database storage with a heartbeat (a beat every third of the grace period).

    Workers that start together race to create the schema of a new database; the losers see an
    integrity or locking error and simply connect again to the schema the winner wrote."""
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    url = url or f"sqlite:///{(out_dir / STUDY_FILE).resolve()}"
    for attempt in range(STORAGE_ATTEMPTS):
        try:
            return HeartbeatStorage(
                url,
                heartbeat_interval=max(1, grace_seconds // 3),
                grace_period=grace_seconds,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2),
                engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {},
            )
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError):
            if attempt == STORAGE_ATTEMPTS - 1:
                raise
            log.info("storage %s: schema being created by another worker; connecting again", url)
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def trial_seeded_sampler(seed: int) -> Any:
    """A TPE sampler whose random state is reseeded from ``(seed, trial number)`` before each trial.

    Workers sharing a study (``--storage``, or the same command run twice) would otherwise draw
    the same settings: each starts a ``TPESampler(seed)`` from the same state. Trial numbers are
    unique in a study, so every trial gets its own stream, and a trial's draw does not depend on
    which worker ran it."""

    class TrialSeededTPE(optuna.samplers.TPESampler):
        def before_trial(self, study: Any, trial: Any) -> None:
            stream = (seed * 1_000_003 + trial.number) % 2**32
            self._rng.rng.seed(stream)  # optuna's LazyRandomState (TPE's own draws)
            self._random_sampler._rng.rng.seed((stream + 1) % 2**32)  # its random startup draws
            super().before_trial(study, trial)

    return TrialSeededTPE(seed=seed)


def _pruner(tc: TuneConfig) -> Any:
    if tc.pruner == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=tc.startup_trials, n_warmup_steps=tc.warmup_epochs)


def _finished(study: Any) -> tuple[int, int]:
    states = [t.state for t in study.get_trials(deepcopy=False)]
    return (
        sum(s in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for s in states),
        sum(s == optuna.trial.TrialState.PRUNED for s in states),
    )


def _objective(config_path: Path, base: list[str], settings: list[Setting], out_dir: Path) -> Any:
    """The function Optuna calls per trial: train with the trial's settings, return the best
    validation value; every validation is reported for pruning."""

    def objective(trial: optuna.Trial) -> float:
        params = {s.name: _suggest(trial, s) for s in settings}
        config = load_config(config_path, [*base, *trial_overrides(params, settings)])
        run_dir = out_dir / "trials" / f"trial-{trial.number}"
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("process", f"{socket.gethostname()}:{os.getpid()}")
        seen: list[float] = []

        def report(epoch: int, value: float) -> None:
            seen.append(value)
            trial.report(value, epoch)
            trial.set_user_attr("epochs", epoch + 1)
            if trial.should_prune():
                raise optuna.TrialPruned(f"epoch {epoch}: {value:.4f} below the median of earlier trials")

        result = train(config, run_dir=run_dir, progress=False, on_validate=report)
        trial.set_user_attr("best_epoch", result.best_epoch)
        return max(seen)

    return objective


def tune(
    config_path: str | Path,
    trials: int,
    out_dir: str | Path | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    overrides: list[str] | None = None,
    progress: bool = True,
) -> TuneResult:
    """Search the settings ``config_path``'s ``[tune]`` section declares until the study holds
    ``trials`` finished trials; write the best config and a report (see the module docstring).

    Args:
        config_path: a run config with a ``[tune]`` section.
        trials: finished (complete or pruned) trials the study should hold, counting those of
            earlier or concurrent processes.
        out_dir: where trials, the study and the report go (default ``{out_dir}/tune-{name}``).
        storage: an Optuna storage URL (default SQLite in ``out_dir``).
        study_name: the study's name (default the config's ``name``).
        overrides: ``section.key=value`` applied to every trial before its own settings.
        progress: a bar over the finished trials with rate and ETA.

    Raises:
        ConfigError: no ``[tune]`` space, an unknown key in it, or a metric the runs do not report.
    """
    config_path = Path(config_path)
    config = load_config(config_path, overrides)
    tc = config.tune
    settings = parse_space(tc.space, config_path, overrides)
    out = Path(out_dir) if out_dir is not None else Path(config.out_dir) / f"tune-{config.name}"
    out.mkdir(parents=True, exist_ok=True)
    base = [
        *(overrides or []),
        f"train.monitor={_toml(tc.metric)}",
        f"train.epochs={tc.epochs or config.train.epochs}",
        f"train.patience={tc.patience if tc.patience is not None else config.train.patience}",
    ]
    study = optuna.create_study(
        storage=_storage(storage, out, tc.grace_seconds),
        study_name=study_name or config.name,
        direction="maximize",
        sampler=trial_seeded_sampler(tc.seed),
        pruner=_pruner(tc),
        load_if_exists=True,
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # trials are judged on validation: a refit (train.refit) would only cost time; best.toml keeps it
    _optimize(
        study,
        _objective(config_path, [*base, "train.refit=false"], settings, out),
        trials,
        tc.metric,
        progress,
    )
    return write_tune_report(study, config_path, base, settings, out, tc.metric)


def _optimize(study: Any, objective: Any, trials: int, metric: str, progress: bool) -> None:
    """Run trials until the study (all processes together) holds ``trials`` finished ones, with a
    bar over them."""
    done, _ = _finished(study)
    bar = tqdm(total=trials, initial=min(done, trials), desc="tune", unit="trial", disable=not progress)

    def tick(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        now, _ = _finished(study)
        bar.update(min(now, trials) - bar.n)
        if study.best_trials:
            bar.set_postfix({metric: f"{study.best_value:.4f}"})

    if done < trials:
        finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        study.optimize(
            objective, callbacks=[optuna.study.MaxTrialsCallback(trials, states=finished), tick], catch=()
        )
    bar.close()


def write_tune_report(
    study: Any, config_path: Path, base: list[str], settings: list[Setting], out: Path, metric: str
) -> TuneResult:
    """``best.toml``, ``trials.json``, ``report.md`` and ``search.png`` of ``study`` in ``out``."""
    best = study.best_trial
    best_config = load_config(config_path, [*base, *trial_overrides(best.params, settings)])
    best_path = out / "best.toml"
    best_path.write_text(_best_header(study, best, metric) + dump_config(best_config))
    rows = [
        {
            "number": t.number,
            "state": t.state.name.lower(),
            "value": t.value
            if t.value is not None
            else (max(t.intermediate_values.values()) if t.intermediate_values else None),
            "params": t.params,
            "epochs": t.user_attrs.get("epochs"),
            "best_epoch": t.user_attrs.get("best_epoch"),
            "seconds": (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete and t.datetime_start
            else None,
            "run_dir": t.user_attrs.get("run_dir"),
        }
        for t in study.get_trials(deepcopy=False)
    ]
    (out / "trials.json").write_text(json.dumps(rows, indent=1, default=str))
    (out / "report.md").write_text(_report_markdown(rows, best, metric, settings))
    _plot(rows, out / "search.png", metric)
    pruned = sum(r["state"] == "pruned" for r in rows)
    finished = sum(r["state"] in ("complete", "pruned") for r in rows)
    log.info("tune: best validation %s %.4f (trial %d)", metric, best.value, best.number)
    return TuneResult(out, best_path, float(best.value), dict(best.params), finished, pruned)


def _best_header(study: Any, best: Any, metric: str) -> str:
    lines = [
        f"# The best of {len(study.trials)} trials of study {study.study_name!r} (hstu-blair tune):",
        f"# trial {best.number}, validation {metric} {best.value:.4f} (best epoch {best.user_attrs.get('best_epoch')}).",
        *(f"#   {k} = {v!r}" for k, v in best.params.items()),
        f"# Written {time.strftime('%Y-%m-%d %H:%M:%S')}. Confirm on the test split with fresh seeds.",
        "",
    ]
    return "\n".join(lines) + "\n"


def _report_markdown(rows: list[dict[str, Any]], best: Any, metric: str, settings: list[Setting]) -> str:
    names = [s.name for s in settings]
    lines = [
        "# Tuning report",
        "",
        f"Best: trial {best.number}, validation {metric} **{best.value:.4f}**.",
        "",
        *(f"- `{k}` = `{v!r}`" for k, v in best.params.items()),
        "",
        f"| trial | state | validation {metric} | epochs | seconds | "
        + " | ".join(f"`{n}`" for n in names)
        + " |",
        "|---|---|---|---|---|" + "---|" * len(names),
    ]
    for r in rows:
        value = "" if r["value"] is None else f"{r['value']:.4f}"
        seconds = "" if r["seconds"] is None else f"{r['seconds']:.0f}"
        params = " | ".join(str(r["params"].get(n, "")) for n in names)
        lines.append(
            f"| {r['number']} | {r['state']} | {value} | {r['epochs'] or ''} | {seconds} | {params} |"
        )
    return "\n".join(lines) + "\n"


def _plot(rows: list[dict[str, Any]], path: Path, metric: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no search.png (pip install 'hstu-blair[reports]')")
        return
    done = [r for r in rows if r["value"] is not None]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for state, marker in (("complete", "o"), ("pruned", "x")):
        pts = [(r["number"], r["value"]) for r in done if r["state"] == state]
        if pts:
            ax.scatter(*zip(*pts), marker=marker, label=state)
    best, so_far = float("-inf"), []
    for r in sorted(done, key=lambda r: r["number"]):
        if r["state"] == "complete":
            best = max(best, r["value"])
        so_far.append((r["number"], best if best > float("-inf") else None))
    pts = [(n, v) for n, v in so_far if v is not None]
    if pts:
        ax.step(*zip(*pts), where="post", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"validation {metric}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
