"""RecBole's sequential form (history + target per row): each user's whole sequence rebuilt from all
their rows, and the interactions of the rebuilt sequences (see :mod:`.recbole`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from hstu_blair.data import schema
from hstu_blair.data.ids import normalize_id
from hstu_blair.data.options import PrepareOptions
from hstu_blair.data.sources.bad_lines import BadLines
from hstu_blair.data.sources.base import order_only_interactions
from hstu_blair.data.sources.readers import LOC
from hstu_blair.data.sources.recbole_files import LIST_SUFFIX, AtomicFile, require_fields
from hstu_blair.errors import DataFormatError

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
