"""Steam loader: Python-literal lines (fast path vs ast.literal_eval), dates, fixtures, errors, prepare."""

from __future__ import annotations

import ast
import gzip
import json
import warnings
from collections import Counter

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hstu_blair.data.prepare import PrepareOptions, prepare
from hstu_blair.data.sources import steam_games, steam_reviews
from hstu_blair.data.sources.bad_lines import BadLines
from hstu_blair.data.sources.steam import load_steam
from hstu_blair.data.sources.steam_records import parse_literal, parse_literal_fast
from hstu_blair.data.sources.steam_reviews import parse_date
from hstu_blair.errors import DataFormatError
from tests.conftest import FIXTURES, shared_dataset

STEAM = FIXTURES / "steam"
BAD = STEAM / "bad"

# review dates of the fixture, at 00:00 UTC
APR_12_2016, DEC_17_2017, MAR_3_2017 = 1460419200, 1513468800, 1488499200
JUL_4_2015, JAN_1_2016, JAN_2_2018, JAN_1_2017 = 1435968000, 1451606400, 1514851200, 1483228800


def literal_eval(line: str) -> object:
    with warnings.catch_warnings():  # invalid escapes such as \q only warn
        warnings.simplefilter("ignore")
        return ast.literal_eval(line)


def py2_repr(value: object) -> str:
    """What Python 2's ``str(dict)`` writes for unicode strings: ``u`` + the ASCII-escaped repr."""
    if isinstance(value, str):
        return "u" + ascii(value)
    if isinstance(value, list):
        return "[" + ", ".join(py2_repr(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{py2_repr(k)}: {py2_repr(v)}" for k, v in value.items()) + "}"
    return repr(value)


# ---- fast path == ast.literal_eval ---------------------------------------------------------------
TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from("'\"\\\n\r\t\x00\x7f\x85é€♥😀\u2028{}[]:,u"),
        st.characters(blacklist_categories=("Cs",)),  # lines come from strict UTF-8: no lone surrogates
    ),
    max_size=40,
)
VALUES = st.one_of(
    TEXT,
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.lists(TEXT, max_size=5),
)
RECORDS = st.dictionaries(TEXT, VALUES, max_size=8)


@settings(max_examples=400, deadline=None)
@given(RECORDS)
def test_fast_path_reads_every_python2_and_python3_repr_exactly(record):
    for line in (py2_repr(record), repr(record)):
        fast = parse_literal_fast(line)
        assert fast is not None, line
        assert repr(fast) == repr(literal_eval(line))  # repr: True != 1, 1.0 != 1, key order
        keys = frozenset(list(record)[:2])
        assert parse_literal_fast(line, keys) == {k: v for k, v in record.items() if k in keys}


# pieces of string bodies: valid escapes, escapes the fast path leaves to Python, raw characters
ESCAPES_OK = ["\\'", '\\"', "\\\\", "\\n", "\\a", "\\v", "\\x41", "\\u00e9", "\\u20ac", "\\U0001F600"]
ESCAPES_DEFERRED = ["\\x4", "\\U00110000", "\\101", "\\8", "\\q", "\\N{BULLET}", "\\\n", "\\\r", "\\"]
RAW_CHARS = ["'", '"', "é", "€", "😀", "\t", "\x0c", "\x00", "\r", "\n", " ", "a", "u", ",", "}"]
RAW_PIECES = ESCAPES_OK + ESCAPES_DEFERRED + RAW_CHARS
RAW_BODY = st.lists(st.sampled_from(RAW_PIECES), max_size=12).map("".join)


@settings(max_examples=600, deadline=None)
@given(RAW_BODY, st.sampled_from(["u'", "'", 'u"', '"', "U'", "b'", "r'"]))
def test_fast_path_agrees_or_defers_on_raw_string_bodies(body, opening):
    """Arbitrary text between quotes: the fast path gives literal_eval's value or says 'unsure'."""
    quote = opening[-1]
    line = "{u'text': " + opening + body + quote + ", u'n': 1}"
    fast = parse_literal_fast(line)
    if fast is None:
        return
    assert repr(fast) == repr(literal_eval(line))


NOISE = [*"{}[]'\"\\u:, \t0-.eE", "\\n", "\\x", "u'a'", "True", "None", "\n", "\x00", "1_0", "\\N{BULLET}"]


@st.composite
def mutated_lines(draw: st.DrawFn) -> str:
    """A valid line with a few random insertions and deletions: mostly invalid, sometimes still valid."""
    line = py2_repr(draw(RECORDS))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(line)))
        if draw(st.booleans()):
            line = line[:at] + draw(st.sampled_from(NOISE)) + line[at:]
        else:
            line = line[:at] + line[at + draw(st.integers(1, 3)) :]
    return line


@settings(max_examples=1000, deadline=None)
@given(mutated_lines())
def test_fast_path_never_accepts_what_python_rejects(line):
    fast = parse_literal_fast(line)
    if fast is not None:
        assert repr(fast) == repr(literal_eval(line))


def test_fast_path_defers_outside_its_grammar_and_the_fallback_reads_it():
    cases = {
        "{u'a': u'\\101\\N{BULLET}'}": {"a": "A•"},  # octal and named escapes
        "{u'a': {u'b': 1}}": {"a": {"b": 1}},  # nested dict
        "{u'a': [1, 2.5]}": {"a": [1, 2.5]},  # list of numbers
        "{u'a': 1_000, u'b': u'x' u'y'}": {"a": 1000, "b": "xy"},  # underscores, adjacent strings
        "{1: u'int key'}": {1: "int key"},
    }
    for line, expected in cases.items():
        assert parse_literal_fast(line) is None
        assert parse_literal(line, "f.json", 1) == expected
    assert parse_literal_fast("  {u'a': 1,} ") == {"a": 1}
    assert parse_literal_fast("{}") == {}
    assert parse_literal_fast("{u'a': 1 {u'b': 2}") is None


@pytest.mark.parametrize(
    "line",
    [
        "{u'a': 01}",  # leading zero: a SyntaxError in Python 3, int('01') would give 1
        "{u'a': 1.}",
        "{u'a': .5}",
        "{u'a': 1e}",
        "{u'a' u'b': 1}",
        "{u'a': u'x\\q'}",  # invalid escape: Python keeps the backslash, with a warning
        "{u'a': u'\\x4'}",
        "{,}",
        "{u'a'}",  # a set
        "{u'a': 1}}",
        "{u'a': [u'x',, u'y']}",
        "{u'a': b'bytes'}",
        "{u'a': u'tab\\\tx'}",  # a backslash before a raw tab
        "{u'a': u'nul\x00'}",
        "{u'a': u'cr\rx'}",
        "{u'a': true}",
    ],
)
def test_fast_path_defers_on_near_misses(line):
    assert parse_literal_fast(line) is None


# ---- dates ---------------------------------------------------------------------------------------
def test_parse_date_formats_are_midnight_utc():
    assert parse_date("2017-12-17") == DEC_17_2017
    assert parse_date("Posted December 17, 2017.") == DEC_17_2017
    assert parse_date("posted Dec 17, 2017") == DEC_17_2017
    assert parse_date("December 17,2017") == DEC_17_2017
    assert parse_date("1970-01-01") == 0


@pytest.mark.parametrize(
    "value, reason",
    [
        ("Posted March 3.", "no year"),
        ("March 3", "no year"),
        ("2017-02-30", "impossible"),
        ("17/12/2017", "is not"),
    ],
)
def test_parse_date_rejects_yearless_impossible_and_unknown(value, reason):
    with pytest.raises(ValueError, match=reason):
        parse_date(value)


# ---- the real games sample -----------------------------------------------------------------------
def test_real_games_sample_reads_all_25_games():
    path = shared_dataset("steam-format-sample") / "steam_games.sample.json"
    lines = path.read_text(encoding="utf-8").splitlines()
    assert all(parse_literal_fast(line) is not None for line in lines)  # every line on the fast path
    removed: Counter[str] = Counter()
    games = steam_games.read_games(path, ascii_only=False, bad=BadLines(False, removed), removed=removed)
    assert games.height == 25 and not removed
    oracle = [literal_eval(line) for line in lines]  # ids and names as Python itself reads them
    assert games["item_id"].to_list() == [g["id"] for g in oracle]
    assert games["title"].to_list() == [g["app_name"] for g in oracle]  # no HTML entities in app_name
    assert games["item_id"].to_list()[:5] == ["761140", "643980", "670290", "98421", "206522"]
    titles = dict(zip(games["item_id"], games["title"]))
    texts = dict(zip(games["item_id"], games["text"]))
    # apostrophes: written u"..." in the file, lost by the reference's quote replacement
    assert titles["565000"] == "Riders of Icarus: Elite Ranger's Fury Package"
    assert (
        titles["559800"] == "Fantasy Grounds - Mini-Dungeon #020: Sepulchre of the Witching Hour's Sage (5E)"
    )
    assert titles["48231"] == "Might & Magic: Heroes VI - Pirates of the Savage Sea Adventure Pack"
    assert texts["761140"] == (
        "Lost Summoner Kitty | Kotoshiro | Kotoshiro | Action, Casual, Indie, Simulation, Strategy | "
        "Strategy, Action, Indie, Casual, Simulation | Single-player"
    )
    assert texts["206522"].startswith("Spiral Knights: Guardians Armor Pack | Grey Havens | ")  # no publisher


# ---- the fixture ---------------------------------------------------------------------------------
def test_load_fixture_reads_every_line_losslessly():
    raw = load_steam([STEAM], PrepareOptions())
    assert raw.name == "steam" and raw.source == "steam"
    assert [p.name for p in raw.files] == ["steam_reviews.json", "steam_games.json"]
    rows = raw.interactions.rows()
    ann, bjorn = "Ann O'Hara", "bj\u00f6rn"
    assert rows == [
        (ann, "900001", APR_12_2016, 1.0),
        (bjorn, "900002", DEC_17_2017, 1.0),
        (ann, "900002", MAR_3_2017, 1.0),  # 'Posted March 3, 2017.'
        ("Zed", "900001", JUL_4_2015, 1.0),
        (bjorn, "900001", DEC_17_2017, 1.0),
        ("Zed", "900004", JUL_4_2015, 1.0),  # no 'text', no 'hours'
        (ann, "900003", JAN_2_2018, 1.0),
        ("Zed", "900002", JAN_1_2016, 1.0),
        (bjorn, "900009", JAN_1_2017, 1.0),  # not in the games file
        (ann, "900001", APR_12_2016, 1.0),  # exact repeat: prepare drops it
    ]
    assert raw.removed == Counter(
        {"reviews_without_username": 1, "games_without_id": 1, "duplicate_game_ids": 1}
    )
    assert raw.info["reviews_with_user_id"] == 2
    texts = raw.reviews["text"].to_list()
    assert texts[0] == 'Great little game, I\'d say "buy it".'
    assert texts[1] == "Short.\nBut sweet \u2665 \u2013 caf\u00e9 level is best"
    assert texts[2] == 'Lou\'s revenge is a "heist" indeed'
    assert texts[3] == "\\o/ 10/10 \U0001f600 would bake again"
    assert texts[4] == "Tab\there, backslash \\ there"
    assert texts[5] == ""
    items = {r["item_id"]: r for r in raw.items.to_dicts()}
    assert list(items) == ["900001", "900002", "900003", "900004", "900005"]
    assert items["900001"]["title"] == "Baker's Dozen"  # the first of the two entries with id 900001
    assert items["900001"]["text"] == (
        "Baker's Dozen | Quill & Anvil | Quill & Anvil | Adventure, Indie | Cooking, Casual, Indie | Single-player"
    )
    assert items["900002"]["title"] == 'The "Big" Heist: Lou\'s Revenge'
    assert "\u5c71\u7530 Works | Action, Racing | Caf\u00e9 Racer, Action" in items["900002"]["text"]
    assert items["900003"]["title"] == "Tiny Kingdoms"  # item_id instead of id, title instead of app_name
    assert items["900003"]["text"] == "Tiny Kingdoms | Solo Dev | Strategy | Strategy | Single-player"
    assert items["900005"]["text"] == "Quiet Room | Echo | Echo | Atmospheric | Single-player"  # genres []


def test_gzip_fixture_equals_plain_and_file_overrides_work():
    plain = load_steam([STEAM], PrepareOptions())
    gz = load_steam([STEAM / "gz"], PrepareOptions())
    assert gz.interactions.equals(plain.interactions)
    assert gz.items.equals(plain.items) and gz.reviews.equals(plain.reviews)
    assert [p.name for p in gz.files] == ["steam_reviews.json.gz", "steam_games.json.gz"]
    chosen = load_steam(
        [],
        PrepareOptions(
            interactions_file=BAD / "mixed.json",
            items_file=STEAM / "steam_games.json",
            skip_bad_lines=True,
            with_reviews=False,
        ),
    )
    assert chosen.interactions.height == 2 and chosen.items.height == 5 and chosen.reviews is None


def test_ascii_only_item_text():
    raw = load_steam([STEAM], PrepareOptions(ascii_only=True))
    text = dict(zip(raw.items["item_id"], raw.items["text"]))["900002"]
    assert (
        text == 'The "Big" Heist: Lou\'s Revenge | Night Owl | Works | Action, Racing | Caf Racer, Action | '
        "Single-player, Multi-player"
    )


def test_prepare_end_to_end(tmp_path):
    data = prepare("steam", [STEAM], tmp_path, PrepareOptions(kcore=2))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["name"] == "steam" and manifest["source"] == "steam"
    assert (manifest["num_users"], manifest["num_items"], manifest["num_interactions"]) == (3, 2, 6)
    assert manifest["num_reviews"] == 6  # reviews of kept items with non-empty text (the repeat included)
    removed = manifest["removed"]
    assert removed["source"] == {
        "reviews_without_username": 1,
        "games_without_id": 1,
        "duplicate_game_ids": 1,
    }
    assert removed["duplicates"]["interactions"] == 1
    assert removed["items_without_text"]["interactions"] == 1  # 900009
    assert removed["kcore"]["interactions"] == 2 and removed["kcore"]["items"] == 2  # 900003, 900004
    assert removed["catalogue"]["items_without_interactions"] == 3
    assert data.items["item_id"].to_list() == ["900001", "900002"]
    assert data.sequences["user_id"].to_list() == ["Ann O'Hara", "Zed", "bj\u00f6rn"]
    assert data.user_items(0).tolist() == [1, 2]
    assert data.user_items(1).tolist() == [1, 2]
    assert data.user_items(2).tolist() == [2, 1]  # same day: file order
    assert data.sequences["timestamp"].to_list()[2] == [DEC_17_2017, DEC_17_2017]
    reviews = pl.read_parquet(tmp_path / "reviews.parquet")
    assert 'Great little game, I\'d say "buy it".' in reviews["text"].to_list()


# ---- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, where, expected",
    [
        ("truncated.json", "truncated.json:2 (field 'text')", "not a Python dict literal"),
        ("not_a_dict.json", "not_a_dict.json:1:", "expected a dict literal"),
        ("missing_product_id.json", "missing_product_id.json:3 (field 'product_id')", "missing"),
        ("bad_date.json", "bad_date.json:3 (field 'date')", "has no year"),
    ],
)
def test_bad_review_lines_name_file_line_and_field(name, where, expected):
    with pytest.raises(DataFormatError) as info:
        load_steam([], PrepareOptions(interactions_file=BAD / name))
    assert where in str(info.value) and expected in str(info.value)


def test_empty_and_missing_files():
    with pytest.raises(DataFormatError, match=r"empty\.json: file is empty"):
        load_steam([], PrepareOptions(interactions_file=BAD / "empty.json"))
    with pytest.raises(DataFormatError, match="no steam_reviews.json"):
        load_steam([BAD], PrepareOptions())


def test_bad_games_line_names_file_line_and_field():
    options = PrepareOptions(
        interactions_file=STEAM / "steam_reviews.json", items_file=BAD / "games_truncated.json"
    )
    with pytest.raises(DataFormatError, match=r"games_truncated\.json:2 \(field 'tags'\)"):
        load_steam([], options)
    options.skip_bad_lines = True
    raw = load_steam([], options)
    assert raw.items["item_id"].to_list() == ["900001"]
    assert raw.removed["bad_lines:games_truncated.json"] == 1


def test_skip_bad_lines_counts_each_bad_line(tmp_path):
    raw = load_steam([], PrepareOptions(interactions_file=BAD / "mixed.json", skip_bad_lines=True))
    assert raw.interactions["user_id"].to_list() == ["Zed", "Ann"]
    assert raw.removed == Counter({"bad_lines:mixed.json": 4})
    assert "mixed.json:2 (field 'text')" in raw.info["first_bad_line"]["bad_lines:mixed.json"]
    data = prepare(
        "steam",
        [],
        tmp_path,
        PrepareOptions(interactions_file=BAD / "mixed.json", skip_bad_lines=True, kcore=0),
    )
    assert data.manifest["removed"]["source"] == {"bad_lines:mixed.json": 4}
    assert data.num_interactions == 2


def test_invalid_utf8_line_is_named(tmp_path):
    good = (STEAM / "steam_reviews.json").read_bytes().splitlines()[0]
    path = tmp_path / "steam_reviews.json"
    path.write_bytes(good + b"\n" + good.replace(b"Great", b"Gr\xffat") + b"\n" + good + b"\n")
    with pytest.raises(DataFormatError, match=r"steam_reviews\.json:2: not valid utf-8"):
        load_steam([tmp_path], PrepareOptions())
    raw = load_steam([tmp_path], PrepareOptions(skip_bad_lines=True))
    assert raw.interactions.height == 2 and raw.removed["bad_lines:steam_reviews.json"] == 1


def test_parallel_parsing_equals_sequential(tmp_path, monkeypatch):
    lines = (STEAM / "steam_reviews.json").read_text(encoding="utf-8").splitlines()
    bad_line = (BAD / "bad_date.json").read_text(encoding="utf-8").splitlines()[2]
    body = lines * 30 + [bad_line] + lines * 5  # the bad line is line 331
    path = tmp_path / "steam_reviews.json.gz"
    path.write_bytes(gzip.compress(("\n".join(body) + "\n").encode()))
    monkeypatch.setattr(steam_reviews, "_BLOCK_BYTES", 1000)  # many blocks
    monkeypatch.setattr(steam_reviews, "_PARALLEL_MIN_BYTES", 0)

    def read(workers, skip):
        removed: Counter[str] = Counter()
        out = steam_reviews.read_reviews(path, True, BadLines(skip, removed), removed, workers=workers)
        return out, removed

    (seq, seq_reviews, seq_ids), seq_removed = read(1, True)
    (par, par_reviews, par_ids), par_removed = read(2, True)
    assert seq.height == 350 and par.equals(seq) and par_reviews.equals(seq_reviews)
    assert (
        par_removed
        == seq_removed
        == Counter({"reviews_without_username": 35, "bad_lines:steam_reviews.json.gz": 1})
    )
    assert par_ids == seq_ids == 70
    with pytest.raises(DataFormatError, match=r"steam_reviews\.json\.gz:331 \(field 'date'\)"):
        read(2, False)
