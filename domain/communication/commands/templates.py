"""A clinic's own notification templates: saved (validated first), removed (the shipped default
applies again), and rendered at send time.

A template is untrusted input: it is validated against the sample appointment before it is
stored, and at send time a clinic template that still fails (data the sample did not have: no
appointment time for a walk-in, a location name long enough to push an SMS over its limit)
gives way to the shipped default for that channel, and the clinic's admins are told once
(events.template_failed). No audit row, event or log line carries a template's source or a
rendered text."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

from domain import db
from domain.access.policies import require
from domain.audit.commands import record
from domain.communication import events
from domain.communication.models import Channel, Template
from domain.communication.templates import engine
from domain.communication.templates.context import TemplateContext
from domain.errors import Invalid, NotFound, invalid_field
from domain.principal import Principal
from domain.tenancy.queries import load_clinic

log = logging.getLogger("carewire.communication.templates")


def template_key(kind: str, channel: str, locale: str) -> tuple[str, Channel, list[str]]:
    """(kind, channel, the locale's candidates, the normalised tag first), or `Invalid` naming
    the field that is wrong."""
    if kind not in engine.KINDS:
        raise invalid_field("kind", f"one of {', '.join(engine.KINDS)}")
    if channel not in engine.BLOCKS:
        raise invalid_field("channel", "email, push, whatsapp or sms")
    if len(locale) > 35:
        raise invalid_field("locale", "not a locale tag, e.g. en, hi or hi-IN")
    return kind, channel, engine.locale_candidates(locale)  # type: ignore[return-value]


def template_from(kind: str, channel: Channel, locale: str, row: dict[str, Any] | None) -> Template:
    """The clinic's template (`row`: its locale, source, updated_at, updated_by) or the default."""
    default, default_locale = engine.shipped_source(kind, channel, locale)
    if row is None:
        return Template(kind=kind, channel=channel, locale=locale, source=default,
                        origin="default", source_locale=default_locale, default_source=default,
                        updated_at=None, updated_by=None)
    return Template(kind=kind, channel=channel, locale=locale, source=row["source"],
                    origin="clinic", source_locale=row["locale"], default_source=default,
                    updated_at=row["updated_at"], updated_by=row["updated_by"])


def most_specific(rows: Sequence[dict[str, Any]], candidates: list[str]) -> dict[str, Any] | None:
    """Of a channel's clinic templates, the one whose locale comes first among the candidates."""
    ranked = sorted((r for r in rows if r["locale"] in candidates),
                    key=lambda r: candidates.index(r["locale"]))
    return ranked[0] if ranked else None


async def put_template(principal: Principal, clinic_id: uuid.UUID, *, kind: str, channel: str,
                       locale: str, source: str) -> Template:
    """Save the clinic's template for a kind, channel and locale (stored under the normalised
    tag, `hi-in`). Refused whole (`Invalid` naming `template`) when it does not parse, names a
    variable the context lacks, reaches outside its context or renders over the channel's
    limits. Audited without the source."""
    require(principal, "communication_templates:manage", clinic_id,
            resource_type="communication_template")
    kind, ch, candidates = template_key(kind, channel, locale)
    engine.validate(source, ch)
    async with db.transaction():
        if principal.is_super_admin:  # a member's clinic exists; a super admin may name any id
            await load_clinic(clinic_id)
        rows = await db.fetch(
            """INSERT INTO communication_templates
                   (clinic_id, kind, channel, locale, source, updated_by)
               VALUES ($1, $2, $3, $4, $5, $6)
               ON CONFLICT (clinic_id, kind, channel, locale) DO UPDATE
                   SET source = EXCLUDED.source, updated_by = EXCLUDED.updated_by,
                       updated_at = now()
               RETURNING locale, source, updated_at, updated_by""",
            clinic_id, kind, ch, candidates[0], source, principal.user_id)
        await record(principal, action="communication_templates:manage",
                     resource_type="communication_template", clinic_id=clinic_id,
                     detail={"kind": kind, "channel": ch, "locale": candidates[0],
                             "change": "saved", "length": len(source)})
    await events.template_saved(clinic_id, kind, ch, candidates[0])
    return template_from(kind, ch, candidates[0], rows[0])


async def delete_template(principal: Principal, clinic_id: uuid.UUID, *, kind: str, channel: str,
                          locale: str) -> None:
    """Back to the shipped default. No clinic template for exactly this locale is 404."""
    require(principal, "communication_templates:manage", clinic_id,
            resource_type="communication_template")
    kind, ch, candidates = template_key(kind, channel, locale)
    async with db.transaction():
        rows = await db.fetch(
            """DELETE FROM communication_templates
               WHERE clinic_id = $1 AND kind = $2 AND channel = $3 AND locale = $4 RETURNING 1""",
            clinic_id, kind, ch, candidates[0])
        if not rows:
            raise NotFound("template not found", resource_type="communication_template")
        await record(principal, action="communication_templates:manage",
                     resource_type="communication_template", clinic_id=clinic_id,
                     detail={"kind": kind, "channel": ch, "locale": candidates[0],
                             "change": "removed"})
    await events.template_saved(clinic_id, kind, ch, candidates[0])


async def render_for_send(*, clinic_id: uuid.UUID, kind: str, channels: list[Channel],
                          locale: str, context: TemplateContext) -> dict[Channel, engine.Rendered]:
    """Each channel's message for a notification, in the caller's transaction: the clinic's
    most specific template for the locale (`hi-in`, then `hi`, then `en`), else the shipped
    default. One statement loads the clinic's templates. A clinic template that fails is
    replaced by the shipped default for that channel and reported to the clinic's admins
    once (its source and the context are never logged)."""
    if not channels:
        return {}
    kind, _, candidates = template_key(kind, channels[0], locale)
    rows = await db.fetch(
        """SELECT channel, locale, source FROM communication_templates
           WHERE clinic_id = $1 AND kind = $2 AND channel = ANY($3::text[])
             AND locale = ANY($4::text[])""",
        clinic_id, kind, list(channels), candidates)
    out: dict[Channel, engine.Rendered] = {}
    for channel in channels:
        own = most_specific([r for r in rows if r["channel"] == channel], candidates)
        if own is not None:
            try:
                out[channel] = engine.render(kind, channel, locale, context,
                                             override=own["source"], override_locale=own["locale"])
                continue
            except Invalid:
                log.warning("clinic %s: template %s/%s/%s failed at send time; sent the default",
                            clinic_id, kind, channel, own["locale"])
                await events.template_failed(clinic_id, kind, channel, own["locale"])
        out[channel] = engine.render(kind, channel, locale, context)
    return out
