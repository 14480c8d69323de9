"""PNG plots: metrics per model with error bars, and validation curves per epoch."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hstu_blair.reports.runs import RunRecord


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colors(n: int) -> list:
    """One colour per model, the same model order (and colours) in every plot."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def plot_metrics(
    dataset: str, models: dict[str, list[RunRecord]], columns: tuple[str, ...], out: Path
) -> Path:
    """Grouped bars: one group per metric, one bar per model, error bars = std over seeds."""
    plt = _pyplot()
    labels = list(models)
    x = np.arange(len(columns))
    width = 0.8 / max(1, len(labels))
    fig, ax = plt.subplots(figsize=(1.6 * len(columns) + 2, 4.2))
    for i, (color, label) in enumerate(zip(_colors(len(labels)), labels)):
        values = np.array([[r.metrics.get(c, np.nan) for c in columns] for r in models[label]])  # (seeds, C)
        mean = np.nanmean(values, axis=0)
        std = np.nanstd(values, axis=0, ddof=1) if values.shape[0] > 1 else np.zeros(len(columns))
        ax.bar(
            x + (i - (len(labels) - 1) / 2) * width,
            mean,
            width,
            yerr=std,
            capsize=3,
            color=color,
            label=f"{label} (n={values.shape[0]})",
        )
    ax.set_xticks(x, [c.upper() for c in columns])
    ax.set_ylabel("value (mean ± std over seeds)")
    ax.set_title(f"{dataset}: test metrics")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_validation_curves(
    dataset: str, models: dict[str, list[RunRecord]], metric: str, out: Path
) -> Path | None:
    """Validation ``metric`` per epoch, mean over seeds with a ± std band, one line per model."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    drawn = False
    for color, (label, runs) in zip(_colors(len(models)), models.items()):
        per_seed = []
        for run in runs:
            points = {}
            for rec in run.history:
                split = "valid" if "valid" in rec else "test" if "test" in rec else None
                if split and metric in rec[split]:
                    points[rec["epoch"]] = rec[split][metric]
            if points:
                per_seed.append(points)
                ax.plot(sorted(points), [points[e] for e in sorted(points)], color=color, alpha=0.25, lw=0.8)
        if not per_seed:
            continue
        # the mean only where every seed is still training (early stopping ends seeds at different epochs)
        common = sorted(set.intersection(*(set(p) for p in per_seed)))
        values = np.array([[p[e] for e in common] for p in per_seed])  # (seeds, epochs)
        mean = values.mean(axis=0)
        std = values.std(axis=0, ddof=1) if len(per_seed) > 1 else np.zeros_like(mean)
        ax.plot(common, mean, color=color, lw=2, label=f"{label} (n={len(per_seed)})")
        ax.fill_between(common, mean - std, mean + std, color=color, alpha=0.15)
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation {metric.upper()}")
    ax.set_title(
        f"{dataset}: validation {metric.upper()} per epoch\n(thick: mean ± std while all seeds run; thin: each seed)"
    )
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
