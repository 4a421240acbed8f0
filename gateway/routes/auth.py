from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
from litestar import Request, Router, post
from litestar.params import JSONBody

from domain.identity import commands
from domain.tenancy.commands import RegistrationAccepted, register_patient
from gateway.context import CurrentPrincipal, request_meta
from gateway.routes import AUTHENTICATED, NO_NUL, PUBLIC, Body, Email, Name, Password, Phone


class LoginBody(Body):
    email: Email
    password: Password


class RefreshBody(Body):
    refresh_token: Annotated[str, msgspec.Meta(min_length=1, max_length=512, pattern=NO_NUL)]


class RegisterBody(Body):
    clinic_id: uuid.UUID
    email: Email
    password: Password
    name: Name
    phone: Phone | None = None


@post("/login", permission=PUBLIC, self_audited=True, status_code=200)
async def login(request: Request[Any, Any, Any], data: JSONBody[LoginBody]) -> commands.TokenPair:
    return await commands.login(email=data.email, password=data.password,
                                meta=request_meta(request),
                                user_agent=request.headers.get("user-agent"))


@post("/refresh", permission=PUBLIC, self_audited=True, status_code=200)
async def refresh(request: Request[Any, Any, Any], data: JSONBody[RefreshBody]) -> commands.TokenPair:
    return await commands.refresh(refresh_token=data.refresh_token, meta=request_meta(request))


@post("/logout", permission=AUTHENTICATED, status_code=204)
async def logout(principal: CurrentPrincipal) -> None:
    await commands.logout(principal)


@post("/register", permission=PUBLIC, status_code=202)
async def register(request: Request[Any, Any, Any],
                   data: JSONBody[RegisterBody]) -> RegistrationAccepted:
    """The same 202 for a new and an already registered email (see register_patient)."""
    return await register_patient(
        clinic_id=data.clinic_id, email=data.email, password=data.password, name=data.name,
        phone=data.phone, meta=request_meta(request),
    )


router = Router(path="/auth", route_handlers=[login, refresh, logout, register], tags=["identity"])
