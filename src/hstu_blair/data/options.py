"""Options of ``prepare`` (a dataclass of plain values; the CLI and recipes fill it in)."""

from __future__ import annotations

import re
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Literal

DEFAULT_KCORE = {
    "amazon2023": 5,
    "steam": 5,
    "movielens": 0,
    "ml-latest-small": 0,
    "generic": 0,
    "xwines": 5,
    "lastfm-hetrec": 5,
    "yelp-taste": 0,
    "user-sequences": 0,
    "recbole": 0,
}

ItemsWithoutText = Literal["drop", "keep", "drop-missing"]
DEFAULT_ITEMS_WITHOUT_TEXT: dict[str, ItemsWithoutText] = {"user-sequences": "keep", "recbole": "keep"}
"""Sources whose ``items_without_text`` default is not ``drop``: published benchmark splits whose
items must all stay for their figures to be comparable."""

KcoreMode = Literal["iterative", "single-pass", "users-only"]
ItemUniverse = Literal["interacted", "before-user-drop", "catalogue"]
TieOrder = Literal["stable", "random", "reference"]

_REFERENCE_COMMON: dict[str, object] = dict(duplicates="keep", tie_order="reference")
REFERENCE_OPTIONS: dict[str, dict[str, object]] = {
    # HB AmazonDataProcessor (SPEC §1.3 steps 2-6, §7.2 item 2)
    "amazon2023": dict(
        kcore_mode="single-pass",
        item_universe="before-user-drop",
        ascii_only=True,
        text_style="reference",
        drop_first_data_row=True,
        items_without_text="drop-missing",
    ),
    # HB SteamDataProcessor (SPEC §1.3 Steam, §7.2 items 6-8): no item filter, no text cleaning
    "steam": dict(
        kcore_mode="users-only",
        steam_parse="reference",
        text_style="reference",
        items_without_text="drop-missing",
    ),
    # GR MovielensDataProcessor (SPEC §1.2): no filter, every movie of the movies file is a candidate
    "movielens": dict(item_universe="catalogue"),
    "ml-latest-small": dict(item_universe="catalogue"),
    # no reference preprocessing exists: the reference's general semantics (GR Amazon Books)
    "generic": dict(
        kcore_mode="single-pass", item_universe="before-user-drop", ascii_only=True, text_style="reference"
    ),
}
# the other real sources have no reference preprocessing either: the same general semantics
REFERENCE_OPTIONS.update(
    dict.fromkeys(
        ("xwines", "lastfm-hetrec", "yelp-taste", "user-sequences", "recbole"), REFERENCE_OPTIONS["generic"]
    )
)
"""Per source, what ``prepare --reference`` changes besides :data:`_REFERENCE_COMMON`."""


@dataclass
class PrepareOptions:
    """Options of ``prepare``; the defaults are ours, ``reference()`` gives the reference's.

    Attributes:
        kcore: minimum interactions per user and per item; ``None`` = the source's default
            (:data:`DEFAULT_KCORE`: 5 for Amazon, Steam, X-Wines and Last.fm, 0 = none for
            MovieLens, the published Yelp, user-sequences and recbole sets, and generic).
        kcore_mode: ``iterative`` (until stable), ``single-pass`` (the reference's Amazon filter:
            counts taken once, then users left with fewer than ``kcore`` dropped) or ``users-only``
            (the reference's Steam filter: users with fewer than ``kcore`` interactions dropped,
            no item filter).
        item_universe: which items are written to ``items.parquet`` (and so are candidates and
            negatives): ``interacted`` (items with a kept interaction; ours), ``before-user-drop``
            (also the items whose interactions all belonged to users dropped by the single-pass
            k-core's last step, the reference's Amazon id space) or ``catalogue`` (every item of the
            source's item table, with non-blank text when ``items_without_text="drop"``: e.g. every
            movie of a MovieLens movies file, the reference's MovieLens candidates). Items kept
            without interactions are in no sequence.
        tie_order: order of one user's interactions with equal timestamps: ``stable`` (file order),
            ``random`` (a random order drawn with ``tie_seed``) or ``reference`` (the reference's
            unstable ``sort_values("timestamp")``, emulated with numpy's quicksort: reproduces the
            reference's order only with the same numpy on the same CPU class; docs/reference.md).
        tie_seed: seed of ``tie_order="random"``.
        items_without_text: ``drop`` the interactions of items without text (the paper), ``keep``
            them with empty text, or ``drop-missing``: drop only those of items absent from the
            source's item table (the reference: a metadata entry with empty fields is enough);
            ``None`` = the source's default (:data:`DEFAULT_ITEMS_WITHOUT_TEXT`: ``keep`` for
            ``user-sequences`` and ``recbole``, published splits; ``drop`` for the others).
        duplicates: ``drop-exact`` removes repeated (user, item, timestamp) rows; ``keep`` keeps all.
        ascii_only: replace non-ASCII characters in item text with spaces (the reference's cleaning).
        text_style: ``clean`` ("title. feature, feature. category. description") or ``reference``
            (the reference's exact concatenation: SPEC §1.4 for Amazon; for Steam, fields joined
            without any cleaning, and a repeated game id's last entry wins).
        drop_first_data_row: drop the first data row of an Amazon rating CSV, as the reference's
            ``read_csv(..., header=1)`` does (counted in ``removed.source.first_data_row``).
        steam_parse: ``exact`` reads every Steam line as the Python literal it is; ``reference``
            parses as the reference does (quotes replaced, then ``json.loads``): lines that then
            fail are dropped and counted (``reference_unparseable_lines:<file>``), and the values
            are the ones that parse gives.
        skip_bad_lines: skip malformed lines instead of failing on the first: counted in the
            manifest's ``removed`` and by problem in its ``bad_lines``, each (file, line, field,
            reason) in ``bad_lines.jsonl`` (``hstu-blair -v prepare`` prints them).
        name: dataset name recorded in the manifest (default: detected from the files).
        interactions_file: the interactions / ratings / sequences file, instead of recognising it
            by its published name.
        items_file: the item metadata / catalogue file, instead of recognising it by name.
        reviews_file: the review-text file, instead of recognising it by name.
        user_column: user id column (generic) or field (recbole).
        item_column: item id column (generic) or field (recbole).
        timestamp_column: timestamp column (generic) or field (recbole).
        rating_column: rating column (generic) or field (recbole); ``None`` (CLI: ``none``) gives
            every interaction rating 1.0 (implicit feedback).
        item_id_column: item id column of the generic item table (default: ``item_column``).
        text_columns: item-table columns (generic) or fields (recbole) joined into the item text.
        title_column: item-table column (generic) or field (recbole) holding the title.
        timestamp_unit: unit of generic timestamps: ``s``, ``ms``, ``us``, ``ns`` or ``iso``
            (ISO-8601 dates / datetimes, read as UTC).
        with_reviews: also read review/tag text for ``pretrain-text`` where the source has it.
        tag_text: put users' tags into the item text (``lastfm-hetrec``); ``False`` builds it from
            the artist name only (the tags come from the same users' actions over the whole time
            range: a leak of later events into the text).
    """

    kcore: int | None = None
    kcore_mode: KcoreMode = "iterative"
    item_universe: ItemUniverse = "interacted"
    tie_order: TieOrder = "stable"
    tie_seed: int = 0
    items_without_text: ItemsWithoutText | None = None
    duplicates: Literal["drop-exact", "keep"] = "drop-exact"
    ascii_only: bool = False
    text_style: Literal["clean", "reference"] = "clean"
    drop_first_data_row: bool = False
    steam_parse: Literal["exact", "reference"] = "exact"
    skip_bad_lines: bool = False
    name: str | None = None
    interactions_file: Path | None = None
    items_file: Path | None = None
    reviews_file: Path | None = None
    user_column: str = "user_id"
    item_column: str = "item_id"
    timestamp_column: str = "timestamp"
    rating_column: str | None = "rating"
    item_id_column: str | None = None
    text_columns: list[str] = field(default_factory=lambda: ["text"])
    title_column: str | None = None
    timestamp_unit: Literal["s", "ms", "us", "ns", "iso"] = "s"
    with_reviews: bool = True
    tag_text: bool = True

    @classmethod
    def reference(cls, source: str | None = None, **overrides: object) -> PrepareOptions:
        """The reference preprocessing of ``source`` (see :data:`REFERENCE_OPTIONS`), then ``overrides``.

        Args:
            source: a ``prepare`` source name; ``None`` gives the reference's general semantics,
                as for ``generic`` (single-pass k-core and its item universe, reference text and
                tie order).
            overrides: options set explicitly (they win).

        Raises:
            ValueError: ``source`` is not a known source name.
        """
        if source is not None and source not in REFERENCE_OPTIONS:
            raise ValueError(f"unknown source {source!r}; valid sources: {', '.join(REFERENCE_OPTIONS)}")
        base = dict(_REFERENCE_COMMON)
        base.update(REFERENCE_OPTIONS["generic" if source is None else source])
        base.update(overrides)
        return cls(**base)  # type: ignore[arg-type]

    def for_source(self, source: str) -> PrepareOptions:
        """These options with the source-dependent defaults that are ``None`` filled in for ``source``
        (``items_without_text``; ``kcore`` stays ``None``, read where it is applied)."""
        if self.items_without_text is not None:
            return self
        return replace(self, items_without_text=DEFAULT_ITEMS_WITHOUT_TEXT.get(source, "drop"))

    @classmethod
    def describe(cls) -> list[OptionDoc]:
        """Every option with its type, allowed values, default and the help of this docstring (what
        the CLI's ``prepare`` flags are made from)."""
        return describe_options(cls)

    def to_dict(self) -> dict[str, object]:
        """The options as plain values (paths as strings)."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


# ---- the options described, for the CLI --------------------------------------------------------------
@dataclass(frozen=True)
class OptionDoc:
    """One option of a dataclass: what its CLI flag is made from.

    Attributes:
        name: the field name.
        kind: ``bool``, ``int``, ``str``, ``Path`` or ``list`` (of strings).
        choices: the allowed values of a ``Literal`` field, else ``None``.
        default: the field's default.
        help: the field's entry of the class docstring's ``Attributes`` section, as plain text.
    """

    name: str
    kind: type
    choices: tuple[str, ...] | None
    default: object
    help: str


_ATTRIBUTE = re.compile(r"^ {8}(\w+): (.*)$")
_MARKUP = re.compile(r":\w+:`~?([^`]+)`|``([^`]+)``")


def _attribute_docs(doc: str) -> dict[str, str]:
    """``Attributes:`` entries of a Google-style docstring -> {name: text on one line, markup removed}."""
    entries: dict[str, list[str]] = {}
    current: list[str] | None = None
    in_section = False
    for line in doc.splitlines():
        if line.strip() == "Attributes:":
            in_section = True
            continue
        if not in_section:
            continue
        if m := _ATTRIBUTE.match(line):
            current = entries.setdefault(m[1], [m[2]])
        elif line.startswith(" " * 12) and current is not None:
            current.append(line.strip())
        elif line.strip():
            break
    return {name: _MARKUP.sub(lambda m: m[1] or m[2], " ".join(parts)) for name, parts in entries.items()}


def _kind(hint: object) -> tuple[type, tuple[str, ...] | None]:
    """(kind, choices) of a field's type hint, ``X | None`` read as ``X``."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is Literal:
        return str, tuple(typing.get_args(hint))
    if typing.get_origin(hint) is list:
        return list, None
    return hint, None  # type: ignore[return-value]


def describe_options(cls: type) -> list[OptionDoc]:
    """:class:`OptionDoc` of every field of the dataclass ``cls``, in field order.

    Raises:
        AssertionError: a field has no entry in the class docstring's ``Attributes`` section.
    """
    hints = typing.get_type_hints(cls)
    docs = _attribute_docs(cls.__doc__ or "")
    out = []
    for f in fields(cls):
        assert f.name in docs, f"{cls.__name__}.{f.name} is not documented under Attributes"
        kind, choices = _kind(hints[f.name])
        default = f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]
        out.append(OptionDoc(f.name, kind, choices, default, docs[f.name]))
    return out
