"""``Catalogue``: the items a recommender can name, external id <-> item index, with titles and
texts; the trained items first, then the items added at run time, in the order added."""

from __future__ import annotations

from collections.abc import Sequence

from hstu_blair.errors import UnknownIdError
from hstu_blair.run.store import ItemRecord
from hstu_blair.serving.errors import DuplicateItemError, ServingError
from hstu_blair.serving.ids import check_new_id, same_id
from hstu_blair.serving.queries import Recommendation, Recommendations
from hstu_blair.serving.search_text import fold


class Catalogue:
    """Item ids, titles and texts by item index (index 0 is padding).

    Args:
        item_ids, titles, texts: the trained items, in index order (item index i + 1).
    """

    def __init__(self, item_ids: Sequence[str], titles: Sequence[str], texts: Sequence[str]) -> None:
        self.item_ids: list[str] = ["", *item_ids]
        self.titles: list[str] = ["", *titles]
        self.texts: list[str] = ["", *texts]
        self._index: dict[str, int] = {item_id: i for i, item_id in enumerate(self.item_ids) if i}
        self._folded_titles = [fold(t) for t in self.titles]
        self.trained = len(item_ids)
        """Items of the trained catalogue (the rest were added at run time)."""

    def __len__(self) -> int:
        return len(self.item_ids) - 1

    def __contains__(self, item_id: object) -> bool:
        return same_id(str(item_id)) in self._index

    def index_of(self, item_id: str) -> int | None:
        """The item index of ``item_id`` (None: not in the catalogue)."""
        return self._index.get(same_id(item_id))

    def indices(self, item_ids: Sequence[str], skip_unknown: bool) -> tuple[list[int], list[int], list[str]]:
        """Indices of the known item ids, their positions in ``item_ids``, and the unknown item ids.

        Raises:
            UnknownIdError: unknown ids, unless ``skip_unknown``.
        """
        known, positions, unknown = [], [], []
        for pos, item_id in enumerate(item_ids):
            idx = self._index.get(same_id(str(item_id)))
            if idx is None:
                unknown.append(str(item_id))
            else:
                known.append(idx)
                positions.append(pos)
        if unknown and not skip_unknown:
            raise UnknownIdError("item", unknown)
        return known, positions, unknown

    def item(self, idx: int) -> dict[str, str]:
        """``{"item_id", "title", "text"}`` of item index ``idx``."""
        return {"item_id": self.item_ids[idx], "title": self.titles[idx], "text": self.texts[idx]}

    def search(self, query: str, limit: int = 20) -> list[dict[str, str]]:
        """Items whose title or item id contains ``query`` (case- and accent-insensitive, see
        :func:`~hstu_blair.serving.search_text.fold`), title prefix matches
        first, then catalogue order; each ``{"item_id", "title"}``."""
        q = fold(query)
        prefix, inside = [], []
        for i in range(1, len(self.item_ids)):
            title, item_id = self._folded_titles[i], self.item_ids[i].casefold()
            if title.startswith(q) or item_id == q:
                prefix.append(i)
            elif q in title or q in item_id:
                inside.append(i)
            if len(prefix) >= limit:
                break
        return [{"item_id": self.item_ids[i], "title": self.titles[i]} for i in (prefix + inside)[:limit]]

    def is_same_item(self, item_id: str, text: str, title: str = "") -> bool:
        """Whether ``item_id`` is in the catalogue with this text and title."""
        idx = self._index.get(same_id(item_id))
        return idx is not None and self.texts[idx] == text and self.titles[idx] == (title or item_id)

    def check_new(self, item_ids: list[str]) -> None:
        """Raises unless ``item_ids`` are distinct new ids in canonical form.

        Raises:
            ServingError: an id not in canonical form, or the same id twice.
            DuplicateItemError: ids already in the catalogue.
        """
        for item_id in item_ids:
            check_new_id(item_id)
        if len(set(item_ids)) != len(item_ids):
            raise ServingError(f"item ids must be distinct, got {item_ids}")
        taken = [r for r in item_ids if r in self._index]
        if taken:
            raise DuplicateItemError(taken)

    def append(self, records: Sequence[ItemRecord]) -> None:
        """Add items after the last one (their title defaults to their id)."""
        for r in records:
            title = r.title or r.item_id
            self._index[r.item_id] = len(self.item_ids)
            self.item_ids.append(r.item_id)
            self.texts.append(r.text)
            self.titles.append(title)
            self._folded_titles.append(fold(title))

    def results(
        self, values: list[float], indices: list[int], k: int, skipped: Sequence[str] = ()
    ) -> Recommendations:
        """The first ``k`` of a top-k search's (score, index) pairs as recommendations (padding left out)."""
        items = [
            Recommendation(self.item_ids[i], float(v), self.titles[i])
            for v, i in zip(values[:k], indices[:k])
            if i != 0
        ]
        return Recommendations(items, skipped)
