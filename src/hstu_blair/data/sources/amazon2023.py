"""Amazon Reviews 2023 (McAuley Lab): 5-core rating CSVs, raw review JSONL, item metadata JSONL.

Published files, recognised by name (plain or ``.gz``):

- ``<Category>.csv``: the 5-core ``rating_only`` benchmark, header ``user_id,parent_asin,rating,timestamp``,
  timestamps in milliseconds. This is the paper's input.
- ``<Category>.jsonl``: raw reviews, one JSON object per line (``rating, title, text, images, asin,
  parent_asin, user_id, timestamp, helpful_vote, verified_purchase``).
- ``meta_<Category>.jsonl``: item metadata, one JSON object per line (``title, features[],
  description[], categories[], ..., parent_asin``).

Also read, detected by content (first object has ``history``): the third-party
"amazon2023-mini-multicategory-sample" (one object per user and category with ``history`` and
``heldout`` reviews that embed a ``product`` summary).

Interactions come from the rating CSV when there is one, else from the raw reviews; the review text
table (title + text) comes from the raw reviews when ``options.with_reviews``. Metadata lines are read
one at a time, and only items that occur in the interactions are parsed and cleaned.

This module recognises the files and loads them; the readers are in :mod:`.amazon2023_reviews`
(rating CSV, raw reviews), :mod:`.amazon2023_meta` (metadata, item text) and
:mod:`.amazon2023_sample`.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from hstu_blair.data import schema
from hstu_blair.data.options import PrepareOptions
from hstu_blair.data.sources.amazon2023_meta import read_meta_jsonl
from hstu_blair.data.sources.amazon2023_records import to_seconds
from hstu_blair.data.sources.amazon2023_reviews import read_ratings_csv_ms, read_reviews_jsonl
from hstu_blair.data.sources.amazon2023_sample import read_sample
from hstu_blair.data.sources.bad_lines import BadLines
from hstu_blair.data.sources.base import RawDataset, expand_inputs
from hstu_blair.data.sources.files import first_line
from hstu_blair.errors import HstuBlairError

log = logging.getLogger(__name__)

SAMPLE_NAME = "amazon2023-mini-sample"
_CSV_SUFFIXES = (".csv", ".csv.gz")
_JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz")


def _is_csv(path: Path) -> bool:
    return path.name.lower().endswith(_CSV_SUFFIXES)


def _is_jsonl(path: Path) -> bool:
    return path.name.lower().endswith(_JSONL_SUFFIXES)


def _category(path: Path) -> str:
    """The category in a published file name: ``meta_Video_Games.jsonl.gz`` -> ``Video_Games``."""
    name = path.name
    for suffix in sorted(_CSV_SUFFIXES + _JSONL_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name[len("meta_") :] if name.lower().startswith("meta_") else name


def _is_sample(path: Path) -> bool:
    """True when the file's first object has ``history`` (the third-party mini sample)."""
    try:
        first = json.loads(first_line(path).decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(first, dict) and "history" in first


# ---- file recognition and the loader --------------------------------------------------------------


@dataclass
class AmazonFiles:
    """The input files of one load, by role."""

    ratings: Path | None = None
    reviews: Path | None = None
    meta: Path | None = None
    sample: list[Path] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)


def _kind(path: Path) -> str:
    """``ratings``, ``meta``, ``sample``, ``reviews`` or ``ignored``, by published name then content."""
    if _is_csv(path):
        return "ratings"
    if not _is_jsonl(path):
        return "ignored"
    if path.name.lower().startswith("meta_"):
        return "meta"
    return "sample" if _is_sample(path) else "reviews"


def _sniff(path: Path) -> str:
    """``ratings``, ``sample`` or ``reviews`` of an interaction file named by the user, by content."""
    if not first_line(path).lstrip().startswith(b"{"):
        return "ratings"
    return "sample" if _is_sample(path) else "reviews"


def find_amazon_files(paths: list[Path], options: PrepareOptions) -> AmazonFiles:
    """Sort the inputs into roles; ``options.*_file`` override recognition by name.

    Raises:
        HstuBlairError: two files claim the same role (e.g. two categories' rating CSVs).
    """
    found: dict[str, list[Path]] = {"ratings": [], "reviews": [], "meta": [], "sample": [], "ignored": []}
    for path in expand_inputs(paths):
        found[_kind(path)].append(path)
    for role in ("ratings", "reviews", "meta"):
        if len(found[role]) > 1:
            names = ", ".join(p.name for p in found[role])
            raise HstuBlairError(
                f"several Amazon {role} files ({names}); pass one category's files or set options.interactions_file"
                " / items_file / reviews_file"
            )
    files = AmazonFiles(
        ratings=next(iter(found["ratings"]), None),
        reviews=next(iter(found["reviews"]), None),
        meta=next(iter(found["meta"]), None),
        sample=found["sample"],
        ignored=found["ignored"],
    )
    if options.interactions_file is not None:
        path = Path(options.interactions_file)
        kind = _sniff(path)
        if kind == "ratings":
            files.ratings = path
        elif kind == "sample":
            files.sample, files.ratings = [path], None
        else:
            files.reviews, files.ratings = path, None
    if options.items_file is not None:
        files.meta = Path(options.items_file)
    if options.reviews_file is not None:
        files.reviews = Path(options.reviews_file)
    return files


def _load_sample(
    files: AmazonFiles, options: PrepareOptions, bad: BadLines, info: dict[str, object]
) -> RawDataset:
    """The third-party mini sample (it cannot be mixed with the published files)."""
    if files.ratings or files.meta or files.reviews:
        raise HstuBlairError(
            "the mini sample cannot be mixed with published Amazon files; pass them separately"
        )
    interactions, items, reviews, sample_info = read_sample(files.sample, options, bad)
    info.update(variant="mini-sample", has_metadata=True, **sample_info)
    return RawDataset(
        name=options.name or SAMPLE_NAME,
        source="amazon2023",
        interactions=interactions,
        items=items,
        reviews=reviews if options.with_reviews else None,
        files=list(files.sample),
        removed=bad.removed,
        bad_lines=bad.records,
        info=info,
    )


def _read_interactions(
    files: AmazonFiles, options: PrepareOptions, bad: BadLines, info: dict[str, object]
) -> tuple[pl.DataFrame, pl.DataFrame | None, np.ndarray | None]:
    """(interactions in seconds, reviews read along or ``None``, the rating CSV's milliseconds or
    ``None``) from the rating CSV when there is one, else from the raw reviews."""
    if files.ratings is not None:
        interactions_ms = read_ratings_csv_ms(files.ratings, bad)
        if options.drop_first_data_row and interactions_ms.height:
            interactions_ms = interactions_ms.slice(1)  # the reference's read_csv(header=1) bug
            bad.removed["first_data_row"] += 1
        info["variant"] = "5core-rating-csv"
        return to_seconds(interactions_ms), None, interactions_ms[schema.TIMESTAMP].to_numpy()
    if options.drop_first_data_row:
        log.warning("amazon2023: drop_first_data_row applies to a rating CSV only; nothing dropped")
    assert files.reviews is not None
    interactions, reviews, counts = read_reviews_jsonl(
        files.reviews, bad, interactions=True, reviews=options.with_reviews, ascii_only=options.ascii_only
    )
    assert interactions is not None
    info["variant"] = "raw-reviews"
    info.update(counts)
    return interactions, reviews, None


def _read_metadata(
    files: AmazonFiles, needed: set[str], options: PrepareOptions, bad: BadLines, info: dict[str, object]
) -> pl.DataFrame | None:
    """The items of ``needed`` from ``meta_<Category>.jsonl``, or ``None`` without that file."""
    info["has_metadata"] = files.meta is not None
    if files.meta is None:
        log.warning("amazon2023: no metadata file (meta_<Category>.jsonl) given; items have no text")
        return None
    items, counts = read_meta_jsonl(files.meta, needed, options, bad, bad.removed)
    info.update(counts)
    info["items_without_metadata"] = len(needed) - items.height
    return items


def load_amazon2023(paths: list[Path], options: PrepareOptions) -> RawDataset:
    """Read Amazon Reviews 2023 files into canonical raw tables (no filtering).

    Args:
        paths: files and/or directories holding ``<Category>.csv``, ``<Category>.jsonl``,
            ``meta_<Category>.jsonl`` (plain or ``.gz``), or the mini sample's files.
        options: ``skip_bad_lines``, ``text_style``, ``ascii_only``, ``with_reviews``, ``name``,
            ``drop_first_data_row`` and the ``*_file`` overrides are used here; filtering happens
            in ``prepare``.

    Returns:
        The raw dataset: timestamps in seconds (the files hold milliseconds; from a rating CSV,
        ``source_times`` keeps them), ``items`` from the metadata (``None`` without a metadata
        file), ``reviews`` when asked for and available. With ``drop_first_data_row`` the rating
        CSV's first data row is left out and counted as ``removed["first_data_row"]``.

    Raises:
        DataFormatError: a file does not match its published format (file, line, field).
        HstuBlairError: no interaction file among the inputs, or ambiguous inputs.
    """
    files = find_amazon_files(paths, options)
    bad = BadLines(options.skip_bad_lines, Counter())
    info: dict[str, object] = {"source_timestamp_unit": "ms", "text_style": options.text_style}
    if files.ignored:
        info["ignored_files"] = [p.name for p in files.ignored]
        log.info("amazon2023: ignoring unrecognised files %s", info["ignored_files"])
    if files.sample:
        return _load_sample(files, options, bad, info)
    source = files.ratings or files.reviews
    if source is None:
        given = ", ".join(p.name for p in expand_inputs(paths)) or "none"
        raise HstuBlairError(
            f"no Amazon Reviews 2023 interaction file among the inputs ({given}); expected <Category>.csv "
            "(5-core rating_only), <Category>.jsonl (raw reviews) or the mini sample"
        )
    interactions, reviews, source_times = _read_interactions(files, options, bad, info)
    read_files = [source]
    needed = set(interactions[schema.ITEM_ID].unique().to_list())
    if files.ratings is not None and files.reviews is not None and options.with_reviews:
        _, reviews, counts = read_reviews_jsonl(
            files.reviews, bad, interactions=False, reviews=True, items=needed, ascii_only=options.ascii_only
        )
        info.update(counts)
        read_files.append(files.reviews)
    items = _read_metadata(files, needed, options, bad, info)
    read_files += [files.meta] if files.meta is not None else []
    return RawDataset(
        name=options.name or _category(source),
        source="amazon2023",
        interactions=interactions,
        items=items,
        reviews=reviews,
        files=read_files,
        removed=bad.removed,
        bad_lines=bad.records,
        info=info,
        source_times=source_times,
    )
