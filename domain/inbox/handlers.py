"""Which function applies each provider's events: one table, so a provider's webhooks are
found in one guess, and the inbox imports no context until an event of it is processed.
A handler runs inside the processing transaction (its writes commit with `processed_at`)
and returns `Handled`; raising makes the job retry later."""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable

from domain.inbox.models import Event, Handled

Handler = Callable[[Event], Awaitable[Handled]]

#: provider (as stored in webhook_inbox.provider) -> "module:function"
HANDLERS: dict[str, str] = {
    "ses": "domain.communication.webhooks:handle_ses",
    "zeptomail": "domain.communication.webhooks:handle_zeptomail",
    "whatsapp": "domain.communication.webhooks:handle_whatsapp",
    # --- billing: payments ---
    "stripe": "domain.billing.webhooks:handle",
    "razorpay": "domain.billing.webhooks:handle",
    "phonepe": "domain.billing.webhooks:handle",
    "paypal": "domain.billing.webhooks:handle",
    # --- video ---
    "openvidu": "domain.video.webhooks:handle",
}


def handler_for(provider: str) -> Handler:
    module, _, name = HANDLERS[provider].partition(":")
    fn: Handler = getattr(importlib.import_module(module), name)
    return fn
