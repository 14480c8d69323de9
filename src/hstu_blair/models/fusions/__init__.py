"""Item fusions, one module each, and their registry (:mod:`.registry`).

Importing this package registers the built-in fusions in this order: ``id``, ``sum``, ``text``,
``gated``, ``residual``. A new fusion is one module that calls :func:`register_fusion`.
"""

import importlib

from hstu_blair.models.fusions.registry import (
    FUSIONS,
    FusionSpec,
    NoOptions,
    describe_fusions,
    fusion_names,
    get_fusion,
    register_fusion,
)

BUILTIN_FUSIONS = ("id", "sum", "text", "gated", "residual")
"""The fusion modules shipped with the package, imported (so registered) in this order."""

for _module in BUILTIN_FUSIONS:
    importlib.import_module(f"{__name__}.{_module}")

__all__ = [
    "BUILTIN_FUSIONS",
    "FUSIONS",
    "FusionSpec",
    "NoOptions",
    "describe_fusions",
    "fusion_names",
    "get_fusion",
    "register_fusion",
]
