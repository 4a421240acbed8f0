"""A user's notification preferences: which channels per kind, quiet hours, time zone, locale.
Any signed-in user (patients too) sets their own, for every clinic they deal with; there is no
clinic permission involved (as with push devices). PUT replaces the whole document."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import time

from domain import db, validation
from domain.audit.commands import record
from domain.communication.templates.engine import locale_candidates
from domain.errors import invalid_field
from domain.notifications.models import (
    KINDS,
    NOTIFY_CHANNELS,
    NotifyChannel,
    Preferences,
    QuietHours,
)
from domain.principal import Principal

#: Longest locale tag the table holds (its CHECK).
MAX_LOCALE = 35


def check_channels(channels: Mapping[str, Sequence[str]],
                   prefix: str = "channels") -> dict[str, list[NotifyChannel]]:
    """Kinds known, channels known and each named once, or 400 naming `<prefix>.<kind>` (and
    the list's index for a bad channel). An empty list is valid: the kind is turned off."""
    clean: dict[str, list[NotifyChannel]] = {}
    for kind in sorted(channels):
        if kind not in KINDS:
            raise invalid_field(f"{prefix}.{kind}", "unknown notification kind")
        chosen: list[NotifyChannel] = []
        for i, channel in enumerate(channels[kind]):
            if channel not in NOTIFY_CHANNELS:
                raise invalid_field(f"{prefix}.{kind}.{i}", ", ".join(NOTIFY_CHANNELS))
            if channel in chosen:
                raise invalid_field(f"{prefix}.{kind}.{i}", "listed twice")
            chosen.append(channel)
        clean[kind] = chosen
    return clean


def _clock(value: str, field: str) -> time:
    try:
        hour, minute = value.split(":")
        return time(int(hour), int(minute))
    except ValueError as exc:
        raise invalid_field(field, "local time, HH:MM") from exc


def check_preferences(*, channels: Mapping[str, Sequence[str]], quiet_hours: QuietHours | None,
                      timezone: str | None, locale: str | None) -> Preferences:
    """The document as stored, or 400 naming the first bad field."""
    clean = check_channels(channels)
    if quiet_hours is not None:
        _clock(quiet_hours.start, "quiet_hours.start")
        _clock(quiet_hours.end, "quiet_hours.end")
        if quiet_hours.start == quiet_hours.end:
            raise invalid_field("quiet_hours.end", "must differ from start")
    if timezone is not None:
        validation.timezone(timezone, "timezone")
    if locale is not None:
        if len(locale) > MAX_LOCALE:
            raise invalid_field("locale", f"at most {MAX_LOCALE} characters")
        locale_candidates(locale)  # the templates' own check: 400 naming `locale`
    return Preferences(channels=clean, quiet_hours=quiet_hours, timezone=timezone,
                       locale=locale)


async def put_preferences(principal: Principal, *, channels: Mapping[str, Sequence[str]],
                          quiet_hours: QuietHours | None = None, timezone: str | None = None,
                          locale: str | None = None) -> Preferences:
    """Replace the caller's preferences (one upsert, with its audit row). A kind left out
    follows the clinic's default, an empty list turns it off. Audited without the choices'
    details beyond which kinds were set: how a person wants to be reached is theirs."""
    prefs = check_preferences(channels=channels, quiet_hours=quiet_hours, timezone=timezone,
                              locale=locale)
    quiet = prefs.quiet_hours
    async with db.transaction():
        await db.fetch(
            """INSERT INTO notification_preferences AS p
                   (user_id, channels, quiet_start, quiet_end, timezone, locale)
               VALUES ($1, $2::jsonb, $3, $4, $5, $6)
               ON CONFLICT (user_id) DO UPDATE
               SET channels = EXCLUDED.channels, quiet_start = EXCLUDED.quiet_start,
                   quiet_end = EXCLUDED.quiet_end, timezone = EXCLUDED.timezone,
                   locale = EXCLUDED.locale, updated_at = now()""",
            principal.user_id, json.dumps(prefs.channels),
            None if quiet is None else _clock(quiet.start, "quiet_hours.start"),
            None if quiet is None else _clock(quiet.end, "quiet_hours.end"),
            prefs.timezone, prefs.locale,
        )
        await record(principal, action="notification_preferences:update",
                     resource_type="notification_preferences", resource_id=principal.user_id,
                     detail={"kinds": sorted(prefs.channels), "quiet_hours": quiet is not None})
    return prefs
