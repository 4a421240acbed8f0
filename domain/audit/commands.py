"""Writing the audit log. Rows are chained: each hashes the previous one.

Appending takes the global chain lock until COMMIT, so `record` only notes the row in the
transaction's journal, and the outermost transaction appends it just before it commits (see
`domain.journal`, which also keeps the lock order with the clinics' event sequences). A row
recorded outside any transaction (a refused request, a denied socket) gets a transaction of its
own and is written at once.
"""

from __future__ import annotations

import enum
import uuid
from typing import Any

from domain import db
from domain.journal import AuditRow
from domain.principal import Principal, RequestMeta


class Outcome(enum.StrEnum):
    ALLOWED = "allowed"
    DENIED = "denied"
    FAILED = "failed"


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
    row = AuditRow(
        actor_id=actor.user_id if actor else actor_id,
        clinic_id=clinic_id,
        action=action,
        resource_type=resource_type,
        resource_id=None if resource_id is None else str(resource_id),
        outcome=outcome.value,
        request_id=meta.request_id or None,
        ip=meta.ip,
        detail=detail or {},
    )
    journal = db.journal()
    if journal is not None:
        journal.audit.append(row)
        return
    async with db.transaction():  # none to join: this one appends the row as it commits
        own = db.journal()
        assert own is not None
        own.audit.append(row)
