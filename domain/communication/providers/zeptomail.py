"""ZeptoMail (Zoho) transactional email over its HTTP API v1.1: `POST {zeptomail_url}/v1.1/email`
with `Authorization: Zoho-enczapikey <token>`.

`message.headers` go as `mime_headers`, which ZeptoMail documents as extra headers of the mail;
whether it lets List-Unsubscribe through unchanged is not documented (unverified).

A 2xx whose body is not the documented EM_104 shape is MaybeSent: it was probably accepted, but
we cannot tell, so the pipeline must not send it elsewhere as if nothing had happened.

Idempotency: ZeptoMail documents `client_reference` only as "an identifier set by the user to
track a particular transaction"; no source we found (API reference, error codes, SDKs) says it
deduplicates anything. We send `message.idempotency_key` there so a duplicate can be recognised
afterwards (processed-emails search, webhooks), but a second send of the same key IS delivered
twice. The pipeline's lease/claim is what prevents duplicates, not ZeptoMail.

How answers map (see base.py for what each class means to the pipeline):
- 201 with `data[0].code == "EM_104"` → Sent, `request_id` as the provider id (webhooks carry it).
- 429 → Unavailable with Retry-After; 5xx and transport failures → Unavailable (http.py turns a
  read timeout / dropped answer into MaybeSent).
- 401/403/404/405 (bad token, wrong base URL) and the account/configuration codes (TM_3601
  IP/limits/blocked, TM_3501 credits or cache keys, TM_5001 credits, TM_4001 unverified domain,
  unreviewed account, bad token) →
  Unavailable: the account is broken, not the recipient, so the breaker should open.
- TM_4001 / SM_113 about a recipient field (`to`, `cc`, `bcc`) and every other 4xx (missing or
  too-long fields, invalid JSON, limits: TM_3201, TM_3301, TM_8001) → Rejected: this message
  cannot go out as it is. Which field SM_113 names is read from `details[].target` (the docs only
  say "target_value shows the field": the exact key is unverified, so both are looked at).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import msgspec

from domain.communication.models import Channel, Outbound
from domain.communication.providers import http
from domain.communication.providers.base import MaybeSent, Rejected, Sent, Unavailable
from domain.settings import get as app_settings

#: Error codes about the account or its configuration, whatever the sub code.
ACCOUNT_CODES = frozenset({"TM_3501", "TM_3601", "TM_5001"})
#: TM_4001 covers both account problems (SM_111 unverified domain, SM_128 unreviewed account,
#: SERR_157 bad token) and SM_113 "field has invalid value", which is about the recipient only
#: when the field is a recipient field.
RECIPIENT_FIELDS = frozenset({"to", "cc", "bcc"})


def body(message: Outbound) -> dict[str, Any]:
    """The JSON ZeptoMail's /v1.1/email takes for one message."""
    sender = message.sender
    if not sender.from_address:
        raise Unavailable("zeptomail: no from address configured for email")
    payload: dict[str, Any] = {
        "from": {"address": sender.from_address, **({"name": sender.from_name}
                                                     if sender.from_name else {})},
        "to": [{"email_address": {"address": message.to}}],
        "subject": message.subject or "",
        "textbody": message.text,
        "client_reference": message.idempotency_key,
    }
    if message.html:
        payload["htmlbody"] = message.html
    if sender.reply_to:
        payload["reply_to"] = [{"address": sender.reply_to}]
    if message.headers:
        payload["mime_headers"] = dict(message.headers)
    return payload


def _error(response: http.Answer) -> tuple[str | None, list[dict[str, Any]]]:
    try:
        data = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        return None, []
    err = data.get("error") if isinstance(data, dict) else None
    if not isinstance(err, dict):
        return None, []
    details = [d for d in err.get("details") or [] if isinstance(d, dict)]
    code = err.get("code")
    return (code if isinstance(code, str) else None), details


def _about_recipient(details: list[dict[str, Any]]) -> bool:
    for d in details:
        for key in ("target", "target_value"):
            value = d.get(key)
            if isinstance(value, str) and value.strip().lower() in RECIPIENT_FIELDS:
                return True
    return False


def classify(response: http.Answer) -> Sent:
    """Sent for an accepted message; otherwise raise the failure class its answer means. The
    exception text carries status and codes only (never the address, a header or the token)."""
    status = response.status_code
    if status == 429:
        raise Unavailable("zeptomail: rate limited (429)", status_code=429,
                          retry_after=http.retry_after(response))
    if status >= 500:
        raise Unavailable(f"zeptomail: server error {status}", status_code=status)
    if 200 <= status < 300:
        try:
            data = msgspec.json.decode(response.content)
            first = data["data"][0]
            if first.get("code") == "EM_104":
                return Sent(provider_message_id=str(data["request_id"]), status_code=status)
        except (msgspec.DecodeError, KeyError, IndexError, TypeError, AttributeError):
            pass
        # A 2xx we cannot read: the request may well have been accepted.
        raise MaybeSent(f"zeptomail: unexpected {status} answer", status_code=status)
    code, details = _error(response)
    subs = sorted({str(d.get("code")) for d in details if d.get("code")})
    what = f"{status} {code or 'no code'}" + (f" ({', '.join(subs)})" if subs else "")
    if status in (401, 403, 404, 405) or code in ACCOUNT_CODES:
        raise Unavailable(f"zeptomail: account or configuration refused: {what}",
                          status_code=status, code=code)
    if code == "TM_4001" and not ("SM_113" in subs and _about_recipient(details)):
        raise Unavailable(f"zeptomail: account or configuration refused: {what}",
                          status_code=status, code=code)
    raise Rejected(f"zeptomail: message refused: {what}", status_code=status, code=code)


class ZeptoMail:
    name: ClassVar[str] = "zeptomail"
    channels: ClassVar[frozenset[Channel]] = frozenset({"email"})
    required_fields: ClassVar[tuple[str, ...]] = ("api_key",)
    optional_fields: ClassVar[tuple[str, ...]] = ()
    #: ZeptoMail publishes no rate; ~10 requests/s is the cap commonly reported.
    default_rate_per_second: ClassVar[int] = 10

    async def send(self, message: Outbound, credentials: Mapping[str, str]) -> Sent:
        token = credentials.get("api_key", "")
        if not token:
            raise Unavailable("zeptomail: no api_key stored")
        url = app_settings().zeptomail_url.rstrip("/") + "/v1.1/email"
        response = await http.request(
            "zeptomail", "POST", url, data=msgspec.json.encode(body(message)),
            headers={"Authorization": f"Zoho-enczapikey {token}", "Accept": "application/json",
                     "Content-Type": "application/json"})
        return classify(response)
