"""Re-evaluating a saved run: its model (safetensors + model.json) on its validation or test split."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from hstu_blair.config import RunConfig, load_config, parse_override
from hstu_blair.data.splits import EvalTargets, Split
from hstu_blair.errors import ConfigError
from hstu_blair.evaluation.breakdown import POPULARITY_EDGES, metrics_by_target_popularity
from hstu_blair.evaluation.evaluate import evaluate_model, rank_targets
from hstu_blair.recipes.resolve import eval_options, train_item_counts
from hstu_blair.recipes.resolve import split as resolve_split
from hstu_blair.run.layout import Checkpoint, config_path, is_run_dir
from hstu_blair.run.model_files import TrainedModel, load_trained
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
    config, trained, targets, _ = _load(run_dir, split, checkpoint, overrides, device)
    return evaluate_model(
        trained.model, trained.data, targets, config.data.max_len, eval_options(config), device
    )


def evaluate_by_popularity(
    run_dir: str | Path,
    split: Literal["valid", "test"] = "test",
    checkpoint: Checkpoint = "best",
    overrides: list[str] | None = None,
    device: str = "cpu",
    edges: Sequence[int] = POPULARITY_EDGES,
) -> list[dict[str, Any]]:
    """Metrics of a saved run on ``split`` by the popularity of the target item: one row per bin of
    training interactions (0, 1-4, 5-19, 20-99, 100-499, 500+ by default; the counts the
    most-popular list orders by), with ``bin``, ``n_targets``, ``share`` and the bin's metrics.

    Two runs on the same data get the same bins, so where text helps (the tail) and where it does
    not (the head) can be read side by side. Arguments as in :func:`evaluate`; ``edges``: the lower
    bounds of the bins after the first.
    """
    config, trained, targets, run_split = _load(run_dir, split, checkpoint, overrides, device)
    options = eval_options(config)
    ranks, _ = rank_targets(trained.model, trained.data, targets, config.data.max_len, options, device)
    data = trained.data
    target_items = data.item_seq[data.offsets[targets.users] + targets.positions]  # (E,)
    counts = train_item_counts(data, run_split).numpy()  # (n+1,)
    return metrics_by_target_popularity(ranks, target_items, counts, edges, options.miss_rank)


def _load(
    run_dir: str | Path,
    split: Literal["valid", "test"],
    checkpoint: Checkpoint,
    overrides: list[str] | None,
    device: str,
) -> tuple[RunConfig, TrainedModel, EvalTargets, Split]:
    """The run's config (with ``eval.*`` overrides), model, the split's targets and the split."""
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
    run_split = resolve_split(config, trained.data)
    return config, trained, run_split.targets(split), run_split
