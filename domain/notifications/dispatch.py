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

from domain import clock, db, money
from domain.access import rooms
from domain.communication import unsubscribe
from domain.communication.commands.messages import Content, Outgoing, enqueue_many
from domain.communication.commands.templates import load_templates, render_for_send
from domain.communication.models import Channel
from domain.communication.templates.context import TemplateContext
from domain.communication.templates.engine import Rendered
from domain.events.commands import record_many
from domain.events.envelope import DomainEvent
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
from domain.scheduling.queries import load_appointments
from domain.tenancy.models import Clinic
from domain.tenancy.queries import load_clinics, location_names

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
    """What notifications are rendered from, loaded once for a batch: the clinics, the
    appointments, their people and those people's preferences, the places, and (once the kinds
    are known) the clinics' templates."""

    clinics: dict[uuid.UUID, Clinic]
    appointments: dict[uuid.UUID, Appointment]
    people: dict[uuid.UUID, Contact]
    preferences: dict[uuid.UUID, Preferences]
    locations: dict[uuid.UUID, str]
    templates: list[dict[str, Any]] | None = None


class Notice(msgspec.Struct, frozen=True, kw_only=True):
    """One notification to make: `key` makes it once for its recipient."""

    clinic_id: uuid.UUID
    kind: str
    user_id: uuid.UUID
    appointment_id: uuid.UUID | None
    key: str
    late: bool = False
    ticket: str | None = None
    #: A receipt's amount (minor units of `currency`), formatted for the recipient's locale.
    amount: int | None = None
    currency: str | None = None


async def load_facts(clinics: list[Clinic | uuid.UUID], appointment_ids: list[uuid.UUID],
                     user_ids: list[uuid.UUID]) -> Facts:
    """The clinics (those not given already loaded), the appointments, their patients and
    doctors (and `user_ids`), everyone's preferences and the places, a statement each whatever
    the batch's size: the PHI of the text, read now."""
    known = {c.id: c for c in clinics if isinstance(c, Clinic)}
    wanted = [c for c in clinics if not isinstance(c, Clinic) and c not in known]
    found = {**known, **(await load_clinics(wanted) if wanted else {})}
    appointments = await load_appointments(appointment_ids) if appointment_ids else {}
    ids = list(user_ids)
    for a in appointments.values():
        ids += [a.patient_id, a.doctor_id]
    places = [a.location_id for a in appointments.values() if a.location_id]
    return Facts(clinics=found, appointments=appointments, people=await contacts(ids),
                 preferences=await load_preferences(ids),
                 locations=await location_names(places) if places else {})


def _context(facts: Facts, clinic: Clinic, appointment: Appointment | None, locale: str,
             ticket: str | None, unsubscribe_url: str | None,
             notice: Notice | None = None) -> TemplateContext:
    a = appointment
    patient = (facts.people.get(a.patient_id) if a
               else facts.people.get(notice.user_id) if notice else None)
    doctor = facts.people.get(a.doctor_id) if a else None
    return TemplateContext(
        clinic_name=clinic.name, clinic_timezone=clinic.timezone, locale=locale,
        patient_first_name=(patient.name.split()[0] if patient and patient.name.split() else ""),
        doctor_name=doctor.name if doctor else None, starts_at=a.start if a else None,
        location_name=facts.locations.get(a.location_id) if a and a.location_id else None,
        ticket=ticket, unsubscribe_url=unsubscribe_url, amount=_amount(notice, locale))


def _amount(notice: Notice | None, locale: str) -> str | None:
    if notice is None or notice.amount is None or notice.currency is None:
        return None
    try:
        return money.display(notice.amount, notice.currency, locale.replace("-", "_"))
    except ValueError:  # a locale babel does not know: the code and the plain figure
        return money.display(notice.amount, notice.currency)


def _address(channel: Channel, contact: Contact) -> str | None:
    if channel == "email":
        return contact.email
    if channel in ("sms", "whatsapp"):
        return contact.phone
    return None


class _Made(msgspec.Struct, kw_only=True):
    """A notice rendered: its messages (indexes into the batch's list) and inbox text."""

    notice: Notice
    messages: list[tuple[Channel, int]]
    in_app: bool
    title: str | None
    body: str | None


async def _render(notice: Notice, facts: Facts, outgoing: list[Outgoing]) -> _Made | None:
    """The notice's messages, appended to `outgoing`; None when its recipient is gone. Every
    channel is rendered before anything is written (a clinic's template that fails gives way
    to the shipped default there), so a failure leaves nothing half done."""
    contact = facts.people.get(notice.user_id)
    clinic = facts.clinics[notice.clinic_id]
    appointment = facts.appointments.get(notice.appointment_id) if notice.appointment_id else None
    if contact is None:  # the account is gone
        return None
    preferences = facts.preferences.get(notice.user_id) or Preferences()
    wanted = channels_for(notice.kind, preferences, clinic)
    locale = preferences.locale or "en"
    hold = None if notice.kind in URGENT_KINDS else quiet_until(
        preferences.quiet_hours, preferences.timezone or clinic.timezone, clock.now())
    targets = [(c, _address(c, contact)) for c in wanted if c != "in_app"]
    targets = [(c, a) for c, a in targets if c == "push" or a is not None]
    in_app = "in_app" in wanted
    renders: list[Channel] = [c for c, _ in targets]
    if in_app and "push" not in renders:
        renders.append("push")  # the inbox shows the push title and body
    url = unsubscribe.link(clinic_id=clinic.id, kind=notice.kind, address=contact.email) \
        if "email" in renders else None
    rendered = await render_for_send(
        clinic_id=clinic.id, kind=notice.kind, channels=renders, locale=locale,
        context=_context(facts, clinic, appointment, locale, notice.ticket, url, notice),
        loaded=facts.templates)
    data = {"kind": notice.kind, "clinic_id": str(clinic.id)}
    if notice.appointment_id:
        data["appointment_id"] = str(notice.appointment_id)
    headers = unsubscribe.headers(url) if url else {}
    made = _Made(notice=notice, messages=[], in_app=in_app, title=None, body=None)
    for channel, address in targets:
        made.messages.append((channel, len(outgoing)))
        outgoing.append(Outgoing(
            clinic_id=clinic.id, channel=channel, kind=notice.kind,
            content=_content(channel, rendered[channel], data, headers), address=address,
            user_id=notice.user_id, dedupe_key=f"{notice.key}:{notice.user_id}:{channel}",
            not_before=hold))
    if in_app:
        made.title, made.body = rendered["push"].subject, rendered["push"].text
    return made


async def notify_many(notices: list[Notice], facts: Facts | None = None
                      ) -> list[NotificationStatus | None]:
    """Make each notice, once per its `key` (None for one already made, or whose recipient is
    gone), inside the caller's transaction: the channels its recipient chose for the kind, each
    rendered and enqueued, the record of it (`no_channel` when nothing could go), and
    `notification.created` to the recipient's room for an inbox item. A statement for each
    kind of thing, whatever the batch's size (reminders falling due together come in
    hundreds)."""
    if not notices:
        return []
    facts = facts or await load_facts([n.clinic_id for n in notices],
                                      [n.appointment_id for n in notices if n.appointment_id],
                                      [n.user_id for n in notices])
    if facts.templates is None:
        facts = msgspec.structs.replace(facts, templates=await load_templates(
            [n.clinic_id for n in notices], [n.kind for n in notices]))
    outgoing: list[Outgoing] = []
    made = [await _render(n, facts, outgoing) for n in notices]
    written = await enqueue_many(outgoing)
    rows: list[tuple[_Made, list[str]]] = []
    for m in made:
        if m is not None:
            sent = [str(c) for c, i in m.messages if written[i]] + (["in_app"] if m.in_app else [])
            rows.append((m, sent))
    inserted = {r["dedupe_key"]: r["id"] for r in await db.fetch(
        """INSERT INTO notifications (id, clinic_id, user_id, kind, appointment_id, dedupe_key,
               status, late, channels, in_app, title, body)
           SELECT gen_random_uuid(), x.clinic_id, x.user_id, x.kind, x.appointment_id,
                  x.dedupe_key, x.status, x.late, ARRAY(SELECT jsonb_array_elements_text(x.sent)),
                  x.in_app, x.title, x.body
           FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::text[], $6::text[],
                       $7::bool[], $8::jsonb[], $9::bool[], $10::text[], $11::text[])
                AS x(clinic_id, user_id, kind, appointment_id, dedupe_key, status, late, sent,
                     in_app, title, body)
           ON CONFLICT (clinic_id, dedupe_key) DO NOTHING RETURNING id, dedupe_key""",
        [m.notice.clinic_id for m, _ in rows], [m.notice.user_id for m, _ in rows],
        [m.notice.kind for m, _ in rows], [m.notice.appointment_id for m, _ in rows],
        [_key(m.notice) for m, _ in rows], ["sent" if sent else "no_channel" for _, sent in rows],
        [m.notice.late for m, _ in rows], [msgspec.json.encode(sent).decode() for _, sent in rows],
        [m.in_app for m, _ in rows], [m.title for m, _ in rows], [m.body for m, _ in rows])}
    by_clinic: dict[uuid.UUID, list[tuple[DomainEvent, list[str]]]] = {}
    statuses: dict[str, NotificationStatus] = {}
    for m, sent in rows:
        nid = inserted.get(_key(m.notice))
        if nid is None:
            continue
        statuses[_key(m.notice)] = "sent" if sent else "no_channel"
        if m.in_app:
            by_clinic.setdefault(m.notice.clinic_id, []).append((
                NotificationCreated(notification_id=nid, kind=m.notice.kind),
                [rooms.user(m.notice.user_id)]))
        if not sent:
            log.info("notification %s for user %s: no usable channel", m.notice.kind,
                     m.notice.user_id)
    for clinic_id, events in by_clinic.items():
        await record_many(None, clinic_id=clinic_id, events=events)
    return [statuses.get(_key(n)) for n in notices]


def _key(notice: Notice) -> str:
    return f"{notice.key}:{notice.user_id}"


async def notify(*, clinic_id: uuid.UUID, kind: str, user_id: uuid.UUID,
                 appointment_id: uuid.UUID | None, key: str, late: bool = False,
                 ticket: str | None = None, facts: Facts | None = None
                 ) -> NotificationStatus | None:
    """One notice (see `notify_many`)."""
    (status,) = await notify_many([Notice(clinic_id=clinic_id, kind=kind, user_id=user_id,
                                          appointment_id=appointment_id, key=key, late=late,
                                          ticket=ticket)], facts)
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
