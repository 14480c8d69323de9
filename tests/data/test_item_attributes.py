"""Item attributes kept by ``prepare``: every catalogue column other than id, title and text,
typed (string, int, float, bool), null where a row has no value."""

from __future__ import annotations

import json

import polars as pl

from hstu_blair.cli import main
from hstu_blair.data.dataset import SequenceData

ITEMS = """item_id,title,body,category,price,in_stock,brand,stock
a,Alpha,first,Books,9.5,true,Acme,3
b,Beta,second,Games,12,false,,0
c,Gamma,third,Books,,TRUE,Zeta,
d,Delta,fourth,,1,,Acme,7
"""
EVENTS = "user_id,item_id,timestamp\nu1,a,1\nu1,b,2\nu2,c,3\nu2,d,4\nu3,a,5\n"


def test_prepare_generic_keeps_attributes(tmp_path):
    (tmp_path / "items.csv").write_text(ITEMS)
    (tmp_path / "events.csv").write_text(EVENTS)
    out = tmp_path / "data"
    code = main(
        [
            "prepare",
            "generic",
            "--interactions",
            str(tmp_path / "events.csv"),
            "--items",
            str(tmp_path / "items.csv"),
            "--out",
            str(out),
            "--rating-col",
            "none",
            "--text-cols",
            "body",
            "--title-col",
            "title",
            "--kcore",
            "0",
        ]
    )
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["item_attributes"] == [
        {"name": "category", "dtype": "string"},
        {"name": "price", "dtype": "float"},
        {"name": "in_stock", "dtype": "bool"},
        {"name": "brand", "dtype": "string"},
        {"name": "stock", "dtype": "int"},
    ]
    data = SequenceData.load(out)
    table = data.item_attributes()
    assert table is not None and table["item_idx"].to_list() == [1, 2, 3, 4]
    rows = {r.pop("item_idx"): r for r in table.to_dicts()}
    assert rows[1] == {"category": "Books", "price": 9.5, "in_stock": True, "brand": "Acme", "stock": 3}
    assert rows[2] == {"category": "Games", "price": 12.0, "in_stock": False, "brand": None, "stock": 0}
    assert rows[3]["price"] is None and rows[3]["stock"] is None and rows[3]["in_stock"] is True
    assert rows[4]["category"] is None and rows[4]["in_stock"] is None  # missing: null, not zero
    assert "item_attributes.parquet" in manifest["outputs"]


def test_no_items_table_no_attributes(tmp_path):
    (tmp_path / "events.csv").write_text(EVENTS)
    out = tmp_path / "data"
    args = ["prepare", "generic", "--interactions", str(tmp_path / "events.csv"), "--out", str(out)]
    assert main([*args, "--rating-col", "none", "--kcore", "0"]) == 0
    data = SequenceData.load(out)
    assert data.item_attributes() is None and "item_attributes" not in data.manifest
    assert not (out / "item_attributes.parquet").exists()
    assert isinstance(data.items, pl.DataFrame)


def test_parquet_and_jsonl_attributes_keep_their_types(tmp_path):
    from hstu_blair.data.options import PrepareOptions
    from hstu_blair.data.sources.generic import load_generic

    (tmp_path / "events.csv").write_text(EVENTS)
    items = pl.DataFrame(
        {
            "item_id": ["a", "b", "c", "d"],
            "text": ["x", "y", "z", "w"],
            "stock": [1, None, 3, 0],
            "price": [1.5, float("nan"), None, 2.0],
            "in_stock": [True, None, False, True],
            "tag": ["p", None, "q", "p"],
        }
    )
    items.write_parquet(tmp_path / "items.parquet")
    items.write_ndjson(tmp_path / "items.jsonl")
    for name in ("items.parquet", "items.jsonl"):
        options = PrepareOptions(rating_column=None, text_columns=["text"])
        raw = load_generic([tmp_path / "events.csv", tmp_path / name], options)
        got = raw.item_attributes
        assert got is not None and got.columns == ["item_id", "stock", "price", "in_stock", "tag"]
        assert got.dtypes == [pl.String, pl.Int64, pl.Float64, pl.Boolean, pl.String]
        assert got["price"].to_list()[1:3] == [None, None]  # NaN and missing: null
        assert got["stock"].to_list() == [1, None, 3, 0]
