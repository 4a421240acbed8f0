"""GET/PUT /users/me/notification-preferences: the whole document replaced, each bad field
named and nothing stored, the caller's own only; and clinic defaults refusing unknown kinds."""

from __future__ import annotations

from typing import Any

import pytest

from domain.notifications.models import DEFAULT_CHANNELS, KINDS

PATH = "/users/me/notification-preferences"


@pytest.fixture(scope="module")
def people(clinic_factory, member_factory) -> dict[str, Any]:
    clinic = clinic_factory()
    people = {name: member_factory(clinic["id"], role, tag=f"prefs-{name}")
              for name, role in (("pat", "PATIENT"), ("ned", "NURSE"))}
    people["clinic"] = clinic
    return people


def stored(db, user_id: str) -> dict[str, Any] | None:
    rows = db.fetch("SELECT channels::text, quiet_start, quiet_end, timezone, locale, updated_at "
                    "FROM notification_preferences WHERE user_id = $1::uuid", user_id)
    return rows[0] if rows else None


def test_nothing_chosen_shows_the_defaults_and_every_kind(api, member_factory, people):
    fresh = member_factory(people["clinic"]["id"], "PATIENT", tag="prefs-fresh")
    r = api.as_(fresh["token"], "GET", PATH)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["channels"] == {} and body["quiet_hours"] is None
    assert body["timezone"] is None and body["locale"] is None
    assert body["kinds"] == list(KINDS)
    assert body["effective"] == {k: list(v) for k, v in DEFAULT_CHANNELS.items()}


def test_put_replaces_the_whole_document(api, db, people):
    pat = people["pat"]
    doc = {"channels": {"appointment.booked": ["push", "in_app"], "queue.called": []},
           "quiet_hours": {"start": "22:00", "end": "07:30"}, "timezone": "Asia/Kolkata",
           "locale": "hi-IN"}
    r = api.as_(pat["token"], "PUT", PATH, json=doc)
    assert r.status_code == 200, r.text
    body = r.json()
    assert {k: body[k] for k in doc} == doc
    assert body["effective"]["appointment.booked"] == ["push", "in_app"]
    assert body["effective"]["queue.called"] == []  # turned off
    assert body["effective"]["appointment.reminder"] == list(DEFAULT_CHANNELS["appointment.reminder"])
    assert api.as_(pat["token"], "GET", PATH).json() == body
    row = stored(db, pat["user_id"])
    assert row and str(row["quiet_start"]) == "22:00:00" and row["locale"] == "hi-IN"
    # the whole document: what is left out goes back to nothing chosen
    r = api.as_(pat["token"], "PUT", PATH, json={"channels": {"queue.next": ["push"]}})
    assert r.status_code == 200, r.text
    assert r.json()["channels"] == {"queue.next": ["push"]}
    assert r.json()["quiet_hours"] is None and r.json()["timezone"] is None
    assert r.json()["locale"] is None
    row = stored(db, pat["user_id"])
    assert row and row["quiet_start"] is None and row["locale"] is None
    assert db.fetch("SELECT count(*) AS n FROM notification_preferences WHERE user_id = $1::uuid",
                    pat["user_id"])[0]["n"] == 1  # an upsert: one row however often


def test_each_is_the_callers_own(api, people):
    pat, ned = people["pat"], people["ned"]
    r = api.as_(ned["token"], "PUT", PATH, json={"channels": {"staff.appointment_booked": ["email"]},
                                                 "locale": "en"})
    assert r.status_code == 200, r.text
    assert "staff.appointment_booked" not in api.as_(pat["token"], "GET", PATH).json()["channels"]
    assert api.as_(ned["token"], "GET", PATH).json()["channels"] == {
        "staff.appointment_booked": ["email"]}
    assert api.as_(None, "GET", PATH).status_code == 401
    assert api.as_(None, "PUT", PATH, json={}).status_code == 401


def test_a_put_is_audited(api, db, people):
    ned = people["ned"]
    r = api.as_(ned["token"], "PUT", PATH, json={"channels": {"queue.next": ["push"]}})
    assert r.status_code == 200, r.text
    rows = db.fetch("""SELECT detail FROM audit_log WHERE actor_id = $1::uuid
                         AND action = 'notification_preferences:update' ORDER BY id DESC LIMIT 1""",
                    ned["user_id"])
    assert rows and '"queue.next"' in str(rows[0]["detail"])


BAD = [
    ("unknown_kind", {"channels": {"appointment.exploded": ["email"]}},
     "channels.appointment.exploded"),
    ("unknown_channel", {"channels": {"appointment.booked": ["email", "fax"]}},
     "channels.appointment.booked.1"),
    ("channel_twice", {"channels": {"appointment.booked": ["push", "push"]}},
     "channels.appointment.booked.1"),
    ("channels_not_a_map", {"channels": ["email"]}, "channels"),
    ("channel_not_a_string", {"channels": {"appointment.booked": [5]}}, "channels"),
    ("bad_timezone", {"timezone": "Mars/Olympus_Mons"}, "timezone"),
    ("localtime_is_no_zone", {"timezone": "localtime"}, "timezone"),
    ("bad_locale", {"locale": "english please"}, "locale"),
    ("locale_too_long", {"locale": "en-" + "-".join(["abcdefgh"] * 5)}, "locale"),
    ("quiet_equal", {"quiet_hours": {"start": "22:00", "end": "22:00"}}, "quiet_hours.end"),
    ("quiet_not_hhmm", {"quiet_hours": {"start": "10pm", "end": "07:00"}}, "quiet_hours.start"),
    ("quiet_hour_24", {"quiet_hours": {"start": "21:00", "end": "24:00"}}, "quiet_hours.end"),
    ("quiet_missing_end", {"quiet_hours": {"start": "21:00"}}, "quiet_hours.end"),
    ("unknown_field", {"user_id": "00000000-0000-0000-0000-000000000000"}, "user_id"),
]


@pytest.mark.parametrize(("body", "field"), [pytest.param(b, f, id=i) for i, b, f in BAD])
def test_a_bad_field_is_named_and_nothing_is_stored(api, db, people, body, field):
    ned = people["ned"]
    before = stored(db, ned["user_id"])
    r = api.as_(ned["token"], "PUT", PATH, json=body)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert field in [e["field"] for e in r.json()["errors"]], r.json()
    assert stored(db, ned["user_id"]) == before


def test_clinic_defaults_refuse_an_unknown_kind(api, sa_token, clinic_factory):
    clinic = clinic_factory()
    path = f"/clinics/{clinic['id']}"
    ok = {"settings": {"notification_channels": {"appointment.booked": ["whatsapp", "in_app"]}}}
    r = api.as_(sa_token, "PATCH", path, json=ok)
    assert r.status_code == 200, r.text
    assert r.json()["settings"]["notification_channels"] == {
        "appointment.booked": ["whatsapp", "in_app"]}
    r = api.as_(sa_token, "PATCH", path,
                json={"settings": {"notification_channels": {"appointment.eaten": ["email"]}}})
    assert r.status_code == 400, r.text
    assert "settings.notification_channels.appointment.eaten" in [
        e["field"] for e in r.json()["errors"]]
    r = api.as_(sa_token, "PATCH", path,
                json={"settings": {"notification_channels": {"appointment.booked": ["fax"]}}})
    assert r.status_code == 400, r.text
    r = api.as_(sa_token, "PATCH", path, json={
        "settings": {"notification_channels": {"appointment.booked": ["email", "email"]}}})
    assert r.status_code == 400, r.text
    assert "settings.notification_channels.appointment.booked.1" in [
        e["field"] for e in r.json()["errors"]]
    assert api.as_(sa_token, "GET", path).json()["settings"]["notification_channels"] == {
        "appointment.booked": ["whatsapp", "in_app"]}  # refused whole
