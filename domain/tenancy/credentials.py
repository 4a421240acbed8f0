"""Each clinic's provider credentials, the one way every provider secret is kept.

AES-256-GCM, a random 96-bit nonce per write, and the clinic id and provider name as associated
data: a ciphertext copied to another clinic's or provider's row does not decrypt. Every row
names the key (`key_id`) it was written under, so keys rotate without downtime: add the new key
first in CAREWIRE_CREDENTIALS_KEY, run `carewire keys rotate`, then drop the old one. Plaintext
leaves this module only through `get_credentials` (for provider adapters); everything else sees
field names and a mask, never a value (not in audit rows, events, errors or logs).
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass
from typing import Any

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from domain import db
from domain.access.policies import require
from domain.audit.commands import record
from domain.errors import Conflict, FieldError, Invalid, NotFound, invalid_field
from domain.principal import Principal
from domain.settings import credentials_keys
from domain.settings import get as app_settings
from domain.tenancy.queries import load_clinic

PROVIDER = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
FIELD = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
#: Largest field value: a service-account JSON (FCM) is a few kB.
MAX_VALUE_CHARS = 16_384
MAX_FIELDS = 20
#: Values shorter than this are masked whole: their last 4 characters would be most of them.
MASK_MIN_CHARS = 8
MASK = "****"


class CredentialsUnavailable(Conflict):
    """Stored credentials that cannot be decrypted here: their key is not configured, or the
    row is not the ciphertext written for this clinic and provider (copied, tampered)."""


@dataclass(frozen=True)
class RotationResult:
    rotated: int
    #: Rows that changed between our read and our write (a put meanwhile); a re-run sees them.
    raced: int
    #: Rows that do not decrypt under any configured key (named in `unreadable_rows`).
    unreadable: int
    #: Rows under the current key when the rotation started (left untouched).
    already_current: int
    unreadable_rows: tuple[tuple[uuid.UUID, str, str], ...] = ()


def _keys() -> tuple[str, dict[str, bytes]]:
    """(current key id, every configured key)."""
    keys = credentials_keys(app_settings().credentials_key)
    if not keys:
        raise CredentialsUnavailable("CAREWIRE_CREDENTIALS_KEY is not set: no credentials can be "
                                     "stored or read")
    return next(iter(keys)), keys


def _associated_data(clinic_id: uuid.UUID, provider: str) -> bytes:
    return f"carewire/credentials/v1/{clinic_id}/{provider}".encode()


def _encrypt(key: bytes, clinic_id: uuid.UUID, provider: str,
             fields: dict[str, str]) -> tuple[bytes, bytes]:
    nonce = os.urandom(12)
    plain = msgspec.json.encode(fields)
    return nonce, AESGCM(key).encrypt(nonce, plain, _associated_data(clinic_id, provider))


def _decrypt(keys: dict[str, bytes], row: dict[str, Any], clinic_id: uuid.UUID,
             provider: str) -> dict[str, str]:
    key_id = str(row["key_id"])
    what = f"credentials of provider {provider} for this clinic"
    if key_id not in keys:
        raise CredentialsUnavailable(f"{what} are under key id {key_id}, which "
                                     "CAREWIRE_CREDENTIALS_KEY no longer holds")
    try:
        plain = AESGCM(keys[key_id]).decrypt(bytes(row["nonce"]), bytes(row["ciphertext"]),
                                             _associated_data(clinic_id, provider))
    except InvalidTag:
        raise CredentialsUnavailable(f"{what} do not decrypt: they were not written for this "
                                     "clinic and provider, or were altered") from None
    return msgspec.json.decode(plain, type=dict[str, str])


def _mask(value: str) -> str:
    return MASK + value[-4:] if len(value) >= MASK_MIN_CHARS else MASK


def _clean(provider: str, fields: dict[str, str]) -> tuple[str, dict[str, str]]:
    if not isinstance(provider, str) or not PROVIDER.match(provider):
        raise invalid_field("provider", "a provider name: lowercase letters, digits and _")
    if not isinstance(fields, dict) or not fields:
        raise invalid_field("credentials", "at least one field")
    if len(fields) > MAX_FIELDS:
        raise invalid_field("credentials", f"at most {MAX_FIELDS} fields")
    errors = []
    for name, value in fields.items():
        if not isinstance(name, str) or not FIELD.match(name):
            errors.append(FieldError("credentials", "field names are lowercase letters, digits and _"))
        elif not isinstance(value, str) or not value.strip():
            errors.append(FieldError(f"credentials.{name}", "a non-empty string"))
        elif len(value) > MAX_VALUE_CHARS:
            errors.append(FieldError(f"credentials.{name}", f"at most {MAX_VALUE_CHARS} characters"))
        elif "\x00" in value:  # its mask is stored as jsonb, which cannot hold NUL
            errors.append(FieldError(f"credentials.{name}", "must not contain NUL characters"))
    if errors:  # names the field, never its value
        raise Invalid("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors)
    return provider, dict(fields)


async def put_credentials(principal: Principal, clinic_id: uuid.UUID, provider: str,
                          fields: dict[str, str], *,
                          permission: str = "communication_settings:manage") -> dict[str, str]:
    """Store (replace) a provider's credentials for a clinic; the masked fields back. The audit
    row names the provider and the field names only. `permission`: the owning context's
    (billing's providers are billing_settings:manage)."""
    require(principal, permission, clinic_id, resource_type="clinic",
            resource_id=clinic_id)
    provider, fields = _clean(provider, fields)
    key_id, keys = _keys()
    nonce, ciphertext = _encrypt(keys[key_id], clinic_id, provider, fields)
    last4 = {name: _mask(value) for name, value in fields.items()}
    async with db.transaction():
        rows = await db.fetch(
            """INSERT INTO clinic_credentials (clinic_id, provider, key_id, nonce, ciphertext, last4)
               SELECT id, $2, $3, $4, $5, $6::jsonb FROM clinics WHERE id = $1
               ON CONFLICT (clinic_id, provider) DO UPDATE SET key_id = EXCLUDED.key_id,
                   nonce = EXCLUDED.nonce, ciphertext = EXCLUDED.ciphertext,
                   last4 = EXCLUDED.last4, updated_at = now()
               RETURNING (xmax = 0) AS created""",
            clinic_id, provider, key_id, nonce, ciphertext, msgspec.json.encode(last4).decode(),
        )
        if not rows:
            raise NotFound("clinic not found", resource_type="clinic", resource_id=clinic_id)
        await record(principal, action=permission,
                     resource_type="clinic_credentials", resource_id=provider,
                     clinic_id=clinic_id,
                     detail={"provider": provider, "fields": sorted(fields),
                             "created": bool(rows[0]["created"])})
    return last4


async def get_credentials(clinic_id: uuid.UUID, provider: str) -> dict[str, str]:
    """The plaintext fields, for a provider adapter about to call its provider; no principal:
    the caller is the delivery pipeline, never a request."""
    _, keys = _keys()
    rows = await db.fetch(
        "SELECT key_id, nonce, ciphertext FROM clinic_credentials WHERE clinic_id = $1 AND provider = $2",
        clinic_id, provider)
    if not rows:
        raise NotFound(f"no credentials for provider {provider}", resource_type="clinic_credentials",
                       resource_id=provider)
    return _decrypt(keys, rows[0], clinic_id, provider)


async def masked_credentials(principal: Principal, clinic_id: uuid.UUID, *,
                             permission: str = "communication_settings:read"
                             ) -> dict[str, dict[str, str]]:
    """Each provider's fields as `****` + their last 4 characters (shorter values: `****`);
    read from the stored mask, so no plaintext is decrypted to show it."""
    require(principal, permission, clinic_id, resource_type="clinic",
            resource_id=clinic_id)
    rows = await db.fetch(
        "SELECT provider, last4 FROM clinic_credentials WHERE clinic_id = $1 ORDER BY provider",
        clinic_id)
    return {str(r["provider"]): _json_dict(r["last4"]) for r in rows}


async def masked_provider_credentials(principal: Principal, clinic_id: uuid.UUID, provider: str,
                                      *, permission: str) -> dict[str, str]:
    """One provider's fields masked as in `masked_credentials`; {} when none are stored, and
    a clinic that does not exist is 404 (even to SUPER_ADMIN, whom `require` lets name any)."""
    masked = await masked_credentials(principal, clinic_id, permission=permission)
    if not masked:
        await load_clinic(clinic_id)
    return masked.get(provider, {})


def _json_dict(value: object) -> dict[str, str]:
    raw = value if isinstance(value, (str, bytes)) else msgspec.json.encode(value)
    return msgspec.json.decode(raw, type=dict[str, str])


async def rotate_credentials(batch_size: int = 100) -> RotationResult:
    """Re-encrypt every row not under the current key, in batches. Each row is its own short
    UPDATE guarded by the key id and nonce it was read with, so a put meanwhile is never
    overwritten and the app keeps running; rows already under the current key are not touched,
    so a re-run does nothing more."""
    key_id, keys = _keys()
    current = await db.fetch("SELECT count(*) AS n FROM clinic_credentials WHERE key_id = $1",
                             key_id)
    rotated = raced = 0
    unreadable: list[tuple[uuid.UUID, str, str]] = []
    after: tuple[uuid.UUID, str] = (uuid.UUID(int=0), "")
    while True:
        batch = await db.fetch(
            """SELECT clinic_id, provider, key_id, nonce, ciphertext FROM clinic_credentials
               WHERE key_id <> $1 AND (clinic_id, provider) > ($2, $3)
               ORDER BY clinic_id, provider LIMIT $4""",
            key_id, after[0], after[1], batch_size)
        if not batch:
            break
        for row in batch:
            clinic_id, provider = row["clinic_id"], str(row["provider"])
            after = (clinic_id, provider)
            try:
                fields = _decrypt(keys, row, clinic_id, provider)
            except CredentialsUnavailable:
                unreadable.append((clinic_id, provider, str(row["key_id"])))
                continue
            nonce, ciphertext = _encrypt(keys[key_id], clinic_id, provider, fields)
            done = await db.fetch(
                """UPDATE clinic_credentials SET key_id = $3, nonce = $4, ciphertext = $5,
                       updated_at = now()
                   WHERE clinic_id = $1 AND provider = $2 AND key_id = $6 AND nonce = $7
                   RETURNING 1 AS ok""",
                clinic_id, provider, key_id, nonce, ciphertext, row["key_id"], row["nonce"])
            if done:
                rotated += 1
            else:
                raced += 1
    return RotationResult(rotated=rotated, raced=raced, unreadable=len(unreadable),
                          already_current=int(current[0]["n"]),
                          unreadable_rows=tuple(unreadable))
