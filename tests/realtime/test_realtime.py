"""The live backbone end to end: REST write -> outbox -> relay -> hub -> the right sockets."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import socketio

from tests import servers
from tests.conftest import unique_email
from tests.realtime_client import Recorder


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def two_clinics(clinic_factory, member_factory):
    a, b = clinic_factory(), clinic_factory()
    for c in (a, b):
        c["admin"] = member_factory(c["id"], "CLINIC_ADMIN", tag="rt-admin")
        c["patient"] = member_factory(c["id"], "PATIENT", tag="rt-patient")
    return a, b


def rest(api, *args, **kw):
    return asyncio.to_thread(api.as_, *args, **kw)


def test_a_write_reaches_the_right_sockets_only(server, api, two_clinics, member_factory):
    a, b = two_clinics
    subject = member_factory(b["id"], "PATIENT", tag="subject")  # lives in B, joins A below

    async def scenario() -> None:
        staff_a, staff_b = Recorder(server.base_url), Recorder(server.base_url)
        other_patient_a, subject_socket = Recorder(server.base_url), Recorder(server.base_url)
        await staff_a.connect(a["admin"]["token"])
        await staff_b.connect(b["admin"]["token"])
        await other_patient_a.connect(a["patient"]["token"])
        await subject_socket.connect(subject["token"])
        root = await asyncio.to_thread(api.token, "root@carewire.test", "root-password-1")
        # a SUPER_ADMIN links an existing account directly (clinic staff only invite)
        r = await rest(api, root, "POST", f"/clinics/{a['id']}/members",
                       json={"email": subject["email"], "name": "x", "role": "PATIENT"})
        assert r.status_code == 201, r.text

        def added(rec: Recorder) -> list[Any]:
            return [d for d in rec.named("member.added") if d["data"]["user_id"] == subject["user_id"]]

        await staff_a.wait_for(lambda: bool(added(staff_a)))
        await subject_socket.wait_for(lambda: bool(added(subject_socket)))
        envelope = added(staff_a)[0]
        assert set(envelope) == {"id", "seq", "clinic_id", "type", "category", "priority",
                                 "occurred_at", "data"}
        assert envelope["clinic_id"] == a["id"] and envelope["type"] == "member.added"
        assert set(envelope["data"]) == {"user_id", "role", "location_id"}  # no names, no PHI

        # Markers each negative client can see, sent after the event above was emitted:
        # a socket receives in order, so once the marker is in, the event never will be.
        await rest(api, b["admin"]["token"], "PATCH", f"/clinics/{b['id']}", json={"name": b["name"]})
        await staff_b.wait_for(lambda: bool(staff_b.named("clinic.updated")))
        marker = await rest(api, root, "POST", f"/clinics/{a['id']}/members",
                            json={"email": a["patient"]["email"], "name": "x", "role": "PATIENT"})
        assert marker.status_code == 409  # refused writes emit nothing either
        r = await rest(api, root, "POST", f"/clinics/{b['id']}/members",
                       json={"email": a["patient"]["email"], "name": "x", "role": "PATIENT"})
        assert r.status_code == 201
        await other_patient_a.wait_for(lambda: bool(other_patient_a.named("member.added")))
        assert added(staff_b) == []
        assert [d["data"]["user_id"] for d in other_patient_a.named("member.added")] == [
            a["patient"]["user_id"]]
        for rec in (staff_a, staff_b, other_patient_a, subject_socket):
            await rec.close()

    run(scenario())


def test_two_gateway_processes_share_events(server, env, api, two_clinics):
    a, _ = two_clinics
    second = servers.Server(env)
    second.start()
    try:
        async def scenario() -> None:
            on_b = Recorder(second.base_url)
            await on_b.connect(a["admin"]["token"])
            name = f"Renamed {uuid.uuid4().hex[:6]}"
            r = await rest(api, a["admin"]["token"], "PATCH", f"/clinics/{a['id']}",
                           json={"name": name})
            assert r.status_code == 200
            await on_b.wait_for(lambda: bool(on_b.named("clinic.updated")))
            assert on_b.named("clinic.updated")[0]["clinic_id"] == a["id"]
            await on_b.close()

        run(scenario())
    finally:
        second.stop()


def test_resume_replays_exactly_what_was_missed(server, api, db, two_clinics):
    a, _ = two_clinics
    token = a["admin"]["token"]

    async def scenario() -> None:
        head = (await rest(api, token, "GET", f"/clinics/{a['id']}/events",
                           params={"after": 0, "limit": 1})).json()["last_seq"]
        for i in range(100):
            r = await rest(api, token, "PATCH", f"/clinics/{a['id']}", json={"name": f"N{i}"})
            assert r.status_code == 200
        back = Recorder(server.base_url)
        await back.connect(token, resume={a["id"]: head})
        await back.wait_for(lambda: len(back.named("clinic.updated")) >= 100)
        seqs = [d["seq"] for d in back.named("clinic.updated")]
        assert seqs == list(range(head + 1, head + 101))
        # A live event after the replay arrives once, after the replayed ones.
        await rest(api, token, "PATCH", f"/clinics/{a['id']}", json={"name": "live"})
        await back.wait_for(lambda: len(back.named("clinic.updated")) == 101)
        assert [d["seq"] for d in back.named("clinic.updated")][-1] == head + 101
        # The same log over REST.
        page = (await rest(api, token, "GET", f"/clinics/{a['id']}/events",
                           params={"after": head, "limit": 200})).json()
        assert [e["seq"] for e in page["items"]] == list(range(head + 1, head + 102))
        await back.close()

        # Past the retention window: resync_required.
        await asyncio.to_thread(db.fetch, "DELETE FROM events WHERE clinic_id = $1 AND seq <= $2",
                                uuid.UUID(a["id"]), head + 50)
        late = Recorder(server.base_url)
        await late.connect(token, resume={a["id"]: head})
        await late.wait_for(lambda: bool(late.named("resync_required")))
        assert late.named("resync_required")[0]["clinic_id"] == a["id"]
        assert late.named("clinic.updated") == []
        ack = await late.call("resume", {"clinic_id": a["id"], "after_seq": head + 60})
        assert ack["ok"] and ack["data"]["replayed"] == 41
        await late.close()

    run(scenario())


def test_patients_replay_only_their_own_events(api, clinic_factory, member_factory):
    a = clinic_factory()
    patient = member_factory(a["id"], "PATIENT", tag="own")
    member_factory(a["id"], "PATIENT", tag="someone-else")
    page = api.as_(patient["token"], "GET", f"/clinics/{a['id']}/events",
                   params={"after": 0, "limit": 200}).json()
    assert page["resync_required"] is False
    assert [(e["type"], e["data"]["user_id"]) for e in page["items"]] == [
        ("member.added", patient["user_id"])]
    assert page["last_seq"] > page["items"][0]["seq"]  # the clinic has more it does not see


def test_refusals(server, api, db, sa_token, two_clinics):
    a, b = two_clinics

    async def scenario() -> None:
        evil = Recorder(server.base_url)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await evil.connect(a["admin"]["token"], origin="https://evil.example")
        assert not evil.sio.connected

        nobody = Recorder(server.base_url)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await nobody.connect("not-a-token")
        assert nobody.connect_error["data"]["code"] == "unauthenticated"

        admin = Recorder(server.base_url)
        await admin.connect(a["admin"]["token"], origin="http://127.0.0.1:8000")
        denied = await admin.call("subscribe", {"room": f"clinic:{b['id']}:staff"})
        assert denied == {"ok": False, "error": {"code": "not_found",
                                                 "message": f"no room clinic:{b['id']}:staff for you"}}
        assert (await admin.call("subscribe", {"room": f"user:{a['patient']['user_id']}"}))[
            "ok"] is False
        denials = await asyncio.to_thread(
            db.fetch, "SELECT resource_id, outcome, actor_id::text FROM audit_log "
            "WHERE action = 'socket:subscribe' AND actor_id = $1::uuid ORDER BY id",
            a["admin"]["user_id"])
        assert [(d["resource_id"], d["outcome"]) for d in denials] == [
            (f"clinic:{b['id']}:staff", "denied"), (f"user:{a['patient']['user_id']}", "denied")]
        assert (await admin.call("subscribe", "nope"))["error"]["code"] == "invalid"
        assert (await admin.call("resume", {"clinic_id": b["id"], "after_seq": 0}))["error"][
            "code"] == "not_found"

        patient = Recorder(server.base_url)
        await patient.connect(a["patient"]["token"])
        staff_room = await patient.call("subscribe", {"room": f"clinic:{a['id']}:staff"})
        assert staff_room["ok"] is False

        root = Recorder(server.base_url)
        await root.connect(sa_token)
        assert (await root.call("subscribe", {"room": f"clinic:{b['id']}:staff"}))["ok"] is True
        for rec in (admin, patient, root):
            await rec.close()

    run(scenario())


def test_flooding_is_throttled_without_hurting_others(server, two_clinics):
    a, _ = two_clinics

    async def scenario() -> None:
        flood, calm = Recorder(server.base_url), Recorder(server.base_url)
        await flood.connect(a["admin"]["token"])
        await calm.connect(a["patient"]["token"])
        answers = await asyncio.gather(*(flood.call("unsubscribe", {"room": "x"})
                                         for _ in range(80)))
        codes = [ans["error"]["code"] for ans in answers]
        assert "rate_limited" in codes
        ok = await calm.call("resume", {"clinic_id": a["id"], "after_seq": 0})
        assert ok["ok"] is True
        await flood.close()
        await calm.close()

    run(scenario())


def test_oversized_messages_close_only_that_socket(server, two_clinics):
    a, _ = two_clinics

    async def scenario() -> None:
        big, other = Recorder(server.base_url), Recorder(server.base_url)
        await big.connect(a["admin"]["token"])
        await other.connect(a["admin"]["token"])
        await big.sio.emit("subscribe", {"room": "x" * 200_000})
        await asyncio.wait_for(big.disconnected.wait(), 10)
        assert (await other.call("unsubscribe", {"room": "x"}))["error"]["code"] == "not_found"
        await other.close()

    run(scenario())


def test_logout_closes_sockets_and_removal_leaves_the_clinics_rooms(
        server, api, sa_token, clinic_factory, member_factory):
    c = clinic_factory()
    nurse = member_factory(c["id"], "NURSE", tag="leaving")
    admin = member_factory(c["id"], "CLINIC_ADMIN", tag="staying")

    async def scenario() -> None:
        first = Recorder(server.base_url)
        session = await asyncio.to_thread(api.login, nurse["email"], nurse["password"])
        await first.connect(session["access_token"])
        r = await rest(api, session["access_token"], "POST", "/auth/logout")
        assert r.status_code == 204
        await asyncio.wait_for(first.disconnected.wait(), 5)
        assert first.named("session.revoked") == [{"reason": "logout"}]

        # Removal takes the clinic's rooms away; the socket itself stays (the user may belong to
        # other clinics: tests/security/test_socket_scoping.py).
        second, staff = Recorder(server.base_url), Recorder(server.base_url)
        await second.connect(nurse["token"])
        await staff.connect(admin["token"])
        r = await rest(api, sa_token, "DELETE", f"/clinics/{c['id']}/members/{nurse['user_id']}")
        assert r.status_code == 204
        await second.wait_for(lambda: bool(second.named("member.removed")))
        await rest(api, admin["token"], "PATCH", f"/clinics/{c['id']}", json={"name": c["name"]})
        await staff.wait_for(lambda: bool(staff.named("clinic.updated")))
        assert second.named("clinic.updated") == [] and second.named("session.revoked") == []
        assert second.sio.connected
        for rec in (second, staff):
            await rec.close()

    run(scenario())


@pytest.mark.slow
def test_an_expiring_token_ends_the_socket(env, clinic_factory, member_factory):
    short = servers.Server({**env, "CAREWIRE_ACCESS_TOKEN_TTL_SECONDS": "2"})
    short.start()
    try:
        import httpx

        c = clinic_factory()
        person = member_factory(c["id"], "NURSE", tag="short")
        token = httpx.post(short.base_url + "/api/v1/auth/login",
                           json={"email": person["email"], "password": person["password"]}
                           ).json()["access_token"]

        async def scenario() -> None:
            rec = Recorder(short.base_url)
            await rec.connect(token)
            await asyncio.wait_for(rec.disconnected.wait(), 10)
            assert rec.named("session.revoked") == [{"reason": "token_expired"}]

        run(scenario())
    finally:
        short.stop()


def test_membership_events_flow_from_the_foundation(api, db, sa_token, two_clinics):
    a, _ = two_clinics
    email = unique_email()
    r = api.as_(sa_token, "POST", f"/clinics/{a['id']}/members",
                json={"email": email, "name": "E", "role": "NURSE"})
    rows = db.fetch("SELECT type, audience FROM events WHERE clinic_id = $1 AND data->>'user_id' = $2",
                    uuid.UUID(a["id"]), r.json()["user_id"])
    assert [row["type"] for row in rows] == ["member.added"]
    assert set(rows[0]["audience"]) == {f"clinic:{a['id']}:staff", f"user:{r.json()['user_id']}"}
    seqs = [row["seq"] for row in db.fetch("SELECT seq FROM events WHERE clinic_id = $1 ORDER BY seq",
                                           uuid.UUID(a["id"]))]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # gapless


def test_metrics_count_the_live_path(server, api, two_clinics):
    import httpx

    a, _ = two_clinics

    def value(text: str, name: str) -> float:
        lines = [ln for ln in text.splitlines() if ln.startswith(name + " ")]
        return float(lines[0].split()[1]) if lines else 0.0

    async def scenario() -> None:
        rec = Recorder(server.base_url)
        await rec.connect(a["admin"]["token"])
        before = (await asyncio.to_thread(httpx.get, server.base_url + "/metrics")).text
        await rest(api, a["admin"]["token"], "PATCH", f"/clinics/{a['id']}", json={"name": "M"})
        await rec.wait_for(lambda: bool(rec.named("clinic.updated")))
        after = (await asyncio.to_thread(httpx.get, server.base_url + "/metrics")).text
        assert value(after, "carewire_sockets_connected") >= 1
        assert value(after, "carewire_events_relayed_total") > value(before, "carewire_events_relayed_total")
        assert value(after, "carewire_socket_deliveries_total") >= value(
            before, "carewire_socket_deliveries_total") + 1
        assert value(after, "carewire_delivery_latency_seconds_count") > value(
            before, "carewire_delivery_latency_seconds_count")
        await rec.close()

    run(scenario())
