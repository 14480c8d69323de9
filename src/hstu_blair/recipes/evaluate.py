"""Re-evaluating a saved run: its model (safetensors + model.json) on its validation or test split."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from hstu_blair.config import load_config, parse_override
from hstu_blair.errors import ConfigError
from hstu_blair.evaluation.evaluate import evaluate_model
from hstu_blair.recipes.resolve import eval_options
from hstu_blair.recipes.resolve import split as resolve_split
from hstu_blair.run.layout import Checkpoint, config_path, is_run_dir
from hstu_blair.run.model_files import load_trained
from hstu_blair.training.allocator import retain_freed_memory


def evaluate(
    run_dir: str | Path,
    split: Literal["valid", "test"] = "test",
    checkpoint: Checkpoint = "best",
    overrides: list[str] | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Metrics of a saved run's ``checkpoint`` on ``split``, with full ranking over the catalogue.

    Args:
        run_dir: a run directory written by ``train``.
        split: ``valid`` or ``test``.
        checkpoint: ``best`` (best validation; a ``train.refit`` run's refit model), ``last``, or
            ``selected`` (a refit run's validation-chosen weights).
        overrides: ``eval.key=value`` settings to change (type-checked like any config value), and
            ``data.temporal_targets`` (which targets a temporal split scores: ``next`` or ``all``).
        device: where to run the model.

    Raises:
        ConfigError: not a run directory, an override outside ``eval.*`` or of the wrong type,
            or ``valid`` under a protocol without validation.
    """
    retain_freed_memory()
    run_dir = Path(run_dir)
    for text in overrides or []:
        keys, _ = parse_override(text)
        if len(keys) != 2 or not (keys[0] == "eval" or keys == ["data", "temporal_targets"]):
            raise ConfigError(
                f"override {text!r}: only eval.* keys and data.temporal_targets can be changed when re-evaluating"
            )
    if not is_run_dir(run_dir):
        raise ConfigError(f"{run_dir} is not a run directory (no {config_path(run_dir).name})")
    config = load_config(config_path(run_dir), overrides)
    trained = load_trained(run_dir, checkpoint, device)
    targets = resolve_split(config, trained.data).targets(split)
    return evaluate_model(
        trained.model, trained.data, targets, config.data.max_len, eval_options(config), device
    )
