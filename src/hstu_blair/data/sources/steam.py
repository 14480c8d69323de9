"""Steam (UCSD, Kang & McAuley 2018): ``steam_reviews.json`` + ``steam_games.json`` -> canonical tables.

Both files hold one Python dict literal per line (``{u'username': u'...', u'date': u'2017-12-17', ...}``),
written by Python 2's ``str(dict)``: not JSON. Each line is read losslessly: a fast path matches the
whole line against the grammar of such a literal (``u'..'``/``'..'``/``".."`` strings with their
escapes, numbers, ``True``/``False``/``None``, lists of strings) and decodes the strings exactly as
Python does; any line it cannot handle with certainty goes to :func:`ast.literal_eval`.

Tables produced (SPEC §1.3, Steam):

- interactions: user = ``username``, item = ``product_id``, timestamp = ``date`` at 00:00 UTC
  (``%Y-%m-%d``, or the ``Posted November 5, 2017.`` style), rating 1.0.
- items, from the games file: id = ``id`` (else ``item_id``), title = ``app_name`` (else ``title``),
  text = ``title | publisher | developer | genres | tags | specs`` (lists joined with ``", "``,
  empty fields left out), each field cleaned with :func:`~hstu_blair.data.item_text.clean_text`
  (``ascii_only`` respected).
- reviews (``with_reviews``): ``username``, ``product_id`` and the raw review ``text``.

Rows dropped here and counted in ``removed``: reviews without a ``username`` (``reviews_without_username``;
a few lines carry only the numeric Steam ``user_id``, a different id space we do not mix with user
names, and the reference drops them too), games without an id (``games_without_id``), repeated game
ids (``duplicate_game_ids``, the first entry is kept), and bad lines under ``skip_bad_lines``.

Differences from the reference (SPEC §1.3, §7.2 items 6-8), and the options that reproduce it:

- The reference turns each line into JSON by replacing quotes and silently drops every line that
  then fails to parse: any string holding an apostrophe (written ``u"..."``), a double quote, or a
  character written ``\\x..``/``\\U........`` (accented letters, emoji), e.g. 4 of the 25 games of
  the published sample; and a string ending in ``u`` loses it. Here every line is read exactly,
  and a line that is not a valid literal is an error (or counted with ``skip_bad_lines``).
  ``steam_parse="reference"`` parses as the reference does (:func:`~.steam_records.reference_parse`)
  and counts the dropped lines as ``reference_unparseable_lines:<file>``.
- Dates are midnight UTC, not local time; a date without a year is an error instead of year 1900.
- Ties on the same day keep file order (the reference sorts by ``(timestamp, item id)``, then
  unstably by timestamp: ``tie_order="reference"`` in ``prepare`` emulates it).
- Item text is HTML-unescaped and whitespace-collapsed (the reference does no cleaning for Steam),
  and starts with ``title`` when a game has no ``app_name`` (the reference then leaves the name out);
  a repeated game id keeps its first entry (the reference: the last). ``text_style="reference"``
  gives the reference's text and entry (:func:`~.steam_games.reference_game_text`).
- ``prepare`` applies an iterative 5-core on users *and* items by default; the reference keeps users
  with at least 5 reviews (of items that have metadata) and filters no items, so its catalogue keeps
  rarely reviewed games: ``kcore_mode="users-only"``.

This module finds the files and loads them; the lines are parsed in :mod:`.steam_records`, the
reviews read in :mod:`.steam_reviews` and the games in :mod:`.steam_games`.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from hstu_blair.data.options import PrepareOptions
from hstu_blair.data.sources.bad_lines import BadLines
from hstu_blair.data.sources.base import RawDataset, find_file
from hstu_blair.data.sources.steam_games import read_games
from hstu_blair.data.sources.steam_reviews import read_reviews
from hstu_blair.errors import DataFormatError

log = logging.getLogger(__name__)

REVIEWS_FILE = "steam_reviews.json"
GAMES_FILE = "steam_games.json"


def load_steam(paths: list[Path], options: PrepareOptions) -> RawDataset:
    """Read the Steam reviews (and games, when given) into canonical raw tables.

    Files are recognised by name (``steam_reviews.json``, ``steam_games.json``, each optionally
    ``.gz``) among ``paths`` (files or directories); ``options.interactions_file`` and
    ``options.items_file`` override. Without a games file the items have no text.

    Args:
        paths: input files or directories.
        options: ``skip_bad_lines``, ``ascii_only``, ``with_reviews``, ``steam_parse``,
            ``text_style`` and the file overrides are used.

    Returns:
        The raw dataset named ``"steam"``.

    Raises:
        DataFormatError: no reviews file, or a malformed line (file, line, field) unless skipped.
    """
    reviews_path = options.interactions_file or find_file(paths, REVIEWS_FILE)
    if reviews_path is None:
        raise DataFormatError(
            ", ".join(map(str, paths)) or "<no inputs>",
            f"no {REVIEWS_FILE}(.gz) among the inputs; pass the file or set interactions_file",
        )
    games_path = options.items_file or find_file(paths, GAMES_FILE)
    removed: Counter[str] = Counter()
    bad = BadLines(options.skip_bad_lines, removed)
    reference = options.steam_parse == "reference"
    interactions, reviews, with_user_id = read_reviews(
        Path(reviews_path), options.with_reviews, bad, removed, reference=reference
    )
    items = None
    if games_path is not None:
        reference_text = options.text_style == "reference"
        items = read_games(Path(games_path), options.ascii_only, bad, removed, reference, reference_text)
    else:
        log.warning("steam: no %s(.gz) among the inputs; items will have no text", GAMES_FILE)
    files = [Path(reviews_path)] + ([Path(games_path)] if games_path is not None else [])
    info: dict[str, object] = {
        "reviews_with_user_id": with_user_id,
        "games": items.height if items is not None else None,
        "timestamp": "review date at 00:00 UTC",
    }
    if bad.first_error:
        info["first_bad_line"] = dict(bad.first_error)
    return RawDataset(
        name="steam",
        source="steam",
        interactions=interactions,
        items=items,
        reviews=reviews,
        files=files,
        removed=removed,
        bad_lines=bad.records,
        info=info,
    )
