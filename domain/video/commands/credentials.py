"""A clinic's own video provider accounts: stored through tenancy's one credentials store
(AES-256-GCM per clinic and provider) under video's own permissions, checked against the fields
each adapter needs. They go in and never come out (a mask). Stored ones override the
deployment's settings for that clinic (domain/video/providers)."""

from __future__ import annotations

import re
import uuid

from joserfc.jwk import RSAKey

from domain.errors import FieldError, Invalid, invalid_field
from domain.principal import Principal
from domain.settings import get as app_settings
from domain.tenancy.credentials import masked_provider_credentials, put_credentials
from domain.video.models import PROVIDERS, VideoProviderName
from domain.video.providers import FIELDS

#: A Jitsi domain: a host name, optionally a port; no scheme, path or credentials.
DOMAIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?(?::\d{1,5})?$")


def _provider(provider: str) -> VideoProviderName:
    for name in PROVIDERS:
        if provider == name:
            return name
    raise invalid_field("provider", "openvidu or jitsi")


def _field_errors(provider: VideoProviderName, fields: dict[str, str]) -> list[FieldError]:
    required, optional = FIELDS[provider]
    errors = [FieldError(f"credentials.{n}", "required") for n in required if n not in fields]
    errors += [FieldError(f"credentials.{n}", f"unknown for {provider}")
               for n in fields if n not in required + optional]
    if errors:
        return errors
    if provider == "openvidu" and not re.match(app_settings().video_url_pattern, fields["url"]):
        errors.append(FieldError("credentials.url", "the OpenVidu server's base URL "
                                 "(https://host[:port])"))
    if provider == "jitsi":
        if not DOMAIN.match(fields["domain"]):
            errors.append(FieldError("credentials.domain", "a host name (meet.example.org), "
                                     "without scheme or path"))
        if fields.get("key_id"):
            try:
                RSAKey.import_key(fields["app_secret"]).as_dict(private=True)
            except Exception:  # joserfc and cryptography raise many kinds for a non-key
                errors.append(FieldError("credentials.app_secret", "with key_id (8x8 JaaS): the "
                                         "RSA private key in PEM"))
    return errors


async def put_provider_credentials(principal: Principal, clinic_id: uuid.UUID, provider: str,
                                   fields: dict[str, str]) -> dict[str, str]:
    """Replace the clinic's account at the provider: exactly its fields (openvidu url, api_key,
    api_secret; jitsi domain, app_id, app_secret and optionally key_id), 400 naming a missing,
    unknown or malformed one. The masked fields back."""
    name = _provider(provider)
    errors = _field_errors(name, fields)
    if errors:
        raise Invalid("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors)
    return await put_credentials(principal, clinic_id, name, fields,
                                 permission="video_settings:manage")


async def provider_credentials(principal: Principal, clinic_id: uuid.UUID,
                               provider: str) -> dict[str, str]:
    """The stored fields masked (`****` + last 4); {} when none are stored."""
    return await masked_provider_credentials(principal, clinic_id, _provider(provider),
                                             permission="video_settings:read")
