"""Helpers shared by the subcommand modules."""

from __future__ import annotations

import argparse


def add_set_option(p: argparse.ArgumentParser, help: str) -> None:
    """The repeatable ``--set section.key=value`` config override."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help)


def print_comparison(metrics: dict, baseline: dict, title: str) -> None:
    """The ranking metrics of ``baseline`` beside ``metrics`` as a ratio (model / baseline)."""
    print(f"{title}:")
    for key, value in baseline.items():
        if ("@" in key or key == "mrr") and isinstance(value, float) and key in metrics:
            ratio = f"{metrics[key] / value:.2f}x" if value > 0 else "-"
            print(f"  {key:<22} {value:.4f}   model {ratio}")


def print_metrics(metrics: dict, title: str) -> None:
    """A titled two-column list of metric names and values."""
    print(title)
    for key, value in metrics.items():
        print(f"  {key:<22} {value:.4f}" if isinstance(value, float) else f"  {key:<22} {value}")
