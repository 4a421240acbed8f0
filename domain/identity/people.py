"""What other contexts may read of a user account: its id by email, its email, name and phone.

They ask here instead of querying identity's tables (tests/test_structure.py), so credentials
and sessions stay identity's alone. A leaf module (it imports no other context), so that
tenancy can use it while identity's principal lookup uses tenancy's lent fragment.
"""

from __future__ import annotations

import uuid

import msgspec

from domain import db


class Contact(msgspec.Struct, frozen=True, kw_only=True):
    email: str
    phone: str | None
    name: str


async def user_id_by_email(email: str) -> uuid.UUID | None:
    """The account with this (already normalised) email, if there is one."""
    rows = await db.fetch("SELECT id FROM users WHERE email = $1", email)
    return rows[0]["id"] if rows else None


async def contact(user_id: uuid.UUID) -> Contact | None:
    """Where a user can be reached (communication's test send goes to the caller)."""
    rows = await db.fetch("SELECT email, phone, name FROM users WHERE id = $1", user_id)
    return Contact(email=rows[0]["email"], phone=rows[0]["phone"], name=rows[0]["name"]) \
        if rows else None


async def contacts(user_ids: list[uuid.UUID]) -> dict[uuid.UUID, Contact]:
    """Several people in one statement (a notification names its recipient, the patient and
    the doctor)."""
    rows = await db.fetch("SELECT id, email, phone, name FROM users WHERE id = ANY($1::uuid[])",
                          list(set(user_ids)))
    return {r["id"]: Contact(email=r["email"], phone=r["phone"], name=r["name"]) for r in rows}


def person_join(user_id: str, alias: str) -> str:
    """An SQL join for the caller's statement giving `{alias}.email` and `{alias}.name` of the
    user `user_id` (an SQL expression there): a list of people in one statement, not one more
    query per page."""
    return f"JOIN LATERAL (SELECT email, name FROM users WHERE id = {user_id}) {alias} ON true"
