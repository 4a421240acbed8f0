"""One notification to one user: the channels they chose for its kind, the text rendered from the
clinic's templates with what is true now (names, times, place: read here, never carried in
events), a message per channel through communication's delivery log, and the record of it
(the in-app inbox item, or `no_channel`). Runs inside the caller's transaction, so the consumer's
cursor or the reminder's claim commits with what it caused."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from domain import clock, db
from domain.access import rooms
from domain.communication import unsubscribe
from domain.communication.commands.messages import Content, enqueue
from domain.communication.commands.templates import render_for_send
from domain.communication.models import Channel
from domain.communication.templates.context import TemplateContext
from domain.communication.templates.engine import Rendered
from domain.events.commands import record as record_event
from domain.identity.people import Contact, contacts
from domain.notifications.events import NotificationCreated
from domain.notifications.models import (
    DEFAULT_CHANNELS,
    URGENT_KINDS,
    NotificationStatus,
    NotifyChannel,
    Preferences,
    QuietHours,
)
from domain.scheduling.models import Appointment
from domain.scheduling.queries import load_appointment
from domain.tenancy.models import Clinic
from domain.tenancy.queries import load_clinic, location_name

log = logging.getLogger("carewire.notifications")


async def load_preferences(user_ids: list[uuid.UUID]) -> dict[uuid.UUID, Preferences]:
    """Each user's preferences (the defaults for one who never chose), in one statement."""
    rows = await db.fetch(
        """SELECT user_id, channels, to_char(quiet_start, 'HH24:MI') AS quiet_start,
                  to_char(quiet_end, 'HH24:MI') AS quiet_end, timezone, locale
           FROM notification_preferences WHERE user_id = ANY($1::uuid[])""", list(set(user_ids)))
    found = {r["user_id"]: preferences_from_row(r) for r in rows}
    return {u: found.get(u, Preferences()) for u in user_ids}


def preferences_from_row(row: dict[str, Any]) -> Preferences:
    raw = row["channels"]
    quiet = (QuietHours(start=row["quiet_start"], end=row["quiet_end"])
             if row["quiet_start"] is not None else None)
    return Preferences(channels=msgspec.convert(json.loads(raw) if isinstance(raw, str) else raw,
                                                dict[str, list[NotifyChannel]]),
                       quiet_hours=quiet, timezone=row["timezone"], locale=row["locale"])


def channels_for(kind: str, preferences: Preferences, clinic: Clinic) -> list[NotifyChannel]:
    """The user's choice for the kind, else the clinic's default, else the built-in one."""
    if kind in preferences.channels:
        return list(preferences.channels[kind])
    if kind in clinic.settings.notification_channels:
        return list(clinic.settings.notification_channels[kind])
    return list(DEFAULT_CHANNELS[kind])


def quiet_until(quiet: QuietHours | None, zone: str, now: datetime) -> datetime | None:
    """The end of the quiet hours `now` falls in (an aware UTC datetime), or None."""
    if quiet is None:
        return None
    tz = ZoneInfo(zone)
    local = now.astimezone(tz)
    start, end = time.fromisoformat(quiet.start), time.fromisoformat(quiet.end)
    t = local.time().replace(tzinfo=None)
    inside = start <= t < end if start < end else (t >= start or t < end)
    if not inside:
        return None
    day = local.date() if t < end else local.date() + timedelta(days=1)
    return datetime.combine(day, end, tzinfo=tz).astimezone(now.tzinfo)


def _content(channel: Channel, rendered: Rendered, data: dict[str, str],
             headers: dict[str, str]) -> Content:
    if channel == "email":
        return Content(subject=rendered.subject, text=rendered.text, html=rendered.html,
                       headers=headers)
    if channel == "push":
        return Content(subject=rendered.subject, text=rendered.text, push_data=data)
    return Content(text=rendered.text)


class Facts(msgspec.Struct, frozen=True, kw_only=True):
    """What a notification about an appointment is rendered from, loaded once."""

    clinic: Clinic
    appointment: Appointment | None
    people: dict[uuid.UUID, Contact]
    preferences: dict[uuid.UUID, Preferences]
    location: str | None


async def load_facts(clinic: Clinic | uuid.UUID, appointment_id: uuid.UUID | None,
                     user_ids: list[uuid.UUID]) -> Facts:
    """The clinic (unless the caller has it), the appointment, its people, their preferences
    and the place: the PHI of the text, read now."""
    found = clinic if isinstance(clinic, Clinic) else await load_clinic(clinic)
    appointment = await load_appointment(appointment_id) if appointment_id else None
    ids = list(user_ids)
    if appointment is not None:
        ids += [appointment.patient_id, appointment.doctor_id]
    people = await contacts(ids)
    preferences = await load_preferences(ids)
    place = (await location_name(appointment.location_id)
             if appointment is not None and appointment.location_id else None)
    return Facts(clinic=found, appointment=appointment, people=people, preferences=preferences,
                 location=place)


def _context(facts: Facts, locale: str, ticket: str | None) -> TemplateContext:
    a = facts.appointment
    patient = facts.people.get(a.patient_id) if a else None
    doctor = facts.people.get(a.doctor_id) if a else None
    return TemplateContext(
        clinic_name=facts.clinic.name, clinic_timezone=facts.clinic.timezone, locale=locale,
        patient_first_name=(patient.name.split()[0] if patient and patient.name.split() else ""),
        doctor_name=doctor.name if doctor else None, starts_at=a.start if a else None,
        location_name=facts.location, ticket=ticket)


def _address(channel: Channel, contact: Contact) -> str | None:
    if channel == "email":
        return contact.email
    if channel in ("sms", "whatsapp"):
        return contact.phone
    return None


async def notify(*, clinic_id: uuid.UUID, kind: str, user_id: uuid.UUID,
                 appointment_id: uuid.UUID | None, key: str, late: bool = False,
                 ticket: str | None = None, facts: Facts | None = None
                 ) -> NotificationStatus | None:
    """Tell `user_id` about `kind`, once per `key`: None when it already happened. `facts`
    lets a caller telling several people about one appointment load it once. Every channel is
    rendered before anything is written (a clinic's template that fails is replaced by the
    shipped default there), so nothing is left half done. Email carries the one-click
    unsubscribe link for this kind and address."""
    facts = facts or await load_facts(clinic_id, appointment_id, [user_id])
    contact = facts.people.get(user_id)
    if contact is None:  # the account is gone
        return None
    preferences = facts.preferences.get(user_id) or Preferences()
    wanted = channels_for(kind, preferences, facts.clinic)
    locale = preferences.locale or "en"
    hold = None if kind in URGENT_KINDS else quiet_until(
        preferences.quiet_hours, preferences.timezone or facts.clinic.timezone, clock.now())
    data = {"kind": kind, "clinic_id": str(clinic_id)}
    if appointment_id:
        data["appointment_id"] = str(appointment_id)
    targets: list[tuple[Channel, str | None]] = []
    for channel in wanted:
        if channel == "in_app":
            continue
        address = _address(channel, contact)
        if channel == "push" or address is not None:
            targets.append((channel, address))
    in_app = "in_app" in wanted
    renders: list[Channel] = [c for c, _ in targets]
    if in_app and "push" not in renders:
        renders.append("push")  # the inbox shows the push title and body
    url = unsubscribe.link(clinic_id=clinic_id, kind=kind, address=contact.email) \
        if "email" in renders else None
    rendered = await render_for_send(
        clinic_id=clinic_id, kind=kind, channels=renders, locale=locale,
        context=msgspec.structs.replace(_context(facts, locale, ticket), unsubscribe_url=url))
    headers = unsubscribe.headers(url) if url else {}
    title = body = None
    if in_app:
        title, body = rendered["push"].subject, rendered["push"].text
    sent: list[str] = []
    for channel, address in targets:
        content = _content(channel, rendered[channel], data, headers)
        if await enqueue(clinic_id=clinic_id, channel=channel, kind=kind, content=content,
                         address=address, user_id=user_id,
                         dedupe_key=f"{key}:{user_id}:{channel}", not_before=hold):
            sent.append(channel)
    if in_app:
        sent.append("in_app")
    status: NotificationStatus = "sent" if sent else "no_channel"
    rows = await db.fetch(
        """INSERT INTO notifications (id, clinic_id, user_id, kind, appointment_id, dedupe_key,
               status, late, channels, in_app, title, body)
           VALUES (gen_random_uuid(), $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
           ON CONFLICT (clinic_id, dedupe_key) DO NOTHING RETURNING id""",
        clinic_id, user_id, kind, appointment_id, f"{key}:{user_id}", status, late, sent,
        in_app, title, body)
    if not rows:
        return None
    if in_app:
        await record_event(None, clinic_id=clinic_id, audience=[rooms.user(user_id)],
                           event=NotificationCreated(notification_id=rows[0]["id"], kind=kind))
    if status == "no_channel":
        log.info("notification %s for user %s: no usable channel", kind, user_id)
    return status


async def record_dropped(*, clinic_id: uuid.UUID, kind: str, user_id: uuid.UUID,
                         appointment_id: uuid.UUID | None, key: str) -> bool:
    """A notification that no longer makes sense (a reminder after the start): on record, sent
    nowhere. False when it was already recorded."""
    rows = await db.fetch(
        """INSERT INTO notifications (id, clinic_id, user_id, kind, appointment_id, dedupe_key,
               status, late)
           VALUES (gen_random_uuid(), $1, $2, $3, $4, $5, 'dropped', true)
           ON CONFLICT (clinic_id, dedupe_key) DO NOTHING RETURNING id""",
        clinic_id, user_id, kind, appointment_id, f"{key}:{user_id}")
    if rows:
        log.info("notification %s for user %s dropped: too late", kind, user_id)
    return bool(rows)
