"""Issue 16: a fusion registered in one module (``concat_fusion``, fusion ``plugin-concat``) is accepted by the config,
trained, served (items added by text included) and listed in the error of an unknown fusion."""

from __future__ import annotations

import logging

import pytest

from hstu_blair.config import load_config
from hstu_blair.errors import ConfigError
from hstu_blair.recipes.train import train
from hstu_blair.serving.recommender import Recommender, fusions_for_new_items
from tests.conftest import HashEncoder, tiny_overrides
from tests.models import concat_fusion


def test_a_fusion_registered_in_one_module_trains_and_serves(tiny_dataset, tiny_text_store, tmp_path, caplog):
    assert concat_fusion.SPEC.name == "plugin-concat"
    with pytest.raises(ConfigError, match=r"unknown fusion 'nope'; valid fusions: .*residual, plugin-concat"):
        load_config(None, ["model.fusion=nope"])
    with pytest.raises(ConfigError, match="valid: id_min_count, id_dropout, scale"):
        load_config(None, ["model.fusion=plugin-concat", "model.fusion_options.width=3"])
    with pytest.raises(ConfigError, match="scale must be > 0"):
        load_config(None, ["model.fusion=plugin-concat", "model.fusion_options.scale=0"])
    assert "plugin-concat" in fusions_for_new_items()  # it declares it can, with ID dropout

    overrides = tiny_overrides(
        tiny_dataset,
        tmp_path,
        **{
            "model.fusion": "plugin-concat",
            "model.fusion_options.id_dropout": 0.2,
            "model.fusion_options.scale": 0.5,
            "text.embeddings": str(tiny_text_store),
            "train.epochs": 2,
        },
    )
    result = train(load_config(None, overrides), run_dir=tmp_path / "run", progress=False)
    assert result.metrics["hr@10"] > 0.0

    rec = Recommender.load(result.run_dir, encoder=HashEncoder(), persist=False)
    assert rec.fusion == "plugin-concat" and rec.run.arch.fusion_options["scale"] == 0.5
    assert rec.model.items.ranks_items_without_id_row
    assert len(rec.recommend(["i1", "i2", "i3"], k=5)) == 5
    with caplog.at_level(logging.WARNING):
        rec.add_item("new-1", text="item number 7 in group 2")
    assert "not trained to rank items without an ID part" not in caplog.text  # it declared it is
    assert rec.model.items.fusion.ids.weight[-1].abs().max() == 0.0  # no ID part
    listed = rec.recommend(["i1", "i2", "i3"], k=rec.num_items)
    assert "new-1" in {r.item_id for r in listed}
