"""Push registrations: a user's own devices. Any signed-in user manages their own; there is no
clinic permission involved (a device belongs to a person, not to a clinic)."""

from __future__ import annotations

import re
import uuid
from typing import Any

from domain import db, validation
from domain.audit.commands import record
from domain.communication.models import Device
from domain.errors import Conflict, NotFound, invalid_field
from domain.principal import Principal

#: Active devices one user may hold. Past it a registration is 409 `conflict` (the request is
#: well-formed; the account is full): remove one first. Bounds what one account can make the
#: pipeline send to, and what a leaked access token can register.
MAX_DEVICES = 20

#: FCM registration tokens: URL-safe characters and colons (Google publishes no fixed length).
_FCM = re.compile(r"[A-Za-z0-9_:\-]{16,4096}")
#: APNs device tokens: 32 bytes, sent as 64 hex digits.
_APNS = re.compile(r"[0-9a-f]{64}")


def check_token(kind: str, token: str) -> str:
    """The token as stored (APNs hex lowercased), or 400 naming `token`."""
    if kind == "fcm":
        if not _FCM.fullmatch(token):
            raise invalid_field("token", "an FCM registration token: 16 to 4096 of A-Z a-z 0-9 _ : -")
        return token
    if kind == "apns":
        lowered = token.lower()
        if not _APNS.fullmatch(lowered):
            raise invalid_field("token", "an APNs device token: 64 hexadecimal digits")
        return lowered
    raise invalid_field("kind", "fcm or apns")


def device_from_row(row: dict[str, Any]) -> Device:
    return Device(id=row["id"], kind=row["kind"], platform=row["platform"],
                  app_version=row["app_version"], token_last4=row["token_last4"],
                  created_at=row["created_at"], last_seen_at=row["last_seen_at"])


async def register_device(principal: Principal, *, kind: str, token: str, platform: str,
                          app_version: str | None = None) -> tuple[Device, bool]:
    """Register the caller's push token; returns the device and whether it is new to the caller.

    A token is one row (UNIQUE (kind, token)), so registering is an upsert:
    - new token: a new device (new to the caller: True);
    - the caller's own token again (an app start, an update): the same device, un-retired,
      with `last_seen_at`, platform and app version refreshed (False);
    - a token another user holds: the device moves to the caller (True), because a token
      names an app install and the install now signs in as the caller (a phone that changed
      hands, or one person's second account on it); the previous owner stops receiving
      pushes on it, and the device keeps its id. Whoever presents a token is trusted to be
      that install: FCM and APNs hand tokens only to the app on the device, so a token copied
      elsewhere can at most take notifications away from its owner. The sender must check,
      when it sends, that the device still belongs to the message's recipient: a message
      queued for the previous owner must not reach the new one.
    The caller's registrations take turns (a transaction-scoped advisory lock on the user),
    so `MAX_DEVICES` holds however many arrive at once.
    """
    stored = check_token(kind, token)
    if platform not in ("android", "ios", "web"):
        raise invalid_field("platform", "android, ios or web")
    version = None if app_version is None else validation.text(app_version, "app_version",
                                                               max_length=40)
    async with db.transaction():
        await db.fetch("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                       f"devices:{principal.user_id}")
        rows = await db.fetch(
            """SELECT count(*) AS n FROM devices
               WHERE user_id = $1 AND retired_at IS NULL AND NOT (kind = $2 AND token = $3)""",
            principal.user_id, kind, stored,
        )
        if rows[0]["n"] >= MAX_DEVICES:
            raise Conflict(f"at most {MAX_DEVICES} active devices per user; remove one first",
                           resource_type="device")
        rows = await db.fetch(
            """WITH before AS (SELECT user_id FROM devices WHERE kind = $3 AND token = $4)
               INSERT INTO devices AS d (id, user_id, kind, token, platform, app_version)
               VALUES ($1, $2, $3, $4, $5, $6)
               ON CONFLICT (kind, token) DO UPDATE
               SET user_id = EXCLUDED.user_id, platform = EXCLUDED.platform,
                   app_version = EXCLUDED.app_version, last_seen_at = now(),
                   created_at = CASE WHEN d.user_id = EXCLUDED.user_id THEN d.created_at
                                     ELSE now() END,
                   retired_at = NULL, retired_reason = NULL
               RETURNING d.id, d.kind, d.platform, d.app_version, right(d.token, 4) AS token_last4,
                         d.created_at, d.last_seen_at,
                         (SELECT user_id FROM before) AS previous_user""",
            uuid.uuid4(), principal.user_id, kind, stored, platform, version,
        )
        row = rows[0]
        fresh = row["previous_user"] != principal.user_id
        await record(principal, action="devices:register", resource_type="device",
                     resource_id=row["id"],
                     detail={"kind": kind, "platform": platform, "new": fresh,
                             "moved": fresh and row["previous_user"] is not None})
    return device_from_row(row), fresh


async def remove_device(principal: Principal, device_id: uuid.UUID) -> None:
    """The caller retires one of their devices (`retired_reason` "removed"; one the provider
    already retired keeps its reason). Someone else's, or none, is 404; removing one's own
    device twice is not an error (a retried DELETE)."""
    async with db.transaction():
        rows = await db.fetch(
            """UPDATE devices SET retired_at = coalesce(retired_at, now()),
                                  retired_reason = coalesce(retired_reason, 'removed')
               WHERE id = $1 AND user_id = $2 RETURNING kind""",
            device_id, principal.user_id,
        )
        if not rows:
            raise NotFound("device not found", resource_type="device", resource_id=device_id)
        await record(principal, action="devices:remove", resource_type="device",
                     resource_id=device_id)


async def retire(device_id: uuid.UUID, reason: str) -> bool:
    """The pipeline's: the provider said this token is dead (e.g. FCM `UNREGISTERED`), so it is
    never used again unless its app registers it anew. Whether this call retired it (False:
    already retired, or gone)."""
    validation.text(reason, "reason", max_length=80)
    rows = await db.fetch(
        """UPDATE devices SET retired_at = now(), retired_reason = $2
           WHERE id = $1 AND retired_at IS NULL RETURNING 1""",
        device_id, reason,
    )
    return bool(rows)
