"""hstu-blair: text-enhanced generative sequential recommendation (HSTU, HSTU-BLaIR, SASRec).

The public API, one name per stage (the same words as the CLI)::

    import hstu_blair as hb

    data = hb.prepare("movielens", ["ml-100k/"], "data/ml-100k")      # -> SequenceData
    hb.embed(data, "minilm")                                         # -> embedding store path
    config = hb.load_config("configs/ml-100k/hstu-text.toml")         # -> RunConfig
    result = hb.train(config)                                         # -> RunResult (run directory)
    hb.evaluate(result.run_dir, split="test")                         # -> metrics
    rec = hb.Recommender.load(result.run_dir)                         # serving, external ids
    rec.recommend(["1", "50", "260"], k=10)

Also: ``PrepareOptions``, ``load_dataset``, ``build_text_encoder``, ``TEXT_ENCODERS``, ``pretrain_text``, ``RunConfig``,
``FUSIONS``, ``FusionSpec``, ``register_fusion`` (the item fusions, :mod:`hstu_blair.models.fusions`),
``tune``, ``init_config`` / ``starting_config``, ``cold_start``, ``reproduce``, ``report``, ``compare_runs``, ``serve``, ``check_run``, ``import_events``,
``convert_run``, ``update`` / ``rollback`` (model versions of a run), ``LiveRecommender`` (serves the
newest version without a restart), ``ItemFilter`` (business filters on recommendations), ``temporal_study`` / ``temporal_report`` / ``temporal_rescore``. Each is imported on first
use (``help(hb.train)`` shows its documentation), so ``import hstu_blair`` stays light and the
data commands never load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from hstu_blair._version import __version__

_API: dict[str, tuple[str, str]] = {
    "prepare": ("hstu_blair.data.prepare", "prepare"),
    "PrepareOptions": ("hstu_blair.data.options", "PrepareOptions"),
    "SequenceData": ("hstu_blair.data.dataset", "SequenceData"),
    "load_dataset": ("hstu_blair.data.dataset", "load_dataset"),
    "embed": ("hstu_blair.text.embed", "embed_dataset"),
    "build_text_encoder": ("hstu_blair.text.registry", "build_text_encoder"),
    "TEXT_ENCODERS": ("hstu_blair.text.registry", "TEXT_ENCODERS"),
    "pretrain_text": ("hstu_blair.recipes.pretrain_text", "pretrain_text"),
    "RunConfig": ("hstu_blair.config", "RunConfig"),
    "FUSIONS": ("hstu_blair.models.fusions", "FUSIONS"),
    "FusionSpec": ("hstu_blair.models.fusions", "FusionSpec"),
    "register_fusion": ("hstu_blair.models.fusions", "register_fusion"),
    "load_config": ("hstu_blair.config", "load_config"),
    "train": ("hstu_blair.recipes.train", "train"),
    "evaluate": ("hstu_blair.recipes.evaluate", "evaluate"),
    "evaluate_by_popularity": ("hstu_blair.recipes.evaluate", "evaluate_by_popularity"),
    "tune": ("hstu_blair.recipes.tune", "tune"),
    "init_config": ("hstu_blair.recipes.init_config", "init_config"),
    "starting_config": ("hstu_blair.recipes.init_config", "starting_config"),
    "cold_start": ("hstu_blair.recipes.cold_start", "cold_start"),
    "reproduce": ("hstu_blair.recipes.reproduce", "reproduce"),
    "convert_run": ("hstu_blair.recipes.convert", "convert_run"),
    "update": ("hstu_blair.recipes.update", "update"),
    "rollback": ("hstu_blair.run.versions", "rollback"),
    "temporal_study": ("hstu_blair.recipes.temporal_study", "temporal_study"),
    "temporal_report": ("hstu_blair.reports.temporal", "temporal_report"),
    "temporal_rescore": ("hstu_blair.recipes.temporal_study", "rescore"),
    "LiveRecommender": ("hstu_blair.serving.live", "LiveRecommender"),
    "Recommender": ("hstu_blair.serving.recommender", "Recommender"),
    "ItemFilter": ("hstu_blair.serving.item_filter", "ItemFilter"),
    "serve": ("hstu_blair.serving.app", "serve"),
    "check_run": ("hstu_blair.run.check", "check_run"),
    "import_events": ("hstu_blair.serving.events_import", "import_events"),
    "report": ("hstu_blair.reports.report", "write_report"),
    "compare_runs": ("hstu_blair.recipes.compare", "compare_runs"),
    "comparison_markdown": ("hstu_blair.recipes.compare", "comparison_markdown"),
    "select_default": ("hstu_blair.reports.selection", "select_default"),
}
"""Public name -> (module, attribute), imported on first access."""

__all__ = [
    "__version__",
    "prepare",
    "PrepareOptions",
    "SequenceData",
    "load_dataset",
    "embed",
    "build_text_encoder",
    "TEXT_ENCODERS",
    "pretrain_text",
    "RunConfig",
    "FUSIONS",
    "FusionSpec",
    "register_fusion",
    "load_config",
    "train",
    "evaluate",
    "evaluate_by_popularity",
    "tune",
    "init_config",
    "starting_config",
    "cold_start",
    "reproduce",
    "convert_run",
    "update",
    "rollback",
    "temporal_study",
    "temporal_report",
    "temporal_rescore",
    "Recommender",
    "ItemFilter",
    "LiveRecommender",
    "serve",
    "check_run",
    "import_events",
    "report",
    "compare_runs",
    "comparison_markdown",
    "select_default",
]
assert set(__all__) == {"__version__", *_API}


def __getattr__(name: str) -> Any:
    if name in _API:
        module, attribute = _API[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value  # later accesses skip this function
        return value
    raise AttributeError(f"module 'hstu_blair' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # what type checkers and IDEs see
    from hstu_blair.config import RunConfig, load_config
    from hstu_blair.data.dataset import SequenceData, load_dataset
    from hstu_blair.data.options import PrepareOptions
    from hstu_blair.data.prepare import prepare
    from hstu_blair.models.fusions import FUSIONS, FusionSpec, register_fusion
    from hstu_blair.recipes.cold_start import cold_start
    from hstu_blair.recipes.compare import compare_runs, comparison_markdown
    from hstu_blair.recipes.convert import convert_run
    from hstu_blair.recipes.evaluate import evaluate, evaluate_by_popularity
    from hstu_blair.recipes.pretrain_text import pretrain_text
    from hstu_blair.recipes.reproduce import reproduce
    from hstu_blair.recipes.temporal_study import rescore as temporal_rescore
    from hstu_blair.recipes.temporal_study import temporal_study
    from hstu_blair.recipes.train import train
    from hstu_blair.recipes.update import update
    from hstu_blair.reports.report import write_report as report
    from hstu_blair.reports.selection import select_default
    from hstu_blair.reports.temporal import temporal_report
    from hstu_blair.run.check import check_run
    from hstu_blair.run.versions import rollback
    from hstu_blair.serving.app import serve
    from hstu_blair.serving.events_import import import_events
    from hstu_blair.serving.item_filter import ItemFilter
    from hstu_blair.serving.live import LiveRecommender
    from hstu_blair.serving.recommender import Recommender
    from hstu_blair.text.embed import embed_dataset as embed
    from hstu_blair.text.registry import TEXT_ENCODERS, build_text_encoder
