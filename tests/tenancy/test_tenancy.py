"""Clinics, locations and members: mass assignment, invariants, settings, paging."""

from __future__ import annotations

import pytest

from tests.conftest import unique_email


@pytest.fixture(scope="module")
def clinic(clinic_factory, member_factory):
    c = clinic_factory()
    c["admin"] = member_factory(c["id"], "CLINIC_ADMIN", tag="admin")
    c["head"] = member_factory(c["id"], "LOCATION_HEAD", location_id=c["locations"][0]["id"],
                               tag="head")
    return c


def members(api, token, clinic_id):
    r = api.as_(token, "GET", f"/clinics/{clinic_id}/members", params={"limit": 200})
    assert r.status_code == 200, r.text
    return {m["user_id"]: m for m in r.json()["items"]}


@pytest.mark.parametrize("field", ["clinic_id", "user_id", "email", "is_super_admin", "id"])
def test_member_patch_refuses_fields_it_does_not_own(api, sa_token, clinic, field):
    head = clinic["head"]
    r = api.as_(clinic["admin"]["token"], "PATCH",
                f"/clinics/{clinic['id']}/members/{head['user_id']}",
                json={"role": "LOCATION_HEAD", field: "00000000-0000-0000-0000-000000000001"})
    assert r.status_code == 400
    assert [e["field"] for e in r.json()["errors"]] == [field]
    assert members(api, sa_token, clinic["id"])[head["user_id"]]["role"] == "LOCATION_HEAD"


def test_a_member_cannot_change_their_own_role(api, sa_token, clinic):
    head = clinic["head"]
    r = api.as_(head["token"], "PATCH", f"/clinics/{clinic['id']}/members/{head['user_id']}",
                json={"role": "CLINIC_ADMIN"})
    assert r.status_code == 403
    assert members(api, sa_token, clinic["id"])[head["user_id"]]["role"] == "LOCATION_HEAD"


def test_clinic_patch_refuses_unknown_and_bad_settings(api, clinic):
    r = api.as_(clinic["admin"]["token"], "PATCH", f"/clinics/{clinic['id']}",
                json={"id": "00000000-0000-0000-0000-000000000001"})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "id"
    r = api.as_(clinic["admin"]["token"], "PATCH", f"/clinics/{clinic['id']}",
                json={"settings": {"allow_self_registratoin": True}})
    assert r.status_code == 400
    assert r.json()["errors"][0]["field"] == "settings.allow_self_registratoin"
    r = api.as_(clinic["admin"]["token"], "PATCH", f"/clinics/{clinic['id']}",
                json={"timezone": "Mars/Olympus"})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "timezone"


def test_clinic_patch_merges_settings_and_keeps_the_rest(api, clinic):
    r = api.as_(clinic["admin"]["token"], "PATCH", f"/clinics/{clinic['id']}",
                json={"timezone": "Europe/London", "settings": {"allow_self_registration": True}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["timezone"] == "Europe/London" and body["name"] == clinic["name"]
    assert body["settings"]["allow_self_registration"] is True


def test_location_head_needs_a_location(api, clinic):
    r = api.as_(clinic["admin"]["token"], "POST", f"/clinics/{clinic['id']}/members",
                json={"email": unique_email(), "name": "Head", "role": "LOCATION_HEAD"})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "location_id"


def test_location_must_belong_to_the_clinic(api, clinic, clinic_factory):
    other = clinic_factory()
    r = api.as_(clinic["admin"]["token"], "POST", f"/clinics/{clinic['id']}/members",
                json={"email": unique_email(), "name": "Nurse", "role": "NURSE",
                      "location_id": other["locations"][0]["id"]})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "location_id"


def test_the_last_clinic_admin_stays(api, sa_token, clinic_factory, member_factory):
    c = clinic_factory()
    only = member_factory(c["id"], "CLINIC_ADMIN", tag="only")
    r = api.as_(sa_token, "DELETE", f"/clinics/{c['id']}/members/{only['user_id']}")
    assert r.status_code == 409
    r = api.as_(sa_token, "PATCH", f"/clinics/{c['id']}/members/{only['user_id']}",
                json={"role": "DOCTOR"})
    assert r.status_code == 409
    second = member_factory(c["id"], "CLINIC_ADMIN", tag="second")
    r = api.as_(second["token"], "DELETE", f"/clinics/{c['id']}/members/{only['user_id']}")
    assert r.status_code == 204
    assert only["user_id"] not in members(api, sa_token, c["id"])


def test_same_user_in_two_clinics_with_different_roles(api, sa_token, clinic_factory,
                                                        member_factory):
    a, b = clinic_factory(), clinic_factory()
    doc = member_factory(a["id"], "DOCTOR", tag="doc")
    r = api.as_(sa_token, "POST", f"/clinics/{b['id']}/members",
                json={"email": doc["email"], "name": "ignored", "role": "PATIENT"})
    assert r.status_code == 201 and r.json()["user_id"] == doc["user_id"]
    me = api.as_(api.token(doc["email"], doc["password"]), "GET", "/users/me").json()
    assert {(m["clinic_id"], m["role"]) for m in me["memberships"]} == {
        (a["id"], "DOCTOR"), (b["id"], "PATIENT")}
    again = api.as_(sa_token, "POST", f"/clinics/{b['id']}/members",
                    json={"email": doc["email"], "name": "x", "role": "NURSE"})
    assert again.status_code == 409


def test_a_clinic_cannot_set_an_existing_users_password(api, sa_token, clinic_factory,
                                                        member_factory):
    a, b = clinic_factory(), clinic_factory()
    person = member_factory(a["id"], "NURSE", tag="pw")
    r = api.as_(sa_token, "POST", f"/clinics/{b['id']}/members",
                json={"email": person["email"], "name": "x", "role": "NURSE",
                      "password": "attacker-chosen-1"})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "password"
    bad = api.http.post("/auth/login", json={"email": person["email"],
                                             "password": "attacker-chosen-1"})
    assert bad.status_code == 401
    assert person["user_id"] not in members(api, sa_token, b["id"])


def test_member_pages_walk_every_member_once(api, sa_token, clinic_factory, member_factory):
    c = clinic_factory()
    made = {member_factory(c["id"], "PATIENT", password=None, tag=f"p{i}")["user_id"]
            for i in range(5)}
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = api.as_(sa_token, "GET", f"/clinics/{c['id']}/members", params=params).json()
        seen += [m["user_id"] for m in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(made)
