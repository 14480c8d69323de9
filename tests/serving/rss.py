"""Peak resident memory of this process while a block runs (sampled from /proc, Linux only)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


@contextlib.contextmanager
def peak_rss_growth(interval_s: float = 0.002) -> Iterator[list[int]]:
    """Yields a list that holds, after the block, the largest RSS growth (bytes) seen during it."""
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc (Linux)")
    base, peak, done = rss_bytes(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_bytes() - base)
            done.wait(interval_s)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    result: list[int] = []
    try:
        yield result
    finally:
        done.set()
        thread.join()
        result.append(max(peak[0], rss_bytes() - base))
