"""Strict, consistent input: one id rule (Unicode NFC; no invisible, bidirectional or control
characters) in serving as in ``prepare``; timestamps as integer seconds or ISO 8601 in ``/events``,
``/recommend`` and ``events import`` (with its column options); booleans, numbers in strings and
negative times refused, naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from hstu_blair.cli import main
from hstu_blair.errors import DataFormatError
from hstu_blair.run.store import Store
from hstu_blair.serving.app import create_app
from hstu_blair.serving.events_import import import_events
from hstu_blair.serving.recommender import Recommender, ServingError

ISO = "2024-05-01T12:00:00Z"
ISO_SECONDS = 1_714_564_800
NFD, NFC = "Cafe\u0301", "Caf\u00e9"


@pytest.fixture
def run(id_run, copy_run) -> Path:
    return copy_run(id_run)


def _post(client: TestClient, timestamp: object, user: str = "u-new") -> tuple[int, str]:
    answer = client.post(
        "/events", json={"events": [{"user_id": user, "item_id": "i1", "timestamp": timestamp}]}
    )
    return answer.status_code, answer.text


def test_events_take_iso_times_and_refuse_booleans_strings_and_negatives(run, store_location):
    with Recommender.load(run, store=store_location) as rec, TestClient(create_app(rec)) as client:
        for bad in (True, "123", -5, 1.5, "soon"):
            status, text = _post(client, bad)
            assert status == 422 and "timestamp" in text, (bad, text)
        assert _post(client, ISO) == (201, '{"stored":1,"duplicates":0}')
        assert _post(client, 1_714_564_801)[0] == 201
        assert rec.store.user_events("u-new")[1].tolist() == [ISO_SECONDS, ISO_SECONDS + 1]
        assert rec.store.counts()["events"] == 2
        body = {"history": ["i1", "i2"], "timestamps": [True, 1], "k": 3}
        assert client.post("/recommend", json=body).status_code == 422
        body["timestamps"] = ["123", 1]
        answer = client.post("/recommend", json=body)
        assert answer.status_code == 422 and "timestamps[0]" in answer.text
        body["timestamps"] = [ISO, ISO]
        assert client.post("/recommend", json=body).status_code == 200


def test_one_id_rule_in_serving(run, store_location):
    """The two Unicode forms of an id are one user; invisible and bidirectional characters are
    refused, naming the field."""
    with Recommender.load(run, store=store_location) as rec, TestClient(create_app(rec)) as client:
        assert _post(client, 1, NFD)[0] == 201 and _post(client, 2, NFC)[0] == 201
        assert rec.store.counts()["users"] == 1 and rec.store.user_events(NFC)[1].tolist() == [1, 2]
        assert client.get(f"/users/{NFD}/recommendations").status_code == 200
        for bad in ("a\u200bb", "a\u202eb", "x\u2066y"):
            status, text = _post(client, 1, bad)
            assert status == 422 and "events[0].user_id" in text and "invisible or control" in text
        assert client.delete(f"/users/{NFD}").json()["deleted_events"] == 2
    with pytest.raises(ServingError, match="invisible or control"):
        Recommender.load(run, store=store_location).add_events([("u\ufeff", "i1", 1)])


def test_events_import_reads_iso_times_and_named_columns(run, store_location, tmp_path, capsys):
    path = tmp_path / "events.csv"
    path.write_text(f"who,what,when\n{NFD},i1,{ISO}\n{NFC},i2,1714564801\n", encoding="utf-8")
    args = ["events", "import", str(path), str(run), "--store", store_location]
    assert main([*args, "--user-column", "who", "--item-column", "what", "--time-column", "when"]) == 0
    store = Store(store_location)
    try:
        assert store.all_events() == [(NFC, "i1", ISO_SECONDS), (NFC, "i2", ISO_SECONDS + 1)]
    finally:
        store.close()
    assert (
        main(args) == 2 and "missing columns ['user_id', 'item_id', 'timestamp']" in capsys.readouterr().err
    )
    for bad, why in (("-5", "negative"), ("true", "ISO 8601"), ("2021-02-30", "ISO 8601"), ("", "")):
        path.write_text(f"user_id,item_id,timestamp\nu1,i1,1\nu1,i2,{bad}\n")
        with pytest.raises(DataFormatError, match=rf"events.csv:3 \(field 'timestamp'\).*{why}"):
            import_events(path, run, store_location)
    path.write_text("user_id,item_id,timestamp\nu\u200e1,i1,1\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"events.csv:2 \(field 'user_id'\).*U\+200E"):
        import_events(path, run, store_location)
