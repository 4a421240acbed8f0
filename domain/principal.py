"""Who is acting, and from where: passed first to every command and query."""

from __future__ import annotations

import uuid

import msgspec

from domain.access.roles import Role


class RequestMeta(msgspec.Struct, frozen=True):
    """Where a call came from; recorded in the audit log, never used for decisions."""

    request_id: str = ""
    ip: str | None = None


class Membership(msgspec.Struct, frozen=True):
    clinic_id: uuid.UUID
    role: Role
    location_id: uuid.UUID | None = None


class Principal(msgspec.Struct, frozen=True):
    user_id: uuid.UUID
    session_id: uuid.UUID | None
    is_super_admin: bool
    memberships: tuple[Membership, ...]
    meta: RequestMeta = RequestMeta()
    #: When the access token this principal came from expires (unix seconds); None for the CLI.
    expires_at: int | None = None

    def membership(self, clinic_id: uuid.UUID) -> Membership | None:
        for m in self.memberships:
            if m.clinic_id == clinic_id:
                return m
        return None

    def clinic_ids(self) -> list[uuid.UUID]:
        return [m.clinic_id for m in self.memberships]


SYSTEM_USER_ID = uuid.UUID(int=0)


def system_principal(meta: RequestMeta | None = None) -> Principal:
    """The principal of the CLI and of scheduled jobs: a super admin with no session."""
    return Principal(
        user_id=SYSTEM_USER_ID,
        session_id=None,
        is_super_admin=True,
        memberships=(),
        meta=meta or RequestMeta(request_id="system"),
    )
