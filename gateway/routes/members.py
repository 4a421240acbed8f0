from __future__ import annotations

import uuid

import msgspec
from litestar import Response, Router, delete, get, patch, post
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody

from domain.access.roles import Role
from domain.paging import Page
from domain.tenancy import commands, queries
from domain.tenancy.models import ClinicInvitation, InvitationReceipt, Member
from gateway.context import CurrentPrincipal
from gateway.routes import Body, Email, Name, Password, Phone

UNSET = msgspec.UNSET


class MemberCreate(Body):
    email: Email
    name: Name
    role: Role
    location_id: uuid.UUID | None = None
    password: Password | None = None
    phone: Phone | None = None


class MemberPatch(Body):
    """Only the role and location change here; identity and clinic never do."""

    role: Role | msgspec.UnsetType = UNSET
    location_id: uuid.UUID | msgspec.UnsetType | None = UNSET


@post("/", permission="members:create", responses={
    202: ResponseSpec(data_container=InvitationReceipt,
                      description="Invited (every caller but a SUPER_ADMIN): nothing about the "
                                  "person is disclosed")})
async def add_member(
    principal: CurrentPrincipal, clinic_id: FromPath[uuid.UUID], data: JSONBody[MemberCreate]
) -> Response[Member | InvitationReceipt]:
    """A SUPER_ADMIN links directly: 201 and the member (the account is created when the email
    is new; an existing account is linked, audited with `direct_link`). Anyone else invites:
    202 and the same receipt `{invitation_id, clinic_id, email, role, location_id, status,
    expires_at}` whether or not the email has an account or is already a member, never a name
    or user id; a `password` is refused. The person accepts at
    `POST /users/me/invitations/{id}/accept`. An invitation to an email without an account
    cannot be accepted until a verified delivery link exists (a later issue): registering the
    address does not claim it. See `domain.tenancy.commands.invite`."""
    result = await commands.add_member(
        principal, clinic_id, email=data.email, name=data.name, role=data.role,
        location_id=data.location_id, password=data.password, phone=data.phone,
    )
    return Response(result, status_code=201 if isinstance(result, Member) else 202)


@get("/", permission="members:read")
async def list_members(
    principal: CurrentPrincipal, clinic_id: FromPath[uuid.UUID], limit: FromQuery[int] = 50,
    cursor: FromQuery[str | None] = None,
) -> Page[Member]:
    return await queries.list_members(principal, clinic_id, limit=limit, cursor=cursor)


@patch("/{user_id:str}", permission="members:update")
async def update_member(
    principal: CurrentPrincipal, clinic_id: FromPath[uuid.UUID], user_id: FromPath[uuid.UUID],
    data: JSONBody[MemberPatch],
) -> Member:
    return await commands.update_member(principal, clinic_id, user_id, role=data.role,
                                        location_id=data.location_id)


@delete("/{user_id:str}", permission="members:delete", status_code=204)
async def remove_member(
    principal: CurrentPrincipal, clinic_id: FromPath[uuid.UUID], user_id: FromPath[uuid.UUID]
) -> None:
    await commands.remove_member(principal, clinic_id, user_id)


@get("/", permission="invitations:read")
async def list_invitations(
    principal: CurrentPrincipal, clinic_id: FromPath[uuid.UUID], limit: FromQuery[int] = 50,
    cursor: FromQuery[str | None] = None,
) -> Page[ClinicInvitation]:
    """What the clinic asked and how it stands; never whether an address has an account."""
    return await queries.list_invitations(principal, clinic_id, limit=limit, cursor=cursor)


@post("/{invitation_id:str}/revoke", permission="invitations:revoke", status_code=204)
async def revoke_invitation(
    principal: CurrentPrincipal, clinic_id: FromPath[uuid.UUID],
    invitation_id: FromPath[uuid.UUID],
) -> None:
    await commands.revoke_invitation(principal, clinic_id, invitation_id)


# Members and the invitations that lead to them, under one clinic.
router = Router(
    path="/clinics/{clinic_id:str}",
    route_handlers=[
        Router(path="/members",
               route_handlers=[add_member, list_members, update_member, remove_member]),
        Router(path="/invitations", route_handlers=[list_invitations, revoke_invitation]),
    ],
    tags=["tenancy"],
)
