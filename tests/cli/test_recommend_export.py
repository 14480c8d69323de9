"""``recommend --explain`` and ``recommend --all-users --out FILE`` (the export)."""

from __future__ import annotations

import argparse
import json

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from hstu_blair.cli.serve import add_recommend_parser
from hstu_blair.errors import HstuBlairError
from hstu_blair.serving.errors import ServingError
from hstu_blair.serving.recommender import Recommender


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hstu-blair")
    add_recommend_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_explain_prints_because_lines(id_run, capsys):
    args = _parse(["recommend", str(id_run), "--history", "i5", "-k", "3", "--explain"])
    assert args.handler(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 7 and all(line.strip().startswith("because: ") for line in lines[2::2])
    assert "i5" in lines[2] or "item number 5" in lines[2]


def test_explain_json_has_reasons_only_when_asked(id_run, capsys):
    args = _parse(["recommend", str(id_run), "--user", "u4", "-k", "2", "--json", "--explain"])
    assert args.handler(args) == 0
    items = json.loads(capsys.readouterr().out)["items"]
    assert all(set(i["reasons"][0]) == {"item_id", "title", "weight"} for i in items if i["reasons"])
    args = _parse(["recommend", str(id_run), "--user", "u4", "-k", "2", "--json"])
    assert args.handler(args) == 0
    assert all("reasons" not in i for i in json.loads(capsys.readouterr().out)["items"])


def test_all_users_to_parquet_and_csv(id_run, tmp_path, capsys):
    out = tmp_path / "recs.parquet"
    args = _parse(
        ["recommend", str(id_run), "--all-users", "--out", str(out), "-k", "3", "--batch-size", "10"]
    )
    assert args.handler(args) == 0
    assert "64 users" in capsys.readouterr().out
    table = pq.read_table(out)
    assert table.column_names == ["user_id", "rank", "item_id", "score", "title"] and table.num_rows == 3 * 64
    expected = Recommender.load(id_run, persist=False).recommend_user("u9", 3)
    rows = [r for r in table.to_pylist() if r["user_id"] == "u9"]
    assert [r["item_id"] for r in rows] == [r.item_id for r in expected]
    listing = tmp_path / "users.txt"
    listing.write_text("u1\nu2\n")
    csv = tmp_path / "recs.csv"
    argv = ["recommend", str(id_run), "--all-users", "--users", str(listing), "--out", str(csv)]
    args = _parse([*argv, "--no-exclude-seen", "-k", "2"])
    assert args.handler(args) == 0
    assert pacsv.read_csv(csv).column("user_id").to_pylist() == ["u1", "u1", "u2", "u2"]


def test_export_errors(id_run, tmp_path):
    args = _parse(["recommend", str(id_run), "--all-users", "--out", str(tmp_path / "recs.json")])
    with pytest.raises(ServingError, match="recs.json"):
        args.handler(args)
    args = _parse(["recommend", str(id_run), "--all-users"])
    with pytest.raises(HstuBlairError, match="--out"):
        args.handler(args)
    args = _parse(["recommend", str(id_run), "--user", "u1", "--out", str(tmp_path / "r.csv")])
    with pytest.raises(HstuBlairError, match="--all-users"):
        args.handler(args)
