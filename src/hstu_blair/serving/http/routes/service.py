"""``GET /healthz``, ``GET /metrics`` and the web page ``GET /``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hstu_blair.serving.http.context import ServingContext

STATIC = Path(__file__).resolve().parents[2] / "static"
"""The web page's files (``serving/static``)."""


PATH_FIELDS = frozenset({"run_dir", "store"})
"""Fields of ``Recommender.describe`` that are filesystem paths or the store's location (a SQLite
path or a PostgreSQL URL without its password): shown only with the token."""


def router(ctx: ServingContext) -> APIRouter:
    """The service routes over ``ctx``."""
    api = APIRouter(tags=["service"])

    @api.get("/healthz")
    async def healthz(request: Request) -> dict[str, Any]:
        """Liveness and what is served (the model version, its swaps, set-aside store records).
        Filesystem paths and the store's location (``run_dir``, ``store``) only for a request
        carrying the API key."""
        trusted = ctx.auth.carried_by(request)
        rec = ctx.recommender
        fields = {
            "status": "ok",
            "model_calls": rec.model_calls,
            "writes_need_api_key": ctx.auth.required,
            "user_reads_need_token": ctx.auth.required,
            **{k: v for k, v in rec.describe().items() if trusted or k not in PATH_FIELDS},
        }
        fields.update({name: value() for name, value in ctx.health.items()})
        if trusted:
            fields.update({name: value() for name, value in ctx.private_health.items()})
        return fields

    @api.get("/metrics")
    async def prometheus() -> Response:
        """Prometheus metrics: requests, latencies, batch sizes, catalogue size, set-aside store
        records, refusals."""
        return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @api.get("/", include_in_schema=False)
    async def page(
        history: str | None = None,
        k: str | None = None,
        user: str | None = None,
        explain: str | None = None,
        filter: str | None = None,
    ) -> FileResponse:
        """The web page; ``?history=id1,id2&k=10&user=ID&explain=1&filter={JSON}`` is read by its
        script (declared here so that these query parameters are accepted)."""
        return FileResponse(STATIC / "index.html")

    return api
