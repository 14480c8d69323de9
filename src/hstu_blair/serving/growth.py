"""``CatalogueGrowth``: items added at run time, through the model's text path.

An added item is embedded with the run's text encoder, committed to the run's store, then applied
(appended to the catalogue, to the model's text matrix and to the item vectors). Every process
serving the same store applies the stored items in store order, so all give the new items the same
indices; :meth:`CatalogueGrowth.catch_up` applies what other processes stored.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from hstu_blair.models.fusions import FUSIONS
from hstu_blair.run.store import DamagedRecord, DuplicateIdsError, ItemRecord, StoreError
from hstu_blair.serving.catalogue import Catalogue
from hstu_blair.serving.errors import DuplicateItemError, ServingError
from hstu_blair.serving.ids import check_unicode, same_id
from hstu_blair.serving.scorer import Scorer
from hstu_blair.serving.store_link import StoreLink
from hstu_blair.text.encoders import TextEncoder
from hstu_blair.text.registry import build_text_encoder, encoder_for_store

_LOG = logging.getLogger(__name__)


def fusions_for_new_items() -> str:
    """The registered fusions that can add items by text, those trained for it first (for messages)."""
    trained = [s.name for s in FUSIONS.values() if s.uses_text and s.ranks_without_id_row(s.make_options())]
    others = [s.name for s in FUSIONS.values() if s.uses_text and s.name not in trained]
    return ", ".join(trained) + " (trained for it)" + (f", or {', '.join(others)}" if others else "")


def id_only_error(fusion: str) -> ServingError:
    """The error of adding an item to a run without a text path."""
    return ServingError(
        f"this run's model uses fusion {fusion!r} (ID-only): it has no text path, so items cannot "
        f"be added at run time; train with model.fusion = {fusions_for_new_items()}"
    )


def build_run_encoder(text_store: dict[str, Any], device: str) -> TextEncoder:
    """The encoder that made a run's text matrix: rebuilt (and checked) from the store's recorded
    fingerprint, else built by the encoder name the store recorded."""
    if text_store.get("fingerprint"):
        return encoder_for_store(text_store["path"], device=device)
    return build_text_encoder(text_store["encoder"], device=device)


def batch_sizes(records: Sequence[ItemRecord]) -> list[int]:
    """Sizes of the runs of consecutive records added by one call (same ``batch``)."""
    sizes: list[int] = []
    for i, r in enumerate(records):
        if i and r.batch == records[i - 1].batch and r.batch:
            sizes[-1] += 1
        else:
            sizes.append(1)
    return sizes


class CatalogueGrowth:
    """Adds items to a catalogue and its model, from a text or from the store.

    Args:
        catalogue: the items served.
        scorer: the model and its item vectors (its ``lock`` guards every change).
        link: the run's store.
        info: the served version's ``model.json`` (its ``item_ids``, ``text_store``, version).
        version: the served model version (for messages).
        encoder: the text encoder (default: the one that wrote the run's text store, on first use).
    """

    def __init__(
        self,
        catalogue: Catalogue,
        scorer: Scorer,
        link: StoreLink,
        info: dict[str, Any],
        version: int,
        encoder: TextEncoder | None = None,
    ) -> None:
        self.catalogue = catalogue
        self.scorer = scorer
        self.link = link
        self.info = info
        self.version = version
        self.encoder = encoder
        self._warned = False

    @property
    def items(self) -> Any:
        """The model's item representation (its fusion and text matrix)."""
        return self.scorer.model.items

    @property
    def can_add_items(self) -> bool:
        """Whether the model's fusion has a text path."""
        return self.items.text is not None

    @property
    def d_text(self) -> int:
        assert self.items.text is not None
        return int(self.items.text.shape[1])

    def load_stored(self) -> None:
        """Apply every stored item; damaged ones are moved to ``set_aside`` (when writable)."""
        self.link.move_aside(self.catch_up())

    def catch_up(self) -> list[tuple[int, DamagedRecord]]:
        """Apply the items stored after the last read (call under ``scorer.lock``); returns the
        damaged ones."""
        if not self.can_add_items:
            return []
        good, damaged = self.link.read_new_items(self.d_text, self.catalogue.__contains__)
        self.apply(good)
        return damaged

    def add(self, item_ids: Sequence[str], texts: Sequence[str], titles: Sequence[str] | None) -> None:
        """Add items all or none (one encoder call, one store transaction); see
        :meth:`Recommender.add_item`. Titles default to ``""``; ids are made canonical first."""
        titles = [t or "" for t in titles] if titles is not None else [""] * len(item_ids)
        if not len(item_ids) == len(texts) == len(titles):
            raise ServingError(f"got {len(item_ids)} ids, {len(texts)} texts and {len(titles)} titles")
        item_ids = [same_id(str(r)) for r in item_ids]
        if not self.can_add_items:
            raise id_only_error(self.items.fusion_name)
        self.catalogue.check_new(item_ids)
        self._warn_once()
        if not all(isinstance(t, str) and t.strip() for t in texts):
            raise ServingError("every new item needs a non-empty text")
        for what, values in (("item id", item_ids), ("text", texts), ("title", titles)):
            check_unicode(what, values)
        self.link.check_writable()  # before encoding
        rows = self._embed(list(texts))  # (m, d_text), slow: outside the lock
        records = [ItemRecord(*item, rows[i]) for i, item in enumerate(zip(item_ids, titles, texts))]
        with self.scorer.lock:
            self.catch_up()  # ids other processes took since the last request are refused
            self.catalogue.check_new(item_ids)
            try:
                self.link.store.add_items(records)
            except DuplicateIdsError as exc:  # taken since the catch-up (another process)
                self.catch_up()
                raise DuplicateItemError(exc.ids) from None
            except StoreError as exc:
                raise self.link.write_failure(exc) from exc
            self.catch_up()  # applies ours, after anything committed before them

    def _warn_once(self) -> None:
        if self.items.ranks_items_without_id_row or self._warned:
            return
        self._warned = True
        _LOG.warning(
            "this run's %r fusion was not trained to rank items without an ID part: added items "
            "are ranked by their text with no ID part; fusions trained for it: %s "
            "(docs/results.md, cold-start items)",
            self.items.fusion_name,
            fusions_for_new_items(),
        )

    def load_encoder(self) -> None:
        """Build the run's text encoder now (the server does it at start, so that the first added
        item does not wait for it); nothing for a run that cannot add items or has one already."""
        if self.encoder is None and self.can_add_items:
            self.encoder = build_run_encoder(self.info["text_store"], str(self.scorer.device))

    def _embed(self, texts: list[str]) -> np.ndarray:
        """(m, d_text) float32 text vectors, checked."""
        self.load_encoder()
        assert self.encoder is not None
        rows = np.asarray(self.encoder.encode(texts, batch_size=32), dtype=np.float32)
        if rows.shape != (len(texts), self.d_text):
            raise ServingError(
                f"the encoder returned vectors of shape {rows.shape}; expected ({len(texts)}, {self.d_text}): "
                "use the encoder the run was trained with"
            )
        if not np.isfinite(rows).all():
            raise ServingError("the text encoder returned non-finite values (NaN or inf)")
        return rows

    def apply(self, records: list[ItemRecord]) -> None:
        """Append stored items to the catalogue and, unless the served version was trained with
        them (then they are in its model already, in store order), to the model (under the lock)."""
        if not records:
            return
        first = len(self.catalogue) + 1
        in_model = max(0, min(len(records), self.items.num_items + 1 - first))
        if in_model:
            expected = self.info["item_ids"][first - 1 : first - 1 + in_model]
            if [r.item_id for r in records[:in_model]] != expected:
                raise StoreError(
                    f"the store {self.link.store.describe()} does not hold the added items model version "
                    f"{self.version} was trained with, in its order; serve it with the store it was trained with"
                )
        grown = records[in_model:]
        if grown:
            rows = torch.from_numpy(np.stack([r.vector for r in grown]))  # (m, d_text)
            self.scorer.grow(rows, batch_sizes(grown))
        self.catalogue.append(records)
