"""Keyset pages: `{items, next_cursor}`, ordered by (created_at, id)."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Generic, TypeVar

import msgspec

from domain.errors import invalid_field

T = TypeVar("T")

MAX_LIMIT = 200


class Page(msgspec.Struct, Generic[T], frozen=True):
    items: list[T]
    next_cursor: str | None = None


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{row_id}".encode()).decode()


def decode_cursor(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    if not cursor:
        return None
    try:
        stamp, row_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        at = datetime.fromisoformat(stamp)
        at.astimezone(UTC)  # what the database is sent: year 1 at +05:00 has no UTC instant
        return at, uuid.UUID(row_id)
    except (ValueError, UnicodeDecodeError, OverflowError) as exc:
        raise invalid_field("cursor", "not a cursor this API issued") from exc


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise invalid_field("limit", f"must be between 1 and {MAX_LIMIT}")
    return limit
