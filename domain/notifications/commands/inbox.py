"""Read marks of the in-app inbox: the caller's own notifications only. Not audited: a read
mark is the owner's bookkeeping of their own inbox, like opening an email, and changes nothing
anyone else sees."""

from __future__ import annotations

import uuid
from typing import Any

from domain import db
from domain.errors import NotFound
from domain.notifications.models import Notification
from domain.principal import Principal

#: The columns of an inbox item (`notification_from_row` reads them).
ITEM_COLUMNS = "id, clinic_id, kind, appointment_id, title, body, late, read_at, created_at"


def notification_from_row(row: dict[str, Any]) -> Notification:
    return Notification(id=row["id"], clinic_id=row["clinic_id"], kind=row["kind"],
                        appointment_id=row["appointment_id"], title=row["title"],
                        body=row["body"], late=row["late"], read_at=row["read_at"],
                        created_at=row["created_at"])


async def mark_read(principal: Principal, notification_id: uuid.UUID) -> Notification:
    """Mark one of the caller's in-app notifications read (its first read time stays: marking
    again is not an error, a retried POST). Someone else's, or none, is 404, never 403: whether
    an id exists is not the caller's to learn. One statement."""
    rows = await db.fetch(
        f"""UPDATE notifications SET read_at = coalesce(read_at, now())
            WHERE id = $1 AND user_id = $2 AND in_app RETURNING {ITEM_COLUMNS}""",
        notification_id, principal.user_id,
    )
    if not rows:
        raise NotFound("notification not found", resource_type="notification",
                       resource_id=notification_id)
    return notification_from_row(rows[0])


async def mark_all_read(principal: Principal) -> int:
    """Mark every unread in-app notification of the caller read; how many this call marked
    (0 the second time). One statement."""
    rows = await db.fetch(
        """WITH marked AS (
               UPDATE notifications SET read_at = now()
               WHERE user_id = $1 AND in_app AND read_at IS NULL RETURNING 1)
           SELECT count(*) AS n FROM marked""",
        principal.user_id,
    )
    return int(rows[0]["n"])
