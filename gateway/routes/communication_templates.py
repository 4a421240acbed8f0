"""A clinic's notification templates: read (the clinic's own or the shipped default), saved,
removed, and previewed against a sample appointment."""

from __future__ import annotations

import uuid
from typing import Annotated

import msgspec
from litestar import Router, delete, get, post, put
from litestar.params import FromPath, JSONBody

from domain.communication import queries
from domain.communication.commands import templates
from domain.communication.models import Template
from domain.communication.templates.engine import MAX_SOURCE, Rendered
from gateway.context import CurrentPrincipal
from gateway.routes import NO_NUL, Body

Source = Annotated[str, msgspec.Meta(max_length=MAX_SOURCE, pattern=NO_NUL)]
PATH = "/templates/{kind:str}/{channel:str}/{locale:str}"


class TemplatePut(Body):
    source: Source


class PreviewBody(Body):
    #: An unsaved source to render; left out: the template GET shows.
    source: Source | msgspec.UnsetType = msgspec.UNSET


@get(PATH, permission="communication_templates:read")
async def get_template(principal: CurrentPrincipal, clinic_id: FromPath[uuid.UUID],
                       kind: FromPath[str], channel: FromPath[str],
                       locale: FromPath[str]) -> Template:
    """The clinic's own template (`origin: "clinic"`; the most specific of `hi-in`, `hi`,
    `en`) or the shipped default (`origin: "default"`, with the same fallback)."""
    return await queries.get_template(principal, clinic_id, kind=kind, channel=channel,
                                      locale=locale)


@put(PATH, permission="communication_templates:manage")
async def put_template(principal: CurrentPrincipal, clinic_id: FromPath[uuid.UUID],
                       kind: FromPath[str], channel: FromPath[str], locale: FromPath[str],
                       data: JSONBody[TemplatePut]) -> Template:
    """Saved under the normalised locale (`hi-IN` → `hi-in`) after it renders against the
    sample appointment; a template that does not parse, names an unknown variable, reaches
    outside its context or renders over the channel's limits is 400 naming `template`, and
    nothing is stored. Audited (without the source)."""
    return await templates.put_template(principal, clinic_id, kind=kind, channel=channel,
                                        locale=locale, source=data.source)


@delete(PATH, permission="communication_templates:manage", status_code=204)
async def delete_template(principal: CurrentPrincipal, clinic_id: FromPath[uuid.UUID],
                          kind: FromPath[str], channel: FromPath[str],
                          locale: FromPath[str]) -> None:
    """Back to the shipped default (404 when the clinic has no template for this locale)."""
    await templates.delete_template(principal, clinic_id, kind=kind, channel=channel,
                                    locale=locale)


@post(PATH + "/preview", permission="communication_templates:read", status_code=200)
async def preview_template(principal: CurrentPrincipal, clinic_id: FromPath[uuid.UUID],
                           kind: FromPath[str], channel: FromPath[str], locale: FromPath[str],
                           data: JSONBody[PreviewBody | None] = None) -> Rendered:
    """The template rendered against a sample appointment with the clinic's name and time
    zone: `source` when given (unsaved; 400 naming `template` when it would not save), else
    what GET shows. Changes nothing."""
    return await queries.preview_template(principal, clinic_id, kind=kind, channel=channel,
                                          locale=locale,
                                          source=data.source if data and data.source else None)


router = Router(path="/clinics/{clinic_id:str}/communication",
                route_handlers=[get_template, put_template, delete_template, preview_template],
                tags=["communication"])
