"""A plan covers a booking: one unit of the patient's quota per appointment, claimed in the
booking's transaction, and given back once by a cancellation inside the clinic's policy.

`billing_quota_usage.used` moves only by guarded statements: the claim is an upsert whose
update only happens while `used < quota` (PostgreSQL re-checks the guard on the row's latest
version under its lock, so concurrent bookings never take more than the quota), the release
only while `used > 0`. Each claim has its row in `billing_quota_claims` (one per appointment),
so a unit is given back at most once.

Lock order: scheduling's locks first (the doctor's or the appointment row), then the patient's
live subscriptions FOR SHARE (a renewal or a cancellation waits for the booking to commit), then
the usage row. Quota counts against the subscription's current period at booking time."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

import msgspec

from domain import clock, db
from domain.billing.models import LIVE_SUBSCRIPTION
from domain.principal import Principal
from domain.scheduling.commands.transitions import apply_transition, on_booking, on_transition
from domain.scheduling.models import Appointment, Status
from domain.tenancy.models import Clinic
from domain.tenancy.queries import load_clinic

COVERED_REASON = "covered by plan"
_LIVE = [s.value for s in LIVE_SUBSCRIPTION]


class _Candidate(msgspec.Struct, frozen=True):
    subscription_id: uuid.UUID
    period_start: datetime
    #: appointment type -> quota (None: unlimited); a type left out is not covered.
    quotas: dict[str, int | None]


#: The patient's live subscriptions in the clinic, oldest first, held (FOR SHARE) until the
#: booking commits so none is cancelled or renewed under it.
_CANDIDATES = """
SELECT s.id, s.current_period_start, p.quotas
FROM billing_subscriptions s JOIN billing_plans p ON p.id = s.plan_id
WHERE s.clinic_id = $1 AND s.patient_id = $2 AND s.status = ANY($3::text[])
ORDER BY s.created_at, s.id
FOR SHARE OF s
"""

#: One unit, only while there is one left: the upsert's update re-checks `used < quota` on the
#: row's latest version under its lock; the claim row exists only when the unit was taken.
_CLAIM = """
WITH taken AS (
    INSERT INTO billing_quota_usage AS u (subscription_id, appointment_type, period_start, used)
    VALUES ($1, $2, $3, 1)
    ON CONFLICT (subscription_id, appointment_type, period_start)
    DO UPDATE SET used = u.used + 1 WHERE $4::integer IS NULL OR u.used < $4::integer
    RETURNING u.subscription_id
)
INSERT INTO billing_quota_claims (appointment_id, subscription_id, appointment_type, period_start)
SELECT $5, subscription_id, $2, $3 FROM taken
RETURNING appointment_id
"""


def _quotas(raw: Any) -> dict[str, int | None]:
    value = json.loads(raw) if isinstance(raw, str) else raw
    return {str(k): (None if v is None else int(v)) for k, v in (value or {}).items()}


async def _candidates(clinic_id: uuid.UUID, patient_id: uuid.UUID) -> list[_Candidate]:
    rows = await db.fetch(_CANDIDATES, clinic_id, patient_id, _LIVE)
    return [_Candidate(subscription_id=r["id"], period_start=r["current_period_start"],
                       quotas=_quotas(r["quotas"])) for r in rows]


async def _claim(candidates: list[_Candidate], appointment: Appointment) -> bool:
    """One unit from the first subscription with quota left for the appointment's type."""
    kind = appointment.type.value
    for c in candidates:
        if kind not in c.quotas:
            continue
        quota = c.quotas[kind]
        if quota is not None and quota < 1:
            continue
        if await db.fetch(_CLAIM, c.subscription_id, kind, c.period_start, quota, appointment.id):
            return True
    return False


@on_booking
async def cover(actor: Principal, clinic: Clinic, appointments: list[Appointment]
                ) -> list[Appointment]:
    """Claim quota for each booked appointment the patient's plans cover; a covered
    `pending_payment` appointment is paid for by the plan and moves to `scheduled`. Inside the
    booking's transaction: a refused booking takes no quota."""
    if not appointments:
        return appointments
    candidates = await _candidates(clinic.id, appointments[0].patient_id)
    if not candidates:
        return appointments
    result = []
    for appointment in appointments:
        if await _claim(candidates, appointment) and appointment.status is Status.PENDING_PAYMENT:
            appointment = await apply_transition(None, appointment, Status.SCHEDULED,
                                                 reason=COVERED_REASON, permission=None)
        result.append(appointment)
    return result


#: The claim still held by the appointment, locked (a concurrent release waits, then sees it
#: released).
_HELD = """
SELECT subscription_id FROM billing_quota_claims
WHERE appointment_id = $1 AND released_at IS NULL FOR UPDATE
"""

_RELEASE = """
WITH released AS (
    UPDATE billing_quota_claims SET released_at = now()
    WHERE appointment_id = $1 AND released_at IS NULL
    RETURNING subscription_id, appointment_type, period_start
)
UPDATE billing_quota_usage u SET used = u.used - 1
FROM released r
WHERE u.subscription_id = r.subscription_id AND u.appointment_type = r.appointment_type
  AND u.period_start = r.period_start AND u.used > 0
RETURNING u.used
"""


@on_transition
async def give_back(actor: Principal | None, before: Appointment, after: Appointment) -> None:
    """A covered appointment cancelled at least the clinic's `refund_notice_minutes` before
    its start gives its unit back (once); a later cancellation, a no-show or an expiry does
    not. Inside the transition's transaction."""
    if after.status is not Status.CANCELLED or before.status is Status.CANCELLED:
        return
    if not await db.fetch(_HELD, after.id):
        return
    clinic = await load_clinic(after.clinic_id)
    notice = timedelta(minutes=clinic.settings.billing.refund_notice_minutes)
    if before.start - clock.now() < notice:
        return
    await db.fetch(_RELEASE, after.id)


async def covered(appointment_id: uuid.UUID) -> bool:
    """Whether a plan covers the appointment (a claim not given back): billing charges none."""
    rows = await db.fetch("SELECT 1 FROM billing_quota_claims "
                          "WHERE appointment_id = $1 AND released_at IS NULL", appointment_id)
    return bool(rows)
