"""Bad input never gets a 500 nor leaves half a change: it always gets a 4xx
`application/problem+json` answer (API.md) and, when a field is at fault, `errors` names it.

Every route of the OpenAPI is driven with wrong JSON types, missing and unknown fields,
bodies that are not JSON objects, oversized and deeply nested bodies, NUL characters and
lone surrogates, bad UUIDs in the path and body, bad query parameters, the wrong
Content-Type, a bad Idempotency-Key and bad bearer tokens; for scheduling also times without
a UTC offset or out of range, `to` not after `from`, bad HH:MM and weekdays in schedule rules,
out-of-range minutes and repeats, unknown types and statuses. Every refused write is checked
against the database: no row appears, changes or disappears. A bounded schemathesis run
fuzzes the live OpenAPI on top, once with random ids and once with real ones.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

from tests.communication.fakes import webhooks as fake
from tests.conftest import SA_EMAIL, SA_PASSWORD, unique_email
from tests.operations import OPENAPI_OPERATIONS

pytestmark = [pytest.mark.slow]  # every route x every kind of bad input, and fuzzing

PROBLEM = "application/problem+json"
CODES = {"invalid", "unauthenticated", "forbidden", "not_found", "conflict",
         "payment_required", "rate_limited", "unavailable"}
KEYS = {"type", "title", "status", "detail", "code"}
MIB = 1 << 20
NIL = "00000000-0000-0000-0000-000000000000"
JSON = {"content-type": "application/json"}
TZ = ZoneInfo("Asia/Kolkata")  # clinic_factory's time zone


def later(days: int, hhmm: str = "10:00") -> str:
    """A wall-clock time `days` from today in the clinic's zone, as RFC 3339."""
    day = datetime.now(TZ).date() + timedelta(days=days)
    h, m = map(int, hhmm.split(":"))
    return datetime(day.year, day.month, day.day, h, m, tzinfo=TZ).isoformat()


# --- what every refusal looks like -----------------------------------------------------------

def check_problem(status: int, headers: Any, body: Any) -> None:
    assert 400 <= status < 500, (status, body)
    content_type = headers.get("content-type")
    if isinstance(content_type, list):  # schemathesis' headers hold lists
        content_type = content_type[0]
    assert (content_type or "").startswith(PROBLEM), (status, content_type, body)
    assert isinstance(body, dict) and KEYS <= body.keys(), body
    assert body["status"] == status, body
    assert body["code"] in CODES, body
    assert body["type"].endswith("/" + body["code"]), body
    assert isinstance(body["title"], str) and body["title"], body
    assert isinstance(body["detail"], str) and body["detail"], body
    for error in body.get("errors") or []:
        assert set(error) == {"field", "message"}, body
        assert error["field"] and error["message"], body


def assert_problem(r: httpx.Response, status: int, code: str = "invalid",
                   field: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    check_problem(r.status_code, r.headers, body)
    assert body["code"] == code, body
    if field is not None:
        assert field in [e["field"] for e in body.get("errors") or []], body
    return body


# --- the state a refused write must leave alone -----------------------------------------------

@dataclass(frozen=True)
class Ctx:
    clinic_id: str  # allows self-registration
    location_id: str
    user_id: str  # a NURSE of the clinic: the target of member PATCH / DELETE
    nurse_email: str
    nurse_password: str
    sa_token: str
    doctor_id: str  # works every day 08:00-20:00: the target of schedule writes
    patient_id: str
    appointment_id: str  # scheduled: the target of transitions and reschedules
    visit_id: str  # checked in: the parent of follow-ups
    queue_id: str  # the visit's queue
    entry_id: str  # the visit's entry in it: the target of queue-entry writes
    doctor2_id: str  # another doctor: the target of transfers
    invitation_id: str  # another clinic's pending invitation of the nurse: the target of answers
    device_id: str  # the super admin's push device: the target of device removal
    message_id: str  # a delivery-log row of the clinic
    suppressed: str  # an email address the clinic suppresses: the target of suppression removal
    sa_user_id: str  # the super admin (the caller): whose preferences must stay as they are
    notification_id: str  # an unread inbox item of the super admin: the target of read marks
    # --- billing: plans ---
    plan_id: str = ""  # a plan of the clinic: the target of plan PATCH
    subscription_id: str = ""  # the patient's live subscription: the target of cancels
    spare_plan_id: str = ""  # a plan the patient has not subscribed to
    # --- billing: invoices ---
    invoice_id: str = NIL  # an open invoice of the clinic: the target of invoice writes


RULE = {"weekday": 0, "start": "08:00", "end": "20:00"}
WEEK = [{**RULE, "weekday": d} for d in range(7)]


def book_now(api, sa_token: str, body: dict[str, Any]) -> str:
    r = api.as_(sa_token, "POST", "/appointments", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


@pytest.fixture(scope="module")
def ctx(api, db, clinic_factory, member_factory, sa_token) -> Ctx:
    clinic = clinic_factory(allow_self_registration=True)
    cid, loc = clinic["id"], clinic["locations"][0]["id"]
    nurse = member_factory(cid, "NURSE", tag="bad-input")
    doctor = member_factory(cid, "DOCTOR", location_id=loc, tag="bad-input-doc")
    patient = member_factory(cid, "PATIENT", tag="bad-input-patient")
    r = api.as_(sa_token, "PUT", f"/clinics/{cid}/doctors/{doctor['user_id']}/schedule",
                json={"rules": WEEK, "slot_minutes": 30})
    assert r.status_code == 200, r.text
    visit = {"clinic_id": cid, "doctor_id": doctor["user_id"], "patient_id": patient["user_id"],
             "type": "in_person", "location_id": loc}
    appointment_id = book_now(api, sa_token, {**visit, "start": later(5, "10:00")})
    visit_id = book_now(api, sa_token, {**visit, "start": later(5, "11:00")})
    assert api.as_(sa_token, "POST", f"/appointments/{visit_id}/check-in").status_code == 200
    queue_id = api.as_(sa_token, "GET", f"/appointments/{visit_id}/queue-position").json()["queue_id"]
    entry_id = api.as_(sa_token, "GET", f"/queues/{queue_id}").json()["entries"][0]["id"]
    doctor2 = member_factory(cid, "DOCTOR", location_id=loc, password=None, tag="bad-input-doc2")
    other = clinic_factory()
    other_admin = member_factory(other["id"], "CLINIC_ADMIN", tag="bad-input-inviter")
    r = api.as_(other_admin["token"], "POST", f"/clinics/{other['id']}/members",
                json={"email": nurse["email"], "name": "Nurse", "role": "NURSE"})
    assert r.status_code == 202, r.text
    made = Ctx(cid, loc, nurse["user_id"], nurse["email"], nurse["password"], sa_token,
               doctor["user_id"], patient["user_id"], appointment_id, visit_id, queue_id, entry_id,
               doctor2["user_id"], r.json()["invitation_id"], *communication(api, db, cid, sa_token),
               *notifications(api, db, cid, sa_token),
               invoice_id=open_invoice(api, cid, patient["user_id"], sa_token))
    return replace(made, **billing_plan_ids(api, cid, patient["user_id"], sa_token))


def billing_plan_ids(api, clinic_id: str, patient_id: str, sa_token: str) -> dict[str, str]:
    """A plan of the clinic and the patient's subscription to it (billing: plans)."""
    r = api.as_(sa_token, "POST", "/billing/plans",
                json={"clinic_id": clinic_id, "name": "Bad input plan", "price": 0,
                      "interval": "month", "quotas": {"in_person": 2}})
    assert r.status_code == 201, r.text
    plan_id = r.json()["id"]
    r = api.as_(sa_token, "POST", "/billing/subscriptions",
                json={"clinic_id": clinic_id, "plan_id": plan_id, "patient_id": patient_id})
    assert r.status_code == 201, r.text
    subscription_id = r.json()["id"]
    r = api.as_(sa_token, "POST", "/billing/plans",
                json={"clinic_id": clinic_id, "name": "Bad input spare plan", "price": 0,
                      "interval": "year"})
    assert r.status_code == 201, r.text
    return {"plan_id": plan_id, "subscription_id": subscription_id, "spare_plan_id": r.json()["id"]}


def notifications(api, db, clinic_id: str, sa_token: str) -> tuple[str, str]:
    """The super admin's id (with preferences stored) and an unread inbox item of theirs."""
    from tests.notifications.inbox_rows import insert_notification

    me = api.as_(sa_token, "GET", "/users/me").json()["id"]
    r = api.as_(sa_token, "PUT", "/users/me/notification-preferences",
                json={"channels": {"appointment.booked": ["email"]}, "timezone": "UTC"})
    assert r.status_code == 200, r.text
    return me, insert_notification(db, clinic_id, me)


def communication(api, db, clinic_id: str, sa_token: str) -> tuple[str, str, str]:
    """The super admin's device, a message of the clinic and a suppressed address of it."""
    from tests.communication.messages import insert_message

    r = api.as_(sa_token, "POST", "/users/me/devices",
                json={"kind": "fcm", "platform": "web", "token": "bad-input-" + "d" * 40})
    assert r.status_code in (200, 201), r.text
    address = unique_email("bad-input-suppressed")
    s = api.as_(sa_token, "POST", f"/clinics/{clinic_id}/communication/suppressions",
                json={"channel": "email", "address": address})
    assert s.status_code == 201, s.text
    return r.json()["id"], insert_message(db, clinic_id, None), address


def open_invoice(api, clinic_id: str, patient_id: str, sa_token: str) -> str:
    """billing: an open invoice (a draft, finalised)."""
    r = api.as_(sa_token, "POST", "/billing/invoices", json={
        "clinic_id": clinic_id, "patient_id": patient_id,
        "lines": [{"description": "Consultation", "quantity": 1, "unit_amount": 50000}]})
    assert r.status_code == 201, r.text
    r = api.as_(sa_token, "POST", f"/billing/invoices/{r.json()['id']}/finalize")
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def snapshot(db, ctx: Ctx) -> dict[str, Any]:
    rows = db.fetch(
        """SELECT (SELECT count(*) FROM clinics) AS clinics,
                  (SELECT count(*) FROM locations) AS locations,
                  (SELECT count(*) FROM users) AS users,
                  (SELECT count(*) FROM memberships) AS memberships,
                  (SELECT count(*) FROM sessions WHERE revoked_at IS NULL) AS live_sessions,
                  (SELECT count(*) FROM refresh_tokens) AS refresh_tokens,
                  (SELECT count(*) FROM events) AS events,
                  (SELECT count(*) FROM time_off) AS time_off,
                  (SELECT count(*) FROM appointments) AS appointments,
                  (SELECT count(*) FROM appointment_transitions) AS transitions,
                  (SELECT row_to_json(c)::text FROM clinics c WHERE c.id = $1::uuid) AS clinic,
                  (SELECT row_to_json(m)::text FROM memberships m
                    WHERE m.clinic_id = $1::uuid AND m.user_id = $2::uuid) AS member,
                  (SELECT row_to_json(s)::text FROM doctor_schedules s
                    WHERE s.clinic_id = $1::uuid AND s.doctor_id = $3::uuid) AS schedule,
                  (SELECT json_agg(a ORDER BY a.id)::text FROM appointments a
                    WHERE a.clinic_id = $1::uuid) AS booked,
                  (SELECT count(*) FROM queues) AS queues,
                  (SELECT count(*) FROM queue_entries) AS queue_entries,
                  (SELECT json_agg(q ORDER BY q.id)::text FROM queues q
                    WHERE q.clinic_id = $1::uuid) AS queue_rows,
                  (SELECT json_agg(e ORDER BY e.id)::text FROM queue_entries e
                    WHERE e.clinic_id = $1::uuid) AS entry_rows,
                  (SELECT count(*) FROM invitations) AS invitations,
                  (SELECT json_agg(k ORDER BY k.channel)::text FROM communication_configs k
                    WHERE k.clinic_id = $1::uuid) AS communication_config,
                  (SELECT count(*) FROM clinic_credentials) AS credentials,
                  (SELECT count(*) FROM communication_messages) AS messages,
                  (SELECT count(*) FROM devices) AS devices,
                  (SELECT json_agg(d ORDER BY d.id)::text FROM devices d
                    WHERE d.id = $5::uuid AND d.retired_at IS NULL) AS device,
                  (SELECT count(*) FROM communication_suppressions) AS suppressions,
                  (SELECT json_agg(s ORDER BY s.id)::text FROM communication_suppressions s
                    WHERE s.clinic_id = $1::uuid) AS suppression_rows,
                  (SELECT json_agg(t ORDER BY t.kind, t.channel, t.locale)::text
                     FROM communication_templates t) AS templates,
                  (SELECT row_to_json(i)::text FROM invitations i
                    WHERE i.id = $4::uuid) AS invitation,
                  (SELECT count(*) FROM notification_preferences) AS notification_preferences,
                  (SELECT row_to_json(p)::text FROM notification_preferences p
                    WHERE p.user_id = $6::uuid) AS preferences,
                  (SELECT count(*) FROM notifications WHERE read_at IS NOT NULL) AS read_marks,
                  (SELECT row_to_json(n)::text FROM notifications n
                    WHERE n.id = $7::uuid) AS notification,
                  (SELECT json_agg(p ORDER BY p.id)::text FROM billing_plans p
                    WHERE p.clinic_id = $1::uuid) AS billing_plans,
                  (SELECT json_agg(s ORDER BY s.id)::text FROM billing_subscriptions s
                    WHERE s.clinic_id = $1::uuid) AS billing_subscriptions,
                  (SELECT count(*) FROM billing_plans) AS billing_plan_count,
                  (SELECT count(*) FROM billing_subscriptions) AS billing_subscription_count,
                  (SELECT count(*) FROM billing_invoices) AS invoices,
                  (SELECT count(*) FROM billing_invoice_lines) AS invoice_lines,
                  (SELECT row_to_json(i)::text FROM billing_invoices i
                    WHERE i.id = $8::uuid) AS invoice""",
        ctx.clinic_id, ctx.user_id, ctx.doctor_id, ctx.invitation_id, ctx.device_id,
        ctx.sa_user_id, ctx.notification_id, ctx.invoice_id,
    )
    state = rows[0]
    # the targets exist to be left alone
    assert state["clinic"] and state["member"] and state["schedule"] and state["booked"], state
    assert state["queue_rows"] and state["entry_rows"], state
    assert '"status":"pending"' in state["invitation"], state
    assert state["device"] and ctx.suppressed in state["suppression_rows"], state
    assert state["preferences"] and state["notification"], state
    assert '"status":"open"' in state["invoice"], state
    return state


def ids(ctx: Ctx, path: str) -> dict[str, str]:
    """The ids a route's path names; a follow-up needs a visit that took place."""
    return {"clinic_id": ctx.clinic_id, "user_id": ctx.user_id, "doctor_id": ctx.doctor_id,
            "patient_id": ctx.patient_id, "location_id": ctx.location_id,
            "queue_id": ctx.queue_id, "entry_id": ctx.entry_id,
            "invitation_id": ctx.invitation_id, "device_id": ctx.device_id,
            "message_id": ctx.message_id, "channel": "email", "address": ctx.suppressed,
            "notification_id": ctx.notification_id,
            "plan_id": ctx.plan_id, "subscription_id": ctx.subscription_id,
            "invoice_id": ctx.invoice_id,
            "kind": "appointment.booked", "locale": "hi-IN",
            "payment_id": NIL, "provider": "stripe",  # billing: payments
            "appointment_id": ctx.visit_id if path.endswith("/follow-up") else ctx.appointment_id}


def fill(path: str, ctx: Ctx) -> str:
    return path.format(**ids(ctx, path))


# --- the routes -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Write:
    """A route that reads a JSON body, with a valid body and the fields to spoil."""

    method: str
    path: str
    body: Callable[[Ctx], dict[str, Any]]
    text: str | None  # a free-text field: NUL, lone surrogates, over-long (None: there is none)
    max_length: int  # of `text`
    required: str | None  # a required field (PATCH has none)
    wrong_type: tuple[str, Any]  # a field and a value of the wrong JSON type (not "30" for an
    #                              int: bodies are decoded leniently, and "30" is taken as 30)
    public: bool = False
    optional_body: bool = False  # no body (or JSON null) is a valid request


def _booking(c: Ctx, **more: Any) -> dict[str, Any]:
    """A booking that would succeed: a free slot in the doctor's hours, in the horizon."""
    return {"clinic_id": c.clinic_id, "doctor_id": c.doctor_id, "patient_id": c.patient_id,
            "type": "in_person", "start": later(6, "10:00"), "duration_minutes": 30,
            "location_id": c.location_id, "reason": "check-up", **more}


def _time_off(c: Ctx) -> dict[str, Any]:
    return {"start": later(7, "13:00"), "end": later(7, "14:00"), "reason": "training"}


def _transition(action: str) -> Write:
    return Write("POST", f"/appointments/{{appointment_id}}/{action}", lambda c: {"reason": "asked"},
                 "reason", 1000, None, ("reason", 5), optional_body=True)


TEMPLATE = "/clinics/{clinic_id}/communication/templates/{kind}/{channel}/{locale}"


def _invoice_draft(c: Ctx) -> dict[str, Any]:
    return {"clinic_id": c.clinic_id, "patient_id": c.patient_id, "discount": 0,
            "lines": [{"description": "Consultation", "quantity": 1, "unit_amount": 50000}]}
EMAIL_TEMPLATE = ("{% block subject %}{{ clinic_name }}{% endblock %}"
                  "{% block text %}{{ starts_at | datetime }}{% endblock %}"
                  "{% block html %}<p>{{ starts_at | datetime }}</p>{% endblock %}")

WRITES: dict[str, Write] = {
    "login": Write(
        "POST", "/auth/login", lambda c: {"email": unique_email("bad"), "password": "password-1"},
        "email", 254, "password", ("email", 42), public=True),
    "refresh": Write(
        "POST", "/auth/refresh", lambda c: {"refresh_token": "r" * 43},
        "refresh_token", 512, "refresh_token", ("refresh_token", ["r"]), public=True),
    "register": Write(
        "POST", "/auth/register",
        lambda c: {"clinic_id": c.clinic_id, "email": unique_email("reg"),
                   "password": "patient-password-1", "name": "Pat Ient"},
        "name", 200, "clinic_id", ("clinic_id", 12345), public=True),
    "create_clinic": Write(
        "POST", "/clinics", lambda c: {"name": f"Bad {uuid.uuid4().hex[:6]}", "timezone": "UTC"},
        "name", 200, "timezone", ("settings", "yes")),
    "update_clinic": Write(
        "PATCH", "/clinics/{clinic_id}", lambda c: {"name": "Renamed by a bad request"},
        "name", 200, None, ("timezone", 5)),
    "create_location": Write(
        "POST", "/clinics/{clinic_id}/locations", lambda c: {"name": "East", "address": "1 St"},
        "address", 500, "name", ("name", {"a": 1})),
    "add_member": Write(
        "POST", "/clinics/{clinic_id}/members",
        lambda c: {"email": unique_email("add"), "name": "New Nurse", "role": "NURSE"},
        "name", 200, "role", ("role", 7)),
    "update_member": Write(
        "PATCH", "/clinics/{clinic_id}/members/{user_id}", lambda c: {"role": "RECEPTIONIST"},
        "role", 64, None, ("location_id", True)),
    "put_schedule": Write(
        "PUT", "/clinics/{clinic_id}/doctors/{doctor_id}/schedule",
        lambda c: {"rules": WEEK, "slot_minutes": 30}, None, 0, "rules", ("slot_minutes", [30])),
    "time_off": Write(
        "POST", "/clinics/{clinic_id}/doctors/{doctor_id}/time-off", _time_off,
        "reason", 1000, "start", ("end", {"at": "noon"})),
    "holiday": Write(
        "POST", "/clinics/{clinic_id}/holidays", _time_off,
        "reason", 1000, "end", ("start", ["2030-01-01T00:00:00Z"])),
    "book": Write(
        "POST", "/appointments", _booking, "reason", 1000, "patient_id", ("duration_minutes", [30])),
    "book_series": Write(
        "POST", "/appointments/series", lambda c: _booking(c, repeat={"every_days": 7, "count": 2}),
        "reason", 1000, "repeat", ("repeat", 7)),
    **{f"appointment_{a.replace('-', '_')}": _transition(a)
       for a in ("confirm", "check-in", "start", "complete", "no-show", "cancel")},
    "reschedule": Write(
        "POST", "/appointments/{appointment_id}/reschedule",
        lambda c: {"start": later(6, "15:00"), "reason": "doctor late"},
        "reason", 1000, "start", ("duration_minutes", {"m": 45})),
    "follow_up": Write(
        "POST", "/appointments/{appointment_id}/follow-up",
        lambda c: {"after_days": 7, "reason": "review"}, "reason", 1000, None, ("after_days", [7])),
    "entry_priority": Write(
        "POST", "/queue-entries/{entry_id}/priority",
        lambda c: {"priority": "urgent", "reason": "chest pain"}, "reason", 1000, "priority",
        ("priority", 2)),
    "register_device": Write(
        "POST", "/users/me/devices",
        lambda c: {"kind": "fcm", "platform": "android", "token": "t" * 16 + uuid.uuid4().hex,
                   "app_version": "1.0"},
        "token", 4096, "kind", ("platform", 5)),
    "add_suppression": Write(
        "POST", "/clinics/{clinic_id}/communication/suppressions",
        lambda c: {"channel": "email", "address": unique_email("sup"), "reason": "manual",
                   "note": "asked"},
        "address", 320, "channel", ("reason", 5)),
    "entry_transfer": Write(
        "POST", "/queue-entries/{entry_id}/transfer", lambda c: {"doctor_id": c.doctor2_id},
        None, 0, "doctor_id", ("doctor_id", 5)),
    "put_communication_config": Write(
        "PUT", "/clinics/{clinic_id}/communication/config",
        lambda c: {"channels": {"push": {"providers": ["local"]}}}, None, 0, None,
        ("channels", 7)),
    # its strings may all be null: NUL and over-long ones are field cases below
    "put_notification_preferences": Write(
        "PUT", "/users/me/notification-preferences",
        lambda c: {"channels": {"appointment.booked": ["push", "in_app"]},
                   "quiet_hours": {"start": "22:00", "end": "07:00"}, "timezone": "Asia/Kolkata",
                   "locale": "hi-IN"},
        None, 0, None, ("channels", 7)),
    "put_template": Write(
        "PUT", TEMPLATE, lambda c: {"source": EMAIL_TEMPLATE}, "source", 20_000, "source",
        ("source", 5)),
    "preview_template": Write(
        "POST", TEMPLATE + "/preview", lambda c: {"source": EMAIL_TEMPLATE}, "source", 20_000,
        None, ("source", ["x"]), optional_body=True),
    # --- billing: invoices ---
    "create_invoice": Write(
        "POST", "/billing/invoices", _invoice_draft, None, 0, "patient_id", ("discount", ["1"])),
    "void_invoice": Write(
        "POST", "/billing/invoices/{invoice_id}/void", lambda c: {"reason": "issued twice"},
        "reason", 500, "reason", ("reason", 5)),
    # --- billing: payments ---
    "create_payment": Write(
        "POST", "/billing/payments",
        lambda c: {"invoice_id": NIL, "method": "cash", "amount": 100}, None, 0, "invoice_id",
        ("amount", [100])),
    "put_billing_credentials": Write(
        "PUT", "/clinics/{clinic_id}/billing/credentials/{provider}",
        lambda c: {"credentials": {"secret_key": "sk_test_" + "k" * 12,
                                   "webhook_secret": "whsec_" + "w" * 12}},
        None, 0, "credentials", ("credentials", 5)),
}

# --- billing: plans ---
WRITES.update({
    "create_plan": Write(
        "POST", "/billing/plans",
        lambda c: {"clinic_id": c.clinic_id, "name": f"Plan {uuid.uuid4().hex[:6]}",
                   "price": 1000, "interval": "month", "quotas": {"in_person": 2}},
        "name", 120, "price", ("price", [1000])),
    "update_plan": Write(
        "PATCH", "/billing/plans/{plan_id}", lambda c: {"price": 2000, "name": "Renamed plan"},
        "name", 120, None, ("active", [1])),
    "subscribe": Write(
        "POST", "/billing/subscriptions",
        lambda c: {"clinic_id": c.clinic_id, "plan_id": c.spare_plan_id,
                   "patient_id": c.patient_id},
        None, 0, "plan_id", ("patient_id", 5)),
    "cancel_subscription": Write(
        "POST", "/billing/subscriptions/{subscription_id}/cancel",
        lambda c: {"at_period_end": True}, None, 0, None, ("at_period_end", [1]),
        optional_body=True),
})

# Every protected route, with a body that would be accepted from an allowed caller.
PROTECTED: dict[str, tuple[str, str, Callable[[Ctx], dict[str, Any]] | None]] = {
    "logout": ("POST", "/auth/logout", None),
    "me": ("GET", "/users/me", None),
    "my_invitations": ("GET", "/users/me/invitations", None),
    "accept_invitation": ("POST", "/users/me/invitations/{invitation_id}/accept", None),
    "decline_invitation": ("POST", "/users/me/invitations/{invitation_id}/decline", None),
    "list_clinics": ("GET", "/clinics", None),
    "get_clinic": ("GET", "/clinics/{clinic_id}", None),
    "list_locations": ("GET", "/clinics/{clinic_id}/locations", None),
    "list_members": ("GET", "/clinics/{clinic_id}/members", None),
    "remove_member": ("DELETE", "/clinics/{clinic_id}/members/{user_id}", None),
    "list_invitations": ("GET", "/clinics/{clinic_id}/invitations", None),
    "revoke_invitation": ("POST", "/clinics/{clinic_id}/invitations/{invitation_id}/revoke", None),
    "list_events": ("GET", "/clinics/{clinic_id}/events", None),
    "get_schedule": ("GET", "/clinics/{clinic_id}/doctors/{doctor_id}/schedule", None),
    "availability": ("GET", "/clinics/{clinic_id}/doctors/{doctor_id}/availability", None),
    "list_appointments": ("GET", "/appointments", None),
    "get_appointment": ("GET", "/appointments/{appointment_id}", None),
    "history": ("GET", "/patients/{patient_id}/history", None),
    "list_queues": ("GET", "/clinics/{clinic_id}/queues", None),
    "get_queue": ("GET", "/queues/{queue_id}", None),
    **{f"queue_{a.replace('-', '_')}": ("POST", f"/queues/{{queue_id}}/{a}", None)
       for a in ("call-next", "pause", "resume", "board-token")},
    **{f"entry_{a}": ("POST", f"/queue-entries/{{entry_id}}/{a}", None)
       for a in ("skip", "requeue", "start", "complete")},
    "queue_position": ("GET", "/appointments/{appointment_id}/queue-position", None),
    "appointment_code": ("GET", "/appointments/{appointment_id}/check-in-code", None),
    "location_code": ("GET", "/clinics/{clinic_id}/locations/{location_id}/check-in-code", None),
    "communication_config": ("GET", "/clinics/{clinic_id}/communication/config", None),
    "communication_test": ("POST", "/clinics/{clinic_id}/communication/test/{channel}", None),
    "communication_health": ("GET", "/clinics/{clinic_id}/communication/health", None),
    # a board's token, not a user's: any other bearer (a user's included) is 401
    "board_state": ("GET", "/boards/{queue_id}/state", None),
    "my_devices": ("GET", "/users/me/devices", None),
    "remove_device": ("DELETE", "/users/me/devices/{device_id}", None),
    "my_messages": ("GET", "/users/me/messages", None),
    "my_notification_preferences": ("GET", "/users/me/notification-preferences", None),
    "my_notifications": ("GET", "/users/me/notifications", None),
    "mark_all_notifications_read": ("POST", "/users/me/notifications/read-all", None),
    "mark_notification_read": ("POST", "/users/me/notifications/{notification_id}/read", None),
    "list_suppressions": ("GET", "/clinics/{clinic_id}/communication/suppressions", None),
    "remove_suppression": ("DELETE",
                           "/clinics/{clinic_id}/communication/suppressions/{channel}/{address}",
                           None),
    "list_messages": ("GET", "/clinics/{clinic_id}/communication/messages", None),
    "get_message": ("GET", "/clinics/{clinic_id}/communication/messages/{message_id}", None),
    "get_template": ("GET", TEMPLATE, None),
    "delete_template": ("DELETE", TEMPLATE, None),
    # --- billing: plans ---
    "list_plans": ("GET", "/billing/plans", None),
    "get_plan": ("GET", "/billing/plans/{plan_id}", None),
    "list_subscriptions": ("GET", "/billing/subscriptions", None),
    "get_subscription": ("GET", "/billing/subscriptions/{subscription_id}", None),
    # --- billing: invoices ---
    "list_invoices": ("GET", "/billing/invoices", None),
    "get_invoice": ("GET", "/billing/invoices/{invoice_id}", None),
    "invoice_pdf": ("GET", "/billing/invoices/{invoice_id}/pdf", None),
    "finalize_invoice": ("POST", "/billing/invoices/{invoice_id}/finalize", None),
    # --- billing: payments ---
    "list_payments": ("GET", "/billing/payments", None),
    "get_payment": ("GET", "/billing/payments/{payment_id}", None),
    "get_billing_credentials": ("GET", "/clinics/{clinic_id}/billing/credentials/{provider}",
                                None),
    **{name: (w.method, w.path, w.body) for name, w in WRITES.items() if not w.public},
}

# The query a route needs (required parameters), valid.
QUERIES: dict[str, Callable[[Ctx], dict[str, str]]] = {
    "availability": lambda c: {"from": later(10, "00:00"), "to": later(11, "00:00")},
    "list_appointments": lambda c: {"clinic_id": c.clinic_id},
    "history": lambda c: {"clinic_id": c.clinic_id},
    "list_queues": lambda c: {"date": later(5)[:10]},
    "list_messages": lambda c: {"since": later(-3), "until": later(1)},
    "list_suppressions": lambda c: {"channel": "email"},
    "my_notifications": lambda c: {"unread": "true"},
    # --- billing: plans ---
    "list_plans": lambda c: {"clinic_id": c.clinic_id},
    "list_subscriptions": lambda c: {"clinic_id": c.clinic_id},
    "list_invoices": lambda c: {"clinic_id": c.clinic_id},  # --- billing: invoices ---
    "list_payments": lambda c: {"clinic_id": c.clinic_id},  # billing: payments
}


def send(api, ctx: Ctx, name: str, token: str | None = None, **kw: Any) -> httpx.Response:
    if name in WRITES:
        write = WRITES[name]
        method, path = write.method, write.path
        token = token or (None if write.public else ctx.sa_token)
    else:
        method, path, _ = PROTECTED[name]
        token = token or ctx.sa_token
    if name in QUERIES:
        kw.setdefault("params", QUERIES[name](ctx))
    return api.as_(token, method, fill(path, ctx), **kw)


# --- bodies ---------------------------------------------------------------------------------

MARK = "@@here@@"


def raw_with(body: dict[str, Any], field: str, raw: bytes) -> bytes:
    """The body as JSON, with `raw` bytes standing for the string value of `field`."""
    encoded = json.dumps({**body, field: MARK}).encode()
    return encoded.replace(json.dumps(MARK).encode(), raw)


def deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@dataclass(frozen=True)
class Spoil:
    """How to spoil a route's valid body, and what the answer must name."""

    make: Callable[[Write, dict[str, Any]], dict[str, Any]]  # kwargs for httpx
    status: int
    field: Callable[[Write], str | None]
    says: Callable[[Write], str] = lambda w: ""  # words the problem's detail must contain


def _without(w: Write, b: dict[str, Any]) -> dict[str, Any]:
    assert w.required is not None
    return {"json": {k: v for k, v in b.items() if k != w.required}}


def _huge(w: Write, b: dict[str, Any]) -> dict[str, Any]:
    """Over the size limit, in the free-text field (or the first field when there is none)."""
    return {**b, w.text or next(iter(b)): "x" * (MIB + 1)}


SPOILS: dict[str, Spoil] = {
    "wrong_type": Spoil(lambda w, b: {"json": {**b, w.wrong_type[0]: w.wrong_type[1]}},
                        400, lambda w: w.wrong_type[0]),
    "missing_required": Spoil(_without, 400, lambda w: w.required, lambda w: "required"),
    "unknown_field": Spoil(lambda w, b: {"json": {**b, "is_super_admin": True}},
                           400, lambda w: "is_super_admin", lambda w: "unknown field"),
    "null_field": Spoil(lambda w, b: {"json": {**b, w.text: None}}, 400, lambda w: w.text),
    "malformed_json": Spoil(lambda w, b: {"content": json.dumps(b).encode()[:-2],
                                          "headers": JSON}, 400, lambda w: "body"),
    "trailing_garbage": Spoil(lambda w, b: {"content": json.dumps(b).encode() + b"}",
                                            "headers": JSON}, 400, lambda w: "body"),
    "json_array": Spoil(lambda w, b: {"json": [b]}, 400, lambda w: "body"),
    "json_string": Spoil(lambda w, b: {"json": "hello"}, 400, lambda w: "body"),
    "json_number": Spoil(lambda w, b: {"json": 42}, 400, lambda w: "body"),
    "json_true": Spoil(lambda w, b: {"json": True}, 400, lambda w: "body"),
    "json_null": Spoil(lambda w, b: {"content": b"null", "headers": JSON}, 400, lambda w: "body"),
    "empty_body": Spoil(lambda w, b: {"content": b"", "headers": JSON}, 400, lambda w: "body",
                        lambda w: "body: required"),
    "deeply_nested": Spoil(lambda w, b: {"content": raw_with(b, "x", deep(100_000)),
                                         "headers": JSON}, 400, lambda w: "body",
                        lambda w: "nested too deeply"),
    "huge_body": Spoil(lambda w, b: {"json": _huge(w, b)}, 413, lambda w: None,
                       lambda w: "too large"),
    "huge_body_idempotent": Spoil(
        lambda w, b: {"json": _huge(w, b), "headers": {"Idempotency-Key": uuid.uuid4().hex}},
        413, lambda w: None),
    "nul_char": Spoil(lambda w, b: {"json": {**b, w.text: "ab\u0000cd@example.test"}},
                      400, lambda w: w.text,
                      lambda w: "Invalid enum" if w.text == "role" else "must not contain NUL"),
    "lone_surrogate_escape": Spoil(lambda w, b: {"content": raw_with(b, w.text, b'"a\\ud800b"'),
                                                 "headers": JSON}, 400, lambda w: "body"),
    "lone_surrogate_utf8": Spoil(lambda w, b: {"content": raw_with(b, w.text, b'"a\xed\xa0\x80b"'),
                                               "headers": JSON}, 400, lambda w: "body"),
    "invalid_utf8": Spoil(lambda w, b: {"content": raw_with(b, w.text, b'"a\xff\xfeb"'),
                                        "headers": JSON}, 400, lambda w: "body",
                          lambda w: "not valid UTF-8"),
    "over_long": Spoil(lambda w, b: {"json": {**b, w.text: "x" * (w.max_length + 1)}},
                       400, lambda w: w.text),
    "text_plain": Spoil(lambda w, b: {"content": json.dumps(b).encode(),
                                      "headers": {"content-type": "text/plain"}},
                        415, lambda w: None, lambda w: "send application/json"),
    "form_urlencoded": Spoil(lambda w, b: {"data": {k: str(v) for k, v in b.items()}},
                             415, lambda w: None, lambda w: "send application/json"),
    "xml": Spoil(lambda w, b: {"content": b"<clinic/>",
                               "headers": {"content-type": "application/xml"}},
                 415, lambda w: None),
    "idempotency_key_too_long": Spoil(lambda w, b: {"json": b,
                                                    "headers": {"Idempotency-Key": "k" * 256}},
                                      400, lambda w: None, lambda w: "Idempotency-Key"),
    "idempotency_key_empty": Spoil(lambda w, b: {"json": b, "headers": {"Idempotency-Key": ""}},
                                   400, lambda w: None),
}


TEXT_SPOILS = {"null_field", "nul_char", "lone_surrogate_escape", "lone_surrogate_utf8",
               "invalid_utf8", "over_long"}


def _applies(write: Write, spoil: str) -> bool:
    if spoil == "missing_required":
        return write.required is not None
    if spoil in TEXT_SPOILS:
        return write.text is not None
    if spoil in ("empty_body", "json_null"):
        return not write.optional_body  # e.g. a cancel needs no reason
    return True


def spoil_params() -> list[Any]:
    return [pytest.param(route, spoil, id=f"{route}-{spoil}")
            for route, write in WRITES.items() for spoil in SPOILS if _applies(write, spoil)]


@pytest.mark.parametrize(("route", "spoil"), spoil_params())
def test_a_spoiled_body_is_refused_whole(api, db, ctx, route, spoil):
    write, how = WRITES[route], SPOILS[spoil]
    before = snapshot(db, ctx)
    r = send(api, ctx, route, **how.make(write, write.body(ctx)))
    problem = assert_problem(r, how.status, field=how.field(write))
    assert how.says(write) in problem["detail"], problem
    assert snapshot(db, ctx) == before


def _rule(**change: Any) -> Callable[[Ctx], dict[str, Any]]:
    """A schedule whose one rule is spoiled."""
    return lambda c: {"rules": [{**RULE, **change}]}


NAIVE = "2030-01-07T10:00:00"  # no UTC offset
YEAR_1 = "0001-01-01T00:00:00+05:30"  # before 1 January of year 1 in UTC
YEAR_9999 = "9999-12-31T23:00:00-05:00"  # after the end of year 9999 in UTC

# Field checks the type system cannot make, route by route: (route, id, change, status, field)
FIELD_CASES: list[tuple[str, str, Callable[[Ctx], dict[str, Any]], int, str | None]] = [
    ("login", "password_too_long", lambda c: {"password": "p" * 257}, 400, "password"),
    ("login", "password_nul", lambda c: {"password": "pass\u0000word-1"}, 400, "password"),
    ("refresh", "empty_token", lambda c: {"refresh_token": ""}, 400, "refresh_token"),
    ("register", "clinic_id_not_a_uuid", lambda c: {"clinic_id": "not-a-uuid"}, 400, "clinic_id"),
    ("register", "clinic_id_short_uuid", lambda c: {"clinic_id": c.clinic_id[:-1]},
     400, "clinic_id"),
    ("register", "invalid_email", lambda c: {"email": "not-an-email"}, 400, "email"),
    ("register", "email_with_space", lambda c: {"email": "a b@example.test"}, 400, "email"),
    ("register", "email_nul", lambda c: {"email": "a\u0000b@example.test"}, 400, "email"),
    ("register", "email_too_long", lambda c: {"email": "a" * 250 + "@x.io"}, 400, "email"),
    ("register", "password_too_short", lambda c: {"password": "short"}, 400, "password"),
    ("register", "blank_name", lambda c: {"name": "   "}, 400, "name"),
    ("register", "invalid_phone", lambda c: {"phone": "12"}, 400, "phone"),
    ("register", "phone_nul", lambda c: {"phone": "+9198\u0000123456"}, 400, "phone"),
    ("register", "unknown_clinic", lambda c: {"clinic_id": NIL}, 404, None),
    ("create_clinic", "invalid_timezone", lambda c: {"timezone": "Mars/Olympus"},
     400, "timezone"),
    ("create_clinic", "empty_timezone", lambda c: {"timezone": ""}, 400, "timezone"),
    ("create_clinic", "timezone_nul", lambda c: {"timezone": "Asia/\u0000Kolkata"},
     400, "timezone"),
    ("create_clinic", "timezone_too_long", lambda c: {"timezone": "A" * 65}, 400, "timezone"),
    ("create_clinic", "empty_name", lambda c: {"name": ""}, 400, "name"),
    ("create_clinic", "settings_unknown_key", lambda c: {"settings": {"bogus": 1}},
     400, "settings.bogus"),
    ("create_clinic", "settings_wrong_type",
     lambda c: {"settings": {"allow_self_registration": "yes"}},
     400, "settings.allow_self_registration"),
    ("create_clinic", "settings_array", lambda c: {"settings": []}, 400, "settings"),
    ("update_clinic", "invalid_timezone", lambda c: {"timezone": "Europe/Atlantis"},
     400, "timezone"),
    ("update_clinic", "null_timezone", lambda c: {"timezone": None}, 400, "timezone"),
    ("update_clinic", "blank_name", lambda c: {"name": " "}, 400, "name"),
    ("update_clinic", "settings_unknown_key", lambda c: {"settings": {"bogus": True}},
     400, "settings.bogus"),
    ("update_clinic", "settings_null", lambda c: {"settings": None}, 400, "settings"),
    ("update_clinic", "unknown_notification_kind",
     lambda c: {"settings": {"notification_channels": {"appointment.lost": ["email"]}}},
     400, "settings.notification_channels.appointment.lost"),
    ("update_clinic", "unknown_notification_channel",
     lambda c: {"settings": {"notification_channels": {"queue.called": ["pager"]}}},
     400, "settings.notification_channels"),
    ("create_location", "invalid_timezone", lambda c: {"timezone": "Nowhere/Place"},
     400, "timezone"),
    ("create_location", "name_nul", lambda c: {"name": "We\u0000st"}, 400, "name"),
    ("create_location", "name_too_long", lambda c: {"name": "n" * 201}, 400, "name"),
    ("create_location", "empty_name", lambda c: {"name": ""}, 400, "name"),
    ("add_member", "invalid_email", lambda c: {"email": "nobody"}, 400, "email"),
    ("add_member", "email_nul", lambda c: {"email": "nu\u0000l@example.test"}, 400, "email"),
    ("add_member", "email_local_part_too_long", lambda c: {"email": "a" * 65 + "@x.io"},
     400, "email"),
    ("add_member", "unknown_role", lambda c: {"role": "KING"}, 400, "role"),
    ("add_member", "lowercase_role", lambda c: {"role": "nurse"}, 400, "role"),
    ("add_member", "location_id_not_a_uuid", lambda c: {"location_id": "not-a-uuid"},
     400, "location_id"),
    ("add_member", "location_id_number", lambda c: {"location_id": 5}, 400, "location_id"),
    ("add_member", "location_id_unknown", lambda c: {"location_id": NIL}, 400, "location_id"),
    ("add_member", "location_head_without_location", lambda c: {"role": "LOCATION_HEAD"},
     400, "location_id"),
    ("add_member", "password_too_short", lambda c: {"password": "short"}, 400, "password"),
    ("add_member", "password_nul", lambda c: {"password": "long-enough\u0000"}, 400, "password"),
    ("add_member", "invalid_phone", lambda c: {"phone": "call me"}, 400, "phone"),
    ("add_member", "phone_too_long", lambda c: {"phone": "+1" + "2" * 40}, 400, "phone"),
    ("update_member", "unknown_role", lambda c: {"role": "EMPEROR"}, 400, "role"),
    ("update_member", "location_id_not_a_uuid", lambda c: {"location_id": "zz"},
     400, "location_id"),
    ("update_member", "location_id_unknown", lambda c: {"location_id": NIL},
     400, "location_id"),
    ("update_member", "location_head_without_location",
     lambda c: {"role": "LOCATION_HEAD", "location_id": None}, 400, "location_id"),
    ("update_member", "identity_fields", lambda c: {"email": "x@example.test"}, 400, "email"),
    # schedules: weekday 0-6, HH:MM, end after start, known types and locations, 5-480 minutes
    ("put_schedule", "weekday_7", _rule(weekday=7), 400, "rules.0.weekday"),
    ("put_schedule", "weekday_negative", _rule(weekday=-1), 400, "rules.0.weekday"),
    ("put_schedule", "weekday_a_name", _rule(weekday="monday"), 400, "rules.0.weekday"),
    ("put_schedule", "second_rule_weekday_9", lambda c: {"rules": [RULE, {**RULE, "weekday": 9}]},
     400, "rules.1.weekday"),
    ("put_schedule", "start_without_colon", _rule(start="0800"), 400, "rules.0.start"),
    ("put_schedule", "start_one_digit_hour", _rule(start="8:00"), 400, "rules.0.start"),
    ("put_schedule", "start_with_seconds", _rule(start="08:00:00"), 400, "rules.0.start"),
    ("put_schedule", "start_iso_t_prefix", _rule(start="T08:00"), 400, "rules.0.start"),
    ("put_schedule", "start_hour_24", _rule(start="24:00"), 400, "rules.0.start"),
    ("put_schedule", "start_minute_60", _rule(start="08:60"), 400, "rules.0.start"),
    ("put_schedule", "start_with_offset", _rule(start="08:00+05:30"), 400, "rules.0.start"),
    ("put_schedule", "start_nul", _rule(start="08:\u000000"), 400, "rules.0.start"),
    ("put_schedule", "start_number", _rule(start=800), 400, "rules.0.start"),
    ("put_schedule", "end_not_a_time", _rule(end="late"), 400, "rules.0.end"),
    ("put_schedule", "end_before_start", _rule(start="10:00", end="09:00"), 400, "rules.0.end"),
    ("put_schedule", "end_equals_start", _rule(start="10:00", end="10:00"), 400, "rules.0.end"),
    ("put_schedule", "end_missing", lambda c: {"rules": [{"weekday": 0, "start": "08:00"}]},
     400, "rules.0.end"),
    ("put_schedule", "rule_unknown_field", _rule(room="3"), 400, "rules.0.room"),
    ("put_schedule", "no_appointment_types", _rule(appointment_types=[]),
     400, "rules.0.appointment_types"),
    ("put_schedule", "unknown_appointment_type", _rule(appointment_types=["phone"]),
     400, "rules.0.appointment_types.0"),
    ("put_schedule", "location_id_not_a_uuid", _rule(location_id="north"),
     400, "rules.0.location_id"),
    ("put_schedule", "location_id_unknown", _rule(location_id=NIL), 400, "rules.0.location_id"),
    ("put_schedule", "rules_an_object", lambda c: {"rules": RULE}, 400, "rules"),
    ("put_schedule", "rules_null", lambda c: {"rules": None}, 400, "rules"),
    ("put_schedule", "too_many_rules", lambda c: {"rules": [RULE] * 101}, 400, "rules"),
    ("put_schedule", "slot_minutes_4", lambda c: {"slot_minutes": 4}, 400, "slot_minutes"),
    ("put_schedule", "slot_minutes_481", lambda c: {"slot_minutes": 481}, 400, "slot_minutes"),
    ("put_schedule", "slot_minutes_fraction", lambda c: {"slot_minutes": 30.5},
     400, "slot_minutes"),
    ("put_schedule", "slot_minutes_null", lambda c: {"slot_minutes": None}, 400, "slot_minutes"),
    # time off and holidays: aware times in range, end after start
    *[(route, name, change, 400, field) for route in ("time_off", "holiday")
      for name, change, field in [
          ("start_naive", lambda c: {"start": NAIVE}, "start"),
          ("end_naive", lambda c: {"end": NAIVE}, "end"),
          ("start_date_only", lambda c: {"start": "2030-01-07"}, "start"),
          ("start_not_a_time", lambda c: {"start": "tomorrow"}, "start"),
          ("start_a_list", lambda c: {"start": [2030, 1, 7]}, "start"),
          ("start_year_1", lambda c: {"start": YEAR_1}, "start"),
          ("end_year_9999", lambda c: {"end": YEAR_9999}, "end"),
          ("end_equals_start", lambda c: {"end": later(7, "13:00")}, "end"),
          ("end_before_start", lambda c: {"end": later(7, "12:00")}, "end"),
          ("end_same_instant_other_offset",
           lambda c: {"end": datetime.fromisoformat(later(7, "13:00")).astimezone(ZoneInfo("UTC"))
                      .isoformat()}, "end"),
      ]],
    # booking: aware future times, known type, 5-480 minutes, a patient and place of the clinic
    ("book", "start_naive", lambda c: {"start": NAIVE}, 400, "start"),
    ("book", "start_in_the_past", lambda c: {"start": later(-1)}, 400, "start"),
    ("book", "start_year_1", lambda c: {"start": YEAR_1}, 400, "start"),
    ("book", "start_year_9999", lambda c: {"start": YEAR_9999}, 400, "start"),
    ("book", "start_beyond_horizon", lambda c: {"start": later(200)}, 400, "start"),
    ("book", "unknown_type", lambda c: {"type": "phone"}, 400, "type"),
    ("book", "uppercase_type", lambda c: {"type": "VIDEO"}, 400, "type"),
    ("book", "duration_4", lambda c: {"duration_minutes": 4}, 400, "duration_minutes"),
    ("book", "duration_481", lambda c: {"duration_minutes": 481}, 400, "duration_minutes"),
    ("book", "duration_zero", lambda c: {"duration_minutes": 0}, 400, "duration_minutes"),
    ("book", "duration_negative", lambda c: {"duration_minutes": -30}, 400, "duration_minutes"),
    ("book", "duration_fraction", lambda c: {"duration_minutes": 30.5}, 400, "duration_minutes"),
    ("book", "clinic_id_not_a_uuid", lambda c: {"clinic_id": "clinic"}, 400, "clinic_id"),
    ("book", "doctor_id_not_a_uuid", lambda c: {"doctor_id": "doc"}, 400, "doctor_id"),
    ("book", "patient_id_not_a_uuid", lambda c: {"patient_id": 7}, 400, "patient_id"),
    ("book", "location_id_not_a_uuid", lambda c: {"location_id": "north"}, 400, "location_id"),
    ("book", "patient_not_a_patient", lambda c: {"patient_id": c.doctor_id}, 400, "patient_id"),
    ("book", "patient_unknown", lambda c: {"patient_id": NIL}, 400, "patient_id"),
    ("book", "location_unknown", lambda c: {"location_id": NIL}, 400, "location_id"),
    ("book", "in_person_without_location", lambda c: {"location_id": None}, 400, "location_id"),
    ("book", "override_reason_number", lambda c: {"override_reason": 5}, 400, "override_reason"),
    ("book", "doctor_unknown", lambda c: {"doctor_id": NIL}, 404, None),
    ("book", "clinic_unknown", lambda c: {"clinic_id": NIL}, 404, None),
    ("book_series", "count_1", lambda c: {"repeat": {"every_days": 7, "count": 1}},
     400, "repeat.count"),
    ("book_series", "count_53", lambda c: {"repeat": {"every_days": 7, "count": 53}},
     400, "repeat.count"),
    ("book_series", "every_0_days", lambda c: {"repeat": {"every_days": 0, "count": 2}},
     400, "repeat.every_days"),
    ("book_series", "every_366_days", lambda c: {"repeat": {"every_days": 366, "count": 2}},
     400, "repeat.every_days"),
    ("book_series", "count_missing", lambda c: {"repeat": {"every_days": 7}}, 400, "repeat.count"),
    ("book_series", "repeat_unknown_field",
     lambda c: {"repeat": {"every_days": 7, "count": 2, "until": later(30)}}, 400, "repeat.until"),
    ("book_series", "repeat_null", lambda c: {"repeat": None}, 400, "repeat"),
    ("book_series", "start_naive", lambda c: {"start": NAIVE}, 400, "start"),
    ("book_series", "start_year_9999", lambda c: {"start": YEAR_9999}, 400, "start"),
    ("book_series", "duration_481", lambda c: {"duration_minutes": 481}, 400, "duration_minutes"),
    ("book_series", "unknown_type", lambda c: {"type": "house_call"}, 400, "type"),
    ("reschedule", "start_naive", lambda c: {"start": NAIVE}, 400, "start"),
    ("reschedule", "start_in_the_past", lambda c: {"start": later(-2)}, 400, "start"),
    ("reschedule", "start_year_1", lambda c: {"start": YEAR_1}, 400, "start"),
    ("reschedule", "start_year_9999", lambda c: {"start": YEAR_9999}, 400, "start"),
    ("reschedule", "start_not_a_time", lambda c: {"start": "next week"}, 400, "start"),
    ("reschedule", "start_null", lambda c: {"start": None}, 400, "start"),
    ("reschedule", "duration_4", lambda c: {"duration_minutes": 4}, 400, "duration_minutes"),
    ("reschedule", "duration_481", lambda c: {"duration_minutes": 481}, 400, "duration_minutes"),
    ("reschedule", "override_reason_list", lambda c: {"override_reason": ["x"]},
     400, "override_reason"),
    # a follow-up: after_days 1-365 or an aware start, one of the two
    ("follow_up", "after_days_zero", lambda c: {"after_days": 0}, 400, "after_days"),
    ("follow_up", "after_days_366", lambda c: {"after_days": 366}, 400, "after_days"),
    ("follow_up", "after_days_negative", lambda c: {"after_days": -7}, 400, "after_days"),
    ("follow_up", "after_days_fraction", lambda c: {"after_days": 1.5}, 400, "after_days"),
    ("follow_up", "start_and_after_days", lambda c: {"start": later(20)}, 400, "start"),
    ("follow_up", "neither_start_nor_after_days", lambda c: {"after_days": None}, 400, "start"),
    ("follow_up", "start_naive", lambda c: {"start": NAIVE, "after_days": None}, 400, "start"),
    ("follow_up", "start_year_1", lambda c: {"start": YEAR_1, "after_days": None}, 400, "start"),
    ("follow_up", "start_in_the_past", lambda c: {"start": later(-1), "after_days": None},
     400, "start"),
    ("appointment_cancel", "reason_object", lambda c: {"reason": {"why": "x"}}, 400, "reason"),
    ("appointment_confirm", "reason_too_long", lambda c: {"reason": "r" * 1001}, 400, "reason"),
    # check-in: a patient's code is short text
    ("appointment_check_in", "code_too_long", lambda c: {"code": "c" * 101}, 400, "code"),
    ("appointment_check_in", "code_nul", lambda c: {"code": "ab\u0000cd"}, 400, "code"),
    ("appointment_check_in", "code_number", lambda c: {"code": 5}, 400, "code"),
    # queue entries: a known priority with a reason; a transfer to another doctor of the clinic
    ("entry_priority", "unknown_priority", lambda c: {"priority": "critical"}, 400, "priority"),
    ("entry_priority", "uppercase_priority", lambda c: {"priority": "URGENT"}, 400, "priority"),
    ("entry_priority", "empty_reason", lambda c: {"reason": ""}, 400, "reason"),
    ("entry_priority", "blank_reason", lambda c: {"reason": "   "}, 400, "reason"),
    ("entry_priority", "reason_missing", lambda c: {"reason": None}, 400, "reason"),
    # devices: FCM tokens of URL-safe characters and colons, APNs tokens 64 hex digits
    ("register_device", "fcm_token_short", lambda c: {"token": "short"}, 400, "token"),
    ("register_device", "fcm_token_space", lambda c: {"token": "a token with spaces"},
     400, "token"),
    ("register_device", "fcm_token_too_long", lambda c: {"token": "t" * 4097}, 400, "token"),
    ("register_device", "apns_token_not_hex", lambda c: {"kind": "apns", "token": "z" * 64},
     400, "token"),
    ("register_device", "apns_token_63", lambda c: {"kind": "apns", "token": "a" * 63},
     400, "token"),
    ("register_device", "unknown_kind", lambda c: {"kind": "sns"}, 400, "kind"),
    ("register_device", "unknown_platform", lambda c: {"platform": "tizen"}, 400, "platform"),
    ("register_device", "app_version_too_long", lambda c: {"app_version": "1" * 41},
     400, "app_version"),
    ("register_device", "app_version_blank", lambda c: {"app_version": "  "}, 400, "app_version"),
    ("register_device", "user_id", lambda c: {"user_id": c.user_id}, 400, "user_id"),
    # suppressions: a valid email or E.164 number; push is retired, not suppressed
    ("add_suppression", "invalid_email", lambda c: {"address": "nobody"}, 400, "address"),
    ("add_suppression", "sms_not_e164", lambda c: {"channel": "sms", "address": "0987"},
     400, "address"),
    ("add_suppression", "whatsapp_email", lambda c: {"channel": "whatsapp"}, 400, "address"),
    ("add_suppression", "push", lambda c: {"channel": "push"}, 400, "channel"),
    ("add_suppression", "unknown_channel", lambda c: {"channel": "fax"}, 400, "channel"),
    ("add_suppression", "bounce_by_hand", lambda c: {"reason": "hard_bounce"}, 400, "reason"),
    ("add_suppression", "note_too_long", lambda c: {"note": "n" * 501}, 400, "note"),
    ("add_suppression", "created_by", lambda c: {"created_by": c.user_id}, 400, "created_by"),
    ("entry_transfer", "doctor_id_not_a_uuid", lambda c: {"doctor_id": "doc"}, 400, "doctor_id"),
    ("entry_transfer", "doctor_id_null", lambda c: {"doctor_id": None}, 400, "doctor_id"),
    ("entry_transfer", "same_doctor", lambda c: {"doctor_id": c.doctor_id}, 400, "doctor_id"),
    ("entry_transfer", "not_a_doctor", lambda c: {"doctor_id": c.patient_id}, 400, "doctor_id"),
    ("entry_transfer", "unknown_doctor", lambda c: {"doctor_id": NIL}, 400, "doctor_id"),
    # communication settings (tests/communication/test_config.py has every rule)
    *[("put_communication_config", name, (lambda b: lambda c: b)(body), 400, field)
      for name, body, field in [
          ("unknown_channel", {"channels": {"fax": {"providers": ["local"]}}}, "channels.fax"),
          ("unknown_provider", {"channels": {"sms": {"providers": ["nope"]}}},
           "channels.sms.providers.0"),
          ("duplicate_provider", {"channels": {"sms": {"providers": ["local", "local"]}}},
           "channels.sms.providers.1"),
          ("empty_chain", {"channels": {"sms": {"providers": []}}}, "channels.sms.providers"),
          ("providers_null", {"channels": {"sms": {"providers": None}}}, "channels.sms.providers"),
          ("provider_nul", {"channels": {"sms": {"providers": ["lo\u0000cal"]}}},
           "channels.sms.providers.0"),
          ("rate_zero", {"channels": {"sms": {"providers": ["local"], "rate_per_second": 0}}},
           "channels.sms.rate_per_second"),
          ("rate_huge", {"channels": {"sms": {"providers": ["local"],
                                              "rate_per_second": 10**30}}},
           "channels.sms.rate_per_second"),
          ("bad_from_address", {"channels": {"email": {"providers": ["local"], "sender": {
              "from_address": "desk"}}}}, "channels.email.sender.from_address"),
          ("bad_sms_sender_id", {"channels": {"sms": {"providers": ["local"], "sender": {
              "sms_sender_id": "a b"}}}}, "channels.sms.sender.sms_sender_id"),
          ("bad_whatsapp_number_id", {"channels": {"whatsapp": {"providers": ["local"], "sender": {
              "whatsapp_number_id": "+91"}}}}, "channels.whatsapp.sender.whatsapp_number_id"),
          ("sender_unknown_field", {"channels": {"sms": {"providers": ["local"], "sender": {
              "from": "x"}}}}, "channels.sms.sender.from"),
          ("credentials_unknown_provider", {"credentials": {"nope": {"api_key": "k" * 12}}},
           "credentials.nope"),
          ("credentials_of_local", {"credentials": {"local": {"api_key": "k" * 12}}},
           "credentials.local"),
          ("credentials_a_list", {"credentials": ["k"]}, "credentials"),
          ("credential_fields_a_string", {"credentials": {"local": "k"}}, "credentials"),
      ]],
    # notification preferences (tests/notifications/test_preferences.py has every rule)
    *[("put_notification_preferences", name, (lambda b: lambda c: b)(body), 400, field)
      for name, body, field in [
          ("unknown_kind", {"channels": {"appointment.lost": ["email"]}},
           "channels.appointment.lost"),
          ("unknown_channel", {"channels": {"queue.called": ["pager"]}}, "channels.queue.called.0"),
          ("channel_twice", {"channels": {"queue.called": ["push", "push"]}},
           "channels.queue.called.1"),
          ("kind_nul", {"channels": {"queue.\u0000called": ["push"]}}, "channels"),
          ("channel_null", {"channels": {"queue.called": None}}, "channels"),
          ("too_many_channels", {"channels": {"queue.called": ["push"] * 6}}, "channels"),
          ("unknown_timezone", {"timezone": "Europe/Atlantis"}, "timezone"),
          ("timezone_nul", {"timezone": "Asia/\u0000Kolkata"}, "timezone"),
          ("timezone_too_long", {"timezone": "A" * 65}, "timezone"),
          ("bad_locale", {"locale": "x"}, "locale"),
          ("locale_nul", {"locale": "hi\u0000"}, "locale"),
          ("locale_too_long", {"locale": "e" * 36}, "locale"),
          ("quiet_equal", {"quiet_hours": {"start": "07:00", "end": "07:00"}},
           "quiet_hours.end"),
          ("quiet_not_hhmm", {"quiet_hours": {"start": "7", "end": "08:00"}}, "quiet_hours.start"),
          ("quiet_unknown_field", {"quiet_hours": {"start": "07:00", "end": "08:00", "tz": "UTC"}},
           "quiet_hours.tz"),
      ]],
    # templates (tests/communication/test_templates.py has every rule of the renderer)
    *[(route, name, (lambda b: lambda c: b)({"source": source}), 400, "template")
      for route in ("put_template", "preview_template")
      for name, source in [
          ("sandbox_escape", "{{ ''.__class__.__mro__ }}"),
          ("undefined_variable", EMAIL_TEMPLATE.replace("clinic_name", "patient_phone")),
          ("syntax_error", EMAIL_TEMPLATE[:-3]),
          ("missing_block", "{% block subject %}x{% endblock %}"),
          ("empty", " "),
      ]],
    # --- billing: invoices ---
    *[("create_invoice", name, (lambda b: lambda c: b)(change), 400, field)
      for name, change, field in [
          ("quantity_zero", {"lines": [{"description": "x", "quantity": 0, "unit_amount": 1}]},
           "lines.0.quantity"),
          ("quantity_huge", {"lines": [{"description": "x", "quantity": 10**6, "unit_amount": 1}]},
           "lines.0.quantity"),
          ("unit_amount_negative",
           {"lines": [{"description": "x", "quantity": 1, "unit_amount": -1}]},
           "lines.0.unit_amount"),
          ("unit_amount_absurd",
           {"lines": [{"description": "x", "quantity": 1, "unit_amount": 10**13}]},
           "lines.0.unit_amount"),
          ("unit_amount_float",
           {"lines": [{"description": "x", "quantity": 1, "unit_amount": 10.5}]},
           "lines.0.unit_amount"),
          ("description_empty", {"lines": [{"description": " ", "quantity": 1, "unit_amount": 1}]},
           "lines.0.description"),
          ("description_too_long",
           {"lines": [{"description": "d" * 201, "quantity": 1, "unit_amount": 1}]},
           "lines.0.description"),
          ("no_lines", {"lines": []}, "lines"),
          ("too_many_lines",
           {"lines": [{"description": "x", "quantity": 1, "unit_amount": 1}] * 101}, "lines"),
          ("discount_above_subtotal", {"discount": 50001}, "discount"),
          ("discount_negative", {"discount": -1}, "discount"),
      ]],
    ("create_invoice", "patient_not_a_patient", lambda c: {"patient_id": c.doctor_id}, 400,
     "patient_id"),
    ("create_invoice", "unknown_clinic", lambda c: {"clinic_id": NIL}, 404, None),
    ("void_invoice", "reason_blank", lambda c: {"reason": "  "}, 400, "reason"),
]


# --- billing: plans ---
FIELD_CASES += [
    ("create_plan", "other_currency", lambda c: {"currency": "USD"}, 400, "currency"),
    ("create_plan", "unknown_currency", lambda c: {"currency": "QQQ"}, 400, "currency"),
    ("create_plan", "negative_price", lambda c: {"price": -1}, 400, "price"),
    ("create_plan", "absurd_price", lambda c: {"price": 10**12}, 400, "price"),
    ("create_plan", "fractional_price", lambda c: {"price": 10.5}, 400, "price"),
    ("create_plan", "zero_quota", lambda c: {"quotas": {"in_person": 0}}, 400, "quotas"),
    ("create_plan", "unknown_type", lambda c: {"quotas": {"surgery": 1}}, 400, "quotas.surgery"),
    ("create_plan", "weekly", lambda c: {"interval": "week"}, 400, "interval"),
    ("create_plan", "long_trial", lambda c: {"trial_days": 366}, 400, "trial_days"),
    ("create_plan", "blank_name", lambda c: {"name": "  "}, 400, "name"),
    ("create_plan", "unknown_clinic", lambda c: {"clinic_id": str(uuid.uuid4())}, 404, None),
    ("update_plan", "negative_price", lambda c: {"price": -5}, 400, "price"),
    ("update_plan", "unknown_type", lambda c: {"quotas": {"x": 1}}, 400, "quotas.x"),
    ("subscribe", "unknown_plan", lambda c: {"plan_id": str(uuid.uuid4())}, 400, "plan_id"),
    ("subscribe", "not_a_patient", lambda c: {"patient_id": c.user_id}, 400, "patient_id"),
]


@pytest.mark.parametrize(("route", "change", "status", "field"),
                         [pytest.param(r, ch, s, f, id=f"{r}-{name}")
                          for r, name, ch, s, f in FIELD_CASES])
def test_a_bad_field_is_named_and_nothing_changes(api, db, ctx, route, change, status, field):
    write = WRITES[route]
    before = snapshot(db, ctx)
    r = send(api, ctx, route, json={**write.body(ctx), **change(ctx)})
    assert_problem(r, status, code="invalid" if status == 400 else "not_found", field=field)
    assert snapshot(db, ctx) == before


def test_a_json_content_type_with_parameters_is_still_json(api, ctx):
    """The 415 guard must not refuse `application/json; charset=utf-8`: login goes on to 401."""
    r = send(api, ctx, "login", content=json.dumps(WRITES["login"].body(ctx)).encode(),
             headers={"content-type": "application/json; charset=utf-8"})
    assert_problem(r, 401, code="unauthenticated")


# --- bad UUIDs in the path --------------------------------------------------------------------

BAD_UUIDS = {"word": "not-a-uuid", "number": "12345", "nul": "%00", "emoji": "%F0%9F%92%A9",
             "too_long": NIL + "0"}
SCHEDULING_PATH_ROUTES = [
    "put_schedule", "get_schedule", "time_off", "holiday", "availability", "get_appointment",
    *(name for name in WRITES if name.startswith("appointment_")), "reschedule", "follow_up",
    "history"]
QUEUE_PATH_ROUTES = [
    "list_queues", "get_queue", *(name for name in PROTECTED if name.startswith(("queue_", "entry_"))),
    "appointment_code", "location_code"]
COMMUNICATION_PATH_ROUTES = ["remove_device", "list_suppressions", "add_suppression",
                             "remove_suppression", "list_messages", "get_message",
                             "mark_notification_read"]
INVITATION_ROUTES = ["accept_invitation", "decline_invitation", "list_invitations",
                     "revoke_invitation"]
COMMUNICATION_ROUTES = ["communication_config", "put_communication_config", "communication_test",
                        "communication_health", "get_template", "put_template", "delete_template",
                        "preview_template"]
INVOICE_PATH_ROUTES = ["get_invoice", "invoice_pdf", "finalize_invoice", "void_invoice"]  # billing
PATH_ROUTES = ["get_clinic", "update_clinic", "list_locations", "create_location",
               "list_members", "add_member", "update_member", "remove_member", "list_events",
               *COMMUNICATION_ROUTES,
               *SCHEDULING_PATH_ROUTES, *QUEUE_PATH_ROUTES, "board_state", *INVITATION_ROUTES,
               *COMMUNICATION_PATH_ROUTES, *INVOICE_PATH_ROUTES]
# --- billing: plans ---
PLAN_PATH_ROUTES = ["get_plan", "update_plan", "get_subscription", "cancel_subscription"]
PATH_ROUTES += PLAN_PATH_ROUTES
PATH_IDS = ("clinic_id", "user_id", "doctor_id", "appointment_id", "patient_id", "location_id",
            "device_id", "message_id", "notification_id",
            "queue_id", "entry_id", "invitation_id", "invoice_id",
            "plan_id", "subscription_id")


def path_params(routes: list[str], values: dict[str, str]) -> list[Any]:
    out = []
    for route in routes:
        _, path, _ = PROTECTED[route]
        for param in PATH_IDS:
            if "{" + param + "}" not in path:
                continue
            for label, value in values.items():
                out.append(pytest.param(route, param, value, id=f"{route}-{param}-{label}"))
    return out


def call_with(api, ctx: Ctx, route: str, param: str, value: str) -> httpx.Response:
    """The route with a valid body and query, and `value` for one id of its path."""
    method, path, body = PROTECTED[route]
    url = path.format(**{**ids(ctx, path), param: value})
    return api.as_(ctx.sa_token, method, url, **({"json": body(ctx)} if body else {}),
                   **({"params": QUERIES[route](ctx)} if route in QUERIES else {}))


@pytest.mark.parametrize(("route", "param", "value"), path_params(PATH_ROUTES, BAD_UUIDS))
def test_a_bad_uuid_in_the_path_is_named(api, db, ctx, route, param, value):
    before = snapshot(db, ctx)
    r = call_with(api, ctx, route, param, value)
    assert_problem(r, 400, field=param)
    assert snapshot(db, ctx) == before


@pytest.mark.parametrize(("route", "param", "value"),
                         path_params([*SCHEDULING_PATH_ROUTES, *COMMUNICATION_ROUTES,
                                      # a list of an unknown clinic is empty, like the others
                                      *(r for r in QUEUE_PATH_ROUTES if r != "list_queues"),
                                      *(r for r in INVITATION_ROUTES if r != "list_invitations"),
                                      "remove_device", "add_suppression", "remove_suppression",
                                      "get_message", "mark_notification_read",
                                      *INVOICE_PATH_ROUTES, *PLAN_PATH_ROUTES],
                                     {"nil": NIL, "random": str(uuid.uuid4())}))
def test_an_unknown_id_in_the_path_is_404(api, db, ctx, route, param, value):
    """Even for a SUPER_ADMIN, who may name any clinic: 404, never a database error."""
    before = snapshot(db, ctx)
    r = call_with(api, ctx, route, param, value)
    assert_problem(r, 404, code="not_found")
    assert snapshot(db, ctx) == before


def test_an_unknown_path_is_a_problem_too(api, ctx):
    r = api.as_(ctx.sa_token, "GET", "/no-such-route")
    assert_problem(r, 404, code="not_found")
    r = api.as_(ctx.sa_token, "PUT", fill("/clinics/{clinic_id}", ctx), json={"name": "x"})
    assert r.status_code == 405 and r.headers["content-type"].startswith(PROBLEM)


# --- bad query parameters ---------------------------------------------------------------------

LISTS = {"clinics": "/clinics", "locations": "/clinics/{clinic_id}/locations",
         "members": "/clinics/{clinic_id}/members", "events": "/clinics/{clinic_id}/events",
         "invitations": "/clinics/{clinic_id}/invitations",
         "appointments": "/appointments?clinic_id={clinic_id}",
         "suppressions": "/clinics/{clinic_id}/communication/suppressions",
         "messages": "/clinics/{clinic_id}/communication/messages",
         "my_messages": "/users/me/messages", "my_notifications": "/users/me/notifications",
         # --- billing: plans ---
         "plans": "/billing/plans?clinic_id={clinic_id}",
         "subscriptions": "/billing/subscriptions?clinic_id={clinic_id}",
         "invoices": "/billing/invoices?clinic_id={clinic_id}",
         "payments": "/billing/payments?clinic_id={clinic_id}"}  # billing: payments
LIMITS = {"word": "abc", "zero": "0", "negative": "-1", "huge": "100000", "float": "1.5",
          "empty": "", "overflow": "9" * 30}
CURSORS = {"garbage": "garbage", "nul": "%00", "not_base64": "!!!!",
           "base64_nonsense": base64.urlsafe_b64encode(b"x|y").decode(),
           "not_utf8": base64.urlsafe_b64encode(b"\xff\xfe|\xff").decode(), "long": "A" * 5000,
           "time_out_of_range": base64.urlsafe_b64encode(f"{YEAR_1}|{NIL}".encode()).decode()}
AFTERS = {"word": "abc", "negative": "-1", "float": "2.5"}


def query_params() -> list[Any]:
    out = []
    for name in LISTS:
        out += [pytest.param(name, f"limit={v}", "limit", id=f"{name}-limit-{k}")
                for k, v in LIMITS.items()]
        if name == "events":
            out += [pytest.param(name, f"after={v}", "after", id=f"{name}-after-{k}")
                    for k, v in AFTERS.items()]
        else:
            out += [pytest.param(name, f"cursor={v}", "cursor", id=f"{name}-cursor-{k}")
                    for k, v in CURSORS.items()]
    return out


@pytest.mark.parametrize(("route", "query", "field"), query_params())
def test_a_bad_query_parameter_is_named(api, ctx, route, query, field):
    url = fill(LISTS[route], ctx)
    r = api.as_(ctx.sa_token, "GET", url + ("&" if "?" in url else "?") + query)
    assert_problem(r, 400, field=field)


# Scheduling queries, by the name the client sends: (route, id, change, field); None drops one.
QUERY_CASES: list[tuple[str, str, Callable[[Ctx], dict[str, Any]], str]] = [
    ("availability", "from_missing", lambda c: {"from": None}, "from"),
    ("availability", "to_missing", lambda c: {"to": None}, "to"),
    ("availability", "from_not_a_time", lambda c: {"from": "soon"}, "from"),
    ("availability", "from_date_only", lambda c: {"from": "2030-01-07"}, "from"),
    ("availability", "from_naive", lambda c: {"from": NAIVE}, "from"),
    ("availability", "to_naive", lambda c: {"to": NAIVE}, "to"),
    ("availability", "from_year_1", lambda c: {"from": YEAR_1}, "from"),
    ("availability", "to_year_9999", lambda c: {"to": YEAR_9999}, "to"),
    ("availability", "to_equals_from", lambda c: {"to": later(10, "00:00")}, "to"),
    ("availability", "to_before_from", lambda c: {"to": later(9, "00:00")}, "to"),
    ("availability", "over_62_days", lambda c: {"to": later(73, "00:00")}, "to"),
    ("availability", "unknown_type", lambda c: {"type": "phone"}, "type"),
    ("availability", "uppercase_type", lambda c: {"type": "VIDEO"}, "type"),
    ("availability", "empty_type", lambda c: {"type": ""}, "type"),
    ("list_appointments", "clinic_id_missing", lambda c: {"clinic_id": None}, "clinic_id"),
    ("list_appointments", "clinic_id_not_a_uuid", lambda c: {"clinic_id": "x"}, "clinic_id"),
    ("list_appointments", "doctor_id_not_a_uuid", lambda c: {"doctor_id": "doc"}, "doctor_id"),
    ("list_appointments", "patient_id_not_a_uuid", lambda c: {"patient_id": "1"}, "patient_id"),
    ("list_appointments", "unknown_status", lambda c: {"status": "done"}, "status"),
    ("list_appointments", "uppercase_status", lambda c: {"status": "SCHEDULED"}, "status"),
    ("history", "clinic_id_missing", lambda c: {"clinic_id": None}, "clinic_id"),
    ("history", "clinic_id_not_a_uuid", lambda c: {"clinic_id": NIL + "0"}, "clinic_id"),
    ("list_queues", "date_not_a_date", lambda c: {"date": "tomorrow"}, "date"),
    ("list_queues", "date_with_a_time", lambda c: {"date": later(5)}, "date"),
    ("list_queues", "date_month_13", lambda c: {"date": "2030-13-01"}, "date"),
    ("list_queues", "date_year_0", lambda c: {"date": "0000-01-01"}, "date"),
    ("list_queues", "doctor_id_not_a_uuid", lambda c: {"doctor_id": "doc"}, "doctor_id"),
    ("list_messages", "unknown_status", lambda c: {"status": "lost"}, "status"),
    ("list_messages", "unknown_channel", lambda c: {"channel": "fax"}, "channel"),
    ("list_messages", "user_id_not_a_uuid", lambda c: {"user_id": "me"}, "user_id"),
    ("list_messages", "since_naive", lambda c: {"since": NAIVE}, "since"),
    ("list_messages", "since_not_a_time", lambda c: {"since": "last week"}, "since"),
    ("list_messages", "until_year_1", lambda c: {"until": YEAR_1}, "until"),
    ("list_messages", "until_before_since", lambda c: {"until": later(-4)}, "until"),
    ("list_suppressions", "unknown_channel", lambda c: {"channel": "pigeon"}, "channel"),
    ("my_notifications", "unread_not_a_bool", lambda c: {"unread": "maybe"}, "unread"),
    ("my_notifications", "unread_empty", lambda c: {"unread": ""}, "unread"),
    ("list_suppressions", "address_nul", lambda c: {"address": "a\u0000b@example.test"},
     "address"),
]


@pytest.mark.parametrize(("route", "change", "field"),
                         [pytest.param(r, ch, f, id=f"{r}-{name}") for r, name, ch, f in QUERY_CASES])
def test_a_bad_scheduling_query_is_named(api, ctx, route, change, field):
    method, path, _ = PROTECTED[route]
    query = {k: v for k, v in {**QUERIES[route](ctx), **change(ctx)}.items() if v is not None}
    r = api.as_(ctx.sa_token, method, fill(path, ctx), params=query)
    assert_problem(r, 400, field=field)


# --- missing and bad bearer tokens ------------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(alg: str, key: bytes | None) -> str:
    head = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    claims = _b64(json.dumps({"sub": str(uuid.uuid4()), "sid": str(uuid.uuid4()),
                              "exp": 4_000_000_000, "type": "access"}).encode())
    signature = b"" if key is None else hmac.new(key, f"{head}.{claims}".encode(),
                                                 hashlib.sha256).digest()
    return f"{head}.{claims}.{_b64(signature)}"


AUTHORIZATIONS: dict[str, str | None] = {
    "missing": None,
    "garbage": "Bearer garbage",
    "jwt_shaped": "Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2ln",
    "forged_signature": "Bearer " + _jwt("HS256", b"not-the-server-secret"),
    "alg_none": "Bearer " + _jwt("none", None),
    "huge": "Bearer " + "x" * 8000,
    "basic_scheme": "Basic " + _b64(f"{SA_EMAIL}:{SA_PASSWORD}".encode()),
    "scheme_only": "Bearer",
}


@pytest.mark.parametrize("auth", list(AUTHORIZATIONS))
@pytest.mark.parametrize("route", list(PROTECTED))
def test_a_bad_bearer_token_is_401(api, db, ctx, route, auth):
    method, path, body = PROTECTED[route]
    value = AUTHORIZATIONS[auth]
    before = snapshot(db, ctx)
    r = api.as_(None, method, fill(path, ctx), headers={"Authorization": value} if value else {},
                **({"json": body(ctx)} if body else {}),
                **({"params": QUERIES[route](ctx)} if route in QUERIES else {}))
    assert_problem(r, 401, code="unauthenticated")
    assert r.headers.get("www-authenticate", "").startswith("Bearer")
    assert snapshot(db, ctx) == before


# --- a bad Idempotency-Key on the writes without a body ---------------------------------------

@pytest.mark.parametrize("key", [pytest.param("k" * 256, id="too_long"),
                                 pytest.param("", id="empty")])
def test_a_bad_idempotency_key_does_not_log_out(api, ctx, key):
    token = api.token(ctx.nurse_email, ctx.nurse_password)
    r = api.as_(token, "POST", "/auth/logout", headers={"Idempotency-Key": key})
    assert_problem(r, 400, field=None)
    assert "Idempotency-Key" in r.json()["detail"]
    assert api.as_(token, "GET", "/users/me").status_code == 200  # the session still lives


@pytest.mark.parametrize("key", [pytest.param("k" * 256, id="too_long"),
                                 pytest.param("", id="empty")])
def test_a_bad_idempotency_key_does_not_remove_a_member(api, db, ctx, key):
    before = snapshot(db, ctx)
    r = send(api, ctx, "remove_member", headers={"Idempotency-Key": key})
    assert_problem(r, 400)
    assert snapshot(db, ctx) == before


# --- provider webhooks: raw bodies, verified before they are read -----------------------------

WEBHOOKS = {"ses": ("POST", "/webhooks/communication/ses"),
            "zeptomail": ("POST", "/webhooks/communication/zeptomail"),
            "whatsapp": ("POST", "/webhooks/communication/whatsapp"),
            "whatsapp_handshake": ("GET", "/webhooks/communication/whatsapp"),
            # billing: payments (its own tests at the end of this file)
            "payments": ("POST", "/webhooks/payments/{provider}/{clinic_id}")}
WEBHOOK_BODIES = {
    "empty": b"", "malformed": b'{"a": ', "array": b"[{}]", "string": b'"hello"', "null": b"null",
    "deeply_nested": raw_with({"a": 1}, "x", deep(100_000)),
    "invalid_utf8": b'{"a": "\xff\xfe"}',
    "nul_char": b'{"webhook_request_id": "a\\u0000b", "MessageId": "a\\u0000b", "entry": '
                b'[{"changes": [{"value": {"statuses": [{"id": "a\\u0000b", "status": "read"}]}}]}]}',
    "no_event_id": b'{"event_name": ["hardbounce"], "entry": [{"changes": [{"value": '
                   b'{"statuses": [{"status": "read"}]}}]}], "Type": "Notification"}',
    "wrong_types": b'{"webhook_request_id": [1], "entry": {"a": 1}, "Type": 5}',
}


def _signed(provider: str, body: bytes) -> dict[str, str]:
    """The provider's signature over `body`: the body is read only after it verifies, so
    what is tested here is what an authentic but malformed webhook gets."""
    if provider == "zeptomail":
        return {"producer-signature": fake.zeptomail_signature(body)}
    if provider == "whatsapp":
        return {"x-hub-signature-256": fake.whatsapp_signature(body)}
    return {}


@pytest.mark.parametrize("spoil", list(WEBHOOK_BODIES))
@pytest.mark.parametrize("provider", ["ses", "zeptomail", "whatsapp"])
def test_a_malformed_webhook_is_400_and_stores_nothing(api, db, provider, spoil):
    body = WEBHOOK_BODIES[spoil]
    before = db.fetch("SELECT count(*) AS n FROM webhook_inbox")[0]["n"]
    method, path = WEBHOOKS[provider]
    r = api.as_(None, method, path, content=body,
                headers={"content-type": "application/json", **_signed(provider, body)})
    assert_problem(r, 400)
    assert db.fetch("SELECT count(*) AS n FROM webhook_inbox")[0]["n"] == before


@pytest.mark.parametrize("provider", ["ses", "zeptomail", "whatsapp"])
def test_a_huge_webhook_is_413_and_an_unsigned_one_401(api, db, provider):
    before = db.fetch("SELECT count(*) AS n FROM webhook_inbox")[0]["n"]
    method, path = WEBHOOKS[provider]
    huge = json.dumps({"x": "x" * (MIB + 1)}).encode()
    r = api.as_(None, method, path, content=huge,
                headers={"content-type": "application/json", **_signed(provider, huge)})
    assert_problem(r, 413)
    if provider != "ses":  # SES's signature is inside the body: its absence is malformed
        r = api.as_(None, method, path, content=b'{"entry": []}',
                    headers={"content-type": "application/json"})
        assert_problem(r, 401, code="unauthenticated")
    assert db.fetch("SELECT count(*) AS n FROM webhook_inbox")[0]["n"] == before


@pytest.mark.parametrize("params", [
    {}, {"hub.mode": "subscribe"}, {"hub.mode": "x" * 21, "hub.challenge": "1"},
    {"hub.mode": "subscribe", "hub.verify_token": "t" * 201, "hub.challenge": "1"},
    {"hub.mode": "subscribe", "hub.verify_token": "\x00", "hub.challenge": "\x00"},
], ids=["none", "mode_only", "long_mode", "long_token", "nul"])
def test_a_bad_handshake_is_refused(api, params):
    method, path = WEBHOOKS["whatsapp_handshake"]
    r = api.as_(None, method, path, params=params)
    assert r.status_code in (400, 403), r.text
    check_problem(r.status_code, r.headers, r.json())


# --- templates: the kind, channel and locale of the path ----------------------------------------

@pytest.mark.parametrize(("route", "part", "value", "field"), [
    pytest.param(route, part, value, part, id=f"{route}-{part}-{label}")
    for route in ("get_template", "put_template", "delete_template", "preview_template")
    for part, label, value in [
        ("kind", "unknown", "appointment.exploded"), ("kind", "nul", "a%00b"),
        ("channel", "unknown", "fax"), ("channel", "uppercase", "EMAIL"),
        ("locale", "word", "hindi-language-please"), ("locale", "nul", "en%00"),
        ("locale", "too_long", "en-" + "abcdefgh-" * 5 + "a")]])
def test_a_bad_template_path_is_named_and_nothing_changes(api, db, ctx, route, part, value, field):
    before = snapshot(db, ctx)
    method, path, body = PROTECTED[route]
    url = path.format(**{**ids(ctx, path), part: value})
    r = api.as_(ctx.sa_token, method, url, **({"json": body(ctx)} if body else {}))
    assert_problem(r, 400, field=field)
    assert snapshot(db, ctx) == before


# --- one-click unsubscribe: the token is the only input ----------------------------------------

UNSUBSCRIBE = {"unsubscribe_page": ("GET", "/unsubscribe/{token}"),
               "unsubscribe": ("POST", "/unsubscribe/{token}")}
BAD_TOKENS = {"garbage": "garbage", "nul": "a%00b", "jwt_shaped": "eyJhbGciOiJIUzI1NiJ9.e30.c2ln",
              "long": "A" * 5000, "emoji": "%F0%9F%92%A9",
              "alg_none": _jwt("none", None), "forged": _jwt("HS256", b"not-the-server-secret")}


@pytest.mark.parametrize("token", [*BAD_TOKENS, "access_token"])
@pytest.mark.parametrize("route", list(UNSUBSCRIBE))
def test_a_bad_unsubscribe_token_is_named_and_nothing_changes(api, db, ctx, route, token):
    """An access token is a genuine JWT of this server, of another type: refused as well."""
    before = snapshot(db, ctx)
    method, path = UNSUBSCRIBE[route]
    value = ctx.sa_token if token == "access_token" else BAD_TOKENS[token]
    r = api.as_(None, method, path.format(token=value),
                content=b"List-Unsubscribe=One-Click",
                headers={"content-type": "application/x-www-form-urlencoded"})
    assert_problem(r, 400, field="token")
    assert snapshot(db, ctx) == before


# --- every route of the OpenAPI, and schemathesis against it ---------------------------------



def test_this_file_covers_every_route_of_the_openapi(server):
    """A new route fails here until its bad input is covered above (and fuzzed below)."""
    spec = httpx.get(server.base_url + "/schema/openapi.json").json()
    listed = {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops
              if method.upper() in {"GET", "POST", "PUT", "PATCH", "DELETE"}}
    assert listed == OPENAPI_OPERATIONS
    covered = {(w.method, "/api/v1" + w.path) for w in WRITES.values()} | {
        (m, "/api/v1" + p) for m, p, _ in PROTECTED.values()} | {
        (m, "/api/v1" + p) for m, p in WEBHOOKS.values()} | {
        (m, "/api/v1" + p) for m, p in UNSUBSCRIBE.values()}
    assert covered == {op for op in OPENAPI_OPERATIONS if op[1].startswith("/api/v1")}


@pytest.fixture(scope="module")
def live_schema(server) -> Any:
    return schemathesis.openapi.from_url(server.base_url + "/schema/openapi.json")


@pytest.fixture(scope="module")
def fuzz_token(api) -> str:
    """A session of its own: nothing the fuzzer does can spend the suite's token."""
    return api.token(SA_EMAIL, SA_PASSWORD)


# logout takes nothing but its token (covered above), and would end the fuzzer's session
FUZZED = sorted(op for op in OPENAPI_OPERATIONS if op != ("POST", "/api/v1/auth/logout"))
# Random ids stop these at "not found"; they are fuzzed again with ids that exist.
WITH_REAL_IDS = [op for op in FUZZED
                 if any(part in op[1] for part in ("/doctors/", "/holidays", "/appointments",
                                                   "/patients/", "/queues", "/queue-entries/",
                                                   "/boards/", "/check-in-code",
                                                   "/communication/"))]


@pytest.fixture(scope="module")
def real_ids(api, clinic_factory, member_factory, sa_token) -> dict[str, str]:
    """A clinic of the fuzzer's own, with a doctor's schedule, a booked appointment and a
    checked-in one (its queue and entry)."""
    clinic = clinic_factory()
    cid, loc = clinic["id"], clinic["locations"][0]["id"]
    doctor = member_factory(cid, "DOCTOR", location_id=loc, password=None, tag="fuzz-doc")
    patient = member_factory(cid, "PATIENT", password=None, tag="fuzz-patient")
    r = api.as_(sa_token, "PUT", f"/clinics/{cid}/doctors/{doctor['user_id']}/schedule",
                json={"rules": WEEK})
    assert r.status_code == 200, r.text
    out = {"clinic_id": cid, "doctor_id": doctor["user_id"], "patient_id": patient["user_id"],
           "location_id": loc}
    visit = book_now(api, sa_token, {**out, "type": "in_person", "start": later(4, "10:00")})
    out["appointment_id"] = book_now(api, sa_token, {**out, "type": "in_person",
                                                      "start": later(4, "09:00")})
    assert api.as_(sa_token, "POST", f"/appointments/{visit}/check-in").status_code == 200
    out["queue_id"] = api.as_(sa_token, "GET", f"/appointments/{visit}/queue-position").json()[
        "queue_id"]
    out["entry_id"] = api.as_(sa_token, "GET", f"/queues/{out['queue_id']}").json()["entries"][0][
        "id"]
    return out


def _fuzz(server: Any, strategy: Any, token: str, ids: dict[str, str] | None = None) -> None:
    """Schemathesis' requests (with `ids` put in for the path's, query's and body's), as a
    super admin: none may get a 5xx, and every refusal is a problem+json."""
    headers = {"Authorization": f"Bearer {token}"}

    @given(case=strategy)
    @settings(max_examples=10, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate])
    def run(case: Any) -> None:
        for part in (case.path_parameters, case.query, case.body) if ids else ():
            if isinstance(part, dict):
                part.update({k: v for k, v in ids.items() if k in part})
        r = case.call(base_url=server.base_url, headers=headers, timeout=30)
        assert r.status_code < 500, (case.method, case.formatted_path, case.query, case.body,
                                     r.text)
        if r.status_code >= 400:
            check_problem(r.status_code, r.headers, r.json())

    run()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                         ids=lambda m: m.value)
@pytest.mark.parametrize(("method", "path"), FUZZED, ids=[f"{m} {p}" for m, p in FUZZED])
def test_fuzzed_requests_never_get_a_500(server, live_schema, fuzz_token, method, path, mode):
    """Schemathesis generates requests from the OpenAPI (negative mode: ones that break it)."""
    _fuzz(server, live_schema[path][method].as_strategy(generation_mode=mode), fuzz_token)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                         ids=lambda m: m.value)
@pytest.mark.parametrize(("method", "path"), WITH_REAL_IDS, ids=[f"{m} {p}" for m, p in WITH_REAL_IDS])
def test_fuzzed_requests_with_real_ids_never_get_a_500(server, live_schema, fuzz_token, real_ids,
                                                       method, path, mode):
    """The same, reaching past "not found" into the schedule, booking and lifecycle rules."""
    _fuzz(server, live_schema[path][method].as_strategy(generation_mode=mode), fuzz_token,
          real_ids)


# --- billing: payments ---------------------------------------------------------------------------

@pytest.mark.parametrize(("route", "param"), [("get_payment", "payment_id"),
                                              ("get_billing_credentials", "clinic_id"),
                                              ("put_billing_credentials", "clinic_id")])
@pytest.mark.parametrize("value", list(BAD_UUIDS))
def test_a_bad_id_in_a_billing_path_is_named(api, db, ctx, route, param, value):
    before = snapshot(db, ctx)
    r = call_with(api, ctx, route, param, BAD_UUIDS[value])
    assert_problem(r, 400, field=param)
    assert snapshot(db, ctx) == before


@pytest.mark.parametrize("route", ["get_payment", "get_billing_credentials",
                                   "put_billing_credentials"])
def test_an_unknown_billing_id_is_404(api, db, ctx, route):
    param = "payment_id" if route == "get_payment" else "clinic_id"
    r = call_with(api, ctx, route, param, str(uuid.uuid4()))
    assert_problem(r, 404, code="not_found")


@pytest.mark.parametrize("provider", ["venmo", "STRIPE", "%00"])
def test_an_unknown_payment_provider_in_the_path_is_named(api, ctx, provider):
    for route in ("get_billing_credentials", "put_billing_credentials"):
        method, path, body = PROTECTED[route]
        url = path.format(**{**ids(ctx, path), "provider": provider})
        r = api.as_(ctx.sa_token, method, url, **({"json": body(ctx)} if body else {}))
        assert_problem(r, 400, field="provider")


@pytest.mark.parametrize(("change", "field", "status"), [
    ({"amount": 0}, "amount", 400), ({"amount": -1}, "amount", 400),
    ({"amount": 10**12}, "amount", 400), ({"amount": 1.5}, "amount", 400),
    ({"method": "cheque"}, "method", 400), ({"method": None, "amount": 5}, "amount", 400),
    ({"invoice_id": "nope"}, "invoice_id", 400), ({"return_url": "javascript:alert(1)"},
                                                  "return_url", 400),
    ({"amount": None}, "amount", 400), ({}, None, 404)])
def test_a_bad_payment_is_named_and_nothing_is_paid(api, db, ctx, change, field, status):
    before = db.fetch("SELECT count(*) AS n FROM billing_payments")[0]["n"]
    r = send(api, ctx, "create_payment", json={**WRITES["create_payment"].body(ctx), **change})
    assert_problem(r, status, code="invalid" if status == 400 else "not_found", field=field)
    assert db.fetch("SELECT count(*) AS n FROM billing_payments")[0]["n"] == before


@pytest.fixture(scope="module")
def stripe_secrets(api, ctx) -> Any:
    from tests.billing.fakes.stripe import FakeStripe

    stripe = FakeStripe()  # not started: its secrets sign, nothing is called
    r = api.as_(ctx.sa_token, "PUT", fill("/clinics/{clinic_id}/billing/credentials/stripe", ctx),
                json={"credentials": stripe.credentials()})
    assert r.status_code == 200, r.text
    return stripe


@pytest.mark.parametrize("spoil", list(WEBHOOK_BODIES))
def test_a_malformed_payment_webhook_is_400_and_stores_nothing(api, db, ctx, stripe_secrets,
                                                              spoil):
    body = WEBHOOK_BODIES[spoil]
    before = db.fetch("SELECT count(*) AS n FROM webhook_inbox")[0]["n"]
    r = api.as_(None, "POST", fill("/webhooks/payments/stripe/{clinic_id}", ctx), content=body,
                headers=stripe_secrets.sign(body) if spoil != "invalid_utf8" else {
                    **JSON, "Stripe-Signature": "t=1,v1=00"})
    assert_problem(r, 400)
    assert db.fetch("SELECT count(*) AS n FROM webhook_inbox")[0]["n"] == before


def test_a_huge_payment_webhook_is_413_and_an_unsigned_one_401(api, db, ctx, stripe_secrets):
    before = db.fetch("SELECT count(*) AS n FROM webhook_inbox")[0]["n"]
    path = fill("/webhooks/payments/stripe/{clinic_id}", ctx)
    huge = json.dumps({"x": "x" * (MIB + 1)}).encode()
    assert_problem(api.as_(None, "POST", path, content=huge, headers=stripe_secrets.sign(huge)),
                   413)
    r = api.as_(None, "POST", path, content=b'{"id": "evt_1"}', headers=JSON)
    assert_problem(r, 401, code="unauthenticated")
    for provider, clinic in (("venmo", ctx.clinic_id), ("stripe", "not-a-uuid")):
        r = api.as_(None, "POST", f"/webhooks/payments/{provider}/{clinic}",
                    content=b'{"id": "evt_1"}', headers=JSON)
        assert r.status_code == 400 and r.headers["content-type"].startswith(PROBLEM)
    assert db.fetch("SELECT count(*) AS n FROM webhook_inbox")[0]["n"] == before


# --- billing: refunds --------------------------------------------------------------------------
# Paths name a payment or a refund, which Ctx does not hold: this block fills them itself, and
# adds its routes to PROTECTED for the coverage check above. Payments come from rows
# (tests/billing/payment_rows.py): this clinic takes no payments.

REFUND_WRITES = {
    "create_refund": Write("POST", "/billing/payments/{payment_id}/refunds",
                           lambda c: {"amount": 100, "reason": "asked at the desk"},
                           "reason", 500, "reason", ("amount", [100])),
}
REFUND_READS: dict[str, tuple[str, str, Callable[[Ctx], dict[str, Any]] | None]] = {
    "list_payment_refunds": ("GET", "/billing/payments/{payment_id}/refunds", None),
    "get_refund": ("GET", "/billing/refunds/{refund_id}", None),
    "list_refunds": ("GET", "/billing/refunds", None),
}
REFUND_ROUTES = {**REFUND_READS,
                 **{name: (w.method, w.path, w.body) for name, w in REFUND_WRITES.items()}}
PROTECTED.update(REFUND_ROUTES)


@dataclass(frozen=True)
class RefundCtx:
    payment_id: str  # 1,000 paid at the desk, 100 of it refunded
    refund_id: str


@pytest.fixture(scope="module")
def refund_ctx(api, db, ctx) -> RefundCtx:
    from tests.billing.payment_rows import paid

    payment = paid(db, ctx.clinic_id, ctx.patient_id, 1000)
    r = api.as_(ctx.sa_token, "POST", f"/billing/payments/{payment}/refunds",
                json={"amount": 100, "reason": "first"})
    assert r.status_code == 201, r.text
    return RefundCtx(payment, r.json()["id"])


def refund_state(db, rc: RefundCtx) -> dict[str, Any]:
    rows = db.fetch(
        """SELECT (SELECT count(*) FROM billing_refunds) AS refunds,
                  (SELECT count(*) FROM events WHERE type LIKE 'refund.%') AS events,
                  (SELECT row_to_json(p)::text FROM billing_payments p
                    WHERE p.id = $1::uuid) AS payment""", rc.payment_id)
    assert '"refunded":100' in rows[0]["payment"], rows[0]
    return rows[0]


def refund_send(api, ctx: Ctx, rc: RefundCtx, route: str, *, token: str | None = None,
                ids_: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
    method, path, _ = REFUND_ROUTES[route]
    url = path.format(**{"payment_id": rc.payment_id, "refund_id": rc.refund_id, **(ids_ or {})})
    if route == "list_refunds":
        kw.setdefault("params", {"clinic_id": ctx.clinic_id})
    return api.as_(token or ctx.sa_token, method, url, **kw)


@pytest.mark.parametrize(("route", "spoil"), [
    pytest.param(route, spoil, id=f"{route}-{spoil}") for route, write in REFUND_WRITES.items()
    for spoil in SPOILS if _applies(write, spoil)])
def test_a_spoiled_refund_body_is_refused_whole(api, db, ctx, refund_ctx, route, spoil):
    write, how = REFUND_WRITES[route], SPOILS[spoil]
    before = refund_state(db, refund_ctx)
    r = refund_send(api, ctx, refund_ctx, route, **how.make(write, write.body(ctx)))
    problem = assert_problem(r, how.status, field=how.field(write))
    assert how.says(write) in problem["detail"], problem
    assert refund_state(db, refund_ctx) == before


@pytest.mark.parametrize(("body", "field"), [
    pytest.param({"amount": 0}, "amount", id="zero"),
    pytest.param({"amount": -1}, "amount", id="negative"),
    pytest.param({"amount": 10**12}, "amount", id="absurd"),
    pytest.param({"amount": 2**63}, "amount", id="beyond_bigint"),
    pytest.param({"amount": 1.5}, "amount", id="fraction"),
    pytest.param({"amount": "ten"}, "amount", id="word"),
    pytest.param({"amount": 901}, "amount", id="above_the_remainder"),
    pytest.param({"amount": 10, "reason": "   "}, "reason", id="blank_reason"),
    pytest.param({"amount": 10, "reason": ""}, "reason", id="empty_reason"),
    pytest.param({"amount": 10, "reason": 7}, "reason", id="number_reason"),
])
def test_a_bad_refund_field_is_named_and_nothing_changes(api, db, ctx, refund_ctx, body, field):
    before = refund_state(db, refund_ctx)
    r = refund_send(api, ctx, refund_ctx, "create_refund", json={"reason": "asked", **body})
    assert_problem(r, 400, field=field)
    assert refund_state(db, refund_ctx) == before


@pytest.mark.parametrize(("route", "param", "value"), [
    pytest.param(route, param, value, id=f"{route}-{param}-{label}")
    for route, (_, path, _) in REFUND_ROUTES.items() for param in ("payment_id", "refund_id")
    if "{" + param + "}" in path for label, value in BAD_UUIDS.items()])
def test_a_bad_uuid_in_a_refund_path_is_named(api, db, ctx, refund_ctx, route, param, value):
    before = refund_state(db, refund_ctx)
    write = REFUND_WRITES.get(route)
    r = refund_send(api, ctx, refund_ctx, route, ids_={param: value},
                    **({"json": write.body(ctx)} if write else {}))
    assert_problem(r, 400, field=param)
    assert refund_state(db, refund_ctx) == before


@pytest.mark.parametrize(("route", "param", "value"), [
    pytest.param(route, param, value, id=f"{route}-{param}-{label}")
    for route, (_, path, _) in REFUND_ROUTES.items() for param in ("payment_id", "refund_id")
    if "{" + param + "}" in path for label, value in {"nil": NIL, "random": str(uuid.uuid4())}.items()])
def test_an_unknown_payment_or_refund_is_404(api, db, ctx, refund_ctx, route, param, value):
    before = refund_state(db, refund_ctx)
    write = REFUND_WRITES.get(route)
    r = refund_send(api, ctx, refund_ctx, route, ids_={param: value},
                    **({"json": write.body(ctx)} if write else {}))
    assert_problem(r, 404, code="not_found")
    assert refund_state(db, refund_ctx) == before


def _refund_queries() -> list[Any]:
    out = []
    for route in ("list_refunds", "list_payment_refunds"):
        out += [pytest.param(route, {"limit": v}, "limit", id=f"{route}-limit-{k}")
                for k, v in LIMITS.items()]
        out += [pytest.param(route, {"cursor": v}, "cursor", id=f"{route}-cursor-{k}")
                for k, v in CURSORS.items() if k != "nul"]
    out += [pytest.param("list_refunds", {"clinic_id": v}, "clinic_id", id=f"clinic_id-{k}")
            for k, v in BAD_UUIDS.items() if k not in ("nul", "emoji")]
    out += [pytest.param("list_refunds", {"status": "refunded"}, "status", id="status-unknown"),
            pytest.param("list_refunds", {}, "clinic_id", id="clinic_id-missing")]
    return out


@pytest.mark.parametrize(("route", "query", "field"), _refund_queries())
def test_a_bad_refund_query_is_named(api, ctx, refund_ctx, route, query, field):
    params = ({"clinic_id": ctx.clinic_id} if route == "list_refunds" and field != "clinic_id"
              else {}) | query
    r = refund_send(api, ctx, refund_ctx, route, params=params)
    assert_problem(r, 400, field=field)


@pytest.mark.parametrize("auth", list(AUTHORIZATIONS))
@pytest.mark.parametrize("route", list(REFUND_ROUTES))
def test_a_bad_bearer_token_on_a_refund_route_is_401(api, db, ctx, refund_ctx, route, auth):
    before = refund_state(db, refund_ctx)
    method, path, body = REFUND_ROUTES[route]
    value = AUTHORIZATIONS[auth]
    url = path.format(payment_id=refund_ctx.payment_id, refund_id=refund_ctx.refund_id)
    r = api.as_(None, method, url, headers={"Authorization": value} if value else {},
                **({"json": body(ctx)} if body else {}),
                **({"params": {"clinic_id": ctx.clinic_id}} if route == "list_refunds" else {}))
    assert_problem(r, 401, code="unauthenticated")
    assert refund_state(db, refund_ctx) == before


# --- video: sessions ----------------------------------------------------------------------------
# Paths name a video session, which Ctx does not hold: this block fills them itself (a video
# appointment of the ctx clinic and its session), and adds its routes to PROTECTED for the
# coverage check above.

SESSION_WRITES = {
    "create_video_session": Write("POST", "/video/sessions",
                                  lambda c: {"appointment_id": c.appointment_id},
                                  None, 0, "appointment_id", ("appointment_id", 42)),
}
SESSION_READS: dict[str, tuple[str, str, Callable[[Ctx], dict[str, Any]] | None]] = {
    "get_video_session": ("GET", "/video/sessions/{session_id}", None),
    "list_video_sessions": ("GET", "/appointments/{appointment_id}/video-sessions", None),
    "video_token": ("POST", "/video/sessions/{session_id}/token", None),
    "video_admit": ("POST", "/video/sessions/{session_id}/admit", None),
    "video_end": ("POST", "/video/sessions/{session_id}/end", None),
}
SESSION_ROUTES = {**SESSION_READS,
                **{name: (w.method, w.path, w.body) for name, w in SESSION_WRITES.items()}}
PROTECTED.update(SESSION_ROUTES)


@dataclass(frozen=True)
class SessionCtx:
    appointment_id: str  # a video appointment of the ctx clinic, days ahead
    session_id: str  # its live session (open)


@pytest.fixture(scope="module")
def session_ctx(api, ctx) -> SessionCtx:
    r = api.as_(ctx.sa_token, "POST", "/appointments", json={
        **_booking(ctx), "type": "video", "location_id": None, "start": later(8, "11:00")})
    assert r.status_code == 201, r.text
    appointment = r.json()["id"]
    r = api.as_(ctx.sa_token, "POST", "/video/sessions", json={"appointment_id": appointment})
    assert r.status_code == 201, r.text
    return SessionCtx(appointment, r.json()["id"])


def session_state(db) -> dict[str, Any]:
    return db.fetch("""SELECT (SELECT count(*) FROM video_sessions) AS sessions,
                              (SELECT count(*) FROM events WHERE type LIKE 'video.%') AS events,
                              (SELECT string_agg(status, ',' ORDER BY id) FROM video_sessions)
                              AS statuses""")[0]


def session_send(api, ctx: Ctx, vc: SessionCtx, route: str, *, token: str | None = None,
               ids_: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
    method, path, _ = SESSION_ROUTES[route]
    url = path.format(**{"session_id": vc.session_id, "appointment_id": vc.appointment_id,
                         **(ids_ or {})})
    return api.as_(token or ctx.sa_token, method, url, **kw)


@pytest.mark.parametrize(("route", "spoil"), [
    pytest.param(route, spoil, id=f"{route}-{spoil}") for route, write in SESSION_WRITES.items()
    for spoil in SPOILS if _applies(write, spoil)])
def test_a_spoiled_video_session_body_is_refused_whole(api, db, ctx, session_ctx, route, spoil):
    write, how = SESSION_WRITES[route], SPOILS[spoil]
    before = session_state(db)
    r = session_send(api, ctx, session_ctx, route, **how.make(write, write.body(ctx)))
    problem = assert_problem(r, how.status, field=how.field(write))
    assert how.says(write) in problem["detail"], problem
    assert session_state(db) == before


@pytest.mark.parametrize(("value", "status", "code"), [
    pytest.param("not-a-uuid", 400, "invalid", id="word"),
    pytest.param(NIL, 404, "not_found", id="nil"),
    pytest.param(str(uuid.uuid4()), 404, "not_found", id="random"),
])
def test_a_bad_appointment_for_a_video_session_is_named(api, db, ctx, session_ctx, value, status,
                                                        code):
    before = session_state(db)
    r = session_send(api, ctx, session_ctx, "create_video_session", json={"appointment_id": value})
    assert_problem(r, status, code=code, field="appointment_id" if status == 400 else None)
    assert session_state(db) == before


def test_an_in_person_appointment_has_no_video_session(api, db, ctx, session_ctx):
    before = session_state(db)
    r = session_send(api, ctx, session_ctx, "create_video_session",
                   json={"appointment_id": ctx.appointment_id})
    problem = assert_problem(r, 409, code="conflict")
    assert "in_person" in problem["detail"]
    assert session_state(db) == before


@pytest.mark.parametrize(("route", "param", "value"), [
    pytest.param(route, param, value, id=f"{route}-{param}-{label}")
    for route, (_, path, _) in SESSION_READS.items() for param in ("session_id", "appointment_id")
    if "{" + param + "}" in path for label, value in BAD_UUIDS.items()])
def test_a_bad_uuid_in_a_video_session_path_is_named(api, db, ctx, session_ctx, route, param, value):
    before = session_state(db)
    r = session_send(api, ctx, session_ctx, route, ids_={param: value})
    assert_problem(r, 400, field=param)
    assert session_state(db) == before


@pytest.mark.parametrize(("route", "param", "value"), [
    pytest.param(route, param, value, id=f"{route}-{param}-{label}")
    for route, (_, path, _) in SESSION_READS.items() for param in ("session_id", "appointment_id")
    if "{" + param + "}" in path
    for label, value in {"nil": NIL, "random": str(uuid.uuid4())}.items()])
def test_an_unknown_video_session_or_appointment_is_404(api, db, ctx, session_ctx, route, param,
                                                        value):
    before = session_state(db)
    r = session_send(api, ctx, session_ctx, route, ids_={param: value})
    assert_problem(r, 404, code="not_found")
    assert session_state(db) == before


@pytest.mark.parametrize("auth", list(AUTHORIZATIONS))
@pytest.mark.parametrize("route", list(SESSION_ROUTES))
def test_a_bad_bearer_token_on_a_video_session_route_is_401(api, db, ctx, session_ctx, route,
                                                            auth):
    before = session_state(db)
    method, path, body = SESSION_ROUTES[route]
    value = AUTHORIZATIONS[auth]
    url = path.format(session_id=session_ctx.session_id, appointment_id=session_ctx.appointment_id)
    r = api.as_(None, method, url, headers={"Authorization": value} if value else {},
                **({"json": body(ctx)} if body else {}))
    assert_problem(r, 401, code="unauthenticated")
    assert session_state(db) == before


# --- video: providers ---
# Paths name a provider (`{provider}`, which `ids` fills for billing): this block fills it
# itself and adds its routes to PROTECTED for the coverage check above.

VIDEO_CREDENTIALS = "/clinics/{clinic_id}/video/credentials/{provider}"
VIDEO_WRITE = Write("PUT", VIDEO_CREDENTIALS,
                    lambda c: {"credentials": {"url": "https://openvidu.example.org",
                                               "api_key": "key-" + "k" * 8,
                                               "api_secret": "secret-" + "s" * 24}},
                    None, 0, "credentials", ("credentials", 5))
VIDEO_ROUTES: dict[str, tuple[str, str, Callable[[Ctx], dict[str, Any]] | None]] = {
    "put_video_credentials": ("PUT", VIDEO_CREDENTIALS, VIDEO_WRITE.body),
    "get_video_credentials": ("GET", VIDEO_CREDENTIALS, None),
    "video_health": ("GET", "/clinics/{clinic_id}/video/health", None),
}
PROTECTED.update(VIDEO_ROUTES)


def video_send(api, ctx: Ctx, route: str, *, token: str | None = None, clinic_id: str | None = None,
               provider: str = "openvidu", **kw: Any) -> httpx.Response:
    method, path, body = VIDEO_ROUTES[route]
    if body is not None and not {"json", "content", "data"} & kw.keys():
        kw["json"] = body(ctx)
    url = path.format(clinic_id=clinic_id or ctx.clinic_id, provider=provider)
    return api.as_(token or ctx.sa_token, method, url, **kw)


@pytest.mark.parametrize("spoil", [s for s in SPOILS if _applies(VIDEO_WRITE, s)])
def test_a_spoiled_video_credentials_body_is_refused_whole(api, db, ctx, spoil):
    how = SPOILS[spoil]
    before = snapshot(db, ctx)
    r = video_send(api, ctx, "put_video_credentials", **how.make(VIDEO_WRITE, VIDEO_WRITE.body(ctx)))
    problem = assert_problem(r, how.status, field=how.field(VIDEO_WRITE))
    assert how.says(VIDEO_WRITE) in problem["detail"], problem
    assert snapshot(db, ctx) == before


_OPENVIDU = {"url": "https://openvidu.example.org", "api_key": "k" * 8, "api_secret": "s" * 24}
_JITSI = {"domain": "meet.example.org", "app_id": "clinic-app", "app_secret": "s" * 24}


@pytest.mark.parametrize(("provider", "fields", "field"), [
    pytest.param("openvidu", {k: v for k, v in _OPENVIDU.items() if k != "api_secret"},
                  "credentials.api_secret", id="openvidu-missing"),
    pytest.param("openvidu", {**_OPENVIDU, "region": "eu"}, "credentials.region", id="openvidu-unknown"),
    pytest.param("openvidu", {**_OPENVIDU, "url": "http://openvidu.example.org"}, "credentials.url",
                 id="openvidu-plain-http"),
    pytest.param("openvidu", {**_OPENVIDU, "url": "https://user@openvidu.example.org"},
                 "credentials.url", id="openvidu-userinfo"),
    pytest.param("openvidu", {**_OPENVIDU, "url": "https://openvidu.example.org/x?y"},
                 "credentials.url", id="openvidu-path"),
    pytest.param("openvidu", {**_OPENVIDU, "api_key": " "}, "credentials.api_key", id="openvidu-blank"),
    pytest.param("openvidu", {**_OPENVIDU, "api_key": "a\u0000b"}, "credentials", id="openvidu-nul"),
    pytest.param("openvidu", {f"f{i}": "v" for i in range(21)}, "credentials", id="openvidu-too-many"),
    pytest.param("jitsi", {**_JITSI, "domain": "https://meet.example.org"}, "credentials.domain",
                 id="jitsi-scheme"),
    pytest.param("jitsi", {**_JITSI, "domain": "meet.example.org/room"}, "credentials.domain",
                 id="jitsi-path"),
    pytest.param("jitsi", {**_JITSI, "key_id": "k1"}, "credentials.app_secret", id="jaas-not-a-key"),
    pytest.param("jitsi", {"domain": "meet.example.org"}, "credentials.app_id", id="jitsi-missing"),
    pytest.param("zoom", _OPENVIDU, "provider", id="unknown-provider"),
])
def test_a_bad_video_credential_is_named_and_nothing_changes(api, db, ctx, provider, fields, field):
    before = snapshot(db, ctx)
    r = video_send(api, ctx, "put_video_credentials", provider=provider, json={"credentials": fields})
    assert_problem(r, 400, field=field)
    assert snapshot(db, ctx) == before
    assert "s" * 24 not in r.text  # a secret is never echoed


@pytest.mark.parametrize(("route", "value"), [
    pytest.param(route, value, id=f"{route}-{label}") for route in VIDEO_ROUTES
    for label, value in BAD_UUIDS.items()])
def test_a_bad_clinic_id_in_a_video_path_is_named(api, db, ctx, route, value):
    before = snapshot(db, ctx)
    assert_problem(video_send(api, ctx, route, clinic_id=value), 400, field="clinic_id")
    assert snapshot(db, ctx) == before


@pytest.mark.parametrize(("route", "value"), [
    pytest.param(route, value, id=f"{route}-{label}") for route in VIDEO_ROUTES
    for label, value in {"nil": NIL, "random": str(uuid.uuid4())}.items()])
def test_an_unknown_clinic_in_a_video_path_is_404(api, db, ctx, route, value):
    before = snapshot(db, ctx)
    assert_problem(video_send(api, ctx, route, clinic_id=value), 404, code="not_found")
    assert snapshot(db, ctx) == before


@pytest.mark.parametrize("auth", list(AUTHORIZATIONS))
@pytest.mark.parametrize("route", list(VIDEO_ROUTES))
def test_a_bad_bearer_token_on_a_video_route_is_401(api, db, ctx, route, auth):
    before = snapshot(db, ctx)
    value = AUTHORIZATIONS[auth]
    method, path, body = VIDEO_ROUTES[route]
    r = api.as_(None, method, path.format(clinic_id=ctx.clinic_id, provider="openvidu"),
                headers={"Authorization": value} if value else {},
                **({"json": body(ctx)} if body else {}))
    assert_problem(r, 401, code="unauthenticated")
    assert snapshot(db, ctx) == before


# --- video: webhooks and recording -------------------------------------------------------------
# Paths name a video session or recording, which Ctx does not hold: this block writes them as
# rows (tests/video/rows.py: the shared server has no OpenVidu) and adds its routes to PROTECTED
# and WEBHOOKS for the coverage check above. None of these routes takes a body.

RECORDING_ROUTES: dict[str, tuple[str, str, Callable[[Ctx], dict[str, Any]] | None]] = {
    "video_consent": ("POST", "/video/sessions/{session_id}/consent", None),
    "video_start_recording": ("POST", "/video/sessions/{session_id}/recordings", None),
    "video_stop_recording": ("POST", "/video/recordings/{recording_id}/stop", None),
    "video_list_recordings": ("GET", "/video/recordings", None),
    "video_recording_link": ("POST", "/video/recordings/{recording_id}/link", None),
}
PROTECTED.update(RECORDING_ROUTES)
WEBHOOKS["openvidu"] = ("POST", "/webhooks/video/openvidu")


@dataclass(frozen=True)
class RecordingCtx:
    session_id: str  # an open session of the clinic's appointment, no consent yet
    recording_id: str  # a failed recording of it
    appointment_id: str


@pytest.fixture(scope="module")
def recording_ctx(db, ctx) -> RecordingCtx:
    from tests.video.rows import recording_row, session_row

    [a] = db.fetch("SELECT doctor_id, patient_id FROM appointments WHERE id = $1::uuid",
                   ctx.appointment_id)
    session = session_row(db, clinic_id=ctx.clinic_id, appointment_id=ctx.appointment_id,
                          doctor_id=str(a["doctor_id"]), patient_id=str(a["patient_id"]))
    return RecordingCtx(session, recording_row(db, session), ctx.appointment_id)


def recording_state(db, vc: RecordingCtx) -> dict[str, Any]:
    return db.fetch(
        """SELECT (SELECT count(*) FROM video_recordings) AS recordings,
                  (SELECT count(*) FROM events WHERE type LIKE 'video.%') AS events,
                  (SELECT row_to_json(s)::text FROM video_sessions s
                    WHERE s.id = $1::uuid) AS session""", vc.session_id)[0]


def recording_send(api, ctx: Ctx, vc: RecordingCtx, route: str, *, ids_: dict[str, str] | None = None,
               **kw: Any) -> httpx.Response:
    method, path, _ = RECORDING_ROUTES[route]
    url = path.format(**{"session_id": vc.session_id, "recording_id": vc.recording_id,
                         **(ids_ or {})})
    if route == "video_list_recordings":
        kw.setdefault("params", {"appointment_id": vc.appointment_id})
    return api.as_(kw.pop("token", ctx.sa_token), method, url, **kw)


def _recording_path_params(values: dict[str, str]) -> list[Any]:
    return [pytest.param(route, param, value, id=f"{route}-{param}-{label}")
            for route, (_, path, _) in RECORDING_ROUTES.items()
            for param in ("session_id", "recording_id") if "{" + param + "}" in path
            for label, value in values.items()]


@pytest.mark.parametrize(("route", "param", "value"), _recording_path_params(BAD_UUIDS))
def test_a_bad_uuid_in_a_recording_path_is_named(api, db, ctx, recording_ctx, route, param, value):
    before = recording_state(db, recording_ctx)
    r = recording_send(api, ctx, recording_ctx, route, ids_={param: value})
    assert_problem(r, 400, field=param)
    assert recording_state(db, recording_ctx) == before


@pytest.mark.parametrize(("route", "param", "value"), _recording_path_params(
    {"nil": NIL, "random": str(uuid.uuid4())}))
def test_an_unknown_session_or_recording_in_a_recording_path_is_404(api, db, ctx, recording_ctx, route, param,
                                                      value):
    before = recording_state(db, recording_ctx)
    r = recording_send(api, ctx, recording_ctx, route, ids_={param: value})
    assert_problem(r, 404, code="not_found")
    assert recording_state(db, recording_ctx) == before


@pytest.mark.parametrize(("query", "status"), [
    pytest.param({}, 400, id="missing"),
    *(pytest.param({"appointment_id": v}, 400, id=k) for k, v in BAD_UUIDS.items()
      if k not in ("nul", "emoji")),
    pytest.param({"appointment_id": NIL}, 404, id="unknown"),
])
def test_a_bad_recordings_query_is_named(api, ctx, recording_ctx, query, status):
    r = recording_send(api, ctx, recording_ctx, "video_list_recordings", params=query)
    problem = assert_problem(r, status, code="invalid" if status == 400 else "not_found")
    if status == 400:
        assert [e["field"] for e in problem["errors"]] == ["appointment_id"], problem


@pytest.mark.parametrize("auth", list(AUTHORIZATIONS))
@pytest.mark.parametrize("route", list(RECORDING_ROUTES))
def test_a_bad_bearer_token_on_a_recording_route_is_401(api, db, ctx, recording_ctx, route, auth):
    before = recording_state(db, recording_ctx)
    value = AUTHORIZATIONS[auth]
    r = recording_send(api, ctx, recording_ctx, route, token=None,
                   headers={"Authorization": value} if value else {})
    assert_problem(r, 401, code="unauthenticated")
    assert recording_state(db, recording_ctx) == before


@pytest.mark.parametrize("spoil", list(WEBHOOK_BODIES))
def test_a_malformed_openvidu_webhook_is_refused_and_stores_nothing(api, db, spoil):
    """Unsigned, signed by a key nobody here has, or a body naming no room of ours: 401 before
    the body is read for anything else."""
    from tests.video.fakes.livekit import LiveKitFake

    body = WEBHOOK_BODIES[spoil]
    stranger = LiveKitFake()  # not started: its keys sign, nothing is called
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    from livekit import api as livekit

    token = livekit.AccessToken(stranger.api_key, stranger.api_secret).with_sha256(digest).to_jwt()
    before = db.fetch("SELECT count(*) AS n FROM webhook_inbox")[0]["n"]
    for headers in ({}, {"authorization": token}, {"authorization": "Bearer " + token}):
        r = api.as_(None, "POST", "/webhooks/video/openvidu", content=body,
                    headers={"content-type": "application/webhook+json", **headers})
        assert_problem(r, 401, code="unauthenticated")
    huge = json.dumps({"x": "x" * (MIB + 1)}).encode()
    r = api.as_(None, "POST", "/webhooks/video/openvidu", content=huge,
                headers={"content-type": "application/webhook+json", "authorization": token})
    assert_problem(r, 413)
    assert db.fetch("SELECT count(*) AS n FROM webhook_inbox")[0]["n"] == before
