"""Payment provider adapters, one module each, behind `base.PaymentProvider`."""

from __future__ import annotations

import importlib

from domain.billing.providers.base import PaymentProvider

#: provider name -> "module:instance". Modules load on first use.
ADAPTERS: dict[str, str] = {
    "stripe": "domain.billing.providers.stripe:ADAPTER",
    "razorpay": "domain.billing.providers.razorpay:ADAPTER",
    "phonepe": "domain.billing.providers.phonepe:ADAPTER",
    "paypal": "domain.billing.providers.paypal:ADAPTER",
}


def adapter(name: str) -> PaymentProvider:
    module, _, attr = ADAPTERS[name].partition(":")
    found: PaymentProvider = getattr(importlib.import_module(module), attr)
    return found
