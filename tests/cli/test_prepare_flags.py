"""``hstu-blair prepare``'s flags are made from PrepareOptions: one flag per field, the Literal's
values as choices, the docstring as help; flags given reach the options, others keep their defaults."""

from __future__ import annotations

import argparse
import typing

from hstu_blair.cli import data as cli_data
from hstu_blair.data.options import PrepareOptions


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    cli_data.add_prepare(parser.add_subparsers())
    return parser


def _prepare_actions() -> dict[str, argparse.Action]:
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a for a in sub.choices["prepare"]._actions}


def _literal_values(hint: object) -> tuple[object, ...]:
    """The values of a ``Literal[...]`` hint, or of the ``Literal`` inside ``Literal[...] | None``."""
    if typing.get_origin(hint) is typing.Literal:
        return typing.get_args(hint)
    return next((_literal_values(a) for a in typing.get_args(hint) if _literal_values(a)), ())


def test_every_option_has_a_flag_with_its_choices_and_help():
    actions = _prepare_actions()
    hints = typing.get_type_hints(PrepareOptions)
    for option in PrepareOptions.describe():
        action = actions[option.name]
        assert tuple(action.choices or ()) == _literal_values(hints[option.name]), option.name
        assert action.help and action.default is None, option.name
    assert actions["kcore_mode"].choices == ["iterative", "single-pass", "users-only"]
    assert "--no-tag-text" in actions["tag_text"].option_strings
    assert "(default: iterative)" in actions["kcore_mode"].help


def test_flags_reach_the_options():
    args = _parser().parse_args(
        [
            "prepare",
            "generic",
            "--out",
            "o",
            "--kcore",
            "3",
            "--items-without-text",
            "keep",
            "--no-reviews",
            "--text-cols",
            "a",
            "b",
            "--interactions",
            "x.csv",
        ]
    )
    given = {
        k: v for k, v in vars(args).items() if k in PrepareOptions.__dataclass_fields__ and v is not None
    }
    options = PrepareOptions(**given)
    assert (options.kcore, options.items_without_text, options.with_reviews) == (3, "keep", False)
    assert options.text_columns == ["a", "b"] and str(options.interactions_file) == "x.csv"
    assert options.tie_order == "stable"
