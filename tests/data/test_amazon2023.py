"""Amazon Reviews 2023 loader: published formats, reference text, bad input, the real files at hand."""

from __future__ import annotations

import gzip
import html
import json
import logging
import re
import shutil
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from hstu_blair.data.item_text import clean_text
from hstu_blair.data.prepare import PrepareOptions, prepare
from hstu_blair.data.sources.amazon2023 import load_amazon2023
from hstu_blair.data.sources.amazon2023_meta import clean_item_text, reference_item_text
from hstu_blair.data.sources.amazon2023_reviews import read_ratings_csv
from hstu_blair.data.sources.bad_lines import BadLines
from hstu_blair.data.sources.base import RawDataset
from hstu_blair.errors import DataFormatError, HstuBlairError
from tests.conftest import FIXTURES, shared_dataset

FIX = FIXTURES / "amazon2023"
BAD = FIX / "bad"
U1, U2, U3 = "AHUSER1" + "A" * 21, "AHUSER2" + "B" * 21, "AHUSER3" + "C" * 21


def _load(*paths: Path, **opts: object) -> RawDataset:
    return load_amazon2023(list(paths), PrepareOptions(**opts))


def _texts(raw: RawDataset) -> dict[str, str]:
    assert raw.items is not None
    return dict(zip(raw.items["item_id"].to_list(), raw.items["text"].to_list()))


# ---- interactions ---------------------------------------------------------------------------------


def test_rating_csv_rows_in_file_order_and_ms_floored_to_seconds():
    raw = _load(FIX / "Tiny_Games.csv")
    df = raw.interactions
    assert raw.name == "Tiny_Games" and raw.source == "amazon2023"
    assert df.height == 10  # every data line, the exact duplicate included (prepare drops it)
    assert df.row(0) == (U1, "B0TINY0001", 1600000000, 5.0)  # 1600000000123 ms
    assert df.row(1) == (U1, "B0TINY0002", 1600000001, 4.0)  # 1600000001999 ms: floor, not round
    assert df["item_id"].to_list()[-3:] == ["B0TINY0005", "B0TINY0001", "B0TINY0003"]
    assert df.schema == {
        "user_id": pl.String,
        "item_id": pl.String,
        "timestamp": pl.Int64,
        "rating": pl.Float32,
    }
    assert raw.info["source_timestamp_unit"] == "ms"
    assert raw.info["variant"] == "5core-rating-csv"


def test_polars_path_and_line_by_line_path_agree(tmp_path):
    # a blank line and a CRLF line send the file down the line-by-line path; the result is the same
    lines = (FIX / "Tiny_Games.csv").read_text().splitlines()
    odd = tmp_path / "Tiny_Games.csv"
    odd.write_text("\n".join(lines[:3]) + "\n\n" + "\r\n".join(lines[3:]) + "\r\n")
    bad = BadLines(False, Counter())
    fast = read_ratings_csv(FIX / "Tiny_Games.csv", bad)
    slow = read_ratings_csv(odd, bad)
    assert fast.equals(slow)


def test_gzip_csv_and_gzip_meta_are_read(tmp_path):
    with gzip.open(tmp_path / "Tiny_Games.csv.gz", "wb") as fh:
        fh.write((FIX / "Tiny_Games.csv").read_bytes())
    shutil.copy(FIX / "meta_Tiny_Games.jsonl.gz", tmp_path)
    raw = _load(tmp_path)
    assert raw.name == "Tiny_Games"
    assert raw.interactions.equals(_load(FIX / "Tiny_Games.csv").interactions)
    assert raw.items is not None and raw.items.height == 4


# ---- item text ------------------------------------------------------------------------------------


def test_meta_clean_text_html_tags_non_ascii_duplicates_and_unused_items():
    raw = _load(FIX)
    texts = _texts(raw)
    assert texts == {
        "B0TINY0001": 'Super Jump & Run "Deluxe". Fun for all ages, 4 players local co-op. '
        "Video Games, Nintendo Switch, Games. Jump & run through 40 levels., Best platformer of the year",
        "B0TINY0002": "Pokémon Café – Édition",  # \u-escaped in the file; empty lists add nothing
        "B0TINY0003": "Zelda™ Collector’s Set. Includes art book. Video Games",  # raw UTF-8 in the file
        "B0TINY0004": "Dup first. First copy. Video Games",  # the first of two lines wins
    }
    assert raw.items is not None
    assert raw.items.filter(pl.col("item_id") == "B0TINY0001")["title"].item() == 'Super Jump & Run "Deluxe"'
    assert raw.removed["duplicate_meta_items"] == 1
    assert raw.info["meta_lines"] == 6
    assert raw.info["meta_lines_skipped"] == 1  # B0TINY0009 has no interaction: never parsed
    assert raw.info["items_without_metadata"] == 1  # B0TINY0005
    assert raw.info["has_metadata"] is True


def test_ascii_only_replaces_non_ascii_in_clean_text():
    texts = _texts(_load(FIX, ascii_only=True))
    assert texts["B0TINY0002"] == "Pok mon Caf dition"
    assert texts["B0TINY0003"] == "Zelda Collector s Set. Includes art book. Video Games"


def test_reference_item_text_hand_computed():
    meta = {
        "title": " Mega &amp; Man<br>\tX ",  # unescape, strip, drop the tag, tab -> space
        "features": ["Fast", "Fun  &lt;3"],  # "<3" has no closing ">", so it stays
        "categories": [],  # empty list -> " "
        "description": float("nan"),  # float -> str(x) + ". "
    }
    assert reference_item_text(meta) == "Mega & Man X Fast, Fun <3.  nan. "
    # non-ASCII becomes a space *after* collapsing, so double spaces remain
    meta = {
        "title": "Café Über",
        "features": ["a", "b"],
        "categories": ["Video Games"],
        "description": ["x&amp;y"],
    }
    assert reference_item_text(meta) == "Caf   ber a, b. Video Games. x&y. "
    assert reference_item_text(meta, ascii_only=False) == "Café Über a, b. Video Games. x&y. "
    assert clean_item_text(meta) == "Café Über. a, b. Video Games. x&y"


def test_reference_text_style_through_the_loader():
    raw = load_amazon2023([FIX], PrepareOptions.reference())
    texts = _texts(raw)
    assert texts["B0TINY0001"] == (
        'Super Jump & Run "Deluxe" Fun for all ages, 4 players local co-op. '
        "Video Games, Nintendo Switch, Games. Jump & run through 40 levels., Best platformer of the year. "
    )
    # title "Pokémon Café – Édition": é, é, –, É -> spaces; then three empty lists -> " " each
    assert texts["B0TINY0002"] == "Pok mon Caf     dition    "
    assert texts["B0TINY0004"] == "Dup first First copy. Video Games.  "
    assert raw.info["text_style"] == "reference"


# ---- reviews ----------------------------------------------------------------------------------


def test_review_table_from_raw_reviews_of_interaction_items():
    raw = _load(FIX)
    assert raw.reviews is not None
    assert raw.reviews.rows() == [
        (U1, "B0TINY0001", "Great & fun. Loved it. Would buy again"),
        (U2, "B0TINY0001", "Meh. It’s ok"),
        (U1, "B0TINY0002", "Café edition is nice"),  # empty title: text only
    ]
    assert raw.info["reviews_read"] == 4
    assert raw.info["reviews_of_other_items"] == 1  # B0TINY0009
    assert _load(FIX, with_reviews=False).reviews is None


@pytest.mark.parametrize("ascii_only", [False, True])
def test_clean_text_fast_paths_equal_the_plain_definition(ascii_only):
    cases = [
        "",
        "  plain  ",
        "Loved it.<br /><br />Would buy again",
        "a &amp; b &lt;i&gt;x&lt;/i&gt; &#39;q&#39;",
        "tab\there\nnew\r\nline\x0bv\x0cf\x1c\x1d\x1e\x1f\x85end",
        "nbsp\xa0em\u2003ideo\u3000line\u2028sep",
        "Caf\u00e9 \u2013 <b>bold</b> <unclosed & >",
    ]
    for text in cases:
        plain = re.sub(r"<[^>]*>", " ", html.unescape(text))
        if ascii_only:
            plain = re.sub(r"[^\x00-\x7f]", " ", plain)
        assert clean_text(text, ascii_only) == re.sub(r"\s+", " ", plain).strip(), repr(text)


def test_bad_raw_review_and_sample_lines_name_the_field(tmp_path):
    review = json.loads((FIX / "Tiny_Games.jsonl").read_text().splitlines()[0])
    del review["timestamp"]
    path = tmp_path / "Tiny_Games.jsonl"
    path.write_text((FIX / "Tiny_Games.jsonl").read_text() + json.dumps(review) + "\n")
    with pytest.raises(
        DataFormatError, match=r"Tiny_Games\.jsonl:5 \(field 'timestamp'\): expected an integer"
    ):
        _load(path)
    record = {
        "user_id": "U",
        "category": "Video_Games",
        "history": [
            {"parent_asin": "B1", "rating": 5.0, "timestamp_ms": 1},
            {"parent_asin": "B2", "rating": 4.0},
        ],
        "heldout": {"parent_asin": "B3", "rating": 3.0, "timestamp_ms": 3},
    }
    path = tmp_path / "training.jsonl"
    path.write_text(
        json.dumps({**record, "history": record["history"][:1]}) + "\n" + json.dumps(record) + "\n"
    )
    with pytest.raises(DataFormatError) as info:
        _load(path)
    assert (info.value.line, info.value.field) == (2, "history[1].timestamp_ms")
    raw = _load(path, skip_bad_lines=True)
    assert raw.removed == {"bad_lines:training.jsonl": 1} and raw.interactions.height == 2


def test_raw_reviews_are_the_interactions_without_a_rating_csv(tmp_path):
    shutil.copy(FIX / "Tiny_Games.jsonl", tmp_path)
    shutil.copy(FIX / "meta_Tiny_Games.jsonl.gz", tmp_path)
    raw = _load(tmp_path)
    assert raw.info["variant"] == "raw-reviews"
    assert raw.interactions.rows() == [
        (U1, "B0TINY0001", 1600000000, 5.0),
        (U2, "B0TINY0001", 1600000003, 3.0),
        (U3, "B0TINY0009", 1600000004, 2.0),
        (U1, "B0TINY0002", 1600000001, 4.0),
    ]
    assert raw.reviews is not None and raw.reviews.height == 4
    # B0TINY0009 now has an interaction; B0TINY0003 and both B0TINY0004 lines have none
    assert raw.info["meta_items"] == 3 and raw.info["meta_lines_skipped"] == 3
    assert "duplicate_meta_items" not in raw.removed  # duplicates of unused items are not looked at


def test_file_overrides_take_any_name(tmp_path):
    shutil.copy(FIX / "Tiny_Games.csv", tmp_path / "ratings.txt")
    shutil.copy(FIX / "meta_Tiny_Games.jsonl.gz", tmp_path / "items.gz")
    options = PrepareOptions(
        interactions_file=tmp_path / "ratings.txt", items_file=tmp_path / "items.gz", name="toy"
    )
    raw = load_amazon2023([], options)
    assert raw.name == "toy"
    assert raw.interactions.height == 10 and raw.items is not None and raw.items.height == 4
    assert raw.reviews is None


def test_without_metadata_items_are_none_and_a_warning_is_logged(caplog):
    with caplog.at_level(logging.WARNING):
        raw = _load(FIX / "Tiny_Games.csv")
    assert raw.items is None and raw.info["has_metadata"] is False
    assert "no metadata file" in caplog.text


def test_ambiguous_or_missing_inputs_are_errors(tmp_path):
    shutil.copy(FIX / "Tiny_Games.csv", tmp_path / "A.csv")
    shutil.copy(FIX / "Tiny_Games.csv", tmp_path / "B.csv")
    with pytest.raises(HstuBlairError, match="A.csv, B.csv"):
        _load(tmp_path)
    with pytest.raises(HstuBlairError, match="no Amazon Reviews 2023 interaction file"):
        _load(FIX / "meta_Tiny_Games.jsonl.gz")


# ---- end to end through prepare ---------------------------------------------------------------------


def test_prepare_counts_duplicates_items_without_metadata_and_keeps_tie_order(tmp_path):
    data = prepare("amazon2023", [FIX], tmp_path, PrepareOptions(kcore=0))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert (manifest["num_users"], manifest["num_items"], manifest["num_interactions"]) == (3, 4, 8)
    assert manifest["removed"]["source"] == {"duplicate_meta_items": 1}
    assert manifest["removed"]["duplicates"]["interactions"] == 1
    assert manifest["removed"]["items_without_text"] == {"interactions": 1, "users": 0, "items": 1}
    assert manifest["num_reviews"] == 3
    assert manifest["info"]["source_timestamp_unit"] == "ms" and manifest["timestamp_unit"] == "s"
    assert [f["name"] for f in manifest["files"]] == [
        "Tiny_Games.csv",
        "Tiny_Games.jsonl",
        "meta_Tiny_Games.jsonl.gz",
    ]
    assert data.items["item_id"].to_list() == ["B0TINY0001", "B0TINY0002", "B0TINY0003", "B0TINY0004"]
    u1, u3 = data.user_index(U1), data.user_index(U3)
    assert data.user_items(u1).tolist() == [1, 2, 3, 1]
    assert data.user_times(u1).tolist() == [1600000000, 1600000001, 1600000002, 1600000007]
    assert data.user_items(u3).tolist() == [2, 3]  # equal timestamps: file order (line 8 before line 11)


def test_prepare_iterative_kcore_on_fixture(tmp_path):
    data = prepare("amazon2023", [FIX], tmp_path, PrepareOptions(kcore=2))
    # B0TINY0004 (1 left after dedup) goes, then U2 (1 left) goes
    assert (data.num_users, data.num_items, data.num_interactions) == (2, 3, 6)
    assert data.manifest["removed"]["kcore"]["rounds"] == 3


# ---- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "line", "field", "words"),
    [
        ("missing_timestamp.csv", 1, "timestamp", "header lacks column 'timestamp'"),
        ("text_timestamp.csv", 4, "timestamp", "found 'yesterday'"),
        ("latin1.csv", 3, "user_id", "not valid UTF-8"),
        ("garbage.csv", 1, None, "not valid UTF-8"),
        ("mixed.csv", 3, "rating", "expected a number, found 'five'"),
    ],
)
def test_bad_rating_csv_names_file_line_and_field(name, line, field, words):
    with pytest.raises(DataFormatError) as info:
        _load(BAD / name)
    err = info.value
    assert (Path(err.path).name, err.line, err.field) == (name, line, field)
    assert f"{name}:{line}" in str(err) and words in str(err)
    if field:
        assert f"field {field!r}" in str(err)


@pytest.mark.parametrize(
    ("name", "line", "field", "words"),
    [
        ("meta_malformed.jsonl", 2, None, "malformed JSON at column"),
        ("meta_no_asin.jsonl", 2, "parent_asin", "expected a non-empty string, missing"),
        ("meta_latin1.jsonl", 2, "title", "not valid UTF-8"),
        ("meta_garbage.jsonl", 1, None, "not valid UTF-8"),
        ("meta_truncated.jsonl.gz", 1, None, "corrupt or truncated gzip"),
    ],
)
def test_bad_meta_names_file_line_and_field(name, line, field, words):
    with pytest.raises(DataFormatError) as info:
        _load(FIX / "Tiny_Games.csv", items_file=BAD / name)
    err = info.value
    assert (Path(err.path).name, err.line, err.field) == (name, line, field)
    assert f"{name}:{line}" in str(err) and words in str(err)


def test_empty_file_names_itself():
    with pytest.raises(DataFormatError, match=r"empty\.csv: file is empty"):
        _load(BAD / "empty.csv")
    with pytest.raises(DataFormatError, match=r"empty\.csv: file is empty"):
        _load(FIX / "Tiny_Games.csv", items_file=BAD / "empty.csv")


def test_skip_bad_lines_counts_every_bad_row(tmp_path):
    raw = _load(BAD / "mixed.csv", skip_bad_lines=True)
    # lines 3 (rating), 5 (short row), 6 (timestamp), 7 (encoding), 8 (empty user_id) are counted
    assert raw.removed == {"bad_lines:mixed.csv": 5}
    assert raw.interactions["item_id"].to_list() == ["B0TINY0001", "B0TINY0001", "B0TINY0003"]
    raw = _load(FIX / "Tiny_Games.csv", items_file=BAD / "meta_no_asin.jsonl", skip_bad_lines=True)
    assert raw.removed == {"bad_lines:meta_no_asin.jsonl": 1}
    assert raw.items is not None and raw.items["item_id"].to_list() == ["B0TINY0001"]
    data = prepare("amazon2023", [BAD / "mixed.csv"], tmp_path, PrepareOptions(kcore=0, skip_bad_lines=True))
    assert data.manifest["removed"]["source"] == {"bad_lines:mixed.csv": 5}
    assert data.num_interactions == 3


# ---- the real files at hand -------------------------------------------------------------------------


def test_all_beauty_5core_real_file(tmp_path):
    folder = shared_dataset("amazon2023-all-beauty-5core")
    raw = _load(folder)  # the sha256 list beside it is ignored, and recorded as such
    df = raw.interactions
    assert (df.height, df["user_id"].n_unique(), df["item_id"].n_unique()) == (2535, 253, 356)
    assert raw.items is None and raw.info["has_metadata"] is False
    assert raw.info["ignored_files"] == ["amazon2023_official_file_sha256_sizes.tsv"]
    assert df.row(0) == ("AFSKPY37N3C43SOI5IEXEK5JSIYA", "B07J3GH1W1", 1547589356, 5.0)  # 1547589356557 ms
    # the published 5-core is already a 5-core with no exact duplicates: iterative k=5 removes nothing
    data = prepare("amazon2023", [folder], tmp_path, PrepareOptions(kcore=5, kcore_mode="iterative"))
    assert (data.num_users, data.num_items, data.num_interactions) == (253, 356, 2535)
    removed = data.manifest["removed"]
    assert removed["kcore"] == {"interactions": 0, "users": 0, "items": 0, "rounds": 1, "k": 5}
    assert removed["duplicates"]["interactions"] == 0
    assert data.lengths.min() == 5


def test_mini_multicategory_sample_counts(tmp_path):
    """The sample's README says 691 users, 3,455 interactions, 2,610 items, 23 categories.

    Through the loader: 691 user records (354 distinct ``user_id``; a user is one person in one
    category), 3,455 interactions (4 history + 1 held-out each), 2,610 distinct items in the
    histories (3,228 with the held-out reviews), 23 categories in training.jsonl.gz (24 in all: one
    validation record is Baby_Products).
    """
    folder = shared_dataset("amazon2023-mini-multicategory-sample")
    raw = _load(folder)
    assert raw.info["variant"] == "mini-sample" and raw.name == "amazon2023-mini-sample"
    assert raw.info["records"] == 691 and raw.info["distinct_user_ids"] == 354
    assert raw.info["history_items"] == 2610 and raw.info["categories"] == 24
    assert _load(folder / "training.jsonl.gz").info["categories"] == 23
    assert raw.reviews is not None and raw.reviews.height == 3455
    data = prepare("amazon2023", [folder], tmp_path, PrepareOptions(kcore=0))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert (manifest["num_users"], manifest["num_interactions"], manifest["num_items"]) == (691, 3455, 3228)
    assert manifest["removed"]["duplicates"]["interactions"] == 0
    assert manifest["removed"]["items_without_text"]["interactions"] == 0
    assert manifest["items_with_empty_text"] == 0
    assert data.lengths.tolist() == [5] * 691
    first = data.items.row(0, named=True)
    assert first["text"].startswith(first["title"]) and first["title"]
