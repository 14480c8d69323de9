"""Splits: leave-one-out protocols and the global temporal split, on hand-built sequences."""

from __future__ import annotations

import numpy as np
import pytest

from hstu_blair.data.splits import cutoff_seconds, make_split, make_temporal_split, refit_split
from hstu_blair.errors import ConfigError

# four users, chronological: u0 10..50, u1 5..55, u2 only after the cutoff, u3 only before
TIMES = np.array([10, 20, 30, 40, 50, 5, 15, 45, 55, 60, 70, 1, 2, 3])
OFFSETS = np.array([0, 5, 9, 11, 14])


def _pairs(targets):
    return list(zip(targets.users.tolist(), targets.positions.tolist()))


def test_loo_and_reference():
    loo = make_split(np.array([5, 2, 3]), "loo")
    assert loo.train_len.tolist() == [3, 0, 1]
    assert _pairs(loo.valid) == [(0, 3), (2, 1)] and _pairs(loo.test) == [(0, 4), (2, 2)]
    ref = make_split(np.array([5, 2, 3]), "reference")
    assert ref.valid is None and _pairs(ref.test) == [(0, 4), (1, 1), (2, 2)]
    with pytest.raises(ConfigError, match="no validation"):
        ref.targets("valid")


def test_temporal_next_targets():
    split = make_temporal_split(OFFSETS, TIMES, cutoff=40, valid_cutoff=25, targets="next")
    assert split.protocol == "temporal"
    assert split.train_len.tolist() == [2, 2, 0, 3]  # everything before the validation cutoff
    assert _pairs(split.valid) == [(0, 2)]  # u0 at t=30; nobody else acts in [25, 40)
    assert _pairs(split.test) == [(0, 3), (1, 2)]  # u2's first act has no history: counted
    assert split.skipped["test_targets_without_history"] == 1
    assert split.skipped["users_without_training_pairs"] == 1  # u2
    assert split.info["cutoff"] == 40 and split.info["valid_cutoff"] == 25


def test_temporal_all_targets_and_no_validation():
    split = make_temporal_split(OFFSETS, TIMES, cutoff=40, valid_cutoff="none", targets="all")
    assert split.valid is None
    assert split.train_len.tolist() == [3, 2, 0, 3]  # training runs up to the cutoff
    assert _pairs(split.test) == [(0, 3), (0, 4), (1, 2), (1, 3), (2, 1)]


def test_cutoffs_as_quantiles_and_dates():
    times = np.arange(100)
    assert cutoff_seconds(0.9, times) == 90
    assert cutoff_seconds("1970-01-01T00:01:00", times) == 60
    assert cutoff_seconds("1970-01-02", times) == 86_400
    assert cutoff_seconds(1_600_000_000, times) == 1_600_000_000
    # default validation period: as many interactions before the cutoff as after it
    split = make_temporal_split(np.array([0, 100]), times, cutoff=0.9)
    assert split.info["cutoff"] == 90 and split.info["valid_cutoff"] == 80
    with pytest.raises(ConfigError, match="ISO date"):
        cutoff_seconds("next tuesday", times)
    with pytest.raises(ConfigError, match="before data.cutoff"):
        make_temporal_split(OFFSETS, TIMES, cutoff=25, valid_cutoff=40)
    with pytest.raises(ConfigError, match="no test target"):
        make_temporal_split(OFFSETS, TIMES, cutoff=1000, valid_cutoff=25)
    with pytest.raises(ConfigError, match="valid_cutoff"):
        make_temporal_split(OFFSETS, TIMES, cutoff=0.3)  # 70% after the cutoff: no default


def test_refit_split_trains_up_to_the_test_target():
    split = make_split(np.array([5, 3, 2]), "loo")
    refit = refit_split(split)
    assert refit.train_len.tolist() == [4, 2, split.train_len[2]]
    assert refit.valid is None
    assert refit.test is split.test
    with pytest.raises(ConfigError, match="refit"):
        refit_split(make_split(np.array([5, 3]), "reference"))
