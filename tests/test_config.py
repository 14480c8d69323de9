"""The run config: types checked, overrides, legacy keys, the reference switch, TOML dates."""

from __future__ import annotations

import pytest

from hstu_blair.config import REFERENCE_OVERRIDES, dump_config, load_config
from hstu_blair.errors import ConfigError


def test_defaults_and_typed_overrides(tmp_path):
    config = load_config(None, ["train.lr=3e-4", 'model.fusion="residual"', "data.cutoff=0.9"])
    assert config.train.lr == 3e-4 and config.model.fusion == "residual" and config.data.cutoff == 0.9
    assert config.eval.exclude == "history"  # evaluation measures what the service does
    with pytest.raises(ConfigError, match="learning_rate"):
        load_config(None, ["train.learning_rate=1"])
    with pytest.raises(ConfigError, match="not one of"):
        load_config(None, ['eval.exclude="seen"'])
    with pytest.raises(ConfigError, match="integer"):
        load_config(None, ["train.epochs=1.5"])


def test_toml_dates_become_iso_strings(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[data]\nprotocol = "temporal"\ncutoff = 2021-06-01\n')
    config = load_config(path)
    assert config.data.cutoff == "2021-06-01"
    assert load_config(None, ["data.cutoff=2021-06-01"]).data.cutoff == "2021-06-01"
    assert 'cutoff = "2021-06-01"' in dump_config(config)


def test_legacy_mask_history_is_read_as_exclude(tmp_path):
    path = tmp_path / "old.toml"
    path.write_text("[eval]\nmask_history = true\n")
    assert load_config(path).eval.exclude == "window"  # what 0.1's mask_history meant
    path.write_text("[eval]\nmask_history = false\n")
    assert load_config(path).eval.exclude == "none"


def test_reference_switch():
    config = load_config(None, reference=True)
    assert config.data.protocol == "reference" and config.data.time_unit == "source"
    assert config.train.negatives == "per-position" and not config.train.bucket_by_length
    assert config.eval.exclude == "window" and config.eval.reference_ranks and config.train.patience == 0
    assert len(REFERENCE_OVERRIDES) == 7
