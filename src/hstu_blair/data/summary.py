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
        "reviews": data.manifest.get("num_reviews", 0),
        "eval_users": {"loo": len(split.test), "skipped": split.skipped},
        "removed": data.manifest.get("removed", {}),
    }


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable multi-line text of :func:`summarize`'s result."""
    s = summary
    sl = s["sequence_length"]
    lines = [
        f"dataset       {s['name']} (source: {s['source']})",
        f"users         {s['users']:,}",
        f"items         {s['items']:,}   (empty text: {s['items_with_empty_text']:,})",
        f"interactions  {s['interactions']:,}",
        f"density       {s['density']:.6f}",
        f"reviews/tags  {s['reviews']:,}",
        "seq. length   min {min}  mean {mean:.1f}  max {max}".format(**sl),
        "  percentiles " + "  ".join(f"p{p} {sl[f'p{p}']:.0f}" for p in PERCENTILES),
        f"eval users    {s['eval_users']['loo']:,} (leave-one-out; skipped: {s['eval_users']['skipped']})",
        "filter report (what each step removed):",
    ]
    if not s["removed"]:
        lines.append("  nothing removed")
    for step, counts in s["removed"].items():
        parts = ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in counts.items())
        lines.append(f"  {step:<20} {parts}")
    return "\n".join(lines)
