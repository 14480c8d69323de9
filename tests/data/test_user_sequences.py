"""User sequence lines (S3-Rec Amazon 2014 shape): order-only time, optional item table, items
without text kept by default, errors naming file:line, the real Sports files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hstu_blair.data.options import PrepareOptions
from hstu_blair.data.prepare import prepare
from hstu_blair.data.sources.user_sequences import load_user_sequences
from hstu_blair.errors import DataFormatError, HstuBlairError
from tests.conftest import shared_dataset

FIXTURES = Path(__file__).parent.parent / "fixtures" / "user-sequences"


def test_sequences_in_line_order_with_positions_as_time():
    raw = load_user_sequences([FIXTURES], PrepareOptions())
    rows = raw.interactions.rows()
    assert rows[:5] == [
        ("AIXZKN4ACSKI", "1881509818", 0, 1.0),
        ("AIXZKN4ACSKI", "B0048KGFHU", 1, 1.0),
        ("AIXZKN4ACSKI", "B0081JJVUC", 2, 1.0),
        ("AIXZKN4ACSKI", "B000N8OIE8", 3, 1.0),
        ("AIXZKN4ACSKI", "B004Y27DVY", 4, 1.0),
    ]
    assert raw.interactions.height == 5 + 5 + 6 and raw.info["time"].startswith("order-only")
    texts = dict(zip(raw.items["item_id"], raw.items["text"]))
    assert texts["B0048KGFHU"] == "Café Camp Stove & Grill" and texts["B004Y27DVY"] == ""
    assert raw.info["items_not_in_item_table"] == 1  # B00D7ONGFC
    assert raw.info["item_table_blank_texts"] == 1 and raw.name == "user-sequences"


def test_items_without_text_are_kept_by_default_and_counted(tmp_path):
    data = prepare("user-sequences", [FIXTURES], tmp_path / "keep")
    assert (data.num_users, data.num_items, data.num_interactions) == (3, 7, 16)
    assert (
        data.manifest["items_with_empty_text"] == 2 and "items_without_text" not in data.manifest["removed"]
    )
    assert data.manifest["options"]["items_without_text"] == "keep"
    assert sorted(data.lengths.tolist()) == [5, 5, 6]  # no k-core: the published split is already filtered
    dropped = prepare(
        "user-sequences", [FIXTURES], tmp_path / "drop", PrepareOptions(items_without_text="drop")
    )
    assert dropped.manifest["removed"]["items_without_text"] == {"interactions": 3, "users": 0, "items": 2}
    missing = prepare(
        "user-sequences", [FIXTURES], tmp_path / "missing", PrepareOptions(items_without_text="drop-missing")
    )
    assert missing.manifest["removed"]["items_without_text"]["items"] == 1


def test_without_item_table_and_explicit_files(tmp_path):
    shutil.copy(FIXTURES / "user_sequence.txt", tmp_path / "seqs.txt")
    raw = load_user_sequences([tmp_path / "seqs.txt"], PrepareOptions())
    assert raw.items is None and raw.interactions.height == 16 and raw.name == "seqs"
    options = PrepareOptions(
        interactions_file=tmp_path / "seqs.txt", items_file=FIXTURES / "sports_asin2title.tsv"
    )
    assert load_user_sequences([], options).items.height == 6
    shutil.copy(FIXTURES / "sports_asin2title.tsv", tmp_path / "other.tsv")
    shutil.copy(FIXTURES / "sports_asin2title.tsv", tmp_path / "more.tsv")
    with pytest.raises(HstuBlairError, match="several item tables"):
        load_user_sequences([tmp_path], PrepareOptions())


def test_bad_lines_name_file_and_line(tmp_path):
    bad = FIXTURES / "bad"
    with pytest.raises(DataFormatError, match=r"user_sequence.txt:2: user 'U2' has no item"):
        load_user_sequences([bad / "user_sequence.txt"], PrepareOptions())
    raw = load_user_sequences([bad / "user_sequence.txt"], PrepareOptions(skip_bad_lines=True))
    assert raw.removed["bad_lines:user_sequence.txt"] == 2  # line 2 (no item), line 4 (U1 again)
    assert raw.interactions["user_id"].unique(maintain_order=True).to_list() == ["U1", "U3"]
    repeated = tmp_path / "user_sequence.txt"
    repeated.write_text("U1 A B C\nU3 A C\nU1 B C\n")
    with pytest.raises(DataFormatError, match=r"user_sequence.txt:3 \(field 'user_id'\).*first on line 1"):
        load_user_sequences([repeated], PrepareOptions())
    with pytest.raises(DataFormatError, match=r"items.tsv:2 \(field 'text'\): expected 'ITEM_ID<TAB>text'"):
        load_user_sequences([FIXTURES / "user_sequence.txt"], PrepareOptions(items_file=bad / "items.tsv"))


def test_real_sports_files(tmp_path):
    """README: 35,598 users, 18,357 items, 296,337 interactions; titles for 18,257 items."""
    folder = shared_dataset("amazon2014-sports-5core-seq")
    data = prepare("user-sequences", [folder], tmp_path / "sports")
    assert (data.num_users, data.num_items, data.num_interactions) == (35_598, 18_357, 296_337)
    assert data.manifest["items_with_empty_text"] == 100
    assert data.manifest["info"]["items_not_in_item_table"] == 100
    assert data.name == "amazon2014-sports-5core-seq"
