"""The one id rule: strip, NFC, refuse empty ids and invisible / control characters; every source."""

from __future__ import annotations

import polars as pl
import pytest

from hstu_blair.data import InvalidIdError, normalize_id
from hstu_blair.data.ids import normalize_ids
from hstu_blair.data.options import PrepareOptions
from hstu_blair.data.sources.generic import load_generic
from hstu_blair.data.sources.user_sequences import load_user_sequences
from hstu_blair.errors import DataFormatError


def test_strip_and_nfc():
    assert normalize_id("  B00X \t") == "B00X"
    assert normalize_id("Cafe\u0301") == "Caf\u00e9" == normalize_id("Caf\u00e9")
    assert normalize_id("user name") == "user name"  # inner spaces are part of the id


@pytest.mark.parametrize(
    "bad",
    ["", "   ", "a\u200bb", "\ufeffB00X", "a\u200eb", "a\u200fb", "\u202aX\u202c", "a\u2066b\u2069", "a\tb"],
)
def test_refused(bad):
    with pytest.raises(InvalidIdError):
        normalize_id(bad)
    with pytest.raises(DataFormatError, match=r"f.csv:7 \(field 'user_id'\)"):
        normalize_id(bad, path="f.csv", line=7, field="user_id")


def test_column_version_agrees():
    values = pl.Series("id", ["B00X", " B00X ", "Cafe\u0301", "a\u200bb", "", None])
    assert normalize_ids(values).to_list() == ["B00X", "B00X", "Caf\u00e9", None, None, None]


def test_sources_apply_it(tmp_path):
    (tmp_path / "e.csv").write_text("user_id,item_id,timestamp\n u1 ,i1,1\nu1,i\u200b2,2\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"e.csv:3 \(field 'item_id'\).*invisible or control"):
        load_generic([tmp_path / "e.csv"], PrepareOptions(rating_column=None))
    raw = load_generic([tmp_path / "e.csv"], PrepareOptions(rating_column=None, skip_bad_lines=True))
    assert raw.interactions["user_id"].to_list() == ["u1"]
    (tmp_path / "user_sequence.txt").write_text("U1 A B\nU2 A \u200eB\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"user_sequence.txt:2 \(field 'item\[1\]'\).*U\+200E"):
        load_user_sequences([tmp_path / "user_sequence.txt"], PrepareOptions())
