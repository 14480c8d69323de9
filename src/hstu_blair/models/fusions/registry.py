"""The fusion registry: each fusion declares its module, options and capabilities in one place.

A fusion module defines its ``nn.Module`` (constructed as ``cls(num_items, d_model, text, options,
item_counts)``), an options dataclass and a :class:`FusionSpec`, and calls :func:`register_fusion`.
The config, the model builder, serving and the CLI read the registry: adding a fusion touches its
own module and its tests only.

Options dataclasses: every field has a default and a one-line doc (``field(metadata={"doc": ...})``)
and a type of ``int``, ``float``, ``bool`` or ``str``; a ``check()`` method may reject bad values
(raise ``ValueError`` naming the option). :meth:`FusionSpec.options` builds them from a plain dict:
an unknown option is an error listing the valid ones, a value of the wrong type names the option.

Fusions of other packages are found through the entry point group ``hstu_blair.fusions``
(:func:`load_plugin_fusions`): a package declares, in its ``pyproject.toml``,

    [project.entry-points."hstu_blair.fusions"]
    my-fusion = "my_package.my_fusion:SPEC"

(a :class:`FusionSpec`, or a module that registers its fusion when imported); the registry loads
them when the package's fusions are first imported, and again when a name is not found, so the
config, the CLI and serving accept the fusion like a built-in one.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import logging
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from hstu_blair.errors import ConfigError

_LOG = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "hstu_blair.fusions"
"""The entry point group through which other packages declare fusions."""


@dataclass(frozen=True)
class NoOptions:
    """A fusion without options."""


@dataclass(frozen=True)
class FusionSpec:
    """What a fusion is and can do.

    Attributes:
        name: the ``model.fusion`` value.
        module: the ``nn.Module`` class, constructed as ``module(num_items, d_model, text, options,
            item_counts)``; ``text`` is None unless ``uses_text``, ``item_counts`` the (n+1,) training
            interactions per item (None: zeros, until a checkpoint is loaded).
        options: the options dataclass.
        summary: one line for help texts and docs.
        uses_text: reads the frozen text matrix (and can then score items added by text).
        has_id_table: holds a learned per-item ID table as ``module.ids`` (an ``nn.Embedding``),
            whose rows :meth:`ItemEmbedding.drop_id_rows` can empty.
        ranks_items_without_id_row: trained to rank items whose ID part is absent (items added at
            run time, held-out cold items), so serving them is expected to work; a bool, or a
            function of the options (``sum`` is, once its ID part is dropped in training).
    """

    name: str
    module: type[nn.Module]
    options: type = NoOptions
    summary: str = ""
    uses_text: bool = True
    has_id_table: bool = True
    ranks_items_without_id_row: bool | Callable[[Any], bool] = False

    def make_options(self, values: Mapping[str, Any] | None = None) -> Any:
        """The options dataclass from a plain dict (missing keys take their defaults).

        Raises:
            ConfigError: an unknown option (the valid ones are listed), a value of the wrong type or
                out of range (the option is named).
        """
        values = dict(values or {})
        known = {f.name: f for f in dataclasses.fields(self.options)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            valid = ", ".join(known) or "none"
            raise ConfigError(
                f"model.fusion_options: unknown option(s) {', '.join(unknown)} for fusion {self.name!r}; "
                f"valid: {valid}"
            )
        hints = typing.get_type_hints(self.options)
        kwargs = {
            key: _check_type(value, hints[key], f"model.fusion_options.{key}")
            for key, value in values.items()
        }
        options = self.options(**kwargs)
        check = getattr(options, "check", None)
        if check is not None:
            try:
                check()
            except ValueError as exc:
                raise ConfigError(f"model.fusion_options.{exc} (fusion {self.name!r})") from None
        return options

    def ranks_without_id_row(self, options: Any) -> bool:
        """Whether this fusion with ``options`` is trained to rank items whose ID part is absent."""
        flag = self.ranks_items_without_id_row
        return bool(flag(options)) if callable(flag) else bool(flag)

    def option_docs(self) -> list[tuple[str, Any, str]]:
        """(name, default, one-line doc) of every option."""
        return [(f.name, f.default, f.metadata.get("doc", "")) for f in dataclasses.fields(self.options)]


def _check_type(value: Any, tp: Any, where: str) -> Any:
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if (tp in (int, float) and isinstance(value, bool)) or not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


FUSIONS: dict[str, FusionSpec] = {}
"""Registered fusions by name, in registration order."""


def register_fusion(spec: FusionSpec) -> FusionSpec:
    """Add ``spec`` to :data:`FUSIONS` (registering the same spec again is a no-op).

    Raises:
        ValueError: another fusion of that name is registered, or an option has no default.
    """
    existing = FUSIONS.get(spec.name)
    if existing is not None and existing != spec:
        raise ValueError(
            f"a fusion named {spec.name!r} is already registered ({existing.module.__qualname__})"
        )
    for f in dataclasses.fields(spec.options):
        if f.default is dataclasses.MISSING:
            raise ValueError(f"fusion {spec.name!r}: option {f.name!r} needs a default")
    FUSIONS[spec.name] = spec
    return spec


def fusion_names() -> list[str]:
    """The registered fusion names, in registration order."""
    return list(FUSIONS)


def get_fusion(name: str) -> FusionSpec:
    """The spec of fusion ``name``.

    Raises:
        ConfigError: unknown name; the message lists the registered fusions.
    """
    if name not in FUSIONS:
        load_plugin_fusions()  # a plugin installed (or put on the path) since the first look
    spec = FUSIONS.get(name)
    if spec is None:
        raise ConfigError(f"unknown fusion {name!r}; valid fusions: {', '.join(FUSIONS)}")
    return spec


_LOADED: set[str] = set()  # entry points loaded already ("name=value")


def load_plugin_fusions() -> list[str]:
    """Register the fusions other packages declare in the entry point group ``hstu_blair.fusions``
    (each entry point loaded once). An entry point that cannot be loaded is logged and skipped,
    so one broken plugin never stops the others or the built-in fusions.

    Returns:
        The names of the entry points loaded by this call.
    """
    loaded = []
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        key = f"{entry.name}={entry.value}"
        if key in _LOADED:
            continue
        _LOADED.add(key)
        try:
            value = entry.load()
            if isinstance(value, FusionSpec):
                register_fusion(value)
        except Exception as exc:  # a plugin's own import errors, or a name clash
            _LOG.warning("fusion plugin %s (%s) is not loaded: %s", entry.name, entry.value, exc)
            continue
        loaded.append(entry.name)
    return loaded


def describe_fusions() -> str:
    """One line per registered fusion: name, summary and options with defaults (for --help and docs)."""
    lines = []
    for spec in FUSIONS.values():
        options = ", ".join(f"{name}={default!r}" for name, default, _ in spec.option_docs())
        lines.append(f"{spec.name}: {spec.summary}" + (f" (options: {options})" if options else ""))
    return "\n".join(lines)
