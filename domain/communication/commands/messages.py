"""A message's life in the delivery log, which is also the delivery queue: enqueued in the
caller's transaction, claimed by a worker in batches under a lease, finished with every
provider attempt in one statement.

The claim is the guard for "at most once across providers": only the worker holding the claim
may finish the message, and a message is claimable only while `queued` and due, or `sending`
past its lease (its worker died mid-send; that retry is the at-most-one duplicate, which
providers that take an idempotency key drop).

Why not one Taskiq job per message: dispatching each through the job table and the Redis
stream (schedule, enqueue, read, acknowledge) cost two thirds of a worker's CPU per message
(bench/delivery.py); the table already holds what a queue needs (due time, lease, claim).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

import msgspec

from domain import db
from domain.communication.config import Resolved
from domain.communication.models import Channel, Outcome, Sender, Status, WhatsAppTemplate

#: LISTEN channel a delivery loop wakes on when a message is enqueued.
CHANNEL = "carewire_messages"


class Content(msgspec.Struct, frozen=True, kw_only=True):
    """What to say: rendered by the caller (notifications own templates)."""

    subject: str | None = None
    text: str
    html: str | None = None
    #: Push data payload; string values only, as FCM requires.
    push_data: dict[str, str] = {}
    #: Extra email headers (List-Unsubscribe...).
    headers: dict[str, str] = {}
    template: WhatsAppTemplate | None = None


class Claimed(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a send needs, loaded by the claim's one statement."""

    id: uuid.UUID
    claim_id: uuid.UUID
    clinic_id: uuid.UUID
    user_id: uuid.UUID | None
    channel: Channel
    kind: str
    address: str
    tries: int
    content: Content
    suppressed: bool
    #: Push: the device's token and kind; None when the device is gone, retired, or now
    #: registered to someone else (a phone that changed hands).
    device_id: uuid.UUID | None = None
    token: str | None = None
    token_kind: str | None = None
    #: The clinic's own chain for this channel, None when it has none.
    config: Resolved | None = None


class AttemptRow(msgspec.Struct, frozen=True, kw_only=True):
    provider: str
    outcome: Outcome
    #: When the call to the provider began (the worker's clock); None: when it was logged.
    at: datetime | None = None
    status_code: int | None = None
    latency_ms: float | None = None
    error: str | None = None


async def enqueue(*, clinic_id: uuid.UUID, channel: Channel, kind: str, content: Content,
                  address: str | None = None, user_id: uuid.UUID | None = None,
                  dedupe_key: str | None = None,
                  not_before: datetime | None = None) -> list[uuid.UUID]:
    """Log the message(s) for sending, in the caller's transaction (or one of its own), so a
    change and the messages it implies commit together. Push goes to each of the
    user's active devices (one log row each); other channels to `address`, which the caller has
    validated. A `dedupe_key` seen before for this clinic enqueues nothing again; `not_before`
    holds the message back (quiet hours). One statement
    (the NOTIFY that wakes the delivery loops rides it; PostgreSQL sends it at COMMIT, once)."""
    body = msgspec.json.encode({"push_data": content.push_data, "headers": content.headers,
                                "template": content.template}).decode()
    if channel == "push":
        if user_id is None:
            raise ValueError("push needs a user_id")
        rows = await db.fetch(
            """WITH m AS (
                   INSERT INTO communication_messages (id, clinic_id, user_id, channel, kind,
                       address, device_id, subject, body, html, data, dedupe_key, next_at)
                   SELECT gen_random_uuid(), $1, $2, 'push', $3, d.id::text, d.id, $4, $5, $6,
                          $7::jsonb, CASE WHEN $8::text IS NULL THEN NULL ELSE $8 || ':' || d.id END,
                          coalesce($10, now())
                   FROM devices d WHERE d.user_id = $2 AND d.retired_at IS NULL
                   ON CONFLICT (clinic_id, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
                   RETURNING id)
               SELECT id, pg_notify($9, '') FROM m""",
            clinic_id, user_id, kind, content.subject, content.text, content.html, body,
            dedupe_key, CHANNEL, not_before)
    else:
        if address is None:
            raise ValueError(f"{channel} needs an address")
        rows = await db.fetch(
            """WITH m AS (
                   INSERT INTO communication_messages (id, clinic_id, user_id, channel, kind,
                       address, subject, body, html, data, dedupe_key, next_at)
                   VALUES (gen_random_uuid(), $1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10,
                           coalesce($12, now()))
                   ON CONFLICT (clinic_id, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
                   RETURNING id)
               SELECT id, pg_notify($11, '') FROM m""",
            clinic_id, user_id, channel, kind, address, content.subject, content.text,
            content.html, body, dedupe_key, CHANNEL, not_before)
    return [r["id"] for r in rows]


async def claim_due(limit: int, *, lease: timedelta) -> list[Claimed]:
    """Take up to `limit` due messages (and up to `limit` whose worker's lease ran out) for one
    sending round each, with everything the round needs, in one statement. SKIP LOCKED lets several
    workers share the queue."""
    rows = await db.fetch(
        """WITH due AS (
               SELECT id FROM communication_messages WHERE status = 'queued' AND next_at <= now()
               ORDER BY next_at LIMIT $1 FOR UPDATE SKIP LOCKED),
           abandoned AS (
               SELECT id FROM communication_messages WHERE status = 'sending' AND lease_until < now()
               ORDER BY lease_until LIMIT $1 FOR UPDATE SKIP LOCKED),
           c AS (
               UPDATE communication_messages SET status = 'sending', claim_id = gen_random_uuid(),
                   lease_until = now() + $2::interval, tries = tries + 1, updated_at = now()
               WHERE id IN (SELECT id FROM due UNION ALL SELECT id FROM abandoned)
               RETURNING id, claim_id, clinic_id, user_id, channel, kind, address, device_id, tries,
                         subject, body, html, data)
           SELECT c.*, d.token, d.kind AS token_kind,
                  EXISTS (SELECT 1 FROM communication_suppressions s WHERE s.clinic_id = c.clinic_id
                          AND s.channel = c.channel AND s.address = c.address
                          AND (s.kind IS NULL OR s.kind = c.kind)) AS suppressed,
                  cfg.providers, cfg.sender, cfg.rate_per_second, cfg.retry_unknown
           FROM c LEFT JOIN devices d ON d.id = c.device_id AND d.retired_at IS NULL
                                    AND d.user_id = c.user_id
                  LEFT JOIN communication_configs cfg ON cfg.clinic_id = c.clinic_id
                                                     AND cfg.channel = c.channel""",
        limit, lease)
    return [_claimed(r) for r in rows]


def _claimed(r: dict[str, Any]) -> Claimed:
    extra = msgspec.json.decode(r["data"] or "{}")
    config = None
    if r["providers"] is not None:
        sender = r["sender"] if isinstance(r["sender"], str) else json.dumps(r["sender"])
        config = Resolved(channel=r["channel"], providers=list(r["providers"]),
                          sender=msgspec.json.decode(sender, type=Sender),
                          rate_per_second=r["rate_per_second"],
                          retry_unknown=bool(r["retry_unknown"]), source="clinic")
    return Claimed(
        id=r["id"], claim_id=r["claim_id"], clinic_id=r["clinic_id"], user_id=r["user_id"],
        channel=r["channel"], kind=r["kind"], address=r["address"], tries=r["tries"],
        content=Content(subject=r["subject"], text=r["body"] or "", html=r["html"],
                        push_data=extra.get("push_data") or {}, headers=extra.get("headers") or {},
                        template=msgspec.convert(extra["template"], WhatsAppTemplate)
                        if extra.get("template") else None),
        suppressed=bool(r["suppressed"]), device_id=r["device_id"], token=r["token"],
        token_kind=r["token_kind"], config=config)


class Finish(msgspec.Struct, frozen=True, kw_only=True):
    """How one sending round ended for one message. `status=None` puts it back in the queue,
    due after `retry_in` (no provider could take it; or a rate-limit slot further away than a
    worker should sleep, which `counts_as_round=False` does not count as a round)."""

    id: uuid.UUID
    claim_id: uuid.UUID
    status: Status | None
    attempts: list[AttemptRow] = []
    provider: str | None = None
    provider_message_id: str | None = None
    error: str | None = None
    retry_ms: int = 0
    counts_as_round: bool = True


def finished(claimed: Claimed, status: Status | None, attempts: list[AttemptRow], *,
             provider: str | None = None, provider_message_id: str | None = None,
             error: str | None = None, retry_in: timedelta | None = None,
             counts_as_round: bool = True) -> Finish:
    return Finish(id=claimed.id, claim_id=claimed.claim_id, status=status, attempts=attempts,
                  provider=provider, provider_message_id=provider_message_id,
                  error=error[:500] if error else None,
                  retry_ms=int((retry_in or timedelta(0)) / timedelta(milliseconds=1)),
                  counts_as_round=counts_as_round)


async def finish(rounds: list[Finish]) -> set[uuid.UUID]:
    """Record sending rounds, each message's status and every attempt, for a batch of messages
    in one statement (a delivery loop gathers the rounds that end together). Returns the ids
    written; a message whose claim was lost (its lease ran out and another worker took it) is
    left alone."""
    if not rounds:
        return set()
    rows = await db.fetch(
        """WITH x AS (
               SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(id uuid, claim_id uuid,
                   status text, attempts jsonb, provider text, provider_message_id text,
                   error text, retry_ms bigint, counts_as_round boolean)),
           m AS (
               UPDATE communication_messages c SET status = COALESCE(x.status, 'queued'),
                   provider = COALESCE(x.provider, c.provider),
                   provider_message_id = COALESCE(x.provider_message_id, c.provider_message_id),
                   error = x.error, lease_until = NULL, claim_id = NULL, updated_at = now(),
                   sent_at = CASE WHEN x.status = 'sent' THEN now() ELSE c.sent_at END,
                   next_at = now() + x.retry_ms * interval '1 millisecond',
                   tries = c.tries - CASE WHEN x.counts_as_round THEN 0 ELSE 1 END
               FROM x WHERE c.id = x.id AND c.claim_id = x.claim_id AND c.status = 'sending'
               RETURNING c.id, c.clinic_id, x.attempts),
           a AS (
               INSERT INTO communication_attempts (message_id, clinic_id, provider, outcome,
                                                   status_code, latency_ms, error, at)
               SELECT m.id, m.clinic_id, y.provider, y.outcome, y.status_code, y.latency_ms,
                      y.error, COALESCE(y.at, now())
               FROM m, jsonb_to_recordset(m.attempts) AS y(provider text, outcome text,
                   status_code integer, latency_ms double precision, error text, at timestamptz)
               RETURNING 1)
           SELECT id FROM m""",
        msgspec.json.encode(rounds).decode())
    return {r["id"] for r in rows}
