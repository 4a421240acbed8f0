"""A clinic cannot enrol another clinic's people: adding an email that has an account only
invites that person, and the answer is the same whether or not the account exists (no name, no
user id). The person accepts or declines; until they accept there is no membership."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import httpx
import pytest

from tests.conftest import unique_email
from tests.realtime_client import Recorder

WEEK = [{"weekday": d, "start": "08:00", "end": "20:00"} for d in range(7)]
RECEIPT_KEYS = {"invitation_id", "clinic_id", "email", "role", "location_id", "status",
                "expires_at"}


@pytest.fixture(scope="module")
def clinics(clinic_factory, member_factory) -> tuple[dict[str, Any], dict[str, Any]]:
    """A, where the doctor works, and B, whose staff would like him."""
    a, b = clinic_factory(), clinic_factory()
    a["doctor"] = member_factory(a["id"], "DOCTOR", tag="inv-doc")
    b["admin"] = member_factory(b["id"], "CLINIC_ADMIN", tag="inv-b-admin")
    b["receptionist"] = member_factory(b["id"], "RECEPTIONIST", tag="inv-b-rec")
    return a, b


def member_ids(db, clinic_id: str) -> set[str]:
    return {str(r["user_id"]) for r in
            db.fetch("SELECT user_id FROM memberships WHERE clinic_id = $1::uuid", clinic_id)}


def invite(api, token: str, clinic_id: str, email: str, role: str = "DOCTOR",
           **more: Any) -> dict[str, Any]:
    r = api.as_(token, "POST", f"/clinics/{clinic_id}/members",
                json={"email": email, "name": "Whoever", "role": role, **more})
    assert r.status_code == 202, r.text
    body: dict[str, Any] = r.json()
    assert set(body) == RECEIPT_KEYS, body
    assert body["status"] == "pending" and body["clinic_id"] == clinic_id
    return body


def assert_discloses_nothing(body: dict[str, Any], person: dict[str, Any]) -> None:
    text = json.dumps(body)
    assert person["user_id"] not in text and person["name"] not in text, body


def test_another_clinic_cannot_enrol_an_existing_doctor(api, db, clinics):
    a, b = clinics
    doctor = a["doctor"]
    body = invite(api, b["admin"]["token"], b["id"], doctor["email"])
    assert_discloses_nothing(body, doctor)
    assert doctor["user_id"] not in member_ids(db, b["id"])
    r = api.as_(b["admin"]["token"], "PUT", f"/clinics/{b['id']}/doctors/{doctor['user_id']}/schedule",
                json={"rules": WEEK, "slot_minutes": 30})
    assert r.status_code == 404, r.text


def test_a_receptionist_adding_an_existing_account_as_patient_only_invites(api, db, clinics):
    a, b = clinics
    doctor = a["doctor"]
    body = invite(api, b["receptionist"]["token"], b["id"], doctor["email"], role="PATIENT")
    assert_discloses_nothing(body, doctor)
    assert body["role"] == "PATIENT"
    assert doctor["user_id"] not in member_ids(db, b["id"])


def test_the_answer_is_the_same_whether_or_not_the_account_exists(api, db, clinics,
                                                                   member_factory):
    a, b = clinics
    doctor = member_factory(a["id"], "DOCTOR", tag="inv-same")
    nobody = unique_email("nobody")
    answers = {}
    for label, email in (("existing", doctor["email"]), ("unknown", nobody),
                         ("already_member", b["receptionist"]["email"])):
        r = api.as_(b["admin"]["token"], "POST", f"/clinics/{b['id']}/members",
                    json={"email": email, "name": "Whoever", "role": "NURSE"})
        answers[label] = r
    assert {r.status_code for r in answers.values()} == {202}, {
        k: r.text for k, r in answers.items()}
    shapes = {k: {f: type(v).__name__ for f, v in r.json().items()} for k, r in answers.items()}
    assert shapes["existing"] == shapes["unknown"] == shapes["already_member"]
    assert_discloses_nothing(answers["existing"].json(), doctor)
    assert_discloses_nothing(answers["already_member"].json(), b["receptionist"])
    assert set(answers["existing"].headers) == set(answers["unknown"].headers)
    # no account appears for the unknown address, and nobody joins B
    assert db.fetch("SELECT 1 FROM users WHERE email = $1", nobody) == []
    assert doctor["user_id"] not in member_ids(db, b["id"])
    # one event in B's sequence either way (its numbering tells nothing), the same envelope
    # for the inviter; the invitee's own room is added only for an account that exists
    audiences = {k: db.fetch("""SELECT audience FROM events WHERE type = 'invitation.created'
                                AND data->>'invitation_id' = $1""", r.json()["invitation_id"])
                 for k, r in answers.items()}
    inviter = f"user:{b['admin']['user_id']}"
    assert [sorted(r["audience"]) for r in audiences["unknown"]] == [[inviter]]
    assert [sorted(r["audience"]) for r in audiences["existing"]] == [
        sorted([inviter, f"user:{doctor['user_id']}"])]
    # an invitation to someone already a member resolves harmlessly: the role stays theirs
    rec = b["receptionist"]
    r = api.as_(rec["token"], "POST",
                f"/users/me/invitations/{answers['already_member'].json()['invitation_id']}/accept")
    assert r.status_code == 200, r.text
    assert (r.json()["clinic_id"], r.json()["role"]) == (b["id"], "RECEPTIONIST")


def test_asking_again_renews_the_pending_invitation(api, db, clinics):
    a, b = clinics
    for email in (a["doctor"]["email"], unique_email("twice")):
        first = invite(api, b["admin"]["token"], b["id"], email, "NURSE")
        again = invite(api, b["admin"]["token"], b["id"], email, "PATIENT")
        assert again["invitation_id"] == first["invitation_id"] and again["role"] == "PATIENT"
        assert db.fetch("""SELECT role FROM invitations WHERE clinic_id = $1::uuid
                           AND email = $2 AND status = 'pending'""", b["id"], email) == [
            {"role": "PATIENT"}]


def test_a_clinic_never_sets_a_password_existing_account_or_not(api, db, clinics):
    a, b = clinics
    for email in (a["doctor"]["email"], unique_email("pw")):
        r = api.as_(b["admin"]["token"], "POST", f"/clinics/{b['id']}/members",
                    json={"email": email, "name": "Whoever", "role": "NURSE",
                          "password": "attacker-chosen-1"})
        assert r.status_code == 400, r.text
        assert [e["field"] for e in r.json()["errors"]] == ["password"]
    bad = api.http.post("/auth/login", json={"email": a["doctor"]["email"],
                                             "password": "attacker-chosen-1"})
    assert bad.status_code == 401


def test_the_invitee_sees_the_invitation_and_is_told_live(server, api, clinic_factory,
                                                          member_factory):
    a, b = clinic_factory(), clinic_factory("Clinic B Visible Name")
    person = member_factory(a["id"], "NURSE", tag="inv-live")
    b_admin = member_factory(b["id"], "CLINIC_ADMIN", tag="inv-live-admin")

    async def scenario() -> dict[str, Any]:
        rec = Recorder(server.base_url)
        await rec.connect(person["token"])
        try:
            body = await asyncio.to_thread(invite, api, b_admin["token"], b["id"],
                                           person["email"], "NURSE")
            await rec.wait_for(lambda: bool(rec.named("invitation.created")))
            envelope = rec.named("invitation.created")[0]
            assert envelope["clinic_id"] == b["id"]
            assert envelope["data"] == {"invitation_id": body["invitation_id"],
                                        "clinic_id": b["id"], "role": "NURSE"}
            return body
        finally:
            await rec.close()

    body = asyncio.run(scenario())
    r = api.as_(person["token"], "GET", "/users/me/invitations")
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [(i["id"], i["clinic_id"], i["clinic_name"], i["role"]) for i in items] == [
        (body["invitation_id"], b["id"], "Clinic B Visible Name", "NURSE")]
    assert set(items[0]) == {"id", "clinic_id", "clinic_name", "role", "location_id",
                             "invited_at", "expires_at"}
    # the inviter sees nothing of it in their own list
    mine = api.as_(b_admin["token"], "GET", "/users/me/invitations")
    assert mine.status_code == 200 and mine.json()["items"] == []


def test_accepting_creates_the_membership(api, db, clinic_factory, member_factory):
    a, b = clinic_factory(), clinic_factory()
    doctor = member_factory(a["id"], "DOCTOR", tag="inv-acc")
    stranger = member_factory(a["id"], "NURSE", tag="inv-stranger")
    b_admin = member_factory(b["id"], "CLINIC_ADMIN", tag="inv-acc-admin")
    body = invite(api, b_admin["token"], b["id"], doctor["email"], location_id=b["locations"][0]["id"])
    iid = body["invitation_id"]

    r = api.as_(stranger["token"], "POST", f"/users/me/invitations/{iid}/accept")
    assert r.status_code == 404, r.text
    assert doctor["user_id"] not in member_ids(db, b["id"])

    r = api.as_(doctor["token"], "POST", f"/users/me/invitations/{iid}/accept")
    assert r.status_code == 200, r.text
    member = r.json()
    assert (member["user_id"], member["clinic_id"], member["role"], member["location_id"]) == (
        doctor["user_id"], b["id"], "DOCTOR", b["locations"][0]["id"])
    assert doctor["user_id"] in member_ids(db, b["id"])
    audit = db.fetch("""SELECT actor_id::text, detail::text FROM audit_log
                        WHERE action = 'members:create' AND resource_id = $1
                          AND clinic_id = $2::uuid AND outcome = 'allowed'""",
                     doctor["user_id"], b["id"])
    assert [(r["actor_id"], json.loads(r["detail"])["via_invitation"]) for r in audit] == [
        (doctor["user_id"], iid)]
    events = db.fetch("""SELECT data::text FROM events WHERE clinic_id = $1::uuid
                         AND type = 'member.added'""", b["id"])
    assert any(json.loads(e["data"])["user_id"] == doctor["user_id"] for e in events)

    r = api.as_(b_admin["token"], "PUT", f"/clinics/{b['id']}/doctors/{doctor['user_id']}/schedule",
                json={"rules": WEEK, "slot_minutes": 30})
    assert r.status_code == 200, r.text
    again = api.as_(doctor["token"], "POST", f"/users/me/invitations/{iid}/accept")
    assert again.status_code == 409, again.text
    listed = api.as_(doctor["token"], "GET", "/users/me/invitations").json()["items"]
    assert listed == []


def test_an_accepted_invitation_opens_the_clinic_to_the_live_socket(server, api, clinic_factory,
                                                                     member_factory):
    """No reconnect needed: the socket that accepted joins the new clinic's rooms its role
    allows, and keeps its other clinic's."""
    a, b = clinic_factory(), clinic_factory()
    nurse = member_factory(a["id"], "NURSE", tag="inv-live-accept")
    a_admin = member_factory(a["id"], "CLINIC_ADMIN", tag="inv-live-a")
    b_admin = member_factory(b["id"], "CLINIC_ADMIN", tag="inv-live-b")

    async def scenario() -> None:
        rec = Recorder(server.base_url)
        await rec.connect(nurse["token"])
        try:
            body = await asyncio.to_thread(invite, api, b_admin["token"], b["id"],
                                           nurse["email"], "NURSE")
            await rec.wait_for(lambda: bool(rec.named("invitation.created")))
            r = await asyncio.to_thread(api.as_, nurse["token"], "POST",
                                        f"/users/me/invitations/{body['invitation_id']}/accept")
            assert r.status_code == 200, r.text
            await rec.wait_for(lambda: bool(rec.named("member.added")))
            for clinic, admin in ((b, b_admin), (a, a_admin)):
                r = await asyncio.to_thread(api.as_, admin["token"], "PATCH",
                                            f"/clinics/{clinic['id']}", json={"name": "Renamed"})
                assert r.status_code == 200, r.text
                await rec.wait_for(lambda c=clinic: any(
                    e["clinic_id"] == c["id"] for e in rec.named("clinic.updated")))
            assert not rec.disconnected.is_set()
        finally:
            await rec.close()

    asyncio.run(scenario())


def test_declining_leaves_no_membership(api, db, clinic_factory, member_factory):
    a, b = clinic_factory(), clinic_factory()
    doctor = member_factory(a["id"], "DOCTOR", tag="inv-dec")
    b_admin = member_factory(b["id"], "CLINIC_ADMIN", tag="inv-dec-admin")
    iid = invite(api, b_admin["token"], b["id"], doctor["email"])["invitation_id"]
    r = api.as_(doctor["token"], "POST", f"/users/me/invitations/{iid}/decline")
    assert r.status_code == 204, r.text
    assert doctor["user_id"] not in member_ids(db, b["id"])
    assert db.fetch("SELECT status FROM invitations WHERE id = $1::uuid", iid) == [
        {"status": "declined"}]
    assert db.fetch("""SELECT 1 FROM audit_log WHERE action = 'invitations:decline'
                       AND resource_id = $1 AND actor_id = $2::uuid""", iid, doctor["user_id"])
    r = api.as_(b_admin["token"], "PUT", f"/clinics/{b['id']}/doctors/{doctor['user_id']}/schedule",
                json={"rules": WEEK, "slot_minutes": 30})
    assert r.status_code == 404, r.text
    late = api.as_(doctor["token"], "POST", f"/users/me/invitations/{iid}/accept")
    assert late.status_code == 409, late.text
    assert doctor["user_id"] not in member_ids(db, b["id"])


def test_an_expired_invitation_cannot_be_accepted(api, db, clinic_factory, member_factory):
    a, b = clinic_factory(), clinic_factory()
    person = member_factory(a["id"], "NURSE", tag="inv-exp")
    b_admin = member_factory(b["id"], "CLINIC_ADMIN", tag="inv-exp-admin")
    iid = invite(api, b_admin["token"], b["id"], person["email"], "NURSE")["invitation_id"]
    # time travel for one row: the invitation was sent long ago
    db.fetch("""UPDATE invitations SET created_at = now() - interval '30 days',
                expires_at = now() - interval '1 day' WHERE id = $1::uuid RETURNING id""", iid)
    assert api.as_(person["token"], "GET", "/users/me/invitations").json()["items"] == []
    r = api.as_(person["token"], "POST", f"/users/me/invitations/{iid}/accept")
    assert r.status_code == 409, r.text
    assert person["user_id"] not in member_ids(db, b["id"])
    # asking again makes a new one; the old one is marked expired
    fresh = invite(api, b_admin["token"], b["id"], person["email"], "NURSE")["invitation_id"]
    assert fresh != iid
    assert db.fetch("SELECT status FROM invitations WHERE id = $1::uuid", iid) == [
        {"status": "expired"}]
    assert [i["id"] for i in api.as_(person["token"], "GET", "/users/me/invitations").json()[
        "items"]] == [fresh]


def test_an_invitation_to_an_unknown_email_is_not_claimed_by_registering(
        api, db, clinic_factory, member_factory):
    """No email verification exists: whoever registers the address must not take the role."""
    b = clinic_factory()
    open_clinic = clinic_factory(allow_self_registration=True)
    b_admin = member_factory(b["id"], "CLINIC_ADMIN", tag="inv-claim-admin")
    email = unique_email("future")
    iid = invite(api, b_admin["token"], b["id"], email, "DOCTOR")["invitation_id"]
    password = "violet-harbour-lantern-92"
    r = api.http.post("/auth/register", json={"clinic_id": open_clinic["id"], "email": email,
                                              "password": password, "name": "Squatter"})
    assert r.status_code == 202, r.text
    token = api.token(email, password)
    assert api.as_(token, "GET", "/users/me/invitations").json()["items"] == []
    assert api.as_(token, "POST", f"/users/me/invitations/{iid}/accept").status_code == 404
    assert api.as_(token, "GET", "/users/me").json()["id"] not in member_ids(db, b["id"])


def test_a_super_admin_links_directly_and_it_is_audited(api, db, sa_token, clinic_factory,
                                                        member_factory):
    a, b = clinic_factory(), clinic_factory()
    doctor = member_factory(a["id"], "DOCTOR", tag="inv-sa")
    r = api.as_(sa_token, "POST", f"/clinics/{b['id']}/members",
                json={"email": doctor["email"], "name": "ignored", "role": "DOCTOR"})
    assert r.status_code == 201, r.text
    assert r.json()["user_id"] == doctor["user_id"]
    audit = db.fetch("""SELECT detail::text FROM audit_log WHERE action = 'members:create'
                        AND resource_id = $1 AND clinic_id = $2::uuid""",
                     doctor["user_id"], b["id"])
    assert [json.loads(x["detail"]).get("direct_link") for x in audit] == [True]
    fresh = api.as_(sa_token, "POST", f"/clinics/{b['id']}/members",
                    json={"email": unique_email("sa-new"), "name": "New", "role": "NURSE"})
    assert fresh.status_code == 201, fresh.text
    audit = db.fetch("""SELECT detail::text FROM audit_log WHERE action = 'members:create'
                        AND resource_id = $1""", fresh.json()["user_id"])
    assert [json.loads(x["detail"]).get("direct_link") for x in audit] == [None]


def test_the_clinic_lists_what_it_asked_and_nothing_about_the_person(api, clinic_factory,
                                                                      member_factory):
    a, b = clinic_factory(), clinic_factory()
    person = member_factory(a["id"], "NURSE", tag="inv-list")
    b_admin = member_factory(b["id"], "CLINIC_ADMIN", tag="inv-list-admin")
    known = invite(api, b_admin["token"], b["id"], person["email"], "NURSE")
    unknown = invite(api, b_admin["token"], b["id"], unique_email("inv-list"), "NURSE")
    r = api.as_(b_admin["token"], "GET", f"/clinics/{b['id']}/invitations")
    assert r.status_code == 200, r.text
    items = {i["id"]: i for i in r.json()["items"]}
    assert set(items) == {known["invitation_id"], unknown["invitation_id"]}
    assert_discloses_nothing(r.json(), person)
    shape = {k: (v is None) for k, v in items[known["invitation_id"]].items() if k != "email"}
    assert shape == {k: (v is None) for k, v in items[unknown["invitation_id"]].items()
                     if k != "email"}
    assert {i["status"] for i in items.values()} == {"pending"}
    # another clinic's staff see none of it
    r = api.as_(person["token"], "GET", f"/clinics/{b['id']}/invitations")
    assert r.status_code == 404, r.text


def test_the_clinic_may_revoke_a_pending_invitation(api, db, clinic_factory, member_factory):
    a, b = clinic_factory(), clinic_factory()
    person = member_factory(a["id"], "NURSE", tag="inv-rev")
    b_admin = member_factory(b["id"], "CLINIC_ADMIN", tag="inv-rev-admin")
    b_rec = member_factory(b["id"], "RECEPTIONIST", tag="inv-rev-rec")
    a_admin = member_factory(a["id"], "CLINIC_ADMIN", tag="inv-rev-a-admin")
    iid = invite(api, b_admin["token"], b["id"], person["email"], "NURSE")["invitation_id"]
    path = f"/clinics/{b['id']}/invitations/{iid}/revoke"
    assert api.as_(b_rec["token"], "POST", path).status_code == 403  # a role above theirs
    assert api.as_(a_admin["token"], "POST", path).status_code == 404  # another clinic
    assert api.as_(a_admin["token"], "POST",
                   f"/clinics/{a['id']}/invitations/{iid}/revoke").status_code == 404
    r = api.as_(b_admin["token"], "POST", path)
    assert r.status_code == 204, r.text
    assert api.as_(b_admin["token"], "POST", path).status_code == 409
    assert api.as_(person["token"], "GET", "/users/me/invitations").json()["items"] == []
    r = api.as_(person["token"], "POST", f"/users/me/invitations/{iid}/accept")
    assert r.status_code == 409, r.text
    assert person["user_id"] not in member_ids(db, b["id"])
    listed = api.as_(b_admin["token"], "GET", f"/clinics/{b['id']}/invitations").json()["items"]
    assert [(i["id"], i["status"]) for i in listed] == [(iid, "revoked")]


def test_racing_answers_settle_an_invitation_once(server, api, db, clinic_factory,
                                                   member_factory):
    """Accept, decline and revoke fired together at one invitation, over several rounds: exactly
    one wins, the rest get 409, nothing 5xx, and a membership exists exactly when accept won."""
    b = clinic_factory()
    b_admin = member_factory(b["id"], "CLINIC_ADMIN", tag="inv-race-admin")
    rng = random.Random(9)

    async def fire(calls: list[tuple[str, str]]) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.base_url + "/api/v1", timeout=60) as c:
            return await asyncio.gather(*(c.post(path, headers={"Authorization": f"Bearer {tok}"})
                                          for tok, path in calls))

    for round_ in range(6):
        person = member_factory(clinic_factory()["id"], "NURSE", tag=f"inv-race-{round_}")
        iid = invite(api, b_admin["token"], b["id"], person["email"], "NURSE")["invitation_id"]
        mine = f"/users/me/invitations/{iid}"
        kinds = [rng.choice(["accept", "decline", "revoke"]) for _ in range(6)]
        calls = [(b_admin["token"], f"/clinics/{b['id']}/invitations/{iid}/revoke") if k == "revoke"
                 else (person["token"], f"{mine}/{k}") for k in kinds]
        answers = asyncio.run(fire(calls))
        codes = [r.status_code for r in answers]
        assert all(code < 500 for code in codes), codes
        winners = [k for k, r in zip(kinds, answers, strict=True) if r.status_code < 300]
        assert len(winners) == 1 and codes.count(409) == len(codes) - 1, (kinds, codes)
        assert (person["user_id"] in member_ids(db, b["id"])) is (winners[0] == "accept")
