"""Last.fm HetRec loader: first tag per (user, artist), dates, top tags in the text, bad lines, real files."""

from __future__ import annotations

import calendar
import gzip
from pathlib import Path

import polars as pl
import pytest

from hstu_blair.cli import main
from hstu_blair.data.options import PrepareOptions
from hstu_blair.data.prepare import prepare
from hstu_blair.data.sources.lastfm import load_lastfm
from hstu_blair.errors import DataFormatError
from tests.conftest import shared_dataset

TAGGED = [
    "userID\tartistID\ttagID\tday\tmonth\tyear",
    "2\t51\t1\t1\t4\t2009",  # user 2 tags artist 51 twice; this one is first
    "2\t51\t2\t1\t6\t2009",
    "2\t52\t1\t1\t4\t2009",  # ties with line 2: file order
    "3\t51\t2\t1\t5\t2008",  # the earlier date of (3, 51) is on a later line
    "3\t53\t3\t15\t1\t2010",
    "3\t51\t1\t1\t7\t2008",
]
ARTISTS = [
    "id\tname\turl\tpictureURL",
    '51\t"Weird Al" Yankovic\thttp://www.last.fm/music/x\thttp://img/1.jpg',
    "52\tSigur Rós\thttp://www.last.fm/music/y\t",
    "53\tNobody Tags Me Twice\thttp://www.last.fm/music/z\t",
]
TAGS = ["tagID\ttagValue", "1\tparody", "2\ttropicália", "3\tpost-rock"]


def _seconds(year: int, month: int, day: int) -> int:
    return calendar.timegm((year, month, day, 0, 0, 0))


def _write(folder: Path, tagged: list[str] = TAGGED) -> Path:
    folder.mkdir(exist_ok=True)
    with gzip.open(folder / "user_taggedartists.dat.gz", "wt", encoding="utf-8") as fh:
        fh.write("\n".join(tagged) + "\n")
    (folder / "artists.dat").write_text("\n".join(ARTISTS) + "\n", encoding="utf-8")
    (folder / "tags.dat").write_bytes(("\n".join(TAGS) + "\n").encode("latin-1"))  # published in latin-1
    return folder


def test_first_tag_per_user_and_artist_in_file_order(tmp_path):
    raw = load_lastfm([_write(tmp_path / "lf")], PrepareOptions())
    assert raw.source == "lastfm-hetrec"
    assert raw.interactions.rows() == [
        ("2", "51", _seconds(2009, 4, 1), 1.0),
        ("2", "52", _seconds(2009, 4, 1), 1.0),
        ("3", "51", _seconds(2008, 5, 1), 1.0),
        ("3", "53", _seconds(2010, 1, 15), 1.0),
    ]
    assert raw.removed["later_tags_same_artist"] == 2
    assert raw.info["tags_encoding"] == "latin-1" and raw.info["num_tag_assignments"] == 6
    # artist 51: parody x2 (first used on line 2), tropicália x2 (line 3): ties by first use
    assert dict(zip(raw.items["item_id"], raw.items["text"])) == {
        "51": '"Weird Al" Yankovic. Tags: parody, tropicália',
        "52": "Sigur Rós. Tags: parody",
        "53": "Nobody Tags Me Twice. Tags: post-rock",
    }
    assert raw.reviews is not None and raw.reviews.height == 6


def test_name_only_text_and_no_reviews(tmp_path):
    raw = load_lastfm([_write(tmp_path / "lf")], PrepareOptions(tag_text=False, with_reviews=False))
    assert raw.items["text"].to_list() == ['"Weird Al" Yankovic', "Sigur Rós", "Nobody Tags Me Twice"]
    assert raw.reviews is None and raw.info["tags_in_text"] is False


def test_prepare_keeps_file_order_for_month_ties(tmp_path):
    data = prepare("lastfm-hetrec", [_write(tmp_path / "lf")], tmp_path / "out", PrepareOptions(kcore=0))
    assert data.num_users == 2 and data.num_interactions == 4
    ids = dict(zip(data.items["item_id"], data.items["item_idx"]))
    assert data.sequences["item_idx"].to_list()[0] == [ids["51"], ids["52"]]


def test_impossible_date_and_unknown_tag_name_file_line_field(tmp_path):
    bad = [*TAGGED[:3], "2\t52\t1\t31\t2\t2009", *TAGGED[4:]]
    folder = _write(tmp_path / "date", bad)
    with pytest.raises(DataFormatError, match=r"user_taggedartists.dat.gz:4 \(field 'day'\).*real date"):
        load_lastfm([folder], PrepareOptions())
    raw = load_lastfm([folder], PrepareOptions(skip_bad_lines=True))
    assert raw.removed["bad_lines:user_taggedartists.dat.gz"] == 1
    unknown = [*TAGGED[:5], "3\t53\t9\t15\t1\t2010", *TAGGED[6:]]
    with pytest.raises(DataFormatError, match=r"user_taggedartists.dat.gz:6 \(field 'tagID'\).*tag id 9"):
        load_lastfm([_write(tmp_path / "tag", unknown)], PrepareOptions())
    short = [*TAGGED[:2], "2\t51\t1\t1\t4", *TAGGED[3:]]
    with pytest.raises(DataFormatError, match=r"user_taggedartists.dat.gz:3 \(field 'year'\).*6 fields"):
        load_lastfm([_write(tmp_path / "short", short)], PrepareOptions())


def test_real_hetrec_files(tmp_path):
    """README: 186,479 tag assignments; as first tag per (user, artist), 1,222 users with 5 or more,
    12,274 artists, 69,595 interactions."""
    folder = shared_dataset("lastfm-hetrec2011-2k")
    raw = load_lastfm([folder], PrepareOptions())
    assert raw.info["num_tag_assignments"] == 186_479
    options = PrepareOptions(kcore=5, kcore_mode="users-only", items_without_text="keep")
    data = prepare("lastfm-hetrec", [folder], tmp_path / "lf", options)
    assert (data.num_users, data.num_items, data.num_interactions) == (1_222, 12_274, 69_595)


def test_cli_no_tag_text(tmp_path, capsys):
    folder = _write(tmp_path / "lf")
    args = [
        "prepare",
        "lastfm-hetrec",
        "--input",
        str(folder),
        "--out",
        str(tmp_path / "out"),
        "--kcore",
        "0",
    ]
    assert main([*args, "--no-tag-text"]) == 0
    items = pl.read_parquet(tmp_path / "out" / "items.parquet")
    assert sorted(items["text"]) == ['"Weird Al" Yankovic', "Nobody Tags Me Twice", "Sigur Rós"]
    assert "users         2" in capsys.readouterr().out
