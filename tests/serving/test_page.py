"""The web page, end to end in headless Chromium against a real server (skipped without Chromium)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from hstu_blair.serving.app import create_app
from hstu_blair.serving.recommender import Recommender
from tests.conftest import running_server

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="headless browser test needs /usr/bin/chromium (apt-get install chromium)"
)


def chromium(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    """Load ``url`` in headless Chromium, letting the page's scripts and fetches finish (virtual time)."""
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--window-size=1200,800",
        "--virtual-time-budget=10000",
        *extra,
        url,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


def test_page_renders_recommendations(id_run, tmp_path):
    rec = Recommender.load(id_run)
    history = ["i1", "i2", "i3"]
    expected = [r.title for r in rec.recommend(history, k=6)]
    with running_server(create_app(rec)) as url:
        page = f"{url}/?history={','.join(history)}&k=6"
        dom = chromium(page, tmp_path / "profile", "--dump-dom").stdout
        shot = tmp_path / "page.png"
        chromium(page, tmp_path / "profile2", f"--screenshot={shot}")
    rendered = re.findall(r'<td class="rec-title">([^<]*)</td>', dom)
    assert rendered == expected
    assert "hstu · fusion id · tiny · 40 items" in dom  # the header filled from /healthz
    assert re.findall(r'<span class="history-title">([^<]*)</span>', dom) == history  # the history, by title
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    if os.environ.get("HSTU_BLAIR_SCREENSHOT"):  # keep a copy, e.g. for docs/
        shutil.copy(shot, os.environ["HSTU_BLAIR_SCREENSHOT"])
