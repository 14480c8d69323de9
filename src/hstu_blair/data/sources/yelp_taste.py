"""Yelp as the TASTE / DIF-SR papers publish it (Yelp dataset terms: non-commercial) -> :class:`RawDataset`.

Published files (tab-separated with a header line, no quoting; plain or ``.gz``):

- ``item.txt``: ``item_id, item_name, categories, address, city, state``.
- ``test.txt``: header ``user_id, seq, target``; each line is the user id, then 50 previous item ids
  oldest first and padded with ``0`` at the end, then the target: 52 fields.
- ``valid.txt``: the same, one step earlier (its target is the item before the test target).

There are no timestamps: each user's sequence is rebuilt from ``test.txt`` (the non-zero history,
then the target), and the interaction's timestamp is its position in that sequence (0, 1, ...):
time is order-only (``info["time"]``), so time-based splits and windows are meaningless here.
``valid.txt`` is checked against it: its history + target must be the test sequence without its
last item; when the test history is full (50 ids), the valid line may hold one earlier item in
front, which is not used (``info["valid_one_earlier_item_unused"]``). A user whose lines disagree
is an error naming the valid line (with ``skip_bad_lines``: counted in
``removed.valid_disagrees`` and kept as test.txt gives it). Histories of more than 51 items
were cut to their last 51 by the publishers; they stay so (``info["users_at_51_cap"]``).

Item text: ``"<name>. Categories: a, b. Location: <city>, <state>"`` (empty parts left out);
title = ``item_name``; the address is not used. Ratings are 1.0 (implicit).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import polars as pl

from hstu_blair.data import schema
from hstu_blair.data.ids import normalize_id
from hstu_blair.data.item_text import clean_text, join_fields
from hstu_blair.data.options import PrepareOptions
from hstu_blair.data.sources.bad_lines import BadLines
from hstu_blair.data.sources.base import (
    ORDER_ONLY_TIME,
    RawDataset,
    dedupe_items,
    find_file,
    order_only_interactions,
)
from hstu_blair.data.sources.columns import Column, convert, int_text
from hstu_blair.data.sources.files import read_bytes
from hstu_blair.data.sources.readers import read_tsv, split_lines, take_header, utf8_bytes
from hstu_blair.errors import DataFormatError

ITEMS_FILE = "item.txt"
TEST_FILE = "test.txt"
VALID_FILE = "valid.txt"
ITEMS_HEADER = ["item_id", "item_name", "categories", "address", "city", "state"]
SEQ_HEADER = ["user_id", "seq", "target"]
HISTORY = 50
"""Item ids before the target on each line of ``test.txt`` / ``valid.txt``."""


def read_sequences(path: Path, bad: BadLines) -> dict[str, tuple[int, list[int]]]:
    """``test.txt`` / ``valid.txt`` -> {user id: (line, history + target)}, users in file order.

    Raises:
        DataFormatError: a wrong header, a line without 52 fields, a non-integer id, a non-zero id
            after the padding, a zero target, or a repeated user (file, line and field named).
    """
    data = utf8_bytes(path, read_bytes(path), bad, sep="\t", names=SEQ_HEADER)
    lines, _ = take_header(split_lines(path, data), "\t", SEQ_HEADER)
    out: dict[str, tuple[int, list[int]]] = {}
    for loc, text in lines.frame.iter_rows():
        fields = text.split("\t")
        try:
            if len(fields) != HISTORY + 2:
                raise DataFormatError(
                    path,
                    f"expected the user id, {HISTORY} history ids and the target ({HISTORY + 2} tab-separated fields), found {len(fields)}",
                    line=loc,
                )
            user = normalize_id(fields[0], path=path, line=loc, field="user_id")
            ids = []
            for i, value in enumerate(fields[1:]):
                name = "target" if i == HISTORY else f"seq[{i}]"
                if not value.strip().isdigit():
                    raise DataFormatError(
                        path,
                        f"expected a non-negative integer item id, found {value!r}",
                        line=loc,
                        field=name,
                    )
                ids.append(int(value))
            history, target = ids[:HISTORY], ids[HISTORY]
            used = [i for i in history if i != 0]
            if history[: len(used)] != used:
                after = next(i for i in range(history.index(0), HISTORY) if history[i] != 0)
                raise DataFormatError(
                    path,
                    "a non-zero item id after the 0 padding; expected ids oldest first, then 0s",
                    line=loc,
                    field=f"seq[{after}]",
                )
            if target == 0:
                raise DataFormatError(
                    path, "target is 0 (padding); expected an item id", line=loc, field="target"
                )
            if user in out:
                raise DataFormatError(
                    path,
                    f"user id {user!r} is repeated (first on line {out[user][0]})",
                    line=loc,
                    field="user_id",
                )
        except DataFormatError as exc:
            bad(exc)
            continue
        out[user] = (loc, used + [target])
    return out


def check_valid(
    test: dict[str, tuple[int, list[int]]], valid: dict[str, tuple[int, list[int]]], path: Path, bad: BadLines
) -> Counter[str]:
    """Check every user's ``valid.txt`` sequence against the test one; count the outcomes.

    Returns:
        ``agree`` (valid = test without its last item), ``one_earlier_item`` (test history full, valid
        holds one earlier item in front), ``disagree`` and ``missing`` (counted only when skipping).
    """
    counts: Counter[str] = Counter()
    for user, (_, seq) in test.items():
        if user not in valid:
            bad(DataFormatError(path, f"user {user!r} of {TEST_FILE} has no line here", field="user_id"))
            counts["missing"] += 1
            continue
        loc, earlier = valid[user]
        if earlier == seq[:-1]:
            counts["agree"] += 1
        elif len(seq) == HISTORY + 1 and len(earlier) == HISTORY + 1 and earlier[1:] == seq[:-1]:
            counts["one_earlier_item"] += 1
        else:
            bad(
                DataFormatError(
                    path,
                    f"user {user!r}: history + target {earlier[:5]}... is not the {TEST_FILE} sequence without its target",
                    line=loc,
                )
            )
            counts["disagree"] += 1
    extra = len(set(valid) - set(test))
    if extra:
        counts["valid_only_users"] = extra
    return counts


def read_items(path: Path, bad: BadLines, removed: Counter[str], ascii_only: bool) -> pl.DataFrame:
    """``item.txt`` -> items (``item_id``, ``title``, ``text``)."""
    table, _ = read_tsv(path, ITEMS_HEADER, bad)
    rows = convert(
        table,
        {schema.ITEM_ID: Column("item_id", int_text("item_id"), "an integer item id")},
        bad,
        keep=["item_name", "categories", "city", "state"],
    )
    titles, texts = [], []
    for _, name, categories, city, state in rows.iter_rows():
        title = clean_text(name or "", ascii_only)
        place = ", ".join(
            p for p in (clean_text(city or "", ascii_only), clean_text(state or "", ascii_only)) if p
        )
        cats = clean_text(categories or "", ascii_only)
        titles.append(title)
        texts.append(
            join_fields([title, f"Categories: {cats}" if cats else "", f"Location: {place}" if place else ""])
        )
    items = rows.select(
        schema.ITEM_ID, pl.Series(schema.TITLE, titles, pl.String), pl.Series(schema.TEXT, texts, pl.String)
    )
    return dedupe_items(items, path, removed)


def load_yelp_taste(paths: list[Path], options: PrepareOptions) -> RawDataset:
    """Read the TASTE Yelp files (see the module docstring).

    Args:
        paths: the folder of ``item.txt``, ``test.txt`` and ``valid.txt`` (or those files).
        options: ``interactions_file``/``items_file`` override ``test.txt`` / ``item.txt``;
            ``skip_bad_lines`` and ``ascii_only`` apply.

    Raises:
        DataFormatError: a missing file, a malformed line, or a ``valid.txt`` line that disagrees
            with ``test.txt`` (file, line and field named).
    """
    paths = [Path(p) for p in paths]
    test_path = options.interactions_file or find_file(paths, TEST_FILE)
    if test_path is None:
        raise DataFormatError((paths[0] if paths else Path(".")) / TEST_FILE, "file not found")
    test_path = Path(test_path)
    search = [*paths, test_path.parent]
    valid_path = find_file(search, VALID_FILE) or test_path.parent / VALID_FILE
    items_path = Path(options.items_file or find_file(search, ITEMS_FILE) or test_path.parent / ITEMS_FILE)
    removed: Counter[str] = Counter()
    bad = BadLines(options.skip_bad_lines, removed)

    test = read_sequences(test_path, bad)
    valid = read_sequences(valid_path, bad)
    agreement = check_valid(test, valid, valid_path, bad)
    if agreement["disagree"]:
        removed["valid_disagrees"] += agreement["disagree"]
    interactions = order_only_interactions((user, seq) for user, (_, seq) in test.items())
    catalogue = read_items(items_path, bad, removed, options.ascii_only)
    info: dict[str, object] = {
        "time": ORDER_ONLY_TIME,
        "sequence_from": f"{TEST_FILE}: non-zero history, then target",
        "users_at_51_cap": sum(len(seq) == HISTORY + 1 for _, seq in test.values()),
        "history_cap": f"histories longer than {HISTORY + 1} were cut to their last {HISTORY + 1} by the publishers",
        "valid_agree": agreement["agree"],
        "valid_one_earlier_item_unused": agreement["one_earlier_item"],
        "num_businesses": catalogue.height,
    }
    return RawDataset(
        name="yelp-taste",
        source="yelp-taste",
        interactions=interactions,
        items=catalogue,
        files=[test_path, valid_path, items_path],
        removed=removed,
        bad_lines=bad.records,
        info=info,
    )
