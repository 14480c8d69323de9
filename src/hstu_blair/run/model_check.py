"""Checks of a run directory's model files before anything is allocated from them.

``load_trained`` calls these first: ``model.json`` must be JSON of the documented shape (required
keys, types, sizes in sane ranges, ``num_items`` equal to the number of item ids), and the
weights file's safetensors header (read alone: its length is checked against the file size
before it is parsed) must hold exactly the tensors, with the shapes, that the architecture of
``model.json`` builds (computed on the ``meta`` device, which allocates nothing). Each problem is
a :class:`~hstu_blair.errors.DataFormatError` of one line naming the file.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from safetensors import safe_open

from hstu_blair.errors import ConfigError, DataFormatError
from hstu_blair.models.build import Architecture, build_model, upgrade_architecture_keys
from hstu_blair.models.fusions import get_fusion
from hstu_blair.models.fusions.common import ShapeDependsOnText

MAX_HEADER_BYTES = 100 * 2**20
"""Largest safetensors header accepted (ours are a few KB)."""
MAX_ITEMS = 2**31 - 1
SIZE_LIMITS = {
    "num_items": MAX_ITEMS,
    "max_len": 2**20,
    "attn_len": 2**20 + 1,
    "d_model": 2**16,
    "num_blocks": 1024,
    "num_heads": 1024,
    "d_qk": 2**16,
    "d_v": 2**16,
    "ffn_dim": 2**20,
    "d_text": 2**16,
    "text_rank": 2**16,
    "time_scale": 10**9,
}
"""Largest value of each size field of the architecture (far above any real run)."""
REQUIRED_ARCH = ("name", "fusion", "num_items", "max_len", "attn_len")


def _expect(path: Path, value: Any, kind: type | tuple[type, ...], field: str, what: str) -> Any:
    ok = isinstance(value, kind) and not (isinstance(value, bool) and kind in (int, float, (int, float)))
    if not ok:
        raise DataFormatError(path, f"expected {what}, got {json.dumps(value)[:80]}", field=field)
    return value


def check_model_info(path: Path, info: dict[str, Any]) -> Architecture:
    """The architecture of a ``model.json`` whose keys, types and sizes were checked.

    Raises:
        DataFormatError: a missing key, a value of the wrong type, a size out of range, or
            ``num_items`` different from the number of item ids.

    Longer than 60 lines with this docstring: one check after another, each naming its field, read
    top to bottom.
    """
    for key in ("architecture", "dataset", "item_ids"):
        if key not in info:
            raise DataFormatError(path, f"lacks the key {key!r} (not a model.json written by train?)")
    values = _expect(path, info["architecture"], dict, "architecture", "an object")
    dataset = _expect(path, info["dataset"], dict, "dataset", "an object")
    for key in ("path", "data_hash"):
        _expect(path, dataset.get(key), str, f"dataset.{key}", "a string")
    item_ids = _expect(path, info["item_ids"], list, "item_ids", "a list of item ids")
    if not all(isinstance(i, str) for i in item_ids):
        raise DataFormatError(path, "expected every item id to be a string", field="item_ids")
    values = upgrade_architecture_keys(values)  # written before fusion_options
    known = {f.name: f for f in fields(Architecture)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise DataFormatError(path, f"unknown key(s) {', '.join(unknown)}", field="architecture")
    missing = [k for k in REQUIRED_ARCH if k not in values]
    if missing:
        raise DataFormatError(path, f"lacks {', '.join(missing)}", field="architecture")
    kinds = {"str": str, "int": int, "float": (int, float), "bool": bool, "dict[str, Any]": dict}
    for name, value in values.items():
        kind = kinds[str(known[name].type)]
        _expect(path, value, kind, f"architecture.{name}", f"a value of type {known[name].type}")
        limit = SIZE_LIMITS.get(name)
        if limit is not None and not 0 <= value <= limit:
            raise DataFormatError(path, f"{value} is outside [0, {limit}]", field=f"architecture.{name}")
    try:
        spec = get_fusion(values["fusion"])
        options = spec.make_options(values.get("fusion_options"))
    except ConfigError as exc:
        raise DataFormatError(path, str(exc), field="architecture.fusion") from None
    for name, value in asdict(options).items():
        limit = SIZE_LIMITS.get(name)
        if limit is not None and isinstance(value, int) and not 0 <= value <= limit:
            raise DataFormatError(
                path, f"{value} is outside [0, {limit}]", field=f"architecture.fusion_options.{name}"
            )
    arch = Architecture.from_dict(values)
    if arch.num_items != len(item_ids) or arch.num_items < 1:
        raise DataFormatError(
            path,
            f"{arch.num_items} items, but item_ids lists {len(item_ids)}",
            field="architecture.num_items",
        )
    store = info.get("text_store")
    if spec.uses_text:
        store = _expect(path, store, dict, "text_store", "an object (the model reads item texts)")
        dim = _expect(path, store.get("dim"), int, "text_store.dim", "an integer")
        for key in ("path", "sha256", "encoder"):
            _expect(path, store.get(key), str, f"text_store.{key}", "a string")
        if dim != arch.d_text:
            raise DataFormatError(
                path, f"{dim}, but architecture.d_text is {arch.d_text}", field="text_store.dim"
            )
    return arch


def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a safetensors file's header, nothing else read.

    The header length (the first 8 bytes) is checked against the file size before the header is
    parsed, and every tensor's data must lie inside the file.

    Raises:
        DataFormatError: missing, not a file, empty, truncated, or not a safetensors file.
    """
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise DataFormatError(path, "is not a file")
        with open(path, "rb") as fh:
            head = fh.read(8)
            length = int.from_bytes(head.ljust(8, b"\0"), "little")
            header = fh.read(length) if size >= 8 and length <= min(size - 8, MAX_HEADER_BYTES) else b""
    except OSError as exc:
        raise DataFormatError(path, f"cannot be read: {exc.strerror or exc}") from None
    if size == 0:
        raise DataFormatError(path, "is empty (0 bytes); expected safetensors weights")
    if size < 8:
        raise DataFormatError(path, f"is {size} bytes, too short for a safetensors header")
    if length > size - 8 or length > MAX_HEADER_BYTES:
        raise DataFormatError(
            path,
            f"declares a header of {length} bytes, but the file has {size} bytes "
            "(truncated, or not a safetensors file)",
        )
    end = _data_end(header)
    if end is not None and 8 + length + end > size:
        raise DataFormatError(
            path, f"is truncated: its tensors end at byte {8 + length + end}, but the file has {size} bytes"
        )
    try:
        with safe_open(str(path), framework="pt") as fh:
            shapes = {name: tuple(fh.get_slice(name).get_shape()) for name in fh.keys()}  # noqa: SIM118
    except Exception as exc:  # safetensors raises its own error types for every kind of damage
        raise DataFormatError(path, f"is not a readable safetensors file ({_one_line(exc)})") from None
    return shapes


def _data_end(header: bytes) -> int | None:
    """Where the last tensor's data ends (relative to the data section), if the header says."""
    try:
        entries = json.loads(header)
        ends = [int(v["data_offsets"][1]) for k, v in entries.items() if k != "__metadata__"]
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return None  # safe_open names the problem
    return max(ends, default=0)


def expected_shapes(arch: Architecture) -> dict[str, tuple[int, ...]] | None:
    """Tensor name -> shape of the model ``arch`` builds, computed on the meta device (nothing is
    allocated). None when a shape depends on the text values (a PCA whitening's rank:
    :class:`~hstu_blair.models.fusions.common.ShapeDependsOnText`)."""
    with torch.device("meta"), mock.patch.object(torch.Tensor, "normal_", _normal_unless_meta):
        text = torch.empty(arch.num_items + 1, arch.d_text) if get_fusion(arch.fusion).uses_text else None
        try:
            model = build_model(arch, text)
        except ShapeDependsOnText:
            return None
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


_NORMAL = torch.Tensor.normal_


def _normal_unless_meta(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """``Tensor.normal_``, a no-op on meta tensors: torch's meta ``normal_`` is written in Python
    and imports sympy and dynamo on first use (76 MB of a server's memory, for no value)."""
    return self if self.is_meta else _NORMAL(self, *args, **kwargs)


def check_weights(path: Path, arch: Architecture, info_path: Path) -> None:
    """The weights at ``path`` hold the tensors ``arch`` needs, with the same shapes.

    Raises:
        DataFormatError: damage to the file, or tensors missing, unexpected or of other shapes
            than the architecture of ``info_path`` (model.json) says.
    """
    found = safetensors_shapes(path)
    expected = expected_shapes(arch)
    if expected is None:  # text-dependent shapes: the item table here, load_state_dict the rest
        has_ids = get_fusion(arch.fusion).has_id_table
        expected = {"items.fusion.ids.weight": (arch.num_items + 1, arch.d_model)} if has_ids else {}
        found_here = {k: v for k, v in found.items() if k in expected}
        missing, extra = sorted(set(expected) - set(found)), []
    else:
        found_here = found
        missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    if missing or extra:
        parts = ([f"lacks {', '.join(missing[:5])}"] if missing else []) + (
            [f"has unexpected {', '.join(extra[:5])}"] if extra else []
        )
        raise DataFormatError(path, f"{'; '.join(parts)} for the architecture in {info_path}")
    for name, shape in found_here.items():
        if shape != expected[name]:
            raise DataFormatError(
                path,
                f"tensor {name} has shape {list(shape)}, but the architecture in {info_path} "
                f"needs {list(expected[name])}",
            )


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__
