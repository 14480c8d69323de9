"""Order-only "user sequence lines" (the S3-Rec / P5 Amazon 2014 files, and any file of that shape)
-> :class:`RawDataset`.

Published files (plain or ``.gz``; no header, no quoting):

- the sequences (``user_sequence.txt``): one user per line, ``USER_ID ITEM_ID ITEM_ID ...``,
  the items oldest first, separated by spaces (any run of spaces or tabs).
- optionally an item table (``*.tsv``, e.g. ``sports_asin2title.tsv``): ``ITEM_ID<TAB>text``, one
  item per line; the text is the item's title (cleaned as every source cleans text).

There are no timestamps: an interaction's timestamp is its position in the user's line (0, 1, ...),
so time is order-only (``info["time"]``) and time-based splits and windows are meaningless here.
The published sets are already filtered (the S3-Rec Amazon sets are 5-core and evaluated
leave-one-out on these sequences), so this source's defaults change nothing: no k-core, and items
without a text stay with empty text (``items_without_text="keep"``; counted in the manifest's
``items_with_empty_text`` and ``info["items_not_in_item_table"]``). Ratings are 1.0 (implicit).

A line with a user but no item, or a user on two lines, is an error naming the file and line (with
``skip_bad_lines``: counted under ``bad_lines:<file>`` and left out).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import polars as pl

from hstu_blair.data import schema
from hstu_blair.data.ids import normalize_id
from hstu_blair.data.item_text import clean_text
from hstu_blair.data.options import PrepareOptions
from hstu_blair.data.sources.bad_lines import BadLines
from hstu_blair.data.sources.base import (
    ORDER_ONLY_TIME,
    RawDataset,
    dedupe_items,
    expand_inputs,
    find_file,
    order_only_interactions,
)
from hstu_blair.data.sources.files import read_bytes
from hstu_blair.data.sources.readers import split_lines, utf8_bytes
from hstu_blair.errors import DataFormatError, HstuBlairError

SEQUENCES_FILE = "user_sequence.txt"
"""The published name of the sequence file (S3-Rec); another name is given with ``interactions_file``."""
ITEM_TABLE_SUFFIXES = (".tsv", ".tsv.gz")


def read_user_lines(path: Path, bad: BadLines) -> dict[str, tuple[int, list[str]]]:
    """The sequence file -> {user id: (line, item ids oldest first)}, users in file order.

    Raises:
        DataFormatError: undecodable bytes, a line without an item, or a user repeated on another
            line (file and line named).
    """
    data = utf8_bytes(path, read_bytes(path), bad)
    out: dict[str, tuple[int, list[str]]] = {}
    for loc, text in split_lines(path, data).frame.iter_rows():
        user, *items = text.split()
        try:
            user = normalize_id(user, path=path, line=loc, field="user_id")
            items = [
                normalize_id(item, path=path, line=loc, field=f"item[{i}]") for i, item in enumerate(items)
            ]
            if not items:
                raise DataFormatError(
                    path, f"user {user!r} has no item; expected 'USER_ID ITEM_ID ITEM_ID ...'", line=loc
                )
            if user in out:
                raise DataFormatError(
                    path,
                    f"user {user!r} is repeated (first on line {out[user][0]})",
                    line=loc,
                    field="user_id",
                )
        except DataFormatError as exc:
            bad(exc)
            continue
        out[user] = (loc, items)
    return out


def read_item_table(path: Path, bad: BadLines, removed: Counter[str], ascii_only: bool) -> pl.DataFrame:
    """``ITEM_ID<TAB>text`` lines -> items (``item_id``, ``title``, ``text``; title = text).

    Repeated ids keep their first line (counted under ``duplicate_item_rows:<file>``).

    Raises:
        DataFormatError: undecodable bytes, or a line without a tab or with an empty id (file, line).
    """
    data = utf8_bytes(path, read_bytes(path), bad, sep="\t", names=["item_id", "text"])
    ids, texts = [], []
    for loc, line in split_lines(path, data).frame.iter_rows():
        item, tab, text = line.partition("\t")
        try:
            if not tab:
                raise DataFormatError(path, "expected 'ITEM_ID<TAB>text'", line=loc, field="text")
            item = normalize_id(item, path=path, line=loc, field="item_id")
        except DataFormatError as exc:
            bad(exc)
            continue
        ids.append(item)
        texts.append(clean_text(text, ascii_only))
    items = pl.DataFrame(
        {
            schema.ITEM_ID: pl.Series(ids, dtype=pl.String),
            schema.TITLE: pl.Series(texts, dtype=pl.String),
            schema.TEXT: pl.Series(texts, dtype=pl.String),
        }
    )
    return dedupe_items(items, path, removed)


def _input_files(paths: list[Path], options: PrepareOptions) -> tuple[Path, Path | None]:
    """(sequence file, item table or None): from the options, else by name among ``paths``."""
    sequences = options.interactions_file or find_file(paths, SEQUENCES_FILE)
    files = expand_inputs(paths)
    if sequences is None:
        plain = [p for p in files if not p.name.lower().endswith(ITEM_TABLE_SUFFIXES)]
        if len(plain) != 1:
            raise HstuBlairError(
                f"user-sequences: no {SEQUENCES_FILE}(.gz) among the inputs; name the sequence file "
                "with --interactions"
            )
        sequences = plain[0]
    if options.items_file is not None:
        return Path(sequences), Path(options.items_file)
    tables = [p for p in files if p.name.lower().endswith(ITEM_TABLE_SUFFIXES) and p != sequences]
    if len(tables) > 1:
        raise HstuBlairError(
            f"user-sequences: several item tables ({', '.join(p.name for p in tables)}); choose one with --items"
        )
    return Path(sequences), (tables[0] if tables else None)


def load_user_sequences(paths: list[Path], options: PrepareOptions) -> RawDataset:
    """Read a file of user sequence lines and an optional item table (see the module docstring).

    Args:
        paths: the folder (or the files) holding ``user_sequence.txt`` and an optional ``*.tsv``
            item table.
        options: ``interactions_file`` / ``items_file`` name the files explicitly;
            ``skip_bad_lines`` and ``ascii_only`` apply.

    Raises:
        DataFormatError: a malformed line (file and line named).
        HstuBlairError: the sequence file cannot be found, or the item table is ambiguous.
    """
    sequences_path, items_path = _input_files([Path(p) for p in paths], options)
    removed: Counter[str] = Counter()
    bad = BadLines(options.skip_bad_lines, removed)
    sequences = read_user_lines(sequences_path, bad)
    interactions = order_only_interactions((user, seq) for user, (_, seq) in sequences.items())
    info: dict[str, object] = {
        "time": ORDER_ONLY_TIME,
        "sequence_from": f"{sequences_path.name}: one user per line, items oldest first",
    }
    catalogue = None
    if items_path is not None:
        catalogue = read_item_table(items_path, bad, removed, options.ascii_only)
        missing = interactions[schema.ITEM_ID].unique().is_in(catalogue[schema.ITEM_ID].implode())
        info["items_not_in_item_table"] = int((~missing).sum())
        info["item_table_blank_texts"] = int((catalogue[schema.TEXT] == "").sum())
    stem = sequences_path.name.split(".")[0]
    name = sequences_path.parent.name if stem == SEQUENCES_FILE.split(".")[0] else stem
    return RawDataset(
        name=name,
        source="user-sequences",
        interactions=interactions,
        items=catalogue,
        files=[sequences_path] + ([items_path] if items_path is not None else []),
        removed=removed,
        bad_lines=bad.records,
        info=info,
    )
