"""Switching model versions under load: a real server on 127.0.0.1 answers a bounded stream of
requests while ``update`` writes a new version and ``rollback`` goes back; no request fails, and
every answer is exactly what one version gives (never a mix)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from hstu_blair.recipes.update import update
from hstu_blair.run.model_files import load_trained
from hstu_blair.run.versions import rollback
from hstu_blair.serving.app import create_app
from hstu_blair.serving.live import LiveRecommender
from hstu_blair.serving.recommender import Recommender
from tests.conftest import HashEncoder, running_server

LATER = 2_000_000_000
HISTORY = ["i1", "i2", "i3"]


@pytest.fixture
def run(text_run, copy_run) -> Path:
    return copy_run(text_run)


def _expected(run: Path, version: int) -> dict[str, list[str]]:
    rec = Recommender(load_trained(run, version=version), encoder=HashEncoder())
    return {
        "history": [r.item_id for r in rec.recommend(HISTORY, k=5)],
        "user": [r.item_id for r in rec.recommend_user("u-live", k=5)],
    }


def _hammer(base: str, stop: threading.Event, answers: list, failures: list, limit: int = 5000) -> None:
    with httpx.Client(base_url=base, timeout=30) as client:
        for n in range(limit):  # bounded: the test ends even if stop is never set
            if stop.is_set():
                return
            try:
                if n % 2:
                    r = client.post("/recommend", json={"history": HISTORY, "k": 5})
                    kind = "history"
                else:
                    r = client.get("/users/u-live/recommendations", params={"k": 5})
                    kind = "user"
            except httpx.HTTPError as exc:
                failures.append(repr(exc))
                continue
            if r.status_code != 200:
                failures.append((r.status_code, r.text))
                continue
            body = r.json()
            answers.append((kind, body["version"], [i["item_id"] for i in body["items"]]))


def _wait_for_version(base: str, version: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(f"{base}/healthz").json()["version"] == version:
            return
        time.sleep(0.05)
    raise AssertionError(f"the server did not switch to version {version}")


def test_hot_swap_under_load_fails_nothing_and_mixes_nothing(run):
    Recommender.load(run, encoder=HashEncoder()).add_events(
        [("u-live", "i5", LATER), ("u-live", "i9", LATER + 1)]
    )
    live = LiveRecommender.load(run, encoder=HashEncoder())
    app = create_app(live, batch_window_ms=1.0)
    answers: list = []
    failures: list = []
    stop = threading.Event()
    with running_server(app) as base:
        clients = [threading.Thread(target=_hammer, args=(base, stop, answers, failures)) for _ in range(3)]
        for c in clients:
            c.start()
        time.sleep(0.3)
        update(
            run, epochs=1, overrides=["train.threads=1", "train.lr=0.05"], progress=False, force=True
        )  # while serving
        _wait_for_version(base, 1)
        time.sleep(0.3)
        rollback(run)
        _wait_for_version(base, 0)
        time.sleep(0.3)
        stop.set()
        for c in clients:
            c.join(timeout=60)
        health = httpx.get(f"{base}/healthz").json()
    assert failures == []
    assert live.swaps == 2 and health["version_swaps"] == 2 and health["failed_version_loads"] == 0
    seen = {version for _, version, _ in answers}
    assert seen == {0, 1}
    assert min(sum(1 for a in answers if a[1] == v) for v in seen) >= 10
    expected = {v: _expected(run, v) for v in seen}
    assert expected[0] != expected[1], "the versions must differ for the check to mean anything"
    for kind, version, items in answers:  # each answer is one version's answer, as a whole
        assert items == expected[version][kind], (kind, version)
    # the versions are served in order: 0, then 1, then 0 again after the rollback
    order = [v for _, v, _ in answers]
    changes = [order[i] for i in range(1, len(order)) if order[i] != order[i - 1]]
    assert changes[:1] == [1] and changes[-1:] == [0]


def test_a_version_that_cannot_load_keeps_the_old_one(run):
    live = LiveRecommender.load(run, encoder=HashEncoder())
    update(run, epochs=1, overrides=["train.threads=1"], progress=False, force=True)
    (run / "versions" / "1" / "checkpoints" / "best.safetensors").write_bytes(b"damaged")
    assert live.check()
    live.wait(60)
    assert live.failed_loads == 1 and live.version == 0
    assert live.current.recommend(HISTORY, k=3)


def test_versions_share_the_store(run):
    """The new version uses the same open store: events kept in memory (persist=False) carry over."""
    live = LiveRecommender.load(run, encoder=HashEncoder(), persist=False)
    live.current.add_events([("u-mem", "i4", LATER)])
    update(run, epochs=1, overrides=["train.threads=1"], progress=False, force=True)
    assert live.check()
    live.wait(60)
    assert live.version == 1 and live.swaps == 1
    assert live.current.store is not None and live.current.user_history("u-mem")[0].size == 1
    assert not (run / "store.sqlite").exists()
