"""WhatsApp through Meta's Cloud API (Graph API `/{phone_number_id}/messages`).

A message with a template goes as a template message (the only kind Meta delivers outside the
24-hour customer-service window); without one, as a text (session) message.

Idempotency: the Cloud API has none. `biz_opaque_callback_data` carries our idempotency key,
but Meta only echoes it back in status webhooks; it does not drop a second send with the same
value. A retry after an unknown outcome can deliver twice.

Many failures (undeliverable, outside the window...) arrive later in the status webhook, not
here; this adapter only classifies what the send call itself answers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from domain.communication.models import Channel, Outbound
from domain.communication.providers import http
from domain.communication.providers.base import Rejected, Sent, Unavailable
from domain.settings import get as app_settings

NAME = "whatsapp"
#: A phone number id is a Graph object id: digits only (it goes into the URL path).
PHONE_NUMBER_ID = re.compile(r"^[0-9]{1,32}$")
#: Rate limits (throughput, pair rate, API calls): back off and try again later.
RATE_LIMITED = frozenset({130429, 131056, 80007, 4, 17, 32, 613})
#: The recipient cannot get this message (not on WhatsApp, outside the 24 h window, ...).
RECIPIENT = {131026: "undeliverable", 131047: "outside the 24 h window: a template is needed"}
#: Our access token or the account: nothing this message can fix (expired/invalid token,
#: missing permission, account restricted or not registered).
ACCOUNT = frozenset({190, 10, 200, 131031, 131042, 133010, 368})
#: Code 100 with this subcode: the phone number id does not exist for this token (configuration).
UNKNOWN_OBJECT = 33


def body(message: Outbound) -> dict[str, Any]:
    """The Cloud API request body for one message."""
    out: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "".join(ch for ch in message.to if ch.isdigit()),
        "biz_opaque_callback_data": message.idempotency_key,
    }
    if message.template is not None:
        template: dict[str, Any] = {"name": message.template.name,
                                    "language": {"code": message.template.language}}
        if message.template.parameters:
            template["components"] = [{"type": "body", "parameters": [
                {"type": "text", "text": p} for p in message.template.parameters]}]
        out["type"] = "template"
        out["template"] = template
    else:
        out["type"] = "text"
        out["text"] = {"preview_url": False, "body": message.text}
    return out


def _error(response: http.Answer) -> tuple[int | None, int | None, str]:
    """(code, error_subcode, message) of a Graph error answer."""
    try:
        doc = response.json()
    except ValueError:
        return None, None, ""
    error = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(error, dict):
        return None, None, ""
    code, subcode = error.get("code"), error.get("error_subcode")
    return (code if isinstance(code, int) else None, subcode if isinstance(subcode, int) else None,
            str(error.get("message", ""))[:200])


def _failure(response: http.Answer) -> Exception:
    sc = response.status_code
    code, subcode, text = _error(response)
    what = f"{NAME}: {sc} error {code if code is not None else '?'}" + (f": {text}" if text else "")
    tag = str(code) if code is not None else None
    if code in RECIPIENT:
        return Rejected(f"{what} ({RECIPIENT[code]})", status_code=sc, code=tag)
    if code in RATE_LIMITED or sc == 429:
        return Unavailable(what, status_code=sc, code=tag or "rate_limited",
                           retry_after=http.retry_after(response) or 60.0)
    if code in ACCOUNT or (code == 100 and subcode == UNKNOWN_OBJECT) or sc in (401, 403) or sc >= 500:
        return Unavailable(what, status_code=sc, code=tag, retry_after=http.retry_after(response))
    if 400 <= sc < 500:
        return Rejected(what, status_code=sc, code=tag)
    return Unavailable(what, status_code=sc, code=tag)


class WhatsApp:
    """Meta WhatsApp Cloud API. Credentials: `access_token` (a system-user token) and, when the
    clinic's sender has no `whatsapp_number_id`, `phone_number_id`."""

    name: ClassVar[str] = NAME
    channels: ClassVar[frozenset[Channel]] = frozenset({"whatsapp"})
    required_fields: ClassVar[tuple[str, ...]] = ("access_token",)
    optional_fields: ClassVar[tuple[str, ...]] = ("phone_number_id",)
    #: Meta's default throughput is 80 messages/s per business phone number.
    default_rate_per_second: ClassVar[int] = 80

    async def send(self, message: Outbound, credentials: Mapping[str, str]) -> Sent:
        number_id = message.sender.whatsapp_number_id or credentials.get("phone_number_id") or ""
        if not PHONE_NUMBER_ID.match(number_id):
            raise Unavailable(f"{NAME}: no valid phone number id (sender whatsapp_number_id or "
                              "credential phone_number_id)", code="bad_config")
        token = credentials.get("access_token", "")
        if not token:
            raise Unavailable(f"{NAME}: no access_token", code="bad_credentials")
        settings = app_settings()
        url = (f"{settings.whatsapp_url.rstrip('/')}/{settings.whatsapp_api_version.strip('/')}"
               f"/{number_id}/messages")
        response = await http.request(NAME, "POST", url, json=body(message),
                                      headers={"Authorization": f"Bearer {token}"})
        if response.status_code == 200:
            try:
                wamid = response.json()["messages"][0]["id"]
            except (ValueError, KeyError, IndexError, TypeError):
                wamid = None
            return Sent(provider_message_id=wamid if isinstance(wamid, str) else None,
                        status_code=200)
        raise _failure(response)
