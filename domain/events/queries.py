"""Reading the durable event log: replay after a sequence, filtered by what the caller sees."""

from __future__ import annotations

import json
import uuid
from typing import Any

import msgspec

from domain import db
from domain.access.policies import require
from domain.access.rooms import visible_rooms
from domain.errors import invalid_field
from domain.events.envelope import Envelope, Outgoing
from domain.paging import check_limit
from domain.principal import Principal


class EventPage(msgspec.Struct, frozen=True):
    """`resync_required` when `after` is older than the retained log, or beyond the clinic's
    last sequence (a cursor from another deployment or a forged one, which would otherwise
    wait silently for events that never come): reload over REST from `last_seq`."""

    items: list[Envelope]
    last_seq: int
    resync_required: bool = False


def envelope_from_row(row: dict[str, Any]) -> Envelope:
    data = row["data"]
    return Envelope(
        id=row["id"], seq=row["seq"], clinic_id=row["clinic_id"], type=row["type"],
        category=row["category"], priority=row["priority"], occurred_at=row["occurred_at"],
        data=json.loads(data) if isinstance(data, str) else data,
    )


async def events_after(
    clinic_id: uuid.UUID, after: int, rooms: list[str], *, limit: int = 500
) -> EventPage:
    head = await db.fetch(
        """SELECT s.last_seq, (SELECT min(seq) FROM events e WHERE e.clinic_id = s.clinic_id)
               AS first_seq
           FROM clinic_sequences s WHERE s.clinic_id = $1""",
        clinic_id,
    )
    last_seq = head[0]["last_seq"] if head else 0
    first_seq = head[0]["first_seq"] if head else None
    if after > last_seq:
        return EventPage(items=[], last_seq=last_seq, resync_required=True)
    if after == last_seq:
        return EventPage(items=[], last_seq=last_seq)
    if first_seq is None or after + 1 < first_seq:
        return EventPage(items=[], last_seq=last_seq, resync_required=True)
    rows = await db.fetch(
        """SELECT * FROM events WHERE clinic_id = $1 AND seq > $2 AND audience && $3::text[]
           ORDER BY seq LIMIT $4""",
        clinic_id, after, rooms, limit,
    )
    return EventPage(items=[envelope_from_row(r) for r in rows], last_seq=last_seq)


async def list_events(
    principal: Principal, clinic_id: uuid.UUID, *, after: int = 0, limit: int = 100
) -> EventPage:
    require(principal, "events:read", clinic_id, resource_type="event")
    check_limit(limit)
    if after < 0:
        raise invalid_field("after", "must be 0 or more (sequences start at 1)")
    return await events_after(clinic_id, after, visible_rooms(principal, clinic_id), limit=limit)


async def last_seqs(clinic_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    rows = await db.fetch(
        "SELECT clinic_id, last_seq FROM clinic_sequences WHERE clinic_id = ANY($1::uuid[])",
        clinic_ids,
    )
    found = {r["clinic_id"]: r["last_seq"] for r in rows}
    return {c: found.get(c, 0) for c in clinic_ids}


async def heads() -> dict[uuid.UUID, int]:
    """Every clinic's last sequence: for a consumer of the log finding the clinics with news."""
    rows = await db.fetch("SELECT clinic_id, last_seq FROM clinic_sequences")
    return {r["clinic_id"]: r["last_seq"] for r in rows}


async def outgoing_after(clinic_id: uuid.UUID, after: int, *, limit: int) -> list[Outgoing]:
    """Every event after a sequence, whatever its audience: for a hub filling a gap."""
    rows = await db.fetch(
        "SELECT * FROM events WHERE clinic_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        clinic_id, after, limit,
    )
    return [Outgoing(envelope=envelope_from_row(r), audience=list(r["audience"])) for r in rows]


async def claim_unpublished(limit: int = 500) -> list[Outgoing]:
    """For the relay, inside its transaction: the oldest unpublished events, locked."""
    rows = await db.fetch(
        """SELECT * FROM events WHERE published_at IS NULL
           ORDER BY clinic_id, seq LIMIT $1 FOR UPDATE SKIP LOCKED""",
        limit,
    )
    return [Outgoing(envelope=envelope_from_row(r), audience=list(r["audience"])) for r in rows]


async def mark_published(ids: list[uuid.UUID]) -> None:
    await db.fetch("UPDATE events SET published_at = now() WHERE id = ANY($1::uuid[])", ids)
