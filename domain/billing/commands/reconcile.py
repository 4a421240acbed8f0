"""Missed webhooks: payments still pending `payment_reconcile_after_seconds` after they were
opened are asked about at their provider, and what it says is applied exactly as a webhook's
fact would be (`payments.settle`: guarded, once). The provider is asked outside any
transaction; each payment is settled in its own. A pending payment whose checkout never
opened (the provider was never reached, the process died) is failed: nobody could pay it."""

from __future__ import annotations

import logging
from datetime import timedelta

from domain import db
from domain.billing.commands.payments import settle
from domain.billing.models import ONLINE_PROVIDERS
from domain.billing.providers import adapter
from domain.billing.providers.base import OrderStatus, ProviderError, ProviderRejected
from domain.billing.queries.payments import load_payment, payment_from_row
from domain.errors import DomainError
from domain.settings import get as app_settings
from domain.tenancy.credentials import get_credentials

log = logging.getLogger("carewire.billing")


async def reconcile(limit: int = 100) -> dict[str, int]:
    """One pass over the oldest-checked pending payments not changed or asked about for
    `payment_reconcile_after_seconds` (each asked moves to the back of the line and waits that
    long again: an abandoned checkout is asked about every interval, not every pass, and never
    starves the others). Counts per outcome."""
    after = timedelta(seconds=app_settings().payment_reconcile_after_seconds)
    rows = await db.fetch(
        """UPDATE billing_payments SET updated_at = now()
           WHERE id IN (SELECT id FROM billing_payments
                        WHERE status = 'pending' AND provider = ANY($1::text[])
                          AND updated_at <= now() - $2::interval
                        ORDER BY updated_at LIMIT $3 FOR UPDATE SKIP LOCKED)
           RETURNING *""", list(ONLINE_PROVIDERS), after, limit)
    counts: dict[str, int] = {}
    for row in rows:
        payment = payment_from_row(row)
        outcome = "unreachable"
        try:
            if payment.provider_order_id is None:
                status = OrderStatus(state="failed", failure_reason="checkout was never opened")
            else:
                creds = await get_credentials(payment.clinic_id, payment.provider)
                status = await adapter(payment.provider).order_status(creds,
                                                                      payment.provider_order_id)
            async with db.transaction():
                current = await load_payment(payment.id)
                outcome = await settle(current, status.state,
                                       provider_payment_id=status.payment_id,
                                       failure_reason=status.failure_reason)
        except (ProviderError, ProviderRejected, DomainError) as exc:
            log.info("reconcile: payment %s not settled now: %s", payment.id, exc)
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts
