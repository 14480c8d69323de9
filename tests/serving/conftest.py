"""Serving fixtures: runs trained in the test session on ``tiny_dataset`` (ID-only and text-fused)."""

from __future__ import annotations

import contextlib
import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from hstu_blair.config import load_config
from hstu_blair.data.dataset import SequenceData
from hstu_blair.text.store import StoreManifest, save_embeddings
from hstu_blair.training.loop import train
from tests.conftest import tiny_overrides

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
def running_server(app) -> Iterator[str]:
    """Serve ``app`` with a real uvicorn on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    import uvicorn

    # IPPROTO_TCP explicitly: asyncio only turns Nagle off (TCP_NODELAY) on sockets whose proto says TCP,
    # and a 0 proto here costs every request a 40 ms delayed-ACK stall
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
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
