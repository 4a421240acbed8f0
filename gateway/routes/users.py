from __future__ import annotations

from litestar import Router, get

from domain.identity import queries
from gateway.context import CurrentPrincipal
from gateway.routes import AUTHENTICATED


@get("/me", permission=AUTHENTICATED)
async def me(principal: CurrentPrincipal) -> queries.Me:
    return await queries.me(principal)


router = Router(path="/users", route_handlers=[me], tags=["identity"])
