"""Refunds that never exceed what was paid, also under concurrency.

A refund first reserves its amount on the payment (`refunded`, which counts pending and
succeeded refunds) under the payment row's lock, with a guarded UPDATE as well
(`refunded + amount <= amount`), and inserts itself `pending`, in one transaction. The provider
is called after COMMIT (a slow provider must hold no lock; the reservation already keeps
concurrent refunds within the remainder), with our refund id as its idempotency key; then the
provider's refund id and state are stored. A refund the provider fails gives its reservation
back, once (the pending -> failed move and the give-back are one statement).

A provider that cannot be reached leaves the refund pending: a job scheduled in the first
transaction (`SEND_TASK`) asks again with the same key, so a crash after COMMIT or a timeout
never loses a refund nor sends it twice. Desk payments (cash, card terminal) are refunded at
the desk: their refund succeeds at once.

A cancellation at least `refund_notice_minutes` before a paid visit schedules an automatic
full refund (`AUTOMATIC_TASK`): the transition's transaction cannot call a provider."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

from domain import clock, db, settings, validation
from domain.access.policies import require
from domain.audit.commands import record
from domain.billing import events
from domain.billing.models import DESK_METHODS, Refund, RefundStatus
from domain.billing.providers import adapter
from domain.billing.providers.base import ProviderError, ProviderRejected
from domain.billing.queries.refunds import refund_from_row
from domain.errors import Conflict, NotFound, Unavailable, invalid_field
from domain.events.commands import record as record_event
from domain.jobs.commands import schedule
from domain.money import check_amount
from domain.principal import Principal
from domain.scheduling.commands.transitions import on_transition
from domain.scheduling.models import Appointment, Status
from domain.tenancy.credentials import CredentialsUnavailable, get_credentials
from domain.tenancy.queries import load_clinic

log = logging.getLogger("carewire.billing.refunds")

#: The job that (re)sends a pending refund to its provider, with the same idempotency key.
SEND_TASK = "billing.refunds.send"
#: The job that refunds a payment in full after a cancellation inside the clinic's policy.
AUTOMATIC_TASK = "billing.refunds.automatic"

_LOCK_PAYMENT = """
SELECT id, clinic_id, patient_id, provider, provider_order_id, provider_payment_id, amount,
       currency, status, refunded
FROM billing_payments WHERE id = $1 FOR NO KEY UPDATE
"""

#: The reservation and the refund row in one statement; the guard holds even without the lock.
_RESERVE = """
WITH reserved AS (
    UPDATE billing_payments SET refunded = refunded + $2, updated_at = now()
    WHERE id = $1 AND status = 'succeeded' AND refunded + $2 <= amount
    RETURNING id, clinic_id, currency
)
INSERT INTO billing_refunds (id, clinic_id, payment_id, amount, currency, status, reason,
                             automatic, requested_by)
SELECT $3, clinic_id, id, $2, currency, $4, $5, $6, $7 FROM reserved
RETURNING *
"""

#: A pending refund reaches the provider's state (pending: only its id is noted); a failed one
#: gives its reservation back in the same statement, so never twice.
_SETTLE = """
WITH settled AS (
    UPDATE billing_refunds
    SET status = $3, provider_refund_id = coalesce(provider_refund_id, $2), updated_at = now()
    WHERE id = $1 AND status = 'pending'
    RETURNING *
), given_back AS (
    UPDATE billing_payments p SET refunded = p.refunded - s.amount, updated_at = now()
    FROM settled s WHERE p.id = s.payment_id AND s.status = 'failed'
    RETURNING p.id
)
SELECT s.*, p.patient_id FROM settled s JOIN billing_payments p ON p.id = s.payment_id
"""

_LOCK_PAYMENT_OF = """
SELECT 1 FROM billing_payments p JOIN billing_refunds r ON r.payment_id = p.id
WHERE r.id = $1 FOR NO KEY UPDATE OF p
"""

#: A refund made at the provider (its dashboard) that carewire did not ask for: recorded, and
#: reserved by the same guard, whatever the payment's status (a refund proves the money moved;
#: its payment's own fact may still be on its way).
_RECORD_EXTERNAL = """
WITH reserved AS (
    UPDATE billing_payments SET refunded = refunded + $2, updated_at = now()
    WHERE id = $1 AND refunded + $2 <= amount
    RETURNING id, clinic_id, currency, patient_id
), added AS (
    INSERT INTO billing_refunds (id, clinic_id, payment_id, amount, currency, status, reason,
                                 automatic, provider_refund_id)
    SELECT $3, clinic_id, id, $2, currency, $4, 'refunded at the provider', false, $5
    FROM reserved
    ON CONFLICT (payment_id, provider_refund_id) WHERE provider_refund_id IS NOT NULL
        DO NOTHING
    RETURNING *
)
SELECT a.*, r.patient_id FROM added a JOIN reserved r ON r.id = a.payment_id
"""

_EVENTS: dict[RefundStatus, type[events.RefundEvent]] = {
    RefundStatus.PENDING: events.RefundCreated,
    RefundStatus.SUCCEEDED: events.RefundSucceeded,
    RefundStatus.FAILED: events.RefundFailed,
}


async def _tell(actor: Principal | None, refund: Refund, patient_id: uuid.UUID) -> None:
    kind = _EVENTS[refund.status]
    await record_event(actor, clinic_id=refund.clinic_id, event=kind(
        refund_id=refund.id, payment_id=refund.payment_id, patient_id=patient_id,
        status=refund.status.value, currency=refund.currency, amount=refund.amount),
        audience=events.audience(refund.clinic_id, patient_id))


def _retry_after() -> timedelta:
    """When the send job first asks again: after the inline call has surely ended."""
    return timedelta(seconds=3 * settings.get().payment_timeout_seconds + 5)


async def refund(principal: Principal | None, payment_id: uuid.UUID, *, amount: int | None,
                 reason: str, automatic: bool = False) -> Refund:
    """Refund `amount` minor units (None: all that is left) of a succeeded payment. The
    principal needs `refunds:create`; None is the system (automatic refunds). Above the
    remainder is 400 naming `amount`; a payment that did not succeed, or is already refunded
    in full, is 409. The provider refusing the refund is 400 naming its field, the refund kept
    as failed and its amount given back."""
    why = validation.text(reason, "reason", max_length=500)
    if amount is not None:
        check_amount(amount, "amount")
    refund_id = uuid.uuid4()
    async with db.transaction():
        rows = await db.fetch(_LOCK_PAYMENT, payment_id)
        if not rows:
            raise NotFound("payment not found", resource_type="payment", resource_id=payment_id)
        payment = rows[0]
        if principal is not None:
            require(principal, "refunds:create", payment["clinic_id"], resource_type="payment",
                    resource_id=payment_id)
        if payment["status"] != "succeeded":
            raise Conflict(f"only a succeeded payment can be refunded; this one is "
                           f"{payment['status']}", resource_type="payment",
                           resource_id=payment_id)
        remainder = payment["amount"] - payment["refunded"]
        if remainder <= 0:
            raise Conflict("the payment is already refunded in full", resource_type="payment",
                           resource_id=payment_id)
        wanted = remainder if amount is None else amount
        if wanted > remainder:
            raise invalid_field("amount", f"at most what is left to refund, {remainder}")
        desk = payment["provider"] in DESK_METHODS
        status = RefundStatus.SUCCEEDED if desk else RefundStatus.PENDING
        rows = await db.fetch(_RESERVE, payment_id, wanted, refund_id, status.value, why,
                              automatic, principal.user_id if principal else None)
        if not rows:  # not under our lock: the guard is the last word
            raise Conflict("the payment changed; try again", resource_type="payment",
                           resource_id=payment_id)
        made = refund_from_row(rows[0])
        if not desk:
            await schedule(task=SEND_TASK, job_key=f"{SEND_TASK}:{refund_id}",
                           payload={"refund_id": str(refund_id)},
                           run_at=clock.now() + _retry_after())
        await record(principal, action="refunds:create", resource_type="refund",
                     resource_id=refund_id, clinic_id=made.clinic_id,
                     detail={"payment_id": str(payment_id), "amount": wanted,
                             "currency": made.currency, "reason": why, "automatic": automatic,
                             "provider": payment["provider"]})
        await _tell(principal, made, payment["patient_id"])
    if desk:
        return made
    return await _send(principal, made, payment, transient_ok=True)


async def _send(principal: Principal | None, pending: Refund, payment: dict[str, Any], *,
                transient_ok: bool) -> Refund:
    """Ask the provider (no transaction open) and store what it says. A transient failure
    leaves the refund pending (`transient_ok`) or raises Unavailable (the job retries)."""
    provider = payment["provider"]
    try:
        creds = await get_credentials(pending.clinic_id, provider)
        result = await adapter(provider).refund(
            creds, order_id=payment["provider_order_id"] or "",
            payment_id=payment["provider_payment_id"], amount=pending.amount,
            currency=pending.currency, reference=str(pending.id))
    except ProviderRejected as exc:
        await _settle(principal, pending.id, None, RefundStatus.FAILED, note=str(exc))
        raise invalid_field(exc.field or "amount",
                            f"{provider} refused the refund: {exc}") from exc
    except (ProviderError, NotFound, CredentialsUnavailable) as exc:
        log.warning("refund %s not sent to %s yet: %s", pending.id, provider, exc)
        if transient_ok:
            return pending
        raise Unavailable(f"{provider} could not be reached: {exc}") from exc
    settled = await _settle(principal, pending.id, result.refund_id, RefundStatus(result.state))
    return settled or pending


async def _settle(principal: Principal | None, refund_id: uuid.UUID,
                  provider_refund_id: str | None, state: RefundStatus, *,
                  note: str | None = None) -> Refund | None:
    """Store the provider's answer (its own transaction, or the caller's); None when the
    refund was no longer pending (a webhook got there first)."""
    async with db.transaction():
        if state is RefundStatus.FAILED:  # lock order: the payment, then its refund
            await db.fetch(_LOCK_PAYMENT_OF, refund_id)
        rows = await db.fetch(_SETTLE, refund_id, provider_refund_id, state.value)
        if not rows:
            return None
        settled = refund_from_row(rows[0])
        if state is not RefundStatus.PENDING:
            await record(principal, action="refunds:settle", resource_type="refund",
                         resource_id=refund_id, clinic_id=settled.clinic_id,
                         detail={"status": state.value, "amount": settled.amount,
                                 "provider_refund_id": settled.provider_refund_id,
                                 **({"note": note[:200]} if note else {})})
            await _tell(principal, settled, rows[0]["patient_id"])
    return settled


async def send_refund(refund_id: uuid.UUID) -> Refund:
    """The send job: a refund still pending is sent (again) with the same idempotency key;
    one already settled is left as it is. Unavailable when the provider is still away."""
    rows = await db.fetch(
        """SELECT r.*, p.provider, p.provider_order_id, p.provider_payment_id
           FROM billing_refunds r JOIN billing_payments p ON p.id = r.payment_id
           WHERE r.id = $1""", refund_id)
    if not rows:
        raise NotFound("refund not found", resource_type="refund", resource_id=refund_id)
    current = refund_from_row(rows[0])
    if current.status is not RefundStatus.PENDING:
        return current
    return await _send(None, current, rows[0], transient_ok=False)


async def apply_refund_fact(payment_id: uuid.UUID, provider_refund_id: str, state: str,
                            amount: int | None) -> Refund | None:
    """What a verified webhook says about a refund of a payment, inside the caller's
    transaction; applied once per provider refund id. Matches our refund by the provider's id,
    else a pending one of ours not yet given it (the webhook overtook the answer to our call)
    of that amount; a refund we never asked for is recorded when it fits in the remainder.
    Returns the refund changed or recorded, None when nothing changed."""
    wanted = RefundStatus(state)
    # lock order: the payment, then its refunds (as `refund` and `_settle` take them)
    if not await db.fetch("SELECT 1 FROM billing_payments WHERE id = $1 FOR NO KEY UPDATE",
                          payment_id):
        return None
    rows = await db.fetch(
        """SELECT id, status FROM billing_refunds
           WHERE payment_id = $1 AND (provider_refund_id = $2 OR (
               provider_refund_id IS NULL AND status = 'pending'
               AND ($3::bigint IS NULL OR amount = $3)))
           ORDER BY provider_refund_id IS NULL, created_at LIMIT 1 FOR UPDATE""",
        payment_id, provider_refund_id, amount)
    if rows:
        if rows[0]["status"] != RefundStatus.PENDING.value:
            return None  # settled already: a final state never moves
        return await _settle(None, rows[0]["id"], provider_refund_id, wanted)
    if wanted is RefundStatus.FAILED or amount is None or amount <= 0:
        return None  # nothing of ours failed, or nothing to record
    rows = await db.fetch(_RECORD_EXTERNAL, payment_id, amount, uuid.uuid4(), wanted.value,
                          provider_refund_id)
    if not rows:
        log.warning("refund %s of payment %s not recorded: above the remainder or known",
                    provider_refund_id, payment_id)
        return None
    made = refund_from_row(rows[0])
    await record(None, action="refunds:create", resource_type="refund", resource_id=made.id,
                 clinic_id=made.clinic_id,
                 detail={"payment_id": str(payment_id), "amount": amount,
                         "currency": made.currency, "reason": made.reason, "automatic": False,
                         "provider_refund_id": provider_refund_id})
    await _tell(None, made, rows[0]["patient_id"])
    return made


async def schedule_automatic_refund(payment_id: uuid.UUID, *, reason: str) -> bool:
    """Inside the caller's transaction: refund the payment in full soon, by a job (a provider
    is never called inside a transaction). Once per payment; False when already planned."""
    return await schedule(task=AUTOMATIC_TASK, job_key=f"{AUTOMATIC_TASK}:{payment_id}",
                          payload={"payment_id": str(payment_id), "reason": reason})


async def refund_automatically(payment_id: uuid.UUID, reason: str) -> Refund | None:
    """The automatic job: a full refund of what is left, by the system. Nothing left (already
    refunded by hand, or in full) is not an error: None."""
    try:
        return await refund(None, payment_id, amount=None, reason=reason, automatic=True)
    except Conflict as exc:
        log.info("no automatic refund of payment %s: %s", payment_id, exc.message)
        return None


_PAID_FOR_VISIT = """
SELECT p.id FROM billing_payments p JOIN billing_invoices i ON i.id = p.invoice_id
WHERE i.appointment_id = $1 AND p.status = 'succeeded' AND p.refunded < p.amount
"""


@on_transition
async def _refund_cancelled_in_policy(actor: Principal | None, before: Appointment,
                                      after: Appointment) -> None:
    """A paid visit cancelled at least `refund_notice_minutes` before its start is refunded in
    full, automatically; a later cancellation is not (staff may still refund by hand)."""
    if after.status is not Status.CANCELLED or before.status is Status.CANCELLED:
        return
    paid = await db.fetch(_PAID_FOR_VISIT, after.id)
    if not paid:
        return
    notice = (await load_clinic(after.clinic_id)).settings.billing.refund_notice_minutes
    if after.start - clock.now() < timedelta(minutes=notice):
        return
    for row in paid:
        await schedule_automatic_refund(
            row["id"], reason=f"cancelled at least {notice} minutes before the visit")
