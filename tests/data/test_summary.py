"""``hstu-blair stats`` text: skip counts in words."""

from __future__ import annotations

from hstu_blair.data.summary import skipped_in_words


def test_skipped_counts_in_words():
    assert skipped_in_words({"users_without_eval_targets": 0, "users_without_training_pairs": 0}) == (
        "nothing skipped"
    )
    text = skipped_in_words({"users_without_eval_targets": 1_234, "valid_targets_without_history": 2})
    assert text == "1,234 users without evaluation targets, 2 validation targets without history skipped"
    assert "{" not in text and "_" not in text
