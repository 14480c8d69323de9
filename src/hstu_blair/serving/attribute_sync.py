"""``AttributeSync``: the items' attributes as one recommender serves them: the prepared dataset's
values, then every change stored in the run's store (by any process), applied in change order."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from hstu_blair.errors import UnknownIdError
from hstu_blair.run.store import StoreError
from hstu_blair.serving.catalogue import Catalogue
from hstu_blair.serving.errors import ServingError
from hstu_blair.serving.item_attributes import ItemAttributes
from hstu_blair.serving.store_link import StoreLink

_LOG = logging.getLogger(__name__)


class AttributeSync:
    """Keeps :class:`ItemAttributes` up to date with the store.

    Args:
        attributes: the dataset's attributes.
        link: the run's store as the recommender sees it.
    """

    def __init__(self, attributes: ItemAttributes, link: StoreLink) -> None:
        self.attributes = attributes
        self.link = link
        self.seq = 0  # the highest change seq applied
        self.head = 0  # the store's attribute head when last looked at
        self._lock = threading.Lock()

    def catch_up(self, catalogue: Catalogue) -> int:
        """Size the attributes to the catalogue, and apply the changes stored since the last call
        (one cheap query when there are none). Returns the number applied."""
        with self._lock:
            self.attributes.append(len(catalogue) - self.attributes.size)
            head = self.link.store.attribute_head()
            if head == self.head:
                return 0
            changes = self.link.store.attribute_changes(self.seq)
            applied = 0
            for change in changes:
                idx = catalogue.index_of(change.item_id)
                try:
                    if idx is not None:
                        self.attributes.set(idx, change.values)
                        applied += 1
                except ServingError as exc:
                    _LOG.warning("stored attributes of item %r not applied: %s", change.item_id, exc)
            self.seq = max([self.seq, *(c.seq for c in changes)])
            self.head = max(head, self.seq)
            return applied

    def update(self, catalogue: Catalogue, item_id: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """Merge ``values`` into an item's attributes (None removes one), durably in the store;
        returns the item's attributes now.

        Raises:
            UnknownIdError: the item is not in the catalogue.
            ServingError: a value that is not a scalar of its attribute's kind.
            StoreWriteError: the store cannot be written.
        """
        idx = catalogue.index_of(str(item_id))
        if idx is None:
            raise UnknownIdError("item", [str(item_id)])
        if not isinstance(values, Mapping):
            raise ServingError(f"attributes: expected an object of attribute values, got {values!r}")
        self.attributes.check(values)
        self.link.check_writable()
        try:
            self.link.store.update_attributes(catalogue.item_ids[idx], dict(values))
        except StoreError as exc:
            raise self.link.write_failure(exc) from None
        self.catch_up(catalogue)
        return self.attributes.get(idx)
