"""What adding a member and accepting an invitation share: the location checks and the
membership INSERT that returns the member as the API shows it."""

from __future__ import annotations

import uuid

from domain import db
from domain.access.roles import Role
from domain.errors import invalid_field
from domain.identity.people import person_join
from domain.tenancy.models import (
    Member,
)
from domain.tenancy.queries import (
    member_from_row,
    require_location,
)


async def _check_location(clinic_id: uuid.UUID, location_id: uuid.UUID | None) -> None:
    if location_id is None:
        return
    await require_location(clinic_id, location_id,
                           otherwise=invalid_field("location_id", "no such location in this clinic"))


def _check_role_location(role: Role, location_id: uuid.UUID | None) -> None:
    if role is Role.LOCATION_HEAD and location_id is None:
        raise invalid_field("location_id", "a LOCATION_HEAD needs a location")


_INSERT_MEMBERSHIP = f"""
WITH m AS (
    INSERT INTO memberships (id, user_id, clinic_id, role, location_id)
    VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, clinic_id) DO NOTHING RETURNING *
)
SELECT m.user_id, m.clinic_id, m.role, m.location_id, m.created_at, m.id, u.email, u.name
FROM m {person_join("m.user_id", "u")}
"""


async def _insert_membership(user_id: uuid.UUID, clinic_id: uuid.UUID, role: Role,
                             location_id: uuid.UUID | None) -> Member | None:
    """The new membership as the API shows it, from its INSERT (not read back after it);
    None when the user already is a member."""
    rows = await db.fetch(_INSERT_MEMBERSHIP, uuid.uuid4(), user_id, clinic_id, role.value,
                          location_id)
    return member_from_row(rows[0]) if rows else None
