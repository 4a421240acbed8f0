"""Plans a clinic sells and patients' subscriptions to them."""

from __future__ import annotations

import uuid
from typing import Annotated

import msgspec
from litestar import Router, get, patch, post
from litestar.params import FromPath, FromQuery, JSONBody

from domain.billing.commands import plans as plan_commands
from domain.billing.commands import subscriptions as sub_commands
from domain.billing.models import Interval, Plan, Subscription, SubscriptionStatus
from domain.billing.queries import plans as queries
from domain.paging import Page
from gateway.context import CurrentPrincipal
from gateway.routes import NO_NUL, Body

UNSET = msgspec.UNSET
PlanName = Annotated[str, msgspec.Meta(max_length=120, pattern=NO_NUL)]
Price = Annotated[int, msgspec.Meta(ge=0, lt=10**12)]
Quotas = Annotated[dict[Annotated[str, msgspec.Meta(max_length=20, pattern=NO_NUL)],
                        Annotated[int, msgspec.Meta(ge=1, le=plan_commands.MAX_QUOTA)] | None],
                   msgspec.Meta(max_length=10)]


class PlanCreate(Body):
    clinic_id: uuid.UUID
    name: PlanName
    #: Minor units (paise, cents) per period; 0: a free plan (no invoices).
    price: Price
    interval: Interval
    #: The clinic's billing currency (left out: that one); any other is 400 naming `currency`.
    currency: Annotated[str, msgspec.Meta(max_length=8, pattern=NO_NUL)] | None = None
    trial_days: Annotated[int, msgspec.Meta(ge=0, le=365)] = 0
    #: Appointment type (in_person, video) -> visits per period, null: unlimited; a type left
    #: out is not covered.
    quotas: Quotas = msgspec.field(default_factory=dict)
    active: bool = True


class PlanPatch(Body):
    name: PlanName | msgspec.UnsetType = UNSET
    price: Price | msgspec.UnsetType = UNSET
    active: bool | msgspec.UnsetType = UNSET
    quotas: Quotas | msgspec.UnsetType = UNSET


class SubscriptionCreate(Body):
    clinic_id: uuid.UUID
    plan_id: uuid.UUID
    patient_id: uuid.UUID


class CancelBody(Body):
    #: true: stays live until the period ends; false: ends now.
    at_period_end: bool = False


@get("/plans", permission="billing_plans:read")
async def list_plans(principal: CurrentPrincipal, clinic_id: FromQuery[uuid.UUID],
                     active: FromQuery[bool | None] = None, limit: FromQuery[int] = 50,
                     cursor: FromQuery[str | None] = None) -> Page[Plan]:
    """The clinic's plans, oldest first (keyset pages)."""
    return await queries.list_plans(principal, clinic_id=clinic_id, active=active, limit=limit,
                                    cursor=cursor)


@post("/plans", permission="billing_plans:manage")
async def create_plan(principal: CurrentPrincipal, data: JSONBody[PlanCreate]) -> Plan:
    """A new plan in the clinic's billing currency (audited); a taken name is 409."""
    return await plan_commands.create_plan(
        principal, clinic_id=data.clinic_id, name=data.name, price=data.price,
        interval=data.interval, trial_days=data.trial_days, quotas=data.quotas,
        currency=data.currency, active=data.active)


@get("/plans/{plan_id:str}", permission="billing_plans:read")
async def get_plan(principal: CurrentPrincipal, plan_id: FromPath[uuid.UUID]) -> Plan:
    return await queries.get_plan(principal, plan_id)


@patch("/plans/{plan_id:str}", permission="billing_plans:manage")
async def update_plan(principal: CurrentPrincipal, plan_id: FromPath[uuid.UUID],
                      data: JSONBody[PlanPatch]) -> Plan:
    """Name, price (from each subscription's next period), active, quotas (at once)."""
    return await plan_commands.update_plan(principal, plan_id, name=data.name, price=data.price,
                                           active=data.active, quotas=data.quotas)


@get("/subscriptions", permission="subscriptions:read")
async def list_subscriptions(
    principal: CurrentPrincipal, clinic_id: FromQuery[uuid.UUID],
    patient_id: FromQuery[uuid.UUID | None] = None,
    status: FromQuery[SubscriptionStatus | None] = None, limit: FromQuery[int] = 50,
    cursor: FromQuery[str | None] = None,
) -> Page[Subscription]:
    """The clinic's subscriptions with this period's quota use (a patient: their own)."""
    return await queries.list_subscriptions(principal, clinic_id=clinic_id, patient_id=patient_id,
                                            status=status, limit=limit, cursor=cursor)


@post("/subscriptions", permission="subscriptions:manage")
async def subscribe(principal: CurrentPrincipal, data: JSONBody[SubscriptionCreate]
                    ) -> Subscription:
    """Trial plans start `trialing`; others `active` with an open invoice for the period."""
    return await sub_commands.subscribe(principal, clinic_id=data.clinic_id,
                                        plan_id=data.plan_id, patient_id=data.patient_id)


@get("/subscriptions/{subscription_id:str}", permission="subscriptions:read")
async def get_subscription(principal: CurrentPrincipal,
                           subscription_id: FromPath[uuid.UUID]) -> Subscription:
    return await queries.get_subscription(principal, subscription_id)


@post("/subscriptions/{subscription_id:str}/cancel", permission="subscriptions:manage",
      status_code=200)
async def cancel_subscription(principal: CurrentPrincipal, subscription_id: FromPath[uuid.UUID],
                              data: JSONBody[CancelBody | None] = None) -> Subscription:
    """Now (default) or at the period's end; a subscription no longer live is 409."""
    return await sub_commands.cancel(principal, subscription_id,
                                     at_period_end=bool(data and data.at_period_end))


router = Router(path="/billing",
                route_handlers=[list_plans, create_plan, get_plan, update_plan,
                                list_subscriptions, subscribe, get_subscription,
                                cancel_subscription],
                tags=["billing"])
