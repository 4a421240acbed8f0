"""What providers report after a send (through the webhook inbox): a message's later status,
and the soft bounces that suppress an address when they repeat.

A status never moves backwards, whatever order the reports arrive in (WhatsApp's statuses
come out of order; SNS and ZeptoMail retry): sent (or unknown) < delivered < read, and bounced,
complained and failed are final. The rule is in the UPDATE's WHERE, so two reports racing for
one message cannot undo each other."""

from __future__ import annotations

import uuid

import msgspec

from domain import db
from domain.communication.models import Channel, Status

#: The statuses a message may be in for a report to move it to the key's status.
MOVES_FROM: dict[str, tuple[str, ...]] = {
    "delivered": ("sent", "unknown"),
    "read": ("sent", "unknown", "delivered"),
    "bounced": ("sent", "unknown", "delivered", "read"),
    "complained": ("sent", "unknown", "delivered", "read"),
    "failed": ("sent", "unknown", "delivered", "read"),
}
#: Soft bounces within SOFT_BOUNCE_DAYS that suppress the address.
SOFT_BOUNCE_LIMIT = 3
SOFT_BOUNCE_DAYS = 7


class Reported(msgspec.Struct, frozen=True, kw_only=True):
    """The message a provider's report names, and whether the report moved its status."""

    id: uuid.UUID
    clinic_id: uuid.UUID
    channel: Channel
    address: str
    before: Status
    moved: bool


async def report_status(provider: str, provider_message_id: str, status: Status, *,
                        error: str | None = None) -> Reported | None:
    """Move the message `provider` knows as `provider_message_id` to `status` when that is
    forward (MOVES_FROM); None when no message of ours has that id. One statement."""
    if status not in MOVES_FROM:
        raise ValueError(f"a provider cannot report {status!r}")
    rows = await db.fetch(
        """WITH m AS (
               SELECT id, clinic_id, channel, address, status FROM communication_messages
               WHERE provider = $1 AND provider_message_id = $2
               ORDER BY created_at LIMIT 1 FOR UPDATE),
           u AS (
               UPDATE communication_messages c SET status = $3, updated_at = now(),
                   error = COALESCE($5, c.error)
               FROM m WHERE c.id = m.id AND c.status = ANY($4::text[])
               RETURNING c.id)
           SELECT m.id, m.clinic_id, m.channel, m.address, m.status AS before,
                  EXISTS (SELECT 1 FROM u) AS moved
           FROM m""",
        provider, provider_message_id, status, list(MOVES_FROM[status]),
        error[:500] if error else None)
    if not rows:
        return None
    r = rows[0]
    return Reported(id=r["id"], clinic_id=r["clinic_id"], channel=r["channel"],
                    address=r["address"], before=r["before"], moved=bool(r["moved"]))


async def record_soft_bounce(clinic_id: uuid.UUID, channel: Channel, address: str,
                             source_event_id: str) -> int:
    """Note one soft bounce (once per provider event) and return how many the address had in
    the last SOFT_BOUNCE_DAYS, this one included; the caller suppresses at SOFT_BOUNCE_LIMIT.
    One statement (the count adds the row the same statement inserts, which it cannot see)."""
    rows = await db.fetch(
        """WITH b AS (
               INSERT INTO communication_soft_bounces (clinic_id, channel, address, source_event_id)
               VALUES ($1, $2, $3, $4) ON CONFLICT (source_event_id) DO NOTHING RETURNING 1)
           SELECT (SELECT count(*) FROM communication_soft_bounces
                   WHERE clinic_id = $1 AND channel = $2 AND address = $3
                     AND at > now() - make_interval(days => $5))
                  + (SELECT count(*) FROM b) AS n""",
        clinic_id, channel, address, source_event_id, SOFT_BOUNCE_DAYS)
    return int(rows[0]["n"])
