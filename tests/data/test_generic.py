"""Generic loader: CSV/TSV/Parquet/JSONL round trips, column options, ISO dates, bad inputs."""

from __future__ import annotations

import datetime as dt
import gzip
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from hstu_blair.data.prepare import PrepareOptions, prepare
from hstu_blair.data.sources.bad_lines import BadLines
from hstu_blair.data.sources.columns import parse_iso
from hstu_blair.data.sources.generic import load_generic
from hstu_blair.data.sources.readers import split_fields, split_lines
from hstu_blair.data.sources.tables import table_format
from hstu_blair.errors import DataFormatError, HstuBlairError
from tests.conftest import FIXTURES

FIX = FIXTURES / "generic"
TEXT = dict(text_columns=["title", "description"], title_column="title")

# the logical content of interactions.csv / interactions.jsonl (seconds of the ISO dates in the JSONL)
ROWS = [
    ("alice", "10", 1614834367, 4.0),  # 2021-03-04T05:06:07Z
    ("alice", "11", 1614902400, 3.5),  # 2021-03-05 (a date: midnight UTC)
    ("bob", "10", 1614823200, 5.0),  # 2021-03-04T04:00:00+02:00
    ("bob", "12", 1614823200, 2.0),  # 2021-03-04 02:00:00 (naive: UTC)
    ("007", "11", 1615032000, 1.0),  # 2021-03-06T12:00:00.750Z (floored)
    ("007", "10", 1614834367, 4.5),
]
TEXTS = {
    "10": ("Widget, Large", "Widget, Large. Sturdy. Two lines"),
    "11": ("Gadget", 'Gadget. Says "hello"'),
    "12": ("Doohickey", "Doohickey"),
    "13": ("Unused Thing", "Unused Thing. Never bought"),
}


def _check_content(raw) -> None:
    assert raw.interactions.rows() == ROWS
    assert {r[0]: r[1:] for r in raw.items.rows()} == TEXTS


def test_csv_round_trip(tmp_path):
    raw = load_generic([FIX / "interactions.csv", FIX / "items.csv"], PrepareOptions(**TEXT))
    _check_content(raw)  # the blank line is skipped; "007" keeps its zeros; quoted multi-line text
    assert raw.name == "interactions" and raw.info["format"] == "csv" and raw.info["items_format"] == "csv"

    data = prepare("generic", [FIX / "interactions.csv", FIX / "items.csv"], tmp_path, PrepareOptions(**TEXT))
    m = data.manifest
    assert (m["num_users"], m["num_items"], m["num_interactions"]) == (3, 3, 6)
    assert m["removed"]["catalogue"]["items_without_interactions"] == 1  # item 13
    assert data.sequences["user_id"].to_list() == ["007", "alice", "bob"]
    # bob: items 10 and 12 at the same second -> file order
    assert data.user_items(data.user_index("bob")).tolist() == data.item_indices(["10", "12"]).tolist()
    assert data.user_times(data.user_index("007")).tolist() == [1614834367, 1615032000]
    assert data.texts[0] == "Widget, Large. Sturdy. Two lines"


def test_jsonl_with_iso_dates():
    options = PrepareOptions(timestamp_unit="iso", **TEXT)
    raw = load_generic([FIX / "interactions.jsonl", FIX / "items.jsonl"], options)
    _check_content(raw)  # integer item ids become their decimal text; null description -> title only
    assert raw.info["format"] == "jsonl"


def test_parquet_and_tsv_gz_agree_with_csv(tmp_path):
    expected = load_generic([FIX / "interactions.csv", FIX / "items.csv"], PrepareOptions(**TEXT))
    # Parquet with stored types: integer item ids, timezone-aware datetimes, float ratings
    interactions = pl.DataFrame(
        {
            "user_id": [r[0] for r in ROWS],
            "item_id": [int(r[1]) for r in ROWS],
            "timestamp": [dt.datetime.fromtimestamp(r[2], dt.timezone.utc) for r in ROWS],
            "rating": [r[3] for r in ROWS],
        }
    )
    interactions.write_parquet(tmp_path / "interactions.parquet")
    items = pl.read_csv(FIX / "items.csv", schema_overrides={"item_id": pl.Int64})
    items.write_parquet(tmp_path / "items.parquet")
    raw = load_generic(
        [tmp_path / "interactions.parquet", tmp_path / "items.parquet"], PrepareOptions(**TEXT)
    )
    assert raw.interactions.equals(expected.interactions) and raw.items.equals(expected.items)

    tsv = (FIX / "interactions.csv").read_text().replace(",", "\t")
    (tmp_path / "events.tsv.gz").write_bytes(gzip.compress(tsv.encode()))
    raw = load_generic([tmp_path / "events.tsv.gz"], PrepareOptions())
    assert raw.interactions.equals(expected.interactions) and raw.items is None
    assert raw.name == "events" and raw.info["format"] == "tsv"

    a = prepare(
        "generic",
        [tmp_path / "interactions.parquet", tmp_path / "items.parquet"],
        tmp_path / "a",
        PrepareOptions(**TEXT),
    )
    b = prepare(
        "generic",
        [FIX / "interactions.jsonl", FIX / "items.jsonl"],
        tmp_path / "b",
        PrepareOptions(timestamp_unit="iso", **TEXT),
    )
    assert a.sequences.equals(b.sequences) and a.items.equals(b.items)


def test_column_options_units_and_constant_rating(tmp_path):
    events = tmp_path / "events.csv"
    events.write_text("who,what,when_ms\n 7 ,a,1614834367999\n8,b,-1\n")
    catalogue = tmp_path / "catalogue.jsonl"
    catalogue.write_text(
        '{"sku": "a", "name": "Alpha", "tags": ["x", "y"]}\n{"sku": "b", "name": "Beta", "tags": []}\n'
    )
    options = PrepareOptions(
        user_column="who",
        item_column="what",
        timestamp_column="when_ms",
        timestamp_unit="ms",
        rating_column=None,
        interactions_file=events,
        items_file=catalogue,
        item_id_column="sku",
        text_columns=["name", "tags"],
    )
    raw = load_generic([], options)
    assert raw.interactions.rows() == [("7", "a", 1614834367, 1.0), ("8", "b", -1, 1.0)]  # floored, stripped
    assert raw.items.rows() == [("a", "", "Alpha. x, y"), ("b", "", "Beta")]  # no title_column: empty title
    assert raw.info["rating"] == "constant 1.0"


def test_integral_float_ids_and_duplicate_items(tmp_path):
    pl.DataFrame({"user_id": [1.0, 2.5], "item_id": [3, 3], "timestamp": [10, 20]}).write_parquet(
        tmp_path / "i.parquet"
    )
    (tmp_path / "items.csv").write_text("item_id,text\n3,first\n3,second\n")
    raw = load_generic([tmp_path / "i.parquet", tmp_path / "items.csv"], PrepareOptions(rating_column=None))
    assert raw.interactions["user_id"].to_list() == ["1", "2.5"]
    assert raw.items.rows() == [("3", "", "first")]
    assert raw.removed == Counter({"duplicate_item_rows:items.csv": 1})


# ---- the bad-input corpus --------------------------------------------------------------------------
BAD_CASES = [
    # file (under bad/), line, field, message fragment
    (
        "missing-column.csv",
        1,
        "item_id",
        "missing column(s) 'item_id'; available columns: user_id, item, timestamp, rating",
    ),
    ("empty-user.csv", 3, "user_id", "missing value"),
    ("bad-timestamp.csv", 4, "timestamp", "seconds since the epoch (timestamp_unit='s'), found 'yesterday'"),
    ("bad-rating.csv", 2, "rating", "expected a number, found 'five'"),
    ("latin1.csv", 2, "user_id", "not valid utf-8 text: byte b'\\xe9'"),
    ("unterminated-quote.csv", 3, None, "malformed CSV"),
    ("extra-field.tsv", 3, None, "expected 4 fields separated by '\\t', found 5"),
    ("bad-json.jsonl", 2, None, "invalid JSON"),
    ("not-object.jsonl", 2, None, "expected a JSON object, found list"),
    ("null-item.jsonl", 3, "item_id", "missing value"),
    ("bad-iso.jsonl", 2, "timestamp", "expected an ISO-8601 date or datetime"),
]


def _unit(name: str) -> str:
    return "iso" if "iso" in name else "s"


@pytest.mark.parametrize(("name", "line", "field", "fragment"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_inputs_name_file_line_field(name, line, field, fragment):
    with pytest.raises(DataFormatError) as info:
        load_generic([FIX / "bad" / name], PrepareOptions(timestamp_unit=_unit(name)))
    error = info.value
    assert Path(error.path).name == name and error.line == line and error.field == field
    assert fragment in str(error) and f"{name}:{line}" in str(error)


KEPT_WHEN_SKIPPING = {
    "empty-user.csv": 1,
    "bad-timestamp.csv": 2,
    "bad-rating.csv": 0,
    "latin1.csv": 0,
    "unterminated-quote.csv": 1,
    "extra-field.tsv": 1,
    "bad-json.jsonl": 1,
    "not-object.jsonl": 1,
    "null-item.jsonl": 1,
    "bad-iso.jsonl": 1,
}


@pytest.mark.parametrize("name", sorted(KEPT_WHEN_SKIPPING))
def test_skip_bad_lines_counts_each_bad_record(name):
    raw = load_generic([FIX / "bad" / name], PrepareOptions(timestamp_unit=_unit(name), skip_bad_lines=True))
    assert raw.removed == Counter({f"bad_lines:{name}": 1})
    assert raw.interactions.height == KEPT_WHEN_SKIPPING[name]


def test_bad_item_row_names_items_file():
    options = PrepareOptions(text_columns=["title", "description"])
    with pytest.raises(DataFormatError, match=r"items-bad-id.csv:3 \(field 'item_id'\): missing value"):
        load_generic([FIX / "interactions.csv", FIX / "bad" / "items-bad-id.csv"], options)
    with pytest.raises(
        DataFormatError, match="missing column.*'body'; available columns: item_id, title, description, price"
    ):
        load_generic([FIX / "interactions.csv", FIX / "items.csv"], PrepareOptions(text_columns=["body"]))


def test_parquet_null_names_the_row(tmp_path):
    path = tmp_path / "events.parquet"
    pl.DataFrame({"user_id": ["a", None, "c"], "item_id": [1, 2, 3], "timestamp": [1, 2, 3]}).write_parquet(
        path
    )
    with pytest.raises(DataFormatError) as info:
        load_generic([path], PrepareOptions(rating_column=None))
    assert "row 2: missing value" in str(info.value) and info.value.field == "user_id"
    raw = load_generic([path], PrepareOptions(rating_column=None, skip_bad_lines=True))
    assert raw.interactions.height == 2 and raw.removed == Counter({"bad_lines:events.parquet": 1})

    pl.DataFrame({"user_id": ["a"], "item_id": [1], "timestamp": [1]}).write_parquet(path)
    with pytest.raises(DataFormatError, match="column 'timestamp' has type Int64; expected ISO-8601"):
        load_generic([path], PrepareOptions(rating_column=None, timestamp_unit="iso"))
    (tmp_path / "broken.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataFormatError, match="not a readable Parquet file"):
        load_generic([tmp_path / "broken.parquet"], PrepareOptions())


def test_inputs_and_formats():
    assert [table_format(Path(n)) for n in ("a.csv", "a.TSV.gz", "a.parquet", "a.ndjson", "a.jsonl.gz")] == [
        "csv", "tsv", "parquet", "jsonl", "jsonl",
    ]  # fmt: skip
    for bad_name in ("a.xlsx", "a.parquet.gz", "a"):
        with pytest.raises(DataFormatError, match="unknown table format"):
            table_format(Path(bad_name))
    with pytest.raises(HstuBlairError, match="unexpected extra input"):
        load_generic([FIX / "interactions.csv", FIX / "items.csv", FIX / "items.jsonl"], PrepareOptions())
    with pytest.raises(HstuBlairError, match="no interactions table"):
        load_generic([], PrepareOptions())
    with pytest.raises(HstuBlairError, match="is a directory"):
        load_generic([FIX], PrepareOptions())


def test_parse_iso():
    assert parse_iso("1970-01-01") == 0
    assert parse_iso("1970-01-01T00:00:01Z") == 1
    assert parse_iso("1970-01-01T02:00:00+02:00") == 0
    assert parse_iso("1969-12-31T23:59:59.5") == -1  # floored
    assert parse_iso("2021-02-30") is None and parse_iso("yesterday") is None


def test_split_fields_fast_and_slow_paths_agree():
    data = b"1,a,x\n\n  \n2,,y\r\n3,c,z"
    lines = split_lines(Path("t.csv"), data)
    bad = BadLines(False, Counter())
    fast = split_fields(lines, ",", ["n", "s", "t"], bad, data).frame
    slow = split_fields(lines, ",", ["n", "s", "t"], bad).frame
    assert fast.equals(slow)
    assert fast.rows() == [(1, "1", "a", "x"), (4, "2", "", "y"), (5, "3", "c", "z")]
