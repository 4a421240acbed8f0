"""Stripe through the official SDK (`stripe` 16.1): PaymentIntents and Refunds over its async
HTTPX client, webhooks verified by `stripe.Webhook.construct_event` on the raw body.

- Order: `POST /v1/payment_intents` (amount in minor units, lowercase currency, automatic
  payment methods, `metadata[reference]`) with `Idempotency-Key = reference`, so a retried
  create (ours, or the SDK's two retries of 409/5xx, `RETRIES`) returns the same intent. The app pays
  with `checkout = {"client_secret"}` (Stripe.js / mobile SDK confirm it; `return_url` belongs
  to that confirmation, not to creation, so it is not sent here).
- Status: a retrieved intent `succeeded` -> succeeded; `canceled`, or back at
  `requires_payment_method` after a failed attempt (`last_payment_error`) -> failed; every other
  status (`processing`, `requires_action`, `requires_capture`, ...) -> pending.
- Refund: `POST /v1/refunds {payment_intent, amount}` with `Idempotency-Key = reference`
  (the intent names the charge and its currency, so `payment_id` and `currency` are not sent);
  `succeeded` -> succeeded, `failed` / `canceled` -> failed, `pending` / `requires_action` ->
  pending.
- Errors: connection failures, timeouts, 429 and 5xx -> ProviderError (503; an unreadable answer
  502); 4xx -> ProviderRejected naming our field when Stripe's `param` is one of ours.
- Every call is bounded by `settings.payment_timeout_seconds` as a whole (the SDK's retries
  included); the HTTP client is reused per event loop (it holds the connection pool).

Amounts: Stripe's "zero-decimal" list matches ISO 4217 minor digits for the currencies clinics
use (INR, USD, EUR, GBP, JPY); its few special cases (HUF, ISK, UGX, TWD payouts) are not
handled here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from typing import Any, ClassVar, TypeVar
from weakref import WeakKeyDictionary

import stripe

from domain.billing.providers import wire
from domain.billing.providers.base import (
    Credentials,
    Order,
    OrderStatus,
    ProviderError,
    ProviderRejected,
    RefundResult,
    State,
    WebhookFact,
)
from domain.inbox.signatures import Refused, forged, malformed
from domain.settings import get as app_settings

#: Seconds of age Stripe's signature scheme accepts (its default; PROVIDERS.md).
TOLERANCE = 300
#: The SDK's retries of connection errors, 409 and 5xx (same Idempotency-Key). A StripeClient
#: retries none unless told (only the global `stripe.max_network_retries` defaults to 2).
RETRIES = 2
#: Stripe's `param` values that name an input of ours.
OUR_FIELDS = {"amount": "amount", "currency": "currency", "payment_intent": "order_id"}

T = TypeVar("T")

#: One HTTPX client per event loop (its pool is bound to the loop), and the StripeClients built
#: on it per (secret key, API address).
_http: WeakKeyDictionary[asyncio.AbstractEventLoop, stripe.HTTPXClient] = WeakKeyDictionary()
_clients: WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str], stripe.StripeClient]] \
    = WeakKeyDictionary()
_MAX_CLIENTS = 256


def _client(creds: Credentials) -> stripe.StripeClient:
    key = creds.get("secret_key", "")
    if not key:
        raise ProviderRejected("stripe: no secret_key stored for this clinic", field="credentials")
    settings = app_settings()
    loop = asyncio.get_running_loop()
    http = _http.get(loop)
    if http is None:
        http = _http[loop] = stripe.HTTPXClient(timeout=settings.payment_timeout_seconds)
    per_loop = _clients.setdefault(loop, {})
    cache_key = (key, settings.stripe_url)
    client = per_loop.get(cache_key)
    if client is None:
        if len(per_loop) >= _MAX_CLIENTS:
            per_loop.clear()
        client = per_loop[cache_key] = stripe.StripeClient(
            key, http_client=http, base_addresses={"api": settings.stripe_url},
            max_network_retries=RETRIES)
    return client


async def close() -> None:
    """Close this loop's HTTP client (tests that run one loop per call)."""
    loop = asyncio.get_running_loop()
    _clients.pop(loop, None)
    http = _http.pop(loop, None)
    if http is not None:
        await http.close_async()  # type: ignore[no-untyped-call]  # untyped in the SDK


def _field(param: object) -> str | None:
    if not isinstance(param, str):
        return None
    return OUR_FIELDS.get(param.split("[", 1)[0])


async def _call(what: str, call: Awaitable[T]) -> T:
    """Await one SDK call within the payment timeout, mapping its errors onto ours. Messages
    carry the status, Stripe's error code and param, never its message (it can quote our
    input) nor the key."""
    try:
        async with asyncio.timeout(app_settings().payment_timeout_seconds):
            return await call
    except TimeoutError:
        raise ProviderError(f"stripe: {what}: no answer in time") from None
    except stripe.APIConnectionError as exc:
        raise ProviderError(f"stripe: {what}: cannot reach Stripe ({type(exc.__cause__).__name__})") \
            from None
    except stripe.RateLimitError:
        raise ProviderError(f"stripe: {what}: rate limited", retry_after=5) from None
    except (stripe.AuthenticationError, stripe.PermissionError) as exc:
        raise ProviderRejected(f"stripe: {what}: the clinic's key was refused ({exc.http_status})",
                               field="credentials") from None
    except stripe.IdempotencyError as exc:
        raise ProviderRejected(f"stripe: {what}: idempotency key reused with other parameters "
                               f"({exc.http_status})", field="reference") from None
    except (stripe.InvalidRequestError, stripe.CardError) as exc:
        raise ProviderRejected(f"stripe: {what}: {exc.http_status} {exc.code or 'invalid_request'}"
                               + (f" ({exc.param})" if exc.param else ""),
                               field=_field(exc.param)) from None
    except stripe.StripeError as exc:
        status = exc.http_status or 0
        if status >= 500 or status == 409:
            raise ProviderError(f"stripe: {what}: server error {status}") from None
        if 400 <= status < 500:
            raise ProviderRejected(f"stripe: {what}: refused ({status})") from None
        # no status: the SDK could not read the answer
        raise ProviderError(f"stripe: {what}: unreadable answer", status=502) from None


def _intent_state(status: object, last_error: object) -> State:
    if status == "succeeded":
        return "succeeded"
    if status == "canceled" or (status == "requires_payment_method" and last_error):
        return "failed"
    return "pending"


def _refund_state(status: object) -> State:
    if status == "succeeded":
        return "succeeded"
    if status in ("failed", "canceled"):
        return "failed"
    return "pending"


def _currency(value: object) -> str | None:
    return value.upper() if isinstance(value, str) else None




def _failure(last_error: object) -> str | None:
    if not isinstance(last_error, Mapping):
        return None
    code = last_error.get("decline_code") or last_error.get("code")
    return str(code) if code else "payment_failed"


class Stripe:
    name: ClassVar[str] = "stripe"
    required_fields: ClassVar[tuple[str, ...]] = ("secret_key", "webhook_secret")

    async def create_order(self, creds: Credentials, *, reference: str, amount: int,
                           currency: str, description: str, return_url: str) -> Order:
        client = _client(creds)
        intent = await _call("create payment intent", client.v1.payment_intents.create_async(
            params={"amount": amount, "currency": currency.lower(), "description": description,
                    "automatic_payment_methods": {"enabled": True},
                    "metadata": {"reference": reference}},
            options={"idempotency_key": reference}))
        if not intent.id or not intent.client_secret:
            raise ProviderError("stripe: payment intent without id or client_secret", status=502)
        return Order(order_id=intent.id, checkout={"client_secret": intent.client_secret})

    async def order_status(self, creds: Credentials, order_id: str) -> OrderStatus:
        client = _client(creds)
        intent = await _call("retrieve payment intent",
                             client.v1.payment_intents.retrieve_async(order_id))
        fact = _intent_fact("payment_intent.retrieved", intent.to_dict())
        assert fact.state is not None
        return OrderStatus(state=fact.state, payment_id=fact.payment_id, amount=fact.amount,
                           currency=fact.currency, failure_reason=fact.failure_reason)

    async def refund(self, creds: Credentials, *, order_id: str, payment_id: str | None,
                     amount: int, currency: str, reference: str) -> RefundResult:
        client = _client(creds)
        refund = await _call("create refund", client.v1.refunds.create_async(
            params={"payment_intent": order_id, "amount": amount,
                    "metadata": {"reference": reference}},
            options={"idempotency_key": reference}))
        if not refund.id:
            raise ProviderError("stripe: refund without id", status=502)
        return RefundResult(refund_id=refund.id, state=_refund_state(refund.status))

    async def verify_webhook(self, creds: Credentials, body: bytes,
                             headers: Mapping[str, str]) -> None:
        secret = creds.get("webhook_secret", "")
        if not secret:
            raise Refused(401, "not_configured", "Stripe webhooks are not configured for this clinic")
        signature = headers.get("stripe-signature")
        if not signature:
            raise forged("Stripe-Signature header missing")
        try:
            stripe.Webhook.construct_event(body, signature, secret, tolerance=TOLERANCE)
        except stripe.SignatureVerificationError as exc:
            if "tolerance" in str(exc):
                raise Refused(401, "stale", "the webhook's timestamp is older than 300 s") from None
            raise forged() from None
        except ValueError:  # not UTF-8 or not JSON, yet signed
            raise malformed("the webhook body is not a JSON event") from None

    def webhook_event_id(self, body: bytes, headers: Mapping[str, str]) -> str:
        event = _event(body)
        event_id = wire.text(event.get("id"))
        if event_id is None:
            raise malformed("the event has no id")
        return event_id

    def webhook_facts(self, body: bytes, headers: Mapping[str, str]) -> list[WebhookFact]:
        event = _event(body)
        kind = str(event.get("type") or "")
        data = event.get("data")
        obj = data.get("object") if isinstance(data, dict) else None
        if not isinstance(obj, dict):
            return [WebhookFact(kind="other", event_type=kind)]
        if kind.startswith("payment_intent."):
            return [_intent_fact(kind, obj)]
        if kind.startswith("refund.") and obj.get("object") == "refund":
            state = "failed" if kind == "refund.failed" else _refund_state(obj.get("status"))
            return [WebhookFact(
                kind="refund", event_type=kind, order_id=wire.text(obj.get("payment_intent")),
                payment_id=wire.text(obj.get("charge")), refund_id=wire.text(obj.get("id")), state=state,
                amount=wire.whole(obj.get("amount")), currency=_currency(obj.get("currency")),
                failure_reason=wire.text(obj.get("failure_reason")) if state == "failed" else None)]
        # charge.refunded carries no refund ids since API 2022-11-15 (refunds are not
        # expanded): the refund.* events of the same refund are what billing applies.
        return [WebhookFact(kind="other", event_type=kind)]


def _intent_fact(kind: str, obj: Mapping[str, Any]) -> WebhookFact:
    """A PaymentIntent (retrieved, or in a payment_intent.* event) in our terms."""
    last_error = obj.get("last_payment_error")
    state = _intent_state(obj.get("status"), last_error)
    if kind == "payment_intent.payment_failed":
        state = "failed"  # the event says so whatever status the intent moved on to
    received = wire.whole(obj.get("amount_received"))
    return WebhookFact(
        kind="payment", event_type=kind, order_id=wire.text(obj.get("id")),
        payment_id=wire.text(obj.get("latest_charge")), state=state,
        amount=received if state == "succeeded" and received else wire.whole(obj.get("amount")),
        currency=_currency(obj.get("currency")),
        failure_reason=_failure(last_error) if state == "failed" else None)


def _event(body: bytes) -> dict[str, Any]:
    return wire.webhook_object(body, "Stripe")


ADAPTER = Stripe()
