"""A clinic's suppression list and delivery log, and the caller's own messages."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec
from litestar import Response, Router, delete, get, post
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody

from domain.communication import queries
from domain.communication.commands import suppressions
from domain.communication.models import Channel, Message, Status, Suppression
from domain.paging import Page
from gateway.context import CurrentPrincipal
from gateway.routes import AUTHENTICATED, NO_NUL, Body

Address = Annotated[str, msgspec.Meta(max_length=320, pattern=NO_NUL)]


class SuppressionCreate(Body):
    #: push is refused: dead push tokens are retired, not suppressed.
    channel: Channel
    address: Address
    reason: Literal["manual", "unsubscribe"] = "manual"
    note: Annotated[str, msgspec.Meta(max_length=500, pattern=NO_NUL)] | None = None


@get("/suppressions", permission="communication_settings:read")
async def list_suppressions(
    principal: CurrentPrincipal, clinic_id: FromPath[uuid.UUID],
    channel: FromQuery[Channel | None] = None, address: FromQuery[Address | None] = None,
    limit: FromQuery[int] = 50, cursor: FromQuery[str | None] = None,
) -> Page[Suppression]:
    return await queries.list_suppressions(principal, clinic_id, channel=channel,
                                           address=address, limit=limit, cursor=cursor)


@post("/suppressions", permission="communication_settings:manage", responses={
    200: ResponseSpec(data_container=Suppression,
                      description="Already suppressed: the existing entry, unchanged")})
async def add_suppression(principal: CurrentPrincipal, clinic_id: FromPath[uuid.UUID],
                          data: JSONBody[SuppressionCreate]) -> Response[Suppression]:
    """201 and the entry; an address already suppressed is 200 with the entry as it was.
    Emails are lowercased, phone numbers must be E.164 (400 naming `address`). Audited with
    the address masked."""
    entry, added = await suppressions.add_suppression(
        principal, clinic_id, channel=data.channel, address=data.address, reason=data.reason,
        note=data.note)
    return Response(entry, status_code=201 if added else 200)


@delete("/suppressions/{channel:str}/{address:str}", permission="communication_settings:manage",
        status_code=204)
async def remove_suppression(principal: CurrentPrincipal, clinic_id: FromPath[uuid.UUID],
                             channel: FromPath[str], address: FromPath[str]) -> None:
    """Send to the address again (404 when it is not suppressed). Audited."""
    await suppressions.remove_suppression(principal, clinic_id, channel=channel, address=address)


@get("/messages", permission="communication_messages:read")
async def list_messages(
    principal: CurrentPrincipal, clinic_id: FromPath[uuid.UUID],
    status: FromQuery[Status | None] = None, channel: FromQuery[Channel | None] = None,
    user_id: FromQuery[uuid.UUID | None] = None, since: FromQuery[datetime | None] = None,
    until: FromQuery[datetime | None] = None, limit: FromQuery[int] = 50,
    cursor: FromQuery[str | None] = None,
) -> Page[Message]:
    """Newest first, with attempts, without subject or body."""
    return await queries.list_messages(principal, clinic_id, status=status, channel=channel,
                                       user_id=user_id, since=since, until=until, limit=limit,
                                       cursor=cursor)


@get("/messages/{message_id:str}", permission="communication_messages:read")
async def get_message(principal: CurrentPrincipal, clinic_id: FromPath[uuid.UUID],
                      message_id: FromPath[uuid.UUID]) -> Message:
    """With subject and body for `communication_messages:read_body` (null once pruned)."""
    return await queries.get_message(principal, clinic_id, message_id)


@get("/", permission=AUTHENTICATED)
async def my_messages(principal: CurrentPrincipal, limit: FromQuery[int] = 50,
                      cursor: FromQuery[str | None] = None) -> Page[Message]:
    """What carewire sent the caller, from every clinic, newest first, with bodies until
    pruned."""
    return await queries.my_messages(principal, limit=limit, cursor=cursor)


router = Router(
    path="/clinics/{clinic_id:str}/communication",
    route_handlers=[list_suppressions, add_suppression, remove_suppression, list_messages,
                    get_message],
    tags=["communication"],
)
my_router = Router(path="/users/me/messages", route_handlers=[my_messages],
                   tags=["communication"])
