"""A user's own notification preferences and in-app inbox: any signed-in user, no clinic
permission (they are a person's, across every clinic they deal with), as `/users/me/devices`."""

from __future__ import annotations

import uuid
from typing import Annotated

import msgspec
from litestar import Router, get, post, put
from litestar.params import FromPath, FromQuery, JSONBody

from domain.notifications import queries
from domain.notifications.commands import inbox, preferences
from domain.notifications.models import KINDS, NOTIFY_CHANNELS, Notification, QuietHours
from gateway.context import CurrentPrincipal
from gateway.routes import AUTHENTICATED, NO_NUL, Body

KindName = Annotated[str, msgspec.Meta(max_length=80, pattern=NO_NUL)]
ChannelName = Annotated[str, msgspec.Meta(max_length=20, pattern=NO_NUL)]


class PreferencesPut(Body):
    """The whole document: what is left out is reset (a kind left out of `channels` follows
    the clinic's default, an empty list turns the kind off)."""

    #: kind -> channels (push, email, whatsapp, sms, in_app); unknown names are 400 naming
    #: `channels.<kind>`.
    channels: Annotated[dict[KindName, Annotated[list[ChannelName],
                                                 msgspec.Meta(max_length=len(NOTIFY_CHANNELS))]],
                        msgspec.Meta(max_length=len(KINDS))] = {}
    #: Non-urgent messages wait from `start` to `end` (HH:MM, in `timezone`); the inbox and
    #: urgent kinds (reminders, queue calls) do not.
    quiet_hours: QuietHours | None = None
    #: IANA zone of the quiet hours; null: each clinic's own zone.
    timezone: Annotated[str, msgspec.Meta(max_length=64, pattern=NO_NUL)] | None = None
    #: BCP 47 tag of the messages' language (`en`, `hi`, `hi-IN`); null: `en`.
    locale: Annotated[str, msgspec.Meta(max_length=preferences.MAX_LOCALE,
                                        pattern=NO_NUL)] | None = None


class Marked(msgspec.Struct, frozen=True):
    #: How many notifications this call marked read.
    updated: int


@get("/notification-preferences", permission=AUTHENTICATED)
async def my_preferences(principal: CurrentPrincipal) -> queries.PreferencesView:
    """The caller's choices, what applies per kind (`effective`) and every kind (`kinds`)."""
    return await queries.my_preferences(principal)


@put("/notification-preferences", permission=AUTHENTICATED)
async def put_preferences(principal: CurrentPrincipal,
                          data: JSONBody[PreferencesPut]) -> queries.PreferencesView:
    """Replace the caller's preferences. Unknown kind or channel, a bad time zone or locale,
    quiet hours that start when they end: 400 naming the field, nothing stored."""
    await preferences.put_preferences(principal, channels=data.channels,
                                      quiet_hours=data.quiet_hours, timezone=data.timezone,
                                      locale=data.locale)
    return await queries.my_preferences(principal)


@get("/notifications", permission=AUTHENTICATED)
async def my_notifications(principal: CurrentPrincipal, limit: FromQuery[int] = 50,
                           cursor: FromQuery[str | None] = None,
                           unread: FromQuery[bool] = False) -> queries.Inbox:
    """The in-app inbox, newest first (keyset pages); `unread=true`: only unread ones.
    `unread_count` counts all the caller's unread notifications."""
    return await queries.my_notifications(principal, limit=limit, cursor=cursor, unread=unread)


@post("/notifications/read-all", permission=AUTHENTICATED, status_code=200)
async def mark_all_read(principal: CurrentPrincipal) -> Marked:
    return Marked(updated=await inbox.mark_all_read(principal))


@post("/notifications/{notification_id:str}/read", permission=AUTHENTICATED, status_code=200)
async def mark_read(principal: CurrentPrincipal,
                    notification_id: FromPath[uuid.UUID]) -> Notification:
    """Marked read (again: unchanged, 200). Someone else's is 404."""
    return await inbox.mark_read(principal, notification_id)


router = Router(path="/users/me",
                route_handlers=[my_preferences, put_preferences, my_notifications, mark_all_read,
                                mark_read],
                tags=["notifications"])
