"""The write token and the read token: ``Authorization: Bearer <token>``, compared in constant time.

Routes that change state declare ``dependencies=auth.dependencies``, routes that reveal a user's
history ``dependencies=auth.read_dependencies``; the token is then checked twice: by
:class:`~hstu_blair.serving.http.limits.RequestGuard` before the body is read (401 even for a
malformed or huge body) and by the dependency (which also marks the route in OpenAPI). A route
that reveals a history only for some bodies (``/recommend`` by ``user_id``) calls :meth:`WriteAuth.check`.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any, Literal

from fastapi import Depends, HTTPException
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

BEARER = HTTPBearer(auto_error=False, description="the server's API key (hstu-blair serve --api-key)")
"""Reads ``Authorization: Bearer <token>`` (module level: FastAPI resolves annotations in module globals)."""

MISSING = "this endpoint needs the server's API key as 'Authorization: Bearer <token>'"
MISSING_READ = "this endpoint needs the server's read key or API key as 'Authorization: Bearer <token>'"
WRONG = "wrong API key"
Level = Literal["read", "write"]


class WriteAuth:
    """The tokens: the write token (``api_key``; ``None``: every route is open) and the read token.

    With a write token, routes that change state need it, and routes that reveal a user's history
    (``GET /users/{id}/recommendations``, ``/recommend`` by ``user_id``) need it or the read
    token: a front end can hold the read token without being able to write.

    Args:
        api_key: the write token; compared in constant time against the header's bytes as sent.
        read_key: the read token (needs ``api_key``, and must differ from it).

    Raises:
        ValueError: an empty token, a read token without a write token, or the same token twice.
    """

    def __init__(self, api_key: str | None, read_key: str | None = None) -> None:
        if api_key is not None and not api_key:
            raise ValueError("api_key is empty: give a token, or None to leave writes open")
        if read_key is not None and not read_key:
            raise ValueError("read_key is empty: give a token, or None for no read token")
        if read_key is not None and api_key is None:
            raise ValueError("a read key needs an API key: without one writes are open to anyone; set both")
        if read_key is not None and read_key == api_key:
            raise ValueError("the read key must differ from the API key (a reader could write)")
        self._expected = None if api_key is None else api_key.encode("utf-8")
        self._readers = [] if read_key is None else [read_key.encode("utf-8")]

    @property
    def required(self) -> bool:
        return self._expected is not None

    @property
    def dependencies(self) -> list[Any]:
        """``dependencies=`` for a write route (empty when writes are open)."""
        return [Depends(self.require)] if self.required else []

    @property
    def read_dependencies(self) -> list[Any]:
        """``dependencies=`` for a route revealing a user's history (empty when no token is set)."""
        return [Depends(self.require_read)] if self.required else []

    def problem(self, authorization: str | None, level: Level = "write") -> str | None:
        """Why a request with this ``Authorization`` header may not do what ``level`` says (None: it may)."""
        if self._expected is None:
            return None
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return MISSING if level == "write" else MISSING_READ
        sent = token.encode("latin-1")  # the header's bytes
        accepted = [self._expected, *(self._readers if level == "read" else [])]
        if not any([hmac.compare_digest(sent, expected) for expected in accepted]):  # each compared
            return WRONG
        return None

    def carried_by(self, request: HTTPConnection) -> bool:
        """Whether ``request`` carries the write token (always False when no token is set)."""
        return self.required and self.problem(request.headers.get("authorization")) is None

    def level_of(self, route: Any) -> Level | None:
        """The token ``route`` requires (declared with :attr:`dependencies` or
        :attr:`read_dependencies`), or None."""
        if not self.required or not isinstance(route, APIRoute):
            return None
        calls = {d.call for d in route.dependant.dependencies}
        return "write" if self.require in calls else "read" if self.require_read in calls else None

    def protects(self, route: Any) -> bool:
        """Whether ``route`` requires the write token (declared with :attr:`dependencies`)."""
        return self.level_of(route) == "write"

    def check(self, authorization: str | None, level: Level) -> None:
        """401 unless the ``Authorization`` header allows ``level``."""
        problem = self.problem(authorization, level)
        if problem is not None:
            raise unauthorized(problem)

    def require(self, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]) -> None:
        """401 unless the request carries ``Authorization: Bearer <api_key>``."""
        self.check(_header(credentials), "write")

    def require_read(
        self, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]
    ) -> None:
        """401 unless the request carries the read token or the write token."""
        self.check(_header(credentials), "read")


def _header(credentials: HTTPAuthorizationCredentials | None) -> str | None:
    return None if credentials is None else f"{credentials.scheme} {credentials.credentials}"


def unauthorized(problem: str) -> HTTPException:
    challenge = "Bearer" if problem in (MISSING, MISSING_READ) else 'Bearer error="invalid_token"'
    return HTTPException(401, problem, headers={"WWW-Authenticate": challenge})
