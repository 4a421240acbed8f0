"""Reads of the caller's own notification preferences and in-app inbox."""

from __future__ import annotations

from typing import Any

import msgspec

from domain import db
from domain.notifications.commands.inbox import ITEM_COLUMNS, notification_from_row
from domain.notifications.dispatch import load_preferences
from domain.notifications.models import (
    DEFAULT_CHANNELS,
    KINDS,
    Notification,
    NotifyChannel,
    QuietHours,
)
from domain.paging import check_limit, decode_cursor, encode_cursor
from domain.principal import Principal


class PreferencesView(msgspec.Struct, frozen=True, kw_only=True):
    """The caller's preferences as stored (what PUT takes back), plus for clients' convenience
    `effective`: per kind, the channels it goes to (the caller's own choice, or the built-in
    default where they made none) and `kinds`: every kind there is.

    For a kind the caller left out, a clinic's own defaults (its `notification_channels`
    setting) come before the built-in ones, so what a given clinic sends may differ from
    `effective` for those kinds."""

    channels: dict[str, list[NotifyChannel]]
    quiet_hours: QuietHours | None
    timezone: str | None
    locale: str | None
    effective: dict[str, list[NotifyChannel]]
    kinds: list[str]


async def my_preferences(principal: Principal) -> PreferencesView:
    prefs = (await load_preferences([principal.user_id]))[principal.user_id]  # as dispatch does
    effective = {kind: list(prefs.channels.get(kind, DEFAULT_CHANNELS[kind])) for kind in KINDS}
    return PreferencesView(channels=prefs.channels, quiet_hours=prefs.quiet_hours,
                           timezone=prefs.timezone, locale=prefs.locale, effective=effective,
                           kinds=list(KINDS))


class Inbox(msgspec.Struct, frozen=True, kw_only=True):
    """A keyset page of the inbox, newest first, and how many of the caller's notifications are
    unread in all (whatever the page or its filter)."""

    items: list[Notification]
    next_cursor: str | None
    unread_count: int


async def my_notifications(principal: Principal, *, limit: int = 50, cursor: str | None = None,
                           unread: bool = False) -> Inbox:
    """The caller's in-app notifications from every clinic, newest first; `unread`: only those
    not yet read. One statement: the unread count rides along (a row with no item when the
    page is empty)."""
    check_limit(limit)
    after = decode_cursor(cursor)
    rows = await db.fetch(
        f"""WITH page AS (
                SELECT {ITEM_COLUMNS} FROM notifications
                WHERE user_id = $1 AND in_app AND (NOT $2 OR read_at IS NULL)
                  AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4::uuid))
                ORDER BY created_at DESC, id DESC LIMIT $5)
            SELECT u.unread_count, p.*
            FROM (SELECT count(*) AS unread_count FROM notifications
                  WHERE user_id = $1 AND in_app AND read_at IS NULL) u
            LEFT JOIN page p ON true
            ORDER BY p.created_at DESC, p.id DESC""",
        principal.user_id, unread, after[0] if after else None, after[1] if after else None,
        limit + 1,
    )
    found: list[dict[str, Any]] = [r for r in rows if r["id"] is not None]
    more = len(found) > limit
    last = found[limit - 1] if more else None
    return Inbox(items=[notification_from_row(r) for r in found[:limit]],
                 next_cursor=encode_cursor(last["created_at"], last["id"]) if last else None,
                 unread_count=int(rows[0]["unread_count"]))


