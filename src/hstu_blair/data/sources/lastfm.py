"""Last.fm HetRec 2011 (``hetrec2011-lastfm-2k``; non-commercial use) -> :class:`RawDataset`.

Published files (tab-separated with a header line, no quoting; plain or ``.gz``):

- ``user_taggedartists.dat``: ``userID, artistID, tagID, day, month, year``: one row per tag a user
  gave an artist. The sequence: each user's *first* tag assignment of each artist (earliest date,
  then earliest line), so an interaction is "user tagged this artist"; the user's later tags of the
  same artist are counted in ``removed.later_tags_same_artist``.
- ``artists.dat``: ``id, name, url, pictureURL`` (UTF-8; names may hold ``"``, read literally).
- ``tags.dat``: ``tagID, tagValue`` (published in latin-1; read as UTF-8 when it decodes so).
- ``user_artists.dat`` (play counts, no time) and ``user_friends.dat`` are not read.

Time: the date fields at 00:00 UTC. They are month-grained in practice (day = 1 in 98% of the
rows), so most of one user's interactions tie; ties keep file order (``tie_order="stable"``: the
file lists each user's rows by artist id), recorded in ``info``.

Item text: ``"<artist name>. Tags: t1, t2, ..."`` with the artist's :data:`MAX_TAGS` most assigned
tags (counted over all users' tag assignments, case-insensitive, ties by first use). Those tags come
from the same users' actions over the whole time range, later events included: a leak into the
text of an item a user has not yet tagged. ``tag_text=False`` builds the text from the name only.
With ``with_reviews`` the tag assignments also form the reviews table (user, artist, tag).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import polars as pl

from hstu_blair.data import schema
from hstu_blair.data.item_text import clean_text, join_fields
from hstu_blair.data.options import PrepareOptions
from hstu_blair.data.sources.bad_lines import BadLines, count_bad
from hstu_blair.data.sources.base import RawDataset, dedupe_items, find_file
from hstu_blair.data.sources.columns import Column, convert, int_text
from hstu_blair.data.sources.movielens import top_tags
from hstu_blair.data.sources.readers import LOC, read_tsv
from hstu_blair.errors import DataFormatError

MAX_TAGS = 10
"""Most tags of one artist put into its text."""

TAGGED_FILE = "user_taggedartists.dat"
ARTISTS_FILE = "artists.dat"
TAGS_FILE = "tags.dat"
TAGGED_HEADER = ["userID", "artistID", "tagID", "day", "month", "year"]
ARTISTS_HEADER = ["id", "name", "url", "pictureURL"]
TAGS_HEADER = ["tagID", "tagValue"]


def _date(day: str, month: str, year: str) -> pl.Expr:
    text = pl.concat_str(
        pl.col(year).str.strip_chars(),
        pl.col(month).str.strip_chars().str.zfill(2),
        pl.col(day).str.strip_chars().str.zfill(2),
        separator="-",
    )
    return text.str.strptime(pl.Date, "%Y-%m-%d", strict=False).cast(pl.Datetime("us")).dt.epoch("s")


def read_tagged(path: Path, bad: BadLines) -> pl.DataFrame:
    """``user_taggedartists.dat`` -> every tag assignment (user, artist, tag id, timestamp, line)."""
    table, _ = read_tsv(path, TAGGED_HEADER, bad)
    columns = {
        schema.USER_ID: Column("userID", int_text("userID"), "an integer user id"),
        schema.ITEM_ID: Column("artistID", int_text("artistID"), "an integer artist id"),
        "tag_id": Column("tagID", int_text("tagID"), "an integer tag id"),
        schema.TIMESTAMP: Column("day", _date("day", "month", "year"), "day, month, year of a real date"),
    }
    return convert(table, columns, bad, keep=[LOC])


def first_tags(tagged: pl.DataFrame) -> pl.DataFrame:
    """Each (user, artist)'s earliest assignment (date, then line), in file order."""
    return (
        tagged.sort([schema.TIMESTAMP, LOC])
        .unique(subset=[schema.USER_ID, schema.ITEM_ID], keep="first", maintain_order=True)
        .sort(LOC)
    )


def read_tag_names(path: Path, bad: BadLines) -> tuple[dict[str, str], str]:
    """``tags.dat`` -> ({tag id: tag text}, encoding)."""
    table, encoding = read_tsv(path, TAGS_HEADER, bad)
    rows = convert(
        table, {"tag_id": Column("tagID", int_text("tagID"), "an integer tag id")}, bad, keep=["tagValue"]
    )
    return {tag_id: clean_text(text) for tag_id, text in rows.iter_rows()}, encoding


def artist_text(name: str, tags: list[str], ascii_only: bool = False) -> str:
    """``"<artist name>. Tags: t1, t2"`` (just the name when there are no tags)."""
    cleaned = [t for t in (clean_text(t, ascii_only) for t in tags) if t]
    return join_fields([name, "Tags: " + ", ".join(cleaned) if cleaned else ""])


def _known_tags(
    tagged: pl.DataFrame, names: dict[str, str], tagged_path: Path, tags_path: Path, bad: BadLines
) -> pl.DataFrame:
    """The tag assignments whose tag id is in ``tags.dat``; the others are reported (or counted)."""
    unknown = tagged.filter(~pl.col("tag_id").is_in(list(names)))
    if unknown.height:
        count_bad(
            bad,
            unknown,
            lambda row: DataFormatError(
                tagged_path,
                f"tag id {row['tag_id']} is not in {tags_path.name}",
                line=row[LOC],
                field="tagID",
            ),
        )
    return tagged.filter(pl.col("tag_id").is_in(list(names)))


def read_artists(
    path: Path, tags_of: dict[str, list[str]], bad: BadLines, removed: Counter[str], ascii_only: bool
) -> pl.DataFrame:
    """``artists.dat`` -> items: title = the artist's name, text = name + its top tags (``tags_of``)."""
    artists, _ = read_tsv(path, ARTISTS_HEADER, bad)
    rows = convert(
        artists, {schema.ITEM_ID: Column("id", int_text("id"), "an integer artist id")}, bad, keep=["name"]
    )
    titles = [clean_text(n or "", ascii_only) for n in rows["name"].to_list()]
    texts = [
        artist_text(title, tags_of.get(item, []), ascii_only)
        for item, title in zip(rows[schema.ITEM_ID], titles)
    ]
    items = rows.select(
        schema.ITEM_ID, pl.Series(schema.TITLE, titles, pl.String), pl.Series(schema.TEXT, texts, pl.String)
    )
    return dedupe_items(items, path, removed)


def load_lastfm(paths: list[Path], options: PrepareOptions) -> RawDataset:
    """Read Last.fm HetRec 2011 (see the module docstring).

    Args:
        paths: the folder of the ``.dat`` files (or the files).
        options: ``interactions_file``/``items_file`` override ``user_taggedartists.dat`` /
            ``artists.dat``; ``tag_text``, ``with_reviews``, ``skip_bad_lines``, ``ascii_only`` apply.

    Raises:
        DataFormatError: a missing file, wrong header, field count, id or date, or a tag id absent
            from ``tags.dat``, naming the file, line and field.
    """
    paths = [Path(p) for p in paths]
    tagged_path = options.interactions_file or find_file(paths, TAGGED_FILE)
    if tagged_path is None:
        raise DataFormatError((paths[0] if paths else Path(".")) / TAGGED_FILE, "file not found")
    tagged_path = Path(tagged_path)
    search = [*paths, tagged_path.parent]
    artists_path = Path(
        options.items_file or find_file(search, ARTISTS_FILE) or tagged_path.parent / ARTISTS_FILE
    )
    tags_path = find_file(search, TAGS_FILE) or tagged_path.parent / TAGS_FILE
    removed: Counter[str] = Counter()
    bad = BadLines(options.skip_bad_lines, removed)
    tagged = read_tagged(tagged_path, bad)
    names, tags_encoding = read_tag_names(tags_path, bad)
    tagged = _known_tags(tagged, names, tagged_path, tags_path, bad)
    first = first_tags(tagged)
    removed["later_tags_same_artist"] += tagged.height - first.height
    interactions = first.select(
        schema.USER_ID, schema.ITEM_ID, schema.TIMESTAMP, pl.lit(1.0, pl.Float32).alias(schema.RATING)
    )
    tag_texts = tagged.select(
        schema.USER_ID,
        schema.ITEM_ID,
        pl.col("tag_id").replace_strict(names, return_dtype=pl.String).alias(schema.TEXT),
    )
    tags_of = top_tags(tag_texts, MAX_TAGS) if options.tag_text else {}
    items = read_artists(artists_path, tags_of, bad, removed, options.ascii_only)
    info: dict[str, object] = {
        "interaction": "first tag assignment per (user, artist)",
        "time_resolution": "day/month/year (month in practice: day = 1 in ~98% of rows); ties in file order",
        "tags_in_text": options.tag_text,
        "max_tags_per_item": MAX_TAGS if options.tag_text else 0,
        "tags_encoding": tags_encoding,
        "num_tag_assignments": tagged.height,
        "num_artists": items.height,
    }
    return RawDataset(
        name="lastfm-hetrec2011-2k",
        source="lastfm-hetrec",
        interactions=interactions,
        items=items,
        reviews=tag_texts if options.with_reviews else None,
        files=[tagged_path, artists_path, tags_path],
        removed=removed,
        bad_lines=bad.records,
        info=info,
    )
