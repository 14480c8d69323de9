"""RecBole atomic files (the format many public recommendation datasets ship in) -> :class:`RawDataset`.

Every atomic file is tab-separated, without quoting, plain or ``.gz``; its first line names each
field with its type, ``name:type``, the type one of ``token`` (an id or a word), ``token_seq``
(space-separated tokens, e.g. a history or a title), ``float`` and ``float_seq``.

Files, recognised by their suffix (the stems may differ: ``Games-6k.test.inter`` with ``Games.item``):

- interactions, in one of two forms (the header says which):

  - plain: ``<name>.inter`` (or split into ``.train.inter``, ``.valid.inter``, ``.test.inter``,
    read in that order), one interaction per row: ``user_id:token``, ``item_id:token`` and
    optionally ``timestamp:float`` (unix seconds, floored) and ``rating:float``. Without a
    timestamp, time is the row's position among the user's rows (order-only).
  - sequential: ``user_id:token<TAB>item_id_list:token_seq<TAB>item_id:token``, a history (oldest
    first) and its target, usually split into ``.train/.valid/.test.inter`` with every prefix of a
    user possibly its own row. Each user's whole sequence is rebuilt from all their rows: the longest
    row that is not cut (its history shorter than the longest history of the files, the cap), then
    the rows at the cap that continue it one item at a time (histories cut to their last ``cap``
    items, as UniSRec writes them). Every other row must be a prefix (or, at the cap, a window) of
    that sequence; one that is not is an error naming its file and line (``skip_bad_lines``: counted
    under ``removed.rows_disagree`` and not used). With ``timestamp_list:float_seq`` and
    ``timestamp:float`` fields the times are rebuilt with the items; otherwise time is order-only
    (timestamp = position in the sequence).

- item text: ``<name>.item`` (``item_id:token`` and any fields, e.g. ``title:token_seq``,
  ``categories:token_seq``, ``brand:token``) and/or ``<name>.text`` (``item_id:token<TAB>
  text:token_seq``). The text joins ``text_columns`` (default ``text``; when the table has no such
  field, all its ``token`` and ``token_seq`` fields but the id, in header order) with ". "; the title
  is ``title_column`` (default: the ``title`` field, if any). With both files, the text comes from
  ``.text`` and the title from ``.item``.
- id maps: ``<name>.item2index`` / ``<name>.user2index`` (``ORIGINAL_ID<TAB>token``, no header), as
  UniSRec ships them: when present, the external ids are the original ones (ASINs, reviewer ids),
  every token of the interactions must have one, and the item tables may be keyed by either.

The published sets are splits already filtered by their authors (5-core, leave-one-out on these
sequences), so this source's defaults change nothing: no k-core, and items without text stay
(``items_without_text="keep"``). Ratings are 1.0 unless a ``rating`` field gives them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from hstu_blair.data import schema
from hstu_blair.data.ids import normalize_id
from hstu_blair.data.item_text import clean_text, join_fields
from hstu_blair.data.options import PrepareOptions
from hstu_blair.data.sources.bad_lines import BadLines, count_bad
from hstu_blair.data.sources.base import (
    ORDER_ONLY_TIME,
    RawDataset,
    dedupe_items,
    expand_inputs,
    order_only_interactions,
)
from hstu_blair.data.sources.columns import Column, convert, id_column
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


# ---- the sequential form: each user's sequence rebuilt from their rows ------------------------------
Step = tuple[str, float | None]
"""One interaction of a sequential row: (item token, its time or ``None`` when the files have none)."""


@dataclass
class SequenceRow:
    """One sequential row: where it is, and its history + target."""

    path: Path
    line: int
    steps: tuple[Step, ...]


def sequential_rows(
    atomic: AtomicFile, options: PrepareOptions, bad: BadLines
) -> dict[str, list[SequenceRow]]:
    """{user token: rows} of one sequential ``.inter`` file, users in order of first appearance.

    Raises:
        DataFormatError: a missing or mistyped field, an invalid id, an empty target, or (with times)
            a time list of another length than the history (file, line and field named).
    """
    user, item = options.user_column, options.item_column
    history, time = item + LIST_SUFFIX, options.timestamp_column
    require_fields(atomic, {user: ("token",), item: ("token",), history: ("token_seq",)})
    timed = time in atomic.fields and time + LIST_SUFFIX in atomic.fields
    columns = [LOC, user, history, item] + ([time + LIST_SUFFIX, time] if timed else [])
    out: dict[str, list[SequenceRow]] = {}
    for values in atomic.table.frame.select(columns).iter_rows():
        loc, who, items, target = values[:4]
        try:
            who = normalize_id(who, path=atomic.path, line=loc, field=user)
            tokens = [*items.split(), target]
            tokens = [normalize_id(t, path=atomic.path, line=loc, field=item) for t in tokens]
            times: list[float | None] = [None] * len(tokens)
            if timed:
                times = [float(t) for t in values[4].split()] + [float(values[5] or "nan")]
                if len(times) != len(tokens):
                    raise DataFormatError(
                        atomic.path,
                        f"{len(times) - 1} times for {len(tokens) - 1} history items",
                        line=loc,
                        field=time + LIST_SUFFIX,
                    )
        except DataFormatError as exc:
            bad(exc)
            continue
        out.setdefault(who, []).append(SequenceRow(atomic.path, loc, tuple(zip(tokens, times))))
    return out


def _first_row(rows: list[SequenceRow], cap: int) -> SequenceRow:
    """Where a user's sequence starts: the longest row not cut at the cap, else the row at the cap
    that no other row continues (its history is not another row's history shifted by one)."""
    uncut = [r for r in rows if len(r.steps) - 1 < cap]
    if uncut:
        return max(uncut, key=lambda r: len(r.steps))
    shifted = {r.steps[1:] for r in rows}
    return next((r for r in rows if r.steps[:-1] not in shifted), rows[0])


def _fits(steps: tuple[Step, ...], sequence: list[Step], cap: int) -> bool:
    """Whether a row is a prefix of ``sequence`` or, at the cap, a window of it."""
    n = len(steps)
    if n - 1 < cap:
        return tuple(sequence[:n]) == steps
    return any(tuple(sequence[i : i + n]) == steps for i in range(len(sequence) - n + 1))


def rebuild_sequence(rows: list[SequenceRow], cap: int) -> tuple[list[Step], list[SequenceRow]]:
    """A user's whole sequence from their rows, and the rows that disagree with it.

    Starts from :func:`_first_row`, then appends the target of the row at the cap whose history is
    the sequence's last ``cap`` steps, while there is one (histories cut to their last ``cap`` items).
    """
    first = _first_row(rows, cap)
    sequence = list(first.steps)
    continuing: dict[tuple[Step, ...], list[SequenceRow]] = {}
    for row in rows:
        if len(row.steps) - 1 >= cap and row is not first:
            continuing.setdefault(row.steps[:-1], []).append(row)
    while len(sequence) >= cap and (nexts := continuing.get(tuple(sequence[len(sequence) - cap :]))):
        sequence.append(nexts.pop(0).steps[-1])
    disagree = [row for row in rows if not _fits(row.steps, sequence, cap)]
    return sequence, disagree


def rebuild_sequences(
    files: list[AtomicFile], options: PrepareOptions, bad: BadLines, info: dict[str, object]
) -> tuple[dict[str, list[Step]], int]:
    """Every user's sequence from the sequential rows of all ``files``; the number of rows that disagree.

    Raises:
        DataFormatError: a row that is neither a prefix nor a window of its user's rebuilt sequence
            (file and line named), unless ``skip_bad_lines``.
    """
    rows: dict[str, list[SequenceRow]] = {}
    for atomic in files:
        for user, user_rows in sequential_rows(atomic, options, bad).items():
            rows.setdefault(user, []).extend(user_rows)
    cap = max((len(r.steps) - 1 for user_rows in rows.values() for r in user_rows), default=0)
    sequences: dict[str, list[Step]] = {}
    n_disagree = 0
    for user, user_rows in rows.items():
        sequence, disagree = rebuild_sequence(user_rows, cap)
        for row in disagree:
            shown = " ".join(step[0] for step in row.steps[:5])
            bad(
                DataFormatError(
                    row.path,
                    f"user {user!r}: history + target '{shown} ...' is not a prefix (nor, at the history "
                    f"cap of {cap}, a window) of the user's sequence rebuilt from all their rows",
                    line=row.line,
                )
            )
        n_disagree += len(disagree)
        sequences[user] = sequence
    info["history_cap"] = cap
    info["users_longer_than_cap"] = sum(len(s) > cap + 1 for s in sequences.values())
    info["rows_read"] = sum(len(r) for r in rows.values())
    return sequences, n_disagree


def sequence_interactions(sequences: dict[str, list[Step]]) -> tuple[pl.DataFrame, bool]:
    """Rebuilt sequences -> interactions, and whether they have times: the rows' times when every
    step had one, else positions (order-only)."""
    interactions = order_only_interactions((user, [s[0] for s in steps]) for user, steps in sequences.items())
    times = [s[1] for steps in sequences.values() for s in steps]
    timed = bool(times) and all(t is not None and t == t for t in times)  # t == t: not NaN
    if timed:
        seconds = pl.Series(times, dtype=pl.Float64).floor().cast(pl.Int64)
        interactions = interactions.with_columns(seconds.alias(schema.TIMESTAMP))
    return interactions, timed


# ---- the plain form: one interaction per row ----------------------------------------------------------
def plain_interactions(
    files: list[AtomicFile], options: PrepareOptions, bad: BadLines
) -> tuple[pl.DataFrame, bool]:
    """Rows of the plain ``.inter`` files, in file order -> interactions; whether they had timestamps.

    Raises:
        DataFormatError: a missing or mistyped field, an invalid id, or a missing timestamp (file,
            line and field named).
    """
    user, item, time, rating = (
        options.user_column,
        options.item_column,
        options.timestamp_column,
        options.rating_column,
    )
    frames, timed = [], all(time in f.fields for f in files)
    for atomic in files:
        require_fields(atomic, {user: ("token",), item: ("token",)})
        table = atomic.table
        columns = {schema.USER_ID: id_column(table, user), schema.ITEM_ID: id_column(table, item)}
        if timed:
            require_fields(atomic, {time: ("float",)})
            seconds = pl.col(time).str.strip_chars().cast(pl.Float64, strict=False).floor().cast(pl.Int64)
            columns[schema.TIMESTAMP] = Column(time, seconds, "a unix time in seconds")
        if rating and rating in atomic.fields:
            value = pl.col(rating).str.strip_chars().cast(pl.Float32, strict=False)
            columns[schema.RATING] = Column(rating, value, "a number")
        frame = convert(table, columns, bad)
        if schema.RATING not in frame.columns:
            frame = frame.with_columns(pl.lit(1.0, pl.Float32).alias(schema.RATING))
        frames.append(frame)
    interactions = pl.concat(frames, how="diagonal_relaxed")
    if not timed:  # order-only: the row's position among the user's rows
        position = pl.int_range(pl.len()).over(schema.USER_ID).cast(pl.Int64)
        interactions = interactions.with_columns(position.alias(schema.TIMESTAMP))
    return interactions.select(list(schema.INTERACTIONS_SCHEMA)), timed


# ---- item tables and id maps ------------------------------------------------------------------------
def text_fields(atomic: AtomicFile, options: PrepareOptions) -> tuple[list[str], str | None]:
    """(fields joined into the text, title field) of an item table.

    The text: ``text_columns`` when the table has them all; when they are the default (``text``) and
    the table has no such field, every ``token`` / ``token_seq`` field but the id, in header order.
    The title: ``title_column``, else the ``title`` field when there is one.

    Raises:
        DataFormatError: a named text or title field is not in the header (the fields are listed).
    """
    names = [n for n in atomic.fields if n != options.item_column]
    wanted = list(options.text_columns)
    if wanted == PrepareOptions().text_columns and not all(n in atomic.fields for n in wanted):
        wanted = [n for n in names if atomic.fields[n].type in ("token", "token_seq")]
    title = options.title_column or ("title" if "title" in atomic.fields else None)
    require_fields(atomic, dict.fromkeys([*wanted, *([title] if title else [])], FIELD_TYPES))
    return wanted, title


def read_item_table(
    path: Path, options: PrepareOptions, bad: BadLines, removed: Counter[str], to_external: dict[str, str]
) -> pl.DataFrame:
    """A ``.item`` or ``.text`` file -> items (``item_id``, ``title``, ``text``), keyed by external id.

    A key that is a token of the item map (``to_external``) is mapped to its original id; other keys
    are taken as they are (already original ids, or tokens when there is no map).
    """
    atomic = read_atomic(path, bad)
    require_fields(atomic, {options.item_column: ("token",)})
    fields, title_field = text_fields(atomic, options)
    table = atomic.table
    keep = list(dict.fromkeys([*fields, *([title_field] if title_field else [])]))
    rows = convert(table, {schema.ITEM_ID: id_column(table, options.item_column)}, bad, keep=keep)
    originals = set(to_external.values())
    ids, titles, texts = [], [], []
    for row in rows.iter_rows(named=True):
        key = row[schema.ITEM_ID]
        ids.append(key if key in originals else to_external.get(key, key))
        texts.append(join_fields(clean_text(row[f] or "", options.ascii_only) for f in fields))
        titles.append(clean_text(row[title_field] or "", options.ascii_only) if title_field else "")
    items = pl.DataFrame(
        {
            schema.ITEM_ID: pl.Series(ids, dtype=pl.String),
            schema.TITLE: pl.Series(titles, dtype=pl.String),
            schema.TEXT: pl.Series(texts, dtype=pl.String),
        }
    )
    return dedupe_items(items, path, removed)


def item_catalogue(
    files: AtomicFiles,
    options: PrepareOptions,
    bad: BadLines,
    removed: Counter[str],
    to_external: dict[str, str],
) -> pl.DataFrame | None:
    """The items' titles and texts: from ``.item``, ``.text``, or both (text of ``.text``, title of ``.item``)."""
    tables = {
        kind: read_item_table(path, options, bad, removed, to_external)
        for kind, path in (("item", files.item), ("text", files.text))
        if path is not None
    }
    if len(tables) < 2:
        return next(iter(tables.values()), None)
    item, text = tables["item"], tables["text"]
    merged = item.join(text, on=schema.ITEM_ID, how="full", coalesce=True, suffix="_text")
    return merged.select(
        schema.ITEM_ID,
        pl.col(schema.TITLE).fill_null(pl.col(schema.TITLE + "_text")).fill_null(""),
        pl.col(schema.TEXT + "_text").fill_null(pl.col(schema.TEXT)).fill_null(""),
    )


def to_external_ids(
    interactions: pl.DataFrame, column: str, mapping: dict[str, str], path: Path
) -> pl.DataFrame:
    """Replace the tokens of ``column`` by their original ids from an id map.

    Raises:
        DataFormatError: a token the map does not hold (the map file is named, with the token).
    """
    missing = interactions[column].filter(~interactions[column].is_in(list(mapping))).unique()
    if missing.len():
        shown = ", ".join(repr(t) for t in missing.head(5).to_list())
        raise DataFormatError(
            path, f"{missing.len()} {column} token(s) of the interactions are not in this map: {shown}"
        )
    mapped = interactions[column].replace_strict(
        list(mapping), list(mapping.values()), return_dtype=pl.String
    )
    return interactions.with_columns(mapped.alias(column))


# ---- the source -------------------------------------------------------------------------------------
def _name(files: AtomicFiles) -> str:
    return files.inter[0].name.split(".")[0]


def load_recbole(paths: list[Path], options: PrepareOptions) -> RawDataset:
    """Read a dataset's RecBole atomic files (see the module docstring).

    Args:
        paths: the folder of the atomic files, or the files.
        options: ``interactions_file`` / ``items_file`` name files explicitly; ``user_column``,
            ``item_column``, ``timestamp_column``, ``rating_column`` name the fields (RecBole's
            defaults: ``user_id``, ``item_id``, ``timestamp``, ``rating``); ``text_columns`` and
            ``title_column`` choose the item text; ``skip_bad_lines`` and ``ascii_only`` apply.

    Raises:
        DataFormatError: a malformed header, row or id, a sequential row that disagrees with its
            user's sequence, or a token missing from an id map (file, line and field named).
        HstuBlairError: the interaction files cannot be found or are ambiguous.
    """
    files = find_atomic_files([Path(p) for p in paths], options)
    removed: Counter[str] = Counter()
    bad = BadLines(options.skip_bad_lines, removed)
    inter = [read_atomic(path, bad) for path in files.inter]
    history = options.item_column + LIST_SUFFIX
    sequential = any(history in atomic.fields for atomic in inter)
    info: dict[str, object] = {"form": "sequential" if sequential else "interactions"}
    if sequential:
        sequences, disagree = rebuild_sequences(inter, options, bad, info)
        if disagree:
            removed["rows_disagree"] += disagree
        interactions, timed = sequence_interactions(sequences)
    else:
        interactions, timed = plain_interactions(inter, options, bad)
    info["time"] = "unix seconds (timestamp field)" if timed else ORDER_ONLY_TIME
    item_map = read_id_map(files.item_map, bad) if files.item_map else {}
    if files.item_map:
        interactions = to_external_ids(interactions, schema.ITEM_ID, item_map, files.item_map)
    if files.user_map:
        user_map = read_id_map(files.user_map, bad)
        interactions = to_external_ids(interactions, schema.USER_ID, user_map, files.user_map)
    info["ids"] = "original ids (the id maps)" if files.item_map or files.user_map else "the files' tokens"
    items = item_catalogue(files, options, bad, removed, item_map)
    return RawDataset(
        name=_name(files),
        source="recbole",
        interactions=interactions,
        items=items,
        files=files.all,
        removed=removed,
        bad_lines=bad.records,
        info=info,
    )
