"""Reads of devices, the suppression list, the delivery log and the clinic's templates, scoped
by what the caller may see. Lists are keyset pages (domain/paging.py)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import msgspec

from domain import db, validation
from domain.access.matrix import Scope, scope_of
from domain.access.policies import require
from domain.audit.commands import record
from domain.communication.commands.devices import device_from_row
from domain.communication.commands.suppressions import suppression_from_row
from domain.communication.commands.templates import most_specific, template_from, template_key
from domain.communication.models import Attempt, Device, Message, Suppression, Template
from domain.communication.templates import engine
from domain.communication.templates.context import sample_context
from domain.errors import NotFound, invalid_field
from domain.paging import Page, check_limit, decode_cursor, encode_cursor
from domain.principal import Principal
from domain.tenancy.queries import load_clinic

T = TypeVar("T")

#: Years a time filter may name (as the scheduling routes allow).
YEARS = (1900, 2999)


def _page(rows: list[dict[str, Any]], limit: int, convert: Callable[[dict[str, Any]], T]) -> Page[T]:
    more = len(rows) > limit
    last = rows[limit - 1] if more else None
    return Page(items=[convert(r) for r in rows[:limit]],
                next_cursor=encode_cursor(last["created_at"], last["id"]) if last else None)


def _aware(value: datetime | None, field: str) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise invalid_field(field, "include a UTC offset (RFC 3339)")
    if not YEARS[0] <= value.year <= YEARS[1]:
        raise invalid_field(field, f"a year from {YEARS[0]} to {YEARS[1]}")
    return value


# devices -------------------------------------------------------------------------------------

async def my_devices(principal: Principal) -> Page[Device]:
    """The caller's active devices, oldest first. At most `MAX_DEVICES`, so no further page.
    Never the token: its last four characters tell the owner which is which."""
    rows = await db.fetch(
        """SELECT id, kind, platform, app_version, right(token, 4) AS token_last4, created_at,
                  last_seen_at
           FROM devices WHERE user_id = $1 AND retired_at IS NULL ORDER BY created_at, id""",
        principal.user_id,
    )
    return Page(items=[device_from_row(r) for r in rows], next_cursor=None)


# suppressions --------------------------------------------------------------------------------

async def list_suppressions(
    principal: Principal, clinic_id: uuid.UUID, *, channel: str | None = None,
    address: str | None = None, limit: int = 50, cursor: str | None = None,
) -> Page[Suppression]:
    """The clinic's suppressed addresses, oldest first; `address` matches exactly (emails
    are compared lowercased, as stored). Addresses are personal data: the read is audited."""
    require(principal, "communication_settings:read", clinic_id,
            resource_type="communication_suppression")
    check_limit(limit)
    after = decode_cursor(cursor)
    wanted = None if address is None else validation.text(
        address, "address", max_length=320).lower().replace(" ", "")
    if channel is not None and channel not in ("email", "push", "whatsapp", "sms"):
        raise invalid_field("channel", "email, push, whatsapp or sms")
    rows = await db.fetch(
        """SELECT id, channel, address, kind, reason, note, created_at, created_by
           FROM communication_suppressions
           WHERE clinic_id = $1 AND ($2::text IS NULL OR channel = $2)
             AND ($3::text IS NULL OR address = $3)
             AND ($4::timestamptz IS NULL OR (created_at, id) > ($4, $5))
           ORDER BY created_at, id LIMIT $6""",
        clinic_id, channel, wanted, after[0] if after else None, after[1] if after else None,
        limit + 1,
    )
    page = _page(rows, limit, suppression_from_row)
    await record(principal, action="communication_settings:read",
                 resource_type="communication_suppression", clinic_id=clinic_id,
                 detail={"count": len(page.items)})
    return page


# the delivery log ----------------------------------------------------------------------------

# Attempts ride along as one JSON array per message: a page is one statement, however long.
_MESSAGE_SQL = """
SELECT m.id, m.clinic_id, m.user_id, m.channel, m.kind, m.address, m.status, m.provider,
       m.provider_message_id, m.error, m.created_at, m.sent_at, m.subject, m.body,
       m.body_pruned_at,
       coalesce((SELECT json_agg(json_build_object(
                            'provider', a.provider, 'outcome', a.outcome,
                            'status_code', a.status_code, 'latency_ms', a.latency_ms,
                            'error', a.error, 'at', a.at) ORDER BY a.id)
                 FROM communication_attempts a WHERE a.message_id = m.id), '[]') AS attempts
FROM communication_messages m
"""

_attempts = msgspec.json.Decoder(list[Attempt])


def message_from_row(row: dict[str, Any], *, content: bool) -> Message:
    """`content`: with subject, body and `body_pruned_at` (else they are left out)."""
    raw = row["attempts"]
    attempts = _attempts.decode(raw if isinstance(raw, (str, bytes)) else msgspec.json.encode(raw))
    extra: dict[str, Any] = ({"subject": row["subject"], "body": row["body"],
                              "body_pruned_at": row["body_pruned_at"]} if content else {})
    return Message(id=row["id"], clinic_id=row["clinic_id"], user_id=row["user_id"],
                   channel=row["channel"], kind=row["kind"], address=row["address"],
                   status=row["status"], provider=row["provider"],
                   provider_message_id=row["provider_message_id"], error=row["error"],
                   created_at=row["created_at"], sent_at=row["sent_at"], attempts=attempts,
                   **extra)


def _newest_first(first: int) -> str:
    """The keyset condition and order of a newest-first page; `first` numbers its two
    parameters (the cursor's time and id)."""
    return (f" AND (${first}::timestamptz IS NULL OR (m.created_at, m.id) < (${first}, "
            f"${first + 1}::uuid)) ORDER BY m.created_at DESC, m.id DESC")


async def list_messages(
    principal: Principal, clinic_id: uuid.UUID, *, status: str | None = None,
    channel: str | None = None, user_id: uuid.UUID | None = None,
    since: datetime | None = None, until: datetime | None = None, limit: int = 50,
    cursor: str | None = None,
) -> Page[Message]:
    """The clinic's delivery log, newest first, with each message's attempts; never a body
    (read one message for that). The address is shown: an admin answering "why did I get
    nothing" needs to see where it went. `since` inclusive, `until` exclusive. Audited."""
    require(principal, "communication_messages:read", clinic_id,
            resource_type="communication_message")
    check_limit(limit)
    after = decode_cursor(cursor)
    since, until = _aware(since, "since"), _aware(until, "until")
    if since and until and until <= since:
        raise invalid_field("until", "must be after since")
    rows = await db.fetch(
        _MESSAGE_SQL
        + """WHERE m.clinic_id = $1 AND ($2::text IS NULL OR m.status = $2)
               AND ($3::text IS NULL OR m.channel = $3) AND ($4::uuid IS NULL OR m.user_id = $4)
               AND ($5::timestamptz IS NULL OR m.created_at >= $5)
               AND ($6::timestamptz IS NULL OR m.created_at < $6)"""
        + _newest_first(7) + " LIMIT $9",
        clinic_id, status, channel, user_id, since, until,
        after[0] if after else None, after[1] if after else None, limit + 1,
    )
    page = _page(rows, limit, lambda r: message_from_row(r, content=False))
    await record(principal, action="communication_messages:read",
                 resource_type="communication_message", clinic_id=clinic_id,
                 detail={"count": len(page.items)})
    return page


async def get_message(principal: Principal, clinic_id: uuid.UUID,
                      message_id: uuid.UUID) -> Message:
    """One message of the clinic with its attempts; its subject and body too for roles the
    matrix grants `communication_messages:read_body` (null once pruned). Another clinic's is
    404. Audited."""
    grant = require(principal, "communication_messages:read", clinic_id,
                    resource_type="communication_message", resource_id=message_id)
    rows = await db.fetch(_MESSAGE_SQL + "WHERE m.id = $1 AND m.clinic_id = $2",
                          message_id, clinic_id)
    if not rows:
        raise NotFound("message not found", resource_type="communication_message",
                       resource_id=message_id)
    content = scope_of("communication_messages:read_body", grant.role) is not Scope.DENY
    await record(principal, action="communication_messages:read",
                 resource_type="communication_message", resource_id=message_id,
                 clinic_id=clinic_id, detail={"body": content})
    return message_from_row(rows[0], content=content)


async def my_messages(principal: Principal, *, limit: int = 50,
                      cursor: str | None = None) -> Page[Message]:
    """What was sent to the caller, from every clinic, newest first, with subject and body
    until pruned: the recipient may always read what they were sent."""
    check_limit(limit)
    after = decode_cursor(cursor)
    rows = await db.fetch(
        _MESSAGE_SQL + "WHERE m.user_id = $1" + _newest_first(2) + " LIMIT $4",
        principal.user_id, after[0] if after else None, after[1] if after else None, limit + 1,
    )
    return _page(rows, limit, lambda r: message_from_row(r, content=True))


# templates -----------------------------------------------------------------------------------

async def get_template(principal: Principal, clinic_id: uuid.UUID, *, kind: str, channel: str,
                       locale: str) -> Template:
    """What the kind sends on the channel in the locale: the clinic's most specific template
    (`hi-in`, then `hi`, then `en`), else the shipped default (with the same fallback)."""
    require(principal, "communication_templates:read", clinic_id,
            resource_type="communication_template")
    kind, ch, candidates = template_key(kind, channel, locale)
    if principal.is_super_admin:  # a member's clinic exists; a super admin may name any id
        await load_clinic(clinic_id)
    rows = await db.fetch(
        """SELECT locale, source, updated_at, updated_by FROM communication_templates
           WHERE clinic_id = $1 AND kind = $2 AND channel = $3 AND locale = ANY($4::text[])""",
        clinic_id, kind, ch, candidates)
    return template_from(kind, ch, candidates[0], most_specific(rows, candidates))


async def preview_template(principal: Principal, clinic_id: uuid.UUID, *, kind: str,
                           channel: str, locale: str, source: str | None) -> engine.Rendered:
    """The template (`source`, unsaved, or what GET shows) rendered against the sample
    appointment, with the clinic's name and time zone. A failing one is `Invalid` naming
    `template`, as a save would be."""
    require(principal, "communication_templates:read", clinic_id,
            resource_type="communication_template")
    kind, ch, candidates = template_key(kind, channel, locale)
    clinic = await load_clinic(clinic_id)
    if source is None:
        shown = await get_template(principal, clinic_id, kind=kind, channel=ch, locale=locale)
        source = shown.source if shown.origin == "clinic" else None
        source_locale = shown.source_locale
    else:
        engine.validate(source, ch)
        source_locale = candidates[0]
    context = msgspec.structs.replace(sample_context(candidates[0]), clinic_name=clinic.name,
                                      clinic_timezone=clinic.timezone)
    return engine.render(kind, ch, candidates[0], context, override=source,
                         override_locale=source_locale if source is not None else None)
