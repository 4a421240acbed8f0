"""Changes to clinics, locations and memberships. Each runs in one transaction with its audit."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import msgspec

from domain import clock, db, ratelimit, validation
from domain.access import rooms
from domain.access.policies import require, require_global
from domain.access.roles import Role
from domain.audit.commands import Outcome, record
from domain.errors import Conflict, Forbidden, NotFound, invalid_field
from domain.events.commands import record as record_event
from domain.identity.commands import create_user
from domain.identity.people import person_join, user_id_by_email
from domain.principal import Principal, RequestMeta
from domain.settings import get as app_settings
from domain.tenancy import events
from domain.tenancy.models import (
    Clinic,
    ClinicSettings,
    InvitationReceipt,
    InvitationStatus,
    Location,
    Member,
)
from domain.tenancy.queries import (
    clinic_from_row,
    load_clinic,
    load_member,
    member_from_row,
    require_location,
)

UNSET = msgspec.UNSET
#: How long an invitation waits for its answer.
INVITATION_TTL = timedelta(days=7)


def _settings(raw: dict[str, Any] | None, base: ClinicSettings | None = None) -> ClinicSettings:
    merged = {**msgspec.to_builtins(base or ClinicSettings()), **(raw or {})}
    try:
        return msgspec.convert(merged, ClinicSettings)
    except msgspec.ValidationError as exc:
        field, message = validation.msgspec_field_error(str(exc), "settings")
        raise invalid_field(field, message) from exc


async def create_clinic(
    principal: Principal, *, name: str, timezone: str, settings: dict[str, Any] | None = None
) -> Clinic:
    require_global(principal, "clinics:create", resource_type="clinic")
    clean = _settings(settings)
    clinic_id = uuid.uuid4()
    async with db.transaction():
        rows = await db.fetch(
            "INSERT INTO clinics (id, name, timezone, settings) VALUES ($1, $2, $3, $4::jsonb) RETURNING *",
            clinic_id, validation.text(name, "name"), validation.timezone(timezone),
            msgspec.json.encode(clean).decode(),
        )
        await record_event(principal, clinic_id=clinic_id,
                           event=events.ClinicCreated(clinic_id=clinic_id),
                           audience=[rooms.clinic_staff(clinic_id)])
        await record(principal, action="clinics:create", resource_type="clinic",
                     resource_id=clinic_id, clinic_id=clinic_id)
    return clinic_from_row(rows[0])


async def update_clinic(
    principal: Principal, clinic_id: uuid.UUID, *, name: str | msgspec.UnsetType = UNSET,
    timezone: str | msgspec.UnsetType = UNSET, settings: dict[str, Any] | msgspec.UnsetType = UNSET,
) -> Clinic:
    require(principal, "clinics:update", clinic_id, resource_type="clinic", resource_id=clinic_id)
    async with db.transaction():
        current = await load_clinic(clinic_id)
        new_name = current.name if name is UNSET else validation.text(name, "name")
        new_tz = current.timezone if timezone is UNSET else validation.timezone(timezone)
        new_settings = current.settings if settings is UNSET else _settings(settings, current.settings)
        rows = await db.fetch(
            """UPDATE clinics SET name = $2, timezone = $3, settings = $4::jsonb, updated_at = now()
               WHERE id = $1 RETURNING *""",
            clinic_id, new_name, new_tz, msgspec.json.encode(new_settings).decode(),
        )
        changed = [f for f, v in (("name", name), ("timezone", timezone), ("settings", settings))
                   if v is not UNSET]
        await record_event(principal, clinic_id=clinic_id,
                           event=events.ClinicUpdated(clinic_id=clinic_id, fields=changed),
                           audience=[rooms.clinic_staff(clinic_id)])
        await record(principal, action="clinics:update", resource_type="clinic",
                     resource_id=clinic_id, clinic_id=clinic_id, detail={"fields": changed})
    return clinic_from_row(rows[0])


async def create_location(
    principal: Principal, clinic_id: uuid.UUID, *, name: str, address: str = "",
    timezone: str | None = None,
) -> Location:
    require(principal, "locations:create", clinic_id, resource_type="location")
    location_id = uuid.uuid4()
    async with db.transaction():
        await load_clinic(clinic_id)
        rows = await db.fetch(
            """INSERT INTO locations (id, clinic_id, name, address, timezone)
               VALUES ($1, $2, $3, $4, $5) RETURNING *""",
            location_id, clinic_id, validation.text(name, "name"),
            validation.text(address, "address", max_length=500, allow_empty=True),
            None if timezone is None else validation.timezone(timezone),
        )
        await record_event(principal, clinic_id=clinic_id,
                           event=events.LocationCreated(location_id=location_id),
                           audience=[rooms.clinic_staff(clinic_id)])
        await record(principal, action="locations:create", resource_type="location",
                     resource_id=location_id, clinic_id=clinic_id)
    return msgspec.convert(rows[0], Location)


async def _check_location(clinic_id: uuid.UUID, location_id: uuid.UUID | None) -> None:
    if location_id is None:
        return
    await require_location(clinic_id, location_id,
                           otherwise=invalid_field("location_id", "no such location in this clinic"))


def _check_role_location(role: Role, location_id: uuid.UUID | None) -> None:
    if role is Role.LOCATION_HEAD and location_id is None:
        raise invalid_field("location_id", "a LOCATION_HEAD needs a location")


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


class RegistrationAccepted(msgspec.Struct, frozen=True):
    """The one answer to a well-formed self-registration, whether the email was new or not."""

    status: str = "accepted"
    message: str = ("Registration received. If this email was new, its account is ready: log "
                    "in with it now. If you already had an account, log in with your existing "
                    "password; nothing about it has changed.")


async def register_patient(
    *, clinic_id: uuid.UUID, email: str, password: str, name: str, phone: str | None,
    meta: RequestMeta,
) -> RegistrationAccepted:
    """Self-registration, for clinics whose settings allow it; rate limited per source address.

    A new email gets an account and a PATIENT membership and can log in at once. An email that
    already has an account gets the same answer and nothing else: no membership (anyone could
    otherwise enrol a stranger as this clinic's patient, or learn who has an account) and no
    change to the account. Telling the owner about the attempt needs the message delivery
    pipeline, which does not exist yet; until then it is only audited."""
    cfg = app_settings()
    await ratelimit.consume("register-ip", meta.ip or "unknown",
                            limit=cfg.register_attempts_per_ip,
                            window_seconds=cfg.register_window_seconds)
    async with db.transaction():
        rows = await db.fetch("SELECT * FROM clinics WHERE id = $1", clinic_id)
        if not rows:
            raise NotFound("clinic not found", resource_type="clinic", resource_id=clinic_id)
        if not clinic_from_row(rows[0]).settings.allow_self_registration:
            raise Forbidden("this clinic does not accept self-registration",
                            resource_type="clinic", resource_id=clinic_id)
        try:
            # Validates and hashes before it looks for the email, so both paths cost the same.
            user_id = await create_user(email=email, name=name, password=password, phone=phone)
        except Conflict:
            await record(None, action="auth:register", resource_type="user",
                         outcome=Outcome.FAILED, clinic_id=clinic_id,
                         detail={"reason": "existing_account"}, meta=meta)
            return RegistrationAccepted()
        await db.fetch(
            """INSERT INTO memberships (id, user_id, clinic_id, role) VALUES ($1, $2, $3, $4)""",
            uuid.uuid4(), user_id, clinic_id, Role.PATIENT.value,
        )
        await record_event(None, clinic_id=clinic_id,
                           event=events.MemberAdded(user_id=user_id, role=Role.PATIENT.value,
                                                    location_id=None),
                           audience=[rooms.clinic_staff(clinic_id), rooms.user(user_id)])
        await record(None, action="auth:register", resource_type="user", resource_id=user_id,
                     clinic_id=clinic_id, actor_id=user_id, meta=meta)
    return RegistrationAccepted()
