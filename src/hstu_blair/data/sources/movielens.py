"""MovieLens ratings and movies -> :class:`RawDataset` (ML-100K, ML-1M, ML-20M/25M/32M, ml-latest[-small]).

Published layouts, recognised by the ratings file present (or by its first line under another name):

- ML-100K: ``u.data`` (tab-separated ``user id, item id, rating, timestamp``), ``u.item``
  (``|``-separated ``movie id|movie title|release date|video release date|IMDb URL`` + 19 genre flags,
  latin-1), ``u.genre`` (``name|index``; the published list is built in when it is absent).
- ML-1M (and ML-10M, named so when ``tags.dat`` is present; its tags are not read):
  ``ratings.dat`` ``UserID::MovieID::Rating::Timestamp``, ``movies.dat`` ``MovieID::Title::Genres``
  (``|``-separated genres, latin-1).
- ML-20M, ML-25M, ML-32M, ml-latest, ml-latest-small: ``ratings.csv``, ``movies.csv``, ``tags.csv``
  (UTF-8 CSV with headers ``userId,movieId,rating,timestamp`` / ``movieId,title,genres`` /
  ``userId,movieId,tag,timestamp``). The variant is read from ``README.txt`` ("This dataset
  (ml-20m) ...") when present, else guessed from the number of ratings.

Item files of ML-100K/1M are read as UTF-8 when they decode so, else as latin-1 (recorded in
``info["items_encoding"]``). Ratings are floats (half stars in the CSV sets), timestamps Unix seconds,
ids their decimal text. Every movie of the movies file is in the catalogue, rated or not.

Item text: ``"<title>. Genres: <g1>, <g2>. Tags: <t1>, <t2>"``. Tags (CSV sets) are the movie's
distinct tags (case-insensitive, first spelling kept), most applied first (ties: first applied first),
at most :data:`MAX_TAGS`. ``(no genres listed)`` and ML-100K's ``unknown`` genre are left out. With
``with_reviews`` the tag applications also form the reviews table (user, movie, tag) for text
pretraining.

The reference (SPEC §1.2) keeps raw movie ids as item ids and every movie as a candidate; we assign
dense ids to rated movies (``prepare`` reports the catalogue movies without ratings).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import polars as pl

from hstu_blair.data import schema
from hstu_blair.data.item_text import clean_text, join_fields
from hstu_blair.data.options import PrepareOptions
from hstu_blair.data.sources.bad_lines import BadLines
from hstu_blair.data.sources.base import RawDataset, dedupe_items, find_file
from hstu_blair.data.sources.columns import Column, convert, int_text, number
from hstu_blair.data.sources.files import open_binary, read_bytes
from hstu_blair.data.sources.readers import read_delimited, read_headerless
from hstu_blair.errors import DataFormatError, HstuBlairError

log = logging.getLogger(__name__)

MAX_TAGS = 20
"""Most tags of one movie put into its text."""

ML_100K_GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
]  # fmt: skip
"""The genre flags of ``u.item`` in order, as ``u.genre`` lists them."""

_NO_GENRE = {"unknown", "(no genres listed)"}
_LAYOUTS = {"u.data": "100k", "ratings.dat": "1m", "ratings.csv": "csv"}
_ITEM_FILES = {"100k": "u.item", "1m": "movies.dat", "csv": "movies.csv"}
_RATING_FIELDS = {
    "100k": ["user id", "item id", "rating", "timestamp"],
    "1m": ["UserID", "MovieID", "Rating", "Timestamp"],
    "csv": ["userId", "movieId", "rating", "timestamp"],
}
_KNOWN_SIZES = {20_000_263: "ml-20m", 25_000_095: "ml-25m", 32_000_204: "ml-32m"}
_README_NAME = re.compile(r"This dataset \((ml-[A-Za-z0-9-]+)\)")


@dataclass
class MovieLensFiles:
    """The files of one MovieLens release; ``layout`` is ``100k``, ``1m`` or ``csv``."""

    layout: str
    ratings: Path
    movies: Path
    tags: Path | None = None
    genres: Path | None = None
    readme: Path | None = None
    tags_dat: Path | None = None


def _sniff_layout(path: Path) -> str:
    """Layout from the file name, else from the first line."""
    name = path.name.lower().removesuffix(".gz")
    if name in _LAYOUTS:
        return _LAYOUTS[name]
    with open_binary(path) as fh:
        first = fh.readline().decode("utf-8", "replace")
    if "::" in first:
        return "1m"
    if first.startswith("userId,"):
        return "csv"
    if "\t" in first:
        return "100k"
    raise DataFormatError(
        path,
        "not a MovieLens ratings file: expected u.data (tab-separated), ratings.dat (UserID::MovieID::...) "
        "or ratings.csv (header userId,movieId,rating,timestamp)",
        line=1,
    )


def find_movielens_files(paths: list[Path], options: PrepareOptions) -> MovieLensFiles:
    """Locate the ratings, movies and (optional) tag/genre/README files among ``paths``.

    Files named in the options (``interactions_file``, ``items_file``, ``reviews_file``) win; other
    files are found by their published names in the given folders and beside the ratings file.
    """
    ratings = options.interactions_file or find_file(paths, *_LAYOUTS)
    if ratings is None:
        where = ", ".join(map(str, paths)) or "(no inputs)"
        raise HstuBlairError(
            f"movielens: no ratings file in {where}; expected u.data (ML-100K), ratings.dat (ML-1M) "
            "or ratings.csv (ML-20M, ml-latest, ml-latest-small)"
        )
    ratings = Path(ratings)
    layout = _sniff_layout(ratings)
    search = [*paths, ratings.parent]
    movies = options.items_file or find_file(search, _ITEM_FILES[layout])
    if movies is None:
        raise DataFormatError(
            ratings.parent / _ITEM_FILES[layout], "file not found: the movies of these ratings"
        )
    files = MovieLensFiles(layout, ratings, Path(movies))
    if layout == "100k":
        files.genres = find_file(search, "u.genre")
    elif layout == "1m":
        files.tags_dat = find_file(search, "tags.dat")
    else:
        tags = options.reviews_file or find_file(search, "tags.csv")
        files.tags = Path(tags) if tags is not None else None
        files.readme = find_file(search, "README.txt")
    return files


def _text_encoding(path: Path) -> str:
    """``utf-8`` when the whole file decodes as UTF-8, else ``latin-1`` (the published encoding)."""
    try:
        read_bytes(path).decode("utf-8")
    except UnicodeDecodeError:
        return "latin-1"
    return "utf-8"


# ---- ratings ------------------------------------------------------------------------------------
def read_ratings(files: MovieLensFiles, bad: BadLines) -> pl.DataFrame:
    """The ratings file -> interactions (``raw_user_id``, ``raw_item_id``, ``timestamp``, ``rating``)."""
    user, item, rating, timestamp = names = _RATING_FIELDS[files.layout]
    if files.layout == "100k":
        table = read_headerless(files.ratings, "\t", names, bad)
    elif files.layout == "1m":
        table = read_headerless(files.ratings, "::", names, bad)
    else:
        table = read_delimited(files.ratings, ",", bad, expected_header=names)
    columns = {
        schema.USER_ID: Column(user, int_text(user), "an integer user id"),
        schema.ITEM_ID: Column(item, int_text(item), "an integer movie id"),
        schema.TIMESTAMP: Column(
            timestamp,
            pl.col(timestamp).cast(pl.Int64, strict=False),
            "integer Unix seconds",
        ),
        schema.RATING: Column(rating, number(rating, pl.Float32), "a numeric rating"),
    }
    return convert(table, columns, bad)


# ---- movies -------------------------------------------------------------------------------------
def read_genre_names(path: Path | None, bad: BadLines) -> list[str]:
    """Genre names of ``u.genre`` ordered by index (the built-in list when ``path`` is None)."""
    if path is None:
        return list(ML_100K_GENRES)
    table = read_headerless(path, "|", ["genre", "index"], bad)
    rows = convert(
        table, {"index": Column("index", int_text("index"), "an integer index")}, bad, keep=["genre"]
    )
    indexed = sorted((int(i), g.strip()) for i, g in rows.iter_rows())
    if [i for i, _ in indexed] != list(range(len(indexed))):
        raise DataFormatError(
            path, f"genre indices should be 0..{len(indexed) - 1}, found {[i for i, _ in indexed]}"
        )
    return [g for _, g in indexed]


def read_movies(files: MovieLensFiles, bad: BadLines) -> tuple[pl.DataFrame, str]:
    """The movies file -> (``raw_item_id``, ``title``, ``genres`` list) in file order, and its encoding."""
    path = files.movies
    encoding = "utf-8" if files.layout == "csv" else _text_encoding(path)
    if files.layout == "100k":
        genres = read_genre_names(files.genres, bad)
        names = ["movie id", "movie title", "release date", "video release date", "IMDb URL", *genres]
        table = read_headerless(path, "|", names, bad, encoding=encoding)
        columns = {schema.ITEM_ID: Column("movie id", int_text("movie id"), "an integer movie id")}
        for g in genres:
            flag = pl.col(g).str.strip_chars()
            columns[g] = Column(g, pl.when(flag.is_in(["0", "1"])).then(flag == "1"), "a genre flag 0 or 1")
        rows = convert(table, columns, bad, keep=["movie id", "movie title"])
        flags = rows.select(genres).rows()
        genre_lists = [[g for g, on in zip(genres, row) if on] for row in flags]
        movies = rows.select(schema.ITEM_ID, pl.col("movie title").alias(schema.TITLE))
        return movies.with_columns(pl.Series("genres", genre_lists, dtype=pl.List(pl.String))), encoding
    if files.layout == "1m":
        table = read_headerless(path, "::", ["MovieID", "Title", "Genres"], bad, encoding=encoding)
        item, title, genres_col = "MovieID", "Title", "Genres"
    else:
        table = read_delimited(path, ",", bad, expected_header=["movieId", "title", "genres"])
        item, title, genres_col = "movieId", "title", "genres"
    rows = convert(
        table,
        {schema.ITEM_ID: Column(item, int_text(item), "an integer movie id")},
        bad,
        keep=[title, genres_col],
    )
    movies = rows.select(
        schema.ITEM_ID,
        pl.col(title).alias(schema.TITLE),
        pl.col(genres_col).str.strip_chars().str.split("|").alias("genres"),
    )
    return movies, encoding


# ---- tags ---------------------------------------------------------------------------------------
def read_tags(path: Path, bad: BadLines, ascii_only: bool) -> pl.DataFrame:
    """``tags.csv`` -> (``raw_user_id``, ``raw_item_id``, ``text``) in file order, tag text cleaned."""
    table = read_delimited(path, ",", bad, expected_header=["userId", "movieId", "tag", "timestamp"])
    columns = {
        schema.USER_ID: Column("userId", int_text("userId"), "an integer user id"),
        schema.ITEM_ID: Column("movieId", int_text("movieId"), "an integer movie id"),
        "_time": Column(
            "timestamp",
            pl.col("timestamp").cast(pl.Int64, strict=False),
            "integer Unix seconds",
        ),
    }
    rows = convert(table, columns, bad, keep=["tag"])
    texts = [clean_text(t, ascii_only) for t in rows["tag"].to_list()]
    return rows.select(schema.USER_ID, schema.ITEM_ID, pl.Series(schema.TEXT, texts, dtype=pl.String))


def top_tags(tags: pl.DataFrame, limit: int = MAX_TAGS) -> dict[str, list[str]]:
    """Per movie, its distinct tags (case-insensitive), most applied first, ties by first use; at most ``limit``."""
    ranked = (
        tags.with_row_index("_order")
        .filter(pl.col(schema.TEXT) != "")
        .with_columns(pl.col(schema.TEXT).str.to_lowercase().alias("_key"))
        .group_by(schema.ITEM_ID, "_key")
        .agg(pl.len().alias("_n"), pl.col("_order").min(), pl.col(schema.TEXT).first())
        .sort([schema.ITEM_ID, "_n", "_order"], descending=[False, True, False])
        .group_by(schema.ITEM_ID, maintain_order=True)
        .agg(pl.col(schema.TEXT).head(limit))
    )
    return dict(zip(ranked[schema.ITEM_ID].to_list(), ranked[schema.TEXT].to_list()))


def movie_text(title: str, genres: list[str], tags: list[str], ascii_only: bool = False) -> str:
    """``"<title>. Genres: a, b. Tags: x, y"`` (empty parts left out)."""
    genres = [g for g in (clean_text(g, ascii_only) for g in genres) if g and g not in _NO_GENRE]
    parts = [clean_text(title, ascii_only)]
    if genres:
        parts.append("Genres: " + ", ".join(genres))
    if tags:
        parts.append("Tags: " + ", ".join(tags))
    return join_fields(parts)


# ---- the loaders --------------------------------------------------------------------------------
def _variant(files: MovieLensFiles, n_ratings: int) -> tuple[str, str]:
    """(dataset name, how it was found)."""
    if files.layout == "100k":
        return "ml-100k", "file names"
    if files.layout == "1m":
        return ("ml-10m" if files.tags_dat is not None else "ml-1m"), "file names"
    if files.readme is not None:
        match = _README_NAME.search(read_bytes(files.readme).decode("utf-8", "replace"))
        if match:
            return match.group(1), files.readme.name
    guess = _KNOWN_SIZES.get(n_ratings) or ("ml-latest-small" if n_ratings < 1_000_000 else "ml-latest")
    return guess, "row count"


def load_movielens(paths: list[Path], options: PrepareOptions) -> RawDataset:
    """Read a MovieLens release (see the module docstring for the layouts).

    Args:
        paths: the release folder, or its files.
        options: ``interactions_file``/``items_file``/``reviews_file`` override file discovery;
            ``skip_bad_lines``, ``ascii_only`` and ``with_reviews`` apply.

    Returns:
        Ratings in file order; every movie of the movies file with its text; tags as reviews.

    Raises:
        DataFormatError: a missing file, wrong header, wrong field count, non-numeric field or
            undecodable bytes, naming the file, line and field.
    """
    files = find_movielens_files([Path(p) for p in paths], options)
    removed: Counter[str] = Counter()
    bad = BadLines(options.skip_bad_lines, removed)
    interactions = read_ratings(files, bad)
    movies, encoding = read_movies(files, bad)
    tags = read_tags(files.tags, bad, options.ascii_only) if files.tags is not None else None
    tags_of = top_tags(tags) if tags is not None else {}

    texts = [
        movie_text(title, genres or [], tags_of.get(item, []), options.ascii_only)
        for item, title, genres in movies.iter_rows()
    ]
    items = movies.select(
        schema.ITEM_ID,
        pl.Series(schema.TITLE, [clean_text(t) for t in movies[schema.TITLE].to_list()], dtype=pl.String),
        pl.Series(schema.TEXT, texts, dtype=pl.String),
    )
    items = dedupe_items(items, files.movies, removed)

    name, found_by = _variant(files, interactions.height)
    read = [files.ratings, files.movies, files.genres, files.tags, files.readme]
    info: dict[str, object] = {
        "variant": name,
        "variant_from": found_by,
        "layout": files.layout,
        "items_encoding": encoding,
        "tags_in_text": tags is not None,
        "max_tags_per_item": MAX_TAGS,
        "num_movies": items.height,
    }
    if tags is not None:
        info["num_tags"] = tags.height
    if files.tags_dat is not None:
        info["not_read"] = [str(files.tags_dat)]
    return RawDataset(
        name=name,
        source="movielens",
        interactions=interactions,
        items=items,
        reviews=tags if (tags is not None and options.with_reviews) else None,
        files=[p for p in read if p is not None],
        removed=removed,
        bad_lines=bad.records,
        info=info,
    )


def bundled_ml_latest_small() -> Path:
    """Folder of the ml-latest-small copy shipped inside the package (with its README.txt licence)."""
    folder = Path(str(resources.files("hstu_blair").joinpath("resources", "ml-latest-small")))
    if not (folder / "ratings.csv.gz").is_file():
        raise HstuBlairError(f"the bundled ml-latest-small is missing from {folder}; reinstall hstu-blair")
    return folder


def load_bundled_ml_latest_small(paths: list[Path], options: PrepareOptions) -> RawDataset:
    """Read the bundled ml-latest-small (works offline); ``paths`` and file options are ignored."""
    if paths:
        log.warning("ml-latest-small: using the bundled copy; ignoring inputs %s", [str(p) for p in paths])
    options = dataclasses.replace(options, interactions_file=None, items_file=None, reviews_file=None)
    return load_movielens([bundled_ml_latest_small()], options)
