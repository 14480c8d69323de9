"""The web page, end to end in headless Chromium against a real server (skipped without Chromium)."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import urllib.parse
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


def test_page_shows_filters_and_reasons(id_run, tmp_path):
    rec = Recommender.load(id_run, persist=False)
    history = ["i1", "i2", "i3"]
    item_filter = {"where": {"in_stock": True, "category": "g2"}, "exclude": ["i12"]}
    expected = rec.recommend(history, k=4, filter=item_filter, explain=True)
    assert len(expected) == 4
    query = urllib.parse.urlencode(
        {"history": ",".join(history), "k": 4, "explain": 1, "filter": json.dumps(item_filter)}
    )
    with running_server(create_app(rec)) as url:
        dom = chromium(f"{url}/?{query}", tmp_path / "profile", "--dump-dom").stdout
    # the filter controls come from GET /attributes and show the filter of the URL
    assert re.search(r'<select data-attribute="category" data-kind="string">', dom)
    assert re.search(r'<select data-attribute="in_stock" data-kind="bool">', dom)
    assert re.search(r'<input [^>]*data-attribute="price" data-bound="min"', dom)
    summary = re.search(r'<p class="muted" id="filter-summary">filter: ([^<]*)</p>', dom)
    assert summary and json.loads(html.unescape(summary.group(1))) == item_filter  # what the page sends
    # the list is the filtered one, each row with its reasons (titles of history items)
    assert re.findall(r'<td class="rec-title">([^<]*)</td>', dom) == [r.title for r in expected]
    cells = re.findall(r'<td class="reasons">(.*?)</td>', dom)
    shown = [re.findall(r'<span class="reason"[^>]*>([^<]*)</span>', c) for c in cells]
    assert shown == [[x.title for x in r.reasons] for r in expected]
    assert any(shown) and all(t in {rec.item(h)["title"] for h in history} for s in shown for t in s)
    assert "Because of" in dom
