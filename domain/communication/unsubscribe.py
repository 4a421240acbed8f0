"""One-click unsubscribe (RFC 8058): every notification email carries a link that stops that
kind of email to that address at that clinic, without a login.

The link's token is a JWT under the server secret with a `typ` of its own (as board tokens are;
identity/tokens.py), so it cannot be forged, works nowhere else, and needs no table. It binds
the clinic, the kind, the channel (email) and the address: the suppression needs the address,
and it is the recipient's own. It lasts years (an old email's link should still work); a
second click changes nothing."""

from __future__ import annotations

import time
import uuid
from typing import Final
from urllib.parse import quote

import msgspec

from domain import settings
from domain.communication.commands.suppressions import suppress
from domain.errors import Unauthenticated, invalid_field
from domain.identity import tokens

TOKEN_TYPE: Final = "unsubscribe"
#: How long a link works: five years.
LIFETIME_SECONDS: Final = 5 * 365 * 24 * 3600
PATH: Final = "/api/v1/unsubscribe/"


class Unsubscribed(msgspec.Struct, frozen=True, kw_only=True):
    clinic_id: uuid.UUID
    kind: str
    unsubscribed: bool = True


def token(*, clinic_id: uuid.UUID, kind: str, address: str) -> str:
    return tokens.issue_device_token(TOKEN_TYPE, clinic_id, int(time.time()) + LIFETIME_SECONDS,
                                     k=kind, ch="email", to=address)


def link(*, clinic_id: uuid.UUID, kind: str, address: str) -> str:
    """The absolute URL a mail client POSTs to (and a person opens) to stop `kind` emails to
    `address` from the clinic."""
    base = settings.get().public_url.rstrip("/")
    return base + PATH + quote(token(clinic_id=clinic_id, kind=kind, address=address), safe="")


def headers(url: str) -> dict[str, str]:
    """The RFC 8058 headers of an email carrying `url` (its `Content.headers`)."""
    return {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def read(value: str) -> tuple[uuid.UUID, str, str]:
    """(clinic, kind, address) of a genuine token; anything else is `Invalid` naming `token`."""
    try:
        claims = tokens.decode_device_token(value, TOKEN_TYPE)
        clinic_id, kind, channel, address = (uuid.UUID(str(claims["sub"])), claims["k"],
                                             claims["ch"], claims["to"])
    except (Unauthenticated, KeyError, ValueError) as exc:
        raise invalid_field("token", "not a valid unsubscribe link") from exc
    if channel != "email" or not isinstance(kind, str) or not isinstance(address, str):
        raise invalid_field("token", "not a valid unsubscribe link")
    return clinic_id, kind, address


async def unsubscribe(value: str) -> Unsubscribed:
    """Stop the token's kind of email to its address at its clinic (reason `unsubscribe`).
    Idempotent: one statement, which a second click finds already done."""
    clinic_id, kind, address = read(value)
    await suppress(clinic_id, "email", address, "unsubscribe", kind=kind)
    return Unsubscribed(clinic_id=clinic_id, kind=kind)
