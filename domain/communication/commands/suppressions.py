"""The suppression list: addresses of a clinic never sent to on a channel. Staff add and remove
entries (audited); provider webhooks and the pipeline add them through `suppress`.

Audit rows name the address masked (`j***@example.com`, `+***4567`): enough to match an entry
while investigating, without copying a patient's full address into the append-only log, where
it could never be erased. A hash would not hide it (phone numbers are few enough to try all)."""

from __future__ import annotations

import uuid
from typing import Any

from domain import db, validation
from domain.access.policies import require
from domain.audit.commands import record
from domain.communication.models import Suppression
from domain.errors import NotFound, invalid_field
from domain.principal import Principal
from domain.tenancy.queries import load_clinic

#: What staff may record by hand; bounces and complaints come from the providers.
MANUAL_REASONS = ("manual", "unsubscribe")
REASONS = ("hard_bounce", "soft_bounce", "complaint", "unsubscribe", "manual")


def normalize(channel: str, address: str) -> str:
    """The address as stored and matched: an email lowercased, a phone number E.164. Push
    is refused: a dead push token is retired (commands.devices.retire), not suppressed."""
    if channel == "email":
        return validation.email(address, "address")
    if channel in ("sms", "whatsapp"):
        validation.text(address, "address", max_length=32)
        phone = validation.phone(address, "address")
        assert phone is not None
        return phone
    if channel == "push":
        raise invalid_field("channel", "push tokens are retired, not suppressed")
    raise invalid_field("channel", "email, sms or whatsapp")


def masked(address: str) -> str:
    if "@" in address:
        local, _, domain = address.partition("@")
        return f"{local[:1]}***@{domain}"
    return f"{address[:1]}***{address[-4:]}"


def suppression_from_row(row: dict[str, Any]) -> Suppression:
    return Suppression(channel=row["channel"], address=row["address"], kind=row["kind"],
                       reason=row["reason"],
                       note=row["note"], created_at=row["created_at"],
                       created_by=row["created_by"])


async def add_suppression(principal: Principal, clinic_id: uuid.UUID, *, channel: str,
                          address: str, reason: str = "manual",
                          note: str | None = None) -> tuple[Suppression, bool]:
    """Suppress an address for every kind; returns the entry and whether this call created it.
    An address already suppressed (for every kind) keeps its entry (reason, note and author
    unchanged): the answer is that entry, and nothing is audited, since nothing changed."""
    require(principal, "communication_settings:manage", clinic_id,
            resource_type="communication_suppression")
    stored = normalize(channel, address)
    if reason not in MANUAL_REASONS:
        raise invalid_field("reason", "manual or unsubscribe")
    if note is not None:
        note = validation.text(note, "note", max_length=500, allow_empty=True)
    async with db.transaction():
        if principal.is_super_admin:  # a member's clinic exists; a super admin may name any id
            await load_clinic(clinic_id)
        rows = await db.fetch(
            """WITH added AS (
                   INSERT INTO communication_suppressions
                       (clinic_id, channel, address, reason, note, created_by)
                   VALUES ($1, $2, $3, $4, $5, $6)
                   ON CONFLICT (clinic_id, channel, address, (coalesce(kind, ''))) DO NOTHING
                   RETURNING channel, address, kind, reason, note, created_at, created_by)
               SELECT *, true AS added FROM added""",
            clinic_id, channel, stored, reason, note, principal.user_id,
        )
        if not rows:  # already there (ON CONFLICT waited for its writer: a new statement sees it)
            rows = await db.fetch(
                """SELECT channel, address, kind, reason, note, created_at, created_by,
                          false AS added
                   FROM communication_suppressions
                   WHERE clinic_id = $1 AND channel = $2 AND address = $3 AND kind IS NULL""",
                clinic_id, channel, stored,
            )
        else:
            await record(principal, action="communication_suppressions:create",
                         resource_type="communication_suppression", clinic_id=clinic_id,
                         detail={"channel": channel, "reason": reason,
                                 "address": masked(stored)})
    return suppression_from_row(rows[0]), bool(rows[0]["added"])


async def remove_suppression(principal: Principal, clinic_id: uuid.UUID, *, channel: str,
                             address: str) -> None:
    """Send to the address again: every entry of it goes (for every kind, and kind by kind).
    None there (or another clinic's) is 404."""
    require(principal, "communication_settings:manage", clinic_id,
            resource_type="communication_suppression")
    stored = normalize(channel, address)
    async with db.transaction():
        rows = await db.fetch(
            """DELETE FROM communication_suppressions
               WHERE clinic_id = $1 AND channel = $2 AND address = $3 RETURNING reason""",
            clinic_id, channel, stored,
        )
        if not rows:
            raise NotFound("suppression not found", resource_type="communication_suppression")
        await record(principal, action="communication_suppressions:delete",
                     resource_type="communication_suppression", clinic_id=clinic_id,
                     detail={"channel": channel, "reason": rows[0]["reason"],
                             "address": masked(stored)})


async def suppress(clinic_id: uuid.UUID, channel: str, address: str, reason: str,
                   source_event_id: str | None = None, *, kind: str | None = None) -> bool:
    """For webhooks, the pipeline and one-click unsubscribes (no principal): suppress an
    address, for one notification `kind` or (None) every kind, once. Whether this call added
    it; an entry already there keeps its first reason, so a webhook delivered twice (or a
    bounce after a complaint, or a second click) changes nothing. One statement."""
    stored = normalize(channel, address)
    if reason not in REASONS:
        raise invalid_field("reason", ", ".join(REASONS))
    rows = await db.fetch(
        """INSERT INTO communication_suppressions
               (clinic_id, channel, address, reason, source_event_id, kind)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (clinic_id, channel, address, (coalesce(kind, ''))) DO NOTHING RETURNING 1""",
        clinic_id, channel, stored, reason, source_event_id, kind,
    )
    return bool(rows)
