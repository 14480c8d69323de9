"""TASTE Yelp loader: sequences rebuilt from test.txt, checked against valid.txt, order-only time, real files."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from hstu_blair.data.options import PrepareOptions
from hstu_blair.data.prepare import prepare
from hstu_blair.data.sources.yelp_taste import load_yelp_taste
from hstu_blair.errors import DataFormatError
from tests.conftest import shared_dataset

ITEMS = [
    "item_id\titem_name\tcategories\taddress\tcity\tstate",
    "1\tJoe's Steaks + Soda Shop\tSandwiches, Restaurants\t6030 Torresdale Ave\tPhiladelphia\tPA",
    '2\tDave & Buster\'s "D&B"\tBars, Arcades\t\tNew Orleans\tLA',
    "3\tCafé Nowhere\t\t1 Main St\t\t",
]


def _line(user: str, history: list[int], target: int) -> str:
    return "\t".join([user, *map(str, history + [0] * (50 - len(history))), str(target)])


# user 10: 4 items; user 11: a history cut at 51 (valid holds one earlier item, 3, in front)
LONG = [(i % 3) + 1 for i in range(51)]
TEST = ["user_id\tseq\ttarget", _line("10", [3, 1, 2], 1), _line("11", LONG[:50], LONG[50])]
VALID = ["user_id\tseq\ttarget", _line("10", [3, 1], 2), _line("11", [3, *LONG[:49]], LONG[49])]


def _write(folder: Path, test: list[str] = TEST, valid: list[str] = VALID) -> Path:
    folder.mkdir(exist_ok=True)
    for name, lines in (("item.txt", ITEMS), ("test.txt", test), ("valid.txt", valid)):
        with gzip.open(folder / f"{name}.gz", "wt", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
    return folder


def test_sequences_from_test_txt_with_positions_as_time(tmp_path):
    raw = load_yelp_taste([_write(tmp_path / "y")], PrepareOptions())
    rows = raw.interactions.rows()
    assert rows[:4] == [("10", "3", 0, 1.0), ("10", "1", 1, 1.0), ("10", "2", 2, 1.0), ("10", "1", 3, 1.0)]
    assert [r[1] for r in rows[4:]] == [str(i) for i in LONG] and [r[2] for r in rows[4:]] == list(range(51))
    assert raw.info["valid_agree"] == 1 and raw.info["valid_one_earlier_item_unused"] == 1
    assert raw.info["users_at_51_cap"] == 1 and raw.info["time"].startswith("order-only")
    assert dict(zip(raw.items["item_id"], raw.items["text"])) == {
        "1": "Joe's Steaks + Soda Shop. Categories: Sandwiches, Restaurants. Location: Philadelphia, PA",
        "2": 'Dave & Buster\'s "D&B". Categories: Bars, Arcades. Location: New Orleans, LA',
        "3": "Café Nowhere",
    }
    data = prepare("yelp-taste", [tmp_path / "y"], tmp_path / "out", PrepareOptions(duplicates="keep"))
    assert data.lengths.tolist() == [4, 51]


def test_valid_disagreement_is_an_error_or_counted(tmp_path):
    valid = [VALID[0], _line("10", [3, 2], 1), VALID[2]]
    folder = _write(tmp_path / "y", valid=valid)
    with pytest.raises(DataFormatError, match=r"valid.txt.gz:2: user '10'.*without its target"):
        load_yelp_taste([folder], PrepareOptions())
    raw = load_yelp_taste([folder], PrepareOptions(skip_bad_lines=True))
    assert raw.removed["valid_disagrees"] == 1 and raw.interactions.height == 4 + 51
    missing = _write(tmp_path / "m", valid=VALID[:2])
    with pytest.raises(DataFormatError, match=r"valid.txt.gz \(field 'user_id'\): user '11'.*no line"):
        load_yelp_taste([missing], PrepareOptions())


def test_malformed_lines_name_file_line_field(tmp_path):
    gap = _line("10", [3, 1, 2], 1).replace("\t2\t0\t0", "\t0\t2\t0", 1)
    with pytest.raises(DataFormatError, match=r"test.txt.gz:2 \(field 'seq\[3\]'\).*after the 0 padding"):
        load_yelp_taste([_write(tmp_path / "a", test=[TEST[0], gap, TEST[2]])], PrepareOptions())
    short = "\t".join(_line("10", [3, 1, 2], 1).split("\t")[:-1])
    with pytest.raises(DataFormatError, match=r"test.txt.gz:2: expected the user id, 50 history ids"):
        load_yelp_taste([_write(tmp_path / "b", test=[TEST[0], short, TEST[2]])], PrepareOptions())
    word = _line("10", [3, 1, 2], 1).rsplit("\t", 1)[0] + "\tx"
    with pytest.raises(DataFormatError, match=r"test.txt.gz:2 \(field 'target'\).*integer item id"):
        load_yelp_taste([_write(tmp_path / "c", test=[TEST[0], word, TEST[2]])], PrepareOptions())
    raw = load_yelp_taste(
        [_write(tmp_path / "d", test=[TEST[0], word, TEST[2]])], PrepareOptions(skip_bad_lines=True)
    )
    assert raw.removed["bad_lines:test.txt.gz"] == 1 and raw.interactions["user_id"].unique().to_list() == [
        "11"
    ]


def test_real_taste_files(tmp_path):
    """README: 19,845 users, 14,535 businesses, 202,898 interactions; 191 users cut at 51."""
    folder = shared_dataset("yelp-taste-seq")
    raw = load_yelp_taste([folder], PrepareOptions())
    assert raw.interactions.height == 202_898 and raw.items.height == 14_535
    assert raw.info["users_at_51_cap"] == 191 and not raw.removed
    assert raw.info["valid_agree"] + raw.info["valid_one_earlier_item_unused"] == 19_845
    data = prepare("yelp-taste", [folder], tmp_path / "yelp", PrepareOptions())
    assert (data.num_users, data.num_items, data.num_interactions) == (19_845, 14_535, 202_898)
