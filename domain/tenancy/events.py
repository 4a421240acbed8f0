"""Tenancy events: ids and roles only."""

from __future__ import annotations

import uuid

from domain.events.envelope import Category, DomainEvent, Priority


class ClinicCreated(DomainEvent, frozen=True):
    TYPE = "clinic.created"
    CATEGORY = Category.CLINIC
    clinic_id: uuid.UUID


class ClinicUpdated(DomainEvent, frozen=True):
    TYPE = "clinic.updated"
    CATEGORY = Category.CLINIC
    clinic_id: uuid.UUID
    fields: list[str]


class LocationCreated(DomainEvent, frozen=True):
    TYPE = "location.created"
    CATEGORY = Category.CLINIC
    location_id: uuid.UUID


class MemberAdded(DomainEvent, frozen=True):
    TYPE = "member.added"
    CATEGORY = Category.USER_ACTIVITY
    user_id: uuid.UUID
    role: str
    location_id: uuid.UUID | None


class MemberUpdated(DomainEvent, frozen=True):
    TYPE = "member.updated"
    CATEGORY = Category.USER_ACTIVITY
    PRIORITY = Priority.HIGH
    user_id: uuid.UUID
    role: str
    previous_role: str
    location_id: uuid.UUID | None


class MemberRemoved(DomainEvent, frozen=True):
    TYPE = "member.removed"
    CATEGORY = Category.SECURITY
    PRIORITY = Priority.HIGH
    user_id: uuid.UUID


class InvitationCreated(DomainEvent, frozen=True):
    """To the invitee's own room only (they are not a member yet): ids and the role, no names."""

    TYPE = "invitation.created"
    CATEGORY = Category.USER_ACTIVITY
    invitation_id: uuid.UUID
    clinic_id: uuid.UUID
    role: str


class InvitationRevoked(DomainEvent, frozen=True):
    """To the revoking caller and, when bound to an account, the invitee: ids only."""

    TYPE = "invitation.revoked"
    CATEGORY = Category.USER_ACTIVITY
    invitation_id: uuid.UUID
    clinic_id: uuid.UUID
