"""``model.fusion`` and ``model.fusion_options``: checked against the fusion registry, set from TOML
or ``--set``, recorded and re-read, and the pre-``fusion_options`` keys still read."""

from __future__ import annotations

from pathlib import Path

import pytest

from hstu_blair.config import dump_config, load_config
from hstu_blair.errors import ConfigError
from hstu_blair.models.fusions import fusion_names


def test_options_from_a_toml_table_and_from_set(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[model]\nfusion = "sum"\n\n[model.fusion_options]\ntext_rank = 64\n')
    config = load_config(path, ["model.fusion_options.id_min_count=5", "model.fusion_options.id_dropout=0.1"])
    assert config.model.fusion == "sum"
    assert config.model.fusion_options == {"text_rank": 64, "id_min_count": 5, "id_dropout": 0.1}
    cli_only = load_config(None, ["model.fusion=sum", "model.fusion_options.text_rank=64"])
    assert cli_only.model.fusion_options == {"text_rank": 64}


def test_dumped_config_reads_back_the_same(tmp_path):
    config = load_config(None, ["model.fusion=residual", "model.fusion_options.text_whiten=false"])
    path = tmp_path / "config.toml"
    path.write_text(dump_config(config))
    assert load_config(path).model == config.model
    empty = load_config(None, ["model.fusion=gated"])
    path.write_text(dump_config(empty))
    assert load_config(path).model.fusion_options == {}


def test_unknown_fusion_lists_the_registry():
    with pytest.raises(ConfigError, match="unknown fusion 'concat'") as info:
        load_config(None, ["model.fusion=concat"])
    assert all(name in str(info.value) for name in fusion_names())


def test_unknown_option_lists_the_valid_ones_and_bad_values_are_named():
    with pytest.raises(
        ConfigError,
        match=r"unknown option\(s\) whiten .*valid: id_min_count, id_dropout, text_rank, text_whiten, text_scale",
    ):
        load_config(None, ["model.fusion=sum", "model.fusion_options.whiten=false"])
    with pytest.raises(ConfigError, match="valid: none"):
        load_config(None, ["model.fusion=text", "model.fusion_options.id_dropout=0.1"])
    with pytest.raises(ConfigError, match=r"model.fusion_options.id_dropout must be in \[0, 1\), got 1.5"):
        load_config(None, ["model.fusion=gated", "model.fusion_options.id_dropout=1.5"])
    with pytest.raises(ConfigError, match="model.fusion_options.id_min_count: expected int"):
        load_config(None, ["model.fusion=sum", "model.fusion_options.id_min_count=2.5"])
    with pytest.raises(ConfigError, match="model.fusion_options.text_rank: expected int, got True"):
        load_config(None, ["model.fusion=sum", "model.fusion_options.text_rank=true"])
    with pytest.raises(ConfigError, match="fusion_options: expected a table"):
        load_config(None, ["model.fusion_options=3"])


def test_legacy_model_keys_are_the_residual_options(tmp_path):
    """Configs (and every recorded config.toml) written before fusion_options held the residual
    fusion's options under [model]."""
    path = tmp_path / "old.toml"
    path.write_text('[model]\nfusion = "residual"\nid_dropout = 0.2\ntext_rank = 32\ntext_whiten = false\n')
    options = load_config(path).model.fusion_options
    assert options == {"id_dropout": 0.2, "text_rank": 32, "text_whiten": False}
    assert load_config(None, ["model.fusion=residual", "model.id_dropout=0.3"]).model.fusion_options == {
        "id_dropout": 0.3
    }
    # an old gated run recorded the (ignored) residual defaults: they are dropped, as they had no effect
    path.write_text('[model]\nfusion = "gated"\nid_dropout = 0.1\ntext_rank = 64\ntext_whiten = true\n')
    assert load_config(path).model.fusion_options == {}
    # a non-default value for another fusion would have been ignored silently: now it says where it goes
    with pytest.raises(
        ConfigError,
        match="model.id_dropout is a fusion option now: write it as model.fusion_options.id_dropout",
    ):
        load_config(None, ["model.fusion=sum", "model.id_dropout=0.2"])


@pytest.mark.parametrize("name", ["hstu-text-residual", "hstu-text", "hstu-text-sum", "hstu-text-gated"])
def test_shipped_configs_load(name):
    root = Path(__file__).resolve().parents[1] / "configs"
    for dataset in (
        "ml-100k",
        "ml-latest-small",
        "xwines",
        "lastfm",
        "yelp",
        "amazon-mini",
        "sports",
        "scientific",
        "games",
    ):
        config = load_config(root / dataset / f"{name}.toml")
        if name == "hstu-text-residual":
            assert config.model.fusion_options == {"id_dropout": 0.1, "text_rank": 64}
        if name == "hstu-text":  # the default text model (docs/results.md section 0)
            assert (config.model.fusion, config.model.fusion_options) == (
                "sum",
                {"text_rank": 64, "id_dropout": 0.1},
            )
