"""Bounded work and bounded connections of ``hstu-blair serve`` (issue 25), for ``bench_serve.py --limits``.

Starts ``hstu-blair serve`` (the CLI, default limits, log level info, its output in a file) over a
SQLite store where one user has ``--heavy-events`` stored events (600,000: written straight into
the store), then measures, each against a baseline of the same run:

1. ``GET /users/{id}/recommendations?k=10`` p50/p99 for that user (goal p99 <= 30 ms) and for a
   training user with no stored events (the baseline), one client, one request after another;
2. ``/healthz`` p99 alone (baseline) and while 8 clients read that user (goal <= 100 ms);
3. ``--idle`` connections (20,000) opened by two helper processes and held, sending nothing:
   ``/healthz`` p99 (a new connection per probe, as a load balancer does; goal <= 100 ms), the
   server's open connections and descriptors, and how much the log grew (goal < 1 MB).

The helpers raise their soft file limit (``ulimit -n``) to the hard limit; each holds half the
connections, so 20,000 need a hard limit a little above 10,000. The figures say how many were open.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HOLDER = """
import resource, socket, sys, time
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
port, n, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
socks, failed = [], 0
for _ in range(n):
    s = socket.socket()
    s.setblocking(False)
    if s.connect_ex(("127.0.0.1", port)) not in (0, 115):  # 115: EINPROGRESS
        failed += 1
    socks.append(s)
print(f"open {len(socks)} failed {failed} soft {soft} raised to {hard}", flush=True)
time.sleep(seconds)
"""


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1000
    return {
        "n": len(ms),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
    }


def fill_store(store: str, user: str, items: list[str], n: int) -> float:
    """``n`` events of ``user`` written straight into ``store`` (50,000 per transaction); seconds."""
    from hstu_blair.run.store import Store

    started, s = time.perf_counter(), Store(store)
    try:
        for start in range(0, n, 50_000):
            s.add_events(
                [
                    (user, items[i % len(items)], 1_000_000_000 + i)
                    for i in range(start, min(n, start + 50_000))
                ]
            )
    finally:
        s.close()
    return time.perf_counter() - started


def start(run_dir: Path, store: str, port: int, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "hstu_blair.cli", "serve", str(run_dir), "--port", str(port)]
    command += ["--store", store, "--threads", "1"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT / "src")}
        )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the server did not start: {log.read_text()[-2000:]}")


def timed_gets(url: str, path: str, n: int) -> list[float]:
    """``n`` GETs of ``path`` one after another on one connection; seconds each (raises on non-200)."""
    out = []
    with httpx.Client(base_url=url, timeout=60) as http:
        for _ in range(n):
            t0 = time.perf_counter()
            r = http.get(path)
            out.append(time.perf_counter() - t0)
            if r.status_code != 200:
                raise RuntimeError(f"GET {path}: {r.status_code} {r.text[:200]}")
    return out


async def probes_during(url: str, readers: int, path: str, seconds: float, fresh: bool) -> dict[str, Any]:
    """``/healthz`` every 20 ms for ``seconds`` (``fresh``: a new connection each) while ``readers``
    clients GET ``path`` back to back; probe latencies and reader requests."""
    stop, reads, probes, failures = asyncio.Event(), [0], [], []

    async def reader() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            while not stop.is_set():
                await http.get(path)
                reads[0] += 1

    async def probe(http: httpx.AsyncClient) -> None:
        t0 = time.perf_counter()
        try:
            r = await http.get("/healthz", headers={"Connection": "close"} if fresh else {})
            (probes if r.status_code == 200 else failures).append(time.perf_counter() - t0)
        except httpx.HTTPError as exc:
            failures.append(type(exc).__name__)

    tasks = [asyncio.create_task(reader()) for _ in range(readers)]
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            await probe(http)
            await asyncio.sleep(0.02)
    stop.set()
    await asyncio.gather(*tasks)
    return {**percentiles(probes), "failures": len(failures), "reader_requests": reads[0]}


def server_state(url: str, pid: int) -> dict[str, Any]:
    metrics = httpx.get(f"{url}/metrics").text.splitlines()
    wanted = (
        "hstu_blair_http_connections ",
        "hstu_blair_http_connections_closed_total",
        "hstu_blair_log_suppressed_total",
    )
    values = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in metrics if line.startswith(wanted)
    }
    return {"descriptors": len(os.listdir(f"/proc/{pid}/fd")), **values}


def idle_connections(url: str, port: int, pid: int, log: Path, n: int, seconds: float) -> dict[str, Any]:
    """``n`` idle connections from two helpers, held ``seconds``; probes meanwhile, log growth."""
    log_before = log.stat().st_size
    holders = [
        subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(port), str(n // 2), str(seconds)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    opened = [h.stdout.readline().strip() for h in holders if h.stdout]
    probes = asyncio.run(probes_during(url, 0, "/healthz", seconds / 2, fresh=True))
    state = server_state(url, pid)
    for h in holders:
        h.wait()
    time.sleep(1)
    return {
        "helpers": opened,
        "healthz_new_connection": probes,
        "server": state,
        "log_growth_bytes": log.stat().st_size - log_before,
    }


def limits_bench(
    run_dir: Path, store: str, log: Path, heavy_events: int, idle: int, seconds: float
) -> dict[str, Any]:
    """The three measurements above; a dict of figures (:func:`limits_lines` prints them)."""
    from bench_events import catalogue, free_port

    items, users = catalogue(run_dir)
    heavy, baseline = "heavy-user", users[0]
    result: dict[str, Any] = {
        "heavy_events": heavy_events,
        "fill_seconds": round(fill_store(store, heavy, items, heavy_events), 1),
    }
    result["file_limit"] = resource.getrlimit(resource.RLIMIT_NOFILE)
    port = free_port()
    proc = start(run_dir, store, port, log)
    url = f"http://127.0.0.1:{port}"
    try:
        timed_gets(url, f"/users/{baseline}/recommendations?k=10", 50)  # warm-up
        result["user_no_events"] = percentiles(
            timed_gets(url, f"/users/{baseline}/recommendations?k=10", 300)
        )
        result["user_600k"] = percentiles(timed_gets(url, f"/users/{heavy}/recommendations?k=10", 300))
        result["healthz_alone"] = asyncio.run(probes_during(url, 0, "/healthz", 5, fresh=False))
        heavy_path = f"/users/{heavy}/recommendations?k=10"
        result["healthz_8_readers"] = asyncio.run(probes_during(url, 8, heavy_path, 10, fresh=False))
        result["healthz_alone_new_connection"] = asyncio.run(probes_during(url, 0, "/healthz", 5, fresh=True))
        result["idle"] = idle_connections(url, port, proc.pid, log, idle, seconds)
        result["log_bytes"] = log.stat().st_size
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return result


def limits_lines(r: dict[str, Any]) -> list[str]:
    """The figures of :func:`limits_bench`, as printed lines with ratios against the baselines."""
    base, heavy = r["user_no_events"], r["user_600k"]
    alone, busy = r["healthz_alone"], r["healthz_8_readers"]
    fresh, idle = r["healthz_alone_new_connection"], r["idle"]
    probe = idle["healthz_new_connection"]
    return [
        f"file limit (soft, hard) {tuple(r['file_limit'])}; store filled with {r['heavy_events']:,} events of one user in {r['fill_seconds']} s",
        f"GET /users/ID/recommendations, user with {r['heavy_events']:,} events: p50 {heavy['p50_ms']} ms, p99 {heavy['p99_ms']} ms "
        f"(goal <= 30); no stored events: p50 {base['p50_ms']}, p99 {base['p99_ms']} ms; p99 ratio {heavy['p99_ms'] / base['p99_ms']:.2f}",
        f"/healthz p99 while 8 clients read that user: {busy['p99_ms']} ms (goal <= 100; {busy['reader_requests']} reads, "
        f"{busy['failures']} failures); alone {alone['p99_ms']} ms; ratio {busy['p99_ms'] / alone['p99_ms']:.2f}",
        f"{sum(int(h.split()[1]) for h in idle['helpers'] if h)} idle connections ({'; '.join(idle['helpers'])}): /healthz on a new "
        f"connection p50 {probe['p50_ms']} ms, p99 {probe['p99_ms']} ms (goal <= 100; {probe['failures']} failures of {probe['n'] + probe['failures']}); "
        f"without them p99 {fresh['p99_ms']} ms, ratio {probe['p99_ms'] / fresh['p99_ms']:.2f}",
        f"server meanwhile: {idle['server']}",
        f"log grew {idle['log_bytes'] if 'log_bytes' in idle else idle['log_growth_bytes']:,} bytes during the idle connections "
        f"(goal < 1 MB); {r['log_bytes']:,} bytes in all",
    ]


def add_limits_args(parser: argparse.ArgumentParser) -> None:
    """The flags of this part of ``bench_serve.py``."""
    parser.add_argument("--limits", action="store_true", help="also measure bounded work and connections")
    parser.add_argument(
        "--limits-only", action="store_true", help="measure only bounded work and connections"
    )
    parser.add_argument("--heavy-events", type=int, default=600_000, help="stored events of the heavy user")
    parser.add_argument("--idle", type=int, default=20_000, help="idle connections opened")
    parser.add_argument("--idle-seconds", type=float, default=20, help="how long they are held")


def limits_from_args(run_dir: Path, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """:func:`limits_bench` with the flags, over a new SQLite store in ``tmp``; prints its lines."""
    result = limits_bench(
        run_dir,
        str(tmp / "limits.sqlite"),
        tmp / "serve.log",
        args.heavy_events,
        args.idle,
        args.idle_seconds,
    )
    for line in limits_lines(result):
        print(line, flush=True)
    return result
