"""``prepare --reference``: item universe, tie order, k-core modes and file quirks, on real data."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from hstu_blair.cli import main
from hstu_blair.data import filters
from hstu_blair.data.dataset import SequenceData
from hstu_blair.data.options import REFERENCE_OPTIONS, PrepareOptions
from hstu_blair.data.prepare import SOURCES, filter_rows, prepare, prepare_raw, reference_order
from hstu_blair.data.sources import steam_games, steam_records
from hstu_blair.data.sources.amazon2023_meta import reference_item_text
from hstu_blair.data.sources.bad_lines import BadLines
from hstu_blair.text.embed import item_texts
from tests.conftest import FIXTURES, make_raw, shared_dataset

TS = 1_600_000_000


def _prepare(raw, tmp_path: Path, **opts: object) -> SequenceData:
    prepare_raw(raw, PrepareOptions(**opts), tmp_path)
    return SequenceData.load(tmp_path)


def _sequences(data: SequenceData) -> dict[str, list[str]]:
    """External user id -> external item ids, in sequence order."""
    return {
        data.sequences["user_id"][u]: [data.item_ids[i] for i in data.user_items(u)]
        for u in range(data.num_users)
    }


# ---- the options ---------------------------------------------------------------------------------
def test_reference_options_per_source():
    amazon = PrepareOptions.reference(source="amazon2023")
    assert (amazon.kcore_mode, amazon.item_universe, amazon.tie_order) == (
        "single-pass",
        "before-user-drop",
        "reference",
    )
    assert amazon.drop_first_data_row and amazon.ascii_only and amazon.duplicates == "keep"
    assert amazon.items_without_text == "drop-missing"
    steam_options = PrepareOptions.reference(source="steam")
    assert (steam_options.kcore_mode, steam_options.steam_parse, steam_options.item_universe) == (
        "users-only",
        "reference",
        "interacted",
    )
    assert not steam_options.ascii_only and steam_options.text_style == "reference"
    for source in ("movielens", "ml-latest-small"):
        ml = PrepareOptions.reference(source=source)
        assert (ml.item_universe, ml.tie_order, ml.duplicates) == ("catalogue", "reference", "keep")
        assert not ml.drop_first_data_row and ml.steam_parse == "exact"
    assert (
        PrepareOptions.reference(source="amazon2023", tie_order="random").tie_order == "random"
    )  # overrides win
    assert PrepareOptions.reference() == PrepareOptions.reference(source="generic")
    assert set(REFERENCE_OPTIONS) == set(SOURCES)
    with pytest.raises(ValueError, match="unknown source 'nope'"):
        PrepareOptions.reference(source="nope")
    defaults = PrepareOptions()  # ours fix the reference's bugs
    assert (defaults.item_universe, defaults.tie_order, defaults.kcore_mode) == (
        "interacted",
        "stable",
        "iterative",
    )
    assert not defaults.drop_first_data_row and defaults.steam_parse == "exact"


# ---- k-core modes ---------------------------------------------------------------------------------
def _weak_users_rows() -> list[tuple[str, str, int]]:
    """6 core users x 6 items; 5 weak users who share item X and each rate 4 rare items.

    Single pass at k=5: the rare items go, the weak users are then left with X only and are dropped,
    so X has no interaction left, but it survived the row filter (the reference keeps it as an item).
    """
    rows = [(f"core{u}", f"C{i}", TS + i) for u in range(6) for i in range(6)]
    for u in range(5):
        rows.append((f"weak{u}", "X", TS))
        rows += [(f"weak{u}", f"R{u}{j}", TS + j) for j in range(4)]
    return rows


def test_users_only_filter_keeps_rare_items():
    raw = make_raw(_weak_users_rows())
    users, items = filters.code_ids(raw.interactions)
    everything = np.ones(raw.interactions.height, dtype=bool)
    kept = filters.min_user_rows(users, 6, everything)
    assert kept.sum() == 36  # weak users have 5 rows each
    kept = filters.min_user_rows(users, 5, everything)
    assert kept.all()  # every user has 5 rows; the items R.. (1 row each) stay
    filtered = filter_rows(raw, PrepareOptions(kcore=5, kcore_mode="users-only"))
    assert filtered.kept.all() and (filtered.before_user_drop == filtered.kept).all()
    assert filtered.removed["kcore"] == {"interactions": 0, "users": 0, "items": 0, "rounds": 1, "k": 5}


def test_single_pass_marks_the_rows_before_the_user_drop():
    filtered = filter_rows(make_raw(_weak_users_rows()), PrepareOptions(kcore=5, kcore_mode="single-pass"))
    assert filtered.kept.sum() == 36
    assert filtered.before_user_drop.sum() == 36 + 5  # the weak users' X rows
    assert filtered.removed["kcore"] == {"interactions": 25, "users": 5, "items": 21, "rounds": 1, "k": 5}


# ---- item universe --------------------------------------------------------------------------------
def test_before_user_drop_keeps_the_items_of_dropped_users(tmp_path):
    raw = make_raw(_weak_users_rows())
    ours = _prepare(raw, tmp_path / "ours", kcore=5, kcore_mode="single-pass")
    assert ours.num_items == 6 and ours.manifest["num_items_without_interactions"] == 0
    data = _prepare(
        raw, tmp_path / "ref", kcore=5, kcore_mode="single-pass", item_universe="before-user-drop"
    )
    assert data.items["item_id"].to_list() == ["C0", "C1", "C2", "C3", "C4", "C5", "X"]
    assert data.manifest["num_items_without_interactions"] == 1
    assert data.num_interactions == 36 and 7 not in data.item_seq  # X is in no sequence
    assert data.manifest["removed"]["kcore"]["items"] == 21  # X lost its interactions all the same
    # with the iterative k-core nothing is left between the filters: the same as "interacted"
    iterative = _prepare(raw, tmp_path / "it", kcore=5, item_universe="before-user-drop")
    assert iterative.num_items == 6


def test_catalogue_keeps_items_without_interactions_with_their_text(tmp_path):
    raw = make_raw(
        [("u", "a", 1), ("u", "b", 2), ("v", "a", 3)], texts={"a": "A", "b": "B", "c": "C", "d": "  "}
    )
    data = _prepare(raw, tmp_path / "cat", item_universe="catalogue")
    assert data.items["item_id"].to_list() == ["a", "b", "c"]  # d has no text: dropped, and counted
    assert data.items["text"].to_list() == ["A", "B", "C"]
    assert data.manifest["num_items_without_interactions"] == 1
    assert data.manifest["removed"]["catalogue"] == {"items_without_interactions": 1}
    keep = _prepare(raw, tmp_path / "keep", item_universe="catalogue", items_without_text="keep")
    assert keep.num_items == 4 and keep.manifest["num_items_without_interactions"] == 2
    default = _prepare(raw, tmp_path / "default")
    assert default.num_items == 2 and default.manifest["removed"]["catalogue"] == {
        "items_without_interactions": 2
    }


def test_drop_missing_keeps_listed_items_with_blank_text(tmp_path):
    """The reference drops ratings of items without a metadata entry; an entry with empty fields stays."""
    raw = make_raw([("u", "a", 1), ("u", "blank", 2), ("u", "unlisted", 3)], texts={"a": "A", "blank": "   "})
    ref = _prepare(raw, tmp_path / "ref", items_without_text="drop-missing")
    assert ref.items["item_id"].to_list() == ["a", "blank"]
    assert ref.manifest["removed"]["items_without_text"] == {"interactions": 1, "users": 0, "items": 1}
    ours = _prepare(raw, tmp_path / "ours")
    assert ours.items["item_id"].to_list() == ["a"]


def test_reference_amazon_text_uses_the_reference_tag_pattern():
    meta = {"title": "a<br\n/>b <> c", "features": [], "categories": [], "description": []}
    assert reference_item_text(meta) == "ab <> c    "  # a tag across a newline goes, "<>" stays


# ---- tie order ------------------------------------------------------------------------------------
def _tied_rows(seed: int = 0) -> list[tuple[str, str, int]]:
    """Users with many interactions at a few distinct times, in shuffled file order."""
    rng = np.random.default_rng(seed)
    rows = [
        (f"u{u}", f"i{int(rng.integers(50))}", TS + 60 * int(rng.integers(3)))
        for u in range(30)
        for _ in range(12)
    ]
    return [rows[i] for i in rng.permutation(len(rows))]


def test_tie_orders(tmp_path):
    rows = _tied_rows()
    raw = make_raw(rows)
    opts = dict(duplicates="keep")
    stable = _prepare(raw, tmp_path / "stable", **opts)
    expected: dict[str, list[str]] = {}  # stable: by time, then file order
    for i in sorted(range(len(rows)), key=lambda i: (rows[i][2], i)):
        expected.setdefault(rows[i][0], []).append(rows[i][1])
    assert _sequences(stable) == expected
    times = stable.time_seq
    random_a = _prepare(raw, tmp_path / "ra", tie_order="random", tie_seed=1, **opts)
    random_b = _prepare(raw, tmp_path / "rb", tie_order="random", tie_seed=1, **opts)
    random_c = _prepare(raw, tmp_path / "rc", tie_order="random", tie_seed=2, **opts)
    assert _sequences(random_a) == _sequences(random_b) != _sequences(random_c) != _sequences(stable)
    for data in (random_a, random_c):  # only ties move: the times stay sorted, and are the same
        assert (data.time_seq == times).all()
    manifest = random_a.manifest
    assert manifest["ties"]["order"] == "random" and manifest["ties"]["seed"] == 1
    assert manifest["ties"]["groups"] == stable.manifest["ties"]["groups"] > 0


def test_reference_tie_order_is_numpy_quicksort_then_a_stable_group_by(tmp_path):
    rows = _tied_rows(3)
    raw = make_raw(rows)
    data = _prepare(raw, tmp_path, duplicates="keep", tie_order="reference")
    # the reference: frame.sort_values("timestamp") (numpy quicksort), then a stable group-by user
    order = np.argsort(np.array([t for _, _, t in rows]), kind="quicksort")
    expected: dict[str, list[str]] = {}
    for i in order:
        expected.setdefault(rows[i][0], []).append(rows[i][1])
    assert _sequences(data) == expected
    ties = data.manifest["ties"]
    assert ties["order"] == "reference" and ties["numpy"] == np.__version__ and "machine" in ties


def test_reference_tie_order_sorts_the_source_times_of_amazon(tmp_path):
    """Amazon sorts milliseconds: two rows in the same second keep their millisecond order."""
    rows = [("u", "late", TS), ("u", "early", TS), ("u", "tie1", TS + 5), ("u", "tie2", TS + 5)]
    raw = make_raw(rows, source="amazon2023")
    raw.source_times = np.array([TS * 1000 + 900, TS * 1000 + 100, (TS + 5) * 1000, (TS + 5) * 1000])
    assert reference_order(raw, np.arange(4))[:2].tolist() == [1, 0]
    data = _prepare(raw, tmp_path, kcore=0, tie_order="reference")
    assert _sequences(data)["u"][:2] == ["early", "late"]


def test_steam_reference_frame_is_per_user_time_then_item_order():
    # users in order of first review, each sorted by (time, item id), then numpy's quicksort by time
    rows = [("b", "9", TS), ("a", "5", TS + 86400), ("b", "1", TS), ("a", "7", TS), ("b", "3", TS + 86400)]
    raw = make_raw(rows, source="steam")
    frame = [2, 0, 4, 3, 1]  # b (first): (TS, '1'), (TS, '9'), (TS+1d, '3'); then a: (TS, '7'), (TS+1d, '5')
    times = raw.interactions["timestamp"].to_numpy()
    expected = np.array(frame)[np.argsort(times[frame], kind="quicksort")]
    assert reference_order(raw, np.arange(5)).tolist() == expected.tolist()


# ---- pandas itself, where it is installed ------------------------------------------------------------
@pytest.mark.parametrize("name", ["movielens-100k", "movielens-latest-small"])
def test_reference_sequences_equal_pandas_on_movielens(tmp_path, name):
    """GR's MovieLens code: ``ratings.sort_values(by=["unix_timestamp"]).groupby("user_id")``."""
    pd = pytest.importorskip("pandas")
    folder = shared_dataset(name)
    ratings_file = folder / ("u.data.gz" if name == "movielens-100k" else "ratings.csv.gz")
    kwargs = (
        dict(sep="\t", names=["userId", "movieId", "rating", "timestamp"]) if name == "movielens-100k" else {}
    )
    ratings = pd.read_csv(ratings_file, **kwargs)
    groups = ratings.sort_values(by=["timestamp"]).groupby("userId")
    expected = {
        str(u): [str(m) for m in ms] for u, ms in zip(groups.groups.keys(), groups.movieId.apply(list))
    }
    data = prepare("movielens", [folder], tmp_path, PrepareOptions.reference(source="movielens"))
    assert _sequences(data) == expected


# ---- real data: counts under --reference and by default ------------------------------------------------
def test_ml_latest_small_reference_universe(tmp_path):
    data = prepare(
        "ml-latest-small", [], tmp_path / "ref", PrepareOptions.reference(source="ml-latest-small")
    )
    m = data.manifest
    assert (m["num_users"], m["num_items"], m["num_interactions"]) == (610, 9742, 100836)
    assert m["num_items_without_interactions"] == 18
    assert m["removed"]["catalogue"] == {"items_without_interactions": 0}
    assert m["ties"]["groups"] == 7438 and m["ties"]["interactions"] == 23228
    unrated = set(range(1, data.num_items + 1)) - set(data.item_seq.tolist())
    assert len(unrated) == 18
    texts, replaced = item_texts(data)  # every item, rated or not, has a text to embed
    assert (
        len(texts) == 9742
        and all(texts[i - 1].strip() for i in unrated)
        and replaced == {"title": 0, "item_id": 0}
    )
    default = prepare("ml-latest-small", [], tmp_path / "ours")
    assert (default.num_items, default.manifest["num_items_without_interactions"]) == (9724, 0)
    assert default.manifest["removed"]["catalogue"] == {"items_without_interactions": 18}


def test_ml100k_reference_counts(tmp_path):
    folder = shared_dataset("movielens-100k")
    data = prepare("movielens", [folder], tmp_path, PrepareOptions.reference(source="movielens"))
    m = data.manifest
    assert (m["num_users"], m["num_items"], m["num_interactions"]) == (943, 1682, 100000)
    assert m["num_items_without_interactions"] == 0  # every ML-100K movie is rated
    assert m["ties"]["groups"] == 25211 and m["ties"]["interactions"] == 75772


def test_all_beauty_reference_drops_the_first_data_row(tmp_path):
    folder = shared_dataset("amazon2023-all-beauty-5core")
    data = prepare("amazon2023", [folder], tmp_path, PrepareOptions.reference(source="amazon2023"))
    m = data.manifest
    assert (m["num_users"], m["num_items"], m["num_interactions"]) == (253, 356, 2534)
    assert m["removed"]["source"] == {"first_data_row": 1}
    assert m["removed"]["kcore"] == {"interactions": 0, "users": 0, "items": 0, "rounds": 1, "k": 5}
    first_user = data.user_index("AFSKPY37N3C43SOI5IEXEK5JSIYA")
    assert data.item_indices(["B07J3GH1W1"])[0] not in data.user_items(first_user)  # line 2 of the file
    assert m["ties"]["groups"] == 0


# ---- Steam: the reference's parse ---------------------------------------------------------------------
def test_reference_parse_emulates_the_quote_replacement():
    assert steam_records.reference_parse("{u'a': u'plain', u'n': 1.5, u'b': False}") == {
        "a": "plain",
        "n": 1.5,
        "b": False,
    }
    assert steam_records.reference_parse("""{u'a': u"it's"}""") is None  # an apostrophe
    assert steam_records.reference_parse("{u'a': u'caf\\xe9'}") is None  # a \\x escape
    assert steam_records.reference_parse("{u'a': u'caf\\u00e9'}") == {"a": "caf\u00e9"}
    assert steam_records.reference_parse("{u'user': u'Baku'}") == {
        "user": "Bak"
    }  # the closing u' is replaced
    assert steam_records.reference_parse("{u'tag': u'True Story'}") == {"tag": "true Story"}
    assert steam_records.reference_parse("not a dict") is None


def test_real_games_sample_loses_four_games_under_the_reference_parse():
    path = shared_dataset("steam-format-sample") / "steam_games.sample.json"
    removed: Counter[str] = Counter()
    games = steam_games.read_games(
        path, False, BadLines(False, removed), removed, reference_parse=True, reference_text=True
    )
    assert games.height == 21
    assert removed == Counter({"reference_unparseable_lines:steam_games.sample.json": 4})
    lost = {"565000", "565001", "565002", "559800"}  # names with an apostrophe
    assert not lost & set(games["item_id"].to_list())
    text = dict(zip(games["item_id"], games["text"]))["761140"]
    assert text == (
        "Lost Summoner Kitty | Kotoshiro | Kotoshiro | Action, Casual, Indie, Simulation, Strategy | "
        "Strategy, Action, Indie, Casual, Simulation | Single-player"
    )


def test_steam_fixture_under_reference(tmp_path):
    """The fixture's names with apostrophes or escaped accents lose nearly every line."""
    data = prepare("steam", [FIXTURES / "steam"], tmp_path, PrepareOptions.reference(source="steam", kcore=0))
    assert data.manifest["removed"]["source"] == {
        "reference_unparseable_lines:steam_reviews.json": 8,  # Ann O'Hara, bj\\xf6rn, an emoji
        "reviews_without_username": 1,
        "reference_unparseable_lines:steam_games.json": 3,  # Baker's Dozen (twice), Lou\\'s Revenge
        "games_without_id": 1,
    }
    assert data.manifest["removed"]["items_without_text"]["interactions"] == 1  # Zed's 900002 lost its game
    assert _sequences(data) == {"Zed": ["900004"]}
    assert data.items["text"].to_list() == [
        "Null Pointer | Null Ltd | Null Ltd | Simulation | Simulation, Programming | Single-player, Steam Achievements"
    ]
    ours = prepare("steam", [FIXTURES / "steam"], tmp_path / "ours", PrepareOptions(kcore=0))
    assert ours.num_interactions == 8


# ---- the CLI -------------------------------------------------------------------------------------------
def test_cli_reference_and_flags(tmp_path, capsys):
    assert main(["prepare", "ml-latest-small", "--reference", "--out", str(tmp_path / "ref")]) == 0
    out = capsys.readouterr().out
    assert "items         9,742" in out and "without interactions: 18" in out and "order: reference" in out
    manifest = json.loads((tmp_path / "ref" / "manifest.json").read_text())
    assert manifest["options"]["item_universe"] == "catalogue"
    args = ["prepare", "ml-latest-small", "--out", str(tmp_path / "r")]
    assert main([*args, "--tie-order", "random", "--tie-seed", "3", "--item-universe", "catalogue"]) == 0
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["ties"]["order"] == "random" and manifest["ties"]["seed"] == 3
    assert manifest["num_items"] == 9742
    assert main([*args, "--reference", "--tie-order", "stable"]) == 0  # an explicit flag wins
    assert json.loads((tmp_path / "r" / "manifest.json").read_text())["ties"]["order"] == "stable"
    assert pl.read_parquet(tmp_path / "r" / "items.parquet").height == 9742
