"""init-config: a starting config from a prepared dataset's shape, every value with its reason."""

from __future__ import annotations

from hstu_blair._compat import tomllib
from hstu_blair.cli import main
from hstu_blair.config import load_config
from hstu_blair.data.dataset import SequenceData
from hstu_blair.recipes.init_config import FULL_SOFTMAX_MAX_ITEMS, DataShape, choose, starting_config
from hstu_blair.recipes.train import train


def _shape(**changes) -> DataShape:
    base = dict(
        name="x",
        users=1000,
        items=500,
        interactions=9000,
        length_p50=6,
        length_p99=13,
        per_item_median=9,
        text_share=1.0,
        order_only=True,
    )
    return DataShape(**{**base, **changes})


def _values(choices) -> dict[str, object]:
    return {f"{c.section}.{c.key}": c.value for c in choices}


def test_history_length_follows_the_90th_percentile():
    assert _values(choose(_shape(length_p99=13)))["data.max_len"] == 20
    assert _values(choose(_shape(length_p99=45)))["data.max_len"] == 50
    assert _values(choose(_shape(length_p99=900)))["data.max_len"] == 200


def test_text_fusion_only_when_items_have_text():
    assert _values(choose(_shape(text_share=0.99)))["model.fusion"] == "sum"
    without = _values(choose(_shape(text_share=0.0)))
    assert without["model.fusion"] == "id" and "model.fusion_options.text_rank" not in without


def test_every_value_says_why_and_the_file_loads(tiny_dataset, tmp_path):
    text = starting_config(tiny_dataset)
    shape = DataShape.of(SequenceData.load(tiny_dataset))
    assert shape.users == 64 and shape.text_share == 1.0
    raw = tomllib.loads(text)
    assert raw["data"]["path"] == str(tiny_dataset)
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "name", "out_dir", "path")):
            assert "  # " in line, line  # a reason beside every choice
    out = tmp_path / "start.toml"
    assert main(["init-config", str(tiny_dataset), "--out", str(out)]) == 0
    config = load_config(out, [f'out_dir="{tmp_path}"', "train.epochs=1", "train.threads=1"])
    assert config.model.fusion == "sum"


def test_the_written_config_trains(tiny_dataset, tmp_path, tiny_text_store):
    out = tmp_path / "start.toml"
    main(["init-config", str(tiny_dataset), "--out", str(out)])
    config = load_config(
        out,
        [
            f'out_dir="{tmp_path}"',
            "train.epochs=2",
            "train.threads=1",
            f'text.embeddings="{tiny_text_store}"',
        ],
    )
    result = train(config, run_dir=tmp_path / "run", progress=False)
    assert result.metrics["n_users"] == 64


def test_full_softmax_up_to_the_catalogue_size_limit():
    small = _values(choose(_shape(items=FULL_SOFTMAX_MAX_ITEMS)))
    assert small["train.negatives"] == "all" and "train.num_negatives" not in small
    large = _values(choose(_shape(items=FULL_SOFTMAX_MAX_ITEMS + 1)))
    assert large["train.negatives"] == "per-row" and large["train.num_negatives"] == 128
