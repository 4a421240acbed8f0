"""Razorpay over its REST API with httpx (its official SDK is synchronous and hard-codes the
host): `{razorpay_url}/v1`, HTTP Basic `key_id:key_secret`, JSON.

- Order: `POST /v1/orders {amount, currency, receipt = reference, notes}`. Razorpay has no
  idempotency key for orders, so a create first asks `GET /v1/orders?receipt=<reference>` and
  returns the order already made for this reference (a retry after a lost answer does not open
  a second order; two creates for one reference at the same instant still could: callers must
  not race one reference). The app pays with Razorpay Checkout:
  `checkout = {"order_id", "key_id"}`.
- Status: `GET /v1/orders/{id}/payments`; a `captured` (or since `refunded`) payment ->
  succeeded; otherwise an `authorized` / `created` one -> pending (auto-capture follows); only
  `failed` attempts -> failed; none yet -> pending.
- Refund: `POST /v1/payments/{payment_id}/refund {amount, speed: normal}` with
  `X-Refund-Idempotency = reference` (Razorpay: >= 10 characters of [A-Za-z0-9_-]; the same key
  with another body is a 400). Without a payment id the order's captured payment is looked up.
  `processed` -> succeeded, `failed` -> failed, `pending` -> pending.
- Errors (through providers/http.py, shared with PhonePe and PayPal): transport failures,
  timeouts, 409 (a refund with that key still in progress), 429 and 5xx -> ProviderError; 401 /
  403 -> ProviderRejected(field="credentials"); other 4xx -> ProviderRejected naming Razorpay's
  `error.field` when it is one of ours.
- Webhooks: `X-Razorpay-Signature` = hex HMAC-SHA256 of the raw body under the clinic's webhook
  secret (not the key secret); the event id is `X-Razorpay-Event-Id`. Razorpay signs no
  timestamp, so a replay cannot be told from a retry: dedupe by event id stands in for a
  staleness check.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Any, ClassVar

from domain.billing.providers import http, wire
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

#: Razorpay's `error.field` values that name an input of ours.
OUR_FIELDS = {"amount": "amount", "currency": "currency", "receipt": "reference"}
#: The payment events billing applies, and the state each says the order's payment reached
#: (authorized: auto-capture follows, nothing to apply yet but the payment id).
PAYMENT_EVENTS: dict[str, State] = {"payment.authorized": "pending", "payment.captured": "succeeded",
                                    "order.paid": "succeeded", "payment.failed": "failed"}
#: Razorpay's answer to a refund idempotency key reused with another body (a 400).
DIFFERENT_REQUEST = "Different request with the same idempotency key has already been processed."
_IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_-]{10,}")
_NOTE_MAX = 256

def _auth(creds: Credentials) -> tuple[str, str]:
    key_id, secret = creds.get("key_id", ""), creds.get("key_secret", "")
    if not key_id or not secret:
        raise ProviderRejected("razorpay: no key_id / key_secret stored for this clinic",
                               field="credentials")
    return key_id, secret


async def _call(what: str, creds: Credentials, method: str, path: str, *,
                json_body: dict[str, Any] | None = None, params: dict[str, str] | None = None,
                headers: dict[str, str] | None = None) -> dict[str, Any]:
    """One API exchange (providers/http.py); a 2xx JSON object back, or our errors. Messages
    carry the status and Razorpay's error code, never its description (it can quote our input)
    nor a key."""
    url = app_settings().razorpay_url.rstrip("/") + path
    answer = await http.request(f"razorpay: {what}", method, url, auth=_auth(creds),
                                json=json_body, params=params,
                                headers={"Accept": "application/json", **(headers or {})})
    if 200 <= answer.status_code < 300:
        return http.json_object(f"razorpay: {what}", answer)
    try:
        data = answer.json()
    except ValueError:
        data = None
    err = data.get("error") if isinstance(data, dict) else None
    err = err if isinstance(err, dict) else {}
    code = str(err.get("code") or "")
    if answer.status_code == 409:  # a refund with this idempotency key is still in progress
        raise ProviderError(f"razorpay: {what}: 409 {code}", retry_after=http.retry_after(answer, 5))
    field = err.get("field")
    ours = OUR_FIELDS.get(field) if isinstance(field, str) else None
    if err.get("description") == DIFFERENT_REQUEST:
        code, ours = "idempotency key reused with another request", "reference"
    raise http.failure(f"razorpay: {what}", answer, code, ours)




def _currency(value: object) -> str | None:
    return value.upper() if isinstance(value, str) and value else None


def _refund_state(status: object) -> State:
    if status == "processed":
        return "succeeded"
    if status == "failed":
        return "failed"
    return "pending"


def _payments(collection: dict[str, Any]) -> list[dict[str, Any]]:
    items = collection.get("items")
    return [p for p in items if isinstance(p, dict)] if isinstance(items, list) else []


def _order_state(payments: list[dict[str, Any]]) -> tuple[State, dict[str, Any] | None]:
    """The order's state from its payment attempts, and the attempt that decides it."""
    for p in payments:
        if p.get("status") in ("captured", "refunded") or p.get("captured") is True:
            return "succeeded", p
    for p in payments:
        if p.get("status") in ("authorized", "created"):
            return "pending", p
    if payments:
        return "failed", payments[0]
    return "pending", None


def _failure(payment: Mapping[str, Any]) -> str:
    return str(payment.get("error_reason") or payment.get("error_code") or "payment_failed")


class Razorpay:
    name: ClassVar[str] = "razorpay"
    required_fields: ClassVar[tuple[str, ...]] = ("key_id", "key_secret", "webhook_secret")

    async def create_order(self, creds: Credentials, *, reference: str, amount: int,
                           currency: str, description: str, return_url: str) -> Order:
        existing = await _call("find order", creds, "GET", "/v1/orders",
                               params={"receipt": reference, "count": "1"})
        found = [o for o in _payments(existing) if o.get("receipt") == reference]
        if found:
            order = found[0]
        else:
            order = await _call("create order", creds, "POST", "/v1/orders", json_body={
                "amount": amount, "currency": currency.upper(), "receipt": reference,
                "notes": {"reference": reference, "description": description[:_NOTE_MAX]}})
        order_id = wire.text(order.get("id"))
        if order_id is None:
            raise ProviderError("razorpay: order without id", status=502)
        return Order(order_id=order_id, checkout={"order_id": order_id, "key_id": creds["key_id"]})

    async def order_status(self, creds: Credentials, order_id: str) -> OrderStatus:
        collection = await _call("order payments", creds, "GET", f"/v1/orders/{_path(order_id)}/payments")
        state, payment = _order_state(_payments(collection))
        if payment is None:
            return OrderStatus(state=state)
        return OrderStatus(state=state, payment_id=wire.text(payment.get("id")),
                           amount=wire.whole(payment.get("amount")),
                           currency=_currency(payment.get("currency")),
                           failure_reason=_failure(payment) if state == "failed" else None)

    async def refund(self, creds: Credentials, *, order_id: str, payment_id: str | None,
                     amount: int, currency: str, reference: str) -> RefundResult:
        if not _IDEMPOTENCY_KEY.fullmatch(reference):
            raise ProviderRejected("razorpay: a refund reference must be >= 10 characters of "
                                   "letters, digits, '-' or '_'", field="reference")
        if payment_id is None:
            collection = await _call("order payments", creds, "GET",
                                     f"/v1/orders/{_path(order_id)}/payments")
            state, payment = _order_state(_payments(collection))
            payment_id = wire.text(payment.get("id")) if payment and state == "succeeded" else None
            if payment_id is None:
                raise ProviderRejected("razorpay: the order has no captured payment to refund",
                                       field="order_id")
        refund = await _call("create refund", creds, "POST",
                             f"/v1/payments/{_path(payment_id, 'payment_id')}/refund",
                             json_body={"amount": amount, "speed": "normal",
                                        "notes": {"reference": reference}},
                             headers={"X-Refund-Idempotency": reference})
        refund_id = wire.text(refund.get("id"))
        if refund_id is None:
            raise ProviderError("razorpay: refund without id", status=502)
        return RefundResult(refund_id=refund_id, state=_refund_state(refund.get("status")))

    async def verify_webhook(self, creds: Credentials, body: bytes,
                             headers: Mapping[str, str]) -> None:
        secret = creds.get("webhook_secret", "")
        if not secret:
            raise Refused(401, "not_configured",
                          "Razorpay webhooks are not configured for this clinic")
        given = headers.get("x-razorpay-signature", "").strip().lower()
        if not given:
            raise forged("X-Razorpay-Signature header missing")
        expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode(), given.encode()):
            raise forged()
        _event(body)  # signed, but must still be an event we can read

    def webhook_event_id(self, body: bytes, headers: Mapping[str, str]) -> str:
        event_id = headers.get("x-razorpay-event-id", "").strip()
        if not event_id:
            raise malformed("X-Razorpay-Event-Id header missing")
        return event_id

    def webhook_facts(self, body: bytes, headers: Mapping[str, str]) -> list[WebhookFact]:
        event = _event(body)
        kind = str(event.get("event") or "")
        payload = event.get("payload")
        payload = payload if isinstance(payload, dict) else {}
        payment = _entity(payload, "payment")
        order = _entity(payload, "order")
        refund = _entity(payload, "refund")
        if kind.startswith("refund.") and refund is not None:
            state: State = "failed" if kind == "refund.failed" else (
                "succeeded" if kind == "refund.processed" else _refund_state(refund.get("status")))
            return [WebhookFact(
                kind="refund", event_type=kind,
                order_id=wire.text(payment.get("order_id")) if payment else None,
                payment_id=wire.text(refund.get("payment_id")), refund_id=wire.text(refund.get("id")),
                state=state, amount=wire.whole(refund.get("amount")),
                currency=_currency(refund.get("currency")),
                failure_reason="refund_failed" if state == "failed" else None)]
        if kind in PAYMENT_EVENTS and (payment is not None or order is not None):
            state = PAYMENT_EVENTS[kind]
            source = payment or {}
            order_id = wire.text(source.get("order_id")) or (wire.text(order.get("id")) if order else None)
            amount = wire.whole(source.get("amount"))
            if amount is None and order is not None:
                amount = wire.whole(order.get("amount_paid"))
            return [WebhookFact(
                kind="payment", event_type=kind, order_id=order_id,
                payment_id=wire.text(source.get("id")), state=state, amount=amount,
                currency=_currency(source.get("currency") or (order or {}).get("currency")),
                failure_reason=_failure(source) if state == "failed" else None)]
        return [WebhookFact(kind="other", event_type=kind)]


def _path(value: str, field: str = "order_id") -> str:
    """An id as one path segment (ids are `order_...`, `pay_...`; anything else is refused)."""
    if not re.fullmatch(r"[A-Za-z0-9_]+", value):
        raise ProviderRejected("razorpay: not a Razorpay id", field=field)
    return value


def _entity(payload: dict[str, Any], name: str) -> dict[str, Any] | None:
    wrapper = payload.get(name)
    entity = wrapper.get("entity") if isinstance(wrapper, dict) else None
    return entity if isinstance(entity, dict) else None


def _event(body: bytes) -> dict[str, Any]:
    return wire.webhook_object(body, "Razorpay", type_field="event")


ADAPTER = Razorpay()
