"""Fuzzed bodies for ``bench_serve.py``: random JSON of random shapes sent to the JSON routes;
every answer must be 4xx, never 5xx, and the server must answer afterwards."""

from __future__ import annotations

import json
import random
from typing import Any

import httpx


def fuzz_bodies(n: int, seed: int = 1) -> list[bytes]:
    """Random JSON of random shapes, wrong types, huge numbers, broken JSON, unicode, deep nesting."""
    rng = random.Random(seed)
    atoms: list[Any] = [
        None,
        True,
        False,
        -1,
        0,
        10**30,
        -(10**30),
        1e308,
        0.5,
        "1",
        "",
        "\u2603\U0001f600\u0000",
    ]
    atoms += ["x" * 10_000, [], {}, ["1"] * 5000]

    def value(depth: int = 0) -> Any:
        r = rng.random()
        if depth < 4 and r < 0.2:
            return [value(depth + 1) for _ in range(rng.randrange(5))]
        if depth < 4 and r < 0.4:
            keys = [
                "history",
                "user_id",
                "k",
                "timestamps",
                "query_time",
                "exclude_seen",
                "skip_unknown",
                "requests",
                "?",
            ]
            return {rng.choice(keys): value(depth + 1) for _ in range(rng.randrange(1, 5))}
        return rng.choice(atoms)

    bodies = []
    for i in range(n):
        kind = i % 5
        if kind == 0:
            bodies.append(json.dumps(value()).encode())
        elif kind == 1:  # the right shape with wrong values
            body = {"history": value(), "k": value(), "timestamps": value(), "exclude_seen": value()}
            bodies.append(json.dumps(body).encode())
        elif kind == 2:  # huge or invalid k and limits
            body = {"history": ["1"], "k": rng.choice([0, -5, 10**6, 10**100, 1.5, "ten", None])}
            bodies.append(json.dumps(body).encode())
        elif kind == 3:  # broken JSON
            good = json.dumps({"history": ["1", "50"], "k": 10})
            cut = rng.randrange(1, len(good))
            bodies.append(rng.choice([good[:cut].encode(), b"\xff\xfe\x00", b"{" * 5000, b"NaN", b"1e99999"]))
        else:  # unicode and odd ids
            ids = [
                "".join(chr(rng.randrange(0x20, 0x2FFFF)) for _ in range(rng.randrange(1, 30)))
                for _ in range(5)
            ]
            bodies.append(
                json.dumps({"history": ids, "k": 5}, ensure_ascii=rng.random() < 0.5).encode(
                    "utf-8", "surrogatepass"
                )
            )
    bodies.append(b"[" * 100_000 + b"]" * 100_000)
    return bodies


def fuzz(url: str, bodies: list[bytes]) -> dict[str, Any]:
    statuses: dict[str, int] = {}
    with httpx.Client(base_url=url, timeout=60) as http:
        for body in bodies:
            for path in ("/recommend", "/recommend/batch", "/items"):
                code = http.post(path, content=body, headers={"content-type": "application/json"}).status_code
                statuses[str(code)] = statuses.get(str(code), 0) + 1
        alive = (
            http.get("/healthz").status_code == 200
            and http.post("/recommend", json={"history": ["1"]}).status_code == 200
        )
    server_errors = sum(v for k, v in statuses.items() if k.startswith("5"))
    return {
        "bodies": len(bodies) * 3,
        "statuses": dict(sorted(statuses.items())),
        "5xx": server_errors,
        "alive_after": alive,
    }
