"""Item search is case- and accent-insensitive (Unicode NFKD, combining marks dropped, casefold)."""

from __future__ import annotations

from hstu_blair.serving.catalogue import Catalogue
from hstu_blair.serving.search_text import fold


def test_fold():
    assert fold("  Crème   Brûlée ") == "creme brulee"
    assert fold("STRASSE") == fold("Straße") == "strasse"
    assert fold("ﬁlm Ångström") == "film angstrom"


def test_search_ignores_accents_and_case():
    cat = Catalogue(["a", "b", "c"], ["Crème brûlée", "Tarte Tatin", "La CRÈME de la crème"], ["", "", ""])
    assert [r["item_id"] for r in cat.search("creme brulee")] == ["a"]
    assert [r["item_id"] for r in cat.search("CREME")] == ["a", "c"]  # prefix match first
    assert [r["item_id"] for r in cat.search("Crème")] == ["a", "c"]
    assert cat.search("tatin")[0] == {"item_id": "b", "title": "Tarte Tatin"}
