"""``check`` and ``events import`` are listed and documented (behaviour: tests/serving/test_recovery.py
and tests/serving/test_events.py)."""

from __future__ import annotations

import pytest

from hstu_blair.cli import build_parser, main


def _help(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit):
        build_parser().parse_args([*argv, "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_help_documents_check_and_events_import(capsys):
    top = _help([], capsys)
    assert "check" in top and "events" in top
    check = _help(["check"], capsys)
    assert (
        "0 healthy, 1 records set aside" in check and "or the run is unusable" in check and "--store" in check
    )
    events = _help(["events", "import"], capsys)
    assert "user_id, item_id, timestamp" in events and ".parquet" in events and "one transaction" in events
    serve = _help(["serve"], capsys)
    assert "POST /events" in serve and "store.sqlite" in serve and "--store" in serve


def test_check_of_a_missing_directory_is_unusable(tmp_path, capsys):
    assert main(["check", str(tmp_path / "nope")]) == 2
    assert "not a directory" in capsys.readouterr().out
