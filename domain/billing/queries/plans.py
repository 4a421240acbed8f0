"""Reads of plans and subscriptions (with the current period's quota use)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from domain import db
from domain.access.matrix import Scope
from domain.access.policies import Grant, require
from domain.billing.models import Interval, Plan, QuotaUse, Subscription, SubscriptionStatus
from domain.errors import NotFound
from domain.paging import Page, check_limit, decode_cursor, encode_cursor
from domain.principal import Principal


def _json(raw: Any) -> dict[str, Any]:
    value = json.loads(raw) if isinstance(raw, str) else raw
    return dict(value or {})


def plan_from_row(row: dict[str, Any]) -> Plan:
    return Plan(id=row["id"], clinic_id=row["clinic_id"], name=row["name"], price=row["price"],
                currency=row["currency"], interval=Interval(row["interval"]),
                trial_days=row["trial_days"], quotas=_json(row["quotas"]), active=row["active"],
                created_at=row["created_at"])


def subscription_from_row(row: dict[str, Any]) -> Subscription:
    """A row of `_SUBSCRIPTIONS` (the subscription, its plan's quotas and this period's use)."""
    quotas = _json(row.get("quotas"))
    used = _json(row.get("used"))
    usage = [QuotaUse(appointment_type=kind, quota=quota, used=int(used.get(kind, 0)))
             for kind, quota in sorted(quotas.items())]
    return Subscription(id=row["id"], clinic_id=row["clinic_id"], plan_id=row["plan_id"],
                        patient_id=row["patient_id"], status=SubscriptionStatus(row["status"]),
                        current_period_start=row["current_period_start"],
                        current_period_end=row["current_period_end"],
                        cancel_at_period_end=row["cancel_at_period_end"], usage=usage,
                        created_at=row["created_at"])


def _page(rows: list[dict[str, Any]], limit: int, convert: Any) -> Page[Any]:
    items = [convert(r) for r in rows[:limit]]
    last = rows[limit - 1] if len(rows) > limit else None
    return Page(items=items,
                next_cursor=encode_cursor(last["created_at"], last["id"]) if last else None)


# plans ---------------------------------------------------------------------------------------

async def load_plan(plan_id: uuid.UUID, *, lock: bool = False) -> Plan:
    rows = await db.fetch("SELECT * FROM billing_plans WHERE id = $1"
                          + (" FOR NO KEY UPDATE" if lock else ""), plan_id)
    if not rows:
        raise NotFound("plan not found", resource_type="plan", resource_id=plan_id)
    return plan_from_row(rows[0])


async def visible_plan(principal: Principal, plan_id: uuid.UUID, permission: str, *,
                       lock: bool = False) -> Plan:
    """Another clinic's plan is 404, as one that does not exist."""
    plan = await load_plan(plan_id, lock=lock)
    require(principal, permission, plan.clinic_id, resource_type="plan", resource_id=plan_id)
    return plan


async def get_plan(principal: Principal, plan_id: uuid.UUID) -> Plan:
    return await visible_plan(principal, plan_id, "billing_plans:read")


async def list_plans(principal: Principal, *, clinic_id: uuid.UUID, active: bool | None = None,
                     limit: int = 50, cursor: str | None = None) -> Page[Plan]:
    """The clinic's plans, oldest first (keyset pages); patients see them too, to choose one."""
    require(principal, "billing_plans:read", clinic_id, resource_type="plan")
    check_limit(limit)
    after = decode_cursor(cursor)
    rows = await db.fetch(
        """SELECT * FROM billing_plans WHERE clinic_id = $1
             AND ($2::boolean IS NULL OR active = $2)
             AND ($3::timestamptz IS NULL OR (created_at, id) > ($3, $4))
           ORDER BY created_at, id LIMIT $5""",
        clinic_id, active, after[0] if after else None, after[1] if after else None, limit + 1)
    return _page(rows, limit, plan_from_row)


# subscriptions -------------------------------------------------------------------------------

#: The subscription, its plan's quotas and what the current period used, per type.
SUBSCRIPTIONS = """
SELECT s.*, p.quotas,
       (SELECT coalesce(jsonb_object_agg(u.appointment_type, u.used), '{}'::jsonb)
        FROM billing_quota_usage u
        WHERE u.subscription_id = s.id AND u.period_start = s.current_period_start) AS used
FROM billing_subscriptions s JOIN billing_plans p ON p.id = s.plan_id
"""


async def load_subscription(subscription_id: uuid.UUID) -> Subscription:
    rows = await db.fetch(SUBSCRIPTIONS + "WHERE s.id = $1", subscription_id)
    if not rows:
        raise NotFound("subscription not found", resource_type="subscription",
                       resource_id=subscription_id)
    return subscription_from_row(rows[0])


def check_visible(grant: Grant, subscription: Subscription) -> None:
    """A patient's own; staff in scope (subscriptions carry no location)."""
    grant.check_object(owner_id=subscription.patient_id, location_id=None,
                       object_id=subscription.id)


async def get_subscription(principal: Principal, subscription_id: uuid.UUID) -> Subscription:
    subscription = await load_subscription(subscription_id)
    grant = require(principal, "subscriptions:read", subscription.clinic_id,
                    resource_type="subscription", resource_id=subscription_id)
    check_visible(grant, subscription)
    return subscription


async def list_subscriptions(
    principal: Principal, *, clinic_id: uuid.UUID, patient_id: uuid.UUID | None = None,
    status: SubscriptionStatus | None = None, limit: int = 50, cursor: str | None = None,
) -> Page[Subscription]:
    """The clinic's subscriptions (a patient: their own), oldest first, keyset pages."""
    grant = require(principal, "subscriptions:read", clinic_id, resource_type="subscription")
    check_limit(limit)
    after = decode_cursor(cursor)
    own = grant.scope is not Scope.ANY
    rows = await db.fetch(
        SUBSCRIPTIONS + """WHERE s.clinic_id = $1
          AND ($2::uuid IS NULL OR s.patient_id = $2) AND (NOT $3 OR s.patient_id = $4)
          AND ($5::text IS NULL OR s.status = $5)
          AND ($6::timestamptz IS NULL OR (s.created_at, s.id) > ($6, $7))
        ORDER BY s.created_at, s.id LIMIT $8""",
        clinic_id, patient_id, own, principal.user_id, status.value if status else None,
        after[0] if after else None, after[1] if after else None, limit + 1)
    return _page(rows, limit, subscription_from_row)
