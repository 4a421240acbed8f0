"""Check-in codes a patient presents: a location's QR code (printed once, at the desk) or an
appointment's check-in link. Both are HMACs under a key derived from the server secret, so
they cannot be forged and need no table; the check-in window limits when they work."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid

from domain import settings


def _mac(kind: str, target: uuid.UUID) -> str:
    key = hmac.new(settings.get().jwt_secret.encode(), b"carewire check-in v1", hashlib.sha256).digest()
    digest = hmac.new(key, f"{kind}:{target}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode()


def location_code(location_id: uuid.UUID) -> str:
    return _mac("location", location_id)


def appointment_code(appointment_id: uuid.UUID) -> str:
    return _mac("appointment", appointment_id)


def accepts(code: str, *, location_id: uuid.UUID | None, appointment_id: uuid.UUID) -> bool:
    candidates = [appointment_code(appointment_id)]
    if location_id is not None:
        candidates.append(location_code(location_id))
    return any(hmac.compare_digest(code.encode(), c.encode()) for c in candidates)
