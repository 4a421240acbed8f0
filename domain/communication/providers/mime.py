"""The one MIME rendering of an outbound email, shared by the adapters that send raw mail (SMTP,
SES): multipart/alternative text + html, From with the clinic's name, Reply-To, a Message-ID
derived from the idempotency key, and the message's extra headers (List-Unsubscribe...).

Extra headers are written verbatim on one line (at most 998 characters, RFC 5322), never folded:
a `List-Unsubscribe` URL longer than a 78-character line would otherwise become an RFC 2047
encoded-word, which RFC 2369 readers (the mail clients offering one-click unsubscribe) do not
decode, and whitespace folded into the URL is something RFC 2369 forbids."""

from __future__ import annotations

import re
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate

from domain.communication.models import Outbound
from domain.communication.providers.base import Rejected, Unavailable

#: Headers we set ourselves; a message's extra headers may not replace them.
OWN = frozenset({"from", "to", "subject", "reply-to", "message-id", "date", "mime-version",
                 "content-type", "content-transfer-encoding"})
_UNSAFE = re.compile(r"[^A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]")
_FIELD_NAME = re.compile(r"^[!-9;-~]{1,76}$")
_VERBATIM = re.compile(r"^[ -~]*$")
#: Application headers are folded as usual; headers set raw (the extra ones) are left as written.
_POLICY = SMTP.clone(refold_source="none")


def message_id(message: Outbound) -> str:
    """`<key@domain>`: the same for every send of one message, so a duplicate delivery (a retry
    after an unknown outcome) is recognisable in the recipient's mailbox and the server logs."""
    domain = (message.sender.from_address or "carewire.invalid").rpartition("@")[2] or "carewire.invalid"
    local = _UNSAFE.sub("-", message.idempotency_key).strip(".") or str(message.message_id)
    return f"<{local}@{domain}>"


def render(provider: str, message: Outbound) -> EmailMessage:
    """Raise Unavailable when no sender is configured (the clinic's setup, not this message) and
    Rejected when the message cannot be written as mail (a line break in a header...)."""
    sender = message.sender
    if not sender.from_address:
        raise Unavailable(f"{provider}: no from address configured for email")
    msg = EmailMessage(policy=_POLICY)
    try:
        user, _, domain = sender.from_address.rpartition("@")
        msg["From"] = Address(display_name=sender.from_name or "", username=user, domain=domain)
        msg["To"] = message.to
        msg["Subject"] = message.subject or ""
        if sender.reply_to:
            msg["Reply-To"] = sender.reply_to
        msg["Message-ID"] = message_id(message)
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        for name, value in message.headers.items():
            if name.strip().lower() in OWN:
                continue
            if not (_FIELD_NAME.match(name) and _VERBATIM.match(value)
                    and len(name) + 2 + len(value) <= 998):
                raise ValueError("an extra header must be printable ASCII on one line")
            msg.set_raw(name, value)
        msg.set_content(message.text)
        if message.html:
            msg.add_alternative(message.html, subtype="html")
    except (ValueError, TypeError, IndexError) as exc:
        raise Rejected(f"{provider}: the message cannot be written as mail "
                       f"({type(exc).__name__})") from None
    return msg
