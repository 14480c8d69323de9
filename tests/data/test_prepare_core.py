"""Filtering, id assignment, ordering, splits and the prepared-directory contract."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from hstu_blair.data import filters
from hstu_blair.data.dataset import SequenceData, write_dataset
from hstu_blair.data.prepare import PrepareOptions, filter_raw
from hstu_blair.data.splits import make_split
from hstu_blair.errors import DataFormatError, EmptyDatasetError
from tests.conftest import make_raw


def _write(raw, tmp_path, **opts):
    options = PrepareOptions(**opts)
    kept, removed = filter_raw(raw, options)
    write_dataset(raw, kept, removed, options.to_dict(), tmp_path)
    return SequenceData.load(tmp_path)


def test_ids_order_and_tie_break(tmp_path):
    rows = [("10", "b", 5), ("2", "a", 7), ("10", "c", 5), ("10", "a", 1), ("2", "b", 7)]
    data = _write(make_raw(rows), tmp_path)
    # users in numeric raw-id order: "2" -> 0, "10" -> 1; items lexicographic a,b,c -> 1,2,3
    assert data.sequences["user_id"].to_list() == ["2", "10"]
    assert data.items["item_id"].to_list() == ["a", "b", "c"]
    # user 10: a@1, then b and c tie at t=5 -> file order (b before c)
    assert data.user_items(1).tolist() == [1, 2, 3]
    assert data.user_items(0).tolist() == [1, 2]  # tie at 7, file order a then b
    assert data.item_ids[1] == "a" and data.item_ids[0] is None
    assert data.item_indices(["c", "a"]).tolist() == [3, 1]
    with pytest.raises(LookupError, match="zzz"):
        data.item_indices(["zzz"])


def test_duplicates_and_items_without_text_are_counted(tmp_path):
    rows = [("u", "a", 1), ("u", "a", 1), ("u", "b", 2), ("u", "x", 3), ("u", "a", 4)]
    raw = make_raw(rows, texts={"a": "A text", "b": "B text", "x": "  "})
    data = _write(raw, tmp_path)
    removed = data.manifest["removed"]
    assert removed["duplicates"]["interactions"] == 1
    assert removed["items_without_text"] == {"interactions": 1, "users": 0, "items": 1}
    assert data.user_items(0).tolist() == [1, 2, 1]  # the repeat at a later time is kept
    kept = _write(raw, tmp_path / "keep", items_without_text="keep", duplicates="keep")
    assert kept.num_interactions == 5
    assert kept.manifest["items_with_empty_text"] == 1


def test_first_occurrences_matches_a_plain_python_definition():
    rng = np.random.default_rng(5)
    for _ in range(200):
        n = int(rng.integers(1, 80))
        users, items, times = (rng.integers(0, int(rng.integers(1, 5)), n) for _ in range(3))
        seen, expected = set(), []
        for triple in zip(users.tolist(), items.tolist(), times.tolist()):
            expected.append(triple not in seen)
            seen.add(triple)
        assert filters.first_occurrences(users, items, times).tolist() == expected


def test_reviews_keep_kept_items_with_text_in_source_order(tmp_path):
    raw = make_raw([("u", "a", 1), ("u", "b", 2)], texts={"a": "A", "b": "B", "z": "Z"})
    raw.reviews = pl.DataFrame(
        {
            "user_id": ["x", "y", "x", "y", "w"],
            "item_id": ["b", "a", "z", "b", "a"],  # z: not in the kept items
            "text": ["late", "early", "other item", " \t\n", "w\u00e9"],  # a blank text
        }
    )
    data = _write(raw, tmp_path, kcore=0)
    reviews = data.reviews()
    assert reviews.schema == pl.Schema({"user_id": pl.String, "item_idx": pl.Int32, "text": pl.String})
    assert reviews.rows() == [("x", 2, "late"), ("y", 1, "early"), ("w", 1, "w\u00e9")]
    assert data.manifest["num_reviews"] == 3


def _chain_rows():
    # user u1..u3 rate many items; a weak user and weak item interact with each other
    rows = []
    t = 0
    for u in ("u1", "u2", "u3"):
        for i in ("i1", "i2", "i3"):
            t += 1
            rows.append((u, i, t))
    rows += [("weak", "i1", 100), ("weak", "i2", 101), ("weak", "rare", 102), ("u1", "rare", 103)]
    return rows


def _kcore(rows, k, iterative):
    raw = make_raw(rows)
    users, items = filters.code_ids(raw.interactions)
    everything = np.ones(raw.interactions.height, dtype=bool)
    mask, rounds = filters.kcore(users, items, k, everything, iterative=iterative)
    return (
        raw.interactions.filter(pl.Series(mask)),
        filters.removed_counts(users, items, everything, mask),
        rounds,
    )


def test_kcore_iterative_until_stable():
    kept, counts, rounds = _kcore(_chain_rows(), 3, iterative=True)
    per_user = kept.group_by("user_id").len()["len"].min()
    per_item = kept.group_by("item_id").len()["len"].min()
    assert per_user >= 3 and per_item >= 3
    assert counts["items"] == 1 and counts["users"] == 1  # rare item, then weak user
    assert rounds >= 2


def test_kcore_single_pass_matches_reference_semantics():
    kept, counts, rounds = _kcore(_chain_rows(), 3, iterative=False)
    # counts computed once: item 'rare' (2) dropped; 'weak' had 3 rows then 2 -> dropped by the length rule
    assert "rare" not in kept["item_id"].to_list()
    assert "weak" not in kept["user_id"].to_list()
    assert rounds == 1


def test_kcore_matches_a_plain_python_kcore():
    import random

    rng = random.Random(3)
    rows = [(f"u{rng.randrange(40)}", f"i{int(rng.paretovariate(1.2)) % 60}", t) for t in range(900)]
    kept, _, _ = _kcore(rows, 4, iterative=True)
    pairs = [(u, i) for u, i, _ in rows]
    while True:  # the definition, slowly
        cu, ci = {}, {}
        for u, i in pairs:
            cu[u] = cu.get(u, 0) + 1
            ci[i] = ci.get(i, 0) + 1
        left = [(u, i) for u, i in pairs if cu[u] >= 4 and ci[i] >= 4]
        if len(left) == len(pairs):
            break
        pairs = left
    assert list(zip(kept["user_id"], kept["item_id"])) == pairs


def test_empty_after_filter_names_the_filter(tmp_path):
    raw = make_raw([("u", "a", 1), ("v", "b", 2)])
    with pytest.raises(EmptyDatasetError, match="kcore"):
        _write(raw, tmp_path, kcore=5)


def test_manifest_contract(tmp_path):
    data = _write(make_raw(_chain_rows(), source="generic"), tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    for key in (
        "num_users",
        "num_items",
        "num_interactions",
        "removed",
        "timestamp_unit",
        "files",
        "options",
        "package_version",
        "format_version",
        "outputs",
    ):
        assert key in manifest
    assert manifest["timestamp_unit"] == "s"
    seq = pl.read_parquet(tmp_path / "sequences.parquet")
    assert seq.schema["item_idx"] == pl.List(pl.Int32)
    items = pl.read_parquet(tmp_path / "items.parquet")
    assert items["item_idx"].to_list() == list(range(1, data.num_items + 1))
    assert len(data.data_hash) == 64


def test_wrong_format_version(tmp_path):
    _write(make_raw(_chain_rows()), tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["format_version"] = 99
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataFormatError, match="format_version"):
        SequenceData.load(tmp_path)


def test_splits_loo_and_reference():
    lengths = np.array([5, 2, 3])
    loo = make_split(lengths, "loo")
    assert loo.train_len.tolist() == [3, 0, 1]
    assert loo.valid.users.tolist() == [0, 2] and loo.valid.positions.tolist() == [3, 1]
    assert loo.test.positions.tolist() == [4, 2]
    assert loo.skipped["users_without_eval_targets"] == 1
    ref = make_split(lengths, "reference")
    assert ref.valid is None and ref.train_len.tolist() == [4, 1, 2]
    assert ref.test.users.tolist() == [0, 1, 2] and ref.test.positions.tolist() == [4, 1, 2]
    with pytest.raises(ValueError, match="no validation"):
        ref.targets("valid")
