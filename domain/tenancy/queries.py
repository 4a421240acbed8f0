"""Reads of clinics, locations and members, scoped by what the principal may see."""

from __future__ import annotations

import json
import uuid
from typing import Any

import msgspec

from domain import clock, db
from domain.access.matrix import Scope
from domain.access.policies import require
from domain.access.roles import Role
from domain.audit.commands import record
from domain.errors import DomainError, NotFound
from domain.identity.people import person_join
from domain.paging import Page, check_limit, decode_cursor, encode_cursor
from domain.principal import Membership, Principal
from domain.tenancy.models import (
    Clinic,
    ClinicInvitation,
    ClinicSettings,
    InvitationStatus,
    Location,
    Member,
    MyInvitation,
)

_MEMBER_SQL = f"""
SELECT m.user_id, m.clinic_id, m.role, m.location_id, m.created_at, m.id, u.email, u.name
FROM memberships m {person_join("m.user_id", "u")}
"""


# lookups for other contexts ------------------------------------------------------------------
# Other contexts ask these instead of querying tenancy's tables (tests/test_structure.py).


def memberships_json(user_id: str) -> str:
    """An SQL expression: the memberships of the user `user_id` (an SQL expression of the
    caller's statement) as a JSON array of {clinic_id, role, location_id}. Lent to identity so
    the principal of every request is read in one statement."""
    return f"""coalesce((SELECT json_agg(json_build_object(
                   'clinic_id', m.clinic_id, 'role', m.role, 'location_id', m.location_id))
               FROM memberships m WHERE m.user_id = {user_id}), '[]')"""


def message_body_retention_days(clinic_id: str) -> str:
    """An SQL expression: the clinic `clinic_id` (an SQL expression of the caller's statement)
    keeps message bodies this many days (its `message_body_retention_days` setting, else the
    default). Lent to communication, whose body pruning compares it with every message's age
    in one statement."""
    default = ClinicSettings().message_body_retention_days
    return f"""coalesce((SELECT (c.settings->>'message_body_retention_days')::int
                         FROM clinics c WHERE c.id = {clinic_id}), {int(default)})"""


async def find_member(clinic_id: uuid.UUID, user_id: uuid.UUID) -> Membership | None:
    """The user's membership of the clinic, if any (a user has at most one per clinic)."""
    rows = await db.fetch(
        "SELECT clinic_id, role, location_id FROM memberships WHERE clinic_id = $1 AND user_id = $2",
        clinic_id, user_id,
    )
    if not rows:
        return None
    return Membership(clinic_id=rows[0]["clinic_id"], role=Role(rows[0]["role"]),
                      location_id=rows[0]["location_id"])


async def require_member(clinic_id: uuid.UUID, user_id: uuid.UUID, *, role: Role | None = None,
                         otherwise: DomainError) -> Membership:
    """The user's membership of the clinic (with that role, when one is named), else raises
    `otherwise`: each caller words the refusal its own way (a missing doctor is a 404, a
    patient named in a booking a 422 on `patient_id`)."""
    member = await find_member(clinic_id, user_id)
    if member is None or (role is not None and member.role is not role):
        raise otherwise
    return member


async def location_ids(clinic_id: uuid.UUID) -> set[uuid.UUID]:
    """The ids of the clinic's locations."""
    return {r["id"] for r in await db.fetch("SELECT id FROM locations WHERE clinic_id = $1",
                                            clinic_id)}


async def location_name(location_id: uuid.UUID) -> str | None:
    rows = await db.fetch("SELECT name FROM locations WHERE id = $1", location_id)
    return rows[0]["name"] if rows else None


async def require_location(clinic_id: uuid.UUID, location_id: uuid.UUID, *,
                           otherwise: DomainError) -> None:
    """Raises `otherwise` unless the location is the clinic's (another clinic's is as absent as
    one that does not exist)."""
    if not await db.fetch("SELECT 1 FROM locations WHERE id = $1 AND clinic_id = $2",
                          location_id, clinic_id):
        raise otherwise


def clinic_from_row(row: dict[str, Any]) -> Clinic:
    raw = row["settings"]
    return Clinic(
        id=row["id"],
        name=row["name"],
        timezone=row["timezone"],
        settings=msgspec.convert(json.loads(raw) if isinstance(raw, str) else raw, ClinicSettings),
        created_at=row["created_at"],
    )


def member_from_row(row: dict[str, Any]) -> Member:
    return Member(
        user_id=row["user_id"], clinic_id=row["clinic_id"], role=Role(row["role"]),
        location_id=row["location_id"], email=row["email"], name=row["name"],
        created_at=row["created_at"],
    )


async def load_clinic(clinic_id: uuid.UUID) -> Clinic:
    rows = await db.fetch("SELECT * FROM clinics WHERE id = $1", clinic_id)
    if not rows:
        raise NotFound("clinic not found", resource_type="clinic", resource_id=clinic_id)
    return clinic_from_row(rows[0])


async def get_clinic(principal: Principal, clinic_id: uuid.UUID) -> Clinic:
    require(principal, "clinics:read", clinic_id, resource_type="clinic", resource_id=clinic_id)
    return await load_clinic(clinic_id)


async def list_clinics(
    principal: Principal, *, limit: int = 50, cursor: str | None = None
) -> Page[Clinic]:
    """The caller's clinics (every clinic, for a SUPER_ADMIN)."""
    check_limit(limit)
    after = decode_cursor(cursor)
    rows = await db.fetch(
        """SELECT * FROM clinics
           WHERE ($1 OR id = ANY($2::uuid[]))
             AND ($3::timestamptz IS NULL OR (created_at, id) > ($3, $4))
           ORDER BY created_at, id LIMIT $5""",
        principal.is_super_admin, principal.clinic_ids(),
        after[0] if after else None, after[1] if after else None, limit + 1,
    )
    return _page(rows, limit, clinic_from_row)


async def list_locations(
    principal: Principal, clinic_id: uuid.UUID, *, limit: int = 50, cursor: str | None = None
) -> Page[Location]:
    require(principal, "locations:read", clinic_id, resource_type="location")
    check_limit(limit)
    after = decode_cursor(cursor)
    rows = await db.fetch(
        """SELECT * FROM locations WHERE clinic_id = $1
             AND ($2::timestamptz IS NULL OR (created_at, id) > ($2, $3))
           ORDER BY created_at, id LIMIT $4""",
        clinic_id, after[0] if after else None, after[1] if after else None, limit + 1,
    )
    return _page(rows, limit, lambda r: msgspec.convert(r, Location, from_attributes=False))


async def list_members(
    principal: Principal, clinic_id: uuid.UUID, *, limit: int = 50, cursor: str | None = None
) -> Page[Member]:
    """Members carry patients' names and emails: a PHI read, audited."""
    grant = require(principal, "members:read", clinic_id, resource_type="member")
    check_limit(limit)
    after = decode_cursor(cursor)
    own = grant.scope is Scope.OWN
    at_location = grant.scope is Scope.LOCATION
    rows = await db.fetch(
        _MEMBER_SQL
        + """WHERE m.clinic_id = $1
               AND (NOT $2 OR m.user_id = $3)
               AND (NOT $4 OR m.location_id = $5 OR m.user_id = $3)
               AND ($6::timestamptz IS NULL OR (m.created_at, m.id) > ($6, $7))
             ORDER BY m.created_at, m.id LIMIT $8""",
        clinic_id, own, principal.user_id, at_location, grant.location_id,
        after[0] if after else None, after[1] if after else None, limit + 1,
    )
    page = _page(rows, limit, member_from_row)
    await record(principal, action="members:read", resource_type="member", clinic_id=clinic_id,
                 detail={"count": len(page.items)})
    return page


async def load_member(clinic_id: uuid.UUID, user_id: uuid.UUID) -> Member | None:
    rows = await db.fetch(
        _MEMBER_SQL + "WHERE m.clinic_id = $1 AND m.user_id = $2", clinic_id, user_id
    )
    return member_from_row(rows[0]) if rows else None


async def my_invitations(principal: Principal) -> Page[MyInvitation]:
    """The caller's own pending, unexpired invitations, oldest first. At most one per clinic
    is pending, so the list is short and has no further page. Only invitations bound to the
    caller's account when they were made: one made to the address before the account existed
    is not theirs to see (nothing verified that the address is theirs)."""
    rows = await db.fetch(
        """SELECT i.id, i.clinic_id, c.name AS clinic_name, i.role, i.location_id,
                  i.created_at AS invited_at, i.expires_at
           FROM invitations i JOIN clinics c ON c.id = i.clinic_id
           WHERE i.user_id = $1 AND i.status = 'pending' AND i.expires_at > $2
           ORDER BY i.created_at, i.id""",
        principal.user_id, clock.now(),
    )
    return Page(items=[msgspec.convert(r, MyInvitation) for r in rows], next_cursor=None)


async def list_invitations(
    principal: Principal, clinic_id: uuid.UUID, *, limit: int = 50, cursor: str | None = None
) -> Page[ClinicInvitation]:
    """The clinic's invitations, oldest asked first; a LOCATION_HEAD sees
    those for their location. A pending one past its expiry reads as expired."""
    grant = require(principal, "invitations:read", clinic_id, resource_type="invitation")
    check_limit(limit)
    after = decode_cursor(cursor)
    rows = await db.fetch(
        """SELECT id, clinic_id, email, role, location_id, invited_by, created_at, expires_at,
                  answered_at,
                  CASE WHEN status = 'pending' AND expires_at <= $7 THEN 'expired'
                       ELSE status END AS status
           FROM invitations
           WHERE clinic_id = $1 AND (NOT $2 OR location_id = $3)
             AND ($4::timestamptz IS NULL OR (created_at, id) > ($4, $5))
           ORDER BY created_at, id LIMIT $6""",
        clinic_id, grant.scope is Scope.LOCATION, grant.location_id,
        after[0] if after else None, after[1] if after else None, limit + 1, clock.now(),
    )
    return _page(rows, limit, invitation_from_row)


def invitation_from_row(row: dict[str, Any]) -> ClinicInvitation:
    return ClinicInvitation(
        id=row["id"], clinic_id=row["clinic_id"], email=row["email"], role=Role(row["role"]),
        location_id=row["location_id"], status=InvitationStatus(row["status"]),
        invited_by=row["invited_by"], invited_at=row["created_at"],
        expires_at=row["expires_at"], answered_at=row["answered_at"],
    )


def _page(rows: list[dict[str, Any]], limit: int, convert: Any) -> Page[Any]:
    items = [convert(r) for r in rows[:limit]]
    more = len(rows) > limit
    last = rows[limit - 1] if more else None
    return Page(items=items, next_cursor=encode_cursor(last["created_at"], last["id"]) if last else None)


class BookingParties(msgspec.Struct, frozen=True):
    """What a booking needs to know from tenancy, read in one round trip: the clinic, whether
    the doctor and the patient are that clinic's, and whether the location is one of its own
    (True when none is named)."""

    clinic: Clinic
    is_doctor: bool
    is_patient: bool
    location_known: bool


async def booking_parties(clinic_id: uuid.UUID, doctor_id: uuid.UUID, patient_id: uuid.UUID,
                          location_id: uuid.UUID | None) -> BookingParties:
    """One query for the clinic, its doctor, its patient and its location; 404 for no clinic.
    Tenancy owns these tables, so the booking asks here instead of joining them itself."""
    rows = await db.fetch(
        """SELECT c.*,
                  EXISTS (SELECT 1 FROM memberships m WHERE m.clinic_id = c.id
                          AND m.user_id = $2 AND m.role = 'DOCTOR') AS is_doctor,
                  EXISTS (SELECT 1 FROM memberships m WHERE m.clinic_id = c.id
                          AND m.user_id = $3 AND m.role = 'PATIENT') AS is_patient,
                  ($4::uuid IS NULL OR EXISTS (SELECT 1 FROM locations l
                                               WHERE l.id = $4 AND l.clinic_id = c.id))
                      AS location_known
           FROM clinics c WHERE c.id = $1""",
        clinic_id, doctor_id, patient_id, location_id,
    )
    if not rows:
        raise NotFound("clinic not found", resource_type="clinic", resource_id=clinic_id)
    row = rows[0]
    return BookingParties(clinic=clinic_from_row(row), is_doctor=row["is_doctor"],
                          is_patient=row["is_patient"], location_known=row["location_known"])
