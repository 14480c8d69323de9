"""Fusions of other packages, found through the ``hstu_blair.fusions`` entry point group: a tiny
distribution (a ``.dist-info`` with ``entry_points.txt``) put on ``sys.path`` declares one, and the
registry, the config and the CLI's fusion list accept it; a broken plugin is skipped."""

from __future__ import annotations

import logging
import textwrap

from hstu_blair.cli import main
from hstu_blair.config import load_config
from hstu_blair.models.fusions import ENTRY_POINT_GROUP, FUSIONS, get_fusion

PLUGIN = """
from hstu_blair.models.fusions import FusionSpec
from hstu_blair.models.fusions.text import TextFusion

SPEC = FusionSpec(
    name="plugin-text-copy",
    module=TextFusion,
    summary="text only, declared by another package",
    uses_text=True,
    has_id_table=False,
    ranks_items_without_id_row=True,
)
"""


def _distribution(root, entries: str) -> None:
    info = root / "fake_fusion_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-fusion-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n" + textwrap.dedent(entries))


def test_a_fusion_declared_by_another_package_is_found(tmp_path, monkeypatch, capsys, caplog):
    (tmp_path / "fake_fusion_plugin.py").write_text(PLUGIN)
    _distribution(
        tmp_path,
        """
        plugin-text-copy = fake_fusion_plugin:SPEC
        plugin-broken = no_such_module_anywhere:SPEC
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with caplog.at_level(logging.WARNING):
            spec = get_fusion("plugin-text-copy")  # not registered yet: the registry looks again
        assert spec.uses_text and not spec.has_id_table and spec.ranks_without_id_row(spec.make_options())
        assert "plugin-broken" in caplog.text and "not loaded" in caplog.text
        assert load_config(None, ["model.fusion=plugin-text-copy"]).model.fusion == "plugin-text-copy"
        assert main(["fusions"]) == 0 and "plugin-text-copy" in capsys.readouterr().out
    finally:
        FUSIONS.pop("plugin-text-copy", None)
