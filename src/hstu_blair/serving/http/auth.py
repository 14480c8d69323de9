"""The write token: ``Authorization: Bearer <token>``, compared in constant time.

Routes that change state declare ``dependencies=auth.dependencies``; the token is then checked
twice: by :class:`~hstu_blair.serving.http.limits.RequestGuard` before the body is read (401 even
for a malformed or huge body) and by the dependency (which also marks the route in OpenAPI).
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import Depends, HTTPException
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

BEARER = HTTPBearer(auto_error=False, description="the server's API key (hstu-blair serve --api-key)")
"""Reads ``Authorization: Bearer <token>`` (module level: FastAPI resolves annotations in module globals)."""

MISSING = "this endpoint needs the server's API key as 'Authorization: Bearer <token>'"
WRONG = "wrong API key"


class WriteAuth:
    """The token write routes require (``None``: writes are open).

    Args:
        api_key: the token; compared in constant time against the header's bytes as sent.

    Raises:
        ValueError: ``api_key`` is an empty string.
    """

    def __init__(self, api_key: str | None) -> None:
        if api_key is not None and not api_key:
            raise ValueError("api_key is empty: give a token, or None to leave writes open")
        self._expected = None if api_key is None else api_key.encode("utf-8")

    @property
    def required(self) -> bool:
        return self._expected is not None

    @property
    def dependencies(self) -> list[Any]:
        """``dependencies=`` for a write route (empty when writes are open)."""
        return [Depends(self.require)] if self.required else []

    def problem(self, authorization: str | None) -> str | None:
        """Why a request with this ``Authorization`` header may not write (None: it may)."""
        if self._expected is None:
            return None
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return MISSING
        if not hmac.compare_digest(token.encode("latin-1"), self._expected):  # the header's bytes
            return WRONG
        return None

    def carried_by(self, request: HTTPConnection) -> bool:
        """Whether ``request`` carries the token (always False when no token is set)."""
        return self.required and self.problem(request.headers.get("authorization")) is None

    def protects(self, route: Any) -> bool:
        """Whether ``route`` requires the token (declared with :attr:`dependencies`)."""
        if not self.required or not isinstance(route, APIRoute):
            return False
        return any(d.call == self.require for d in route.dependant.dependencies)

    def require(self, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]) -> None:
        """401 unless the request carries ``Authorization: Bearer <api_key>``."""
        header = None if credentials is None else f"{credentials.scheme} {credentials.credentials}"
        problem = self.problem(header)
        if problem is not None:
            raise unauthorized(problem)


def unauthorized(problem: str) -> HTTPException:
    challenge = "Bearer" if problem == MISSING else 'Bearer error="invalid_token"'
    return HTTPException(401, problem, headers={"WWW-Authenticate": challenge})
