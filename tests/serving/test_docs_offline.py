"""``/docs`` and ``/redoc`` work without the internet: every script, style and icon they reference
is served by the app itself."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from hstu_blair.serving.app import create_app
from hstu_blair.serving.recommender import Recommender


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_assets_are_served_locally(id_run, page):
    with TestClient(create_app(Recommender.load(id_run, persist=False))) as client:
        reply = client.get(page)
        assert reply.status_code == 200
        html = reply.text
        assert not re.search(r"https?://", html), re.findall(r"https?://[^\s\"']+", html)
        assets = re.findall(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']""", html)
        assets += re.findall(r"""url\s*:\s*["']([^"']+)["']""", html)  # the OpenAPI document
        assert any(a.endswith(".js") for a in assets) and "/openapi.json" in assets
        for asset in assets:
            assert asset.startswith("/"), asset
            assert client.get(asset).status_code == 200, asset
