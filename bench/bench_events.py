"""Events over HTTP on loopback: durable ingest rate, per-user recommendation latency, cross-process visibility.

Trains a small HSTU on ml-latest-small (610 users, 9.7k movies; ``--epochs``, or pass ``--run-dir``),
starts ``hstu-blair serve`` in a subprocess on 127.0.0.1 over a fresh SQLite store (WAL,
synchronous=FULL: every 201 is on disk; ``--store URL`` for another, e.g. PostgreSQL), then:

1. **Ingest**: ``--events`` events (real movie ids, ``--users`` users) as ``POST /events`` batches
   of ``--batch`` from ``--clients`` concurrent clients; events/s = events acknowledged / wall time
   (goal >= 5,000 events/s on 2 cores), and the server's CPU seconds.
2. **Recommendations**: ``GET /users/{id}/recommendations?k=10`` for users who now have stored
   events (half of them also have a training history), ``--requests`` requests from one client,
   one after another: p50 / p99 (goal p50 <= 20 ms, p99 <= 100 ms) at the rate that gives.
3. **Visibility**: one process commits an item to the store, another polls ``max(seq)`` (what every
   server does before each request); the delay from the start of the writer's call to the reader
   seeing the commit (an upper bound: it includes the write), and the cost of one poll.

Prints the CPU model and flags, the core count and the load average (the figures depend on them).

    python bench/bench_events.py --events 200000 --batch 500 --clients 4 --out bench_events.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import machine, machine_line  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def train_run(run_dir: Path, epochs: int) -> Path:
    from hstu_blair.config import load_config
    from hstu_blair.recipes.train import train

    config = load_config(
        ROOT / "configs/ml-latest-small/hstu.toml",
        [
            f'data.path="{ROOT / "data/ml-latest-small"}"',
            f'out_dir="{run_dir.parent}"',
            f"train.epochs={epochs}",
            "train.patience=0",
            "train.threads=1",
        ],
    )
    return train(config, run_dir=run_dir, progress=False).run_dir


def catalogue(run_dir: Path) -> tuple[list[str], list[str]]:
    """Item ids and user ids of the run's training data."""
    info = json.loads((run_dir / "model.json").read_text())
    from hstu_blair.data.dataset import SequenceData

    data = SequenceData.load(info["dataset"]["path"])
    return info["item_ids"], data.sequences["user_id"].to_list()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(run_dir: Path, store: str, threads: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "hstu_blair.cli", "serve", str(run_dir), "--port", str(port)]
    command += ["--store", str(store), "--threads", str(threads), "--log-level", "warning"]
    proc = subprocess.Popen(command, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the server did not start")


async def ingest(url: str, batches: list[list[dict]], clients: int) -> tuple[float, int, int]:
    """Send the batches from ``clients`` workers; returns seconds, events acknowledged, errors."""
    queue: asyncio.Queue[list[dict]] = asyncio.Queue()
    for b in batches:
        queue.put_nowait(b)
    done = errors = 0

    async def worker(http: httpx.AsyncClient) -> None:
        nonlocal done, errors
        while not queue.empty():
            batch = queue.get_nowait()
            r = await http.post("/events", json={"events": batch})
            if r.status_code == 201:
                done += len(batch)
            else:
                errors += 1

    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        start = time.perf_counter()
        await asyncio.gather(*(worker(http) for _ in range(clients)))
        return time.perf_counter() - start, done, errors


def recommendations(url: str, users: list[str], n: int) -> dict[str, Any]:
    latencies = []
    with httpx.Client(base_url=url, timeout=60) as http:
        for i in range(n):
            start = time.perf_counter()
            r = http.get(f"/users/{users[i % len(users)]}/recommendations", params={"k": 10})
            latencies.append(time.perf_counter() - start)
            assert r.status_code == 200, r.text
    ms = np.array(latencies) * 1000
    return {
        "requests": n,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "rate_per_s": n / float(np.sum(latencies)),
    }


READER = """
import sys, time
from hstu_blair.run.store import Store
store, n = Store(sys.argv[1]), int(sys.argv[2])
head = store.item_head()
print("ready", flush=True)
for _ in range(n):
    while (now := store.item_head()) == head:
        pass
    print(time.time(), flush=True)
    head = now
"""


def visibility(location: str, n: int) -> dict[str, Any]:
    """Delay between a write call in one process and another process's poll seeing its commit
    (measured from the call's start: an upper bound that includes the write itself; the reader can
    see the commit before the writer's call has returned)."""
    from hstu_blair.run.store import ItemRecord, Store

    path = location
    writer = Store(path)
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(path), str(n)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert reader.stdout is not None and reader.stdout.readline().strip() == "ready"
    delays = []
    for i in range(n):
        started = time.time()
        writer.add_items([ItemRecord(f"visibility-{i}", "", "t", np.zeros(8, np.float32))])
        seen = float(reader.stdout.readline())
        delays.append((seen - started) * 1000)
        time.sleep(0.01)
    reader.wait(timeout=30)
    start = time.perf_counter()
    for _ in range(1000):
        writer.item_head()
    poll_us = (time.perf_counter() - start) * 1000
    return {
        "writes": n,
        "delay_ms_median": float(np.median(delays)),
        "delay_ms_max": float(np.max(delays)),
        "poll_us": poll_us,
    }


def events_load(
    run_dir: Path,
    store: str,
    events: int = 200_000,
    batch: int = 500,
    clients: int = 4,
    users: int = 2000,
    requests: int = 1000,
    threads: int = 1,
) -> dict[str, Any]:
    """Parts 1 and 2 against a fresh ``hstu-blair serve`` of ``run_dir`` over ``store``: durable
    ingest of ``events`` events (``POST /events`` batches of ``batch`` from ``clients`` clients,
    ``users`` users, half of them new), then ``requests`` ``GET /users/{id}/recommendations``.
    Returns ``{"ingest": {...}, "recommendations": {...}}``; :func:`events_lines` prints them."""
    item_ids, trained_users = catalogue(run_dir)
    rng = random.Random(0)
    # half new users, half users of the training data
    ids = [trained_users[i // 2 % len(trained_users)] if i % 2 else f"new-{i}" for i in range(users)]
    t0 = 2_000_000_000
    rows = [
        {"user_id": rng.choice(ids), "item_id": rng.choice(item_ids), "timestamp": t0 + i}
        for i in range(events)
    ]
    batches = [rows[i : i + batch] for i in range(0, len(rows), batch)]
    proc, url = start_server(run_dir, store, threads)
    try:
        cpu0 = cpu_seconds(proc.pid)
        seconds, done, errors = asyncio.run(ingest(url, batches, clients))
        cpu = cpu_seconds(proc.pid) - cpu0
        recs = recommendations(url, ids, requests)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    ingested = {
        "events": done,
        "batches": len(batches),
        "batch": batch,
        "clients": clients,
        "seconds": seconds,
        "events_per_s": done / seconds,
        "errors": errors,
        "server_cpu_s": cpu,
        "events_per_user": events // users,
    }
    return {"ingest": ingested, "recommendations": recs}


def events_lines(result: dict[str, Any]) -> list[str]:
    """The figures of :func:`events_load`, as printed lines."""
    i, r = result["ingest"], result["recommendations"]
    return [
        f"ingest: {i['events']} events in {i['batches']} batches of {i['batch']} from {i['clients']} clients: "
        f"{i['seconds']:.2f} s = {i['events_per_s']:,.0f} events/s (goal >= 5,000), {i['errors']} errors; "
        f"server CPU {i['server_cpu_s']:.2f} s = {i['server_cpu_s'] / max(i['events'], 1) * 1e6:.1f} us/event",
        f"GET /users/ID/recommendations (users with stored events, about {i['events_per_user']} each): "
        f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms (goal <= 20 / 100) at "
        f"{r['rate_per_s']:.0f} requests/s, one client",
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--run-dir",
        type=Path,
        help="a trained run (trained there on ml-latest-small when missing; default: a temporary one)",
    )
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--users", type=int, default=2000)
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1, help="the server's torch threads")
    p.add_argument("--store", help="the server's store (default: a new SQLite file); e.g. a PostgreSQL URL")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    m = machine()
    print(f"{machine_line(m)}; load {m['load_avg_1min']:.1f}")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        run_dir = args.run_dir or tmp / "run"
        if not (run_dir / "model.json").exists():
            run_dir = train_run(run_dir, args.epochs)
        loaded = events_load(
            run_dir,
            args.store or str(tmp / "store.sqlite"),
            args.events,
            args.batch,
            args.clients,
            args.users,
            args.requests,
            args.threads,
        )
        for line in events_lines(loaded):
            print(line)
        vis = visibility(args.store or str(tmp / "visibility.sqlite"), 50)
        print(
            f"visibility: an item written by one process is seen by another's max(seq) poll "
            f"{vis['delay_ms_median']:.2f} ms median, {vis['delay_ms_max']:.2f} ms max after the write call "
            f"began (commit included); one poll costs "
            f"{vis['poll_us']:.0f} us"
        )
    result = {
        "machine": m,
        "args": {k: str(v) for k, v in vars(args).items()},
        **loaded,
        "visibility": vis,
        "load_avg_1min_after": os.getloadavg()[0],
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
