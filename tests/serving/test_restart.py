"""``hstu-blair serve`` as real processes: items and events acknowledged over HTTP survive SIGKILL
(also in the middle of a stream of writes) and a restart, and two server processes on one store
serve each other's items and events and agree on the items' order.

The run is text-fused over MiniLM vectors (``minilm_run``): its embedding store records the
encoder's fingerprint, so the server rebuilds the encoder itself, as in production."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from hstu_blair.run.layout import STORE_FILE
from hstu_blair.run.store import Store
from hstu_blair.serving.app import API_KEY_ENV

KEY = "restart-test-token"
AUTH = {"Authorization": f"Bearer {KEY}"}
STARTUP_S = 120
pytestmark = pytest.mark.slow  # starts four server processes: about 30 s


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A ``python -m hstu_blair.cli serve RUN_DIR`` subprocess on a free port."""

    def __init__(self, run: Path, log: Path, *argv: str, env: dict[str, str] | None = None) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        command = [sys.executable, "-m", "hstu_blair.cli", "serve", str(run), "--port", str(self.port)]
        command += ["--threads", "1", "--log-level", "warning", *argv]
        environ = {k: v for k, v in os.environ.items() if k != API_KEY_ENV} | (env or {})
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=environ)
        self.http = httpx.Client(base_url=self.url, timeout=60)
        deadline = time.monotonic() + STARTUP_S
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{log.read_text()[-4000:]}")
            with contextlib.suppress(httpx.TransportError):
                if self.http.get("/healthz").status_code == 200:
                    return
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"server did not start in {STARTUP_S} s:\n{log.read_text()[-4000:]}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        self.http.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)


@contextlib.contextmanager
def serving(run: Path, log: Path, *argv: str, env: dict[str, str] | None = None) -> Iterator[Server]:
    server = Server(run, log, *argv, env=env)
    try:
        yield server
    finally:
        server.kill()


def _ids(body: dict) -> list[str]:
    return [x["item_id"] for x in body["items"]]


NEW = {
    "fresh-1": ("item number 7 in group 2", "Fresh one"),
    "fresh-2": ("a lamp made of paper", "Paper lamp"),
    "fresh-3": ("item number 21 in group 1", ""),
    "fresh-4": ("héllo wörld ☃, a snowman figure", "Snowman"),
}


def test_items_added_over_http_survive_sigkill_and_restart(minilm_run, copy_run, tmp_path):
    run = copy_run(minilm_run)
    log = tmp_path / "server.log"
    with serving(run, log, "--api-key", KEY) as server:
        http = server.http
        body = {"item_id": "fresh-1", "text": NEW["fresh-1"][0]}
        assert http.post("/items", json=body).status_code == 401
        assert http.post("/items", json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
        for item_id, (text, title) in NEW.items():
            added = http.post("/items", json={"item_id": item_id, "text": text, "title": title}, headers=AUTH)
            assert added.status_code == 201, added.text
        query = {"history": ["fresh-1", "i3", "fresh-2"], "k": 10}
        before = http.post("/recommend", json=query).json()
        items_before = {i: http.get(f"/items/{i}").json() for i in NEW}
        server.kill()  # SIGKILL right after the 201s: nothing but the store keeps the items
    assert Store(run / STORE_FILE).item_ids() == list(NEW)

    # restarted with the token from the environment instead of the flag
    with serving(run, log, env={API_KEY_ENV: KEY}) as server:
        http = server.http
        health = http.get("/healthz").json()
        assert health["num_items"] == 40 + len(NEW) and health["added_items"] == len(NEW)
        assert health["set_aside"] == 0 and health["writes_need_api_key"] is True
        assert {i: http.get(f"/items/{i}").json() for i in NEW} == items_before
        assert items_before["fresh-3"]["title"] == "fresh-3" and items_before["fresh-4"]["title"] == "Snowman"
        everything = http.post("/recommend", json={"history": ["i1"], "k": 1000}).json()
        assert set(NEW) <= set(_ids(everything)) and len(everything["items"]) == 40 + len(NEW) - 1
        after = http.post("/recommend", json=query).json()
        assert after == before  # the same vectors bit for bit: the same ids and scores
        similar = http.get("/similar", params={"item_id": "fresh-1", "k": 1}).json()
        assert _ids(similar) == ["i7"]  # MiniLM: the same text as i7
        found = http.get("/items", params={"query": "paper lamp"}).json()
        assert found == [{"item_id": "fresh-2", "title": "Paper lamp"}]
        duplicate = {"item_id": "fresh-2", "text": "again"}
        assert http.post("/items", json=duplicate, headers=AUTH).status_code == 409
        assert http.post("/items", json={"item_id": "fresh-5", "text": "five"}).status_code == 401


def test_two_server_processes_share_items_and_agree_on_their_order(minilm_run, copy_run, tmp_path):
    run = copy_run(minilm_run)
    with (
        serving(run, tmp_path / "a.log", "--api-key", KEY) as a,
        serving(run, tmp_path / "b.log", "--api-key", KEY) as b,
    ):
        # visible through the other process on its very next request after the 201
        for writer, reader, item_id in ((a, b, "via-a"), (b, a, "via-b")):
            body = {"item_id": item_id, "text": f"an item added {item_id}", "title": item_id}
            assert writer.http.post("/items", json=body, headers=AUTH).status_code == 201
            assert reader.http.get(f"/items/{item_id}").status_code == 200
            got = reader.http.post("/recommend", json={"history": [item_id, "i4"], "k": 3})
            assert got.status_code == 200 and len(got.json()["items"]) == 3

        # concurrent adds through both processes
        def add(job: tuple[Server, int]) -> int:
            server, i = job
            body = {
                "item_id": f"race-{i:02d}",
                "text": f"item number {i} in group {i % 3}",
                "title": f"race {i}",
            }
            return server.http.post("/items", json=body, headers=AUTH).status_code

        jobs = [(a if i % 2 else b, i) for i in range(16)]
        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(add, jobs)) == [201] * 16
        orders = [s.http.get("/items", params={"query": "race ", "limit": 100}).json() for s in (a, b)]
        assert len(orders[0]) == 16 and orders[0] == orders[1]  # the same indices in both
        # one id with two texts raced through both: exactly one 201, the other 409
        with ThreadPoolExecutor(2) as pool:
            statuses = sorted(
                pool.map(
                    lambda s: (
                        s.http.post(
                            "/items", json={"item_id": "twice", "text": f"t{s is a}"}, headers=AUTH
                        ).status_code
                    ),
                    (a, b),
                )
            )
        assert statuses == [201, 409]
        healths = [s.http.get("/healthz").json() for s in (a, b)]
        assert healths[0]["num_items"] == healths[1]["num_items"] == 40 + 2 + 16 + 1


def _kill_during(server: Server, write, n: int, after: int) -> list[int]:
    """Send writes ``write(http, i)`` for i < n from 4 threads; SIGKILL the server once ``after``
    were acknowledged. Returns the i of every write answered 201 (acknowledged)."""
    import threading

    acknowledged: list[int] = []
    lock = threading.Lock()

    def send(i: int) -> None:
        try:
            status = write(i)
        except httpx.TransportError:
            return  # no answer: not acknowledged
        if status == 201:
            with lock:
                acknowledged.append(i)
                if len(acknowledged) == after and server.proc.poll() is None:
                    server.proc.send_signal(signal.SIGKILL)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(send, range(n)))
    server.kill()
    return sorted(acknowledged)


def test_sigkill_during_adds_loses_no_acknowledged_item(minilm_run, copy_run, tmp_path):
    run = copy_run(minilm_run)
    with serving(run, tmp_path / "a.log", "--api-key", KEY) as server:

        def add(i: int) -> int:
            body = {"item_id": f"k-{i}", "text": f"item number {i} in group {i % 4}"}
            return server.http.post("/items", json=body, headers=AUTH).status_code

        acknowledged = _kill_during(server, add, 200, after=20)
    assert len(acknowledged) >= 20
    stored = set(Store(run / STORE_FILE).item_ids())
    assert {f"k-{i}" for i in acknowledged} <= stored
    with serving(run, tmp_path / "b.log") as server:
        health = server.http.get("/healthz").json()
        assert health["added_items"] == len(stored) and health["set_aside"] == 0
        for i in acknowledged:
            assert server.http.get(f"/items/k-{i}").status_code == 200


def test_sigkill_during_event_ingest_loses_no_acknowledged_event(text_run, copy_run, tmp_path):
    run = copy_run(text_run)
    batch = 50
    with serving(run, tmp_path / "a.log", "--api-key", KEY) as server:

        def post(i: int) -> int:
            events = [
                {"user_id": f"k{i}", "item_id": f"i{j % 40}", "timestamp": 2_000_000_000 + j}
                for j in range(batch)
            ]
            return server.http.post("/events", json={"events": events}, headers=AUTH).status_code

        acknowledged = _kill_during(server, post, 400, after=40)
    assert len(acknowledged) >= 40
    store = Store(run / STORE_FILE)
    for i in acknowledged:
        assert len(store.user_events(f"k{i}")[0]) == batch  # whole batches: all or none
    assert store.counts()["events"] % batch == 0


def test_two_server_processes_see_each_others_events(text_run, copy_run, tmp_path, store_location):
    run = copy_run(text_run)
    store = ("--store", store_location)  # a SQLite file, or PostgreSQL
    with serving(run, tmp_path / "a.log", *store) as a, serving(run, tmp_path / "b.log", *store) as b:
        before = b.http.get("/users/u1/recommendations", params={"k": 40}).json()
        popular = b.http.get("/users/newcomer/recommendations", params={"k": 3}).json()
        target = _ids(before)[0]  # the best item for u1 before: not in their history
        events = [{"user_id": "u1", "item_id": target, "timestamp": 2_000_000_000}]
        events += [{"user_id": "newcomer", "item_id": "i7", "timestamp": 2_000_000_000}]
        assert a.http.post("/events", json={"events": events}).status_code == 201
        after = b.http.get("/users/u1/recommendations", params={"k": 40}).json()
        assert target not in _ids(after)  # now seen: excluded, in the other process
        assert _ids(after) != _ids(before)
        newcomer = b.http.get("/users/newcomer/recommendations", params={"k": 3}).json()
        assert _ids(newcomer) != _ids(popular) and "i7" not in _ids(newcomer)
        assert b.http.delete("/users/newcomer").json() == {"user_id": "newcomer", "deleted_events": 1}
        assert a.http.get("/users/newcomer/recommendations", params={"k": 3}).json() == popular


def test_sigkill_rounds_with_retrying_clients_store_every_event_once(
    text_run, copy_run, tmp_path, store_location
):
    """Three kill -9 rounds while 4 clients post batches, each client retrying every batch it got
    no 201 for (and some it did) on the next server: every event is stored exactly once."""
    run = copy_run(text_run)
    batch, n_batches = 20, 150
    batches = {
        i: [
            {
                "user_id": f"r{i % 30}",
                "item_id": f"i{(i + j) % 40}",
                "timestamp": 2_000_000_000 + i * batch + j,
            }
            for j in range(batch)
        ]
        for i in range(n_batches)
    }
    pending, acknowledged = set(batches), set()
    for round_ in range(4):
        with serving(run, tmp_path / f"{round_}.log", "--store", store_location) as server:

            def post(i: int, http=server.http) -> int:
                body = {"events": batches[i], "idempotency_key": f"batch-{i}"}
                return http.post("/events", json=body).status_code

            order = sorted(pending) + sorted(acknowledged)[:10]  # retry some that were answered too
            if round_ < 3:
                done = _kill_during(server, lambda k, order=order: post(order[k]), len(order), after=25)
            else:
                done = [k for k in range(len(order)) if post(order[k]) == 201]
        answered = {order[k] for k in done}
        acknowledged |= answered
        pending -= answered
    assert not pending and acknowledged == set(batches)
    store = Store(store_location)
    assert store.counts()["events"] == batch * n_batches  # acknowledged = stored, none twice
    for u in range(30):
        items, times = store.user_events(f"r{u}")
        assert len(set(zip(items, times.tolist()))) == len(items) == batch * len(range(u, n_batches, 30))
