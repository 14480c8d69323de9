"""The HTTP service's parts, assembled by :func:`hstu_blair.serving.app.create_app`.

- :mod:`.schemas`: request and response bodies (pydantic), the 422 handler;
- :mod:`.limits`: :class:`~.limits.RequestGuard` (body size, token) and the work checks of the
  limits in :class:`hstu_blair.serving.limits.Limits`;
- :mod:`.query_params`: unknown query parameters refused (422), from each route's signature;
- :mod:`.auth`: the write token; :mod:`.metrics`: Prometheus metrics and their middleware;
- :mod:`.batcher`: the micro-batcher; :mod:`.context`: what the routers share;
- :mod:`.routes`: one module per group of endpoints (recommend, items, service).
"""
