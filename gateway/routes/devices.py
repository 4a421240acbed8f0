"""A user's own push devices: any signed-in user, no clinic permission (a device is a
person's, not a clinic's), as `/users/me/invitations`."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

import msgspec
from litestar import Response, Router, delete, get, post
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, JSONBody

from domain.communication import queries
from domain.communication.commands import devices
from domain.communication.models import Device
from domain.paging import Page
from gateway.context import CurrentPrincipal
from gateway.routes import AUTHENTICATED, NO_NUL, Body


class DeviceRegister(Body):
    kind: Literal["fcm", "apns"]
    #: FCM: 16-4096 of A-Z a-z 0-9 _ : - ; APNs: 64 hex digits.
    token: Annotated[str, msgspec.Meta(max_length=4096, pattern=NO_NUL)]
    platform: Literal["android", "ios", "web"]
    app_version: Annotated[str, msgspec.Meta(max_length=40, pattern=NO_NUL)] | None = None


@post("/", permission=AUTHENTICATED, responses={
    200: ResponseSpec(data_container=Device,
                      description="The caller's own token again: the same device, refreshed")})
async def register_device(principal: CurrentPrincipal,
                          data: JSONBody[DeviceRegister]) -> Response[Device]:
    """201 and a new device; the caller's own token again is 200 with the same id (un-retired,
    `last_seen_at` and `app_version` refreshed); a token another user holds moves to the
    caller (201: the install now signs in as the caller). At most
    `MAX_DEVICES` (20) active devices per user: beyond, 409. The token is never returned,
    only `token_last4`."""
    device, fresh = await devices.register_device(
        principal, kind=data.kind, token=data.token, platform=data.platform,
        app_version=data.app_version)
    return Response(device, status_code=201 if fresh else 200)


@get("/", permission=AUTHENTICATED)
async def my_devices(principal: CurrentPrincipal) -> Page[Device]:
    return await queries.my_devices(principal)


@delete("/{device_id:str}", permission=AUTHENTICATED, status_code=204)
async def remove_device(principal: CurrentPrincipal, device_id: FromPath[uuid.UUID]) -> None:
    """Retire one of the caller's devices; someone else's is 404."""
    await devices.remove_device(principal, device_id)


router = Router(path="/users/me/devices",
                route_handlers=[register_device, my_devices, remove_device],
                tags=["communication"])
