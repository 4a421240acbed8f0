"""Push devices at /users/me/devices: register (new, again, moved), list, remove, the per-user
cap, token validation, and register/remove racing between two users."""

from __future__ import annotations

import random
import secrets
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from domain.communication.commands.devices import MAX_DEVICES

PATH = "/users/me/devices"


def fcm() -> str:
    return "f" + secrets.token_urlsafe(120).replace("-", "_") + ":APA91b"


def apns() -> str:
    return secrets.token_hex(32)


@pytest.fixture(scope="module")
def people(clinic_factory, member_factory) -> dict[str, Any]:
    clinic = clinic_factory()
    return {name: member_factory(clinic["id"], "PATIENT", tag=f"dev-{name}")
            for name in ("ann", "bob", "cat")}


def register(api, who: dict[str, Any], **body: Any) -> httpx.Response:
    return api.as_(who["token"], "POST", PATH,
                   json={"kind": "fcm", "platform": "android", **body})


def listed(api, who: dict[str, Any]) -> list[dict[str, Any]]:
    r = api.as_(who["token"], "GET", PATH)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def test_register_again_is_the_same_device_and_never_shows_the_token(api, db, people):
    ann, token = people["ann"], fcm()
    r = register(api, ann, token=token, app_version="1.0.0")
    assert r.status_code == 201, r.text
    device = r.json()
    assert set(device) == {"id", "kind", "platform", "app_version", "token_last4", "created_at",
                           "last_seen_at"}
    assert device["token_last4"] == token[-4:] and token not in r.text
    again = register(api, ann, token=token, app_version="1.1.0")
    assert again.status_code == 200, again.text
    assert again.json()["id"] == device["id"] and again.json()["app_version"] == "1.1.0"
    assert again.json()["last_seen_at"] >= device["last_seen_at"]
    mine = listed(api, ann)
    assert [d["id"] for d in mine].count(device["id"]) == 1
    assert token not in api.as_(ann["token"], "GET", PATH).text
    rows = db.fetch("SELECT user_id, token FROM devices WHERE id = $1::uuid", device["id"])
    assert [(str(r["user_id"]), r["token"]) for r in rows] == [(ann["user_id"], token)]


def test_an_apns_token_is_stored_lowercase_and_matches_in_any_case(api, people):
    token = apns()
    r = register(api, people["ann"], kind="apns", platform="ios", token=token.upper())
    assert r.status_code == 201, r.text
    r2 = register(api, people["ann"], kind="apns", platform="ios", token=token)
    assert (r2.status_code, r2.json()["id"]) == (200, r.json()["id"])


def test_remove_retires_and_registering_again_revives(api, db, people):
    bob, token = people["bob"], fcm()
    device_id = register(api, bob, token=token).json()["id"]
    assert api.as_(bob["token"], "DELETE", f"{PATH}/{device_id}").status_code == 204
    assert device_id not in {d["id"] for d in listed(api, bob)}
    row = db.fetch("SELECT retired_at, retired_reason FROM devices WHERE id = $1::uuid",
                   device_id)[0]
    assert row["retired_at"] is not None and row["retired_reason"] == "removed"
    # a retried DELETE of one's own device is not an error
    assert api.as_(bob["token"], "DELETE", f"{PATH}/{device_id}").status_code == 204
    r = register(api, bob, token=token)
    assert (r.status_code, r.json()["id"]) == (200, device_id)
    assert device_id in {d["id"] for d in listed(api, bob)}
    assert db.fetch("SELECT retired_at FROM devices WHERE id = $1::uuid",
                    device_id)[0]["retired_at"] is None


def test_someone_elses_device_is_404_and_stays(api, db, people):
    ann, bob = people["ann"], people["bob"]
    device_id = register(api, ann, token=fcm()).json()["id"]
    r = api.as_(bob["token"], "DELETE", f"{PATH}/{device_id}")
    assert r.status_code == 404 and r.json()["code"] == "not_found", r.text
    assert device_id in {d["id"] for d in listed(api, ann)}
    assert device_id not in {d["id"] for d in listed(api, bob)}
    assert api.as_(None, "DELETE", f"{PATH}/{device_id}").status_code == 401


def test_a_token_another_user_holds_moves_to_the_caller(api, db, people):
    ann, cat, token = people["ann"], people["cat"], fcm()
    first = register(api, ann, token=token).json()
    r = register(api, cat, token=token, platform="web")
    assert r.status_code == 201, r.text
    assert r.json()["id"] == first["id"] and r.json()["platform"] == "web"
    assert first["id"] not in {d["id"] for d in listed(api, ann)}
    assert first["id"] in {d["id"] for d in listed(api, cat)}
    assert api.as_(ann["token"], "DELETE", f"{PATH}/{first['id']}").status_code == 404
    rows = db.fetch("SELECT user_id FROM devices WHERE token = $1", token)
    assert [str(r["user_id"]) for r in rows] == [cat["user_id"]]


@pytest.mark.parametrize(("kind", "token"), [
    ("fcm", "short"), ("fcm", "has space in it, sixteen+"), ("fcm", "slash/in/the/token/x"),
    ("fcm", "x" * 4097), ("fcm", "ü" * 20), ("apns", "a" * 63), ("apns", "g" * 64),
    ("apns", "a" * 65), ("apns", fcm()),
])
def test_a_bad_token_is_400_naming_token(api, db, people, kind, token):
    before = db.fetch("SELECT count(*) AS n FROM devices")[0]["n"]
    r = register(api, people["ann"], kind=kind, token=token)
    assert r.status_code == 400, r.text
    assert "token" in [e["field"] for e in r.json()["errors"]], r.text
    assert db.fetch("SELECT count(*) AS n FROM devices")[0]["n"] == before


@pytest.mark.parametrize(("field", "value"), [("kind", "gcm"), ("platform", "windows"),
                                               ("app_version", "v" * 41), ("app_version", " ")])
def test_bad_fields_are_400_naming_them(api, people, field, value):
    r = register(api, people["ann"], token=fcm(), **{field: value})
    assert r.status_code == 400, r.text
    assert field in [e["field"] for e in r.json()["errors"]], r.text


def test_at_most_max_devices_are_active(api, member_factory, clinic_factory):
    who = member_factory(clinic_factory()["id"], "PATIENT", tag="dev-full")
    ids = [register(api, who, token=fcm()).json()["id"] for _ in range(MAX_DEVICES)]
    r = register(api, who, token=fcm())
    assert r.status_code == 409 and r.json()["code"] == "conflict", r.text
    assert len(listed(api, who)) == MAX_DEVICES
    # one's own token again still refreshes; removing one makes room
    assert api.as_(who["token"], "DELETE", f"{PATH}/{ids[0]}").status_code == 204
    assert register(api, who, token=fcm()).status_code == 201
    assert register(api, who, token=fcm()).status_code == 409


def test_register_and_remove_racing_between_two_users(api, server, db, clinic_factory,
                                                      member_factory):
    """Two users register and remove the same few tokens at once: no 5xx, each token is one
    row held by exactly one of them, and each user's list shows exactly their active rows."""
    clinic = clinic_factory()
    users = [member_factory(clinic["id"], "PATIENT", tag=f"race{i}") for i in range(2)]
    tokens = [fcm() for _ in range(4)]
    rng = random.Random(11)
    plan = [(rng.choice(users), rng.choice(tokens), rng.random() < 0.35) for _ in range(120)]

    def act(step: tuple[dict[str, Any], str, bool]) -> int:
        who, token, remove = step
        with httpx.Client(base_url=server.base_url + "/api/v1", timeout=30) as client:
            headers = {"Authorization": f"Bearer {who['token']}"}
            r = client.post(PATH, json={"kind": "fcm", "platform": "android", "token": token},
                            headers=headers)
            if r.status_code >= 500 or not remove:
                return r.status_code
            d = client.delete(f"{PATH}/{r.json()['id']}", headers=headers)
            return d.status_code  # 404 when the other user took the token in between

    with ThreadPoolExecutor(max_workers=16) as pool:
        codes = list(pool.map(act, plan))
    assert all(c < 500 for c in codes), codes
    assert set(codes) <= {200, 201, 204, 404}, codes
    rows = db.fetch("SELECT token, user_id, retired_at FROM devices WHERE token = ANY($1)",
                    tokens)
    assert sorted(r["token"] for r in rows) == sorted(tokens)  # one row per token, each used
    holders = {u["user_id"] for u in users}
    assert all(str(r["user_id"]) in holders for r in rows)
    for u in users:
        active = {r["token"][-4:] for r in rows
                  if str(r["user_id"]) == u["user_id"] and r["retired_at"] is None}
        assert {d["token_last4"] for d in listed(api, u)} == active
