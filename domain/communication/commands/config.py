"""A clinic's communication settings: its provider chains per channel, the credentials they use
(stored through tenancy's credentials store, the one way a secret is kept) and the test send.

A PUT is validated whole before anything is written, then written in one transaction: the
chains, the credentials and the audit row commit together or not at all. PUTs of one clinic
take turns (an advisory lock), so two of them never interleave into a mix of both.
No error, audit row or log line carries a credential value: only provider and field names.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping

import msgspec

from domain import db, ratelimit, validation
from domain.access.policies import require
from domain.audit.commands import record
from domain.communication.commands.messages import Content, enqueue
from domain.communication.config import (
    CommunicationConfig,
    Resolved,
    default_for,
    resolve,
    resolve_all,
)
from domain.communication.models import CHANNELS, Channel, Sender
from domain.communication.providers import PROVIDERS
from domain.errors import Conflict, FieldError, Invalid, NotFound, invalid_field
from domain.identity.people import contact
from domain.principal import Principal
from domain.tenancy.credentials import (
    MAX_VALUE_CHARS,
    get_credentials,
    masked_credentials,
    put_credentials,
)
from domain.tenancy.queries import load_clinic

#: Test sends per clinic per minute: each is a real message, and a button can be hammered.
TEST_SENDS_PER_MINUTE = 10
MAX_CHAIN = 5
_WHATSAPP_NUMBER_ID = re.compile(r"^[0-9]{1,32}$")
_SMS_SENDER_ID = re.compile(r"^[A-Za-z0-9]{3,11}$")


class ChannelSettings(msgspec.Struct, frozen=True, kw_only=True):
    """One channel's chain as a PUT gives it: primary first, then fallbacks in order."""

    providers: list[str]
    sender: Sender = Sender()
    #: Sends per second per provider for this clinic; None: each provider's default.
    rate_per_second: int | None = None
    #: After a send that may have gone out, try the next provider anyway (risking a duplicate).
    retry_unknown: bool = False


def _check_sender(channel: Channel, settings: ChannelSettings,
                  errors: list[FieldError]) -> Sender:
    """The sender as stored (addresses normalised); its faults go to `errors`."""
    at = f"channels.{channel}.sender"
    s = settings.sender
    clean: dict[str, str] = {}
    for name in ("from_address", "reply_to"):
        value = getattr(s, name)
        if value is not None:
            try:
                clean[name] = validation.email(value, f"{at}.{name}")
            except Invalid as e:
                errors.extend(e.errors)
    if (channel == "email" and s.from_address is None
            and any(p != "local" for p in settings.providers)):
        errors.append(FieldError(f"{at}.from_address",
                                 "required: the address a real email provider sends from"))
    if s.from_name is not None and (len(s.from_name) > 200 or "\x00" in s.from_name):
        errors.append(FieldError(f"{at}.from_name", "at most 200 characters, no NUL"))
    if s.whatsapp_number_id is not None and not _WHATSAPP_NUMBER_ID.match(s.whatsapp_number_id):
        errors.append(FieldError(f"{at}.whatsapp_number_id",
                                 "digits only: the WhatsApp Business phone number id"))
    if s.sms_sender_id is not None and not _SMS_SENDER_ID.match(s.sms_sender_id):
        errors.append(FieldError(f"{at}.sms_sender_id", "3 to 11 letters and digits"))
    return msgspec.structs.replace(s, **clean)


def _check_chain(channel: Channel, settings: ChannelSettings, given: Mapping[str, object],
                 stored: Mapping[str, Mapping[str, str]],
                 errors: list[FieldError]) -> ChannelSettings:
    """The chain as stored; its faults go to `errors`."""
    at = f"channels.{channel}"
    if not settings.providers:
        errors.append(FieldError(f"{at}.providers", "at least one provider"))
    elif len(settings.providers) > MAX_CHAIN:
        errors.append(FieldError(f"{at}.providers", f"at most {MAX_CHAIN} providers"))
    seen: set[str] = set()
    for i, name in enumerate(settings.providers):
        where = f"{at}.providers.{i}"
        provider = PROVIDERS.get(name)
        if name in seen:
            errors.append(FieldError(where, f"{name} is already in this chain"))
            continue
        seen.add(name)
        if provider is None:
            errors.append(FieldError(where, "unknown provider; known: "
                                     + ", ".join(sorted(PROVIDERS))))
        elif channel not in provider.channels:
            errors.append(FieldError(where, f"{name} does not send {channel}"))
        elif name not in given:
            missing = [f for f in provider.required_fields if f not in stored.get(name, {})]
            if missing:
                errors.append(FieldError(f"credentials.{name}",
                                         f"required for {channel}: store {', '.join(missing)}"))
    if settings.rate_per_second is not None and not 1 <= settings.rate_per_second <= 10_000:
        errors.append(FieldError(f"{at}.rate_per_second", "between 1 and 10000"))
    return msgspec.structs.replace(settings, sender=_check_sender(channel, settings, errors))


def _check_credentials(credentials: Mapping[str, Mapping[str, object]],
                       errors: list[FieldError]) -> None:
    """Field names against the provider's own list; values are tenancy's to check (and are
    never echoed)."""
    for name, fields in credentials.items():
        provider = PROVIDERS.get(name)
        if provider is None:
            errors.append(FieldError(f"credentials.{name}", "unknown provider"))
            continue
        known = set(provider.required_fields) | set(provider.optional_fields)
        if not known:
            errors.append(FieldError(f"credentials.{name}", f"{name} takes no credentials"))
            continue
        if not fields:
            errors.append(FieldError(f"credentials.{name}", "at least one field"))
        for field, value in fields.items():
            if field not in known:
                errors.append(FieldError(f"credentials.{name}.{field}",
                                         f"not a field of {name}; known: {', '.join(sorted(known))}"))
            elif not isinstance(value, str):
                errors.append(FieldError(f"credentials.{name}.{field}", "a string"))
            elif not value.strip():
                errors.append(FieldError(f"credentials.{name}.{field}", "a non-empty string"))
            elif "\x00" in value:
                errors.append(FieldError(f"credentials.{name}.{field}",
                                         "must not contain NUL characters"))
            elif len(value) > MAX_VALUE_CHARS:
                errors.append(FieldError(f"credentials.{name}.{field}",
                                         f"at most {MAX_VALUE_CHARS} characters"))
        for field in provider.required_fields:
            if field not in fields:
                errors.append(FieldError(f"credentials.{name}.{field}",
                                         "required (the fields given replace those stored)"))


async def put_config(principal: Principal, clinic_id: uuid.UUID, *,
                     channels: Mapping[str, ChannelSettings | None],
                     credentials: Mapping[str, Mapping[str, object]]) -> CommunicationConfig:
    """Replace the given channels' chains (None: the clinic's row goes, the global default
    applies again) and store the given providers' credentials; channels not named stay."""
    require(principal, "communication_settings:manage", clinic_id, resource_type="clinic",
            resource_id=clinic_id)
    unknown = sorted(set(channels) - set(CHANNELS))
    if unknown:
        raise invalid_field(f"channels.{unknown[0]}", "unknown channel")
    async with db.transaction():
        await load_clinic(clinic_id)
        await db.fetch("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                       f"communication_config:{clinic_id}")
        stored = await masked_credentials(principal, clinic_id)
        chains = await resolve_all(clinic_id)
        errors: list[FieldError] = []
        _check_credentials(credentials, errors)
        put = []
        for channel in CHANNELS:
            settings = channels.get(channel)
            if settings is not None:
                s = _check_chain(channel, settings, credentials, stored, errors)
                put.append({"channel": channel, "providers": s.providers, "sender": s.sender,
                            "rate_per_second": s.rate_per_second,
                            "retry_unknown": s.retry_unknown})
                chains[channel] = Resolved(channel=channel, providers=list(s.providers),
                                           sender=s.sender, rate_per_second=s.rate_per_second,
                                           retry_unknown=s.retry_unknown, source="clinic")
            elif channel in channels:
                chains[channel] = default_for(channel)
        if errors:
            raise Invalid("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors)
        if channels:
            await db.fetch(
                """WITH gone AS (
                       DELETE FROM communication_configs WHERE clinic_id = $1
                       AND channel = ANY($2::text[]))
                   INSERT INTO communication_configs (clinic_id, channel, providers, sender,
                                                      rate_per_second, retry_unknown)
                   SELECT $1, x.channel,
                          ARRAY(SELECT jsonb_array_elements_text(x.providers)),
                          jsonb_strip_nulls(x.sender), x.rate_per_second, x.retry_unknown
                   FROM jsonb_to_recordset($3::jsonb) AS x(channel text, providers jsonb,
                        sender jsonb, rate_per_second integer, retry_unknown boolean)
                   ON CONFLICT (clinic_id, channel) DO UPDATE SET providers = EXCLUDED.providers,
                       sender = EXCLUDED.sender, rate_per_second = EXCLUDED.rate_per_second,
                       retry_unknown = EXCLUDED.retry_unknown, updated_at = now()""",
                clinic_id, [c for c, s in channels.items() if s is None],
                msgspec.json.encode(put).decode())
        for name in sorted(credentials):
            stored[name] = await put_credentials(principal, clinic_id, name,
                                                 {k: str(v) for k, v in credentials[name].items()})
        await record(principal, action="communication_settings:manage",
                     resource_type="communication_config", resource_id=clinic_id,
                     clinic_id=clinic_id,
                     detail={"channels": {c: (s.providers if s is not None else None)
                                          for c, s in sorted(channels.items())},
                             "credentials": sorted(credentials)})
    # what GET would read now, built from what this transaction read and wrote
    return CommunicationConfig(channels=dict(chains.items()), credentials=dict(sorted(stored.items())))


TEST_CONTENT = Content(
    subject="carewire test message",
    text="This is a test message from your clinic's communication settings in carewire. "
         "If you received it, this channel works.")


async def send_test(principal: Principal, clinic_id: uuid.UUID, channel: str) -> list[uuid.UUID]:
    """Queue a real test message on `channel` to the caller (their email, their phone, or
    their active devices); the worker sends it through the clinic's chain. The chain's stored
    credentials are checked first, so unreadable ones are a clear 409 now rather than a
    failed message later."""
    require(principal, "communication_settings:manage", clinic_id, resource_type="clinic",
            resource_id=clinic_id)
    if channel not in CHANNELS:
        raise invalid_field("channel", f"one of {', '.join(CHANNELS)}")
    chosen: Channel = channel
    await ratelimit.consume("communication-test", str(clinic_id), limit=TEST_SENDS_PER_MINUTE,
                            window_seconds=60)
    async with db.transaction():  # one connection for the reads and the enqueue
        ids = await _send_test(principal, clinic_id, chosen)
    return ids


async def _send_test(principal: Principal, clinic_id: uuid.UUID,
                     chosen: Channel) -> list[uuid.UUID]:
    await load_clinic(clinic_id)
    who = await contact(principal.user_id)
    address: str | None = None
    if chosen == "email":
        if who is None:
            raise invalid_field("email", "the caller has no account email")
        address = who.email
    elif chosen in ("sms", "whatsapp"):
        if who is None or not who.phone:
            raise invalid_field("phone", "add a phone number to your profile to receive a "
                                         f"test {chosen} message")
        address = who.phone
    chain = await resolve(clinic_id, chosen)
    if chain.source == "clinic":
        for name in chain.providers:
            provider = PROVIDERS.get(name)
            if provider is None or not provider.required_fields:
                continue
            try:
                await get_credentials(clinic_id, name)
            except NotFound:
                raise Conflict(f"provider {name} has no credentials stored for this clinic",
                               resource_type="clinic_credentials", resource_id=name) from None
    ids = await enqueue(clinic_id=clinic_id, channel=chosen, kind="test",
                        content=TEST_CONTENT, address=address, user_id=principal.user_id)
    if not ids:
        raise invalid_field("devices", "register a device to receive a test push message")
    await record(principal, action="communication_settings:manage",
                 resource_type="communication_test", resource_id=clinic_id,
                 clinic_id=clinic_id, detail={"channel": chosen, "messages": len(ids)})
    return ids


__all__ = ["TEST_SENDS_PER_MINUTE", "ChannelSettings", "put_config", "send_test"]
