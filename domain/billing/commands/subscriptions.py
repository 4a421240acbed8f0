"""Subscriptions: a patient on a plan, period after period.

A plan with trial days starts `trialing` (no invoice); otherwise `active` with an open invoice
for the first period. We hold no card, so a renewal is a new period with a new invoice, and "a
failed renewal" is a period that ended with its invoice unpaid: the subscription turns
`past_due` (its quota still covers bookings), each later run of the renewal job retries (a paid
invoice renews it), and after `MAX_RETRIES` unpaid retries it is `expired`. `cancel` ends one at
once or at the end of its period.

Each subscription is changed under its row lock (FOR UPDATE; a booking claiming its quota holds
it FOR SHARE), so a renewal, a cancellation and a booking take turns."""

from __future__ import annotations

import logging
import uuid
from calendar import monthrange
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from domain import clock, db
from domain.access.policies import require
from domain.access.roles import Role
from domain.audit.commands import record
from domain.billing import events
from domain.billing.commands.invoices import open_invoice
from domain.billing.models import (
    LIVE_SUBSCRIPTION,
    Interval,
    InvoiceStatus,
    LineInput,
    Plan,
    Subscription,
    SubscriptionStatus,
)
from domain.billing.queries.invoices import load_invoice
from domain.billing.queries.plans import (
    SUBSCRIPTIONS,
    check_visible,
    load_plan,
    plan_from_row,
    subscription_from_row,
)
from domain.errors import Conflict, DomainError, NotFound, invalid_field
from domain.events.commands import record as record_event
from domain.principal import Principal
from domain.tenancy.models import Clinic
from domain.tenancy.queries import load_clinic, load_clinics, require_member

log = logging.getLogger("carewire.billing")

#: Renewal runs that may find the period's invoice still unpaid after the first (past_due)
#: before the subscription expires.
MAX_RETRIES = 3
_LIVE = [s.value for s in LIVE_SUBSCRIPTION]
#: An invoice in one of these no longer stands in the way of the next period (a void one was
#: forgiven by the clinic).
_SETTLED = (InvoiceStatus.PAID, InvoiceStatus.VOID)


def advance(start: datetime, interval: Interval, timezone: str) -> datetime:
    """One month or year on, on the same local day and time in the clinic's zone (the 31st
    becomes the month's last day)."""
    tz = ZoneInfo(timezone)
    local = start.astimezone(tz)
    months = 1 if interval is Interval.MONTH else 12
    year, month = divmod(local.month - 1 + months, 12)
    year, month = local.year + year, month + 1
    day = min(local.day, monthrange(year, month)[1])
    return local.replace(year=year, month=month, day=day).astimezone(ZoneInfo("UTC"))


async def _event(actor: Principal | None, kind: type[events.SubscriptionEvent],
                 sub: Subscription, **extra: Any) -> None:
    await record_event(actor, clinic_id=sub.clinic_id,
                       event=kind(subscription_id=sub.id, plan_id=sub.plan_id,
                                  patient_id=sub.patient_id, status=sub.status.value, **extra),
                       audience=events.audience(sub.clinic_id, sub.patient_id))


def _line(plan: Plan, start: datetime, end: datetime, timezone: str) -> LineInput:
    """The period's line, its dates in the clinic's zone."""
    tz = ZoneInfo(timezone)
    return LineInput(description=f"{plan.name}: {start.astimezone(tz).date().isoformat()} to "
                                 f"{end.astimezone(tz).date().isoformat()}",
                     quantity=1, unit_amount=plan.price)


async def _period_invoice(actor: Principal | None, clinic: Clinic, plan: Plan,
                          subscription_id: uuid.UUID, patient_id: uuid.UUID, start: datetime,
                          end: datetime) -> uuid.UUID | None:
    """The open invoice of a paid period (None for a free plan)."""
    if plan.price == 0:
        return None
    if plan.currency != clinic.settings.billing.currency:
        raise Conflict(f"the plan is priced in {plan.currency} but the clinic bills in "
                       f"{clinic.settings.billing.currency}", resource_type="plan",
                       resource_id=plan.id)
    invoice = await open_invoice(actor, clinic, patient_id=patient_id,
                                 lines=[_line(plan, start, end, clinic.timezone)],
                                 subscription_id=subscription_id)
    return invoice.id


def _view(row: dict[str, Any], plan: Plan, used: dict[str, int] | None = None) -> Subscription:
    return subscription_from_row({**row, "quotas": plan.quotas, "used": used or {}})


_INSERT = """
INSERT INTO billing_subscriptions (id, clinic_id, plan_id, patient_id, status,
    current_period_start, current_period_end, created_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (plan_id, patient_id) WHERE status IN ('trialing', 'active', 'past_due') DO NOTHING
RETURNING *
"""


async def subscribe(principal: Principal, *, clinic_id: uuid.UUID, plan_id: uuid.UUID,
                    patient_id: uuid.UUID) -> Subscription:
    """A patient subscribes themselves; staff with subscriptions:manage subscribe a patient of
    the clinic. One live subscription per patient and plan (409 otherwise)."""
    grant = require(principal, "subscriptions:manage", clinic_id, resource_type="subscription")
    grant.check_target(owner_id=patient_id, location_id=None)
    async with db.transaction():
        clinic = await load_clinic(clinic_id)
        try:
            plan = await load_plan(plan_id)
        except NotFound:
            raise invalid_field("plan_id", "no such plan in this clinic") from None
        if plan.clinic_id != clinic_id:
            raise invalid_field("plan_id", "no such plan in this clinic")
        if not plan.active:
            raise invalid_field("plan_id", "the plan is no longer offered")
        if grant.role is not Role.PATIENT:
            await require_member(clinic_id, patient_id, role=Role.PATIENT,
                                 otherwise=invalid_field("patient_id",
                                                         "not a patient of this clinic"))
        now = clock.now()
        if plan.trial_days:
            status, end = SubscriptionStatus.TRIALING, now + timedelta(days=plan.trial_days)
        else:
            status, end = SubscriptionStatus.ACTIVE, advance(now, plan.interval, clinic.timezone)
        rows = await db.fetch(_INSERT, uuid.uuid4(), clinic_id, plan_id, patient_id, status.value,
                              now, end, principal.user_id)
        if not rows:
            raise Conflict("the patient already has a live subscription to this plan",
                           resource_type="subscription")
        row = rows[0]
        if status is SubscriptionStatus.ACTIVE:
            invoice_id = await _period_invoice(principal, clinic, plan, row["id"], patient_id,
                                               now, end)
            if invoice_id is not None:
                await db.fetch("UPDATE billing_subscriptions SET period_invoice_id = $2 "
                               "WHERE id = $1", row["id"], invoice_id)
        sub = _view(row, plan)
        await _event(principal, events.SubscriptionCreated, sub)
        await record(principal, action="subscriptions:manage", resource_type="subscription",
                     resource_id=sub.id, clinic_id=clinic_id,
                     detail={"created": True, "plan_id": str(plan_id), "status": status.value})
    return sub


_CANCEL = """
UPDATE billing_subscriptions SET
    status = CASE WHEN $2 THEN status ELSE 'cancelled' END,
    cancel_at_period_end = $2,
    cancelled_at = CASE WHEN $2 THEN cancelled_at ELSE now() END,
    updated_at = now()
WHERE id = $1
RETURNING *
"""


async def cancel(principal: Principal, subscription_id: uuid.UUID, *,
                 at_period_end: bool) -> Subscription:
    """At once (`cancelled`, its quota no longer covers bookings), or at the end of the period
    (it stays live until the renewal job ends it; asking again at once ends it now)."""
    async with db.transaction():
        rows = await db.fetch(SUBSCRIPTIONS + "WHERE s.id = $1 FOR UPDATE OF s", subscription_id)
        if not rows:
            raise NotFound("subscription not found", resource_type="subscription",
                           resource_id=subscription_id)
        before = subscription_from_row(rows[0])
        grant = require(principal, "subscriptions:manage", before.clinic_id,
                        resource_type="subscription", resource_id=subscription_id)
        check_visible(grant, before)
        if before.status not in LIVE_SUBSCRIPTION:
            raise Conflict(f"the subscription is already {before.status}",
                           resource_type="subscription", resource_id=subscription_id)
        updated = await db.fetch(_CANCEL, subscription_id, at_period_end)
        sub = subscription_from_row({**rows[0], **updated[0]})
        if sub.status is not before.status:
            await _event(principal, events.SubscriptionStatusChanged, sub,
                         previous_status=before.status.value)
        await record(principal, action="subscriptions:manage", resource_type="subscription",
                     resource_id=subscription_id, clinic_id=sub.clinic_id,
                     detail={"cancel": "at_period_end" if at_period_end else "now"})
    return sub


# renewal -------------------------------------------------------------------------------------

#: The next subscription whose period has ended, not yet seen by this run, locked (SKIP LOCKED:
#: several workers share the work), with its plan.
_NEXT_DUE = """
SELECT s.*, p.id AS plan__id, p.clinic_id AS plan__clinic_id, p.name AS plan__name,
       p.price AS plan__price, p.currency AS plan__currency, p.interval AS plan__interval,
       p.trial_days AS plan__trial_days, p.quotas AS plan__quotas, p.active AS plan__active,
       p.created_at AS plan__created_at
FROM billing_subscriptions s JOIN billing_plans p ON p.id = s.plan_id
WHERE s.status = ANY($1::text[]) AND s.current_period_end <= $2
  AND NOT (s.id = ANY($3::uuid[]))
ORDER BY s.current_period_end, s.id
LIMIT 1
FOR UPDATE OF s SKIP LOCKED
"""

_RENEW = """
UPDATE billing_subscriptions SET status = $2, current_period_start = $3, current_period_end = $4,
    renewal_failures = $5, period_invoice_id = $6, updated_at = now()
WHERE id = $1 RETURNING *
"""

_FAIL = """
UPDATE billing_subscriptions SET status = $2, renewal_failures = $3, updated_at = now()
WHERE id = $1 RETURNING *
"""


def _plan_of(row: dict[str, Any]) -> Plan:
    """The plan's columns of a `_NEXT_DUE` row."""
    return plan_from_row({k.removeprefix("plan__"): v for k, v in row.items()
                          if k.startswith("plan__")})


async def renew_due(*, now: datetime | None = None, limit: int = 500) -> int:
    """The renewal job's work: every live subscription whose period ended at `now` moves on,
    one transaction each. A refusal (a plan priced in a currency the clinic no longer bills in)
    rolls back that one, is logged and left for the next run; the others go on. Returns how
    many moved."""
    seen: list[uuid.UUID] = []
    moved = 0
    at = now or clock.now()
    while len(seen) < limit:
        try:
            async with db.transaction():
                rows = await db.fetch(_NEXT_DUE, _LIVE, at, seen)
                if not rows:
                    break
                seen.append(rows[0]["id"])
                await _renew_one(rows[0], at)
                moved += 1
        except DomainError as exc:
            log.warning("subscription %s not renewed: %s", seen[-1], exc.message)
    return moved


async def _renew_one(row: dict[str, Any], at: datetime) -> None:
    plan = _plan_of(row)
    before = _view(row, plan)
    if row["cancel_at_period_end"]:
        ended = await db.fetch(_FAIL, row["id"], SubscriptionStatus.CANCELLED.value,
                               row["renewal_failures"])
        await _moved(before, _view(ended[0], plan), "ended at period end")
        return
    invoice_id = row["period_invoice_id"]
    settled = invoice_id is None or (await load_invoice(invoice_id)).status in _SETTLED
    if before.status is SubscriptionStatus.TRIALING or settled:
        clinic = (await load_clinics([before.clinic_id]))[before.clinic_id]
        start = before.current_period_end
        end = advance(start, plan.interval, clinic.timezone)
        new_invoice = await _period_invoice(None, clinic, plan, before.id, before.patient_id,
                                            start, end)
        renewed = await db.fetch(_RENEW, before.id, SubscriptionStatus.ACTIVE.value, start, end,
                                 0, new_invoice)
        sub = _view(renewed[0], plan)
        await _event(None, events.SubscriptionRenewed, sub)
        await record(None, action="subscriptions:renew", resource_type="subscription",
                     resource_id=sub.id, clinic_id=sub.clinic_id,
                     detail={"period_end": end.isoformat(), "price": plan.price,
                             "currency": plan.currency})
        return
    failures = row["renewal_failures"] + 1
    status = (SubscriptionStatus.EXPIRED if failures > MAX_RETRIES
              else SubscriptionStatus.PAST_DUE)
    failed = await db.fetch(_FAIL, before.id, status.value, failures)
    after = _view(failed[0], plan)
    if after.status is not before.status:
        await _moved(before, after, f"period invoice unpaid after {failures} renewal runs")


async def _moved(before: Subscription, after: Subscription, why: str) -> None:
    await _event(None, events.SubscriptionStatusChanged, after,
                 previous_status=before.status.value)
    await record(None, action="subscriptions:renew", resource_type="subscription",
                 resource_id=after.id, clinic_id=after.clinic_id,
                 detail={"from": before.status.value, "to": after.status.value, "why": why})
