"""Reading the item log of earlier versions (``RUN_DIR/added_items.jsonl``) for its import into the store.

One JSON object per line (``v``, ``seq``, ``part``, ``parts``, ``item_id``, ``title``, ``text``,
``dim``, ``vector`` as base64 of little-endian float32, ``sha256`` of the other fields as
canonical JSON). Every readable record is kept; a line that is not one (bad JSON, checksum,
width, a torn last line) or that repeats an id is set aside with its line number and reason,
never costing the records around it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Container
from pathlib import Path
from typing import Any

import numpy as np

from hstu_blair.serving.store import ItemRecord, SetAside

LEGACY_LOG = "added_items.jsonl"
"""File name of the old item log inside a run directory."""
FIELDS = ("v", "seq", "part", "parts", "item_id", "title", "text", "dim", "vector")


def _canonical(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def encode_legacy_record(
    seq: int, part: int, parts: int, item_id: str, title: str, text: str, vector: np.ndarray
) -> bytes:
    """One line of the old log (with its ``\\n``), as earlier versions wrote it (tests use it)."""
    row = np.ascontiguousarray(vector, dtype="<f4")  # (d_text,)
    fields: dict[str, Any] = {
        "v": 1,
        "seq": seq,
        "part": part,
        "parts": parts,
        "item_id": item_id,
        "title": title,
        "text": text,
        "dim": int(row.shape[0]),
        "vector": base64.b64encode(row.tobytes()).decode("ascii"),
    }
    fields["sha256"] = hashlib.sha256(_canonical(fields)).hexdigest()
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"


def _parse(raw: bytes, dim: int) -> tuple[ItemRecord, int]:
    """The record of one line and its group's first seq; raises ValueError saying what is wrong."""
    try:
        fields = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a JSON line ({exc})") from None
    if not isinstance(fields, dict):
        raise ValueError("not a JSON object")
    if fields.get("v") != 1:
        raise ValueError(f"format version {fields.get('v')!r}; expected 1")
    if sorted(fields) != sorted((*FIELDS, "sha256")):
        raise ValueError(f"fields {sorted(fields)}; expected {sorted((*FIELDS, 'sha256'))}")
    digest = fields.pop("sha256")
    if hashlib.sha256(_canonical(fields)).hexdigest() != digest:
        raise ValueError("checksum mismatch")
    ints, strs = ("seq", "part", "parts", "dim"), ("item_id", "title", "text", "vector")
    if not all(type(fields[k]) is int for k in ints) or not all(isinstance(fields[k], str) for k in strs):
        raise ValueError("wrong field types")
    if fields["dim"] != dim:
        raise ValueError(f"vector width {fields['dim']}, but the run's text vectors have {dim}")
    try:
        data = base64.b64decode(fields["vector"], validate=True)
    except ValueError:
        raise ValueError("vector is not base64") from None
    if len(data) != 4 * dim:
        raise ValueError(f"vector has {len(data)} bytes, expected {4 * dim}")
    vector = np.frombuffer(data, dtype="<f4").astype(np.float32)  # (dim,)
    if not np.isfinite(vector).all():
        raise ValueError("vector holds NaN or inf")
    first = fields["seq"] - fields["part"]
    return ItemRecord(fields["item_id"], fields["title"], fields["text"], vector, batch=f"log-{first}"), first


def read_legacy_log(
    path: str | Path, dim: int, taken: Container[str]
) -> tuple[list[ItemRecord], list[SetAside]]:
    """Every readable item of an old log, in file order, and every line set aside.

    Args:
        path: the ``added_items.jsonl`` file.
        dim: d_text, the width every vector must have.
        taken: item ids already in the catalogue (a record reusing one is set aside).
    """
    path = Path(path)
    kept: list[ItemRecord] = []
    aside: list[SetAside] = []
    seen: dict[str, int] = {}
    with open(path, "rb") as f:
        for line, raw in enumerate(f, start=1):
            source = f"{path.name}:{line}"
            if not raw.endswith(b"\n"):
                aside.append(SetAside(source, "torn last line (a write cut short; never acknowledged)", raw))
                continue
            if not raw.strip(b"\0\n\r\t "):
                if raw.strip(b"\n"):
                    aside.append(SetAside(source, "zero-filled line (a crash mid-write)", raw))
                continue
            try:
                record, _ = _parse(raw, dim)
            except ValueError as exc:
                aside.append(SetAside(source, f"unreadable record: {exc}", raw))
                continue
            if record.item_id in seen:
                why = f"duplicate of line {seen[record.item_id]} (item id {record.item_id!r})"
                aside.append(SetAside(source, why, raw))
                continue
            if record.item_id in taken:
                why = f"item id {record.item_id!r} is already in the trained catalogue"
                aside.append(SetAside(source, why, raw))
                continue
            seen[record.item_id] = line
            kept.append(record)
    return kept, aside
