"""The waiting-room screen: a static page that authenticates with a board token carried in the
URL fragment (never sent to the server in a request line, so never in a log)."""

from __future__ import annotations

import uuid
from pathlib import Path

from litestar import Response, get
from litestar.params import FromPath

from gateway.routes import PUBLIC

_PAGE = (Path(__file__).parent.parent / "static" / "board.html").read_bytes()


@get("/boards/{queue_id:str}", permission=PUBLIC, include_in_schema=False)
async def board_page(queue_id: FromPath[uuid.UUID]) -> Response[bytes]:
    return Response(_PAGE, media_type="text/html", headers={
        "Cache-Control": "no-store",
        "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline'; "
                                   "style-src 'unsafe-inline'; connect-src 'self'",
        "Referrer-Policy": "no-referrer",
    })
