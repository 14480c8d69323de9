"""Typed run configuration: TOML file -> sections -> validated :class:`RunConfig`.

A config file has the sections ``[data]``, ``[text]``, ``[model]``, ``[train]`` and ``[eval]``;
any key may be overridden as ``section.key=value`` (values in TOML syntax, bare strings allowed).
``extends = "other.toml"`` at the top of a file inherits another file (paths relative to the file).
Unknown sections or keys are errors naming them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hstu_blair._compat import tomllib
from hstu_blair.errors import ConfigError
from hstu_blair.models.build import ARCHITECTURE_DEFAULTS
from hstu_blair.models.fusions import get_fusion


@dataclass
class DataConfig:
    """Which prepared dataset to train on, and how to split it.

    ``path`` is the prepared-dataset directory; when it does not exist and ``source`` is set,
    ``train`` prepares it first from ``input`` (the bundled ``ml-latest-small`` needs no input).
    ``protocol``: ``loo`` (leave-one-out with validation), ``reference`` (leave-one-out without
    validation, SPEC §1.5) or ``temporal`` (a global time split: train before ``valid_cutoff``,
    validate until ``cutoff``, test after it; each a date such as ``"2021-06-01"``, unix seconds
    or a quantile of the interaction times such as ``0.9``; ``valid_cutoff`` defaults to a
    validation period as large as the test period, ``"none"`` means no validation;
    ``temporal_targets``: each user's ``next`` interaction of a period, or ``all`` of them).
    ``time_unit``: the unit of the time differences HSTU buckets: ``s`` (seconds, ours) or
    ``source`` (the unit of the source files, as the reference: milliseconds for Amazon 2023).
    When ``train`` prepares the dataset on demand under the ``reference`` protocol, it uses the
    reference preprocessing (``prepare --reference``).
    """

    path: str = "data/ml-latest-small"
    source: str | None = None
    input: list[str] = field(default_factory=list)
    kcore: int | None = None
    protocol: Literal["loo", "reference", "temporal"] = "loo"
    cutoff: str | float | None = None
    valid_cutoff: str | float | None = None
    temporal_targets: Literal["next", "all"] = "next"
    max_len: int = 200
    time_unit: Literal["s", "source"] = "s"


@dataclass
class TextConfig:
    """Item text embeddings fused into item representations (used when ``model.fusion != "id"``).

    ``embeddings``: a store file written by ``hstu-blair embed`` (default: the dataset's store for
    ``encoder``, computed on first use). ``max_tokens``: truncation (default: the encoder's own limit,
    512 for BLaIR, 8191 for OpenAI); ``dimensions``: output size of OpenAI models (768 in the paper).
    """

    encoder: str = "minilm"
    embeddings: str | None = None
    dimensions: int | None = None
    batch_size: int = 64
    max_tokens: int | None = None


@dataclass
class ModelConfig:
    """Architecture. ``name``: ``hstu`` or ``sasrec``; ``fusion``: a registered item fusion
    (``hstu-blair fusions`` lists them with their options: ``id``, ``sum`` (the paper: ID +
    Linear(text)), ``text`` (text only), ``gated`` (ours; the default of the shipped text configs),
    ``residual`` (ours: whitened reduced text plus a zero-initialised ID residual), and any fusion
    registered since); ``fusion_options``: that fusion's options (``[model.fusion_options]`` in
    TOML, ``--set model.fusion_options.text_rank=64``), checked against what the fusion declares.
    ``attn_len`` is N of SPEC §2 (positions table size and HSTU's attention divisor; the reference
    uses max_len + 11). ``similarity``: ``cosine`` (queries and items L2-normalised, scores divided
    by ``train.temperature``; the reference) or ``dot`` (raw dot products, the original SASRec's and
    most libraries' SASRec). ``learned_norms`` (SASRec): LayerNorms with learned scale and shift and
    a final LayerNorm, as the original SASRec (the reference has neither).

    Configs written before ``fusion_options`` had ``id_dropout``, ``text_rank`` and ``text_whiten``
    directly under ``[model]`` (options of ``residual`` only): they are still read, as that fusion's
    options (deprecated; see :data:`LEGACY_FUSION_KEYS`)."""

    name: Literal["hstu", "sasrec"] = "hstu"
    fusion: str = "id"
    fusion_options: dict[str, Any] = field(default_factory=dict)
    d_model: int = ARCHITECTURE_DEFAULTS["d_model"]
    num_blocks: int = ARCHITECTURE_DEFAULTS["num_blocks"]
    num_heads: int = ARCHITECTURE_DEFAULTS["num_heads"]
    d_qk: int = ARCHITECTURE_DEFAULTS["d_qk"]
    d_v: int = ARCHITECTURE_DEFAULTS["d_v"]
    ffn_dim: int = ARCHITECTURE_DEFAULTS["ffn_dim"]
    dropout: float = ARCHITECTURE_DEFAULTS["dropout"]
    input_dropout: float = ARCHITECTURE_DEFAULTS["input_dropout"]
    attn_len: int | None = None
    similarity: Literal["cosine", "dot"] = ARCHITECTURE_DEFAULTS["similarity"]
    learned_norms: bool = ARCHITECTURE_DEFAULTS["learned_norms"]

    def resolved_attn_len(self, max_len: int) -> int:
        return self.attn_len if self.attn_len is not None else max_len + 11


@dataclass
class TrainConfig:
    """Optimisation.

    ``negatives``: ``per-row`` (R per user row shared by its positions, one batched matmul; the
    default), ``per-position`` (R per position, the reference) or ``shared`` (one set of R per
    batch, fastest, worse) or ``all`` (every item of the pool, a full softmax: ``num_negatives`` is
    ignored; a (positions x catalogue) logit matrix per step); ``negatives_pool``: ``catalogue`` (uniform over all items, the
    reference) or ``seen`` (only items occurring in training, for cold-start experiments).
    ``bucket_by_length``: batch users of similar length together (much less padding; the reference
    draws batches at random). ``eval_every``: validate every n epochs; ``patience``: early stopping
    after n evaluations without improvement of ``monitor`` (0 = never stop early). ``tf32``: TF32
    matrix products on NVIDIA GPUs. ``bf16``: bf16 autocast (GPUs, and CPUs with AVX512-BF16 or
    AMX; elsewhere emulated and slower, with a warning). ``threads``: torch threads (0 = torch's
    choice). ``temperature``: the softmax temperature; default 0.05 with ``model.similarity =
    "cosine"`` (the reference) and 1 with ``"dot"`` (:meth:`RunConfig.resolved_temperature`).
    ``refit`` (``loo`` only): once validation has chosen the best epoch E, a fresh model with the
    same seed trains E+1 epochs on every interaction before each test target (the validation
    targets included, as the published leave-one-out benchmarks' test models do) and is the one
    tested and saved; the validation metrics stay those of the first model (docs/results.md §0a).
    """

    epochs: int = 100
    batch_size: int = 128
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 0.0
    num_negatives: int = 128
    temperature: float | None = None
    negatives: Literal["shared", "per-row", "per-position", "all"] = "per-row"
    negatives_pool: Literal["catalogue", "seen"] = "catalogue"
    bucket_by_length: bool = True
    seed: int = 42
    eval_every: int = 1
    patience: int = 10
    monitor: str = "ndcg@10"
    device: str = "auto"
    threads: int = 0
    tf32: bool = True
    bf16: bool = False
    checkpoint_every: int = 1
    max_steps_per_epoch: int | None = None
    refit: bool = False


@dataclass
class EvalConfig:
    """Full-ranking evaluation. ``exclude``: items never ranked for a user: ``history`` = the whole
    known history (what the serving API never recommends, so evaluation measures what is served),
    ``window`` = only the truncated history the model reads (the reference's rule), ``none``;
    ``reference_ranks``: cap ranks at 2500 and count misses as rank 2501 in MRR.

    Configs of hstu-blair 0.1 wrote ``mask_history = true``: it is read as ``exclude = "window"``
    (what it meant), ``false`` as ``"none"``."""

    batch_size: int = 512
    exclude: Literal["history", "window", "none"] = "history"
    reference_ranks: bool = False


@dataclass
class TuneConfig:
    """What ``hstu-blair tune`` searches (ignored by ``train``; never written into a run's config).

    ``space``: setting -> choices. A setting is a config key (``"train.lr"``,
    ``"model.fusion_options.text_rank"``) or several keys that take one value together
    (``"model.d_model,model.d_qk,model.d_v,model.ffn_dim"``); choices are a list (categorical) or a
    range ``{low = 1e-4, high = 1e-2, log = true}`` (integers when both ends are integers;
    ``step`` optional). ``metric``: the *validation* metric maximised (each trial's best epoch).
    ``epochs`` / ``patience``: a trial's limits (default the config's ``train`` values).
    ``pruner``: ``median`` stops a trial whose validation curve is below the median of earlier
    trials at the same epoch (after ``startup_trials`` trials and ``warmup_epochs`` epochs), or
    ``none``. ``seed``: the sampler's seed (TPE). ``grace_seconds``: a trial whose process has
    been silent this long (killed) is marked failed and its settings are tried again.
    """

    metric: str = "ndcg@10"
    epochs: int | None = None
    patience: int | None = None
    pruner: Literal["median", "none"] = "median"
    startup_trials: int = 5
    warmup_epochs: int = 5
    seed: int = 0
    grace_seconds: int = 90
    space: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunConfig:
    """A whole run: one of each section, plus the output directory and a free-form name
    (``tune`` is read by ``hstu-blair tune`` only)."""

    name: str = "run"
    out_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    text: TextConfig = field(default_factory=TextConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def resolved_temperature(self) -> float:
        """``train.temperature``, or its default for ``model.similarity`` (cosine 0.05, dot 1)."""
        if self.train.temperature is not None:
            return self.train.temperature
        return COSINE_TEMPERATURE if self.model.similarity == "cosine" else 1.0


COSINE_TEMPERATURE = 0.05
"""The reference's temperature over cosine scores (SPEC §3)."""

SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "text": TextConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
    "tune": TuneConfig,
}


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (and convert lists to tuples, ints to floats)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"{where}: expected a table of key = value, got {value!r}")
        return dict(value)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {value!r}")
            return tuple(_coerce(v, a, where) for v, a in zip(value, args))
        inner = args[0] if args else Any
        items = [_coerce(v, inner, where) for v in value]
        return tuple(items) if origin is tuple else items
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is str and isinstance(value, (dt.date, dt.time)):  # TOML dates (cutoff = 2021-06-01)
        return value.isoformat()
    if tp is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def _build_section(cls: type, values: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(known))}"
        )
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in values.items()}
    return cls(**kwargs)


LEGACY_KEYS = {("eval", "mask_history"): ("exclude", {True: "window", False: "none"})}
"""Keys of hstu-blair 0.1 configs read as today's: (section, old key) -> (new key, value map)."""


LEGACY_FUSION_KEYS = {"id_dropout": 0.1, "text_rank": 64, "text_whiten": True}
"""``[model]`` keys of configs written before ``model.fusion_options`` (with the defaults they were
written with): the ``residual`` fusion's options. For ``residual`` they are read as its
``fusion_options``; other fusions ignored them, so their default values (which every recorded
``config.toml`` holds) are dropped and any other value is an error saying where the option goes."""


def _upgrade_legacy_fusion_keys(model: dict[str, Any], source: str) -> None:
    legacy = {key: model.pop(key) for key in LEGACY_FUSION_KEYS if key in model}
    if not legacy:
        return
    if model.get("fusion", "id") == "residual":
        options = model.setdefault("fusion_options", {})
        if not isinstance(options, dict):
            raise ConfigError(f"{source}: model.fusion_options must be a table")
        for key, value in legacy.items():
            options.setdefault(key, value)
        return
    changed = sorted(key for key, value in legacy.items() if value != LEGACY_FUSION_KEYS[key])
    if changed:
        raise ConfigError(
            f"{source}: model.{changed[0]} is a fusion option now: write it as "
            f"model.fusion_options.{changed[0]} ([model.fusion_options] in TOML)"
        )


def _upgrade_legacy(raw: dict[str, Any], source: str) -> None:
    if isinstance(raw.get("model"), dict):
        _upgrade_legacy_fusion_keys(raw["model"], source)
    for (section, old), (new, values) in LEGACY_KEYS.items():
        table = raw.get(section)
        if isinstance(table, dict) and old in table and new not in table:
            value = table.pop(old)
            if value not in values:
                raise ConfigError(f"{section}.{old}: expected true or false, got {value!r}")
            table[new] = values[value]


def config_from_dict(raw: dict[str, Any], source: str = "config") -> RunConfig:
    """Validate a nested dict (as read from TOML) into a :class:`RunConfig`."""
    _upgrade_legacy(raw, source)
    top_known = {f.name for f in dataclasses.fields(RunConfig)}
    unknown = sorted(set(raw) - top_known)
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(top_known))}"
        )
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: [{key}] must be a table")
            kwargs[key] = _build_section(SECTIONS[key], value, f"{source}: {key}")
        else:
            kwargs[key] = _coerce(value, str, f"{source}: {key}")
    config = RunConfig(**kwargs)
    _check_fusion(config.model, source)
    return config


def _check_fusion(model: ModelConfig, source: str) -> None:
    """``model.fusion`` is registered and ``model.fusion_options`` are its options (valid values)."""
    try:
        get_fusion(model.fusion).make_options(model.fusion_options)
    except ConfigError as exc:
        raise ConfigError(
            f"{source}: model.fusion: {exc}" if "unknown fusion" in str(exc) else f"{source}: {exc}"
        ) from None


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def read_toml(path: Path) -> dict[str, Any]:
    """Read a config TOML file, resolving ``extends`` chains (relative to each file)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    parent = raw.pop("extends", None)
    if parent is not None:
        raw = _merge(read_toml((path.parent / parent).resolve()), raw)
    return raw


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=3e-4"`` -> (["train", "lr"], 0.0003); the value is TOML, or a bare string."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected section.key=value")
    key, value = text.split("=", 1)
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    return key.strip().split("."), parsed


REFERENCE_OVERRIDES: tuple[str, ...] = (
    "data.protocol=reference",
    "data.time_unit=source",
    "train.negatives=per-position",
    "train.bucket_by_length=false",
    "train.patience=0",
    "eval.reference_ranks=true",
    "eval.exclude=window",
)
"""What ``--reference`` sets: the reference protocol (no validation split, test scored at every
evaluation, last epoch reported; a dataset prepared on demand gets the reference preprocessing),
time buckets in the source files' unit, per-position negatives, random batches, the truncated
history masked at evaluation, ranks capped at 2,500 with misses at 2,501."""


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None, reference: bool = False
) -> RunConfig:
    """Load a run config from a TOML file (or the defaults) and apply ``section.key=value`` overrides.

    ``reference=True`` applies :data:`REFERENCE_OVERRIDES` before ``overrides``.

    Raises:
        ConfigError: unknown section or key, wrong type, invalid value; the message names it.
    """
    raw = read_toml(Path(path)) if path is not None else {}
    for text in [*(REFERENCE_OVERRIDES if reference else ()), *(overrides or [])]:
        keys, value = parse_override(text)
        node = raw
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {k} is not a section")
        node[keys[-1]] = value
    return config_from_dict(raw, str(path) if path else "config")


def dump_config(config: RunConfig) -> str:
    """The config as TOML text (what a run directory records as ``config.toml``)."""
    lines: list[str] = []

    def fmt(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {fmt(x)}" for k, x in v.items()) + "}"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    d = config.to_dict()
    d.pop("tune")  # a search over runs, not part of one
    for key, value in d.items():
        if not isinstance(value, dict) and value is not None:
            lines.append(f"{key} = {fmt(value)}")
    for key, value in d.items():
        if isinstance(value, dict):
            lines.append(f"\n[{key}]")
            lines.extend(f"{k} = {fmt(v)}" for k, v in value.items() if v is not None)
    return "\n".join(lines) + "\n"
