"""Text folded for item search: case- and accent-insensitive (``creme brulee`` finds ``Crème brûlée``)."""

from __future__ import annotations

import unicodedata


def fold(text: str) -> str:
    """``text`` for matching: Unicode NFKD, combining marks dropped, casefolded (``ß`` -> ``ss``,
    ``ﬁ`` -> ``fi``, ``É`` -> ``e``), whitespace collapsed."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(unicodedata.normalize("NFKC", bare.casefold()).split())
