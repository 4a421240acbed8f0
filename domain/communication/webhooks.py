"""What the providers' delivery webhooks mean for the delivery log and the suppression list.
The inbox (domain/inbox) verified and stored each event; these handlers run in its processing
transaction, once per event (domain/inbox/handlers.py names them).

- A hard bounce marks the message `bounced` and suppresses its address at once; a complaint
  marks it `complained` and suppresses (SES's `not-spam` feedback retracts one: nothing
  happens); a soft bounce (SES Transient or Undetermined, ZeptoMail softbounce; SES's
  content-related subtypes excepted) is counted and suppresses after SOFT_BOUNCE_LIMIT within
  SOFT_BOUNCE_DAYS (a delivery does not reset the count: not built); a delivery, WhatsApp's
  `read` and `failed` move the message forward only (commands/delivery_status.py).
- Messages are matched by the provider's id for them (`provider_message_id`: SES's MessageId,
  ZeptoMail's request_id, WhatsApp's wamid), which gives the clinic. An event naming no message
  of ours changes nothing (`unknown_message`): without a message there is no clinic to suppress
  for. Only the message's own address is suppressed, and only when the report names it.
- Suppression rows carry `<provider>:<event id>` as their source_event_id."""

from __future__ import annotations

import json
import uuid
from typing import Any, Literal

import msgspec

from domain import db
from domain.communication.commands.delivery_status import (
    SOFT_BOUNCE_LIMIT,
    record_soft_bounce,
    report_status,
)
from domain.communication.commands.suppressions import suppress
from domain.communication.models import Status
from domain.inbox.models import Event, Handled

#: WhatsApp's statuses and what the delivery log makes of them (`sent` we knew already).
WHATSAPP_STATUS: dict[str, Status] = {"delivered": "delivered", "read": "read", "failed": "failed"}
#: SES transient (and undetermined) bounce subtypes about the message, not the address: they
#: do not count towards the soft-bounce suppression (PROVIDERS.md).
CONTENT_BOUNCES = ("ContentRejected", "AttachmentRejected", "MessageTooLarge")
#: Meta's error codes worth naming in the log's error (PROVIDERS.md).
WHATSAPP_ERRORS = {131026: "undeliverable", 131047: "outside the 24 h window",
                   131049: "not delivered to maintain ecosystem health"}


def _json(data: bytes | str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


async def _message(provider: str, provider_message_id: str) -> dict[str, Any] | None:
    rows = await db.fetch(
        """SELECT id, clinic_id, channel, address FROM communication_messages
           WHERE provider = $1 AND provider_message_id = $2 ORDER BY created_at LIMIT 1""",
        provider, provider_message_id)
    return rows[0] if rows else None


def _named(address: str, recipients: list[Any]) -> bool:
    return any(isinstance(r, str) and r.strip().lower() == address for r in recipients)


async def _final(provider: str, message_id: str, recipients: list[Any], source: str, *,
                 status: Literal["bounced", "complained"], error: str | None = None) -> Handled:
    """A hard bounce or a complaint: the message takes the final status and, when the report
    names its own address, that address is suppressed at once."""
    reported = await report_status(provider, message_id, status, error=error)
    if reported is None:
        return Handled(result="unknown_message")
    what = "bounce" if status == "bounced" else "complaint"
    if reported.channel != "email" or not _named(reported.address, recipients):
        return Handled(result=f"{what}_of_another_address", clinic_id=reported.clinic_id)
    reason: Literal["hard_bounce", "complaint"] = "hard_bounce" if status == "bounced" else "complaint"
    await suppress(reported.clinic_id, "email", reported.address, reason, source)
    return Handled(result=status if reported.moved else f"{status}_was_{reported.before}",
                   clinic_id=reported.clinic_id)


async def hard_bounce(provider: str, message_id: str, recipients: list[Any], source: str,
                      error: str) -> Handled:
    return await _final(provider, message_id, recipients, source, status="bounced", error=error)


async def soft_bounce(provider: str, message_id: str, recipients: list[Any],
                      source: str) -> Handled:
    message = await _message(provider, message_id)
    if message is None:
        return Handled(result="unknown_message")
    clinic_id: uuid.UUID = message["clinic_id"]
    if message["channel"] != "email" or not _named(message["address"], recipients):
        return Handled(result="bounce_of_another_address", clinic_id=clinic_id)
    count = await record_soft_bounce(clinic_id, "email", message["address"], source)
    if count >= SOFT_BOUNCE_LIMIT:
        await suppress(clinic_id, "email", message["address"], "soft_bounce", source)
        return Handled(result=f"soft_bounce_{count}_suppressed", clinic_id=clinic_id)
    return Handled(result=f"soft_bounce_{count}", clinic_id=clinic_id)


async def complaint(provider: str, message_id: str, recipients: list[Any],
                    source: str) -> Handled:
    return await _final(provider, message_id, recipients, source, status="complained")


async def delivered(provider: str, message_id: str) -> Handled:
    reported = await report_status(provider, message_id, "delivered")
    if reported is None:
        return Handled(result="unknown_message")
    return Handled(result="delivered" if reported.moved else f"delivered_was_{reported.before}",
                   clinic_id=reported.clinic_id)


# --- SES (through SNS) ------------------------------------------------------------------------

async def handle_ses(event: Event) -> Handled:
    """An SNS notification whose `Message` is an SES event (`notificationType`, or `eventType`
    for configuration-set event publishing)."""
    ses = _json(_dict(_json(event.body)).get("Message") or "")
    if not isinstance(ses, dict):
        return Handled(result="unreadable")
    kind = ses.get("notificationType") or ses.get("eventType")
    message_id = _dict(ses.get("mail")).get("messageId")
    if not isinstance(message_id, str):
        return Handled(result="no_message_id")
    source = f"ses:{event.event_id}"
    if kind == "Delivery":
        return await delivered("ses", message_id)
    if kind == "Bounce":
        bounce = _dict(ses.get("bounce"))
        recipients = [_dict(r).get("emailAddress") for r in _list(bounce.get("bouncedRecipients"))]
        if bounce.get("bounceType") == "Permanent":
            subtype = str(bounce.get("bounceSubType") or "General")[:40]
            return await hard_bounce("ses", message_id, recipients, source,
                                     f"ses: permanent bounce ({subtype})")
        if bounce.get("bounceSubType") in CONTENT_BOUNCES:  # the message, not the mailbox
            return Handled(result="soft_bounce_of_content")
        return await soft_bounce("ses", message_id, recipients, source)
    if kind == "Complaint":
        report = _dict(ses.get("complaint"))
        if report.get("complaintFeedbackType") == "not-spam":
            return Handled(result="not_spam")
        recipients = [_dict(r).get("emailAddress")
                      for r in _list(report.get("complainedRecipients"))]
        return await complaint("ses", message_id, recipients, source)
    return Handled(result=f"ignored_{str(kind)[:40]}")


# --- ZeptoMail --------------------------------------------------------------------------------

async def handle_zeptomail(event: Event) -> Handled:
    """`event_name` [hardbounce|softbounce|email_open|email_link_click]; each of
    `event_message[]` names our message by `request_id` and the bounced addresses in
    `event_data[].details[].bounced_recipient` (the shape PROVIDERS.md gives; unverified
    against a live account)."""
    doc = _dict(_json(event.body))
    names = doc.get("event_name")
    kind = (names[0] if names else None) if isinstance(names, list) else names
    if kind not in ("hardbounce", "softbounce"):
        return Handled(result=f"ignored_{str(kind)[:40]}")
    source = f"zeptomail:{event.event_id}"
    results: list[Handled] = []
    for item in map(_dict, _list(doc.get("event_message"))):
        request_id = item.get("request_id") or doc.get("request_id")
        if not isinstance(request_id, str):
            continue
        recipients = [_dict(d).get("bounced_recipient")
                      for data in _list(item.get("event_data"))
                      for d in _list(_dict(data).get("details"))]
        if kind == "hardbounce":
            results.append(await hard_bounce("zeptomail", request_id, recipients, source,
                                             "zeptomail: hard bounce"))
        else:
            results.append(await soft_bounce("zeptomail", request_id, recipients, source))
    if not results:
        return Handled(result="no_message_id")
    return Handled(result=",".join(r.result for r in results)[:200],
                   clinic_id=next((r.clinic_id for r in results if r.clinic_id), None))


# --- WhatsApp ---------------------------------------------------------------------------------

def _whatsapp_status(doc: dict[str, Any], wamid: str, state: str) -> dict[str, Any] | None:
    for entry in map(_dict, _list(doc.get("entry"))):
        for change in map(_dict, _list(entry.get("changes"))):
            for status in map(_dict, _list(_dict(change.get("value")).get("statuses"))):
                if status.get("id") == wamid and status.get("status") == state:
                    return status
    return None


async def handle_whatsapp(event: Event) -> Handled:
    """One status of a Meta status webhook (the inbox keys them `<wamid>:<status>`)."""
    wamid, _, state = event.event_id.rpartition(":")
    if event.event_id.startswith("body:") or not wamid:
        return Handled(result="no_status")
    status = _whatsapp_status(msgspec.json.decode(event.body), wamid, state)
    if status is None:
        return Handled(result="no_status")
    target = WHATSAPP_STATUS.get(state)
    if target is None:  # `sent`, or a status we do not know: noted, nothing changes
        message = await _message("whatsapp", wamid)
        return Handled(result=f"noted_{state}" if message else "unknown_message",
                       clinic_id=message["clinic_id"] if message else None)
    error = None
    if target == "failed":
        first = _dict((_list(status.get("errors")) or [None])[0])
        code = first.get("code")
        meaning = WHATSAPP_ERRORS.get(code) if isinstance(code, int) else None
        error = f"whatsapp: {code} {meaning or str(first.get('title') or '')[:80]}".strip()
    reported = await report_status("whatsapp", wamid, target, error=error)
    if reported is None:
        return Handled(result="unknown_message")
    return Handled(result=target if reported.moved else f"{target}_was_{reported.before}",
                   clinic_id=reported.clinic_id)
