"""Dataset statistics for ``hstu-blair stats``: sizes, sequence-length percentiles, density, filters."""

from __future__ import annotations

from typing import Any

import numpy as np

from hstu_blair.data.dataset import SequenceData

PERCENTILES = (5, 25, 50, 75, 90, 95, 99)


def summarize(data: SequenceData) -> dict[str, Any]:
    """Sizes, density, sequence-length distribution, split sizes and the filter report of a dataset."""
    lengths = data.lengths
    split = data.split("loo")
    return {
        "name": data.name,
        "source": data.manifest.get("source"),
        "users": data.num_users,
        "items": data.num_items,
        "interactions": data.num_interactions,
        "density": data.num_interactions / max(1, data.num_users * data.num_items),
        "sequence_length": {
            "min": int(lengths.min()),
            "mean": float(lengths.mean()),
            "max": int(lengths.max()),
            **{f"p{p}": float(np.percentile(lengths, p)) for p in PERCENTILES},
        },
        "items_with_empty_text": data.manifest.get("items_with_empty_text", 0),
        "items_without_interactions": data.manifest.get("num_items_without_interactions", 0),
        "ties": data.manifest.get("ties", {}),
        "reviews": data.manifest.get("num_reviews", 0),
        "eval_users": {"loo": len(split.test), "skipped": split.skipped},
        "removed": data.manifest.get("removed", {}),
        "bad_lines": data.manifest.get("bad_lines", {}),
    }


def skipped_in_words(skipped: dict[str, int]) -> str:
    """``{"users_without_eval_targets": 3, ...}`` -> ``"3 users without evaluation targets, ..."``
    (``"nothing skipped"`` when every count is 0)."""
    words = {"eval": "evaluation", "valid": "validation"}
    parts = [f"{n:,} {' '.join(words.get(w, w) for w in key.split('_'))}" for key, n in skipped.items() if n]
    return ", ".join(parts) + " skipped" if parts else "nothing skipped"


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable multi-line text of :func:`summarize`'s result."""
    s = summary
    sl = s["sequence_length"]
    lines = [
        f"dataset       {s['name']} (source: {s['source']})",
        f"users         {s['users']:,}",
        f"items         {s['items']:,}   (empty text: {s['items_with_empty_text']:,}, "
        f"without interactions: {s['items_without_interactions']:,})",
        f"interactions  {s['interactions']:,}",
        f"density       {s['density']:.6f}",
        f"reviews/tags  {s['reviews']:,}",
        "seq. length   min {min}  mean {mean:.1f}  max {max}".format(**sl),
        "  percentiles " + "  ".join(f"p{p} {sl[f'p{p}']:.0f}" for p in PERCENTILES),
        f"eval users    {s['eval_users']['loo']:,} (leave-one-out; {skipped_in_words(s['eval_users']['skipped'])})",
        _ties_line(s["ties"]),
        *_bad_lines_line(s.get("bad_lines", {})),
        "filter report (what each step removed):",
    ]
    if not s["removed"]:
        lines.append("  nothing removed")
    for step, counts in s["removed"].items():
        parts = ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in counts.items())
        lines.append(f"  {step:<20} {parts}")
    return "\n".join(lines)


def _ties_line(ties: dict[str, Any]) -> str:
    """One line on equal timestamps within a user and how their order was chosen."""
    if not ties:
        return "ties          (not recorded)"
    return (
        f"ties          {ties.get('interactions', 0):,} interactions in {ties.get('groups', 0):,} "
        f"same-time groups, order: {ties.get('order', 'stable')}"
    )


def _bad_lines_line(bad_lines: dict[str, Any]) -> list[str]:
    """The line on input lines skipped with ``--skip-bad-lines`` (none when nothing was skipped)."""
    if not bad_lines:
        return []
    problems = ", ".join(f"{k} {n:,}" for k, n in bad_lines.get("by_problem", {}).items())
    return [
        f"bad lines     {bad_lines['count']:,} skipped (--skip-bad-lines): file, line, field and "
        f"reason of each in {bad_lines['file']} (hstu-blair -v prepare prints them)",
        *([f"  by problem  {problems}"] if problems else []),
    ]
