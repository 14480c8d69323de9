"""RecBole atomic files: which files a dataset has (by suffix), their typed ``name:type`` header and
rows, and the ``.item2index`` / ``.user2index`` id maps."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from hstu_blair.data.ids import normalize_id
from hstu_blair.data.options import PrepareOptions
from hstu_blair.data.sources.bad_lines import BadLines, count_bad
from hstu_blair.data.sources.base import expand_inputs
from hstu_blair.data.sources.files import read_bytes
from hstu_blair.data.sources.readers import LOC, Table, split_fields, split_lines, take_header, utf8_bytes
from hstu_blair.errors import DataFormatError, HstuBlairError

FIELD_TYPES = ("token", "token_seq", "float", "float_seq")
SPLITS = ("train", "valid", "test")
LIST_SUFFIX = "_list"
"""RecBole's name for a field's history: ``item_id_list`` holds the ``item_id`` tokens before the target."""


# ---- atomic files: typed header, rows -------------------------------------------------------------
@dataclass(frozen=True)
class AtomicField:
    """One column of an atomic file: its name and type (one of :data:`FIELD_TYPES`)."""

    name: str
    type: str


@dataclass
class AtomicFile:
    """The rows of one atomic file as string columns named by field (plus ``_loc``), and its fields."""

    table: Table
    fields: dict[str, AtomicField]

    @property
    def path(self) -> Path:
        """The file."""
        return self.table.path


def parse_header(path: Path, line: int, names: list[str]) -> dict[str, AtomicField]:
    """``name:type`` header cells -> fields by name.

    Raises:
        DataFormatError: a cell without ``:``, an unknown type or a repeated name (file, line, field).
    """
    fields: dict[str, AtomicField] = {}
    for cell in names:
        name, colon, kind = cell.rpartition(":")
        if not colon or not name:
            raise DataFormatError(
                path, f"header cell {cell!r} is not 'name:type' (a RecBole atomic file header)", line=line
            )
        if kind not in FIELD_TYPES:
            raise DataFormatError(
                path, f"type {kind!r} is not one of {', '.join(FIELD_TYPES)}", line=line, field=name
            )
        if name in fields:
            raise DataFormatError(path, "field named twice in the header", line=line, field=name)
        fields[name] = AtomicField(name, kind)
    return fields


def _number_problems(table: Table, field: AtomicField) -> pl.Expr:
    """True where a ``float`` / ``float_seq`` value does not parse (empty values are missing, allowed)."""
    text = pl.col(field.name).str.strip_chars()
    if field.type == "float":
        return (text != "") & text.cast(pl.Float64, strict=False).is_null()
    parts = text.str.split(" ").list.eval(pl.element().filter(pl.element() != ""))
    return parts.list.eval(pl.element().cast(pl.Float64, strict=False).is_null()).list.any()


def _number_error(table: Table, field: AtomicField) -> Callable[[dict[str, Any]], DataFormatError]:
    expected = "a number" if field.type == "float" else "space-separated numbers"
    return lambda row: table.error(
        row[LOC], f"expected {expected} (type {field.type}), found {row[field.name]!r}", field=field.name
    )


def check_numbers(atomic: AtomicFile, bad: BadLines) -> AtomicFile:
    """Report (or count and drop) the rows whose ``float`` / ``float_seq`` fields do not parse."""
    for field in atomic.fields.values():
        if field.type not in ("float", "float_seq"):
            continue
        frame = atomic.table.frame
        wrong = frame.filter(_number_problems(atomic.table, field))
        if wrong.height:
            count_bad(bad, wrong, _number_error(atomic.table, field))
            atomic.table.frame = frame.filter(~pl.col(LOC).is_in(wrong[LOC].implode()))
    return atomic


def read_atomic(path: Path, bad: BadLines) -> AtomicFile:
    """One atomic file: typed header, then rows split at tabs (no quoting), numbers checked.

    Raises:
        DataFormatError: undecodable bytes, a malformed header, a row with another number of fields,
            or a ``float`` value that is not a number (file, line and field named).
    """
    data = utf8_bytes(path, read_bytes(path), bad, sep="\t")
    lines, header_line = take_header(split_lines(path, data), "\t")
    fields = parse_header(path, header_line, lines.columns)
    table = split_fields(lines, "\t", list(fields), bad, data)
    table.columns = list(fields)
    return check_numbers(AtomicFile(table, fields), bad)


def require_fields(atomic: AtomicFile, wanted: dict[str, tuple[str, ...]]) -> None:
    """Raise unless every field of ``wanted`` is present with one of its allowed types."""
    for name, types in wanted.items():
        field = atomic.fields.get(name)
        if field is None:
            have = ", ".join(f"{f.name}:{f.type}" for f in atomic.fields.values())
            raise DataFormatError(
                atomic.path, f"no field {name!r} in the header; it has {have}", line=1, field=name
            )
        if field.type not in types:
            raise DataFormatError(
                atomic.path,
                f"field has type {field.type}; expected {' or '.join(types)}",
                line=1,
                field=name,
            )


# ---- which files -------------------------------------------------------------------------------------
def _suffix(path: Path) -> str:
    """``test.inter``, ``inter``, ``item``, ``text``, ``item2index``... of ``Name.test.inter.gz``."""
    parts = path.name.split(".")
    if parts[-1] == "gz":
        parts = parts[:-1]
    if len(parts) >= 3 and parts[-1] == "inter" and parts[-2] in SPLITS:
        return f"{parts[-2]}.inter"
    return parts[-1] if len(parts) > 1 else ""


@dataclass
class AtomicFiles:
    """The atomic files of one dataset: interactions (in reading order), item tables, id maps."""

    inter: list[Path]
    item: Path | None = None
    text: Path | None = None
    item_map: Path | None = None
    user_map: Path | None = None

    @property
    def all(self) -> list[Path]:
        """Every file found: the interaction files, then the item tables and id maps."""
        extra = (self.item, self.text, self.item_map, self.user_map)
        return [*self.inter, *(p for p in extra if p is not None)]


def find_atomic_files(paths: list[Path], options: PrepareOptions) -> AtomicFiles:
    """The dataset's atomic files by suffix; ``interactions_file`` / ``items_file`` override.

    Raises:
        HstuBlairError: no interaction file, both plain and split ones, or two files of one kind.
    """
    by_kind: dict[str, list[Path]] = {}
    for path in expand_inputs(paths):
        by_kind.setdefault(_suffix(path), []).append(path)

    def one(kind: str) -> Path | None:
        found = by_kind.get(kind, [])
        if len(found) > 1:
            names = ", ".join(p.name for p in found)
            hint = " (name one with --items)" if kind in ("item", "text") else ""
            raise HstuBlairError(f"recbole: several .{kind} files: {names}{hint}")
        return found[0] if found else None

    if options.interactions_file is not None:
        inter = [Path(options.interactions_file)]
    else:
        split = [p for s in SPLITS if (p := one(f"{s}.inter")) is not None]
        plain = one("inter")
        if split and plain:
            raise HstuBlairError(
                f"recbole: both {plain.name} and split files ({', '.join(p.name for p in split)}); "
                "name the one to read with --interactions"
            )
        inter = split or ([plain] if plain else [])
    if not inter:
        raise HstuBlairError("recbole: no .inter file among the inputs (nor --interactions)")
    files = AtomicFiles(inter, one("item"), one("text"), one("item2index"), one("user2index"))
    if options.items_file is not None:
        kind = "text" if _suffix(Path(options.items_file)) == "text" else "item"
        setattr(files, kind, Path(options.items_file))
        setattr(files, "item" if kind == "text" else "text", None)
    return files


# ---- id maps ---------------------------------------------------------------------------------------
def read_id_map(path: Path, bad: BadLines) -> dict[str, str]:
    """``ORIGINAL_ID<TAB>token`` lines -> {token: original id}.

    Raises:
        DataFormatError: a line without two fields, an invalid id, or a token or id mapped twice.
    """
    data = utf8_bytes(path, read_bytes(path), bad, sep="\t", names=["original_id", "token"])
    table = split_fields(split_lines(path, data), "\t", ["original_id", "token"], bad, data)
    out: dict[str, str] = {}
    seen: dict[str, int] = {}
    for loc, original, token in table.frame.select(LOC, "original_id", "token").iter_rows():
        try:
            original = normalize_id(original, path=path, line=loc, field="original_id")
            token = normalize_id(token, path=path, line=loc, field="token")
            if token in out or original in seen:
                field, value = ("token", token) if token in out else ("original_id", original)
                raise DataFormatError(path, f"{value!r} is mapped twice", line=loc, field=field)
        except DataFormatError as exc:
            bad(exc)
            continue
        out[token] = original
        seen[original] = loc
    return out
