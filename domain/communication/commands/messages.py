"""A message's life in the delivery log: enqueued with its job in the caller's transaction,
claimed by one worker under a lease, finished with every provider attempt in one statement.

The claim is the guard for "at most once across providers": only the worker holding the claim
may finish the message, and a message is claimable only while `queued`, or `sending` past its
lease (its worker died mid-send; the retry is the at-most-one duplicate, which providers that
take an idempotency key drop).
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import msgspec

from domain import clock, db
from domain.communication.config import Resolved
from domain.communication.models import Channel, Outcome, Sender, Status, WhatsAppTemplate
from domain.jobs.commands import schedule

#: The worker job that sends one message (tasks/delivery.py).
SEND_TASK = "communication.send"


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
    #: Push: the device's token and kind; None when the device is gone or retired.
    device_id: uuid.UUID | None = None
    token: str | None = None
    token_kind: str | None = None
    #: The clinic's own chain for this channel, None when it has none.
    config: Resolved | None = None


class AttemptRow(msgspec.Struct, frozen=True, kw_only=True):
    provider: str
    outcome: Outcome
    status_code: int | None = None
    latency_ms: float | None = None
    error: str | None = None


def _job(message_id: uuid.UUID) -> dict[str, Any]:
    return {"task": SEND_TASK, "job_key": f"message:{message_id}",
            "payload": {"message_id": str(message_id)}}


async def enqueue(*, clinic_id: uuid.UUID, channel: Channel, kind: str, content: Content,
                  address: str | None = None, user_id: uuid.UUID | None = None,
                  dedupe_key: str | None = None) -> list[uuid.UUID]:
    """Log the message(s) and schedule their sending, in the caller's transaction (or one of
    its own), so a change and the messages it implies commit together. Push goes to each of the
    user's active devices (one log row each); other channels to `address`, which the caller has
    validated. A `dedupe_key` seen before for this clinic enqueues nothing again."""
    body = msgspec.json.encode({"push_data": content.push_data, "headers": content.headers,
                                "template": content.template}).decode()
    async with db.transaction():
        if channel == "push":
            if user_id is None:
                raise ValueError("push needs a user_id")
            rows = await db.fetch(
                """INSERT INTO communication_messages (id, clinic_id, user_id, channel, kind, address,
                       device_id, subject, body, html, data, dedupe_key)
                   SELECT gen_random_uuid(), $1, $2, 'push', $3, d.id::text, d.id, $4, $5, $6,
                          $7::jsonb, CASE WHEN $8::text IS NULL THEN NULL ELSE $8 || ':' || d.id END
                   FROM devices d WHERE d.user_id = $2 AND d.retired_at IS NULL
                   ON CONFLICT (clinic_id, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
                   RETURNING id""",
                clinic_id, user_id, kind, content.subject, content.text, content.html, body,
                dedupe_key)
        else:
            if address is None:
                raise ValueError(f"{channel} needs an address")
            rows = await db.fetch(
                """INSERT INTO communication_messages (id, clinic_id, user_id, channel, kind, address,
                       subject, body, html, data, dedupe_key)
                   VALUES (gen_random_uuid(), $1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10)
                   ON CONFLICT (clinic_id, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
                   RETURNING id""",
                clinic_id, user_id, channel, kind, address, content.subject, content.text,
                content.html, body, dedupe_key)
        ids = [r["id"] for r in rows]
        for message_id in ids:
            await schedule(**_job(message_id))
    return ids


async def claim(message_id: uuid.UUID, *, lease: timedelta) -> Claimed | None:
    """Take the message for one sending round; None when it is finished or another worker's
    lease on it is still running."""
    rows = await db.fetch(
        """WITH c AS (
               UPDATE communication_messages SET status = 'sending', claim_id = gen_random_uuid(),
                   lease_until = now() + $2::interval, tries = tries + 1, updated_at = now()
               WHERE id = $1 AND (status = 'queued' OR (status = 'sending' AND lease_until < now()))
               RETURNING id, claim_id, clinic_id, user_id, channel, kind, address, device_id, tries,
                         subject, body, html, data)
           SELECT c.*, d.token, d.kind AS token_kind,
                  EXISTS (SELECT 1 FROM communication_suppressions s WHERE s.clinic_id = c.clinic_id
                          AND s.channel = c.channel AND s.address = c.address) AS suppressed,
                  cfg.providers, cfg.sender, cfg.rate_per_second, cfg.retry_unknown
           FROM c LEFT JOIN devices d ON d.id = c.device_id AND d.retired_at IS NULL
                  LEFT JOIN communication_configs cfg ON cfg.clinic_id = c.clinic_id
                                                     AND cfg.channel = c.channel""",
        message_id, lease)
    if not rows:
        return None
    r = rows[0]
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


async def finish(claimed: Claimed, *, status: Status | None, attempts: list[AttemptRow],
                 provider: str | None = None, provider_message_id: str | None = None,
                 error: str | None = None, retry_in: timedelta | None = None,
                 counts_as_round: bool = True) -> bool:
    """Record this round's attempts and the message's new status. `status=None` puts it back
    in the queue with a new job after `retry_in` (no provider could take it, or a rate limit
    longer than a worker should sleep: `counts_as_round=False`). False when the claim was lost
    (the lease ran out and another worker took the message): then nothing is written."""
    attempts_json = msgspec.json.encode(attempts).decode()
    async with db.transaction():
        rows = await db.fetch(
            """WITH m AS (
                   UPDATE communication_messages SET status = COALESCE($3, 'queued'),
                       provider = COALESCE($4, provider),
                       provider_message_id = COALESCE($5, provider_message_id),
                       error = $6, lease_until = NULL, claim_id = NULL, updated_at = now(),
                       sent_at = CASE WHEN $3 = 'sent' THEN now() ELSE sent_at END,
                       tries = tries - CASE WHEN $8 THEN 0 ELSE 1 END
                   WHERE id = $1 AND claim_id = $2 AND status = 'sending'
                   RETURNING id, clinic_id),
               a AS (
                   INSERT INTO communication_attempts (message_id, clinic_id, provider, outcome,
                                                       status_code, latency_ms, error)
                   SELECT m.id, m.clinic_id, x.provider, x.outcome, x.status_code, x.latency_ms,
                          x.error
                   FROM m, jsonb_to_recordset($7::jsonb) AS x(provider text, outcome text,
                       status_code integer, latency_ms double precision, error text)
                   RETURNING 1)
               SELECT (SELECT count(*) FROM m) AS done""",
            claimed.id, claimed.claim_id, status, provider, provider_message_id,
            error[:500] if error else None, attempts_json, counts_as_round)
        done = bool(rows[0]["done"])
        if done and status is None:
            await schedule(task=SEND_TASK, job_key=f"message:{claimed.id}:after:{claimed.claim_id}",
                           payload={"message_id": str(claimed.id)},
                           run_at=clock.now() + (retry_in or timedelta(0)))
    return done


async def reclaim_abandoned(limit: int = 500) -> int:
    """Schedule a new round for messages left `sending` past their lease (their worker died).
    The job key names the dead claim, so every worker's sweeper schedules it once."""
    async with db.transaction():
        rows = await db.fetch(
            """SELECT id, claim_id FROM communication_messages
               WHERE status = 'sending' AND lease_until < now()
               ORDER BY lease_until LIMIT $1 FOR UPDATE SKIP LOCKED""", limit)
        for r in rows:
            await schedule(task=SEND_TASK, job_key=f"message:{r['id']}:reclaim:{r['claim_id']}",
                           payload={"message_id": str(r["id"])})
    return len(rows)
