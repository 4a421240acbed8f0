"""What a clinic sells: plans (a price per month or year, a trial, and a quota per appointment
type). A plan's currency is the clinic's billing currency, so its invoices and payments agree."""

from __future__ import annotations

import json
import uuid

import msgspec

from domain import db, validation
from domain.access.policies import require
from domain.audit.commands import record
from domain.billing.models import Interval, Plan
from domain.billing.queries.plans import plan_from_row, visible_plan
from domain.errors import Conflict, FieldError, invalid_field
from domain.money import check_amount, check_currency
from domain.principal import Principal
from domain.scheduling.models import AppointmentType
from domain.tenancy.queries import load_clinic

#: Visits per period a quota may hold (unlimited is null).
MAX_QUOTA = 10_000
_TYPES = {t.value for t in AppointmentType}


def check_quotas(quotas: dict[str, int | None]) -> dict[str, int | None]:
    """Appointment type -> visits per period (1 to MAX_QUOTA) or null for unlimited."""
    for kind, quota in quotas.items():
        if kind not in _TYPES:
            raise invalid_field(f"quotas.{kind}", f"not an appointment type ({', '.join(sorted(_TYPES))})")
        if quota is not None and not 1 <= quota <= MAX_QUOTA:
            raise invalid_field(f"quotas.{kind}",
                                f"1 to {MAX_QUOTA} visits, or null for unlimited; leave a type "
                                "out to not cover it")
    return dict(quotas)


def _check_currency(given: str | None, clinic_currency: str) -> str:
    if given is None:
        return clinic_currency
    check_currency(given)
    if given != clinic_currency:
        raise invalid_field("currency", f"must be the clinic's billing currency {clinic_currency}")
    return given


_INSERT = """
INSERT INTO billing_plans (id, clinic_id, name, price, currency, interval, trial_days, quotas,
                           active)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9)
ON CONFLICT (clinic_id, name) DO NOTHING
RETURNING *
"""


async def create_plan(principal: Principal, *, clinic_id: uuid.UUID, name: str, price: int,
                      interval: Interval, trial_days: int = 0,
                      quotas: dict[str, int | None] | None = None, currency: str | None = None,
                      active: bool = True) -> Plan:
    """A new plan (audited). Another plan of the clinic with the name is 409 naming `name`."""
    require(principal, "billing_plans:manage", clinic_id, resource_type="plan")
    name = validation.text(name, "name", max_length=120)
    check_amount(price, "price", allow_zero=True)
    if not 0 <= trial_days <= 365:
        raise invalid_field("trial_days", "0 to 365")
    checked = check_quotas(quotas or {})
    async with db.transaction():
        clinic = await load_clinic(clinic_id)
        code = _check_currency(currency, clinic.settings.billing.currency)
        rows = await db.fetch(_INSERT, uuid.uuid4(), clinic_id, name, price, code,
                              interval.value, trial_days, json.dumps(checked), active)
        if not rows:
            raise _name_taken(name)
        plan = plan_from_row(rows[0])
        await record(principal, action="billing_plans:manage", resource_type="plan",
                     resource_id=plan.id, clinic_id=clinic_id,
                     detail={"created": True, "price": price, "currency": code})
    return plan


def _name_taken(name: str) -> Conflict:
    return Conflict(f"the clinic already has a plan named {name!r}", resource_type="plan",
                    errors=[FieldError("name", "already taken")])


_UPDATE = """
UPDATE billing_plans SET name = $2, price = $3, active = $4, quotas = $5::jsonb,
    updated_at = now()
WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM billing_plans o
                              WHERE o.clinic_id = billing_plans.clinic_id AND o.name = $2
                                AND o.id <> $1)
RETURNING *
"""


async def update_plan(principal: Principal, plan_id: uuid.UUID, *,
                      name: str | msgspec.UnsetType = msgspec.UNSET,
                      price: int | msgspec.UnsetType = msgspec.UNSET,
                      active: bool | msgspec.UnsetType = msgspec.UNSET,
                      quotas: dict[str, int | None] | msgspec.UnsetType = msgspec.UNSET) -> Plan:
    """Change what is given. A new price applies from each subscription's next period; new
    quotas at once (a quota below what a period already used covers nothing more in it)."""
    if name is not msgspec.UNSET:
        name = validation.text(name, "name", max_length=120)
    if price is not msgspec.UNSET:
        check_amount(price, "price", allow_zero=True)
    if quotas is not msgspec.UNSET:
        quotas = check_quotas(quotas)
    async with db.transaction():
        plan = await visible_plan(principal, plan_id, "billing_plans:manage", lock=True)
        new = msgspec.structs.replace(
            plan, **{k: v for k, v in (("name", name), ("price", price), ("active", active),
                                       ("quotas", quotas)) if v is not msgspec.UNSET})
        rows = await db.fetch(_UPDATE, plan_id, new.name, new.price, new.active,
                              json.dumps(new.quotas))
        if not rows:
            raise _name_taken(new.name)
        updated = plan_from_row(rows[0])
        changed = sorted(k for k, v in (("name", name), ("price", price), ("active", active),
                                        ("quotas", quotas)) if v is not msgspec.UNSET)
        await record(principal, action="billing_plans:manage", resource_type="plan",
                     resource_id=plan_id, clinic_id=plan.clinic_id,
                     detail={"changed": changed, "price": updated.price})
    return updated
