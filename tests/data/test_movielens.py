"""MovieLens loaders: the three published layouts, real counts, the bundled copy, bad inputs."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import polars as pl
import pytest

from hstu_blair.data.dataset import SequenceData
from hstu_blair.data.prepare import PrepareOptions, prepare
from hstu_blair.data.sources.movielens import (
    MovieLensFiles,
    _variant,
    bundled_ml_latest_small,
    load_bundled_ml_latest_small,
    load_movielens,
    movie_text,
    top_tags,
)
from hstu_blair.errors import DataFormatError, HstuBlairError
from tests.conftest import FIXTURES, shared_dataset

FIX = FIXTURES / "movielens"


def _items(raw) -> dict[str, tuple[str, str]]:
    return {r["item_id"]: (r["title"], r["text"]) for r in raw.items.iter_rows(named=True)}


# ---- fixtures in the published layouts ----------------------------------------------------------
def test_ml100k_layout(tmp_path):
    raw = load_movielens([FIX / "ml-100k"], PrepareOptions())
    assert raw.name == "ml-100k" and raw.info["variant"] == "ml-100k"
    assert raw.info["items_encoding"] == "latin-1"  # u.item holds a latin-1 e-acute
    items = _items(raw)
    assert items["1"] == ("Toy Story (1995)", "Toy Story (1995). Genres: Animation, Children's, Comedy")
    assert items["2"] == ("Misérables, Les (1995)", "Misérables, Les (1995). Genres: Drama, War")
    assert items["4"] == ("unknown", "unknown")  # the 'unknown' genre flag is not put into text
    assert raw.reviews is None
    assert raw.interactions["item_id"].to_list() == ["1", "2", "1", "3", "2", "4", "1"]  # file order
    assert raw.interactions["rating"].dtype == pl.Float32

    data = prepare("movielens", [FIX / "ml-100k"], tmp_path)
    m = data.manifest
    assert (m["num_users"], m["num_items"], m["num_interactions"]) == (3, 4, 7)
    assert m["removed"]["catalogue"]["items_without_interactions"] == 1  # "Never Rated (1996)"
    # user 3 rated items 2 and 1 in the same second: file order breaks the tie
    assert data.user_items(data.user_index("3")).tolist() == data.item_indices(["2", "1", "4"]).tolist()
    assert [f["name"] for f in m["files"]] == ["u.data", "u.item", "u.genre"]  # u.info, u.user unread


def test_ml100k_genre_names_come_from_u_genre(tmp_path):
    folder = tmp_path / "ml"
    shutil.copytree(FIX / "ml-100k", folder)
    genre = (folder / "u.genre").read_text().replace("Thriller|16", "Suspense|16")
    (folder / "u.genre").write_text(genre)
    assert _items(load_movielens([folder], PrepareOptions()))["3"][1] == "Four Rooms (1995). Genres: Suspense"
    (folder / "u.genre").unlink()  # absent: the published list is built in
    assert _items(load_movielens([folder], PrepareOptions()))["3"][1] == "Four Rooms (1995). Genres: Thriller"


def test_ml1m_layout(tmp_path):
    raw = load_movielens([FIX / "ml-1m"], PrepareOptions())
    assert raw.name == "ml-1m" and raw.info["layout"] == "1m"
    items = _items(raw)
    assert items["73"] == ("Misérables, Les (1995)", "Misérables, Les (1995). Genres: Drama, Musical")
    data = prepare("movielens", [FIX / "ml-1m"], tmp_path / "out")
    assert (data.num_users, data.num_items, data.num_interactions) == (2, 3, 5)

    folder = tmp_path / "ml-10m"  # the ML-10M layout adds tags.dat (not read) beside ratings.dat
    shutil.copytree(FIX / "ml-1m", folder)
    (folder / "tags.dat").write_text("1::1::funny::1188263867\n")
    raw = load_movielens([folder], PrepareOptions())
    assert raw.name == "ml-10m" and raw.info["not_read"] == [str(folder / "tags.dat")]


def test_csv_layout(tmp_path):
    raw = load_movielens([FIX / "ml-latest"], PrepareOptions())
    assert raw.name == "ml-latest-small" and raw.info["variant_from"] == "row count"
    items = _items(raw)
    # pixar (x2, either case) and fun (x2) tie on count: first applied first; then "funny, clever"
    assert items["1"][1] == (
        "Toy Story (1995). Genres: Adventure, Animation, Children, Comedy, Fantasy. Tags: pixar, fun, funny, clever"
    )
    assert items["3"][1] == 'American President, The (1995). Genres: Comedy, Drama, Romance. Tags: "artsy"'
    assert items["29"][0] == "City of Lost Children, The (Cité des enfants perdus, La) (1995)"
    assert items["99"][1] == "Unrated Movie (2000)"  # (no genres listed) is left out
    assert raw.reviews is not None and raw.reviews.height == 7
    assert raw.reviews.row(3) == ("3", "1", "funny, clever")
    assert raw.interactions["rating"].to_list() == [4.0, 4.5, 3.5, 5.0, 0.5]

    data = prepare("movielens", [FIX / "ml-latest"], tmp_path / "out")
    m = data.manifest
    assert (m["num_users"], m["num_items"], m["num_interactions"], m["num_reviews"]) == (2, 3, 5, 7)
    assert m["removed"]["catalogue"]["items_without_interactions"] == 1
    assert m["info"]["num_tags"] == 7
    assert data.reviews() is not None

    no_reviews = load_movielens([FIX / "ml-latest"], PrepareOptions(with_reviews=False))
    assert no_reviews.reviews is None and _items(no_reviews)["1"] == items["1"]  # tags stay in the text


def test_variant_from_readme_and_gzip(tmp_path):
    folder = tmp_path / "ml"
    shutil.copytree(FIX / "ml-latest", folder)
    (folder / "README.txt").write_text(
        "Summary\n=======\n\nThis dataset (ml-20m) describes 5-star rating ...\n"
    )
    ratings = folder / "ratings.csv"
    (folder / "ratings.csv.gz").write_bytes(gzip.compress(ratings.read_bytes()))
    expected = load_movielens([folder], PrepareOptions()).interactions
    ratings.unlink()
    raw = load_movielens([folder], PrepareOptions())
    assert (raw.name, raw.info["variant_from"]) == ("ml-20m", "README.txt")
    assert raw.interactions.equals(expected)


def test_variant_from_row_count_without_readme():
    files = MovieLensFiles("csv", Path("ratings.csv"), Path("movies.csv"))
    assert _variant(files, 100_836) == ("ml-latest-small", "row count")
    assert _variant(files, 20_000_263) == ("ml-20m", "row count")
    assert _variant(files, 33_832_162) == ("ml-latest", "row count")


def test_files_named_in_options(tmp_path):
    ratings = tmp_path / "my_ratings.txt"  # unknown name: the layout is sniffed from the first line
    shutil.copy(FIX / "ml-1m" / "ratings.dat", ratings)
    options = PrepareOptions(interactions_file=ratings, items_file=FIX / "ml-1m" / "movies.dat")
    raw = load_movielens([], options)
    assert raw.name == "ml-1m" and raw.interactions.height == 5
    with pytest.raises(HstuBlairError, match="no ratings file"):
        load_movielens([tmp_path / "elsewhere"], PrepareOptions())


def test_top_tags_and_movie_text():
    tags = pl.DataFrame(
        {
            "item_id": ["1"] * 6 + ["2"],
            "text": ["b", "a", "A", "c", "", "b"] + ["z"],
        }
    )
    assert top_tags(tags) == {"1": ["b", "a", "c"], "2": ["z"]}  # b (2, first) and a (2) before c
    assert top_tags(tags, limit=1) == {"1": ["b"], "2": ["z"]}
    assert movie_text("Heat (1995)", ["Action", "(no genres listed)"], []) == "Heat (1995). Genres: Action"
    assert movie_text("Amélie (2001)", [], ["Paris"], ascii_only=True) == "Am lie (2001). Tags: Paris"


# ---- the bad-input corpus --------------------------------------------------------------------------
BAD_CASES = [
    # case, file, line, field, message fragment
    ("u-data-spaces", "u.data", 2, "item id", "expected 4 fields separated by '\\t', found 1"),
    ("u-item-flag", "u.item", 2, "Comedy", "expected a genre flag 0 or 1, found '2'"),
    ("ratings-dat-rating", "ratings.dat", 3, "Rating", "expected a numeric rating, found 'four'"),
    ("movies-dat-fields", "movies.dat", 2, "Genres", "expected 3 fields separated by '::', found 2"),
    ("ratings-csv-fields", "ratings.csv", 4, None, "expected 4 fields separated by ',', found 5"),
    ("ratings-csv-header", "ratings.csv", 1, None, "expected the header 'userId,movieId,rating,timestamp'"),
    (
        "ratings-csv-timestamp",
        "ratings.csv",
        4,
        "timestamp",
        "expected integer Unix seconds, found '2015-10-24'",
    ),
    ("ratings-csv-empty-user", "ratings.csv", 2, "userId", "missing value"),
    ("movies-csv-latin1", "movies.csv", 3, "title", "not valid utf-8 text: byte b'\\xe9'"),
    ("tags-csv-movie", "tags.csv", 3, "movieId", "expected an integer movie id, found 'Heat'"),
]


@pytest.mark.parametrize(
    ("case", "file", "line", "field", "fragment"), BAD_CASES, ids=[c[0] for c in BAD_CASES]
)
def test_bad_inputs_name_file_line_field(case, file, line, field, fragment):
    with pytest.raises(DataFormatError) as info:
        load_movielens([FIX / "bad" / case], PrepareOptions())
    error = info.value
    assert Path(error.path).name == file and error.line == line and error.field == field
    assert fragment in str(error)
    assert f"{file}:{line}" in str(error) and (field is None or f"(field {field!r})" in str(error))


SKIPPED = {  # case -> (bad lines counted, interactions kept)
    "u-data-spaces": ({"bad_lines:u.data": 1}, 1),
    "ratings-csv-fields": ({"bad_lines:ratings.csv": 1}, 2),
    "ratings-csv-timestamp": ({"bad_lines:ratings.csv": 1}, 2),
    "movies-csv-latin1": ({"bad_lines:movies.csv": 1}, 2),
    "tags-csv-movie": ({"bad_lines:tags.csv": 1}, 2),
}


@pytest.mark.parametrize("case", sorted(SKIPPED))
def test_skip_bad_lines_counts(case, tmp_path):
    removed, n = SKIPPED[case]
    raw = load_movielens([FIX / "bad" / case], PrepareOptions(skip_bad_lines=True))
    assert dict(raw.removed) == removed and raw.interactions.height == n
    data = prepare("movielens", [FIX / "bad" / case], tmp_path, PrepareOptions(skip_bad_lines=True))
    assert data.manifest["removed"]["source"] == removed


def test_a_wrong_header_fails_even_when_skipping():
    with pytest.raises(DataFormatError, match="expected the header"):
        load_movielens([FIX / "bad" / "ratings-csv-header"], PrepareOptions(skip_bad_lines=True))


# ---- the real files and the bundled copy ------------------------------------------------------------
def test_ml100k_real_counts(tmp_path):
    folder = shared_dataset("movielens-100k")
    data = prepare("movielens", [folder], tmp_path)
    m = data.manifest
    assert (m["num_interactions"], m["num_users"], m["num_items"]) == (100_000, 943, 1_682)
    assert m["name"] == "ml-100k" and m["info"]["items_encoding"] == "latin-1"
    assert m["removed"]["catalogue"]["items_without_interactions"] == 0
    titles = dict(zip(data.items["item_id"].to_list(), data.items["title"].to_list()))
    assert titles["543"] == "Misérables, Les (1995)"


def _check_ml_latest_small(data: SequenceData) -> None:
    m = data.manifest
    assert (m["num_interactions"], m["num_users"], m["num_items"]) == (100_836, 610, 9_724)
    assert m["name"] == "ml-latest-small" and m["info"]["variant_from"] == "README.txt"
    assert m["info"]["num_movies"] == 9_742 and m["info"]["num_tags"] == 3_683
    assert m["removed"]["catalogue"]["items_without_interactions"] == 18
    assert m["num_reviews"] == 3_662  # the 3,683 tags minus those on the 18 unrated movies
    texts = dict(zip(data.items["item_id"].to_list(), data.items["text"].to_list()))
    assert (
        texts["1"]
        == "Toy Story (1995). Genres: Adventure, Animation, Children, Comedy, Fantasy. Tags: pixar, fun"
    )


def test_ml_latest_small_real_counts(tmp_path):
    folder = shared_dataset("movielens-latest-small")
    raw = load_movielens([folder], PrepareOptions())
    assert raw.items is not None and raw.items.height == 9_742
    assert raw.reviews is not None and raw.reviews.height == 3_683
    _check_ml_latest_small(prepare("movielens", [folder], tmp_path))


def test_bundled_works_offline(tmp_path):
    folder = bundled_ml_latest_small()
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith("_")) == [
        "README.txt", "links.csv", "movies.csv", "ratings.csv.gz", "tags.csv",
    ]  # fmt: skip
    _check_ml_latest_small(prepare("ml-latest-small", None, tmp_path))


def test_bundled_equals_shared_folder(tmp_path):
    folder = shared_dataset("movielens-latest-small")
    shared = prepare("movielens", [folder], tmp_path / "shared")
    bundled = prepare("ml-latest-small", None, tmp_path / "bundled")
    assert bundled.sequences.equals(shared.sequences)
    assert bundled.items.equals(shared.items)
    assert bundled.reviews().equals(shared.reviews())
    assert bundled.data_hash == shared.data_hash
    digests = lambda d: {f["name"]: f["sha256"] for f in d.manifest["files"]}  # noqa: E731
    assert digests(bundled) == digests(shared)


def test_bundled_ignores_paths_and_file_options(tmp_path):
    options = PrepareOptions(interactions_file=FIX / "ml-1m" / "ratings.dat")
    raw = load_bundled_ml_latest_small([FIX / "ml-1m"], options)
    assert raw.name == "ml-latest-small" and raw.interactions.height == 100_836
