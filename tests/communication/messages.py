"""Delivery-log rows written with SQL in the migration's shape, for the tests that read the log
before the pipeline that writes it exists."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any


def insert_message(db: Any, clinic_id: str, user_id: str | None, *, channel: str = "email",
                   status: str = "sent", age: timedelta = timedelta(minutes=5),
                   kind: str = "reminder", body: str | None = None,
                   attempts: list[dict[str, Any]] | tuple[()] = ()) -> str:
    """A message `age` old with `attempts` (provider, outcome, status_code, latency_ms, error);
    its subject is "subject of <id>" and its body `body` or "body of <id>"."""
    message_id = str(uuid.uuid4())
    created = datetime.now(UTC) - age
    address = {"email": "pat@example.test", "sms": "+15550001111",
               "whatsapp": "+15550001111", "push": str(uuid.uuid4())}[channel]
    db.fetch(
        """INSERT INTO communication_messages
               (id, clinic_id, user_id, channel, kind, address, status, provider,
                provider_message_id, error, subject, body, html, data, created_at, updated_at,
                sent_at)
           VALUES ($1::uuid, $2::uuid, $3::uuid, $4, $5, $6, $7, 'local', $8, NULL, $9, $10,
                   $11, $12::jsonb, $13, $13, $14)""",
        message_id, clinic_id, user_id, channel, kind, address, status, f"pm-{message_id[:8]}",
        f"subject of {message_id}", body or f"body of {message_id}", f"<p>{message_id}</p>",
        json.dumps({"k": message_id}), created,
        created + timedelta(seconds=1) if status not in ("queued", "sending") else None,
    )
    for i, a in enumerate(attempts):
        db.fetch(
            """INSERT INTO communication_attempts
                   (message_id, clinic_id, provider, outcome, status_code, latency_ms, error, at)
               VALUES ($1::uuid, $2::uuid, $3, $4, $5, $6, $7, $8)""",
            message_id, clinic_id, a["provider"], a["outcome"], a.get("status_code"),
            a.get("latency_ms"), a.get("error"), created + timedelta(milliseconds=i + 1),
        )
    return message_id
