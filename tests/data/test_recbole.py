"""RecBole atomic files: typed headers, sequential rows rebuilt into sequences (cut histories
included), plain interactions, item text from .item / .text with id maps, broken files, real sets."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hstu_blair.data.options import PrepareOptions
from hstu_blair.data.prepare import prepare
from hstu_blair.data.sources.recbole import load_recbole
from hstu_blair.data.sources.recbole_sequences import SequenceRow, rebuild_sequence
from hstu_blair.errors import DataFormatError, HstuBlairError
from tests.conftest import shared_dataset

FIXTURES = Path(__file__).parent.parent / "fixtures" / "recbole"


def _sequences(raw) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for user, item in raw.interactions.select("user_id", "item_id").iter_rows():
        out.setdefault(user, []).append(item)
    return out


def test_unisrec_rows_rebuild_whole_sequences_with_original_ids():
    raw = load_recbole([FIXTURES / "unisrec"], PrepareOptions())
    asin = [f"B00000{i:04d}" for i in range(13)]
    assert (
        _sequences(raw)
        == {
            "A1SWWHE1L3XR3V": asin[0:5],  # the test row's history was cut to its last 3 items
            "ABW8NXS7SV55K": [asin[2], asin[5], asin[6]],
            "A30Y2UTHJDGD62": asin[7:13],
        }
    )
    assert raw.interactions["timestamp"].to_list()[:5] == [0, 1, 2, 3, 4]
    assert raw.info["history_cap"] == 3 and raw.info["users_longer_than_cap"] == 2
    assert raw.info["form"] == "sequential" and raw.info["time"].startswith("order-only")
    texts = dict(zip(raw.items["item_id"], raw.items["text"]))
    assert texts[asin[0]] == "Gorilla Glue, 8 ounce. Industrial & Scientific Adhesives. Gorilla"
    assert asin[12] not in texts and raw.name == "Tiny" and not raw.removed


def test_items_without_text_kept_by_default(tmp_path):
    data = prepare("recbole", [FIXTURES / "unisrec"], tmp_path / "out")
    assert (data.num_users, data.num_items, data.num_interactions) == (3, 13, 14)
    assert data.manifest["items_with_empty_text"] == 1 and data.manifest["options"]["kcore"] is None


def test_games_test_row_is_the_whole_sequence_and_item_titles():
    raw = load_recbole([FIXTURES / "games"], PrepareOptions())
    assert _sequences(raw) == {"0": ["0", "1", "2", "3", "4"], "1": ["5", "6", "7", "1", "0"]}
    titles = dict(zip(raw.items["item_id"], raw.items["title"]))
    assert titles["2"] == 'Mario Kart 8 "Deluxe"' and titles["3"] == "Café Tycoon"
    assert dict(zip(raw.items["item_id"], raw.items["text"]))["0"] == "Fire Emblem: The Sacred Stones"
    assert raw.name == "Mini-6k" and raw.info["ids"] == "the files' tokens"


def test_plain_interactions_with_time_rating_and_composed_text(tmp_path):
    raw = load_recbole([FIXTURES / "plain"], PrepareOptions())
    assert raw.interactions.rows()[:3] == [
        ("196", "242", 881250949, 3.0),
        ("186", "302", 891717742, 3.0),
        ("196", "302", 881250950, 4.5),
    ]
    assert raw.info["form"] == "interactions" and raw.info["time"].startswith("unix seconds")
    text = dict(zip(raw.items["item_id"], raw.items["text"]))  # every token field but the id
    assert text["302"] == "L.A. Confidential. 1997. Crime Film-Noir Mystery Thriller"
    chosen = load_recbole(
        [FIXTURES / "plain"],
        PrepareOptions(text_columns=["movie_title", "genre"], title_column="movie_title"),
    )
    assert dict(zip(chosen.items["item_id"], chosen.items["text"]))["242"] == "Kolya. Comedy"
    assert dict(zip(chosen.items["item_id"], chosen.items["title"]))["242"] == "Kolya"
    with pytest.raises(DataFormatError, match=r"ml.item:1 \(field 'plot'\): no field 'plot'"):
        load_recbole([FIXTURES / "plain"], PrepareOptions(text_columns=["plot"]))
    untimed = tmp_path / "u.inter"
    untimed.write_text("user_id:token\titem_id:token\n1\ta\n2\tb\n1\tc\n")
    raw = load_recbole([untimed], PrepareOptions())
    assert raw.interactions["timestamp"].to_list() == [0, 0, 1] and raw.items is None


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("no_type.inter", r"no_type.inter:1: header cell 'user_id' is not 'name:type'"),
        ("unknown_type.inter", r"unknown_type.inter:1 \(field 'user_id'\): type 'int' is not one of token"),
        (
            "float.inter",
            r"float.inter:3 \(field 'timestamp'\): expected a number \(type float\), found 'yesterday'",
        ),
        ("fields.inter", r"fields.inter:3 \(field 'timestamp'\): expected 3 fields"),
    ],
)
def test_broken_files_name_file_line_field(name, message):
    with pytest.raises(DataFormatError, match=message):
        load_recbole([FIXTURES / "bad" / name], PrepareOptions())


def test_bad_rows_are_counted_when_skipping():
    raw = load_recbole([FIXTURES / "bad" / "float.inter"], PrepareOptions(skip_bad_lines=True))
    assert raw.removed["bad_lines:float.inter"] == 1 and raw.interactions.height == 2


def test_disagreeing_rows_error_or_count():
    folder = FIXTURES / "bad" / "disagree"
    with pytest.raises(DataFormatError, match=r"D.valid.inter:2: user '0'.*not a prefix"):
        load_recbole([folder], PrepareOptions())
    raw = load_recbole([folder], PrepareOptions(skip_bad_lines=True))
    assert raw.removed["rows_disagree"] == 1 and _sequences(raw)["0"] == ["0", "1", "2", "3"]


def test_unmapped_token_and_ambiguous_files(tmp_path):
    with pytest.raises(DataFormatError, match=r"U.item2index: 1 item_id token\(s\).*'7'"):
        load_recbole([FIXTURES / "bad" / "unmapped"], PrepareOptions())
    with pytest.raises(HstuBlairError, match="no .inter file"):
        load_recbole([FIXTURES / "plain" / "ml.item"], PrepareOptions())
    for name in ("a.inter", "b.inter"):
        shutil.copy(FIXTURES / "plain" / "ml.inter", tmp_path / name)
    with pytest.raises(HstuBlairError, match="several .inter files"):
        load_recbole([tmp_path], PrepareOptions())


def test_rebuild_starts_from_a_cut_row_when_no_row_is_whole():
    steps = lambda items: tuple((i, None) for i in items)  # noqa: E731
    rows = [SequenceRow(Path("x"), 2, steps("bcde")), SequenceRow(Path("x"), 3, steps("abcd"))]
    sequence, disagree = rebuild_sequence(rows, cap=3)
    assert [s[0] for s in sequence] == list("abcde") and not disagree


def test_real_unisrec_scientific(tmp_path):
    """README: 8,442 users, 4,385 items, 59,427 interactions; text for every item."""
    data = prepare("recbole", [shared_dataset("amazon2018-scientific-unisrec")], tmp_path / "sci")
    assert (data.num_users, data.num_items, data.num_interactions) == (8_442, 4_385, 59_427)
    assert data.manifest["items_with_empty_text"] == 0 and data.manifest["info"]["history_cap"] == 50
    assert data.items["item_id"][0].startswith("B") and not data.manifest["removed"].get("source")


def test_real_games_recbole(tmp_path):
    """README: 50,546 users, 16,859 items, 440,264 interactions; a title for every item."""
    data = prepare("recbole", [shared_dataset("amazon2018-games-recbole")], tmp_path / "games")
    assert (data.num_users, data.num_items, data.num_interactions) == (50_546, 16_859, 440_264)
    assert data.manifest["items_with_empty_text"] == 0 and data.lengths.max() == 50
