"""The one access check, in a fixed order: tenancy (another clinic is 404), role (403),
then the object's owner or location (an object out of scope is 404, as if it did not exist)."""

from __future__ import annotations

import uuid

import msgspec

from domain.access.matrix import Scope, scope_of
from domain.access.roles import GRANTABLE, Role
from domain.errors import Forbidden, NotFound
from domain.principal import Principal


class Grant(msgspec.Struct, frozen=True):
    """What a passed check allows; lists filter by it (own rows, own location)."""

    permission: str
    role: Role
    scope: Scope
    user_id: uuid.UUID
    location_id: uuid.UUID | None
    resource_type: str

    def covers(self, *, owner_id: uuid.UUID | None, location_id: uuid.UUID | None) -> bool:
        if self.scope is Scope.OWN:
            return owner_id == self.user_id
        if self.scope is Scope.LOCATION:
            return owner_id == self.user_id or (
                location_id is not None and location_id == self.location_id
            )
        return True

    def check_object(
        self, *, owner_id: uuid.UUID | None, location_id: uuid.UUID | None, object_id: object = None
    ) -> None:
        if not self.covers(owner_id=owner_id, location_id=location_id):
            raise NotFound(f"{self.resource_type} not found", hidden=True,
                           resource_type=self.resource_type, resource_id=object_id)

    def check_target(self, *, owner_id: uuid.UUID | None, location_id: uuid.UUID | None) -> None:
        """For a create: an out-of-scope target is refused outright (there is nothing to hide)."""
        if not self.covers(owner_id=owner_id, location_id=location_id):
            where = "at their own location" if self.scope is Scope.LOCATION else "for themselves"
            raise Forbidden(f"{self.role} may {self.permission} only {where}",
                            resource_type=self.resource_type)

    def check_grantable(self, role: Role) -> None:
        """Nobody hands out (or takes away) a role above their own."""
        if role not in GRANTABLE.get(self.role, frozenset()):
            raise Forbidden(f"{self.role} may not grant or change the role {role}",
                            resource_type=self.resource_type)


def acting_role(principal: Principal, clinic_id: uuid.UUID) -> Role | None:
    if principal.is_super_admin:
        return Role.SUPER_ADMIN
    m = principal.membership(clinic_id)
    return m.role if m else None


def require(
    principal: Principal,
    permission: str,
    clinic_id: uuid.UUID,
    *,
    resource_type: str,
    resource_id: object | None = None,
) -> Grant:
    role = acting_role(principal, clinic_id)
    if role is None:
        raise NotFound(f"{resource_type} not found", hidden=True, resource_type=resource_type,
                       resource_id=resource_id)
    scope = scope_of(permission, role)
    if scope is Scope.DENY:
        raise Forbidden(f"{role} may not {permission}", resource_type=resource_type,
                        resource_id=resource_id)
    membership = principal.membership(clinic_id)
    return Grant(
        permission=permission,
        role=role,
        scope=scope,
        user_id=principal.user_id,
        location_id=membership.location_id if membership else None,
        resource_type=resource_type,
    )


def require_global(principal: Principal, permission: str, *, resource_type: str) -> Grant:
    """For actions outside any clinic (creating one): only SUPER_ADMIN's column applies."""
    scope = scope_of(permission, Role.SUPER_ADMIN) if principal.is_super_admin else Scope.DENY
    if scope is Scope.DENY:
        raise Forbidden(f"only a SUPER_ADMIN may {permission}", resource_type=resource_type)
    return Grant(permission=permission, role=Role.SUPER_ADMIN, scope=scope,
                 user_id=principal.user_id, location_id=None, resource_type=resource_type)
