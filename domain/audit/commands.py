"""Writing the audit log. Rows are chained: each hashes the previous one.

`record` takes a transaction-scoped advisory lock to append in order, so call it late in a
command (after its row locks), which also keeps the lock short. Recording an event takes the
same lock first (`lock_chain`), so the chain lock always comes before a clinic's sequence row
and the two can never deadlock, whichever a command writes first.
"""

from __future__ import annotations

import enum
import uuid
from typing import Any

import msgspec

from domain import clock, db
from domain.audit.chain import GENESIS, row_hash
from domain.principal import Principal, RequestMeta

#: pg_advisory_xact_lock key serialising appends to the chain.
_CHAIN_LOCK = 0x0A0D17


class Outcome(enum.StrEnum):
    ALLOWED = "allowed"
    DENIED = "denied"
    FAILED = "failed"


async def lock_chain() -> None:
    """Take the chain lock for the rest of the transaction (re-entrant within it)."""
    await db.fetch("SELECT pg_advisory_xact_lock($1)", _CHAIN_LOCK)


async def record(
    actor: Principal | None,
    *,
    action: str,
    resource_type: str,
    resource_id: object | None = None,
    clinic_id: uuid.UUID | None = None,
    outcome: Outcome = Outcome.ALLOWED,
    detail: dict[str, Any] | None = None,
    meta: RequestMeta | None = None,
    actor_id: uuid.UUID | None = None,
) -> None:
    """Append one row. Joins the caller's transaction, so it commits or rolls back with it."""
    meta = meta or (actor.meta if actor else RequestMeta())
    who = actor.user_id if actor else actor_id
    detail = detail or {}
    async with db.transaction():
        await lock_chain()
        last = await db.fetch("SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1")
        prev = bytes(last[0]["hash"]) if last else GENESIS
        row_id = (await db.fetch("SELECT nextval('audit_log_id_seq') AS id"))[0]["id"]
        occurred_at = clock.now()
        rid = None if resource_id is None else str(resource_id)
        digest = row_hash(
            prev,
            id=row_id,
            occurred_at=occurred_at,
            actor_id=who,
            clinic_id=clinic_id,
            action=action,
            resource_type=resource_type,
            resource_id=rid,
            outcome=outcome.value,
            request_id=meta.request_id or None,
            ip=meta.ip,
            detail=detail,
        )
        await db.fetch(
            """INSERT INTO audit_log (id, occurred_at, actor_id, clinic_id, action, resource_type,
                   resource_id, outcome, request_id, ip, detail, prev_hash, hash)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12, $13)""",
            row_id,
            occurred_at,
            who,
            clinic_id,
            action,
            resource_type,
            rid,
            outcome.value,
            meta.request_id or None,
            meta.ip,
            msgspec.json.encode(detail).decode(),
            prev,
            digest,
        )
