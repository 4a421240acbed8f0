"""Payment providers' webhooks: intake (verify on the raw body with the clinic's own webhook
secret, store in the one inbox, answer at once) and the inbox handler that applies what a
stored event says, once, through `payments.settle`.

Each clinic registers its own address, `/api/v1/webhooks/payments/{provider}/{clinic_id}`,
because the webhook secret is the clinic's. The inbox keys events by `{clinic_id}:{provider
event id}`: one clinic's events can never shadow another's. Facts converge whatever order they
arrive in: a payment never leaves `succeeded`; a refund fact proves the payment was captured
(it settles the payment first); a refund applies once per provider refund id."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping

from domain import db
from domain.billing.commands import refunds
from domain.billing.commands.payments import settle
from domain.billing.models import ONLINE_PROVIDERS, Payment, PaymentStatus
from domain.billing.providers import adapter
from domain.billing.providers.base import WebhookFact
from domain.billing.queries.payments import payment_from_row
from domain.errors import NotFound
from domain.inbox.commands import receive
from domain.inbox.models import Event, Handled, Receipt
from domain.inbox.signatures import Refused
from domain.tenancy.credentials import CredentialsUnavailable, get_credentials

log = logging.getLogger("carewire.billing")

#: The header naming the clinic whose address the event came to (stored with the event).
CLINIC_HEADER = "x-carewire-clinic"
#: Headers kept with a stored body: what the adapters read. Never PhonePe's Authorization
#: (a digest of the clinic's webhook password).
KEPT = ("content-type", "stripe-signature", "x-razorpay-signature", "x-razorpay-event-id",
        "paypal-transmission-id", "paypal-transmission-time", "paypal-transmission-sig",
        "paypal-cert-url", "paypal-auth-algo")


async def intake(provider: str, clinic_id: uuid.UUID, body: bytes,
                 headers: Mapping[str, str]) -> Receipt:
    """Verify with the clinic's credentials, then store under the provider's event id. An
    unknown clinic, or one without this provider set up, is refused like a forged signature
    (401): the answer tells nothing about which clinics exist."""
    if provider not in ONLINE_PROVIDERS:
        raise Refused(400, "unknown_provider", "provider must be stripe, razorpay, phonepe or "
                                               "paypal")
    try:
        creds = await get_credentials(clinic_id, provider)
    except (NotFound, CredentialsUnavailable):
        raise Refused(401, "not_configured",
                      f"{provider} webhooks are not configured for this address") from None
    try:
        payments = adapter(provider)
    except ImportError:  # its adapter is not part of this build
        raise Refused(400, "unknown_provider", f"{provider} is not available here") from None
    try:
        await payments.verify_webhook(creds, body, headers)
        event_id = payments.webhook_event_id(body, headers)
    except (AttributeError, TypeError, ValueError, RecursionError, UnicodeDecodeError):
        # an authentic body of the wrong shape that the provider's library trips on (Stripe's
        # construct_event on a signed JSON array): malformed, never a 500
        raise Refused(400, "malformed", "the webhook body is not an event") from None
    if not 1 <= len(event_id) <= 250 or not event_id.isprintable():
        raise Refused(400, "malformed", "the event id is missing or not an event id")
    kept = {n: headers[n][:500] for n in KEPT if n in headers}
    kept[CLINIC_HEADER] = str(clinic_id)
    return await receive(provider=provider, event_ids=[f"{clinic_id}:{event_id}"], body=body,
                         headers=kept)


async def handle(event: Event) -> Handled:
    """The inbox handler for every payment provider (inside the processing transaction)."""
    clinic_id = uuid.UUID(event.headers[CLINIC_HEADER])
    facts = adapter(event.provider).webhook_facts(event.body, event.headers)
    results = [await apply_fact(clinic_id, event.provider, fact) for fact in facts]
    return Handled(result=",".join(results)[:200] or "nothing", clinic_id=clinic_id)


async def _find(clinic_id: uuid.UUID, provider: str, fact: WebhookFact) -> Payment | None:
    if fact.order_id is None and fact.payment_id is None:
        return None
    rows = await db.fetch(
        """SELECT * FROM billing_payments
           WHERE clinic_id = $1 AND provider = $2
             AND (provider_order_id = $3 OR ($3::text IS NULL AND provider_payment_id = $4))""",
        clinic_id, provider, fact.order_id, fact.payment_id)
    return payment_from_row(rows[0]) if rows else None


async def apply_fact(clinic_id: uuid.UUID, provider: str, fact: WebhookFact) -> str:
    """One fact, applied once (a short word for the inbox row). A payment we do not know is
    parked as `unknown_payment` (stored, not an error)."""
    if fact.kind == "other" or fact.state is None:
        return "ignored"
    payment = await _find(clinic_id, provider, fact)
    if payment is None:
        return "unknown_payment"
    if fact.kind == "payment":
        if fact.state == "succeeded" and not _same_money(payment, fact):
            log.warning("payment %s: the provider reports %s %s, we asked %s %s; not applied",
                        payment.id, fact.amount, fact.currency, payment.amount, payment.currency)
            return "amount_mismatch"
        return await settle(payment, fact.state, provider_payment_id=fact.payment_id,
                            failure_reason=fact.failure_reason)
    if fact.refund_id is None:
        return "ignored"
    if payment.status is not PaymentStatus.SUCCEEDED and fact.state != "failed":
        # money is refunded only once it was captured: the capture's own news is late
        await settle(payment, "succeeded", provider_payment_id=fact.payment_id)
    await refunds.apply_refund_fact(payment.id, fact.refund_id, fact.state, fact.amount)
    return f"refund_{fact.state}"


def _same_money(payment: Payment, fact: WebhookFact) -> bool:
    return ((fact.amount is None or fact.amount == payment.amount)
            and (fact.currency is None or fact.currency.upper() == payment.currency))
