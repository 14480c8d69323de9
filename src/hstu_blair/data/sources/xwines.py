"""X-Wines (de Azambuja et al., BDCC 2023; CC0 1.0): wine ratings and the wine catalogue -> :class:`RawDataset`.

Published layout (the Slim, Test and Full releases share it): a zip (``XWines_Slim_1K_wines_150K_ratings.zip``)
holding, or a folder holding, two UTF-8 CSV files with headers:

- ``XWines_*_ratings.csv``: ``RatingID,UserID,WineID,Vintage,Rating,Date`` (``Date`` is
  ``YYYY-MM-DD HH:MM:SS``, read as UTC; ``Rating`` 1 to 5 in half stars; ``Vintage`` a year or ``N.V.``).
- ``XWines_*_wines.csv``: ``WineID,WineName,Type,Elaborate,Grapes,Harmonize,ABV,Body,Acidity,Code,
  Country,RegionID,RegionName,WineryID,WineryName,Website,Vintages``; ``Grapes``, ``Harmonize`` and
  ``Vintages`` are Python-literal lists (``"['Pork', 'Rich Fish']"``), read with :func:`ast.literal_eval`.

Interactions: user = ``UserID``, item = ``WineID`` (the vintage is not part of the item; it is
recorded nowhere), timestamp = ``Date``, rating = ``Rating``; file order breaks ties.

Item text: ``"<WineName>. Type: <Type>. Grapes: a, b. Pairs with: x, y. Body: <Body>. Acidity:
<Acidity>. Region: <RegionName>, <Country>. Winery: <WineryName>"`` (empty parts left out);
title = ``WineName``.
"""

from __future__ import annotations

import ast
import zipfile
from collections import Counter
from pathlib import Path

import polars as pl

from hstu_blair.data import schema
from hstu_blair.data.item_text import clean_text, field_text, join_fields
from hstu_blair.data.options import PrepareOptions
from hstu_blair.data.sources.bad_lines import BadLines
from hstu_blair.data.sources.base import RawDataset, dedupe_items, expand_inputs
from hstu_blair.data.sources.columns import Column, convert, int_text, number
from hstu_blair.data.sources.readers import LOC, Table, read_delimited
from hstu_blair.errors import DataFormatError, HstuBlairError

RATINGS_HEADER = ["RatingID", "UserID", "WineID", "Vintage", "Rating", "Date"]
WINES_HEADER = [
    "WineID", "WineName", "Type", "Elaborate", "Grapes", "Harmonize", "ABV", "Body", "Acidity", "Code",
    "Country", "RegionID", "RegionName", "WineryID", "WineryName", "Website", "Vintages",
]  # fmt: skip
LIST_FIELDS = ("Grapes", "Harmonize")
"""Python-literal list fields put into the item text."""


def _is_ratings(name: str) -> bool:
    return name.startswith("XWines_") and name.endswith("_ratings.csv")


def _is_wines(name: str) -> bool:
    return name.startswith("XWines_") and name.endswith("_wines.csv")


def _members(
    paths: list[Path], options: PrepareOptions
) -> tuple[tuple[Path, bytes], tuple[Path, bytes], list[Path]]:
    """((ratings path, bytes), (wines path, bytes), files read); zip members get ``zip/member`` paths."""
    found: dict[str, tuple[Path, bytes]] = {}
    files: list[Path] = []
    explicit = {"ratings": options.interactions_file, "wines": options.items_file}
    for kind, path in explicit.items():
        if path is not None:
            found[kind] = (Path(path), Path(path).read_bytes())
            files.append(Path(path))
    for path in expand_inputs(paths):
        name = path.name
        if name.lower().endswith(".zip"):
            try:
                archive = zipfile.ZipFile(path)
            except zipfile.BadZipFile as exc:
                raise DataFormatError(path, f"not a readable zip archive ({exc})") from None
            with archive:
                for member in archive.namelist():
                    base = member.rsplit("/", 1)[-1]
                    kind = "ratings" if _is_ratings(base) else "wines" if _is_wines(base) else None
                    if kind and kind not in found:
                        found[kind] = (path / member, archive.read(member))
                        if path not in files:
                            files.append(path)
        elif _is_ratings(name) and "ratings" not in found:
            found["ratings"] = (path, path.read_bytes())
            files.append(path)
        elif _is_wines(name) and "wines" not in found:
            found["wines"] = (path, path.read_bytes())
            files.append(path)
    missing = [k for k in ("ratings", "wines") if k not in found]
    if missing:
        where = ", ".join(map(str, paths)) or "(no inputs)"
        raise HstuBlairError(
            f"xwines: no {' or '.join(missing)} file in {where}; expected XWines_*_ratings.csv and "
            "XWines_*_wines.csv, or the published zip holding them"
        )
    return found["ratings"], found["wines"], files


def read_ratings(path: Path, data: bytes, bad: BadLines) -> pl.DataFrame:
    """The ratings CSV -> interactions in file order."""
    table = read_delimited(path, ",", bad, expected_header=RATINGS_HEADER, data=data)
    when = pl.col("Date").str.strip_chars().str.strptime(pl.Datetime("us"), "%Y-%m-%d %H:%M:%S", strict=False)
    columns = {
        schema.USER_ID: Column("UserID", int_text("UserID"), "an integer user id"),
        schema.ITEM_ID: Column("WineID", int_text("WineID"), "an integer wine id"),
        schema.TIMESTAMP: Column("Date", when.dt.epoch("s"), "a date 'YYYY-MM-DD HH:MM:SS'"),
        schema.RATING: Column("Rating", number("Rating", pl.Float32), "a numeric rating"),
    }
    return convert(table, columns, bad)


def _literal_list(table: Table, loc: int, column: str, value: str) -> list[object]:
    """One Python-literal list field; raises naming the file, line and field."""
    text = value.strip()
    if not text:
        return []
    try:
        parsed = ast.literal_eval(text)
    except (SyntaxError, ValueError) as exc:
        raise table.error(
            loc, f"expected a Python list literal like ['a', 'b'], found {text[:60]!r} ({exc})", column
        ) from None
    if not isinstance(parsed, (list, tuple)):
        raise table.error(loc, f"expected a Python list literal, found a {type(parsed).__name__}", column)
    return list(parsed)


def wine_text(row: dict[str, object], ascii_only: bool = False) -> str:
    """The text of one wine (see the module docstring); list fields already parsed."""

    def f(value: object) -> str:
        return field_text(value, ascii_only)

    region = ", ".join(p for p in (f(row["RegionName"]), f(row["Country"])) if p)
    parts = [
        f(row["WineName"]),
        ("Type: " + f(row["Type"])) if f(row["Type"]) else "",
        ("Grapes: " + f(row["Grapes"])) if f(row["Grapes"]) else "",
        ("Pairs with: " + f(row["Harmonize"])) if f(row["Harmonize"]) else "",
        ("Body: " + f(row["Body"])) if f(row["Body"]) else "",
        ("Acidity: " + f(row["Acidity"])) if f(row["Acidity"]) else "",
        ("Region: " + region) if region else "",
        ("Winery: " + f(row["WineryName"])) if f(row["WineryName"]) else "",
    ]
    return join_fields(parts)


def read_wines(
    path: Path, data: bytes, bad: BadLines, removed: Counter[str], ascii_only: bool
) -> pl.DataFrame:
    """The wines CSV -> items (``item_id``, ``title``, ``text``) in file order."""
    table = read_delimited(path, ",", bad, expected_header=WINES_HEADER, data=data)
    keep = ["WineName", "Type", *LIST_FIELDS, "Body", "Acidity", "Country", "RegionName", "WineryName"]
    rows = convert(
        table,
        {schema.ITEM_ID: Column("WineID", int_text("WineID"), "an integer wine id")},
        bad,
        keep=[LOC, *keep],
    )
    ids, titles, texts = [], [], []
    for row in rows.iter_rows(named=True):
        try:
            for column in LIST_FIELDS:
                row[column] = _literal_list(table, row[LOC], column, row[column] or "")
        except DataFormatError as exc:
            bad(exc)
            continue
        ids.append(row[schema.ITEM_ID])
        titles.append(clean_text(row["WineName"] or ""))
        texts.append(wine_text(row, ascii_only))
    items = pl.DataFrame(
        {schema.ITEM_ID: ids, schema.TITLE: titles, schema.TEXT: texts},
        schema={schema.ITEM_ID: pl.String, schema.TITLE: pl.String, schema.TEXT: pl.String},
    )
    return dedupe_items(items, path, removed)


def load_xwines(paths: list[Path], options: PrepareOptions) -> RawDataset:
    """Read an X-Wines release (the zip, or its two CSV files).

    Args:
        paths: the zip, the folder holding it (or the CSVs), or the CSV files.
        options: ``interactions_file``/``items_file`` name the CSVs; ``skip_bad_lines`` and
            ``ascii_only`` apply.

    Raises:
        DataFormatError: a wrong header, field count, id, rating, date or list literal, naming the
            file (``archive.zip/member.csv`` inside the zip), line and field.
    """
    (ratings_path, ratings_data), (wines_path, wines_data), files = _members(
        [Path(p) for p in paths], options
    )
    removed: Counter[str] = Counter()
    bad = BadLines(options.skip_bad_lines, removed)
    interactions = read_ratings(ratings_path, ratings_data, bad)
    items = read_wines(wines_path, wines_data, bad, removed, options.ascii_only)
    release = ratings_path.name.split("_")[1].lower() if ratings_path.name.count("_") >= 2 else ""
    info: dict[str, object] = {
        "ratings_file": ratings_path.name,
        "wines_file": wines_path.name,
        "timestamp_unit": "s (Date 'YYYY-MM-DD HH:MM:SS' read as UTC)",
        "item": "WineID (vintage not part of the item)",
        "num_wines": items.height,
    }
    return RawDataset(
        name=f"xwines-{release}" if release else "xwines",
        source="xwines",
        interactions=interactions,
        items=items,
        files=files,
        removed=removed,
        bad_lines=bad.records,
        info=info,
    )
