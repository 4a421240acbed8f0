"""Memberships: a SUPER_ADMIN's direct link (anyone else's add is an invitation), role
changes and removals. Member changes of a clinic take turns (the last-admin check)."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from domain import db, validation
from domain.access import rooms
from domain.access.policies import require
from domain.access.roles import Role
from domain.audit.commands import record
from domain.errors import Conflict, Forbidden, NotFound, invalid_field
from domain.events.commands import record as record_event
from domain.identity.commands import create_user
from domain.identity.people import user_id_by_email
from domain.principal import Principal
from domain.tenancy import events
from domain.tenancy.commands._membership import (
    _check_location,
    _check_role_location,
    _insert_membership,
)
from domain.tenancy.commands.invitations import invite
from domain.tenancy.models import (
    InvitationReceipt,
    Member,
)
from domain.tenancy.queries import (
    load_clinic,
    load_member,
)

UNSET = msgspec.UNSET

async def add_member(
    principal: Principal, clinic_id: uuid.UUID, *, email: str, name: str, role: Role,
    location_id: uuid.UUID | None = None, password: str | None = None, phone: str | None = None,
) -> Member | InvitationReceipt:
    """Add someone to the clinic. A SUPER_ADMIN links directly (creating the account when the
    email is new; linking an existing account is audited as a direct link). Anyone else only
    invites: see `invite`. Permission, grantable role and location bounds are checked first, the
    same for both."""
    grant = require(principal, "members:create", clinic_id, resource_type="member")
    grant.check_grantable(role)
    if location_id is None and grant.location_id is not None and role is not Role.LOCATION_HEAD:
        location_id = grant.location_id
    grant.check_target(owner_id=None, location_id=location_id)
    _check_role_location(role, location_id)
    address = validation.email(email)
    if not principal.is_super_admin:
        return await invite(principal, clinic_id, email=address, name=name, role=role,
                            location_id=location_id, password=password, phone=phone)
    async with db.transaction():
        await load_clinic(clinic_id)
        await _check_location(clinic_id, location_id)
        existing = await user_id_by_email(address)
        if existing:
            if password is not None:
                raise invalid_field(
                    "password", "this person already has an account; their password is theirs"
                )
            user_id = existing
        else:
            user_id = await create_user(email=address, name=name, password=password, phone=phone)
        member = await _insert_membership(user_id, clinic_id, role, location_id)
        if member is None:
            raise Conflict("this user is already a member of the clinic", resource_type="member",
                           resource_id=user_id)
        await record_event(principal, clinic_id=clinic_id,
                           event=events.MemberAdded(user_id=user_id, role=role.value,
                                                    location_id=location_id),
                           audience=[rooms.clinic_staff(clinic_id), rooms.user(user_id)])
        detail: dict[str, Any] = {"role": role.value, "new_user": not existing}
        if existing:
            detail["direct_link"] = True
        await record(principal, action="members:create", resource_type="member",
                     resource_id=user_id, clinic_id=clinic_id, detail=detail)
    assert member is not None
    return member


async def _target(principal: Principal, clinic_id: uuid.UUID, user_id: uuid.UUID,
                  permission: str) -> tuple[Any, Member]:
    grant = require(principal, permission, clinic_id, resource_type="member", resource_id=user_id)
    member = await load_member(clinic_id, user_id)
    if member is None:
        raise NotFound("member not found", resource_type="member", resource_id=user_id)
    grant.check_object(owner_id=member.user_id, location_id=member.location_id, object_id=user_id)
    if user_id == principal.user_id:
        raise Forbidden("you cannot change or remove your own membership",
                        resource_type="member", resource_id=user_id)
    grant.check_grantable(member.role)
    return grant, member


async def _ensure_an_admin_remains(clinic_id: uuid.UUID, leaving: uuid.UUID) -> None:
    rows = await db.fetch(
        """SELECT count(*) AS n FROM memberships
           WHERE clinic_id = $1 AND role = 'CLINIC_ADMIN' AND user_id <> $2""",
        clinic_id, leaving,
    )
    if rows[0]["n"] == 0:
        raise Conflict("the clinic's last CLINIC_ADMIN cannot be removed or demoted",
                       resource_type="member", resource_id=leaving)


async def _lock_members(clinic_id: uuid.UUID) -> None:
    """Member changes of a clinic take turns (the last-admin check). NO KEY UPDATE, not
    UPDATE: the clinic's events reference its row (a KEY SHARE lock each), and a plain FOR
    UPDATE held here while this transaction waits for the audit chain at its commit would
    deadlock with a committing transaction that holds the chain and writes this clinic's
    events."""
    await db.fetch("SELECT 1 FROM clinics WHERE id = $1 FOR NO KEY UPDATE", clinic_id)


async def update_member(
    principal: Principal, clinic_id: uuid.UUID, user_id: uuid.UUID, *,
    role: Role | msgspec.UnsetType = UNSET, location_id: uuid.UUID | msgspec.UnsetType | None = UNSET,
) -> Member:
    async with db.transaction():
        await _lock_members(clinic_id)
        grant, member = await _target(principal, clinic_id, user_id, "members:update")
        new_role = member.role if role is UNSET else role
        new_location = member.location_id if location_id is UNSET else location_id
        grant.check_grantable(new_role)
        grant.check_target(owner_id=None, location_id=new_location)
        _check_role_location(new_role, new_location)
        await _check_location(clinic_id, new_location)
        if member.role is Role.CLINIC_ADMIN and new_role is not Role.CLINIC_ADMIN:
            await _ensure_an_admin_remains(clinic_id, user_id)
        await db.fetch(
            """UPDATE memberships SET role = $3, location_id = $4, updated_at = now()
               WHERE clinic_id = $1 AND user_id = $2""",
            clinic_id, user_id, new_role.value, new_location,
        )
        await record_event(principal, clinic_id=clinic_id,
                           event=events.MemberUpdated(user_id=user_id, role=new_role.value,
                                                      previous_role=member.role.value,
                                                      location_id=new_location),
                           audience=[rooms.clinic_staff(clinic_id), rooms.user(user_id)])
        await record(principal, action="members:update", resource_type="member",
                     resource_id=user_id, clinic_id=clinic_id,
                     detail={"role": new_role.value, "previous_role": member.role.value})
    # the row read above (under the clinic's member lock) with the two fields just written
    return msgspec.structs.replace(member, role=new_role, location_id=new_location)


async def remove_member(principal: Principal, clinic_id: uuid.UUID, user_id: uuid.UUID) -> None:
    async with db.transaction():
        await _lock_members(clinic_id)
        _, member = await _target(principal, clinic_id, user_id, "members:delete")
        if member.role is Role.CLINIC_ADMIN:
            await _ensure_an_admin_remains(clinic_id, user_id)
        await db.fetch(
            "DELETE FROM memberships WHERE clinic_id = $1 AND user_id = $2", clinic_id, user_id
        )
        await record_event(principal, clinic_id=clinic_id,
                           event=events.MemberRemoved(user_id=user_id),
                           audience=[rooms.clinic_staff(clinic_id), rooms.user(user_id)])
        await record(principal, action="members:delete", resource_type="member",
                     resource_id=user_id, clinic_id=clinic_id, detail={"role": member.role.value})
