"""Invitations: how anyone but a SUPER_ADMIN brings a person into a clinic. The person
accepts or declines; only acceptance makes a membership."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from domain import clock, db, validation
from domain.access import rooms
from domain.access.policies import require
from domain.access.roles import Role
from domain.audit.commands import record
from domain.errors import Conflict, NotFound, invalid_field
from domain.events.commands import record as record_event
from domain.identity.people import user_id_by_email
from domain.principal import Principal
from domain.tenancy import events
from domain.tenancy.commands._membership import _check_location, _insert_membership
from domain.tenancy.models import (
    InvitationReceipt,
    InvitationStatus,
    Member,
)
from domain.tenancy.queries import (
    load_clinic,
    load_member,
)

#: How long an invitation waits for its answer.
INVITATION_TTL = timedelta(days=7)

async def invite(
    principal: Principal, clinic_id: uuid.UUID, *, email: str, name: str, role: Role,
    location_id: uuid.UUID | None, password: str | None, phone: str | None,
) -> InvitationReceipt:
    """A clinic's staff asking someone to join: nothing about the person is disclosed or changed.

    The caller gets the same receipt whether or not the address has an account and whether or
    not that person is already a member; the inputs are checked the same way in every case (a
    `password` is always refused: a clinic does not set people's passwords). Exactly one event
    is recorded in the clinic's sequence either way, so its numbering tells nothing either.

    - The address has an account: the invitation is bound to it; the person sees it in
      `GET /users/me/invitations`, gets `invitation.created` in their own room, and accepts or
      declines. Already a member: accepting changes nothing.
    - No account: the invitation is stored against the address only and nothing can accept it
      yet. Registering that address later does not claim it (there is no email verification,
      so whoever registered the victim's address would take the role); a verified delivery
      link is a later issue. Until then a brand-new account joins through a SUPER_ADMIN (or
      self-registration where the clinic allows it).
    - Asking again while one is pending renews it (role, location, expiry): never a conflict.

    Known remaining side channel: the lookup of the address is one indexed query either way,
    but response timing was not measured or equalised.
    """
    if password is not None:
        raise invalid_field("password", "a clinic does not set people's passwords")
    validation.text(name, "name")
    validation.phone(phone)
    async with db.transaction():
        await load_clinic(clinic_id)
        await _check_location(clinic_id, location_id)
        user_id = await user_id_by_email(email)
        await db.fetch(
            """UPDATE invitations SET status = 'expired', updated_at = now()
               WHERE clinic_id = $1 AND email = $2 AND status = 'pending' AND expires_at <= $3""",
            clinic_id, email, clock.now(),
        )
        rows = await db.fetch(
            """INSERT INTO invitations (id, clinic_id, email, user_id, role, location_id,
                                        invited_by, expires_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
               ON CONFLICT (clinic_id, email) WHERE status = 'pending' DO UPDATE
               SET user_id = EXCLUDED.user_id, role = EXCLUDED.role,
                   location_id = EXCLUDED.location_id, invited_by = EXCLUDED.invited_by,
                   expires_at = EXCLUDED.expires_at, updated_at = now()
               RETURNING id, expires_at""",
            uuid.uuid4(), clinic_id, email, user_id, role.value, location_id, principal.user_id,
            clock.now() + INVITATION_TTL,
        )
        invitation_id = rows[0]["id"]
        await record_event(principal, clinic_id=clinic_id,
                           event=events.InvitationCreated(invitation_id=invitation_id,
                                                          clinic_id=clinic_id, role=role.value),
                           audience=_invitation_audience(principal.user_id, user_id))
        await record(principal, action="members:create", resource_type="invitation",
                     resource_id=invitation_id, clinic_id=clinic_id,
                     detail={"role": role.value, "invitation": True})
    return InvitationReceipt(invitation_id=invitation_id, clinic_id=clinic_id, email=email,
                             role=role, location_id=location_id,
                             status=InvitationStatus.PENDING, expires_at=rows[0]["expires_at"])


def _invitation_audience(inviter: uuid.UUID, invitee: uuid.UUID | None) -> list[str]:
    """The inviter (either way: a confirmation, and never an empty audience, which the hub
    cannot route) and the invitee when the address has an account. The same envelope goes to
    the inviter in both cases, so it tells them nothing."""
    return [rooms.user(inviter), *([rooms.user(invitee)] if invitee else [])]


async def revoke_invitation(principal: Principal, clinic_id: uuid.UUID,
                            invitation_id: uuid.UUID) -> None:
    """The clinic withdraws a pending invitation. Another clinic's, or one outside a
    LOCATION_HEAD's location, is 404; one for a role above the caller's is 403 (as for a
    member); one already answered, revoked or expired is 409."""
    grant = require(principal, "invitations:revoke", clinic_id, resource_type="invitation",
                    resource_id=invitation_id)
    async with db.transaction():
        rows = await db.fetch(
            "SELECT * FROM invitations WHERE id = $1 AND clinic_id = $2 FOR UPDATE",
            invitation_id, clinic_id,
        )
        if not rows:
            raise NotFound("invitation not found", resource_type="invitation",
                           resource_id=invitation_id)
        row = rows[0]
        grant.check_object(owner_id=None, location_id=row["location_id"], object_id=invitation_id)
        grant.check_grantable(Role(row["role"]))
        if row["status"] != InvitationStatus.PENDING or row["expires_at"] <= clock.now():
            status = row["status"] if row["status"] != InvitationStatus.PENDING else "expired"
            raise Conflict(f"this invitation is already {status}", resource_type="invitation",
                           resource_id=invitation_id)
        await db.fetch(
            "UPDATE invitations SET status = 'revoked', updated_at = now() WHERE id = $1",
            invitation_id,
        )
        await record_event(principal, clinic_id=clinic_id,
                           event=events.InvitationRevoked(invitation_id=invitation_id,
                                                          clinic_id=clinic_id),
                           audience=_invitation_audience(principal.user_id, row["user_id"]))
        await record(principal, action="invitations:revoke", resource_type="invitation",
                     resource_id=invitation_id, clinic_id=clinic_id,
                     detail={"role": row["role"]})


async def _my_open_invitation(principal: Principal, invitation_id: uuid.UUID) -> dict[str, Any]:
    """The caller's own invitation, locked, still pending and unexpired. Someone else's (or one
    bound to no account) is 404, as if it did not exist."""
    rows = await db.fetch(
        "SELECT * FROM invitations WHERE id = $1 AND user_id = $2 FOR UPDATE",
        invitation_id, principal.user_id,
    )
    if not rows:
        raise NotFound("invitation not found", resource_type="invitation",
                       resource_id=invitation_id)
    row = rows[0]
    if row["status"] != InvitationStatus.PENDING:
        raise Conflict(f"this invitation is already {row['status']}",
                       resource_type="invitation", resource_id=invitation_id)
    if row["expires_at"] <= clock.now():
        raise Conflict("this invitation has expired; ask the clinic for a new one",
                       resource_type="invitation", resource_id=invitation_id)
    return row


async def accept_invitation(principal: Principal, invitation_id: uuid.UUID) -> Member:
    """The invitee says yes: the membership, its audit row and `member.added`, in one
    transaction. Already a member of that clinic: the invitation is closed and nothing else
    changes (a role change goes through the clinic's PATCH)."""
    async with db.transaction():
        row = await _my_open_invitation(principal, invitation_id)
        clinic_id, user_id = row["clinic_id"], principal.user_id
        role, location_id = Role(row["role"]), row["location_id"]
        inserted = await _insert_membership(user_id, clinic_id, role, location_id)
        await db.fetch(
            """UPDATE invitations SET status = 'accepted', answered_at = now(), updated_at = now()
               WHERE id = $1""", invitation_id,
        )
        if inserted:
            await record_event(principal, clinic_id=clinic_id,
                               event=events.MemberAdded(user_id=user_id, role=role.value,
                                                        location_id=location_id),
                               audience=[rooms.clinic_staff(clinic_id), rooms.user(user_id)])
            await record(principal, action="members:create", resource_type="member",
                         resource_id=user_id, clinic_id=clinic_id,
                         detail={"role": role.value, "via_invitation": str(invitation_id)})
        else:
            await record(principal, action="invitations:accept", resource_type="invitation",
                         resource_id=invitation_id, clinic_id=clinic_id,
                         detail={"already_member": True})
        member = inserted or await load_member(clinic_id, user_id)
    assert member is not None
    return member


async def decline_invitation(principal: Principal, invitation_id: uuid.UUID) -> None:
    """The invitee says no: the invitation is closed, audited, and no membership exists."""
    async with db.transaction():
        row = await _my_open_invitation(principal, invitation_id)
        await db.fetch(
            """UPDATE invitations SET status = 'declined', answered_at = now(), updated_at = now()
               WHERE id = $1""", invitation_id,
        )
        await record(principal, action="invitations:decline", resource_type="invitation",
                     resource_id=invitation_id, clinic_id=row["clinic_id"])
