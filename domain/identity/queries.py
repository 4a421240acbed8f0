"""Who a token belongs to, and what a user sees of themselves."""

from __future__ import annotations

import json
import uuid

import msgspec

from domain import db
from domain.access.roles import Role
from domain.audit.commands import record
from domain.errors import Unauthenticated
from domain.identity import tokens
from domain.principal import Membership, Principal, RequestMeta
from domain.tenancy.queries import memberships_json

_PRINCIPAL_SQL = f"""
SELECT u.is_super_admin, {memberships_json("u.id")} AS memberships
FROM sessions s JOIN users u ON u.id = s.user_id
WHERE s.id = $1 AND s.user_id = $2 AND s.revoked_at IS NULL AND u.is_active
"""


async def principal_for_access_token(token: str, meta: RequestMeta) -> Principal:
    """Checked against the session on every call, so logout takes effect at once."""
    claims = tokens.decode_access_token(token)
    rows = await db.fetch(_PRINCIPAL_SQL, claims.session_id, claims.user_id)
    if not rows:
        raise Unauthenticated("session revoked or user disabled")
    memberships = tuple(
        Membership(
            clinic_id=uuid.UUID(m["clinic_id"]),
            role=Role(m["role"]),
            location_id=uuid.UUID(m["location_id"]) if m["location_id"] else None,
        )
        for m in json.loads(rows[0]["memberships"])
    )
    return Principal(
        user_id=claims.user_id,
        session_id=claims.session_id,
        is_super_admin=rows[0]["is_super_admin"],
        memberships=memberships,
        meta=meta,
        expires_at=claims.exp,
    )


class Me(msgspec.Struct, frozen=True):
    id: uuid.UUID
    email: str
    name: str
    phone: str | None
    is_super_admin: bool
    memberships: tuple[Membership, ...]


async def me(principal: Principal) -> Me:
    rows = await db.fetch("SELECT email, name, phone FROM users WHERE id = $1", principal.user_id)
    if not rows:
        raise Unauthenticated("user no longer exists")
    await record(principal, action="users:read", resource_type="user", resource_id=principal.user_id)
    return Me(
        id=principal.user_id,
        email=rows[0]["email"],
        name=rows[0]["name"],
        phone=rows[0]["phone"],
        is_super_admin=principal.is_super_admin,
        memberships=principal.memberships,
    )


async def revoked_sessions(session_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Which of these sessions may no longer act, and why (for the hub's sweep)."""
    rows = await db.fetch(
        """SELECT s.id, CASE WHEN NOT u.is_active THEN 'user_disabled'
                            ELSE coalesce(s.revoked_reason, 'revoked') END AS reason
           FROM sessions s JOIN users u ON u.id = s.user_id
           WHERE s.id = ANY($1::uuid[]) AND (s.revoked_at IS NOT NULL OR NOT u.is_active)""",
        session_ids,
    )
    return {r["id"]: r["reason"] for r in rows}
