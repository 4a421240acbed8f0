"""PayPal Orders v2 and Payments v2 refunds, over httpx.

- Auth: `POST {paypal_url}/v1/oauth2/token` with Basic client_id:client_secret and
  grant_type=client_credentials -> {access_token, expires_in}; cached per credentials until a
  minute before expiry, one fresh grant on a 401.
- Order: `POST /v2/checkout/orders` (intent CAPTURE, one purchase unit whose reference_id and
  custom_id are our payment id, amount as a decimal string) with `PayPal-Request-Id` = our
  reference, so a retried create returns the same order. checkout = {approve_url (the
  payer-action / approve link), order_id}.
- Status: `GET /v2/checkout/orders/{id}`. An APPROVED order is captured here
  (`POST .../capture`), since the buyer's approval moves no money; the answer is the capture's
  status, not the order's (PROVIDERS.md). A capture declined (422 INSTRUMENT_DECLINED) is
  `failed`; the buyer may still approve another way, and a later success wins (lifecycle:
  failed -> succeeded). The capture carries no request id: PayPal refuses a second capture
  itself (ORDER_ALREADY_CAPTURED, read back as the completed order), and a replayed decline
  would hide the later approval.
- Refund: `POST /v2/payments/captures/{capture id}/refund` with `PayPal-Request-Id` = our refund
  id.
- Webhooks: PAYPAL-CERT-URL must be https on paypal.com or a subdomain, port 443, no userinfo,
  before anything else happens: a URL elsewhere is refused without any request leaving. Then
  `POST /v1/notifications/verify-webhook-signature` with the clinic's webhook_id and the raw
  body spliced in byte for byte as `webhook_event` (PayPal checks a CRC32 of the event as
  sent: re-encoding it would change the bytes). The event id is the body's `id` (WH-...).
  PayPal signs no freshness we can check offline; a replay dedupes on the event id.
- CHECKOUT.ORDER.APPROVED is a `pending` payment fact: whoever applies it should call
  `order_status` to capture. PAYMENT.CAPTURE.REVERSED (a chargeback) is `other`: money taken
  back by PayPal is not one of our refunds.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from decimal import InvalidOperation
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import httpx

from domain import money
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

NAME = "paypal"
#: PayPal-Request-Id is at most 108 characters.
MAX_REQUEST_ID = 108
AUTH_ALGO = "SHA256withRSA"
CAPTURE_STATES: dict[str, State] = {"COMPLETED": "succeeded", "PARTIALLY_REFUNDED": "succeeded",
                                    "REFUNDED": "succeeded", "PENDING": "pending",
                                    "DECLINED": "failed", "FAILED": "failed"}
REFUND_STATES: dict[str, State] = {"COMPLETED": "succeeded", "PENDING": "pending",
                                   "FAILED": "failed", "CANCELLED": "failed"}
PENDING_ORDER = ("CREATED", "SAVED", "PAYER_ACTION_REQUIRED")
CAPTURE_EVENTS = ("PAYMENT.CAPTURE.COMPLETED", "PAYMENT.CAPTURE.PENDING",
                  "PAYMENT.CAPTURE.DECLINED", "PAYMENT.CAPTURE.DENIED")
WEBHOOK_HEADERS = ("paypal-transmission-id", "paypal-transmission-time",
                   "paypal-transmission-sig", "paypal-cert-url", "paypal-auth-algo")
_PRINTABLE = re.compile(r"[\x21-\x7e]+")

_tokens = http.Tokens()


def cert_url_allowed(url: str) -> bool:
    """https on paypal.com or a subdomain of it, default port, no userinfo: the only place a
    signing certificate may come from (checked before any request is made)."""
    if not _PRINTABLE.fullmatch(url):
        return False
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    host = parts.hostname or ""
    return (parts.scheme == "https" and port in (None, 443) and parts.username is None
            and parts.password is None and (host == "paypal.com" or host.endswith(".paypal.com")))


def _creds(creds: Credentials, *names: str) -> list[str]:
    values = [creds.get(n) or "" for n in names]
    if not all(values):
        raise ProviderRejected(f"{NAME}: credentials need {', '.join(names)}", field="credentials")
    return values


def _base() -> str:
    return app_settings().paypal_url.rstrip("/")


async def _grant(client_id: str, client_secret: str) -> tuple[str, float]:
    response = await http.request(NAME, "POST", f"{_base()}/v1/oauth2/token",
                                  auth=(client_id, client_secret),
                                  data={"grant_type": "client_credentials"})
    return http.granted(NAME, response, expiry=_expires_at)


def _expires_at(body: dict[str, Any]) -> float | None:
    """PayPal says how long the token lives (`expires_in`, seconds)."""
    lifetime = body.get("expires_in")
    if not isinstance(lifetime, int | float) or isinstance(lifetime, bool):
        return None
    return time.time() + float(lifetime)


async def _call(creds: Credentials, method: str, path: str, *, payload: Any = None,
                content: bytes | None = None, request_id: str | None = None) -> httpx.Response:
    """An authorised call (one fresh-token retry on 401); the caller reads the answer."""
    client_id, client_secret = _creds(creds, "client_id", "client_secret")
    key = http.Tokens.key(_base(), client_id, secret=client_secret)
    headers = {"Content-Type": "application/json", "Prefer": "return=representation"}
    if request_id is not None:
        headers["PayPal-Request-Id"] = request_id
    if payload is not None:
        content = json.dumps(payload).encode()

    async def grant() -> tuple[str, float]:
        return await _grant(client_id, client_secret)

    token = await _tokens.get(key, grant)
    url = f"{_base()}{path}"
    response = await http.request(NAME, method, url, content=content,
                                  headers={**headers, "Authorization": f"Bearer {token}"})
    if response.status_code == 401:
        token = await _tokens.get(key, grant, stale=token)
        response = await http.request(NAME, method, url, content=content,
                                      headers={**headers, "Authorization": f"Bearer {token}"})
    return response


def _issue(response: httpx.Response) -> str:
    """PayPal's error name or first issue (never its message: it can quote our input)."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    details = body.get("details")
    if isinstance(details, list) and details and isinstance(details[0], dict) \
            and details[0].get("issue"):
        return str(details[0]["issue"])[:80]
    return str(body.get("name") or body.get("error") or "")[:80]


def _ok(response: httpx.Response, field: str | None = None) -> dict[str, Any]:
    if 200 <= response.status_code < 300:
        return http.json_object(NAME, response)
    raise http.failure(NAME, response, _issue(response), field=field)


def _request_id(value: str, field: str) -> str:
    if not value or len(value) > MAX_REQUEST_ID or not _PRINTABLE.fullmatch(value):
        raise ProviderRejected(f"{NAME}: {field} must be 1-{MAX_REQUEST_ID} printable characters",
                               field=field)
    return value


def _money(amount: int, currency: str) -> dict[str, str]:
    return {"currency_code": currency, "value": format(money.to_major(amount, currency), "f")}


def _minor(value: object) -> tuple[int | None, str | None]:
    """A PayPal money object {currency_code, value} as (minor units, currency)."""
    if not isinstance(value, dict):
        return None, None
    currency, amount = value.get("currency_code"), value.get("value")
    if not isinstance(currency, str) or not isinstance(amount, str):
        return None, None
    try:
        return money.from_major(amount, currency), currency
    except (ValueError, InvalidOperation, KeyError):
        return None, currency


def _segment(value: str) -> str:
    return quote(value, safe="")


def _capture_of(order: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The latest capture of the order's purchase unit."""
    units = order.get("purchase_units")
    if not isinstance(units, list) or not units or not isinstance(units[0], dict):
        return None
    payments = units[0].get("payments")
    captures = payments.get("captures") if isinstance(payments, dict) else None
    if isinstance(captures, list) and captures and isinstance(captures[-1], dict):
        capture: Mapping[str, Any] = captures[-1]
        return capture
    return None


def _status_of_capture(capture: Mapping[str, Any] | None) -> OrderStatus:
    if capture is None:
        raise ProviderError(f"{NAME}: a completed order without a capture", status=502)
    state = CAPTURE_STATES.get(str(capture.get("status")))
    if state is None:
        raise ProviderError(f"{NAME}: capture in an unknown status", status=502)
    amount, currency = _minor(capture.get("amount"))
    details = capture.get("status_details")
    reason = details.get("reason") if isinstance(details, dict) else None
    return OrderStatus(state=state, payment_id=wire.text(capture.get("id")), amount=amount,
                       currency=currency,
                       failure_reason=str(reason)[:200] if reason and state != "succeeded"
                       else None)


class PayPal:
    name: ClassVar[str] = NAME
    required_fields: ClassVar[tuple[str, ...]] = ("client_id", "client_secret", "webhook_id")

    async def create_order(self, creds: Credentials, *, reference: str, amount: int,
                           currency: str, description: str, return_url: str) -> Order:
        _request_id(reference, "reference")
        response = await _call(creds, "POST", "/v2/checkout/orders", request_id=reference,
                               payload={
            "intent": "CAPTURE",
            "purchase_units": [{"reference_id": reference, "custom_id": reference[:127],
                                "description": description[:127],
                                "amount": _money(amount, currency)}],
            "payment_source": {"paypal": {"experience_context": {
                "return_url": return_url, "cancel_url": return_url, "user_action": "PAY_NOW",
                "shipping_preference": "NO_SHIPPING"}}},
        })
        issue = _issue(response) if response.status_code in (400, 422) else ""
        field = "currency" if "CURRENCY" in issue else "amount" if "AMOUNT" in issue else None
        body = _ok(response, field)
        order_id = body.get("id")
        found = body.get("links")
        links: list[Any] = found if isinstance(found, list) else []
        approve = next((link.get("href") for rel in ("payer-action", "approve") for link in links
                        if isinstance(link, dict) and link.get("rel") == rel), None)
        if not isinstance(order_id, str) or not order_id or not isinstance(approve, str):
            raise ProviderError(f"{NAME}: order answered without an id and approve link",
                                status=502)
        return Order(order_id=order_id, checkout={"approve_url": approve, "order_id": order_id})

    async def order_status(self, creds: Credentials, order_id: str) -> OrderStatus:
        path = f"/v2/checkout/orders/{_segment(order_id)}"
        order = _ok(await _call(creds, "GET", path), "order_id")
        status = order.get("status")
        if status in PENDING_ORDER:
            return OrderStatus(state="pending")
        if status == "VOIDED":
            return OrderStatus(state="failed", failure_reason="VOIDED")
        if status == "APPROVED":
            # no PayPal-Request-Id: PayPal itself never captures an order twice
            # (ORDER_ALREADY_CAPTURED), and a replayed decline would hide a later approval
            response = await _call(creds, "POST", f"{path}/capture", content=b"{}")
            issue = _issue(response) if response.status_code == 422 else ""
            if issue == "INSTRUMENT_DECLINED":
                return OrderStatus(state="failed", failure_reason=issue)
            if issue == "ORDER_ALREADY_CAPTURED":  # captured meanwhile (a concurrent check)
                order = _ok(await _call(creds, "GET", path), "order_id")
            else:
                order = _ok(response, "order_id")
            status = order.get("status")
        if status == "COMPLETED":
            return _status_of_capture(_capture_of(order))
        raise ProviderError(f"{NAME}: order in an unexpected status", status=502)

    async def refund(self, creds: Credentials, *, order_id: str, payment_id: str | None,
                     amount: int, currency: str, reference: str) -> RefundResult:
        if not payment_id:
            raise ProviderRejected(f"{NAME}: a refund needs the capture id", field="payment_id")
        _request_id(reference, "reference")
        response = await _call(creds, "POST", f"/v2/payments/captures/{_segment(payment_id)}/refund",
                               request_id=reference,
                               payload={"amount": _money(amount, currency),
                                        "custom_id": reference[:127]})
        body = _ok(response, "amount" if response.status_code == 422 else None)
        refund_id, state = body.get("id"), REFUND_STATES.get(str(body.get("status")))
        if not isinstance(refund_id, str) or not refund_id or state is None:
            raise ProviderError(f"{NAME}: refund answered without id and status", status=502)
        return RefundResult(refund_id=refund_id, state=state)

    async def verify_webhook(self, creds: Credentials, body: bytes,
                             headers: Mapping[str, str]) -> None:
        values = {name: (headers.get(name) or "").strip() for name in WEBHOOK_HEADERS}
        if not all(values.values()):
            raise forged("PayPal transmission headers missing")
        if not cert_url_allowed(values["paypal-cert-url"]):
            raise Refused(401, "bad_cert_url", "PAYPAL-CERT-URL is not https on paypal.com")
        webhook_id = creds.get("webhook_id")
        if not webhook_id or not creds.get("client_id") or not creds.get("client_secret"):
            raise Refused(401, "not_configured", "PayPal webhooks are not configured here")
        _parse(body)
        prefix = json.dumps({
            "auth_algo": values["paypal-auth-algo"], "cert_url": values["paypal-cert-url"],
            "transmission_id": values["paypal-transmission-id"],
            "transmission_sig": values["paypal-transmission-sig"],
            "transmission_time": values["paypal-transmission-time"], "webhook_id": webhook_id,
        })
        content = prefix[:-1].encode() + b', "webhook_event": ' + body + b"}"
        try:
            response = await _call(creds, "POST", "/v1/notifications/verify-webhook-signature",
                                   content=content)
        except ProviderError:
            raise Refused(503, "unverifiable", "PayPal's verification API did not answer") from None
        except ProviderRejected:
            raise Refused(503, "unverifiable", "PayPal refused our credentials") from None
        if response.status_code == 429 or response.status_code >= 500:
            raise Refused(503, "unverifiable", "PayPal's verification API is unavailable")
        try:
            verdict = response.json() if response.status_code == 200 else None
        except ValueError:
            verdict = None
        if not isinstance(verdict, dict) or verdict.get("verification_status") != "SUCCESS":
            raise forged()

    def webhook_event_id(self, body: bytes, headers: Mapping[str, str]) -> str:
        event_id = _parse(body).get("id")
        if not isinstance(event_id, str) or not event_id:
            raise malformed("the event has no id")
        return event_id

    def webhook_facts(self, body: bytes, headers: Mapping[str, str]) -> list[WebhookFact]:
        event = _parse(body)
        event_type = str(event.get("event_type") or "")
        found = event.get("resource")
        resource: dict[str, Any] = found if isinstance(found, dict) else {}
        amount, currency = _minor(resource.get("amount"))
        if event_type in CAPTURE_EVENTS:
            extra = resource.get("supplementary_data")
            related = extra.get("related_ids") if isinstance(extra, dict) else None
            status = _status_of_capture(resource) if resource.get("status") in CAPTURE_STATES \
                else None
            return [WebhookFact(
                kind="payment", event_type=event_type,
                order_id=wire.text(related.get("order_id")) if isinstance(related, dict) else None,
                payment_id=wire.text(resource.get("id")), state=status.state if status else None,
                amount=amount, currency=currency,
                failure_reason=status.failure_reason if status else None)]
        if event_type == "CHECKOUT.ORDER.APPROVED":
            return [WebhookFact(kind="payment", event_type=event_type,
                                order_id=wire.text(resource.get("id")), state="pending")]
        if event_type == "PAYMENT.CAPTURE.REFUNDED" or (
                event.get("resource_type") == "refund" and event_type.startswith("PAYMENT.REFUND.")):
            return [WebhookFact(
                kind="refund", event_type=event_type, payment_id=_up_capture(resource),
                refund_id=wire.text(resource.get("id")),
                state=REFUND_STATES.get(str(resource.get("status"))), amount=amount,
                currency=currency)]
        return [WebhookFact(kind="other", event_type=event_type)]


def _up_capture(refund: Mapping[str, Any]) -> str | None:
    """The capture a refund belongs to, from its `up` link (.../captures/{id})."""
    for link in refund.get("links") or []:
        if isinstance(link, dict) and link.get("rel") == "up":
            path = urlsplit(str(link.get("href", ""))).path.rstrip("/")
            head, _, capture_id = path.rpartition("/")
            if head.endswith("/captures") and capture_id:
                return capture_id
    return None



def _parse(body: bytes) -> dict[str, Any]:
    return wire.webhook_object(body, "PayPal", type_field="event_type")


ADAPTER = PayPal()
