"""What every payment provider adapter offers billing, over the provider's real API.

An adapter is stateless: each call gets the clinic's decrypted credentials (tenancy's
`get_credentials(clinic_id, provider)`, the one way a secret is kept) and reaches the provider
at its URL from settings (tests: a loopback server speaking the same protocol). Billing never
sees a provider's wire format: orders, statuses, refunds and webhook facts come back in these
shapes. Idempotency: `reference` is our payment (or refund) id, sent as the provider's
idempotency key / merchant order id / receipt, so a retried call never charges twice."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal, Protocol

import msgspec

Credentials = Mapping[str, str]
State = Literal["pending", "succeeded", "failed"]


class ProviderError(Exception):
    """The provider could not be reached or answered 5xx / 429 / garbage: nothing happened as
    far as we know. The caller answers 503 (502 for a garbled answer) with `retry_after`."""

    def __init__(self, message: str, *, status: int = 503, retry_after: int = 30) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class ProviderRejected(Exception):
    """The provider refused the request itself (4xx: bad credentials, amount below its minimum,
    a refund above what it holds). `field` names our input at fault when one is."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class Order(msgspec.Struct, frozen=True, kw_only=True):
    """A provider-side order / intent for one payment."""

    order_id: str
    #: What the patient's app needs: {"client_secret"} (Stripe), {"order_id", "key_id"}
    #: (Razorpay), {"redirect_url"} (PhonePe), {"approve_url", "order_id"} (PayPal).
    checkout: dict[str, str]


class OrderStatus(msgspec.Struct, frozen=True, kw_only=True):
    """What the provider says about an order now (reconciliation, PayPal's capture)."""

    state: State
    payment_id: str | None = None
    amount: int | None = None
    currency: str | None = None
    failure_reason: str | None = None


class RefundResult(msgspec.Struct, frozen=True, kw_only=True):
    refund_id: str
    state: State


class WebhookFact(msgspec.Struct, frozen=True, kw_only=True):
    """One thing a verified webhook says, in our terms. `kind` payment: the order's payment
    reached `state`; refund: refund `refund_id` of that payment reached `state`; other: nothing
    billing acts on (stored and marked processed all the same)."""

    kind: Literal["payment", "refund", "other"]
    #: The provider's event type, verbatim (`payment_intent.succeeded`, `payment.captured`).
    event_type: str
    order_id: str | None = None
    payment_id: str | None = None
    refund_id: str | None = None
    state: State | None = None
    amount: int | None = None
    currency: str | None = None
    failure_reason: str | None = None


class PaymentProvider(Protocol):
    name: ClassVar[str]
    #: Credential fields a clinic must store for this provider (checked at PUT).
    required_fields: ClassVar[tuple[str, ...]]

    async def create_order(self, creds: Credentials, *, reference: str, amount: int,
                           currency: str, description: str, return_url: str) -> Order:
        """Open an order / intent for `amount` minor units. Raises ProviderError (transient)
        or ProviderRejected."""
        ...

    async def order_status(self, creds: Credentials, order_id: str) -> OrderStatus:
        """Ask the provider about an order (reconciliation of missed webhooks). PayPal captures
        an approved order here."""
        ...

    async def refund(self, creds: Credentials, *, order_id: str, payment_id: str | None,
                     amount: int, currency: str, reference: str) -> RefundResult:
        """Refund `amount` minor units of a succeeded payment; `reference` (our refund id) is
        the idempotency key."""
        ...

    async def verify_webhook(self, creds: Credentials, body: bytes,
                             headers: Mapping[str, str]) -> None:
        """Raise `domain.inbox.signatures.Refused` unless the raw body is the provider's:
        401 forged / tampered / stale, 400 malformed, 503 when the check itself could not be
        made (PayPal's verification API down). Headers are lower-cased."""
        ...

    def webhook_event_id(self, body: bytes, headers: Mapping[str, str]) -> str:
        """The provider's id of this delivery's event (dedupe key in the inbox); call after
        `verify_webhook`. Raises Refused 400 when missing."""
        ...

    def webhook_facts(self, body: bytes, headers: Mapping[str, str]) -> list[WebhookFact]:
        """What a stored, verified event says (run by the inbox job, not at intake)."""
        ...
