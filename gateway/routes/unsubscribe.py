"""One-click unsubscribe (RFC 8058): no login, the signed token in the link decides. A mail
client POSTs `List-Unsubscribe=One-Click` to the link; a person who opens it gets a page with
a button that POSTs the same. A GET never changes anything (link scanners fetch every link)."""

from __future__ import annotations

import html
from typing import Annotated, Any

from litestar import Request, Response, Router, get, post
from litestar.params import PathParameter

from domain import ratelimit, settings
from domain.communication import unsubscribe as links
from gateway.context import request_meta
from gateway.routes import PUBLIC

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<meta name="robots" content="noindex"><title>Unsubscribe</title></head>
<body><main><h1>Unsubscribe</h1>
<p>Stop receiving these emails at this address?</p>
<form method="post" action="{action}"><input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">Unsubscribe</button></form></main></body></html>
"""
#: A JWT: base64url parts joined by dots.
Token = Annotated[str, PathParameter(max_length=4096, pattern=r"^[A-Za-z0-9_=-]+(\.[A-Za-z0-9_=-]+)*$")]
_DONE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<meta name="robots" content="noindex"><title>Unsubscribed</title></head>
<body><main><h1>Unsubscribed</h1><p>You will not get these emails any more.</p></main></body></html>
"""
_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
            "Content-Security-Policy": "default-src 'none'; form-action 'self'"}


async def _limited(request: Request[Any, Any, Any]) -> None:
    await ratelimit.consume("unsubscribe-ip", request_meta(request).ip or "unknown",
                            limit=settings.get().unsubscribe_attempts_per_ip, window_seconds=60)


@get("/{token:str}", permission=PUBLIC, media_type="text/html",
     summary="The unsubscribe page: a button that POSTs to the same link; changes nothing")
async def unsubscribe_page(request: Request[Any, Any, Any], token: Token) -> Response[str]:
    await _limited(request)
    links.read(token)  # a forged link gets a problem, not a page
    return Response(_PAGE.format(action=html.escape(request.url.path, quote=True)),
                    media_type="text/html", headers=_HEADERS)


@post("/{token:str}", permission=PUBLIC, status_code=200,
      summary="One-click unsubscribe (RFC 8058): stops this kind of email to this address")
async def unsubscribe(request: Request[Any, Any, Any],
                      token: Token) -> Response[links.Unsubscribed | str]:
    """The body is whatever the mail client sends (`List-Unsubscribe=One-Click`, form-encoded),
    or nothing; only the token counts. Idempotent. A browser (the page's button, `Accept:
    text/html`) gets a page saying it is done; anyone else the JSON."""
    await _limited(request)
    done = await links.unsubscribe(token)
    if "text/html" in request.headers.get("accept", ""):
        return Response(_DONE, media_type="text/html", headers=_HEADERS)
    return Response(done)


router = Router(path="/unsubscribe", tags=["communication"], security=[{}],
                route_handlers=[unsubscribe_page, unsubscribe])
