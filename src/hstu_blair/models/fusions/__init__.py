"""Item fusions, one module each, and their registry (:mod:`.registry`).

Importing this package registers the built-in fusions in this order: ``id``, ``sum``, ``text``,
``gated``, ``residual``, then the fusions other packages declare in the entry point group
``hstu_blair.fusions`` (:func:`load_plugin_fusions`). A new fusion is one module that calls
:func:`register_fusion` (or, in another package, exposes a :class:`FusionSpec` as an entry point).
"""

import importlib

from hstu_blair.models.fusions.registry import (
    ENTRY_POINT_GROUP,
    FUSIONS,
    FusionSpec,
    NoOptions,
    describe_fusions,
    fusion_names,
    get_fusion,
    load_plugin_fusions,
    register_fusion,
)

BUILTIN_FUSIONS = ("id", "sum", "text", "gated", "residual")
"""The fusion modules shipped with the package, imported (so registered) in this order."""

for _module in BUILTIN_FUSIONS:
    importlib.import_module(f"{__name__}.{_module}")
load_plugin_fusions()

__all__ = [
    "BUILTIN_FUSIONS",
    "ENTRY_POINT_GROUP",
    "FUSIONS",
    "FusionSpec",
    "NoOptions",
    "describe_fusions",
    "fusion_names",
    "get_fusion",
    "load_plugin_fusions",
    "register_fusion",
]
