"""Local servers that speak each payment provider's API and sign webhooks as the provider does
(PROVIDERS.md, Payments). Every fake offers the `ProviderFake` shape, so the end-to-end tests run
once per provider with the same steps; nothing of ours is patched."""

from __future__ import annotations

from typing import Literal, Protocol


class ProviderFake(Protocol):
    #: The provider's name in carewire (`settings.billing.provider`, webhook path).
    name: str
    url: str

    def env(self) -> dict[str, str]:
        """CAREWIRE_* settings pointing carewire at this fake (its URL(s))."""
        ...

    def credentials(self) -> dict[str, str]:
        """What a clinic stores for this provider (PUT .../billing/credentials/{provider})."""
        ...

    def pay(self, order_id: str) -> None:
        """The patient completes the payment of this order at the provider (approves and, where
        the provider needs it, the fake captures); its status API then answers paid."""
        ...

    def decline(self, order_id: str) -> None:
        """The patient's payment of this order fails at the provider."""
        ...

    def webhook(self, kind: Literal["payment.succeeded", "payment.failed", "refund.succeeded",
                                    "refund.failed"],
                order_id: str, *, refund_id: str | None = None,
                event_id: str | None = None) -> tuple[bytes, dict[str, str]]:
        """A delivery as the provider posts it (raw body, headers incl. signature) for what the
        fake holds about this order (amount, currency, ids). `event_id` fixes the provider's event
        id (to replay one event); a fresh one otherwise."""
        ...

    def fail_next(self, n: int, status: int = 500) -> None:
        """The next `n` API requests answer `status` (no effect)."""
        ...

    def hang_next(self, n: int) -> None:
        """The next `n` API requests are never answered (carewire's timeout fires)."""
        ...

    def start(self) -> ProviderFake: ...

    def stop(self) -> None: ...
