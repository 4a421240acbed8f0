from __future__ import annotations

import uuid

from litestar import Router, get, post
from litestar.params import FromPath

from domain.identity import queries
from domain.paging import Page
from domain.tenancy import commands as tenancy
from domain.tenancy import queries as tenancy_queries
from domain.tenancy.models import Member, MyInvitation
from gateway.context import CurrentPrincipal
from gateway.routes import AUTHENTICATED


@get("/me", permission=AUTHENTICATED)
async def me(principal: CurrentPrincipal) -> queries.Me:
    return await queries.me(principal)


@get("/me/invitations", permission=AUTHENTICATED)
async def my_invitations(principal: CurrentPrincipal) -> Page[MyInvitation]:
    """The clinics asking the caller to join: pending and unexpired, the caller's own only."""
    return await tenancy_queries.my_invitations(principal)


@post("/me/invitations/{invitation_id:str}/accept", permission=AUTHENTICATED, status_code=200)
async def accept_invitation(
    principal: CurrentPrincipal, invitation_id: FromPath[uuid.UUID]
) -> Member:
    """Join the clinic: the membership exists from here on. Someone else's invitation is 404;
    an answered or expired one is 409."""
    return await tenancy.accept_invitation(principal, invitation_id)


@post("/me/invitations/{invitation_id:str}/decline", permission=AUTHENTICATED, status_code=204)
async def decline_invitation(
    principal: CurrentPrincipal, invitation_id: FromPath[uuid.UUID]
) -> None:
    await tenancy.decline_invitation(principal, invitation_id)


router = Router(path="/users", route_handlers=[me, my_invitations, accept_invitation,
                                               decline_invitation], tags=["identity"])
