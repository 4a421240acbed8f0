"""Inbox rows written with SQL in the migration's shape, for the suites that cross every route
(authorization, bad input) and the inbox's paging tests: the flow that writes them (events →
dispatch) has end-to-end tests of its own (test_notifications_e2e.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any


def insert_notification(db: Any, clinic_id: str, user_id: str, *, kind: str = "appointment.booked",
                        in_app: bool = True, read: bool = False,
                        age: timedelta = timedelta(minutes=5),
                        title: str | None = None) -> str:
    """An inbox item `age` old (in_app: False, a row the inbox must not show)."""
    notification_id = str(uuid.uuid4())
    created = datetime.now(UTC) - age
    db.fetch(
        """INSERT INTO notifications (id, clinic_id, user_id, kind, dedupe_key, status, channels,
                                      in_app, title, body, read_at, created_at)
           VALUES ($1::uuid, $2::uuid, $3::uuid, $4, $5, 'sent', $6, $7, $8, $9, $10, $11)""",
        notification_id, clinic_id, user_id, kind, f"test:{notification_id}",
        ["in_app"] if in_app else ["email"], in_app, title or f"title of {notification_id}",
        f"body of {notification_id}", created if read else None, created,
    )
    return notification_id
