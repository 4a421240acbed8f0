"""What tenancy queries and commands return."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

from domain.access.roles import Role


class ClinicSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Per-clinic policy. Unknown keys are refused, so a typo never silently does nothing."""

    allow_self_registration: bool = False


class Clinic(msgspec.Struct, frozen=True):
    id: uuid.UUID
    name: str
    timezone: str
    settings: ClinicSettings
    created_at: datetime


class Location(msgspec.Struct, frozen=True):
    id: uuid.UUID
    clinic_id: uuid.UUID
    name: str
    address: str
    timezone: str | None
    created_at: datetime


class Member(msgspec.Struct, frozen=True):
    user_id: uuid.UUID
    clinic_id: uuid.UUID
    role: Role
    location_id: uuid.UUID | None
    email: str
    name: str
    created_at: datetime
