"""The OpenAI embeddings API as a :class:`~hstu_blair.text.encoders.TextEncoder` (``openai:<model>``).

Differences from the reference (SPEC §1.4, §7.2 item 12), on purpose:

- a request that keeps failing raises :class:`EmbeddingRequestError`; the reference logged the
  error and stored **zero vectors** for the whole request.
- each text is truncated at 8,191 tokens (the model limit; the reference used 8,192).
- a request packs texts up to ``request_token_limit`` summed tokens (default 250,000, under the
  API's 300,000) and 2,048 inputs; the reference packed at most 8,192 tokens per request.
- HTTP 408/429/5xx, timeouts and connection errors are retried with exponential backoff and
  jitter; a ``Retry-After`` (or ``retry-after-ms``) header sets the wait.

Token counts come from tiktoken's encoding of the model (cl100k_base). tiktoken downloads that
file on first use and caches it (``TIKTOKEN_CACHE_DIR``); without it (offline, or tiktoken not
installed) counts fall back to an estimate of ceil(UTF-8 bytes / 3) tokens, with a warning. The
estimate is on the safe side for English and CJK text, but it is not a bound: copy the tiktoken
cache from a machine with internet for exact counts. The counter in use is part of the fingerprint.

The endpoint is ``{base_url}/embeddings`` with ``base_url`` from ``OPENAI_BASE_URL`` (default
https://api.openai.com/v1), so any OpenAI-compatible server works; the key is ``OPENAI_API_KEY``.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import math
import os
import random
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from typing import Any, Literal

import numpy as np

from hstu_blair.text.encoders import EncoderError, Progress

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
MODEL_TOKEN_LIMIT = 8191
REQUEST_TOKEN_LIMIT = 250_000
MAX_INPUTS = 2048
MAX_RETRY_AFTER = 300.0
KNOWN_DIMS = {"text-embedding-3-large": 3072, "text-embedding-3-small": 1536, "text-embedding-ada-002": 1536}
APPROX_BYTES_PER_TOKEN = 3

_jitter = random.Random()


class EmbeddingRequestError(EncoderError):
    """An embeddings request failed for good (after retries, or a non-retryable HTTP error)."""


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TokenCounter:
    """Counts and truncates tokens with tiktoken, or estimates them when tiktoken cannot load.

    Args:
        model: model name (picks the tiktoken encoding; cl100k_base when tiktoken does not know it).
        mode: ``auto`` (tiktoken, else the estimate with a warning), ``tiktoken`` (fail without
            it) or ``approx`` (always the estimate).
    """

    def __init__(self, model: str, mode: Literal["auto", "tiktoken", "approx"] = "auto") -> None:
        self.encoding: Any = None
        if mode != "approx":
            try:
                import tiktoken

                try:
                    self.encoding = tiktoken.encoding_for_model(model)
                except KeyError:
                    self.encoding = tiktoken.get_encoding("cl100k_base")
            except Exception as exc:  # ImportError, or the BPE file cannot be downloaded
                if mode == "tiktoken":
                    raise EncoderError(
                        f"tiktoken cannot load its encoding for {model!r} ({exc}); install tiktoken and run it "
                        "once with internet, or copy its cache folder and set TIKTOKEN_CACHE_DIR"
                    ) from exc
                log.warning(
                    "tiktoken unavailable (%s: %s); estimating tokens as UTF-8 bytes / %d. For exact counts "
                    "copy tiktoken's cache from a machine with internet and set TIKTOKEN_CACHE_DIR.",
                    type(exc).__name__,
                    str(exc)[:120],
                    APPROX_BYTES_PER_TOKEN,
                )
        self.kind = (
            f"tiktoken:{self.encoding.name}" if self.encoding else f"approx:bytes/{APPROX_BYTES_PER_TOKEN}"
        )

    def truncate(self, text: str, limit: int) -> tuple[str, int]:
        """``text`` cut to at most ``limit`` tokens, and its token count."""
        if self.encoding is not None:
            ids = self.encoding.encode(text, disallowed_special=())
            if len(ids) <= limit:
                return text, len(ids)
            return self.encoding.decode(ids[:limit]), limit
        raw = text.encode("utf-8")
        n = max(1, math.ceil(len(raw) / APPROX_BYTES_PER_TOKEN))
        if n <= limit:
            return text, n
        return raw[: limit * APPROX_BYTES_PER_TOKEN].decode("utf-8", errors="ignore"), limit


def pack_requests(counts: list[int], token_limit: int, max_inputs: int) -> list[tuple[int, int]]:
    """Consecutive ``(start, stop)`` ranges whose summed ``counts`` stay within ``token_limit``."""
    ranges: list[tuple[int, int]] = []
    start, total = 0, 0
    for i, n in enumerate(counts):
        if i > start and (total + n > token_limit or i - start >= max_inputs):
            ranges.append((start, i))
            start, total = i, 0
        total += n
    if start < len(counts):
        ranges.append((start, len(counts)))
    return ranges


def _retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return min(MAX_RETRY_AFTER, max(0.0, float(millis) / 1000))
        except ValueError:
            pass
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    return min(MAX_RETRY_AFTER, max(0.0, seconds))


def _error_detail(exc: urllib.error.HTTPError) -> str:
    try:
        body = exc.read().decode("utf-8", errors="replace")
    except Exception:  # the body is only decoration for the message
        return exc.reason or ""
    try:
        return str(json.loads(body)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return body[:300]


class OpenAIEncoder:
    """Embeddings from the OpenAI API (or a compatible server).

    Args:
        model: e.g. ``text-embedding-3-large``.
        name: the name recorded in manifests (default ``openai:<model>``).
        dimensions: requested output size (the paper: 768); default: the model's full size.
        max_tokens: per-text truncation, at most 8,191.
        api_key: default ``OPENAI_API_KEY``.
        base_url: default ``OPENAI_BASE_URL`` or https://api.openai.com/v1.
        timeout: seconds per HTTP request.
        max_retries: retries of a failing request before :class:`EmbeddingRequestError`.
        backoff: first retry wait in seconds (doubled each retry, with jitter, capped at ``max_backoff``).
        request_token_limit, max_inputs: packing limits of one request.
        tokenizer: ``auto``, ``tiktoken`` or ``approx`` (see :class:`TokenCounter`).

    Raises:
        EncoderError: no API key.
    """

    def __init__(
        self,
        model: str,
        *,
        name: str | None = None,
        dimensions: int | None = None,
        max_tokens: int | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 6,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        request_token_limit: int = REQUEST_TOKEN_LIMIT,
        max_inputs: int = MAX_INPUTS,
        tokenizer: Literal["auto", "tiktoken", "approx"] = "auto",
    ) -> None:
        if not model:
            raise EncoderError("openai: needs a model name, e.g. openai:text-embedding-3-large")
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY")
        if not self.api_key:
            raise EncoderError(
                f"encoder openai:{model} needs an API key: set OPENAI_API_KEY (and OPENAI_BASE_URL for an "
                "OpenAI-compatible server)"
            )
        self.model = model
        self.name = name or f"openai:{model}"
        self.dimensions = dimensions
        self.max_tokens = min(max_tokens or MODEL_TOKEN_LIMIT, MODEL_TOKEN_LIMIT)
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.request_token_limit = request_token_limit
        self.max_inputs = max_inputs
        self.tokens = TokenCounter(model, tokenizer)
        self._dim = dimensions or KNOWN_DIMS.get(model)
        self.requests = 0  # HTTP requests sent, retries included

    @property
    def dim(self) -> int:
        """Vector size; for a model of unknown size one short probe request finds it."""
        if self._dim is None:
            self._dim = int(self._request_with_retries(["dimension probe"], 0).shape[1])
        return self._dim

    def fingerprint(self) -> dict[str, Any]:
        return {
            "encoder": self.name,
            "model": self.model,
            "revision": None,
            "pooling": "api",
            "normalized": True,
            "max_tokens": self.max_tokens,
            "dim": self.dim,
            "dimensions": self.dimensions,
            "tokenizer": self.tokens.kind,
        }

    def encode(self, texts: list[str], batch_size: int = 64, progress: Progress = None) -> np.ndarray:
        """Vectors of ``texts``; ``batch_size`` is ignored (requests are packed by token count).

        Raises:
            EmbeddingRequestError: a request failed after its retries (nothing is zero-filled).
        """
        cut = [self.tokens.truncate(t, self.max_tokens) for t in texts]
        truncated = sum(1 for (short, _), t in zip(cut, texts) if short is not t)
        if truncated:
            log.info(
                "%s: %d of %d texts truncated to %d tokens", self.name, truncated, len(texts), self.max_tokens
            )
        inputs, counts = [c[0] for c in cut], [c[1] for c in cut]
        out = np.empty((len(texts), self.dim), dtype=np.float32)  # (N, D)
        for start, stop in pack_requests(counts, self.request_token_limit, self.max_inputs):
            out[start:stop] = self._request_with_retries(inputs[start:stop], start)
            if progress is not None:
                progress(stop - start)
        return out

    def _request_with_retries(self, texts: list[str], first: int) -> np.ndarray:
        last: _Retryable | None = None
        for attempt in range(self.max_retries + 1):
            try:
                return self._post(texts)
            except _Retryable as exc:
                last = exc
                if attempt == self.max_retries:
                    break
                if exc.retry_after is not None:
                    delay = exc.retry_after
                else:
                    delay = min(self.max_backoff, self.backoff * 2**attempt) * _jitter.uniform(0.5, 1.0)
                log.warning(
                    "%s: request for texts %d..%d failed (%s); retry %d/%d in %.2fs",
                    self.name,
                    first,
                    first + len(texts) - 1,
                    exc,
                    attempt + 1,
                    self.max_retries,
                    delay,
                )
                time.sleep(delay)
        raise EmbeddingRequestError(
            f"{self.name}: embedding texts {first}..{first + len(texts) - 1} ({len(texts)} texts, first "
            f"{texts[0][:60]!r}) failed after {self.max_retries + 1} attempts; last error: {last}. No vector "
            "was stored for them (the reference would have written zero vectors)."
        )

    def _post(self, texts: list[str]) -> np.ndarray:
        """One HTTP request: (len(texts), D) vectors; raises _Retryable for transient failures."""
        body: dict[str, Any] = {"model": self.model, "input": texts, "encoding_format": "float"}
        if self.dimensions:
            body["dimensions"] = self.dimensions
        url = f"{self.base_url}/embeddings"
        request = urllib.request.Request(
            url,
            data=json.dumps(body).encode("utf-8"),
            headers={"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"},
            method="POST",
        )
        self.requests += 1
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = _error_detail(exc)
            if exc.code in (408, 409, 429) or exc.code >= 500:
                raise _Retryable(f"HTTP {exc.code}: {detail}", _retry_after(exc.headers)) from None
            raise EmbeddingRequestError(f"{url}: HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as exc:
            raise _Retryable(f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}") from None
        except ValueError as exc:  # a body that is not JSON: treat as transient
            raise _Retryable(f"response is not JSON ({exc})") from None
        return self._parse(payload, len(texts), url)

    def _parse(self, payload: Any, n: int, url: str) -> np.ndarray:
        try:
            rows = sorted(payload["data"], key=lambda r: r["index"])
            vectors = np.asarray([r["embedding"] for r in rows], dtype=np.float32)  # (n, D)
        except (KeyError, TypeError, ValueError) as exc:
            raise EmbeddingRequestError(f"{url}: unexpected response ({exc}): {str(payload)[:200]}") from None
        if vectors.ndim != 2 or vectors.shape[0] != n:
            raise EmbeddingRequestError(f"{url}: asked for {n} vectors, got shape {vectors.shape}")
        if self._dim is not None and vectors.shape[1] != self._dim:
            raise EmbeddingRequestError(
                f"{url}: vectors have {vectors.shape[1]} dimensions, expected {self._dim}"
            )
        if not np.isfinite(vectors).all():
            raise EmbeddingRequestError(f"{url}: response holds NaN or infinite values")
        return vectors
