"""Each provider's webhook, from raw body and headers to stored events: parse the envelope,
verify it (signatures.py), take the provider's event id, store (commands.receive). Nothing is
stored unless it verified; what a refusal looks like is `signatures.Refused`."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

import httpx
import msgspec

from domain import db, settings
from domain.audit.commands import record
from domain.inbox import signatures
from domain.inbox.commands import receive
from domain.inbox.models import Receipt
from domain.inbox.signatures import Refused, malformed

#: An event id we store: what providers use (SNS uuids, wamids, numbers), nothing else.
_EVENT_ID = re.compile(r"^[A-Za-z0-9._:=+/@-]{1,200}$")
_SNS_TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")
_SNS_FIELDS = ("Type", "MessageId", "TopicArn", "Message", "Timestamp", "SignatureVersion",
               "Signature", "SigningCertURL")
_SNS_CONFIRMATION_FIELDS = ("SubscribeURL", "Token")


def _object(body: bytes) -> dict[str, Any]:
    try:
        doc = msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError, ValueError):
        raise malformed("the body is not JSON") from None
    if not isinstance(doc, dict):
        raise malformed("the body must be a JSON object")
    return doc


def _event_id(value: Any, field: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not _EVENT_ID.match(value):
        raise malformed(f"{field} is missing or not an event id")
    return value


def _kept(headers: Mapping[str, str], names: tuple[str, ...]) -> dict[str, str]:
    """The headers worth keeping with the body: those verification read, and the type."""
    return {n: headers[n][:500] for n in names if n in headers}


# --- SES through SNS --------------------------------------------------------------------------

async def sns(body: bytes, headers: Mapping[str, str]) -> Receipt:
    """An SNS HTTP(S) delivery: a Notification (an SES event) is stored keyed by its MessageId;
    a SubscriptionConfirmation is confirmed (GET SubscribeURL) once verified; an
    UnsubscribeConfirmation is verified and noted. Refused before any certificate is fetched:
    a topic not in `sns_topic_arns`, a SigningCertURL off the pattern, a stale Timestamp."""
    message = _object(body)
    kind = message.get("Type")
    if kind not in _SNS_TYPES:
        raise malformed("Type must be Notification, SubscriptionConfirmation or "
                        "UnsubscribeConfirmation")
    declared = headers.get("x-amz-sns-message-type")
    if declared is not None and declared != kind:
        raise malformed("x-amz-sns-message-type does not match Type")
    needed = _SNS_FIELDS + (_SNS_CONFIRMATION_FIELDS if kind != "Notification" else ())
    for field in needed:
        if not isinstance(message.get(field), str) or not message[field]:
            raise malformed(f"{field} is required (a string)")
    if "Subject" in message and not isinstance(message["Subject"], str | None):
        raise malformed("Subject must be a string")
    event_id = _event_id(message["MessageId"], "MessageId")
    if message["TopicArn"] not in settings.get().sns_topic_arns:
        raise Refused(401, "unknown_topic", "messages of this topic are not accepted here")
    if not signatures.cert_url_allowed(message["SigningCertURL"]):
        raise Refused(401, "cert_url", "SigningCertURL is not an SNS certificate address")
    signatures.sns_timestamp(message["Timestamp"])
    await signatures.verify_sns(message)
    if kind == "SubscriptionConfirmation":
        await _confirm_subscription(message)
        return Receipt(note="subscription confirmed")
    if kind == "UnsubscribeConfirmation":
        await _note_subscription(message, "webhooks:sns_unsubscribed")
        return Receipt(note="unsubscribe noted")
    return await receive(provider="ses", event_ids=[event_id], body=body,
                         headers=_kept(headers, ("x-amz-sns-message-type",
                                                 "x-amz-sns-message-id", "x-amz-sns-topic-arn")))


async def _confirm_subscription(message: dict[str, Any]) -> None:
    """Visit SubscribeURL (only an address matching `sns_subscribe_url_pattern`, no redirects):
    that is how SNS learns we want its messages. A failure is a 503, so SNS sends it again."""
    url = message["SubscribeURL"]
    if re.match(settings.get().sns_subscribe_url_pattern, url) is None:  # a prefix
        raise Refused(400, "subscribe_url", "SubscribeURL is not an SNS address")
    try:
        async with httpx.AsyncClient(timeout=5.0, follow_redirects=False) as client:
            answer = await client.get(url)
    except httpx.HTTPError:
        raise Refused(503, "subscribe_failed", "the subscription could not be confirmed") \
            from None
    if answer.status_code != 200:
        raise Refused(503, "subscribe_failed", "the subscription could not be confirmed")
    await _note_subscription(message, "webhooks:sns_subscribed")


async def _note_subscription(message: dict[str, Any], action: str) -> None:
    async with db.transaction():
        await record(None, action=action, resource_type="webhook",
                     detail={"provider": "ses", "topic": message["TopicArn"][:300]})


# --- ZeptoMail --------------------------------------------------------------------------------

async def zeptomail(body: bytes, headers: Mapping[str, str]) -> Receipt:
    """A ZeptoMail bounce / open / click webhook, keyed by its `webhook_request_id`."""
    signatures.verify_zeptomail(headers.get("producer-signature"), body)
    doc = _object(body)
    event_id = _event_id(doc.get("webhook_request_id"), "webhook_request_id")
    return await receive(provider="zeptomail", event_ids=[event_id], body=body,
                         headers=_kept(headers, ("producer-signature",)))


# --- WhatsApp (Meta) --------------------------------------------------------------------------

def handshake(mode: str | None, token: str | None, challenge: str | None) -> str | None:
    """Meta's GET verification: the challenge to echo, or None (answer 403)."""
    if mode != "subscribe" or not challenge or not re.fullmatch(r"[A-Za-z0-9_.-]{1,200}",
                                                                challenge):
        return None
    return challenge if signatures.verify_token(token, settings.get().whatsapp_verify_token) \
        else None


def whatsapp_event_ids(doc: dict[str, Any], body: bytes) -> list[str]:
    """One event per status (`<wamid>:<status>`: Meta batches several in one POST and has no
    event id of its own); a POST with no status (an inbound message) is kept under its digest."""
    ids: list[str] = []
    entries = doc.get("entry")
    if not isinstance(entries, list):
        raise malformed("entry must be a list")
    for entry in entries:
        changes = entry.get("changes") if isinstance(entry, dict) else None
        for change in changes if isinstance(changes, list) else []:
            value = change.get("value") if isinstance(change, dict) else None
            statuses = value.get("statuses") if isinstance(value, dict) else None
            for status in statuses if isinstance(statuses, list) else []:
                if not isinstance(status, dict):
                    raise malformed("statuses[] must be objects")
                wamid = _event_id(status.get("id"), "statuses[].id")
                state = status.get("status")
                if not isinstance(state, str) or not re.fullmatch(r"[a-z_]{1,30}", state):
                    raise malformed("statuses[].status is missing")
                ids.append(f"{wamid}:{state}")
    return ids or [f"body:{hashlib.sha256(body).hexdigest()}"]


async def whatsapp(body: bytes, headers: Mapping[str, str]) -> Receipt:
    signatures.verify_meta(headers.get("x-hub-signature-256"), body)
    doc = _object(body)
    return await receive(provider="whatsapp", event_ids=whatsapp_event_ids(doc, body), body=body,
                         headers=_kept(headers, ("x-hub-signature-256",)))
