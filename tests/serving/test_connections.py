"""Bounded connections and log lines that cannot flood (issue 25, finding 4): idle connections
beyond the cap are closed and a health probe still gets in, a connection beyond the cap while all
are busy is answered 503, a connection that sends no request head in time is closed, and a flood
of one error is one log line, the rest counted in /metrics."""

from __future__ import annotations

import asyncio
import errno
import io
import logging
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from urllib.parse import urlsplit

import httpx
import pytest

from hstu_blair.cli import build_parser
from hstu_blair.cli.serve import connections_of
from hstu_blair.errors import HstuBlairError
from hstu_blair.serving.app import create_app
from hstu_blair.serving.http.log_flood import FloodFilter, install, uninstall
from hstu_blair.serving.limits import ConnectionLimits
from hstu_blair.serving.recommender import Recommender
from tests.conftest import running_server


@pytest.fixture(scope="module")
def rec(id_run) -> Recommender:
    return Recommender.load(id_run)


def _open(url: str, n: int, stack: ExitStack) -> list[socket.socket]:
    """``n`` connections to the server that send nothing."""
    parts = urlsplit(url)
    socks = []
    for _ in range(n):
        sock = stack.enter_context(socket.create_connection((parts.hostname, parts.port), timeout=10))
        socks.append(sock)
    return socks


def _closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closed ``sock`` (waits for it up to the socket's timeout)."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _metric(url: str, line: str) -> float:
    for row in httpx.get(f"{url}/metrics").text.splitlines():
        if row.startswith(line + " "):
            return float(row.rsplit(" ", 1)[1])
    return 0.0


def test_idle_connections_beyond_the_cap_are_closed_and_a_probe_gets_in(rec):
    """100 connections that send nothing against a cap of 20: the oldest 80 are closed by the
    server, at most 20 stay open, and /healthz answers on a new connection."""
    app = create_app(rec)
    limits = ConnectionLimits(max_connections=20, request_head_s=60)
    with running_server(app, limits) as url, ExitStack() as stack:
        socks = _open(url, 100, stack)
        with httpx.Client(base_url=url) as http:
            assert http.get("/healthz").status_code == 200
            open_now = _metric(url, "hstu_blair_http_connections")
        for sock in socks[:80]:
            sock.settimeout(10)
            assert _closed_by_server(sock)
        for sock in socks[-5:]:
            sock.settimeout(0.2)
            assert not _closed_by_server(sock)
        assert open_now <= 20
        evicted = _metric(url, 'hstu_blair_http_connections_closed_total{reason="evicted_idle"}')
        assert evicted >= 80


def test_a_connection_beyond_the_cap_when_all_are_busy_is_answered_503(rec):
    """Two connections each inside a request (head sent, body awaited) fill a cap of 2: a third
    gets 503 and is closed; once they leave, /healthz answers."""
    app = create_app(rec)
    with running_server(app, ConnectionLimits(max_connections=2, request_head_s=60)) as url:
        parts = urlsplit(url)
        busy = []
        for _ in range(2):
            sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
            sock.sendall(b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
            sock.sendall(b"Content-Length: 100\r\n\r\n{")
            busy.append(sock)
        asyncio.run(asyncio.sleep(0.5))  # both requests are running in the app
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as third:
            answer = b""
            while chunk := third.recv(4096):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 503") and b"too many connections" in answer
        for sock in busy:
            sock.close()
        with httpx.Client(base_url=url) as http:
            assert http.get("/healthz").status_code == 200
        assert _metric(url, 'hstu_blair_http_connections_closed_total{reason="full"}') == 1


def test_a_connection_without_a_request_head_in_time_is_closed(rec):
    """A client that opens and sends nothing, and one that sends half a request head, are closed
    after ``request_head_s``; a client that sends requests is served on one connection."""
    app = create_app(rec)
    with (
        running_server(app, ConnectionLimits(request_head_s=0.5, keep_alive_s=30)) as url,
        ExitStack() as stack,
    ):
        silent, slow = _open(url, 2, stack)
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        assert _closed_by_server(silent) and _closed_by_server(slow)
        with httpx.Client(base_url=url) as http:
            for _ in range(3):
                assert http.get("/healthz").status_code == 200
        assert _metric(url, 'hstu_blair_http_connections_closed_total{reason="head_timeout"}') >= 2


@contextmanager
def installed(flood: FloodFilter) -> Iterator[None]:
    handlers = install(flood)
    try:
        yield
    finally:
        uninstall(flood, handlers)


def test_a_flood_of_request_errors_is_one_log_line_counted_in_metrics(rec, monkeypatch, capfd):
    """50 requests that fail with the same error: one traceback in the log, 49 counted in /metrics."""

    def boom(*args: object) -> None:
        raise RuntimeError("similar failed")

    monkeypatch.setattr(rec, "similar_items", boom)
    item = str(rec.catalogue.item_ids[1])
    flood = FloodFilter(interval_s=3600)
    app = create_app(rec, log_flood=flood)
    with running_server(app, ConnectionLimits()) as url, installed(flood):
        # a new connection each: uvicorn closes one whose request raised
        statuses = {httpx.get(f"{url}/similar", params={"item_id": item}).status_code for _ in range(50)}
        assert statuses == {500}
        assert _metric(url, 'hstu_blair_log_suppressed_total{source="uvicorn"}') == 49
    err = capfd.readouterr().err
    assert err.count("Exception in ASGI application") == 1 and err.count("RuntimeError: similar failed") == 1


def test_too_many_open_files_from_the_accept_loop_is_one_line_per_interval():
    """asyncio's accept-loop error (EMFILE) 1,000 times: one traceback; after the interval, the next
    one says how many were left out."""
    now = [0.0]
    flood = FloodFilter(interval_s=10, clock=lambda: now[0])
    loop = asyncio.new_event_loop()
    error = OSError(errno.EMFILE, "Too many open files")
    context = {"message": "socket.accept() out of system resource", "exception": error}
    log, root = io.StringIO(), logging.getLogger()
    handler = logging.StreamHandler(log)
    root.addHandler(handler)
    try:
        with installed(flood):
            for _ in range(1000):
                loop.call_exception_handler(context)
            now[0] = 11.0
            loop.call_exception_handler(context)
            logging.getLogger("hstu_blair.test").error("another kind")
    finally:
        root.removeHandler(handler)
        loop.close()
    text = log.getvalue()
    assert text.count("Too many open files") == 2 and text.count("another kind") == 1
    assert "999 more like this left out in the last 11 s" in text
    assert flood.suppressed["asyncio"] == 999


def test_serve_flags_set_the_connection_limits():
    args = build_parser().parse_args(["serve", "run", "--max-connections", "50", "--request-head-s", "2.5"])
    assert connections_of(args) == ConnectionLimits(max_connections=50, request_head_s=2.5)
    assert connections_of(build_parser().parse_args(["serve", "run"])) == ConnectionLimits()
    with pytest.raises(HstuBlairError, match="positive"):
        connections_of(build_parser().parse_args(["serve", "run", "--backlog", "0"]))
