"""A clinic's payment provider credentials: stored through tenancy's one credentials store
(AES-256-GCM per clinic and provider), under billing's own permissions, and checked against
the fields the provider's adapter needs. They go in and never come out (a mask)."""

from __future__ import annotations

import uuid

from domain.billing.models import ONLINE_PROVIDERS
from domain.billing.providers import adapter
from domain.errors import FieldError, Invalid, invalid_field
from domain.principal import Principal
from domain.tenancy.credentials import masked_provider_credentials, put_credentials


def _provider(provider: str) -> str:
    if provider not in ONLINE_PROVIDERS:
        raise invalid_field("provider", "stripe, razorpay, phonepe or paypal")
    return provider


async def put_provider_credentials(principal: Principal, clinic_id: uuid.UUID, provider: str,
                                   fields: dict[str, str]) -> dict[str, str]:
    """Replace the provider's credentials; exactly the adapter's fields (400 naming a missing
    or unknown one). The masked fields back."""
    try:
        needed = adapter(_provider(provider)).required_fields
    except ImportError:  # its adapter is not part of this build
        raise invalid_field("provider", f"{provider} is not available here") from None
    errors = [FieldError(f"credentials.{n}", "required") for n in needed if n not in fields]
    errors += [FieldError(f"credentials.{n}", f"unknown for {provider}")
               for n in fields if n not in needed]
    if errors:
        raise Invalid("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors)
    return await put_credentials(principal, clinic_id, provider, fields,
                                 permission="billing_settings:manage")


async def provider_credentials(principal: Principal, clinic_id: uuid.UUID,
                               provider: str) -> dict[str, str]:
    """The stored fields masked (`****` + last 4); {} when none are stored."""
    return await masked_provider_credentials(principal, clinic_id, _provider(provider),
                                             permission="billing_settings:read")
