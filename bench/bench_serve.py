"""HTTP serving load test on loopback: micro-batching on against off, then fuzzed bodies.

Trains a small HSTU on the bundled ml-latest-small (610 users, 9.7k movies; a few epochs, or pass
``--run-dir``), then for each server setting starts a real uvicorn server in a subprocess on
127.0.0.1 and sends ``--requests`` POST /recommend requests from ``--clients`` concurrent asyncio
clients (httpx), each with a real user's history window (raw ids, 1..200 items, k=10):

- ``batched``: batch_window_ms=2, max_batch=64 (the defaults);
- ``unbatched``: batch_window_ms=0, max_batch=1 (one model call per request).

Both servers run at once and take turns (``--rounds`` alternations of ``requests / rounds`` each),
so that both see the same background load of the machine; the 1-minute load average is recorded.

Reports throughput, p50/p99 latency, errors (goal 0), model calls, the mean batch size and the CPU
time per request of the server process and of the load generator, and the ratios batched /
unbatched. On a small machine the load generator (httpx, ~2 ms CPU per request) shares the cores
with the server and bounds the throughput; the server's CPU per request shows the batching gain. Then sends fuzzed bodies (random JSON, wrong types, huge k, broken
JSON, unicode, deep nesting) to the batched server: every answer must be 4xx, never 5xx, and the
server must still answer /healthz afterwards.

Stall check (``--stall``, alone with ``--stall-only``): one batched server; p50/p99 of small
``/recommend`` requests (``--stall-clients`` clients, real histories, k=10) alone, then while a
maximum-size ``/recommend/batch`` (``--big-queries`` x ``--big-history`` random items, k =
``--big-k``; the defaults use the whole of the default per-request limits: 200,000 history items
and 100,000 results) is sent back to back; the server's RSS and peak RSS (VmHWM) after each phase.

Events (issue 18; ``--events 0`` skips them): a fresh server over a new SQLite store (or
``--store URL``) takes ``--events`` events as ``POST /events`` batches, then answers
``--user-requests`` ``GET /users/{id}/recommendations`` for users with stored events: the durable
ingest rate (events/s) and the per-user p50/p99, measured by ``bench_events.events_load`` (the
same code as ``bench/bench_events.py``, which also measures cross-process visibility).

Bounded work and connections (issue 25; ``--limits``, alone with ``--limits-only``; see
``bench/serve_limits.py``): a user with 600,000 stored events, ``/healthz`` while 8 clients read
that user, and 20,000 idle connections, each against a baseline measured in the same run.

    python bench/bench_serve.py --run-dir RUN --limits-only --out bench_serve_limits.json
    python bench/bench_serve.py --requests 10000 --clients 64 --out bench_serve.json
    python bench/bench_serve.py --run-dir RUN --stall-only --out bench_serve_stall.json
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
from bench_events import events_lines, events_load  # noqa: E402
from bench_train import machine, machine_line  # noqa: E402
from serve_fuzz import fuzz, fuzz_bodies  # noqa: E402
from serve_limits import add_limits_args, limits_from_args  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"batched": (2.0, 64), "unbatched": (0.0, 1)}

SERVER = """
import sys
from hstu_blair.serving.app import serve
serve(sys.argv[1], port=int(sys.argv[2]), batch_window_ms=float(sys.argv[3]), max_batch=int(sys.argv[4]),
      index=sys.argv[5], log_level="warning", threads=int(sys.argv[6]))
"""


def train_run(out: Path, epochs: int) -> Path:
    """A small HSTU on ml-latest-small (the shipped config, fewer epochs)."""
    from hstu_blair.config import load_config
    from hstu_blair.recipes.train import train

    config = load_config(
        ROOT / "configs/ml-latest-small/hstu.toml",
        [f'data.path="{out / "data"}"', f'out_dir="{out}"', f"train.epochs={epochs}", "train.patience=0"],
    )
    return train(config, run_dir=out / "run", progress=False).run_dir


def histories(run_dir: Path, n: int, seed: int = 0) -> list[list[str]]:
    """``n`` request histories: windows of real users' sequences, 1..200 items, as raw ids."""
    from hstu_blair.run.model_files import load_trained

    data = load_trained(run_dir).data
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        user = rng.randrange(data.num_users)
        items = data.user_items(user)
        end = rng.randint(1, len(items))
        start = max(0, end - rng.randint(1, 200))
        out.append([str(data.item_ids[i]) for i in items[start:end]])
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc; 0 elsewhere)."""
    stat = Path(f"/proc/{pid}/stat")
    if not stat.exists():
        return 0.0
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    run_dir: Path, window_ms: float, max_batch: int, index: str, threads: int
) -> tuple[subprocess.Popen, str]:
    port = free_port()
    args = [str(run_dir), str(port), str(window_ms), str(max_batch), index, str(threads)]
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, *args], env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


async def load(url: str, bodies: list[dict], clients: int) -> tuple[list[float], dict[str, int], float]:
    """Send every body once from ``clients`` concurrent workers; latency per request.

    Each worker has its own keep-alive connection (its own ``httpx.AsyncClient``): one shared
    client with 64 connections is itself the bottleneck (measured: 154 against 864 /healthz
    requests/s on 2 cores).
    """
    latencies: list[float] = []
    errors: dict[str, int] = {}
    queue = iter(bodies)

    async def worker() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            for body in queue:
                start = time.perf_counter()
                try:
                    response = await http.post("/recommend", json=body)
                    if response.status_code != 200 or len(response.json()["items"]) != body["k"]:
                        errors[str(response.status_code)] = errors.get(str(response.status_code), 0) + 1
                except httpx.HTTPError as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                latencies.append(time.perf_counter() - start)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return latencies, errors, time.perf_counter() - started


def summarize(latencies: list[float], errors: dict[str, int], seconds: float) -> dict[str, Any]:
    lat = np.array(latencies) * 1000
    return {
        "requests": len(latencies),
        "seconds": round(seconds, 2),
        "throughput_rps": round(len(latencies) / seconds, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 2),
        "p99_ms": round(float(np.percentile(lat, 99)), 2),
        "errors": errors,
    }


def rss_mib(pid: int) -> dict[str, float]:
    """Resident and peak resident memory of a process in MiB (Linux /proc; empty elsewhere)."""
    status = Path(f"/proc/{pid}/status")
    if not status.exists():
        return {}
    values = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
    return {
        key: round(int(values[name].split()[0]) / 1024, 1)
        for key, name in (("rss", "VmRSS"), ("peak", "VmHWM"))
    }


async def small_requests(
    url: str, bodies: list[dict], clients: int, until: asyncio.Event | None
) -> list[float]:
    """Latencies of small ``/recommend`` requests from ``clients`` workers: every body once, or
    (with ``until``) over and over until the event is set."""
    latencies: list[float] = []
    failures: list[int] = []

    async def worker(offset: int) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=120) as http:
            i = offset
            while (until is None and i < len(bodies)) or (until is not None and not until.is_set()):
                start = time.perf_counter()
                response = await http.post("/recommend", json=bodies[i % len(bodies)])
                latencies.append(time.perf_counter() - start)
                if response.status_code != 200:
                    failures.append(response.status_code)
                i += clients

    await asyncio.gather(*(worker(c) for c in range(clients)))
    if failures:
        raise RuntimeError(f"small requests failed: {sorted(set(failures))}")
    return latencies


async def with_big_batches(
    url: str, small: list[dict], big: bytes, clients: int, seconds: float
) -> dict[str, Any]:
    """Small requests while maximum-size batches are sent back to back for ``seconds`` (at least one)."""
    done = asyncio.Event()
    big_latencies: list[float] = []
    statuses: list[int | str] = []

    async def batches() -> None:
        started = time.perf_counter()
        try:
            async with httpx.AsyncClient(base_url=url, timeout=600) as http:
                while not big_latencies or time.perf_counter() - started < seconds:
                    t0 = time.perf_counter()
                    try:
                        response = await http.post(
                            "/recommend/batch", content=big, headers={"content-type": "application/json"}
                        )
                        statuses.append(response.status_code)
                    except httpx.HTTPError as exc:  # e.g. the server refused the body and closed
                        statuses.append(type(exc).__name__)
                    big_latencies.append(time.perf_counter() - t0)
        finally:
            done.set()

    big_task = asyncio.create_task(batches())
    await asyncio.sleep(0.2)  # the first batch is on its way
    latencies = await small_requests(url, small, clients, done)
    await big_task
    return {"small": latencies, "big_seconds": big_latencies, "big_statuses": statuses}


def stall_check(run_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """p50/p99 of small requests alone and while maximum-size batches run, and the server's RSS."""
    from hstu_blair.run.model_files import load_trained

    rng = random.Random(2)
    item_ids = [str(i) for i in load_trained(run_dir).data.item_ids[1:]]
    small = [{"history": h, "k": 10} for h in histories(run_dir, 500, seed=3)]
    big = {
        "requests": [
            {"history": rng.choices(item_ids, k=args.big_history), "k": args.big_k}
            for _ in range(args.big_queries)
        ]
    }
    big_body = json.dumps(big).encode()
    proc, url = start_server(run_dir, 2.0, 64, args.index, args.threads)
    try:
        asyncio.run(small_requests(url, small[:100], args.stall_clients, None))  # warm-up
        result: dict[str, Any] = {
            "big_batch": {
                "queries": args.big_queries,
                "history": args.big_history,
                "k": args.big_k,
                "body_mib": round(len(big_body) / 2**20, 1),
            },
            "rss_mib_start": rss_mib(proc.pid),
        }
        alone = asyncio.run(small_requests(url, small, args.stall_clients, None))
        result["alone"] = summarize(alone, {}, 1.0) | {"rss_mib": rss_mib(proc.pid)}
        busy = asyncio.run(with_big_batches(url, small, big_body, args.stall_clients, args.stall_seconds))
        result["during_big_batch"] = summarize(busy["small"], {}, 1.0) | {
            "big_batches": len(busy["big_seconds"]),
            "big_statuses": sorted({str(x) for x in busy["big_statuses"]}),
            "big_seconds_max": round(max(busy["big_seconds"]), 2),
            "rss_mib": rss_mib(proc.pid),
        }
        for key in ("alone", "during_big_batch"):
            for drop in ("seconds", "throughput_rps", "errors"):
                result[key].pop(drop)
    finally:
        stop_server(proc)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", type=Path, help="a trained run (default: train one on ml-latest-small)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs when training the default run")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=4, help="alternations of the two settings")
    parser.add_argument("--fuzz", type=int, default=500, help="fuzzed bodies (each sent to 3 endpoints)")
    parser.add_argument("--index", default="exact")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the server")
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    parser.add_argument("--stall", action="store_true", help="also run the stall check (see above)")
    parser.add_argument("--stall-only", action="store_true", help="run only the stall check")
    parser.add_argument("--stall-clients", type=int, default=4, help="clients sending small requests")
    parser.add_argument("--stall-seconds", type=float, default=20, help="how long big batches are sent")
    parser.add_argument("--big-queries", type=int, default=100)
    parser.add_argument("--big-history", type=int, default=2000)
    parser.add_argument("--big-k", type=int, default=1000)
    parser.add_argument("--events", type=int, default=50_000, help="events to ingest (0: no events part)")
    parser.add_argument("--event-batch", type=int, default=500, help="events per POST /events")
    parser.add_argument("--event-clients", type=int, default=4, help="clients posting events")
    parser.add_argument("--event-users", type=int, default=2000, help="users the events name (half new)")
    parser.add_argument("--user-requests", type=int, default=1000, help="GET /users/ID/recommendations sent")
    parser.add_argument("--store", help="the events server's store (default: a new SQLite file)")
    add_limits_args(parser)
    args = parser.parse_args()
    info = machine()
    print(machine_line(info) + f"; load {info['load_avg_1min']:.2f}")
    if args.limits_only:
        with tempfile.TemporaryDirectory() as tmp:
            run_dir = args.run_dir or train_run(Path(tmp), args.epochs)
            limits = {"machine": info, **limits_from_args(run_dir, Path(tmp), args)}
        if args.out:
            args.out.write_text(json.dumps(limits, indent=2))
        return
    if args.stall_only:
        with tempfile.TemporaryDirectory() as tmp:
            run_dir = args.run_dir or train_run(Path(tmp), args.epochs)
            stall = {"machine": info, **stall_check(run_dir, args)}
        print(f"stall: {json.dumps(stall)}")
        if args.out:
            args.out.write_text(json.dumps(stall, indent=2))
        return

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.run_dir
        if run_dir is None:
            started = time.perf_counter()
            run_dir = train_run(Path(tmp), args.epochs)
            print(f"trained {run_dir} in {time.perf_counter() - started:.0f} s")
        bodies = [{"history": h, "k": 10} for h in histories(run_dir, args.requests)]
        results: dict[str, Any] = {"requests": args.requests, "clients": args.clients, "cpus": os.cpu_count()}
        results["load_average_before"] = os.getloadavg()[0]
        servers = {
            name: start_server(run_dir, w, m, args.index, args.threads) for name, (w, m) in SETTINGS.items()
        }
        try:
            raw: dict[str, tuple[list[float], dict[str, int], float]] = {
                name: ([], {}, 0.0) for name in SETTINGS
            }
            calls = dict.fromkeys(SETTINGS, 0)
            server_cpu = dict.fromkeys(SETTINGS, 0.0)
            client_cpu = dict.fromkeys(SETTINGS, 0.0)
            for _, url in servers.values():
                asyncio.run(load(url, bodies[:200], args.clients))  # warm-up
            for r in range(args.rounds):  # alternate the settings so both see the same machine load
                chunk = bodies[r :: args.rounds]
                for name, (proc, url) in servers.items():
                    before = httpx.get(f"{url}/healthz").json()["model_calls"]
                    cpu_before, client_before = cpu_seconds(proc.pid), time.process_time()
                    latencies, errors, seconds = asyncio.run(load(url, chunk, args.clients))
                    server_cpu[name] += cpu_seconds(proc.pid) - cpu_before
                    client_cpu[name] += time.process_time() - client_before
                    calls[name] += httpx.get(f"{url}/healthz").json()["model_calls"] - before
                    lat, err, sec = raw[name]
                    lat.extend(latencies)
                    raw[name] = (
                        lat,
                        {k: err.get(k, 0) + errors.get(k, 0) for k in {*err, *errors}},
                        sec + seconds,
                    )
            for name, (window_ms, max_batch) in SETTINGS.items():
                result = summarize(*raw[name])
                n = result["requests"]
                result.update(
                    model_calls=calls[name],
                    mean_batch=round(n / max(calls[name], 1), 1),
                    server_cpu_ms_per_request=round(1000 * server_cpu[name] / n, 3),
                    client_cpu_ms_per_request=round(1000 * client_cpu[name] / n, 3),
                )
                results[name] = {"batch_window_ms": window_ms, "max_batch": max_batch, **result}
                print(f"{name:>9}: {json.dumps(results[name])}")
            results["fuzz"] = fuzz(servers["batched"][1], fuzz_bodies(args.fuzz))
        finally:
            for proc, _ in servers.values():
                stop_server(proc)
        if args.stall:
            results["stall"] = stall_check(run_dir, args)
            print(f"stall: {json.dumps(results['stall'])}")
        if args.events:
            results["events"] = events_load(
                run_dir,
                args.store or str(Path(tmp) / "events.sqlite"),
                args.events,
                args.event_batch,
                args.event_clients,
                args.event_users,
                args.user_requests,
                args.threads,
            )
            for line in events_lines(results["events"]):
                print(line)
        if args.limits:
            results["limits"] = limits_from_args(run_dir, Path(tmp), args)
        results["load_average_after"] = os.getloadavg()[0]
        results["machine"] = info

    b, u = results["batched"], results["unbatched"]
    results["ratios"] = {
        "throughput": round(b["throughput_rps"] / u["throughput_rps"], 2),
        "p50": round(b["p50_ms"] / u["p50_ms"], 2),
        "p99": round(b["p99_ms"] / u["p99_ms"], 2),
        "model_calls": round(b["model_calls"] / max(u["model_calls"], 1), 3),
        "server_cpu_per_request": round(
            b["server_cpu_ms_per_request"] / max(u["server_cpu_ms_per_request"], 1e-9), 2
        ),
    }
    print(f"fuzz: {json.dumps(results['fuzz'])}")
    print(f"batched / unbatched: {json.dumps(results['ratios'])}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
