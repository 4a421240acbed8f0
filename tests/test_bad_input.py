"""Bad input never gets a 500 nor leaves half a change: it always gets a 4xx
`application/problem+json` answer (API.md) and, when a field is at fault, `errors` names it.

Every route of the OpenAPI is driven with wrong JSON types, missing and unknown fields,
bodies that are not JSON objects, oversized and deeply nested bodies, NUL characters and
lone surrogates, bad UUIDs in the path and body, bad query parameters, the wrong
Content-Type, a bad Idempotency-Key and bad bearer tokens. Every refused write is checked
against the database: no row appears, changes or disappears. A bounded schemathesis run
fuzzes the live OpenAPI on top.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

from tests.conftest import SA_EMAIL, SA_PASSWORD, unique_email

PROBLEM = "application/problem+json"
CODES = {"invalid", "unauthenticated", "forbidden", "not_found", "conflict",
         "payment_required", "rate_limited", "unavailable"}
KEYS = {"type", "title", "status", "detail", "code"}
MIB = 1 << 20
NIL = "00000000-0000-0000-0000-000000000000"
JSON = {"content-type": "application/json"}


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


@pytest.fixture(scope="module")
def ctx(clinic_factory, member_factory, sa_token) -> Ctx:
    clinic = clinic_factory(allow_self_registration=True)
    nurse = member_factory(clinic["id"], "NURSE", tag="bad-input")
    return Ctx(clinic["id"], clinic["locations"][0]["id"], nurse["user_id"], nurse["email"],
               nurse["password"], sa_token)


def snapshot(db, ctx: Ctx) -> dict[str, Any]:
    rows = db.fetch(
        """SELECT (SELECT count(*) FROM clinics) AS clinics,
                  (SELECT count(*) FROM locations) AS locations,
                  (SELECT count(*) FROM users) AS users,
                  (SELECT count(*) FROM memberships) AS memberships,
                  (SELECT count(*) FROM sessions WHERE revoked_at IS NULL) AS live_sessions,
                  (SELECT count(*) FROM refresh_tokens) AS refresh_tokens,
                  (SELECT count(*) FROM events) AS events,
                  (SELECT row_to_json(c)::text FROM clinics c WHERE c.id = $1::uuid) AS clinic,
                  (SELECT row_to_json(m)::text FROM memberships m
                    WHERE m.clinic_id = $1::uuid AND m.user_id = $2::uuid) AS member""",
        ctx.clinic_id, ctx.user_id,
    )
    state = rows[0]
    assert state["clinic"] and state["member"], state  # the targets exist to be left alone
    return state


def fill(path: str, ctx: Ctx) -> str:
    return path.format(clinic_id=ctx.clinic_id, user_id=ctx.user_id)


# --- the routes -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Write:
    """A route that reads a JSON body, with a valid body and the fields to spoil."""

    method: str
    path: str
    body: Callable[[Ctx], dict[str, Any]]
    text: str  # a free-text field: NUL, lone surrogates, over-long
    max_length: int  # of `text`
    required: str | None  # a required field (PATCH has none)
    wrong_type: tuple[str, Any]  # a field and a value of the wrong JSON type
    public: bool = False


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
                   "password": "password-1", "name": "Pat Ient"},
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
}

# Every protected route, with a body that would be accepted from an allowed caller.
PROTECTED: dict[str, tuple[str, str, Callable[[Ctx], dict[str, Any]] | None]] = {
    "logout": ("POST", "/auth/logout", None),
    "me": ("GET", "/users/me", None),
    "list_clinics": ("GET", "/clinics", None),
    "get_clinic": ("GET", "/clinics/{clinic_id}", None),
    "list_locations": ("GET", "/clinics/{clinic_id}/locations", None),
    "list_members": ("GET", "/clinics/{clinic_id}/members", None),
    "remove_member": ("DELETE", "/clinics/{clinic_id}/members/{user_id}", None),
    "list_events": ("GET", "/clinics/{clinic_id}/events", None),
    **{name: (w.method, w.path, w.body) for name, w in WRITES.items() if not w.public},
}


def send(api, ctx: Ctx, name: str, token: str | None = None, **kw: Any) -> httpx.Response:
    if name in WRITES:
        write = WRITES[name]
        method, path = write.method, write.path
        token = token or (None if write.public else ctx.sa_token)
    else:
        method, path, _ = PROTECTED[name]
        token = token or ctx.sa_token
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
    "huge_body": Spoil(lambda w, b: {"json": {**b, w.text: "x" * (MIB + 1)}},
                       413, lambda w: None, lambda w: "too large"),
    "huge_body_idempotent": Spoil(
        lambda w, b: {"json": {**b, w.text: "x" * (MIB + 1)},
                      "headers": {"Idempotency-Key": uuid.uuid4().hex}}, 413, lambda w: None),
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


def spoil_params() -> list[Any]:
    return [pytest.param(route, spoil, id=f"{route}-{spoil}")
            for route, write in WRITES.items() for spoil in SPOILS
            if not (spoil == "missing_required" and write.required is None)]


@pytest.mark.parametrize(("route", "spoil"), spoil_params())
def test_a_spoiled_body_is_refused_whole(api, db, ctx, route, spoil):
    write, how = WRITES[route], SPOILS[spoil]
    before = snapshot(db, ctx)
    r = send(api, ctx, route, **how.make(write, write.body(ctx)))
    problem = assert_problem(r, how.status, field=how.field(write))
    assert how.says(write) in problem["detail"], problem
    assert snapshot(db, ctx) == before


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
PATH_ROUTES = ["get_clinic", "update_clinic", "list_locations", "create_location",
               "list_members", "add_member", "update_member", "remove_member", "list_events"]


def path_params() -> list[Any]:
    out = []
    for route in PATH_ROUTES:
        _, path, _ = PROTECTED[route]
        for param in ("clinic_id", "user_id"):
            if "{" + param + "}" not in path:
                continue
            for label, value in BAD_UUIDS.items():
                out.append(pytest.param(route, param, value, id=f"{route}-{param}-{label}"))
    return out


@pytest.mark.parametrize(("route", "param", "value"), path_params())
def test_a_bad_uuid_in_the_path_is_named(api, db, ctx, route, param, value):
    method, path, body = PROTECTED[route]
    before = snapshot(db, ctx)
    url = path.format(**{"clinic_id": ctx.clinic_id, "user_id": ctx.user_id, param: value})
    r = api.as_(ctx.sa_token, method, url, **({"json": body(ctx)} if body else {}))
    assert_problem(r, 400, field=param)
    assert snapshot(db, ctx) == before


def test_an_unknown_path_is_a_problem_too(api, ctx):
    r = api.as_(ctx.sa_token, "GET", "/no-such-route")
    assert_problem(r, 404, code="not_found")
    r = api.as_(ctx.sa_token, "PUT", fill("/clinics/{clinic_id}", ctx), json={"name": "x"})
    assert r.status_code == 405 and r.headers["content-type"].startswith(PROBLEM)


# --- bad query parameters ---------------------------------------------------------------------

LISTS = {"clinics": "/clinics", "locations": "/clinics/{clinic_id}/locations",
         "members": "/clinics/{clinic_id}/members", "events": "/clinics/{clinic_id}/events"}
LIMITS = {"word": "abc", "zero": "0", "negative": "-1", "huge": "100000", "float": "1.5",
          "empty": "", "overflow": "9" * 30}
CURSORS = {"garbage": "garbage", "nul": "%00", "not_base64": "!!!!",
           "base64_nonsense": base64.urlsafe_b64encode(b"x|y").decode(),
           "not_utf8": base64.urlsafe_b64encode(b"\xff\xfe|\xff").decode(), "long": "A" * 5000}
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
    r = api.as_(ctx.sa_token, "GET", fill(LISTS[route], ctx) + "?" + query)
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
                **({"json": body(ctx)} if body else {}))
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


# --- every route of the OpenAPI, and schemathesis against it ---------------------------------

OPENAPI_OPERATIONS = {
    ("POST", "/api/v1/auth/login"), ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/logout"), ("POST", "/api/v1/auth/register"),
    ("GET", "/api/v1/users/me"), ("GET", "/api/v1/clinics"), ("POST", "/api/v1/clinics"),
    ("GET", "/api/v1/clinics/{clinic_id}"), ("PATCH", "/api/v1/clinics/{clinic_id}"),
    ("GET", "/api/v1/clinics/{clinic_id}/locations"),
    ("POST", "/api/v1/clinics/{clinic_id}/locations"),
    ("GET", "/api/v1/clinics/{clinic_id}/members"),
    ("POST", "/api/v1/clinics/{clinic_id}/members"),
    ("PATCH", "/api/v1/clinics/{clinic_id}/members/{user_id}"),
    ("DELETE", "/api/v1/clinics/{clinic_id}/members/{user_id}"),
    ("GET", "/api/v1/clinics/{clinic_id}/events"),
    ("GET", "/health/live"), ("GET", "/health/ready"),
}


def test_this_file_covers_every_route_of_the_openapi(server):
    """A new route fails here until its bad input is covered above (and fuzzed below)."""
    spec = httpx.get(server.base_url + "/schema/openapi.json").json()
    listed = {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops
              if method.upper() in {"GET", "POST", "PUT", "PATCH", "DELETE"}}
    assert listed == OPENAPI_OPERATIONS
    covered = {(w.method, "/api/v1" + w.path) for w in WRITES.values()} | {
        (m, "/api/v1" + p) for m, p, _ in PROTECTED.values()}
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


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                         ids=lambda m: m.value)
@pytest.mark.parametrize(("method", "path"), FUZZED, ids=[f"{m} {p}" for m, p in FUZZED])
def test_fuzzed_requests_never_get_a_500(server, live_schema, fuzz_token, method, path, mode):
    """Schemathesis generates requests from the OpenAPI (negative mode: ones that break it);
    as a super admin, none may get a 5xx, and every refusal is a problem+json."""
    strategy = live_schema[path][method].as_strategy(generation_mode=mode)
    headers = {"Authorization": f"Bearer {fuzz_token}"}

    @given(case=strategy)
    @settings(max_examples=10, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate])
    def run(case: Any) -> None:
        r = case.call(base_url=server.base_url, headers=headers, timeout=30)
        assert r.status_code < 500, (case.method, case.formatted_path, case.body, r.text)
        if r.status_code >= 400:
            check_problem(r.status_code, r.headers, r.json())

    run()
