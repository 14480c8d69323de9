"""Adding items to a served run: by a free text, or by fields composed into the text the way
``prepare`` composed the catalogue's (:func:`~hstu_blair.data.item_text.compose_item_text`, with the
``text_columns``, ``title_column`` and ``ascii_only`` the dataset's manifest records).

:class:`ItemWrites` is the part of :class:`~hstu_blair.serving.recommender.Recommender` that adds
items (a mixin over its ``run`` and ``growth``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import polars as pl

from hstu_blair.data.item_attributes import typed_attribute
from hstu_blair.data.item_text import compose_item_text, compose_item_title
from hstu_blair.serving.errors import ServingError
from hstu_blair.serving.ids import same_id

if TYPE_CHECKING:
    from hstu_blair.run.model_files import TrainedModel
    from hstu_blair.serving.attribute_sync import AttributeSync
    from hstu_blair.serving.catalogue import Catalogue
    from hstu_blair.serving.growth import CatalogueGrowth

TEXT_OPTIONS = ("text_columns", "title_column", "ascii_only")
"""The ``prepare`` options (in the dataset manifest's ``options``) that compose an item's text."""

Fields = Mapping[str, object]
"""An item's values by column name of the catalogue's items table (``{"name": ..., ...}``)."""


def text_options(manifest: Mapping[str, Any]) -> tuple[list[str], str | None, bool]:
    """``(text_columns, title_column, ascii_only)`` that ``prepare`` used for a dataset.

    Raises:
        ServingError: the dataset was not prepared from a generic items table, or its manifest
            predates these records (the missing ones named): add items by text instead.
    """
    source = manifest.get("source")
    if source != "generic":
        raise ServingError(
            f"items can be added by fields only to a run whose dataset was prepared from a generic "
            f"items table (this one's source is {source!r}, whose item text has its own rules); give text"
        )
    options = manifest.get("options") or {}
    missing = [name for name in TEXT_OPTIONS if name not in options]
    if missing or not options.get("text_columns"):
        raise ServingError(
            f"this run's dataset manifest does not record {', '.join(missing or ['text_columns'])} "
            "(prepared by an older hstu-blair): items cannot be added by fields; prepare the "
            "dataset again, or give text"
        )
    return list(options["text_columns"]), options["title_column"], bool(options["ascii_only"])


class ItemWrites:
    """Adding items at run time (by text or by fields); mixed into ``Recommender``."""

    run: TrainedModel
    growth: CatalogueGrowth

    if TYPE_CHECKING:

        def item(self, item_id: str) -> dict[str, str]: ...

        def sync(self) -> int: ...

        def update_item_attributes(self, item_id: str, values: Mapping[str, Any]) -> dict[str, Any]: ...

        attribute_sync: AttributeSync
        catalogue: Catalogue

    def compose_item(self, fields: Fields) -> tuple[str, str]:
        """``(text, title)`` of an item from its fields, as ``prepare`` made the catalogue's.

        Raises:
            ServingError: see :func:`text_options`; fields that are not a mapping of names, or give
                no text (the text columns are named).
        """
        columns, title_column, ascii_only = text_options(self.run.data.manifest)
        if not isinstance(fields, Mapping) or not all(isinstance(k, str) for k in fields):
            raise ServingError("fields must be a mapping of column names to values")
        text = compose_item_text(fields, columns, ascii_only)
        if not text.strip():
            raise ServingError(f"the fields give no text: none of the text columns {columns} has a value")
        return text, compose_item_title(fields, title_column)

    def field_attributes(self, fields: Fields) -> dict[str, Any]:
        """The attributes an item added by ``fields`` gets: every field that is not a text, title or
        id column (as ``prepare`` kept the catalogue's other columns), empty values left out.

        Raises:
            ServingError: a value that is not a scalar of its attribute's kind.
        """
        columns, title_column, _ = text_options(self.run.data.manifest)
        options = self.run.data.manifest.get("options") or {}
        skip = {*columns, title_column, options.get("item_id_column"), options.get("item_column")}
        values = {k: v for k, v in fields.items() if k not in skip and v is not None and v != ""}
        kinds = self.attribute_sync.attributes.kinds
        for name, value in values.items():  # text as a CSV cell: typed as prepare types the column
            if isinstance(value, str) and kinds.get(name, "string") != "string":
                typed = typed_attribute(pl.Series([value])).item()
                values[name] = value if isinstance(typed, str) else typed
        self.attribute_sync.attributes.check(values)
        return values

    def add_item(
        self, item_id: str, text: str | None = None, title: str = "", fields: Fields | None = None
    ) -> dict[str, str]:
        """Add an item at run time; it is recommendable (and usable in histories) at once.

        Give exactly one of ``text`` or ``fields``: with ``fields`` (e.g. ``{"name": ...,
        "description": ..., "category": ...}``) the text is composed as ``prepare`` composed the
        catalogue's (:meth:`compose_item`) and the title is the title column's (``title``, if given,
        wins). The text is embedded with the run's text encoder and goes through the model's text
        path (fusions with an ID table give the new item no ID part; a run whose fusion was not
        trained for such items, e.g. the paper's ``sum``, logs a warning on the first add). Unless
        the recommender was made with ``persist=False``, the item is committed to the run's store
        before this returns, so restarts and other processes serving the run keep it.

        Returns:
            The new item as :meth:`item` gives it.

        Raises:
            DuplicateItemError: the id is in the catalogue (perhaps added by another process).
            StoreWriteError: the store cannot be written (e.g. a read-only run directory).
            ServingError: the run is ID-only (fusion ``id``), the text is empty, neither or both
                of text and fields, or fields the run cannot compose (see :meth:`compose_item`).
        """
        self.add_items(
            [item_id],
            None if text is None else [text],
            [title],
            fields=None if fields is None else [fields],
        )
        return self.item(item_id)

    def add_items(
        self,
        item_ids: Sequence[str],
        texts: Sequence[str] | None = None,
        titles: Sequence[str] | None = None,
        fields: Sequence[Fields] | None = None,
    ) -> None:
        """Add several items at once (one encoder call, one durable write); see :meth:`add_item`.

        Exactly one of ``texts`` or ``fields`` (one per item). The items are added all or none, in
        one transaction after catching up with other processes; every process applies stored items
        in the store's order, so all give the new items the same indices."""
        if (texts is None) == (fields is None):
            raise ServingError("give exactly one of text or fields for the new items")
        titles = [t or "" for t in titles] if titles is not None else [""] * len(item_ids)
        attributes: list[dict[str, Any]] = []
        if fields is not None:
            composed = [self.compose_item(f) for f in fields]
            texts = [text for text, _ in composed]
            titles = [given or title for given, (_, title) in zip(titles, composed)]
            attributes = [self.field_attributes(f) for f in fields]  # checked before anything is written
        assert texts is not None
        if not len(item_ids) == len(texts) == len(titles):
            raise ServingError(f"got {len(item_ids)} ids, {len(texts)} texts and {len(titles)} titles")
        ids = [same_id(str(r)) for r in item_ids]
        self.growth.add(ids, texts, titles, fields)
        self.attribute_sync.catch_up(self.catalogue)  # the new items get (empty) attribute rows
        for item_id, values in zip(ids, attributes):
            if values:
                self.update_item_attributes(item_id, values)
