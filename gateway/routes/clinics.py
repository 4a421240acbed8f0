from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
from litestar import Router, get, patch, post
from litestar.params import FromPath, FromQuery, JSONBody

from domain.paging import Page
from domain.tenancy import commands, queries
from domain.tenancy.models import Clinic, Location
from gateway.context import CurrentPrincipal
from gateway.routes import Body, Name

UNSET = msgspec.UNSET
Timezone = Annotated[str, msgspec.Meta(max_length=64)]


class ClinicCreate(Body):
    name: Name
    timezone: Timezone
    settings: dict[str, Any] | None = None


class ClinicPatch(Body):
    name: Name | msgspec.UnsetType = UNSET
    timezone: Timezone | msgspec.UnsetType = UNSET
    settings: dict[str, Any] | msgspec.UnsetType = UNSET


class LocationCreate(Body):
    name: Name
    address: Annotated[str, msgspec.Meta(max_length=500)] = ""
    timezone: Timezone | None = None


@post("/", permission="clinics:create")
async def create_clinic(principal: CurrentPrincipal, data: JSONBody[ClinicCreate]) -> Clinic:
    return await commands.create_clinic(principal, name=data.name, timezone=data.timezone,
                                        settings=data.settings)


@get("/", permission="clinics:read")
async def list_clinics(
    principal: CurrentPrincipal, limit: FromQuery[int] = 50, cursor: FromQuery[str | None] = None
) -> Page[Clinic]:
    return await queries.list_clinics(principal, limit=limit, cursor=cursor)


@get("/{clinic_id:str}", permission="clinics:read")
async def get_clinic(principal: CurrentPrincipal, clinic_id: FromPath[uuid.UUID]) -> Clinic:
    return await queries.get_clinic(principal, clinic_id)


@patch("/{clinic_id:str}", permission="clinics:update")
async def update_clinic(
    principal: CurrentPrincipal, clinic_id: FromPath[uuid.UUID], data: JSONBody[ClinicPatch]
) -> Clinic:
    return await commands.update_clinic(principal, clinic_id, name=data.name,
                                        timezone=data.timezone, settings=data.settings)


@post("/{clinic_id:str}/locations", permission="locations:create")
async def create_location(
    principal: CurrentPrincipal, clinic_id: FromPath[uuid.UUID], data: JSONBody[LocationCreate]
) -> Location:
    return await commands.create_location(principal, clinic_id, name=data.name,
                                          address=data.address, timezone=data.timezone)


@get("/{clinic_id:str}/locations", permission="locations:read")
async def list_locations(
    principal: CurrentPrincipal, clinic_id: FromPath[uuid.UUID], limit: FromQuery[int] = 50,
    cursor: FromQuery[str | None] = None,
) -> Page[Location]:
    return await queries.list_locations(principal, clinic_id, limit=limit, cursor=cursor)


router = Router(
    path="/clinics",
    route_handlers=[create_clinic, list_clinics, get_clinic, update_clinic, create_location,
                    list_locations],
    tags=["tenancy"],
)
