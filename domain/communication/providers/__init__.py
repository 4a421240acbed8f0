"""Every provider adapter, by the name configuration uses. One module per provider; each
speaks its provider's real protocol (see ../shared/PROVIDERS.md)."""

from __future__ import annotations

from domain.communication.providers.base import Provider
from domain.communication.providers.fcm import FCM
from domain.communication.providers.local import LocalSink
from domain.communication.providers.ses import SES
from domain.communication.providers.smtp import SMTP
from domain.communication.providers.sns import SNS
from domain.communication.providers.whatsapp import WhatsApp
from domain.communication.providers.zeptomail import ZeptoMail

PROVIDERS: dict[str, Provider] = {p.name: p for p in (
    LocalSink(),
    ZeptoMail(),
    SES(),
    SMTP(),
    FCM(),
    SNS(),
    WhatsApp(),
)}

