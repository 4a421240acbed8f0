"""How one audit row is hashed: the same bytes when written and when verified."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Any

import msgspec

GENESIS = b"\x00" * 32
_encoder = msgspec.json.Encoder(order="sorted")


def row_hash(
    prev_hash: bytes,
    *,
    id: int,
    occurred_at: datetime,
    actor_id: uuid.UUID | None,
    clinic_id: uuid.UUID | None,
    action: str,
    resource_type: str,
    resource_id: str | None,
    outcome: str,
    request_id: str | None,
    ip: str | None,
    detail: dict[str, Any],
) -> bytes:
    body = _encoder.encode(
        [
            id,
            occurred_at.isoformat(),
            str(actor_id) if actor_id else None,
            str(clinic_id) if clinic_id else None,
            action,
            resource_type,
            resource_id,
            outcome,
            request_id,
            ip,
            detail,
        ]
    )
    return hashlib.sha256(prev_hash + body).digest()
