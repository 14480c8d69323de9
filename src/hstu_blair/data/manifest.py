"""The prepared directory's ``manifest.json``: hashes, versions, counts."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from hstu_blair.errors import DataFormatError


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_record(path: Path) -> dict[str, Any]:
    """Name, size and sha256 of an input file, as recorded in manifests."""
    return {"name": path.name, "path": str(path), "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def versions() -> dict[str, str]:
    """Versions of Python, this package and the main libraries, for provenance records."""
    out = {"python": platform.python_version()}
    for pkg in ("hstu-blair", "torch", "polars", "pyarrow", "numpy", "transformers", "sentence-transformers"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON to a temporary file in the same directory, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(payload, fh, indent=2, sort_keys=False, default=str)
        fh.write("\n")
    os.replace(tmp, path)


def read_json_file(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``.

    Raises:
        DataFormatError: unreadable, not UTF-8, not JSON (line named), or not an object.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFormatError(path, f"cannot be read: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataFormatError(path, f"is not JSON ({exc.msg}, column {exc.colno})", line=exc.lineno) from None
    if not isinstance(value, dict):
        raise DataFormatError(path, f"expected a JSON object, got {type(value).__name__}")
    return value
