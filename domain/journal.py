"""The audit rows and events of one transaction, written just before it commits.

Both are appended in a global order that PostgreSQL enforces with locks held until COMMIT: the
audit log is one hash chain (the advisory lock `CHAIN_LOCK`, for the whole system), and a
clinic's events take gapless sequence numbers (its `clinic_sequences` row). Taken at the first
audit row or event of a command, those locks covered the rest of the command (more queries,
Python work, round trips), and every other write waited for all of it: more requests in flight
got *less* done. So commands only note here what they write, and the outermost
`db.transaction()` appends it all at its end (`flush`): the locks then cover these few
statements and the COMMIT.

Lock order, deadlock-free: a command's own row locks all come before its flush; the flush takes
the chain lock (only when it has audit rows), then the clinics' sequence rows in clinic-id order.
Numbers assigned under those locks (audit ids, event sequences) are therefore in commit order,
and so are the timestamps, which are taken under them too.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgspec

from domain import clock
from domain.audit.chain import GENESIS, row_hash

#: pg_advisory_xact_lock key serialising appends to the audit chain.
CHAIN_LOCK = 0x0A0D17
#: LISTEN channel the relay wakes on; NOTIFY is delivered at commit.
CHANNEL = "carewire_events"


@dataclass(frozen=True, slots=True)
class AuditRow:
    """An audit row before it has its place in the chain (id, time, hashes)."""

    actor_id: uuid.UUID | None
    clinic_id: uuid.UUID | None
    action: str
    resource_type: str
    resource_id: str | None
    outcome: str
    request_id: str | None
    ip: str | None
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class EventRow:
    """An event before it has its clinic sequence number and its time."""

    id: uuid.UUID
    clinic_id: uuid.UUID
    actor_id: uuid.UUID | None
    type: str
    category: str
    priority: str
    data: dict[str, Any]
    audience: list[str]


@dataclass(slots=True)
class Journal:
    """What the outermost transaction writes at its end, in the order it was recorded."""

    audit: list[AuditRow] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)

    def mark(self) -> tuple[int, int]:
        """Where a savepoint starts: rolling back to it forgets what was noted since."""
        return len(self.audit), len(self.events)

    def rollback_to(self, mark: tuple[int, int]) -> None:
        del self.audit[mark[0]:]
        del self.events[mark[1]:]


async def flush(conn: Any, journal: Journal) -> None:
    """Append the journal on `conn` (asyncpg, inside the transaction about to commit)."""
    if not journal.audit and not journal.events:
        return
    if journal.events:
        # queued in the session and delivered at COMMIT, so it can go before the locks
        await conn.execute("SELECT pg_notify($1, '')", CHANNEL)
    if journal.audit:
        await conn.execute("SELECT pg_advisory_xact_lock($1)", CHAIN_LOCK)
        await _append_audit(conn, journal.audit)
    if journal.events:
        await _append_events(conn, journal.events)
    journal.audit.clear()
    journal.events.clear()


async def _append_audit(conn: Any, rows: list[AuditRow]) -> None:
    """Under the chain lock: ids, one time, and each row's hash over the previous one."""
    # a statement of its own after the lock: its snapshot must see the last committed append
    head = await conn.fetchrow(
        """SELECT (SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1) AS prev,
                  ARRAY(SELECT nextval('audit_log_id_seq') FROM generate_series(1, $1::int))
                      AS ids""",
        len(rows),
    )
    prev = bytes(head["prev"]) if head["prev"] is not None else GENESIS
    ids = sorted(head["ids"])
    occurred_at = clock.now()
    prevs: list[bytes] = []
    hashes: list[bytes] = []
    for row_id, row in zip(ids, rows, strict=True):
        digest = row_hash(
            prev, id=row_id, occurred_at=occurred_at, actor_id=row.actor_id,
            clinic_id=row.clinic_id, action=row.action, resource_type=row.resource_type,
            resource_id=row.resource_id, outcome=row.outcome, request_id=row.request_id,
            ip=row.ip, detail=row.detail,
        )
        prevs.append(prev)
        hashes.append(digest)
        prev = digest
    encode = msgspec.json.encode
    await conn.execute(
        """INSERT INTO audit_log (id, occurred_at, actor_id, clinic_id, action, resource_type,
               resource_id, outcome, request_id, ip, detail, prev_hash, hash)
           SELECT x.id, $1, x.actor_id, x.clinic_id, x.action, x.resource_type, x.resource_id,
                  x.outcome, x.request_id, x.ip, x.detail, x.prev_hash, x.hash
           FROM unnest($2::bigint[], $3::uuid[], $4::uuid[], $5::text[], $6::text[], $7::text[],
                       $8::text[], $9::text[], $10::text[], $11::jsonb[], $12::bytea[],
                       $13::bytea[])
                AS x(id, actor_id, clinic_id, action, resource_type, resource_id, outcome,
                     request_id, ip, detail, prev_hash, hash)""",
        occurred_at, ids, [r.actor_id for r in rows], [r.clinic_id for r in rows],
        [r.action for r in rows], [r.resource_type for r in rows],
        [r.resource_id for r in rows], [r.outcome for r in rows],
        [r.request_id for r in rows], [r.ip for r in rows],
        [encode(r.detail).decode() for r in rows], prevs, hashes,
    )


async def _append_events(conn: Any, events: list[EventRow]) -> None:
    """Each clinic's next sequence numbers, clinics in id order (their rows stay locked until
    COMMIT, which keeps the numbers gapless and in commit order), then every row at once."""
    seqs: dict[uuid.UUID, int] = {}
    for clinic_id, count in sorted(Counter(e.clinic_id for e in events).items()):
        last = await conn.fetchval(
            """INSERT INTO clinic_sequences (clinic_id, last_seq) VALUES ($1, $2)
               ON CONFLICT (clinic_id) DO UPDATE SET last_seq = clinic_sequences.last_seq + $2
               RETURNING last_seq""",
            clinic_id, count,
        )
        seqs[clinic_id] = last - count
    numbered: list[int] = []
    for e in events:  # in the order recorded within each clinic
        seqs[e.clinic_id] += 1
        numbered.append(seqs[e.clinic_id])
    encode = msgspec.json.encode
    await conn.execute(
        """INSERT INTO events (id, clinic_id, seq, type, category, priority, occurred_at,
               actor_id, data, audience)
           SELECT x.id, x.clinic_id, x.seq, x.type, x.category, x.priority, $1, x.actor_id,
                  x.data, ARRAY(SELECT jsonb_array_elements_text(x.audience))
           FROM unnest($2::uuid[], $3::uuid[], $4::bigint[], $5::uuid[], $6::text[], $7::text[],
                       $8::text[], $9::jsonb[], $10::jsonb[])
                AS x(id, clinic_id, seq, actor_id, type, category, priority, data, audience)""",
        clock.now(),  # under the sequence locks: times follow the sequence within a clinic
        [e.id for e in events], [e.clinic_id for e in events], numbered,
        [e.actor_id for e in events], [e.type for e in events], [e.category for e in events],
        [e.priority for e in events], [encode(e.data).decode() for e in events],
        [encode(e.audience).decode() for e in events],
    )
