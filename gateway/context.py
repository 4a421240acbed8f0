"""Per-request context: request id, client address, and the authenticated principal."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException, SerializationException
from litestar.handlers.base import BaseRouteHandler
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from domain.addresses import client_address
from domain.errors import Unauthenticated
from domain.identity.queries import principal_for_access_token
from domain.principal import Principal, RequestMeta

access_log = logging.getLogger("carewire.access")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


#: How a route asks for the caller: resolved by `provide_principal`, 401 without a valid token.
CurrentPrincipal = NamedDependency[Principal]


class JsonRequest(Request[Any, Any, Any]):
    """Litestar's request, refusing as bad input (Litestar turns SerializationException into a
    400) the bodies msgspec fails on with other errors than its own, which would be 500s."""

    async def json(self) -> Any:
        try:
            return await super().json()
        except RecursionError as exc:
            raise SerializationException("JSON is nested too deeply") from exc
        except UnicodeDecodeError as exc:
            raise SerializationException(f"JSON is not valid UTF-8: {exc.reason}") from exc


def require_json_body(connection: ASGIConnection[Any, Any, Any, Any],
                      handler: BaseRouteHandler) -> None:
    """Guard: a route that reads a JSON body refuses another declared media type with a 415.
    (No Content-Type at all is read as JSON.)"""
    if "data" not in handler.parsed_fn_signature.parameters:
        return
    declared = connection.headers.get("content-type")
    if not declared:
        return
    media_type = declared.split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise HTTPException(status_code=415,
                            detail=f"send application/json, not {media_type!r}")


def request_meta(request: Request[Any, Any, Any]) -> RequestMeta:
    return RequestMeta(
        request_id=request.scope.get("state", {}).get("request_id", ""),
        ip=client_address(request.scope),
    )


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        raise Unauthenticated("missing bearer token")
    principal = await principal_for_access_token(token, request_meta(request))
    request.scope.setdefault("state", {})["principal"] = principal
    return principal


def request_id_middleware(app: ASGIApp) -> ASGIApp:
    """Give every request an id (the caller's X-Request-ID when sane), echo it, log the line.

    The log line has method, path, status and time: never bodies or query strings (PHI).
    """

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await app(scope, receive, send_with_id)
        finally:
            access_log.info(
                "%s %s %s %.1fms request_id=%s", scope["method"], scope["path"], status,
                (time.perf_counter() - started) * 1000, rid,
            )

    return middleware
