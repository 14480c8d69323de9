"""Options of ``prepare`` (a dataclass of plain values; the CLI and recipes fill it in)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

DEFAULT_KCORE = {"amazon2023": 5, "steam": 5, "movielens": 0, "ml-latest-small": 0, "generic": 0}


@dataclass
class PrepareOptions:
    """Options of ``prepare``; the defaults are ours, ``reference()`` gives the reference's.

    Attributes:
        kcore: minimum interactions per user and per item; ``None`` = the source's default
            (5 for Amazon and Steam, 0 = none for MovieLens and generic, as the papers).
        kcore_mode: ``iterative`` (until stable) or ``single-pass`` (the reference's filter).
        items_without_text: ``drop`` their interactions (the paper) or ``keep`` them with empty text.
        duplicates: ``drop-exact`` removes repeated (user, item, timestamp) rows; ``keep`` keeps all.
        ascii_only: replace non-ASCII characters in item text with spaces (the reference's cleaning).
        text_style: ``clean`` ("title. feature, feature. category. description") or ``reference``
            (the reference's exact concatenation, SPEC §1.4; Amazon only).
        skip_bad_lines: count malformed lines in the manifest instead of failing on the first.
        name: dataset name recorded in the manifest (default: detected from the files).
        interactions_file, items_file, reviews_file: override recognition by published file name.
        user_column, item_column, timestamp_column, rating_column: generic interaction columns.
        item_id_column, text_columns, title_column: generic item-table columns.
        timestamp_unit: unit of generic timestamps: ``s``, ``ms``, ``us``, ``ns`` or ``iso``
            (ISO-8601 dates / datetimes, read as UTC).
        with_reviews: also read review/tag text for ``pretrain-text`` where the source has it.
    """

    kcore: int | None = None
    kcore_mode: Literal["iterative", "single-pass"] = "iterative"
    items_without_text: Literal["drop", "keep"] = "drop"
    duplicates: Literal["drop-exact", "keep"] = "drop-exact"
    ascii_only: bool = False
    text_style: Literal["clean", "reference"] = "clean"
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

    @classmethod
    def reference(cls, **overrides: object) -> PrepareOptions:
        """The reference preprocessing: single-pass 5-core, ASCII-only reference text (SPEC §1.3)."""
        base = dict(kcore_mode="single-pass", ascii_only=True, text_style="reference", duplicates="keep")
        base.update(overrides)
        return cls(**base)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}
