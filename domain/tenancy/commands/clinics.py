"""Changes to clinics and their locations. Each runs in one transaction with its audit."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from domain import db, money, validation
from domain.access import rooms
from domain.access.policies import require, require_global
from domain.audit.commands import record
from domain.errors import invalid_field
from domain.events.commands import record as record_event
from domain.notifications.commands.preferences import check_channels
from domain.principal import Principal
from domain.tenancy import events
from domain.tenancy.models import (
    Clinic,
    ClinicSettings,
    Location,
)
from domain.tenancy.queries import (
    clinic_from_row,
    load_clinic,
)

UNSET = msgspec.UNSET

def _settings(raw: dict[str, Any] | None, base: ClinicSettings | None = None) -> ClinicSettings:
    merged = {**msgspec.to_builtins(base or ClinicSettings()), **(raw or {})}
    try:
        clean = msgspec.convert(merged, ClinicSettings)
    except msgspec.ValidationError as exc:
        field, message = validation.msgspec_field_error(str(exc), "settings")
        raise invalid_field(field, message) from exc
    check_channels(clean.notification_channels, "settings.notification_channels")
    money.check_currency(clean.billing.currency, "settings.billing.currency")
    return clean


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
