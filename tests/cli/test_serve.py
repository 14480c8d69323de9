"""``recommend`` and ``serve`` subcommands: parsers, handlers and the entry point."""

from __future__ import annotations

import argparse
import json

import pytest

from hstu_blair.cli import main
from hstu_blair.cli.serve import add_recommend_parser, add_serve_parser
from hstu_blair.errors import UnknownIdError
from hstu_blair.serving.recommender import Recommender
from tests.conftest import stub_run_server


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hstu-blair")
    sub = parser.add_subparsers(dest="command", required=True)
    add_recommend_parser(sub)
    add_serve_parser(sub)
    return parser.parse_args(argv)


def test_recommend_history_json(id_run, capsys):
    args = _parse(["recommend", str(id_run), "--history", "i1, i2,i3", "--k", "4", "--json"])
    assert args.handler(args) == 0
    out = json.loads(capsys.readouterr().out)
    expected = Recommender.load(id_run).recommend(["i1", "i2", "i3"], k=4)
    assert [i["item_id"] for i in out["items"]] == [r.item_id for r in expected]
    assert out["skipped"] == []


def test_recommend_user_table_and_similar(id_run, capsys):
    args = _parse(["recommend", str(id_run), "--user", "u2", "-k", "3"])
    assert args.handler(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["rank", "score", "item_id", "title"] and len(lines) == 4
    expected = Recommender.load(id_run).recommend_user("u2", k=3)
    assert [line.split()[2] for line in lines[1:]] == [r.item_id for r in expected]
    args = _parse(["recommend", str(id_run), "--similar", "i4", "--json"])
    assert args.handler(args) == 0
    assert "i4" not in [i["item_id"] for i in json.loads(capsys.readouterr().out)["items"]]


def test_recommend_unknown_ids(id_run, capsys):
    args = _parse(["recommend", str(id_run), "--history", "i1,ghost"])
    with pytest.raises(UnknownIdError, match="ghost"):
        args.handler(args)
    args = _parse(["recommend", str(id_run), "--history", "i1,ghost", "--skip-unknown"])
    assert args.handler(args) == 0
    assert "skipped unknown ids: ghost" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        _parse(["recommend", str(id_run)])  # one of --user / --history / --similar is required


def test_serve_defaults_to_loopback(id_run, monkeypatch):
    seen = stub_run_server(monkeypatch)
    args = _parse(["serve", str(id_run), "--port", "9123", "--max-batch", "1"])
    assert (args.host, args.port, args.index) == ("127.0.0.1", 9123, "exact")
    assert args.handler(args) == 0
    assert seen["host"] == "127.0.0.1" and seen["port"] == 9123
    assert seen["app"].state.batcher.max_batch == 1


def test_entry_point(id_run, capsys):
    assert main(["recommend", str(id_run), "--history", "i1,i2", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["items"]) == 10
    assert main(["recommend", str(id_run), "--user", "nobody"]) == 2
    assert "unknown user id: 'nobody'" in capsys.readouterr().err


def _listing(root) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*"))}


def test_recommend_new_user_flag(id_run, capsys):
    args = _parse(["recommend", str(id_run), "--user", "nobody", "--new-user", "popular", "--json"])
    assert args.handler(args) == 0
    popular = Recommender.load(id_run, persist=False).popular(10)
    assert [i["item_id"] for i in json.loads(capsys.readouterr().out)["items"]] == [
        r.item_id for r in popular
    ]
    assert _parse(["recommend", str(id_run), "--user", "u2"]).new_user == "error"
    with pytest.raises(SystemExit):
        _parse(["recommend", str(id_run), "--user", "u2", "--new-user", "random"])


def test_recommend_opens_the_store_read_only(id_run, copy_run, capsys, caplog):
    run = copy_run(id_run)
    before = _listing(run)
    assert main(["recommend", str(run), "--user", "u2", "--json"]) == 0
    assert _listing(run) == before and not (run / "store.sqlite").exists()
    with Recommender.load(run) as rec:  # a store with events of a user training never saw
        rec.add_events([("newbie", "i1", 1_700_000_000), ("newbie", "i2", 1_700_000_060)])
    before = _listing(run)
    capsys.readouterr()
    with caplog.at_level("INFO"):
        assert main(["recommend", str(run), "--user", "newbie", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["items"]) == 10
    after = _listing(run)  # SQLite's readers of a WAL database share its -wal/-shm index files
    assert {k: v for k, v in after.items() if not k.endswith(("-wal", "-shm"))} == before
    assert not [r for r in caplog.records if "migrat" in r.getMessage().lower()]
    with Recommender.load(run, persist="read") as rec, pytest.raises(Exception, match="read-only"):
        rec.add_events([("newbie", "i3", 1_700_000_100)])
