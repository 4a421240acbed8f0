"""Every role x every route x {own clinic, another clinic}, expected answers read from
domain/access/permissions.txt. Another clinic's ids always answer 404 and leak nothing."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from domain.access.matrix import Scope, load, scope_of
from domain.access.roles import Role
from tests.conftest import unique_email

ROLES = [r.value for r in Role]
CALLERS = [*ROLES, "ANONYMOUS"]
SUCCESS = {"GET": 200, "POST": 201, "PATCH": 200, "DELETE": 204}


@dataclass
class World:
    a: dict[str, Any]  # the callers' clinic
    b: dict[str, Any]  # another clinic
    callers: dict[str, dict[str, Any]]  # role -> member of clinic A (SUPER_ADMIN: the root)
    b_secrets: list[str]  # strings of clinic B that must never reach a clinic-A caller


@pytest.fixture(scope="module")
def world(api, sa_token, clinic_factory, member_factory) -> World:
    a, b = clinic_factory("Clinic A"), clinic_factory("Clinic B Secret Name")
    callers: dict[str, dict[str, Any]] = {"SUPER_ADMIN": {"token": sa_token, "user_id": None}}
    for role in ROLES[1:]:
        loc = a["locations"][0]["id"] if role == "LOCATION_HEAD" else None
        callers[role] = member_factory(a["id"], role, location_id=loc, tag=role.lower())
    b_admin = member_factory(b["id"], "CLINIC_ADMIN", tag="b-admin")
    b_patient = member_factory(b["id"], "PATIENT", password=None, tag="b-patient")
    secrets = [b["id"], b["name"], b_admin["email"], b_patient["email"], b_patient["user_id"],
               *(loc["id"] for loc in b["locations"])]
    return World(a=a, b=b, callers=callers, b_secrets=secrets)


def target(api, sa_token, clinic: dict[str, Any], location_index: int | None = 0) -> str:
    """A fresh patient to act on, at one of the clinic's locations."""
    loc = clinic["locations"][location_index]["id"] if location_index is not None else None
    r = api.as_(sa_token, "POST", f"/clinics/{clinic['id']}/members",
                json={"email": unique_email("target"), "name": "Target Patient",
                      "role": "PATIENT", "location_id": loc})
    assert r.status_code == 201, r.text
    return str(r.json()["user_id"])


def request_for(route: str, clinic: dict[str, Any], caller: dict[str, Any], api: Any,
                sa_token: str) -> tuple[str, str, dict[str, Any] | None]:
    cid = clinic["id"]
    loc0 = clinic["locations"][0]["id"]
    match route:
        case "clinics:read":
            return "GET", f"/clinics/{cid}", None
        case "clinics:update":
            return "PATCH", f"/clinics/{cid}", {"name": clinic["name"]}
        case "locations:create":
            return "POST", f"/clinics/{cid}/locations", {"name": f"L {uuid.uuid4().hex[:6]}"}
        case "locations:read":
            return "GET", f"/clinics/{cid}/locations", None
        case "members:create":
            return "POST", f"/clinics/{cid}/members", {
                "email": unique_email("new"), "name": "New Patient", "role": "PATIENT",
                "location_id": loc0}
        case "members:read":
            return "GET", f"/clinics/{cid}/members", None
        case "members:update":
            return ("PATCH", f"/clinics/{cid}/members/{target(api, sa_token, clinic)}",
                    {"role": "NURSE"})
        case "members:delete":
            return "DELETE", f"/clinics/{cid}/members/{target(api, sa_token, clinic)}", None
        case "events:read":
            return "GET", f"/clinics/{cid}/events", None
    raise AssertionError(route)


CLINIC_ROUTES = ["clinics:read", "clinics:update", "locations:create", "locations:read",
                 "members:create", "members:read", "members:update", "members:delete",
                 "events:read"]


def expected_status(permission: str, caller: str, where: str, method: str) -> int:
    if caller == "ANONYMOUS":
        return 401
    if where == "other" and caller != "SUPER_ADMIN":
        return 404
    if scope_of(permission, Role(caller)) is Scope.DENY:
        return 403
    return SUCCESS[method]


@pytest.mark.parametrize("where", ["own", "other"])
@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("permission", CLINIC_ROUTES)
def test_clinic_route(world: World, api, sa_token, permission: str, caller: str,
                      where: str) -> None:
    clinic = world.a if where == "own" else world.b
    who = world.callers.get(caller, {"token": None})
    method, path, body = request_for(permission, clinic, who, api, sa_token)
    r = api.as_(who["token"], method, path, json=body)
    expected = expected_status(permission, caller, where, method)
    assert r.status_code == expected, f"{caller} {method} {path}: {r.status_code} {r.text}"
    if expected >= 400:
        assert r.headers["content-type"].startswith("application/problem+json")
    if where == "other" and caller != "SUPER_ADMIN":
        for secret in world.b_secrets:
            assert str(secret) not in r.text


@pytest.mark.parametrize("caller", CALLERS)
def test_create_clinic(world: World, api, caller: str) -> None:
    who = world.callers.get(caller, {"token": None})
    r = api.as_(who["token"], "POST", "/clinics", json={"name": "New", "timezone": "UTC"})
    if caller == "ANONYMOUS":
        assert r.status_code == 401
    else:
        held = scope_of("clinics:create", Role(caller)) is not Scope.DENY
        assert r.status_code == (201 if held else 403), r.text


@pytest.mark.parametrize("caller", ROLES)
def test_list_clinics_shows_only_own(world: World, api, caller: str) -> None:
    r = api.as_(world.callers[caller]["token"], "GET", "/clinics", params={"limit": 200})
    assert r.status_code == 200
    ids = {c["id"] for c in r.json()["items"]}
    assert world.a["id"] in ids or caller == "SUPER_ADMIN"
    if caller != "SUPER_ADMIN":
        assert ids == {world.a["id"]}
        assert world.b["name"] not in r.text


@pytest.mark.parametrize("caller", ROLES)
def test_member_list_is_scoped(world: World, api, caller: str) -> None:
    """O sees only themselves; L only their location (and themselves); * everyone."""
    scope = scope_of("members:read", Role(caller))
    r = api.as_(world.callers[caller]["token"], "GET", f"/clinics/{world.a['id']}/members",
                params={"limit": 200})
    if scope is Scope.DENY:
        assert r.status_code == 403
        return
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    me = world.callers[caller]["user_id"]
    if scope is Scope.OWN:
        assert [m["user_id"] for m in items] == [me]
    elif scope is Scope.LOCATION:
        loc = world.a["locations"][0]["id"]
        assert items and all(m["location_id"] == loc or m["user_id"] == me for m in items)
    else:
        assert len(items) >= len(ROLES) - 1


LOCATION_BOUND = [(role.value, permission) for permission, row in load().items()
                  for role, scope in row.items()
                  if scope is Scope.LOCATION and permission in ("members:update", "members:delete")]


@pytest.mark.parametrize(("caller", "permission"), LOCATION_BOUND)
def test_location_bound_roles_cannot_touch_other_locations(
    world: World, api, sa_token, permission: str, caller: str
) -> None:
    victim = target(api, sa_token, world.a, location_index=1)
    method = "PATCH" if permission == "members:update" else "DELETE"
    r = api.as_(world.callers[caller]["token"], method,
                f"/clinics/{world.a['id']}/members/{victim}",
                json={"role": "NURSE"} if method == "PATCH" else None)
    assert r.status_code == 404, r.text
    still = api.as_(sa_token, "GET", f"/clinics/{world.a['id']}/members", params={"limit": 200})
    assert any(m["user_id"] == victim and m["role"] == "PATIENT" for m in still.json()["items"])


def test_location_head_cannot_add_members_elsewhere(world: World, api) -> None:
    r = api.as_(world.callers["LOCATION_HEAD"]["token"], "POST",
                f"/clinics/{world.a['id']}/members",
                json={"email": unique_email(), "name": "Elsewhere", "role": "NURSE",
                      "location_id": world.a["locations"][1]["id"]})
    assert r.status_code == 403, r.text


@pytest.mark.parametrize(("granter", "role", "allowed"), [
    ("RECEPTIONIST", "PATIENT", True),
    ("RECEPTIONIST", "NURSE", False),
    ("LOCATION_HEAD", "DOCTOR", True),
    ("LOCATION_HEAD", "CLINIC_ADMIN", False),
    ("LOCATION_HEAD", "LOCATION_HEAD", False),
    ("CLINIC_ADMIN", "CLINIC_ADMIN", True),
])
def test_nobody_grants_above_themselves(world: World, api, granter: str, role: str,
                                         allowed: bool) -> None:
    r = api.as_(world.callers[granter]["token"], "POST", f"/clinics/{world.a['id']}/members",
                json={"email": unique_email(), "name": "Grantee", "role": role,
                      "location_id": world.a["locations"][0]["id"]})
    assert r.status_code == (201 if allowed else 403), r.text


def test_every_route_is_in_this_matrix(server) -> None:
    """A new route must be added here (and to the permission file) to ship."""
    spec = httpx.get(server.base_url + "/schema/openapi.json").json()
    covered = {
        ("POST", "/api/v1/auth/login"), ("POST", "/api/v1/auth/refresh"),
        ("POST", "/api/v1/auth/register"), ("POST", "/api/v1/auth/logout"),
        ("GET", "/api/v1/users/me"), ("POST", "/api/v1/clinics"), ("GET", "/api/v1/clinics"),
        ("GET", "/api/v1/clinics/{clinic_id}"), ("PATCH", "/api/v1/clinics/{clinic_id}"),
        ("POST", "/api/v1/clinics/{clinic_id}/locations"),
        ("GET", "/api/v1/clinics/{clinic_id}/locations"),
        ("POST", "/api/v1/clinics/{clinic_id}/members"),
        ("GET", "/api/v1/clinics/{clinic_id}/members"),
        ("PATCH", "/api/v1/clinics/{clinic_id}/members/{user_id}"),
        ("DELETE", "/api/v1/clinics/{clinic_id}/members/{user_id}"),
        ("GET", "/api/v1/clinics/{clinic_id}/events"),
        ("GET", "/health/live"), ("GET", "/health/ready"),
    }
    served = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops
              if m.upper() in {"GET", "POST", "PUT", "PATCH", "DELETE"}}
    assert served == covered


@pytest.mark.parametrize("caller", ROLES)
def test_authenticated_routes_work_for_every_role(world: World, api, caller: str) -> None:
    r = api.as_(world.callers[caller]["token"], "GET", "/users/me")
    assert r.status_code == 200
    assert r.json()["is_super_admin"] is (caller == "SUPER_ADMIN")
