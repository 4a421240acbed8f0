"""TEMPORARY until the devices branch merges."""

from __future__ import annotations

import uuid

from domain import db


async def retire(device_id: uuid.UUID, reason: str) -> None:
    await db.fetch("UPDATE devices SET retired_at = now(), retired_reason = $2 WHERE id = $1 "
                   "AND retired_at IS NULL", device_id, reason)
