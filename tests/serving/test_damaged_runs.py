"""Damaged model files of a run directory: one line naming the file, exit 2, checked before the
model is allocated (issue 17: tracebacks, and num_items = 5,000,000 cost 54 s and 4.5 GB).

Every case fails from ``Recommender.load`` with a ``DataFormatError`` (a ``HstuBlairError``) and
from the CLI (``recommend``, ``serve``, ``evaluate``) with exit 2 and one line on stderr. Bounds for
the oversized ``num_items``: under 2 s and under 64 MB of growth."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from hstu_blair.cli import main
from hstu_blair.errors import DataFormatError, HstuBlairError
from hstu_blair.run.versions import commit_version, publish, staging_dir
from hstu_blair.serving.recommender import Recommender
from tests.conftest import HashEncoder
from tests.serving.rss import peak_rss_growth

MIB = 2**20


def _edit_info(run: Path, change: Callable[[dict], None]) -> Path:
    path = run / "model.json"
    info = json.loads(path.read_text())
    change(info)
    path.write_text(json.dumps(info))
    return path


def _weights(run: Path) -> Path:
    return run / "checkpoints" / "best.safetensors"


def _truncate(run: Path) -> Path:
    path = _weights(run)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _header_2_40(run: Path) -> Path:
    path = _weights(run)
    data = path.read_bytes()
    path.write_bytes((2**40).to_bytes(8, "little") + data[8:])
    return path


def _wrong_shapes(run: Path) -> Path:
    """The weights of another architecture: d_model changed in model.json."""
    _edit_info(run, lambda i: i["architecture"].update(d_model=i["architecture"]["d_model"] * 2))
    return _weights(run)


CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "not JSON": (
        lambda r: (r / "model.json").write_text('{"format": "hstu-bl') and r / "model.json",
        "not JSON",
    ),
    "lacks architecture": (lambda r: _edit_info(r, lambda i: i.pop("architecture")), "'architecture'"),
    "wrong type": (
        lambda r: _edit_info(r, lambda i: i["architecture"].update(max_len="10")),
        "architecture.max_len",
    ),
    "wrong shapes": (_wrong_shapes, "needs"),
    "truncated weights": (_truncate, "truncated"),
    "empty weights": (lambda r: _weights(r).write_bytes(b"") or _weights(r), "empty"),
    "header length 2^40": (_header_2_40, "1099511627776"),
    "num_items 5,000,000": (
        lambda r: _edit_info(r, lambda i: i["architecture"].update(num_items=5_000_000)),
        "5000000 items, but item_ids lists",
    ),
    "num_items 10^12": (
        lambda r: _edit_info(r, lambda i: i["architecture"].update(num_items=10**12)),
        "architecture.num_items",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_damaged_model_files_fail_fast_with_one_line(case, id_run, copy_run, capsys):
    run = copy_run(id_run)
    damage, phrase = CASES[case]
    path = damage(run)
    with peak_rss_growth() as growth:
        start = time.perf_counter()
        with pytest.raises(DataFormatError) as caught:
            Recommender.load(run)
        seconds = time.perf_counter() - start
    message = str(caught.value)
    assert isinstance(caught.value, HstuBlairError)
    assert message.startswith(str(path)) and phrase in message and "\n" not in message, message
    assert seconds < 2 and growth[0] < 64 * MIB, (seconds, growth[0] / MIB)
    for argv in (
        ["recommend", str(run), "--user", "u1"],
        ["serve", str(run), "--port", "1"],
        ["evaluate", str(run)],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(path) in err and phrase in err, err


def test_the_weights_of_another_run_are_refused_by_name(id_run, text_run, copy_run):
    run = copy_run(id_run)
    (run / "checkpoints" / "best.safetensors").write_bytes(
        (text_run / "checkpoints" / "best.safetensors").read_bytes()
    )
    with pytest.raises(DataFormatError, match="unexpected items.fusion"):
        Recommender.load(run)


def test_the_served_version_is_checked(text_run, copy_run, capsys):
    """With versions (hstu-blair update), loading follows versions/current.json: a damaged file of
    the served version is one line naming that file; hstu-blair check names the same problem."""
    run = copy_run(text_run)
    staged = staging_dir(run, 1)
    shutil.copy(run / "model.json", staged / "model.json")
    shutil.copytree(run / "checkpoints", staged / "checkpoints")
    commit_version(run, staged, 1)
    publish(run, 1)
    assert Recommender.load(run, encoder=HashEncoder()).version == 1
    path = _truncate(run / "versions" / "1")
    with pytest.raises(DataFormatError) as caught:
        Recommender.load(run, encoder=HashEncoder())
    assert str(caught.value).startswith(str(path)) and "truncated" in str(caught.value)
    assert main(["check", str(run)]) == 2
    out = capsys.readouterr().out
    assert f"{path}: is truncated" in out, out
