"""Shapes of notifications: kinds, channels, a user's preferences, an inbox item."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Final, Literal

import msgspec

#: Where a notification can go: communication's channels, and the in-app inbox.
NotifyChannel = Literal["push", "email", "whatsapp", "sms", "in_app"]
NOTIFY_CHANNELS: Final[tuple[NotifyChannel, ...]] = ("push", "email", "whatsapp", "sms", "in_app")

#: Every kind a user can be told about, and the channels it goes to when neither the user nor
#: the clinic chose otherwise. Patients hear of their own visits; staff of bookings and
#: cancellations in their calendar. WhatsApp and SMS are opt-in (they cost the clinic money).
DEFAULT_CHANNELS: Final[dict[str, tuple[NotifyChannel, ...]]] = {
    "appointment.booked": ("email", "push", "in_app"),
    "appointment.rescheduled": ("email", "push", "in_app"),
    "appointment.cancelled": ("email", "push", "in_app"),
    "appointment.no_show": ("email", "in_app"),
    "appointment.reminder": ("email", "push", "in_app"),
    "follow_up.scheduled": ("email", "push", "in_app"),
    "queue.called": ("push", "in_app"),
    "queue.next": ("push", "in_app"),
    "video.starting": ("push", "email", "in_app"),
    "staff.appointment_booked": ("push", "in_app"),
    "staff.appointment_cancelled": ("push", "in_app"),
    "billing.receipt": ("email", "in_app"),
}
KINDS: Final[tuple[str, ...]] = tuple(DEFAULT_CHANNELS)

#: Kinds that are about now: they ignore quiet hours (a reminder at 07:00 for an 08:00 visit,
#: "please go to room 3").
URGENT_KINDS: Final[frozenset[str]] = frozenset({
    "appointment.reminder", "queue.called", "queue.next", "video.starting"})

ClockTime = Annotated[str, msgspec.Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
                                        description="local time, HH:MM")]


class QuietHours(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """From `start` to `end` in the user's time zone (crossing midnight when end < start),
    messages other than URGENT_KINDS wait until `end`. The in-app inbox is not delayed."""

    start: ClockTime
    end: ClockTime


class Preferences(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What GET returns and PUT takes (the whole document: a kind left out of `channels`
    follows the clinic's default, an empty list turns the kind off)."""

    channels: dict[str, list[NotifyChannel]] = {}
    quiet_hours: QuietHours | None = None
    #: IANA zone of the quiet hours; null: each clinic's own zone.
    timezone: str | None = None
    #: BCP 47 tag of the messages' language (`en`, `hi`, `hi-IN`); null: `en`.
    locale: str | None = None


NotificationStatus = Literal["sent", "no_channel", "dropped"]


class Notification(msgspec.Struct, frozen=True, kw_only=True):
    """An inbox item as its owner sees it. `title` and `body` are the in-app text."""

    id: uuid.UUID
    clinic_id: uuid.UUID
    kind: str
    appointment_id: uuid.UUID | None
    title: str | None
    body: str | None
    late: bool
    read_at: datetime | None
    created_at: datetime
