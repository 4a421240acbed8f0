"""PhonePe Payment Gateway v2 (standard checkout), over httpx.

- Auth: `POST {phonepe_oauth_url}/v1/oauth/token` (form client_id, client_version,
  client_secret, grant_type=client_credentials) -> {access_token, expires_at (epoch s)}; every
  call carries `Authorization: O-Bearer <token>`. Tokens are cached per credentials until a
  minute before expiry; a 401 drops the token and retries once with a fresh grant.
- Order: `POST {phonepe_url}/checkout/v2/pay` with merchantOrderId = our payment id (so the
  order id we keep *is* our reference: a retried create names the same order) ->
  {orderId, state, redirectUrl}. PhonePe charges INR only, at least 100 paise.
- Status: `GET /checkout/v2/order/{merchantOrderId}/status` -> state PENDING | COMPLETED |
  FAILED, paymentDetails[] (the last attempt's transactionId is the payment id).
- Refund: `POST /payments/v2/refund {merchantRefundId, originalMerchantOrderId, amount}` ->
  {refundId, state PENDING | CONFIRMED | COMPLETED | FAILED}; refundId is the refund's id in
  webhooks too.
- Webhooks: `Authorization: <hex SHA256("username:password")>` with the clinic's dashboard
  credentials. The header does not cover the body (PhonePe's scheme, not ours): a tampered
  body with a genuine header passes, which is why payment facts are also reconciled through
  the status API. PhonePe sends no event id; ours is
  `{merchantOrderId | merchantRefundId}:{event}:{state}`, so a redelivery dedupes and a new
  state does not.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote

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

NAME = "phonepe"
#: PhonePe's minimum order amount, in paise.
MIN_AMOUNT = 100
#: merchantOrderId / merchantRefundId limit.
MAX_ID = 63
#: How long the checkout page stays payable (seconds; PhonePe's default is 20 minutes).
EXPIRE_AFTER = 1200
ORDER_STATES: dict[str, State] = {"PENDING": "pending", "COMPLETED": "succeeded",
                                  "FAILED": "failed"}
REFUND_STATES: dict[str, State] = {"PENDING": "pending", "CONFIRMED": "pending",
                                   "ACCEPTED": "pending", "COMPLETED": "succeeded",
                                   "FAILED": "failed"}
PAYMENT_EVENTS = ("checkout.order.completed", "checkout.order.failed")
REFUND_EVENTS = ("pg.refund.accepted", "pg.refund.completed", "pg.refund.failed")

_tokens = http.Tokens()


def _creds(creds: Credentials, *names: str) -> list[str]:
    values = [creds.get(n) or "" for n in names]
    if not all(values):
        raise ProviderRejected(f"{NAME}: credentials need {', '.join(names)}", field="credentials")
    return values


async def _grant(creds: Credentials) -> tuple[str, float]:
    client_id, client_secret, client_version = _creds(creds, "client_id", "client_secret",
                                                      "client_version")
    url = f"{app_settings().phonepe_oauth_url.rstrip('/')}/v1/oauth/token"
    response = await http.request(NAME, "POST", url, data={
        "client_id": client_id, "client_version": client_version,
        "client_secret": client_secret, "grant_type": "client_credentials"})
    return http.granted(NAME, response, expiry=lambda body: body.get("expires_at"))


async def _call(creds: Credentials, method: str, path: str,
                payload: dict[str, Any] | None = None) -> dict[str, Any]:
    """An authorised API call's JSON answer, with one fresh-token retry on 401."""
    client_id, client_secret, client_version = _creds(creds, "client_id", "client_secret",
                                                      "client_version")
    oauth = app_settings().phonepe_oauth_url
    key = http.Tokens.key(oauth, client_id, client_version, secret=client_secret)
    url = f"{app_settings().phonepe_url.rstrip('/')}{path}"
    token = await _tokens.get(key, lambda: _grant(creds))
    response = await http.request(NAME, method, url, json=payload,
                                  headers={"Authorization": f"O-Bearer {token}"})
    if response.status_code == 401:
        token = await _tokens.get(key, lambda: _grant(creds), stale=token)
        response = await http.request(NAME, method, url, json=payload,
                                      headers={"Authorization": f"O-Bearer {token}"})
    if 200 <= response.status_code < 300:
        return http.json_object(NAME, response)
    try:
        error = response.json()
    except ValueError:
        error = None
    code = str(error.get("code", ""))[:60] if isinstance(error, dict) else ""
    raise http.failure(NAME, response, code)


def _check_id(value: str, field: str) -> None:
    if not value or len(value) > MAX_ID or not all(c.isalnum() or c in "-_" for c in value):
        raise ProviderRejected(f"{NAME}: {field} must be 1-{MAX_ID} letters, digits, - or _",
                               field=field)


def _amount(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _last_attempt(body: Mapping[str, Any]) -> Mapping[str, Any]:
    details = body.get("paymentDetails")
    if isinstance(details, list) and details and isinstance(details[-1], dict):
        last: Mapping[str, Any] = details[-1]
        return last
    return {}


class PhonePe:
    name: ClassVar[str] = NAME
    required_fields: ClassVar[tuple[str, ...]] = (
        "client_id", "client_secret", "client_version", "webhook_username", "webhook_password")

    async def create_order(self, creds: Credentials, *, reference: str, amount: int,
                           currency: str, description: str, return_url: str) -> Order:
        if currency != "INR":
            raise ProviderRejected(f"{NAME}: charges INR only, not {currency}", field="currency")
        if amount < MIN_AMOUNT:
            raise ProviderRejected(f"{NAME}: the minimum amount is {MIN_AMOUNT} paise",
                                   field="amount")
        _check_id(reference, "reference")
        body = await _call(creds, "POST", "/checkout/v2/pay", {
            "merchantOrderId": reference,
            "amount": amount,
            "expireAfter": EXPIRE_AFTER,
            "metaInfo": {"udf1": description[:256]},
            "paymentFlow": {"type": "PG_CHECKOUT", "message": description[:256],
                            "merchantUrls": {"redirectUrl": return_url}},
        })
        redirect = body.get("redirectUrl")
        if not isinstance(redirect, str) or not redirect:
            raise ProviderError(f"{NAME}: pay answered without a redirectUrl", status=502)
        return Order(order_id=reference, checkout={"redirect_url": redirect})

    async def order_status(self, creds: Credentials, order_id: str) -> OrderStatus:
        _check_id(order_id, "order_id")
        body = await _call(creds, "GET",
                                 f"/checkout/v2/order/{quote(order_id, safe='')}/status")
        state = ORDER_STATES.get(str(body.get("state")))
        if state is None:
            raise ProviderError(f"{NAME}: order status answered an unknown state", status=502)
        attempt = _last_attempt(body)
        reason = body.get("errorCode") or attempt.get("errorCode")
        payment_id = attempt.get("transactionId") or body.get("orderId")
        return OrderStatus(state=state, payment_id=str(payment_id) if payment_id else None,
                           amount=_amount(body.get("amount")), currency="INR",
                           failure_reason=str(reason)[:200] if state == "failed" and reason
                           else None)

    async def refund(self, creds: Credentials, *, order_id: str, payment_id: str | None,
                     amount: int, currency: str, reference: str) -> RefundResult:
        if currency != "INR":
            raise ProviderRejected(f"{NAME}: refunds INR only, not {currency}", field="currency")
        _check_id(reference, "reference")
        _check_id(order_id, "order_id")
        body = await _call(creds, "POST", "/payments/v2/refund", {
            "merchantRefundId": reference, "originalMerchantOrderId": order_id,
            "amount": amount})
        refund_id, state = body.get("refundId"), REFUND_STATES.get(str(body.get("state")))
        if not isinstance(refund_id, str) or not refund_id or state is None:
            raise ProviderError(f"{NAME}: refund answered without refundId and state", status=502)
        return RefundResult(refund_id=refund_id, state=state)

    async def verify_webhook(self, creds: Credentials, body: bytes,
                             headers: Mapping[str, str]) -> None:
        username, password = creds.get("webhook_username"), creds.get("webhook_password")
        if not username or not password:
            raise Refused(401, "not_configured", "PhonePe webhooks are not configured here")
        given = (headers.get("authorization") or "").strip().lower()
        if not given:
            raise forged("Authorization header missing")
        expected = hashlib.sha256(f"{username}:{password}".encode()).hexdigest()
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise forged("the Authorization header does not match the webhook credentials")
        _parse(body)

    def webhook_event_id(self, body: bytes, headers: Mapping[str, str]) -> str:
        event, payload = _parse(body)
        subject = payload.get("merchantOrderId") or payload.get("merchantRefundId")
        state = payload.get("state")
        if not isinstance(subject, str) or not subject or not isinstance(state, str):
            raise malformed("payload needs merchantOrderId or merchantRefundId, and state")
        return f"{subject}:{event}:{state}"

    def webhook_facts(self, body: bytes, headers: Mapping[str, str]) -> list[WebhookFact]:
        event, payload = _parse(body)
        amount = _amount(payload.get("amount"))
        if event in PAYMENT_EVENTS:
            state = ORDER_STATES.get(str(payload.get("state")))
            attempt = _last_attempt(payload)
            payment_id = attempt.get("transactionId") or payload.get("orderId")
            reason = payload.get("errorCode") or attempt.get("errorCode")
            return [WebhookFact(
                kind="payment", event_type=event, order_id=wire.text(payload.get("merchantOrderId")),
                payment_id=wire.text(payment_id), state=state, amount=amount, currency="INR",
                failure_reason=str(reason)[:200] if state == "failed" and reason else None)]
        if event in REFUND_EVENTS:
            return [WebhookFact(
                kind="refund", event_type=event,
                order_id=wire.text(payload.get("originalMerchantOrderId")),
                refund_id=wire.text(payload.get("refundId")),
                state=REFUND_STATES.get(str(payload.get("state"))), amount=amount,
                currency="INR")]
        return [WebhookFact(kind="other", event_type=event)]



def _parse(body: bytes) -> tuple[str, dict[str, Any]]:
    doc = wire.webhook_object(body, "PhonePe", type_field="event")
    if not isinstance(doc.get("payload"), dict):
        raise malformed("the webhook body needs a payload object")
    return doc["event"], doc["payload"]


ADAPTER = PhonePe()
