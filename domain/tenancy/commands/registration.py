"""Patient self-registration, for clinics whose settings allow it."""

from __future__ import annotations

import uuid

import msgspec

from domain import db, ratelimit
from domain.access import rooms
from domain.access.roles import Role
from domain.audit.commands import Outcome, record
from domain.errors import Conflict, Forbidden, NotFound
from domain.events.commands import record as record_event
from domain.identity.commands import create_user
from domain.principal import RequestMeta
from domain.settings import get as app_settings
from domain.tenancy import events
from domain.tenancy.commands._membership import _insert_membership
from domain.tenancy.queries import (
    clinic_from_row,
)


class RegistrationAccepted(msgspec.Struct, frozen=True):
    """The one answer to a well-formed self-registration, whether the email was new or not."""

    status: str = "accepted"
    message: str = ("Registration received. If this email was new, its account is ready: log "
                    "in with it now. If you already had an account, log in with your existing "
                    "password; nothing about it has changed.")


async def register_patient(
    *, clinic_id: uuid.UUID, email: str, password: str, name: str, phone: str | None,
    meta: RequestMeta,
) -> RegistrationAccepted:
    """Self-registration, for clinics whose settings allow it; rate limited per source address.

    A new email gets an account and a PATIENT membership and can log in at once. An email that
    already has an account gets the same answer and nothing else: no membership (anyone could
    otherwise enrol a stranger as this clinic's patient, or learn who has an account) and no
    change to the account. Telling the owner about the attempt needs the message delivery
    pipeline, which does not exist yet; until then it is only audited."""
    cfg = app_settings()
    await ratelimit.consume("register-ip", meta.ip or "unknown",
                            limit=cfg.register_attempts_per_ip,
                            window_seconds=cfg.register_window_seconds)
    async with db.transaction():
        rows = await db.fetch("SELECT * FROM clinics WHERE id = $1", clinic_id)
        if not rows:
            raise NotFound("clinic not found", resource_type="clinic", resource_id=clinic_id)
        if not clinic_from_row(rows[0]).settings.allow_self_registration:
            raise Forbidden("this clinic does not accept self-registration",
                            resource_type="clinic", resource_id=clinic_id)
        try:
            # Validates and hashes before it looks for the email, so both paths cost the same.
            user_id = await create_user(email=email, name=name, password=password, phone=phone)
        except Conflict:
            await record(None, action="auth:register", resource_type="user",
                         outcome=Outcome.FAILED, clinic_id=clinic_id,
                         detail={"reason": "existing_account"}, meta=meta)
            return RegistrationAccepted()
        await _insert_membership(user_id, clinic_id, Role.PATIENT, None)
        await record_event(None, clinic_id=clinic_id,
                           event=events.MemberAdded(user_id=user_id, role=Role.PATIENT.value,
                                                    location_id=None),
                           audience=[rooms.clinic_staff(clinic_id), rooms.user(user_id)])
        await record(None, action="auth:register", resource_type="user", resource_id=user_id,
                     clinic_id=clinic_id, actor_id=user_id, meta=meta)
    return RegistrationAccepted()
