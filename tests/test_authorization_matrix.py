"""Every role x every route x {own clinic, another clinic}, expected answers read from
domain/access/permissions.txt. Another clinic's ids always answer 404 and leak nothing.

Scheduling routes act on objects with an owner and a place: an appointment is its doctor's
(for a DOCTOR) or its patient's (for everyone else) and is at a location; a schedule is its
doctor's, at the doctor's location. O reaches only the caller's own, L only the caller's
location; an object out of reach is 404 (as if it did not exist), a create for a target out of
reach is 403."""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from domain.access.matrix import Scope, load, scope_of
from domain.access.roles import Role
from domain.scheduling.lifecycle import PATIENT_ACTIONS
from tests.communication.fakes import webhooks as fake
from tests.conftest import unique_email
from tests.operations import OPENAPI_OPERATIONS

pytestmark = [pytest.mark.slow]  # every role x every route x three places

ROLES = [r.value for r in Role]
CALLERS = [*ROLES, "ANONYMOUS"]
SUCCESS = {"GET": 200, "POST": 201, "PUT": 200, "PATCH": 200, "DELETE": 204}


@dataclass
class World:
    a: dict[str, Any]  # the callers' clinic
    b: dict[str, Any]  # another clinic
    callers: dict[str, dict[str, Any]]  # role -> member of clinic A (SUPER_ADMIN: the root)
    b_secrets: list[str]  # strings of clinic B that must never reach a clinic-A caller


@pytest.fixture(scope="module")
def world(api, sa_token, clinic_factory, member_factory) -> World:
    # the PATIENT caller books throughout; the patient quota has its own tests in tests/security
    a = clinic_factory("Clinic A", patient_max_future_appointments=500)
    b = clinic_factory("Clinic B Secret Name")
    callers: dict[str, dict[str, Any]] = {"SUPER_ADMIN": {"token": sa_token, "user_id": None}}
    for role in ROLES[1:]:
        # the LOCATION_HEAD heads location 0, where the DOCTOR works: their schedule is in reach
        loc = a["locations"][0]["id"] if role in ("LOCATION_HEAD", "DOCTOR") else None
        callers[role] = member_factory(a["id"], role, location_id=loc, tag=role.lower())
    b_admin = member_factory(b["id"], "CLINIC_ADMIN", tag="b-admin")
    a["admin_token"], b["admin_token"] = callers["CLINIC_ADMIN"]["token"], b_admin["token"]
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


def pending_invitation(api, clinic: dict[str, Any]) -> str:
    """A fresh invitation of the clinic, as a PATIENT at its location 0, from its admin."""
    r = api.as_(clinic["admin_token"], "POST", f"/clinics/{clinic['id']}/members",
                json={"email": unique_email("invited"), "name": "Invited", "role": "PATIENT",
                      "location_id": clinic["locations"][0]["id"]})
    assert r.status_code == 202, r.text
    return str(r.json()["invitation_id"])


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
        case "invitations:read":
            return "GET", f"/clinics/{cid}/invitations", None
        case "invitations:revoke":
            return ("POST", f"/clinics/{cid}/invitations/{pending_invitation(api, clinic)}/revoke",
                    None)
        case "communication_settings:read":
            return "GET", f"/clinics/{cid}/communication/config", None
        case "communication_settings:read/health":
            return "GET", f"/clinics/{cid}/communication/health", None
        case "communication_settings:manage":
            return "PUT", f"/clinics/{cid}/communication/config", {
                "channels": {"push": {"providers": ["local"]}}}
        case "communication_settings:manage/test":
            return "POST", f"/clinics/{cid}/communication/test/email", None
        case "communication_templates:read":
            return "GET", f"{TEMPLATE.format(cid=cid)}", None
        case "communication_templates:read/preview":
            return "POST", f"{TEMPLATE.format(cid=cid)}/preview", {"source": TEMPLATE_SOURCE}
        case "communication_templates:manage":
            return "PUT", TEMPLATE.format(cid=cid), {"source": TEMPLATE_SOURCE}
        case "communication_templates:manage/delete":
            r = api.as_(sa_token, "PUT", TEMPLATE.format(cid=cid), json={"source": TEMPLATE_SOURCE})
            assert r.status_code == 200, r.text
            return "DELETE", TEMPLATE.format(cid=cid), None
    raise AssertionError(route)


TEMPLATE = "/clinics/{cid}/communication/templates/appointment.booked/sms/hi-IN"
TEMPLATE_SOURCE = "{{ clinic_name }}: {{ starts_at | datetime }}"


CLINIC_ROUTES = ["clinics:read", "clinics:update", "locations:create", "locations:read",
                 "members:create", "members:read", "members:update", "members:delete",
                 "events:read", "invitations:read", "invitations:revoke",
                 # a second route of a permission: "<permission>/<what>"
                 "communication_settings:read", "communication_settings:read/health",
                 "communication_settings:manage", "communication_settings:manage/test",
                 "communication_templates:read", "communication_templates:read/preview",
                 "communication_templates:manage", "communication_templates:manage/delete"]


def expected_status(route: str, caller: str, where: str, method: str) -> int:
    permission = route.split("/")[0]
    if caller == "ANONYMOUS":
        return 401
    if where == "other" and caller != "SUPER_ADMIN":
        return 404
    if scope_of(permission, Role(caller)) is Scope.DENY:
        return 403
    if permission == "members:create" and caller != "SUPER_ADMIN":
        return 202  # clinic staff invite; only a SUPER_ADMIN links directly
    if permission == "invitations:revoke":
        return 204
    if route == "communication_settings:manage/test":
        return 202  # queued for the worker
    if route == "communication_templates:read/preview":
        return 200  # a render: nothing is created
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
    assert r.status_code == (202 if allowed else 403), r.text  # allowed: an invitation


def test_every_route_is_in_this_matrix(server) -> None:
    """A new route must be added here (and to the permission file) to ship."""
    spec = httpx.get(server.base_url + "/schema/openapi.json").json()
    served = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops
              if m.upper() in {"GET", "POST", "PUT", "PATCH", "DELETE"}}
    assert served == OPENAPI_OPERATIONS


@pytest.mark.parametrize("caller", ROLES)
def test_authenticated_routes_work_for_every_role(world: World, api, caller: str) -> None:
    r = api.as_(world.callers[caller]["token"], "GET", "/users/me")
    assert r.status_code == 200
    assert r.json()["is_super_admin"] is (caller == "SUPER_ADMIN")


@pytest.fixture(scope="module")
def invitation(world: World, api, member_factory) -> dict[str, Any]:
    """A clinic-B member invited into clinic A by A's CLINIC_ADMIN: pending, theirs alone."""
    invitee = member_factory(world.b["id"], "NURSE", tag="invitee")
    r = api.as_(world.callers["CLINIC_ADMIN"]["token"], "POST",
                f"/clinics/{world.a['id']}/members",
                json={"email": invitee["email"], "name": "Invitee", "role": "NURSE"})
    assert r.status_code == 202, r.text
    return {"id": r.json()["invitation_id"], "invitee": invitee}


@pytest.mark.parametrize("caller", CALLERS)
def test_invitations_are_their_invitees_alone(world: World, api, invitation, caller: str) -> None:
    """`/users/me/invitations` needs a login and shows only the caller's own; answering
    someone else's invitation is 404, as if it did not exist, and changes nothing."""
    token = world.callers.get(caller, {"token": None})["token"]
    iid = invitation["id"]
    r = api.as_(token, "GET", "/users/me/invitations")
    assert r.status_code == (401 if token is None else 200), r.text
    assert iid not in r.text
    for action in ("accept", "decline"):
        r = api.as_(token, "POST", f"/users/me/invitations/{iid}/{action}")
        assert r.status_code == (401 if token is None else 404), r.text
        assert r.headers["content-type"].startswith("application/problem+json")
    mine = api.as_(invitation["invitee"]["token"], "GET", "/users/me/invitations").json()
    assert [i["id"] for i in mine["items"]] == [iid]


def test_the_invitee_alone_may_answer(world: World, api, invitation) -> None:
    invitee = invitation["invitee"]
    r = api.as_(invitee["token"], "POST", f"/users/me/invitations/{invitation['id']}/accept")
    assert r.status_code == 200, r.text
    assert (r.json()["clinic_id"], r.json()["role"]) == (world.a["id"], "NURSE")


# --- scheduling: appointments and doctors' schedules ---------------------------------------

TZ = ZoneInfo("Asia/Kolkata")  # clinic_factory's time zone
WEEK = [{"weekday": d, "start": "08:00", "end": "20:00"} for d in range(7)]
TRANSITIONS = ("confirm", "check-in", "start", "complete", "no-show", "cancel")
PRIOR = {"start": ("check-in",), "complete": ("check-in", "start")}  # to where it may go on
_slots, _series_slots = itertools.count(), itertools.count()


def at(days: int, minute: int) -> str:
    day = datetime.now(TZ).date() + timedelta(days=days)
    return datetime(day.year, day.month, day.day, minute // 60, minute % 60, tzinfo=TZ).isoformat()


def next_slot() -> str:
    """A half hour of 08:00-18:00, 2 to 80 days out, that no other booking here uses."""
    n = next(_slots)
    assert n < 20 * 78
    return at(2 + n // 20, 8 * 60 + 30 * (n % 20))


def next_series_start() -> str:
    """18:00-20:00, 2 to 24 days out; the series repeats 60 days later, after all of those."""
    n = next(_series_slots)
    assert n < 4 * 22
    return at(2 + n // 4, 18 * 60 + 30 * (n % 4))


@dataclass(frozen=True)
class Party:
    """Whom an appointment is between, and where; a schedule is its doctor's."""

    clinic_id: str
    doctor_id: str
    doctor_location: str | None
    patient_id: str
    location_id: str


@dataclass
class Sched:
    # "mine": the DOCTOR and PATIENT callers at the LOCATION_HEAD's location; "theirs": another
    # doctor and patient at the clinic's other location; "other": a doctor and patient of clinic B
    parties: dict[str, Party]
    b_secrets: list[str]


@pytest.fixture(scope="module")
def sched(world: World, api, sa_token, member_factory) -> Sched:
    a0, a1 = (loc["id"] for loc in world.a["locations"])
    b0 = world.b["locations"][0]["id"]
    doc2 = member_factory(world.a["id"], "DOCTOR", location_id=a1, password=None, tag="doc2")
    pat2 = member_factory(world.a["id"], "PATIENT", location_id=a1, password=None, tag="pat2")
    doc_b = member_factory(world.b["id"], "DOCTOR", location_id=b0, password=None, tag="b-doc")
    pat_b = member_factory(world.b["id"], "PATIENT", password=None, tag="b-pat")
    doctor, patient = world.callers["DOCTOR"], world.callers["PATIENT"]
    assert doctor["location_id"] == a0
    parties = {
        "mine": Party(world.a["id"], doctor["user_id"], a0, patient["user_id"], a0),
        "theirs": Party(world.a["id"], doc2["user_id"], a1, pat2["user_id"], a1),
        "other": Party(world.b["id"], doc_b["user_id"], b0, pat_b["user_id"], b0),
    }
    for p in parties.values():
        r = api.as_(sa_token, "PUT", f"/clinics/{p.clinic_id}/doctors/{p.doctor_id}/schedule",
                    json={"rules": WEEK})
        assert r.status_code == 200, r.text
    secrets = [*world.b_secrets, doc_b["email"], pat_b["user_id"], pat_b["email"]]
    return Sched(parties, secrets)


def booking(p: Party, start: str) -> dict[str, Any]:
    return {"clinic_id": p.clinic_id, "doctor_id": p.doctor_id, "patient_id": p.patient_id,
            "type": "in_person", "start": start, "location_id": p.location_id}


def booked(api, sa_token: str, p: Party, then: tuple[str, ...] = ()) -> str:
    """A scheduled appointment of `p` (moved on by the super admin's `then` actions)."""
    r = api.as_(sa_token, "POST", "/appointments", json=booking(p, next_slot()))
    assert r.status_code == 201, r.text
    appointment_id = str(r.json()["id"])
    for action in then:
        r = api.as_(sa_token, "POST", f"/appointments/{appointment_id}/{action}")
        assert r.status_code == 200, r.text
    return appointment_id


def owner_of(role: Role | None, doctor_id: str, patient_id: str) -> str:
    """Whose an appointment is: a DOCTOR's own are those they are the doctor of; everyone
    else's own are those they are the patient of."""
    return doctor_id if role is Role.DOCTOR else patient_id


def covers(scope: Scope, who: dict[str, Any], owner: str | None, location: str | None) -> bool:
    """The permission file's legend: * any, L at the caller's location, O the caller's own."""
    if scope is Scope.OWN:
        return owner is not None and owner == who["user_id"]
    if scope is Scope.LOCATION:
        return location is not None and location == who.get("location_id")
    return scope is Scope.ANY


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    permission: str
    owner: str | None  # whose the object is, for the caller's role
    location: str | None  # where the object is
    success: int
    body: dict[str, Any] | None = None
    params: dict[str, Any] | None = None
    create: bool = False  # a target out of reach is refused (403), not hidden (404)
    #: a rule beyond the permission file, given the caller's role and scope: the refusal, if any
    refusal: Callable[[Role, Scope], int | None] = field(default=lambda role, scope: None)
    appointment_id: str | None = None  # the appointment a refused write must leave alone


def patients_may(action: str) -> Callable[[Role, Scope], int | None]:
    """A patient may confirm, cancel and reschedule their own appointments, nothing more."""
    return lambda role, scope: 403 if role is Role.PATIENT and action not in PATIENT_ACTIONS else None


def scheduling_case(route: str, p: Party, role: Role | None, api, sa_token: str) -> Case:
    doctors = f"/clinics/{p.clinic_id}/doctors/{p.doctor_id}"
    schedule = {"owner": p.doctor_id, "location": p.doctor_location}
    appointment = {"owner": owner_of(role, p.doctor_id, p.patient_id), "location": p.location_id}
    action = route.rsplit("/", 1)[1]
    match route:
        case "GET /appointments/{id}":
            return Case("GET", f"/appointments/{booked(api, sa_token, p)}", "appointments:read",
                        success=200, **appointment)
        case "POST /appointments":
            return Case("POST", "/appointments", "appointments:create", success=201, create=True,
                        body=booking(p, next_slot()), **appointment)
        case "POST /appointments/series":
            body = {**booking(p, next_series_start()), "repeat": {"every_days": 60, "count": 2}}
            return Case("POST", "/appointments/series", "appointments:create", success=201,
                        create=True, body=body, **appointment)
        case _ if action in TRANSITIONS:
            target = booked(api, sa_token, p, PRIOR.get(action, ()))
            return Case("POST", f"/appointments/{target}/{action}",
                        "appointments:cancel" if action == "cancel" else "appointments:update",
                        success=200, body={"reason": "matrix"}, refusal=patients_may(action),
                        appointment_id=target, **appointment)
        case "POST /appointments/{id}/reschedule":
            target = booked(api, sa_token, p)
            return Case("POST", f"/appointments/{target}/reschedule", "appointments:update",
                        success=200, body={"start": next_slot()},
                        refusal=patients_may("reschedule"), appointment_id=target, **appointment)
        case "POST /appointments/{id}/follow-up":
            parent = booked(api, sa_token, p, ("check-in",))
            return Case("POST", f"/appointments/{parent}/follow-up", "follow_ups:create",
                        success=201, body={"start": next_slot()}, appointment_id=parent,
                        **appointment)
        case "GET .../schedule":
            return Case("GET", f"{doctors}/schedule", "schedules:read", success=200, **schedule)
        case "PUT .../schedule":
            return Case("PUT", f"{doctors}/schedule", "schedules:manage", success=200,
                        body={"rules": WEEK}, **schedule)
        case "POST .../time-off":  # at night: no working hours lost
            return Case("POST", f"{doctors}/time-off", "schedules:manage", success=201,
                        body={"start": at(88, 120), "end": at(88, 180)}, **schedule)
        case "GET .../availability":
            return Case("GET", f"{doctors}/availability", "schedules:read", success=200,
                        params={"from": at(85, 0), "to": at(86, 0)}, **schedule)
        case "POST /clinics/{id}/holidays":  # closes the whole clinic: nobody's, nowhere
            return Case("POST", f"/clinics/{p.clinic_id}/holidays", "schedules:manage",
                        success=201, body={"start": at(89, 120), "end": at(89, 180)},
                        create=True, owner=None, location=None)
    raise AssertionError(route)


SCHEDULING_ROUTES = [
    "GET /appointments/{id}", "POST /appointments", "POST /appointments/series",
    *(f"POST /appointments/{{id}}/{a}" for a in (*TRANSITIONS, "reschedule", "follow-up")),
    "GET .../schedule", "PUT .../schedule", "POST .../time-off", "GET .../availability",
    "POST /clinics/{id}/holidays",
]


def expected_for(case: Case, caller: str, where: str, who: dict[str, Any]) -> int:
    if caller == "ANONYMOUS":
        return 401
    if where == "other" and caller != "SUPER_ADMIN":
        return 404
    role = Role(caller)
    scope = scope_of(case.permission, role)
    if scope is Scope.DENY:
        return 403
    if not covers(scope, who, case.owner, case.location):
        return 403 if case.create else 404
    return case.refusal(role, scope) or case.success


def scheduling_params() -> list[Any]:
    return [pytest.param(route, caller, where, id=f"{route}-{caller}-{where}")
            for route in SCHEDULING_ROUTES for caller in CALLERS
            for where in ("mine", "theirs", "other")
            if not (route.endswith("holidays") and where == "theirs")]  # one clinic, one answer


def appointment_state(api, sa_token: str, appointment_id: str) -> dict[str, Any]:
    r = api.as_(sa_token, "GET", f"/appointments/{appointment_id}")
    assert r.status_code == 200, r.text
    return {k: v for k, v in r.json().items() if k != "history"} | {
        "transitions": len(r.json()["history"])}


@pytest.mark.parametrize(("route", "caller", "where"), scheduling_params())
def test_scheduling_route(world: World, sched: Sched, api, sa_token, route: str, caller: str,
                          where: str) -> None:
    """mine: the DOCTOR's and PATIENT's own, at the LOCATION_HEAD's location; theirs: nobody's
    own, elsewhere in the clinic; other: clinic B's."""
    who = world.callers.get(caller, {"token": None, "user_id": None})
    case = scheduling_case(route, sched.parties[where], Role(caller) if caller in ROLES else None,
                           api, sa_token)
    before = appointment_state(api, sa_token, case.appointment_id) if case.appointment_id else None
    r = api.as_(who["token"], case.method, case.path, json=case.body, params=case.params)
    expected = expected_for(case, caller, where, who)
    assert r.status_code == expected, f"{caller} {case.method} {case.path}: {r.status_code} {r.text}"
    if expected >= 400:
        assert r.headers["content-type"].startswith("application/problem+json")
        if before is not None:  # refused: nothing moved
            assert appointment_state(api, sa_token, str(case.appointment_id)) == before
    if where == "other" and caller != "SUPER_ADMIN":
        for secret in sched.b_secrets:
            assert str(secret) not in r.text


def every_page(api, token: str, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        r = api.as_(token, "GET", path, params={**params, "limit": 200,
                                                **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        items += r.json()["items"]
        if not (cursor := r.json()["next_cursor"]):
            return items


@pytest.mark.parametrize("where", ["own", "other"])
@pytest.mark.parametrize("caller", CALLERS)
def test_appointment_list_shows_only_what_is_in_reach(world: World, sched: Sched, api, sa_token,
                                                      caller: str, where: str) -> None:
    fresh = {w: booked(api, sa_token, sched.parties[w])
             for w in (("mine", "theirs") if where == "own" else ("other",))}
    clinic = world.a if where == "own" else world.b
    who = world.callers.get(caller, {"token": None})
    r = api.as_(who["token"], "GET", "/appointments", params={"clinic_id": clinic["id"]})
    expected = expected_status("appointments:read", caller, where, "GET")
    assert r.status_code == expected, r.text
    if expected != 200:
        assert all(str(secret) not in r.text for secret in sched.b_secrets)
        return
    role, scope = Role(caller), scope_of("appointments:read", Role(caller))
    items = every_page(api, who["token"], "/appointments", {"clinic_id": clinic["id"]})
    for item in items:
        assert covers(scope, who, owner_of(role, item["doctor_id"], item["patient_id"]),
                      item["location_id"]), item
    shown = {item["id"] for item in items}
    for w, appointment_id in fresh.items():
        p = sched.parties[w]
        reach = covers(scope, who, owner_of(role, p.doctor_id, p.patient_id), p.location_id)
        assert (appointment_id in shown) is reach, (w, scope)


@pytest.mark.parametrize("whose", ["mine", "theirs", "other"])
@pytest.mark.parametrize("caller", CALLERS)
def test_patient_history_shows_only_what_is_in_reach(world: World, sched: Sched, api, sa_token,
                                                     caller: str, whose: str) -> None:
    """A history is a patient's record: a patient sees only their own (404 for another's);
    other roles see the patient's appointments their scope reaches."""
    p = sched.parties[whose]
    appointment_id = booked(api, sa_token, p)
    who = world.callers.get(caller, {"token": None, "user_id": None})
    r = api.as_(who["token"], "GET", f"/patients/{p.patient_id}/history",
                params={"clinic_id": p.clinic_id})
    expected = expected_status("appointments:read", caller, "other" if whose == "other" else "own",
                               "GET")
    role = Role(caller) if caller in ROLES else None
    scope = scope_of("appointments:read", role) if role else Scope.DENY
    if expected == 200 and scope is Scope.OWN and role is not Role.DOCTOR:
        expected = 200 if p.patient_id == who["user_id"] else 404
    assert r.status_code == expected, r.text
    if expected != 200:
        hidden = [*sched.b_secrets, p.patient_id] if expected == 404 else sched.b_secrets
        assert all(str(secret) not in r.text for secret in hidden)
        return
    assert role is not None
    assert all(item["patient_id"] == p.patient_id for item in r.json()), r.text
    for item in r.json():
        assert covers(scope, who, owner_of(role, item["doctor_id"], item["patient_id"]),
                      item["location_id"]), item
    reach = covers(scope, who, owner_of(role, p.doctor_id, p.patient_id), p.location_id)
    assert (appointment_id in {item["id"] for item in r.json()}) is reach


# --- fields: what of an object in reach each role sees ---------------------------------------
# A field row (resource:read_<field>) in the permission file shows or hides one field of an
# object the caller already reaches: the visit reason, and the reasons in its history.

FIELD_READS = ["GET /appointments/{id}", "GET /appointments", "GET /patients/{id}/history"]


@pytest.mark.parametrize("read", FIELD_READS)
@pytest.mark.parametrize("caller", ROLES)
def test_the_visit_reason_follows_its_field_row(world: World, sched: Sched, api, sa_token,
                                                read: str, caller: str) -> None:
    p = sched.parties["mine"]
    r = api.as_(sa_token, "POST", "/appointments",
                json={**booking(p, next_slot()), "reason": "recurring chest pain"})
    assert r.status_code == 201, r.text
    appointment_id = r.json()["id"]
    assert api.as_(sa_token, "POST", f"/appointments/{appointment_id}/cancel",
                   json={"reason": "feeling worse, went to hospital"}).status_code == 200
    who = world.callers[caller]
    match read:
        case "GET /appointments/{id}":
            r = api.as_(who["token"], "GET", f"/appointments/{appointment_id}")
        case "GET /appointments":
            r = api.as_(who["token"], "GET", "/appointments",
                        params={"clinic_id": p.clinic_id, "patient_id": p.patient_id,
                                "limit": 200})
        case _:
            r = api.as_(who["token"], "GET", f"/patients/{p.patient_id}/history",
                        params={"clinic_id": p.clinic_id})
    if scope_of("appointments:read", Role(caller)) is Scope.DENY:
        assert r.status_code == 403, r.text
        return
    assert r.status_code == 200, r.text
    body = r.json()
    items = [body] if read.endswith("{id}") else body["items"] if "items" in body else body
    mine = [item for item in items if item["id"] == appointment_id]
    assert len(mine) == 1, f"{caller} should reach the 'mine' party's appointment"
    shown = scope_of("appointments:read_reason", Role(caller)) is not Scope.DENY
    assert ("reason" in mine[0]) is shown, mine[0]
    assert ("chest pain" in r.text) is shown
    assert ("went to hospital" in r.text) is (shown and read.endswith("{id}"))
    for transition in mine[0].get("history") or []:
        assert ("reason" in transition) is shown


# --- waiting-room queues --------------------------------------------------------------------
# A queue is its doctor's (for a DOCTOR's O) and at its appointments' location; its entries are
# the queue's. The queue of a checked-in appointment of party p is p's doctor's, at p's place.

def checked_in(api, sa_token: str, p: Party, then: tuple[str, ...] = ()) -> tuple[str, str, str]:
    """A fresh appointment of `p`, checked in: (appointment id, queue id, entry id); `then`:
    queue-entry actions the super admin takes on the entry first."""
    appointment_id = booked(api, sa_token, p, ("check-in",))
    r = api.as_(sa_token, "GET", f"/appointments/{appointment_id}/queue-position")
    assert r.status_code == 200, r.text
    queue_id = str(r.json()["queue_id"])
    entries = api.as_(sa_token, "GET", f"/queues/{queue_id}").json()["entries"]
    entry_id = next(str(e["id"]) for e in entries if e["appointment_id"] == appointment_id)
    for action in then:
        r = api.as_(sa_token, "POST", f"/queue-entries/{entry_id}/{action}")
        assert r.status_code == 200, r.text
    return appointment_id, queue_id, entry_id


@pytest.fixture(scope="module")
def standing(sched: Sched, api, sa_token) -> dict[str, tuple[str, str, str]]:
    """One checked-in appointment per party, for the routes that only read."""
    return {w: checked_in(api, sa_token, p) for w, p in sched.parties.items()}


@pytest.fixture(scope="module")
def colleagues(world: World, sched: Sched, member_factory) -> dict[str, str]:
    """Whom each party's entries are transferred to: another doctor of the same clinic."""
    b_doc2 = member_factory(world.b["id"], "DOCTOR", location_id=world.b["locations"][0]["id"],
                            password=None, tag="b-doc2")
    return {"mine": sched.parties["theirs"].doctor_id, "theirs": sched.parties["mine"].doctor_id,
            "other": b_doc2["user_id"]}


QUEUE_READS = ["GET /queues/{id}", "POST /queues/{id}/board-token",
               "GET /appointments/{id}/queue-position", "GET /appointments/{id}/check-in-code",
               "GET /clinics/{id}/locations/{id}/check-in-code"]
QUEUE_WRITES = ["POST /queues/{id}/call-next", "POST /queues/{id}/pause",
                "POST /queues/{id}/resume",
                *(f"POST /queue-entries/{{id}}/{a}"
                  for a in ("priority", "transfer", "skip", "requeue", "start", "complete"))]
ENTRY_PRIOR = {"requeue": ("skip", "skip", "skip"), "complete": ("start",)}  # default: 3 skips


def queue_case(route: str, where: str, p: Party, role: Role | None, api, sa_token: str,
               standing: dict[str, tuple[str, str, str]], colleagues: dict[str, str]) -> Case:
    queue = {"owner": p.doctor_id, "location": p.location_id}
    appointment = {"owner": owner_of(role, p.doctor_id, p.patient_id), "location": p.location_id}
    action = route.rsplit("/", 1)[1]
    if route in QUEUE_READS:
        appointment_id, queue_id, _ = standing[where]
    elif route.startswith("POST /queue-entries/"):
        appointment_id, queue_id, entry_id = checked_in(api, sa_token, p, ENTRY_PRIOR.get(action, ()))
    else:
        appointment_id, queue_id, _ = checked_in(api, sa_token, p)
    match route:
        case "GET /queues/{id}":
            return Case("GET", f"/queues/{queue_id}", "queues:read", success=200, **queue)
        case "POST /queues/{id}/board-token":
            return Case("POST", f"/queues/{queue_id}/board-token", "queues:manage", success=201,
                        **queue)
        case "GET /appointments/{id}/queue-position":
            return Case("GET", f"/appointments/{appointment_id}/queue-position",
                        "appointments:read", success=200, **appointment)
        case "GET /appointments/{id}/check-in-code":
            return Case("GET", f"/appointments/{appointment_id}/check-in-code", "queues:manage",
                        success=200, **appointment)
        case "GET /clinics/{id}/locations/{id}/check-in-code":
            return Case("GET", f"/clinics/{p.clinic_id}/locations/{p.location_id}/check-in-code",
                        "queues:manage", success=200, owner=None, location=p.location_id)
        case _ if route.startswith("POST /queues/"):
            return Case("POST", f"/queues/{queue_id}/{action}", "queues:manage", success=200,
                        appointment_id=appointment_id, **queue)
        case _:
            body = {"priority": {"priority": "urgent", "reason": "matrix"},
                    "transfer": {"doctor_id": colleagues[where]}}.get(action)
            return Case("POST", f"/queue-entries/{entry_id}/{action}", "queues:manage",
                        success=200, body=body, appointment_id=appointment_id, **queue)


def queue_state(api, sa_token: str, path: str) -> dict[str, Any]:
    """The queue(s) a write names, without the ETAs (which move with the clock)."""
    r = api.as_(sa_token, "GET", path)
    assert r.status_code == 200, r.text
    q = r.json()
    return {"paused": q["paused"], "entries": [
        {k: e[k] for k in ("id", "appointment_id", "ticket", "priority", "status", "position",
                           "skips", "removed_reason")} for e in q["entries"]]}


def queue_params() -> list[Any]:
    return [pytest.param(route, caller, where, id=f"{route}-{caller}-{where}")
            for route in (*QUEUE_READS, *QUEUE_WRITES) for caller in CALLERS
            for where in ("mine", "theirs", "other")]


@pytest.mark.parametrize(("route", "caller", "where"), queue_params())
def test_queue_route(world: World, sched: Sched, standing, colleagues, api, sa_token, route: str,
                     caller: str, where: str) -> None:
    """mine: the DOCTOR's own queue, at the LOCATION_HEAD's location, with the PATIENT's
    appointment in it; theirs: another doctor's, elsewhere; other: clinic B's."""
    who = world.callers.get(caller, {"token": None, "user_id": None})
    case = queue_case(route, where, sched.parties[where],
                      Role(caller) if caller in ROLES else None, api, sa_token, standing, colleagues)
    queue_id = standing[where][1] if route in QUEUE_READS else api.as_(
        sa_token, "GET", f"/appointments/{case.appointment_id}/queue-position").json()["queue_id"]
    before = queue_state(api, sa_token, f"/queues/{queue_id}")
    r = api.as_(who["token"], case.method, case.path, json=case.body, params=case.params)
    expected = expected_for(case, caller, where, who)
    assert r.status_code == expected, f"{caller} {case.method} {case.path}: {r.status_code} {r.text}"
    if expected >= 400:
        assert r.headers["content-type"].startswith("application/problem+json")
        assert queue_state(api, sa_token, f"/queues/{queue_id}") == before  # nothing moved
    elif route.endswith("/pause"):  # the next case may want to call from this queue
        assert api.as_(sa_token, "POST", f"/queues/{queue_id}/resume").status_code == 200
    if where == "other" and caller != "SUPER_ADMIN":
        for secret in sched.b_secrets:
            assert str(secret) not in r.text


@pytest.mark.parametrize("where", ["own", "other"])
@pytest.mark.parametrize("caller", CALLERS)
def test_queue_list_shows_only_what_is_in_reach(world: World, sched: Sched, standing, api,
                                                sa_token, caller: str, where: str) -> None:
    clinic = world.a if where == "own" else world.b
    fresh = ("mine", "theirs") if where == "own" else ("other",)
    who = world.callers.get(caller, {"token": None})
    days = {w: api.as_(sa_token, "GET", f"/queues/{standing[w][1]}").json()["date"] for w in fresh}
    expected = expected_status("queues:read", caller, where, "GET")
    for w in fresh:
        r = api.as_(who["token"], "GET", f"/clinics/{clinic['id']}/queues",
                    params={"date": days[w]})
        assert r.status_code == expected, r.text
        if expected != 200:
            assert all(str(secret) not in r.text for secret in sched.b_secrets)
            continue
        scope = scope_of("queues:read", Role(caller))
        for q in r.json():
            assert covers(scope, who, q["doctor_id"], q["location_id"]), q
        p = sched.parties[w]
        reach = covers(scope, who, p.doctor_id, p.location_id)
        assert (standing[w][1] in {q["id"] for q in r.json()}) is reach, (w, scope)


@pytest.mark.parametrize("caller", CALLERS)
def test_a_board_reads_with_its_own_token_only(world: World, standing, api, sa_token,
                                                caller: str) -> None:
    """No user's token reads a board, not even the super admin's: only the queue's board token."""
    queue_id = standing["mine"][1]
    who = world.callers.get(caller, {"token": None})
    r = api.as_(who["token"], "GET", f"/boards/{queue_id}/state")
    assert r.status_code == 401 and r.json()["code"] == "unauthenticated", r.text
    board = api.as_(sa_token, "POST", f"/queues/{queue_id}/board-token").json()["token"]
    assert api.as_(board, "GET", f"/boards/{queue_id}/state").status_code == 200
    for elsewhere in ("theirs", "other"):
        r = api.as_(board, "GET", f"/boards/{standing[elsewhere][1]}/state")
        assert r.status_code == 404, r.text


# --- communication: the suppression list, the delivery log, one's own devices and messages ---
# A clinic's suppressions and messages are the clinic's (no owner, no location): * or nothing.
# Devices and one's own messages belong to the person: any signed-in caller, their own only.

COMMUNICATION_ROUTES = ["GET suppressions", "POST suppressions", "DELETE suppression",
                        "GET messages", "GET message"]


@dataclass
class Comm:
    messages: dict[str, str]  # clinic ("a" / "b") -> a message of it
    b_secrets: list[str]


@pytest.fixture(scope="module")
def comm(world: World, api, sa_token, db) -> Comm:
    from tests.communication.messages import insert_message

    recipient = world.callers["PATIENT"]["user_id"]
    messages = {"a": insert_message(db, world.a["id"], recipient, body="clinic A body"),
                "b": insert_message(db, world.b["id"], None, body="clinic B secret body")}
    b_address = f"b-secret-{uuid.uuid4().hex[:6]}@example.test"
    r = api.as_(sa_token, "POST", f"/clinics/{world.b['id']}/communication/suppressions",
                json={"channel": "email", "address": b_address})
    assert r.status_code == 201, r.text
    return Comm(messages, [*world.b_secrets, b_address, "clinic B secret body", messages["b"]])


def communication_request(route: str, clinic: dict[str, Any], where: str, comm: Comm, api,
                          sa_token: str) -> tuple[str, str, dict[str, Any] | None, str, int]:
    """(method, path, body, permission, success)."""
    base = f"/clinics/{clinic['id']}/communication"
    match route:
        case "GET suppressions":
            return "GET", f"{base}/suppressions", None, "communication_settings:read", 200
        case "POST suppressions":
            return ("POST", f"{base}/suppressions",
                    {"channel": "email", "address": unique_email("sup")},
                    "communication_settings:manage", 201)
        case "DELETE suppression":
            address = unique_email("unsup")
            r = api.as_(sa_token, "POST", f"{base}/suppressions",
                        json={"channel": "email", "address": address})
            assert r.status_code == 201, r.text
            return ("DELETE", f"{base}/suppressions/email/{address}", None,
                    "communication_settings:manage", 204)
        case "GET messages":
            return "GET", f"{base}/messages", None, "communication_messages:read", 200
        case "GET message":
            return ("GET", f"{base}/messages/{comm.messages[where]}", None,
                    "communication_messages:read", 200)
    raise AssertionError(route)


@pytest.mark.parametrize("where", ["own", "other"])
@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("route", COMMUNICATION_ROUTES)
def test_communication_route(world: World, comm: Comm, api, sa_token, db, route: str,
                             caller: str, where: str) -> None:
    clinic = world.a if where == "own" else world.b
    who = world.callers.get(caller, {"token": None})
    method, path, body, permission, success = communication_request(
        route, clinic, "a" if where == "own" else "b", comm, api, sa_token)
    before = db.fetch("SELECT count(*) AS n FROM communication_suppressions")[0]["n"]
    r = api.as_(who["token"], method, path, json=body)
    if caller == "ANONYMOUS":
        expected = 401
    elif where == "other" and caller != "SUPER_ADMIN":
        expected = 404
    elif scope_of(permission, Role(caller)) is Scope.DENY:
        expected = 403
    else:
        expected = success
    assert r.status_code == expected, f"{caller} {method} {path}: {r.status_code} {r.text}"
    if expected >= 400:
        assert r.headers["content-type"].startswith("application/problem+json")
        if method != "GET":  # a refused write changes nothing
            assert db.fetch("SELECT count(*) AS n FROM communication_suppressions")[0]["n"] == before
    if where == "other" and caller != "SUPER_ADMIN":
        for secret in comm.b_secrets:
            assert str(secret) not in r.text


@pytest.mark.parametrize("caller", ROLES)
def test_a_message_body_follows_its_field_row(world: World, comm: Comm, api, caller: str) -> None:
    """`communication_messages:read_body` shows subject and body of one message; lists never
    carry them."""
    base = f"/clinics/{world.a['id']}/communication/messages"
    token = world.callers[caller]["token"]
    one = api.as_(token, "GET", f"{base}/{comm.messages['a']}")
    listed = api.as_(token, "GET", base, params={"limit": 200})
    if scope_of("communication_messages:read", Role(caller)) is Scope.DENY:
        assert (one.status_code, listed.status_code) == (403, 403)
        return
    assert one.status_code == 200 and listed.status_code == 200, (one.text, listed.text)
    shown = scope_of("communication_messages:read_body", Role(caller)) is not Scope.DENY
    assert ("body" in one.json() and "subject" in one.json()) is shown, one.json()
    assert ("clinic A body" in one.text) is shown
    assert "clinic A body" not in listed.text
    assert comm.messages["a"] in {m["id"] for m in listed.json()["items"]}


@pytest.mark.parametrize("caller", CALLERS)
def test_own_devices_and_messages_need_only_a_login(world: World, comm: Comm, api,
                                                    caller: str) -> None:
    """Every role registers, lists and removes its own devices and reads its own messages; no
    clinic permission is involved. Without a login, 401."""
    token = world.callers.get(caller, {"token": None})["token"]
    body = {"kind": "fcm", "platform": "android", "token": "m" + uuid.uuid4().hex * 2}
    r = api.as_(token, "POST", "/users/me/devices", json=body)
    if token is None:
        assert r.status_code == 401
        for method, path in (("GET", "/users/me/devices"), ("GET", "/users/me/messages"),
                             ("DELETE", f"/users/me/devices/{uuid.uuid4()}")):
            assert api.as_(None, method, path).status_code == 401
        return
    assert r.status_code == 201, r.text
    device_id = r.json()["id"]
    mine = api.as_(token, "GET", "/users/me/devices")
    assert mine.status_code == 200 and device_id in {d["id"] for d in mine.json()["items"]}
    assert api.as_(token, "DELETE", f"/users/me/devices/{device_id}").status_code == 204
    messages = api.as_(token, "GET", "/users/me/messages", params={"limit": 200})
    assert messages.status_code == 200, messages.text
    ids = {m["id"] for m in messages.json()["items"]}
    assert (comm.messages["a"] in ids) is (caller == "PATIENT")  # the recipient alone
    assert comm.messages["b"] not in ids


# --- notifications: one's own preferences and inbox ------------------------------------------
# A person's, across every clinic they deal with: any signed-in caller, their own only.

@pytest.mark.parametrize("caller", CALLERS)
def test_own_notification_preferences_and_inbox_need_only_a_login(world: World, api, db,
                                                                  caller: str) -> None:
    """Every role reads and replaces its own preferences and reads and marks its own inbox;
    another person's notification is 404 (never 403) and stays unread. Without a login, 401."""
    from tests.notifications.inbox_rows import insert_notification

    token = world.callers.get(caller, {"token": None})["token"]
    patient = world.callers["PATIENT"]["user_id"]
    theirs = insert_notification(db, world.b["id"], patient, title="clinic B secret title")
    if token is None:
        for method, path in (("GET", "/users/me/notification-preferences"),
                             ("PUT", "/users/me/notification-preferences"),
                             ("GET", "/users/me/notifications"),
                             ("POST", "/users/me/notifications/read-all"),
                             ("POST", f"/users/me/notifications/{theirs}/read")):
            r = api.as_(None, method, path, **({"json": {}} if method == "PUT" else {}))
            assert r.status_code == 401, (method, path, r.text)
        return
    me = api.as_(token, "GET", "/users/me").json()["id"]
    mine = insert_notification(db, world.a["id"], me)
    doc = {"channels": {"appointment.booked": ["in_app"]}, "timezone": "UTC", "locale": "en"}
    r = api.as_(token, "PUT", "/users/me/notification-preferences", json=doc)
    assert r.status_code == 200, r.text
    assert api.as_(token, "GET", "/users/me/notification-preferences").json()["channels"] == \
        doc["channels"]
    listed = api.as_(token, "GET", "/users/me/notifications", params={"limit": 200})
    assert listed.status_code == 200, listed.text
    assert mine in {n["id"] for n in listed.json()["items"]}
    assert theirs not in listed.text or caller == "PATIENT"
    r = api.as_(token, "POST", f"/users/me/notifications/{mine}/read")
    assert r.status_code == 200 and r.json()["read_at"], r.text
    if caller != "PATIENT":
        r = api.as_(token, "POST", f"/users/me/notifications/{theirs}/read")
        assert r.status_code == 404, r.text
        assert "clinic B secret title" not in r.text
    r = api.as_(token, "POST", "/users/me/notifications/read-all")
    assert r.status_code == 200 and r.json()["updated"] >= (1 if caller == "PATIENT" else 0)
    theirs_read = db.fetch("SELECT read_at FROM notifications WHERE id = $1::uuid", theirs)
    assert (theirs_read[0]["read_at"] is None) is (caller != "PATIENT")

# --- provider webhooks: public, the signature decides -----------------------------------------

WEBHOOK_POSTS = ["ses", "zeptomail", "whatsapp"]


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("provider", WEBHOOK_POSTS)
def test_webhooks_need_no_login_and_no_login_helps(world: World, api, db, sns_host,
                                                   provider: str, caller: str) -> None:
    """Providers cannot log in: a webhook's signature alone decides, the same for every role
    and for no token at all (an unsigned one is 401 even for the super admin; a signed one is
    stored, whoever's token rides along)."""
    token = world.callers.get(caller, {"token": None})["token"]
    path = f"/webhooks/communication/{provider}"
    if provider == "ses":
        note = sns_host.notification(fake.ses_event("Delivery", "x-" + uuid.uuid4().hex,
                                                    "a@example.test"))
        body, event_id = json.dumps(note).encode(), note["MessageId"]
        unsigned = json.dumps({**note, "Signature": "AAAA"}).encode()
        signed_headers: dict[str, str] = {}
    elif provider == "zeptomail":
        event_id = uuid.uuid4().hex
        body = fake.zeptomail_body("hardbounce", "r-" + event_id, "a@example.test",
                                   webhook_request_id=event_id)
        unsigned, signed_headers = body, {"producer-signature": fake.zeptomail_signature(body)}
    else:
        wamid = "wamid." + uuid.uuid4().hex
        body, event_id = fake.whatsapp_body((wamid, "delivered")), f"{wamid}:delivered"
        unsigned, signed_headers = body, {"x-hub-signature-256": fake.whatsapp_signature(body)}
    r = api.as_(token, "POST", path, content=unsigned, headers={"content-type": "application/json"})
    assert r.status_code == 401, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    r = api.as_(token, "POST", path, content=body,
                headers={"content-type": "application/json", **signed_headers})
    assert r.status_code == 200, r.text
    stored = db.fetch("SELECT count(*) AS n FROM webhook_inbox WHERE provider = $1 "
                      "AND event_id = $2", provider, event_id)
    assert stored[0]["n"] == 1


@pytest.mark.parametrize("caller", CALLERS)
def test_the_whatsapp_handshake_needs_its_verify_token_not_a_login(world: World, api,
                                                                   caller: str) -> None:
    token = world.callers.get(caller, {"token": None})["token"]
    path = "/webhooks/communication/whatsapp"
    ok = api.as_(token, "GET", path, params={"hub.mode": "subscribe", "hub.challenge": "42",
                                             "hub.verify_token": fake.WHATSAPP_VERIFY})
    assert (ok.status_code, ok.text) == (200, "42")
    no = api.as_(token, "GET", path, params={"hub.mode": "subscribe", "hub.challenge": "42"})
    assert no.status_code == 403


# --- one-click unsubscribe: public, the signed link decides ------------------------------------

@pytest.mark.parametrize("caller", CALLERS)
def test_an_unsubscribe_link_needs_no_login_and_no_login_helps(world: World, api, db,
                                                               domain_layer, caller: str) -> None:
    """A mail client follows the link without a login; a token of any role changes nothing: a
    genuine link works for everyone, a forged one for no one."""
    from domain.communication import unsubscribe

    token = world.callers.get(caller, {"token": None})["token"]
    address = unique_email("unsub")
    link = unsubscribe.token(clinic_id=uuid.UUID(world.a["id"]), kind="appointment.booked",
                             address=address)
    forged = unsubscribe.token(clinic_id=uuid.UUID(world.b["id"]), kind="appointment.booked",
                               address=address)[:-4] + "AAAA"
    for method in ("GET", "POST"):
        r = api.as_(token, method, f"/unsubscribe/{forged}")
        assert r.status_code == 400, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
    assert api.as_(token, "GET", f"/unsubscribe/{link}").status_code == 200
    rows = lambda: db.fetch("SELECT clinic_id, kind FROM communication_suppressions "  # noqa: E731
                            "WHERE address = $1", address)
    assert rows() == []  # a GET changes nothing
    r = api.as_(token, "POST", f"/unsubscribe/{link}")
    assert r.status_code == 200, r.text
    assert [(str(x["clinic_id"]), x["kind"]) for x in rows()] == [(world.a["id"], "appointment.booked")]


# --- billing: invoices ---------------------------------------------------------------------
# An invoice is its patient's (O: a patient their own); it has no location, so L reaches only
# the caller's own too. "mine": the PATIENT caller's invoice in clinic A; "theirs": another
# patient's in clinic A; "other": clinic B's.

INVOICE_ROUTES = ["GET list", "POST create", "GET one", "GET pdf", "POST finalize", "POST void"]


@dataclass
class Billed:
    patients: dict[str, tuple[str, str]]  # where -> (clinic id, patient id)
    b_secrets: list[str]


@pytest.fixture(scope="module")
def billed(world: World, member_factory) -> Billed:
    theirs = member_factory(world.a["id"], "PATIENT", password=None, tag="inv-theirs")
    other = member_factory(world.b["id"], "PATIENT", password=None, tag="inv-other")
    return Billed({"mine": (world.a["id"], world.callers["PATIENT"]["user_id"]),
                   "theirs": (world.a["id"], theirs["user_id"]),
                   "other": (world.b["id"], other["user_id"])},
                  [*world.b_secrets, other["user_id"], other["email"]])


def an_invoice(api, sa_token: str, clinic_id: str, patient_id: str, *, final: bool) -> str:
    r = api.as_(sa_token, "POST", "/billing/invoices", json={
        "clinic_id": clinic_id, "patient_id": patient_id,
        "lines": [{"description": "Consultation", "quantity": 1, "unit_amount": 50000}]})
    assert r.status_code == 201, r.text
    if final:
        r = api.as_(sa_token, "POST", f"/billing/invoices/{r.json()['id']}/finalize")
        assert r.status_code == 200, r.text
    return str(r.json()["id"])


def invoice_case(route: str, clinic_id: str, patient_id: str, api, sa_token: str) -> Case:
    own = {"owner": patient_id, "location": None}
    match route:
        case "GET list":
            return Case("GET", "/billing/invoices", "invoices:read", success=200,
                        params={"clinic_id": clinic_id}, owner=None, location=None)
        case "POST create":
            return Case("POST", "/billing/invoices", "invoices:manage", success=201, create=True,
                        body={"clinic_id": clinic_id, "patient_id": patient_id,
                              "lines": [{"description": "x", "quantity": 1, "unit_amount": 1}]},
                        **own)
        case "GET one" | "GET pdf":
            inv = an_invoice(api, sa_token, clinic_id, patient_id, final=True)
            return Case("GET", f"/billing/invoices/{inv}" + ("/pdf" if route == "GET pdf" else ""),
                        "invoices:read", success=200, **own)
        case "POST finalize":
            inv = an_invoice(api, sa_token, clinic_id, patient_id, final=False)
            return Case("POST", f"/billing/invoices/{inv}/finalize", "invoices:manage",
                        success=200, appointment_id=inv, **own)
        case "POST void":
            inv = an_invoice(api, sa_token, clinic_id, patient_id, final=True)
            return Case("POST", f"/billing/invoices/{inv}/void", "invoices:manage", success=200,
                        body={"reason": "matrix"}, appointment_id=inv, **own)
    raise AssertionError(route)


@pytest.mark.parametrize("where", ["mine", "theirs", "other"])
@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("route", INVOICE_ROUTES)
def test_invoice_route(world: World, billed: Billed, api, sa_token, route: str, caller: str,
                       where: str) -> None:
    who = world.callers.get(caller, {"token": None, "user_id": None})
    clinic_id, patient_id = billed.patients[where]
    case = invoice_case(route, clinic_id, patient_id, api, sa_token)
    before = (api.as_(sa_token, "GET", f"/billing/invoices/{case.appointment_id}").json()
              if case.appointment_id else None)
    r = api.as_(who["token"], case.method, case.path, json=case.body, params=case.params)
    if caller == "ANONYMOUS":
        expected = 401
    elif where == "other" and caller != "SUPER_ADMIN":
        expected = 404
    else:
        scope = scope_of(case.permission, Role(caller))
        if scope is Scope.DENY:
            expected = 403
        elif case.owner is not None and not case.create and scope in (Scope.OWN, Scope.LOCATION) \
                and case.owner != who["user_id"]:
            expected = 404
        else:
            expected = case.success
    assert r.status_code == expected, f"{caller} {case.method} {case.path}: {r.status_code} {r.text}"
    if expected >= 400:
        assert r.headers["content-type"].startswith("application/problem+json")
        if before is not None:  # a refused write changes nothing
            after = api.as_(sa_token, "GET", f"/billing/invoices/{case.appointment_id}").json()
            assert after == before
    elif route == "GET list" and scope_of("invoices:read", Role(caller)) in (Scope.OWN,
                                                                              Scope.LOCATION):
        assert all(i["patient_id"] == who["user_id"] for i in r.json()["items"])
    if where == "other" and caller != "SUPER_ADMIN":
        for secret in billed.b_secrets:
            assert str(secret) not in r.text


# --- billing: plans ---
# Plans are the clinic's (every member reads them, to choose one; billing roles manage them).
# A subscription is its patient's and has no location: O reaches one's own, L reaches none.

PLAN_ROUTES = ["GET plans", "POST plans", "GET plan", "PATCH plan", "GET subscriptions",
               "POST subscriptions", "GET subscription", "POST subscription/cancel"]


def _plan_of(api, sa_token: str, clinic: dict[str, Any]) -> str:
    r = api.as_(sa_token, "POST", "/billing/plans",
                json={"clinic_id": clinic["id"], "name": f"Plan {uuid.uuid4().hex[:8]}",
                      "price": 0, "interval": "month", "quotas": {"in_person": 2}})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _subscription_of(api, sa_token: str, clinic: dict[str, Any], patient_id: str) -> str:
    r = api.as_(sa_token, "POST", "/billing/subscriptions",
                json={"clinic_id": clinic["id"], "plan_id": _plan_of(api, sa_token, clinic),
                      "patient_id": patient_id})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def plan_request(route: str, world: World, where: str, api, sa_token: str
                 ) -> tuple[str, str, dict[str, Any] | None, str, int]:
    """(method, path, body, permission, success); subscriptions are the PATIENT caller's in
    clinic A, a fresh patient's in clinic B."""
    clinic = world.a if where == "own" else world.b
    patient = (world.callers["PATIENT"]["user_id"] if where == "own"
               else target(api, sa_token, world.b))
    match route:
        case "GET plans":
            return "GET", f"/billing/plans?clinic_id={clinic['id']}", None, "billing_plans:read", 200
        case "POST plans":
            return ("POST", "/billing/plans",
                    {"clinic_id": clinic["id"], "name": f"P {uuid.uuid4().hex[:8]}", "price": 100,
                     "interval": "year"}, "billing_plans:manage", 201)
        case "GET plan":
            return ("GET", f"/billing/plans/{_plan_of(api, sa_token, clinic)}", None,
                    "billing_plans:read", 200)
        case "PATCH plan":
            return ("PATCH", f"/billing/plans/{_plan_of(api, sa_token, clinic)}", {"price": 5},
                    "billing_plans:manage", 200)
        case "GET subscriptions":
            return ("GET", f"/billing/subscriptions?clinic_id={clinic['id']}", None,
                    "subscriptions:read", 200)
        case "POST subscriptions":
            return ("POST", "/billing/subscriptions",
                    {"clinic_id": clinic["id"], "plan_id": _plan_of(api, sa_token, clinic),
                     "patient_id": patient}, "subscriptions:manage", 201)
        case "GET subscription":
            return ("GET", f"/billing/subscriptions/{_subscription_of(api, sa_token, clinic, patient)}",
                    None, "subscriptions:read", 200)
        case "POST subscription/cancel":
            sub = _subscription_of(api, sa_token, clinic, patient)
            return ("POST", f"/billing/subscriptions/{sub}/cancel", {"at_period_end": False},
                    "subscriptions:manage", 200)
    raise AssertionError(route)


# --- billing: payments ---------------------------------------------------------------------------

def _invoice(domain_layer, clinic_id: str, patient_id: str) -> str:
    """An open invoice of 100.00 INR for the patient (invoices' own command, in process)."""
    from domain import db
    from domain.billing.commands.invoices import open_invoice
    from domain.billing.models import LineInput
    from domain.tenancy.queries import load_clinic

    async def go() -> str:
        async with db.transaction():
            clinic = await load_clinic(uuid.UUID(clinic_id))
            invoice = await open_invoice(None, clinic, patient_id=uuid.UUID(patient_id),
                                         lines=[LineInput("Consultation", 1, 10_000)])
        return str(invoice.id)

    return str(domain_layer.run(go()))


def _patient_of(world: World, api, sa_token, clinic: dict[str, Any], caller: str) -> str:
    """Whose invoice a caller acts on: a PATIENT's own, anyone else's a fresh patient's."""
    if caller == "PATIENT" and clinic is world.a:
        return str(world.callers["PATIENT"]["user_id"])
    return target(api, sa_token, clinic, location_index=None)


@pytest.mark.parametrize("where", ["own", "other"])
@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("route", PLAN_ROUTES)
def test_plan_route(world: World, api, sa_token, db, route: str, caller: str, where: str) -> None:
    who = world.callers.get(caller, {"token": None})
    method, path, body, permission, success = plan_request(route, world, where, api, sa_token)
    before = db.fetch("SELECT (SELECT count(*) FROM billing_plans) AS p, "
                      "(SELECT count(*) FROM billing_subscriptions WHERE status = 'cancelled') AS c,"
                      " (SELECT count(*) FROM billing_subscriptions) AS s")[0]
    r = api.as_(who["token"], method, path, json=body)
    scope = scope_of(permission, Role(caller)) if caller != "ANONYMOUS" else Scope.DENY
    if caller == "ANONYMOUS":
        expected = 401
    elif where == "other" and caller != "SUPER_ADMIN":
        expected = 404
    elif scope is Scope.DENY:
        expected = 403
    elif scope is Scope.LOCATION and route in ("GET subscription", "POST subscription/cancel"):
        expected = 404  # a subscription is at no location: out of an L caller's reach
    else:
        expected = success
    assert r.status_code == expected, f"{caller} {method} {path}: {r.status_code} {r.text}"
    if expected >= 400:
        assert r.headers["content-type"].startswith("application/problem+json")
        if method != "GET":  # a refused write changes nothing
            after = db.fetch("SELECT (SELECT count(*) FROM billing_plans) AS p, "
                             "(SELECT count(*) FROM billing_subscriptions WHERE status = "
                             "'cancelled') AS c, (SELECT count(*) FROM billing_subscriptions) AS s"
                             )[0]
            assert after == before
    if route == "GET subscriptions" and expected == 200:
        patients = {s["patient_id"] for s in r.json()["items"]}
        if scope is Scope.OWN:
            assert patients <= {who["user_id"]}
        elif scope is Scope.LOCATION:
            assert patients <= {who["user_id"]}
    if where == "other" and caller != "SUPER_ADMIN":
        for secret in world.b_secrets:
            assert str(secret) not in r.text


@pytest.mark.parametrize("where", ["own", "other"])
@pytest.mark.parametrize("caller", CALLERS)
def test_payment_routes(world: World, api, sa_token, domain_layer, caller: str,
                        where: str) -> None:
    """Desk payments: staff with payments:create (a patient pays online: 403); reads:
    payments:read, a patient their own; a LOCATION_HEAD's L reaches no payment (they carry no
    location): the list answers, a payment is 404. Another clinic: 404."""
    clinic = world.a if where == "own" else world.b
    who = world.callers.get(caller, {"token": None})
    invoice = _invoice(domain_layer, clinic["id"], _patient_of(world, api, sa_token, clinic,
                                                                 caller))
    r = api.as_(who["token"], "POST", "/billing/payments",
                json={"invoice_id": invoice, "method": "cash", "amount": 1_000})
    role = Role(caller) if caller != "ANONYMOUS" else None
    if role is None:
        expected = 401
    elif where == "other" and caller != "SUPER_ADMIN":
        expected = 404
    elif scope_of("payments:create", role) is Scope.DENY or role is Role.PATIENT:
        expected = 403
    else:
        expected = 201
    assert r.status_code == expected, f"{caller} desk payment: {r.status_code} {r.text}"
    if where == "other" and caller != "SUPER_ADMIN":
        for secret in world.b_secrets:
            assert str(secret) not in r.text
    paid = api.as_(sa_token, "POST", "/billing/payments",
                   json={"invoice_id": invoice, "method": "cash", "amount": 2_000})
    assert paid.status_code == 201, paid.text
    payment_id = paid.json()["id"]
    read = scope_of("payments:read", role) if role else Scope.DENY
    r = api.as_(who["token"], "GET", f"/billing/payments/{payment_id}")
    if role is None:
        expected = 401
    elif where == "other" and caller != "SUPER_ADMIN":
        expected = 404
    elif read is Scope.DENY:
        expected = 403
    elif read is Scope.LOCATION:
        expected = 404
    else:
        expected = 200
    assert r.status_code == expected, f"{caller} read: {r.status_code} {r.text}"
    r = api.as_(who["token"], "GET", "/billing/payments", params={"clinic_id": clinic["id"]})
    if expected in (200, 404) and role is not None and read is not Scope.DENY \
            and not (where == "other" and caller != "SUPER_ADMIN"):
        assert r.status_code == 200, r.text
        ids = {p["id"] for p in r.json()["items"]}
        assert (payment_id in ids) == (expected == 200)
    else:
        assert r.status_code == expected, f"{caller} list: {r.status_code} {r.text}"


@pytest.mark.parametrize("where", ["own", "other"])
@pytest.mark.parametrize("caller", CALLERS)
def test_billing_credentials_routes(world: World, api, caller: str, where: str) -> None:
    clinic = world.a if where == "own" else world.b
    who = world.callers.get(caller, {"token": None})
    path = f"/clinics/{clinic['id']}/billing/credentials/stripe"
    body = {"credentials": {"secret_key": "sk_test_" + "k" * 20,
                            "webhook_secret": "whsec_" + "w" * 20}}
    for method, permission in (("PUT", "billing_settings:manage"),
                               ("GET", "billing_settings:read")):
        r = api.as_(who["token"], method, path, json=body if method == "PUT" else None)
        if caller == "ANONYMOUS":
            expected = 401
        elif where == "other" and caller != "SUPER_ADMIN":
            expected = 404
        elif scope_of(permission, Role(caller)) is Scope.DENY:
            expected = 403
        else:
            expected = 200
        assert r.status_code == expected, f"{caller} {method} {path}: {r.status_code} {r.text}"
        assert "k" * 20 not in r.text and "w" * 20 not in r.text


@pytest.mark.parametrize("caller", CALLERS)
def test_payment_webhooks_need_no_login_and_no_login_helps(world: World, api, sa_token, db,
                                                           caller: str) -> None:
    from tests.billing.fakes.stripe import FakeStripe

    stripe = FakeStripe()  # not started: its secrets sign, nothing is called
    r = api.as_(sa_token, "PUT", f"/clinics/{world.a['id']}/billing/credentials/stripe",
                json={"credentials": stripe.credentials()})
    assert r.status_code == 200, r.text
    token = world.callers.get(caller, {"token": None})["token"]
    body, headers = stripe.event("payment_intent.succeeded",
                                 {"id": "pi_" + uuid.uuid4().hex, "object": "payment_intent"})
    path = f"/webhooks/payments/stripe/{world.a['id']}"
    r = api.as_(token, "POST", path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 401, r.text
    r = api.as_(token, "POST", path, content=body, headers=headers)
    assert r.status_code == 200, r.text
    event_id = f"{world.a['id']}:{json.loads(body)['id']}"
    assert db.fetch("SELECT count(*) AS n FROM webhook_inbox WHERE provider = 'stripe' "
                    "AND event_id = $1", event_id)[0]["n"] == 1


# --- billing: refunds --------------------------------------------------------------------------
# A refund's payment is its patient's (O) and at its visit's location (L); refunds:create is the
# accountant's and the clinic admin's. Payments come from rows (tests/billing/payment_rows.py):
# these clinics take no payments; paying is tested in tests/billing.

REFUND_ROUTES = ["POST /billing/payments/{id}/refunds", "GET /billing/payments/{id}/refunds",
                 "GET /billing/refunds/{id}", "GET /billing/refunds"]


def refund_case(route: str, p: Party, api, db, sa_token: str) -> Case:
    from tests.billing.payment_rows import paid

    payment = paid(db, p.clinic_id, p.patient_id, 1000,
                   appointment_id=booked(api, sa_token, p))
    reach = {"owner": p.patient_id, "location": p.location_id}
    match route:
        case "POST /billing/payments/{id}/refunds":
            return Case("POST", f"/billing/payments/{payment}/refunds", "refunds:create",
                        success=201, body={"amount": 100, "reason": "matrix"}, **reach)
        case "GET /billing/payments/{id}/refunds":
            return Case("GET", f"/billing/payments/{payment}/refunds", "refunds:read",
                        success=200, **reach)
        case "GET /billing/refunds/{id}":
            r = api.as_(sa_token, "POST", f"/billing/payments/{payment}/refunds",
                        json={"amount": 100, "reason": "matrix"})
            assert r.status_code == 201, r.text
            return Case("GET", f"/billing/refunds/{r.json()['id']}", "refunds:read", success=200,
                        **reach)
        case "GET /billing/refunds":  # the clinic's list: every role that may read gets a page
            return Case("GET", "/billing/refunds", "refunds:read", success=200,
                        params={"clinic_id": p.clinic_id}, owner=None, location=None,
                        refusal=lambda role, scope: None)
    raise AssertionError(route)


def refund_params() -> list[Any]:
    return [pytest.param(route, caller, where, id=f"{route}-{caller}-{where}")
            for route in REFUND_ROUTES for caller in CALLERS
            for where in ("mine", "theirs", "other")
            if not (route == "GET /billing/refunds" and where == "theirs")]


@pytest.mark.parametrize(("route", "caller", "where"), refund_params())
def test_refund_route(world: World, sched: Sched, api, db, sa_token, route: str, caller: str,
                      where: str) -> None:
    who = world.callers.get(caller, {"token": None, "user_id": None})
    case = refund_case(route, sched.parties[where], api, db, sa_token)
    payment = case.path.split("/")[3] if case.path.startswith("/billing/payments/") else None
    before = db.fetch("SELECT refunded FROM billing_payments WHERE id = $1::uuid",
                      payment) if payment else None
    r = api.as_(who["token"], case.method, case.path, json=case.body, params=case.params)
    if route == "GET /billing/refunds":
        expected = (401 if caller == "ANONYMOUS" else
                    404 if where == "other" and caller != "SUPER_ADMIN" else
                    403 if scope_of("refunds:read", Role(caller)) is Scope.DENY else 200)
    else:
        expected = expected_for(case, caller, where, who)
    assert r.status_code == expected, f"{caller} {case.method} {case.path}: {r.status_code} {r.text}"
    if expected >= 400:
        assert r.headers["content-type"].startswith("application/problem+json")
        if payment:  # refused: nothing refunded
            assert db.fetch("SELECT refunded FROM billing_payments WHERE id = $1::uuid",
                            payment) == before
    if where == "other" and caller != "SUPER_ADMIN":
        for secret in sched.b_secrets:
            assert str(secret) not in r.text


# --- video: sessions ---------------------------------------------------------------------------
# A session is reached through its appointment: the appointment's owner and location decide
# (video:read, video:join, video:manage). Creating needs video:manage or video:join; a token is
# asked for inside the join window (the appointment starts in two minutes, and is cancelled after
# the case so the doctor's next case can take the same time).

SESSION_ROUTES = ["POST /video/sessions", "GET /video/sessions/{id}",
                "GET /appointments/{id}/video-sessions", "POST /video/sessions/{id}/token",
                "POST /video/sessions/{id}/admit", "POST /video/sessions/{id}/end"]


def _video_appointment(api, sa_token: str, p: Party, *, now: bool) -> str:
    start = (datetime.now(TZ).replace(second=0, microsecond=0) + timedelta(minutes=2)).isoformat() \
        if now else next_slot()
    r = api.as_(sa_token, "POST", "/appointments",
                json={**booking(p, start), "type": "video", "override_reason": "matrix"})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _video_session(api, sa_token: str, appointment_id: str) -> str:
    r = api.as_(sa_token, "POST", "/video/sessions", json={"appointment_id": appointment_id})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def video_case(route: str, p: Party, role: Role | None, api, db, sa_token: str) -> Case:
    reach = {"owner": owner_of(role, p.doctor_id, p.patient_id), "location": p.location_id}
    appointment = _video_appointment(api, sa_token, p, now=route.endswith("/token"))
    if route == "POST /video/sessions":
        return Case("POST", "/video/sessions", "video:manage", success=201,
                    body={"appointment_id": appointment}, appointment_id=appointment, **reach)
    session = _video_session(api, sa_token, appointment)
    match route:
        case "GET /video/sessions/{id}":
            return Case("GET", f"/video/sessions/{session}", "video:read", success=200, **reach)
        case "GET /appointments/{id}/video-sessions":
            return Case("GET", f"/appointments/{appointment}/video-sessions", "video:read",
                        success=200, **reach)
        case "POST /video/sessions/{id}/token":
            return Case("POST", f"/video/sessions/{session}/token", "video:join", success=200,
                        appointment_id=appointment, **reach)
        case "POST /video/sessions/{id}/admit":
            db.fetch("UPDATE video_sessions SET status = 'waiting', patient_waiting_at = now() "
                     "WHERE id = $1::uuid", session)  # the patient is in the waiting room
            return Case("POST", f"/video/sessions/{session}/admit", "video:manage", success=200,
                        appointment_id=appointment, **reach)
        case "POST /video/sessions/{id}/end":
            return Case("POST", f"/video/sessions/{session}/end", "video:manage", success=200,
                        appointment_id=appointment, **reach)
    raise AssertionError(route)


def _video_expected(case: Case, caller: str, where: str, who: dict[str, Any]) -> int:
    if case.path != "/video/sessions":
        return expected_for(case, caller, where, who)
    if caller == "ANONYMOUS":
        return 401
    if where == "other" and caller != "SUPER_ADMIN":
        return 404
    role = Role(caller)
    scopes = [s for s in (scope_of(p, role) for p in ("video:manage", "video:join"))
              if s is not Scope.DENY]
    if not scopes:
        return 403
    return 201 if any(covers(s, who, case.owner, case.location) for s in scopes) else 404


def _video_rows(db, appointment_id: str | None) -> list[dict[str, Any]]:
    if appointment_id is None:
        return []
    return db.fetch("SELECT id, status, provider FROM video_sessions WHERE appointment_id = "
                    "$1::uuid ORDER BY created_at", appointment_id)


@pytest.mark.parametrize("where", ["mine", "theirs", "other"])
@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("route", SESSION_ROUTES)
def test_video_session_route(world: World, sched: Sched, api, db, sa_token, route: str,
                             caller: str, where: str) -> None:
    who = world.callers.get(caller, {"token": None, "user_id": None})
    case = video_case(route, sched.parties[where], Role(caller) if caller in ROLES else None,
                      api, db, sa_token)
    try:
        before = _video_rows(db, case.appointment_id)
        r = api.as_(who["token"], case.method, case.path, json=case.body)
        expected = _video_expected(case, caller, where, who)
        assert r.status_code == expected, \
            f"{caller} {case.method} {case.path}: {r.status_code} {r.text}"
        if expected >= 400:
            assert r.headers["content-type"].startswith("application/problem+json")
            assert _video_rows(db, case.appointment_id) == before  # refused: nothing changed
        if where == "other" and caller != "SUPER_ADMIN":
            for secret in sched.b_secrets:
                assert str(secret) not in r.text
    finally:
        if case.appointment_id and route.endswith("/token"):  # free the doctor's time
            api.as_(sa_token, "POST", f"/appointments/{case.appointment_id}/cancel")


# --- video: providers ---

@pytest.mark.parametrize("where", ["own", "other"])
@pytest.mark.parametrize("caller", CALLERS)
def test_video_provider_settings_routes(world: World, api, caller: str, where: str) -> None:
    """A clinic's own video accounts and its provider health. The body stored is the shared
    server's own Jitsi account, so the clinics' video sessions in other tests are unchanged."""
    from tests.conftest import JITSI_SECRET

    clinic = world.a if where == "own" else world.b
    who = world.callers.get(caller, {"token": None})
    base = f"/clinics/{clinic['id']}/video"
    body = {"credentials": {"domain": "meet.carewire.test", "app_id": "carewire-test",
                            "app_secret": JITSI_SECRET}}
    for method, path, permission in (("PUT", f"{base}/credentials/jitsi", "video_settings:manage"),
                                     ("GET", f"{base}/credentials/jitsi", "video_settings:read"),
                                     ("GET", f"{base}/health", "video_settings:read")):
        r = api.as_(who["token"], method, path, json=body if method == "PUT" else None)
        if caller == "ANONYMOUS":
            expected = 401
        elif where == "other" and caller != "SUPER_ADMIN":
            expected = 404
        elif scope_of(permission, Role(caller)) is Scope.DENY:
            expected = 403
        else:
            expected = 200
        assert r.status_code == expected, f"{caller} {method} {path}: {r.status_code} {r.text}"
        assert JITSI_SECRET not in r.text
        if expected >= 400:
            assert r.headers["content-type"].startswith("application/problem+json")


# --- video: webhooks and recording -------------------------------------------------------------
# A session and its recordings are reached through the session's appointment (its doctor's for a
# DOCTOR, its patient's for everyone else; at its location). Beyond the permission file: only
# the appointment's patient consents, only its doctor starts and stops a recording. The shared
# server records nothing (recording is off by default, no bucket): the doctor's start is the
# 409 that says so, a stop of a finished recording answers it, a link to one not complete is 409.

VIDEO_RECORDING_ROUTES = ["POST /video/sessions/{id}/consent",
                          "POST /video/sessions/{id}/recordings",
                          "POST /video/recordings/{id}/stop", "GET /video/recordings",
                          "POST /video/recordings/{id}/link"]


def _only(role_needed: Role) -> Callable[[Role, Scope], int | None]:
    return lambda role, scope: None if role is role_needed else 403


def video_recording_case(route: str, p: Party, role: Role | None, api, db,
                         sa_token: str) -> Case:
    from tests.video.rows import recording_row, session_row

    appointment = booked(api, sa_token, p)
    session = session_row(db, clinic_id=p.clinic_id, appointment_id=appointment,
                          doctor_id=p.doctor_id, patient_id=p.patient_id)
    reach = {"owner": owner_of(role, p.doctor_id, p.patient_id), "location": p.location_id,
             "appointment_id": appointment}
    match route:
        case "POST /video/sessions/{id}/consent":
            return Case("POST", f"/video/sessions/{session}/consent", "video:join", success=200,
                        refusal=_only(Role.PATIENT), **reach)
        case "POST /video/sessions/{id}/recordings":
            return Case("POST", f"/video/sessions/{session}/recordings", "video:manage",
                        success=409, refusal=_only(Role.DOCTOR), **reach)
        case "POST /video/recordings/{id}/stop":
            return Case("POST", f"/video/recordings/{recording_row(db, session)}/stop",
                        "video:manage", success=200, refusal=_only(Role.DOCTOR), **reach)
        case "GET /video/recordings":
            recording_row(db, session)
            return Case("GET", "/video/recordings", "recordings:read", success=200,
                        params={"appointment_id": appointment}, **reach)
        case "POST /video/recordings/{id}/link":
            return Case("POST", f"/video/recordings/{recording_row(db, session)}/link",
                        "recordings:read", success=409, **reach)
    raise AssertionError(route)


def video_recording_params() -> list[Any]:
    return [pytest.param(route, caller, where, id=f"{route}-{caller}-{where}")
            for route in VIDEO_RECORDING_ROUTES for caller in CALLERS
            for where in ("mine", "theirs", "other")]


@pytest.mark.parametrize(("route", "caller", "where"), video_recording_params())
def test_video_recording_route(world: World, sched: Sched, api, db, sa_token, route: str,
                               caller: str, where: str) -> None:
    who = world.callers.get(caller, {"token": None, "user_id": None})
    role = Role(caller) if caller != "ANONYMOUS" else None
    case = video_recording_case(route, sched.parties[where], role, api, db, sa_token)
    state = ("SELECT (SELECT count(*) FROM video_recordings WHERE appointment_id = $1::uuid) AS r,"
             " (SELECT count(*) FROM video_sessions WHERE appointment_id = $1::uuid "
             "AND recording_consent_at IS NOT NULL) AS c")
    before = db.fetch(state, case.appointment_id)
    r = api.as_(who["token"], case.method, case.path, json=case.body, params=case.params)
    expected = expected_for(case, caller, where, who)
    assert r.status_code == expected, f"{caller} {case.method} {case.path}: {r.status_code} {r.text}"
    if expected >= 400:
        assert r.headers["content-type"].startswith("application/problem+json")
        assert db.fetch(state, case.appointment_id) == before  # refused: nothing changed
    if route == "GET /video/recordings" and expected == 200:
        assert len(r.json()) == 1
    if where == "other" and caller != "SUPER_ADMIN":
        for secret in sched.b_secrets:
            assert str(secret) not in r.text


@pytest.mark.parametrize("caller", CALLERS)
def test_video_webhooks_need_no_login_and_no_login_helps(world: World, sched: Sched, api,
                                                         sa_token, db, caller: str) -> None:
    """The signature decides: a caller's bearer token neither replaces nor spoils it. The shared
    server has no OpenVidu of its own, so the key is clinic A's stored one."""
    from tests.video.fakes.livekit import LiveKitFake
    from tests.video.rows import session_row

    openvidu = LiveKitFake()  # not started: its keys sign, nothing is called
    creds = {**openvidu.credentials(), "url": "https://openvidu.clinic-a.example"}
    r = api.as_(sa_token, "PUT", f"/clinics/{world.a['id']}/video/credentials/openvidu",
                json={"credentials": creds})
    assert r.status_code == 200, r.text
    p = sched.parties["mine"]
    room = "matrix" + uuid.uuid4().hex
    session_row(db, clinic_id=p.clinic_id, appointment_id=booked(api, sa_token, p),
                doctor_id=p.doctor_id, patient_id=p.patient_id, room=room)
    token = world.callers.get(caller, {"token": None})["token"]
    body, headers = openvidu.webhook("participant_joined", room=room, identity=p.patient_id)
    path = "/webhooks/video/openvidu"
    r = api.as_(token, "POST", path, content=body,
                headers={"content-type": "application/webhook+json"})
    assert r.status_code == 401, r.text
    r = api.http.post(path, content=body, headers=headers)  # the provider's own Authorization
    assert r.status_code == 200, r.text
    assert db.fetch("SELECT count(*) AS n FROM webhook_inbox WHERE provider = 'openvidu' "
                    "AND event_id = $1", json.loads(body)["id"])[0]["n"] == 1
