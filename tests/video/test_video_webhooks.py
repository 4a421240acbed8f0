"""OpenVidu webhooks at /api/v1/webhooks/video/openvidu: signed by the fake as LiveKit signs
them (a JWT in Authorization with the body's SHA-256), verified on the raw body, stored once in
the inbox, processed once (the inbox's own `process`, what the job runs, in this process) into
`video.*` events that reach the appointment's doctor, its patient and the clinic's staff."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest

from domain.inbox.commands import process
from tests.conftest import Api, Db
from tests.realtime_client import Recorder
from tests.video.fakes.livekit import LiveKitFake

PATH = "/webhooks/video/openvidu"
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def vw(api: Api, vapi: Api, db: Db, sa_token: str, clinic_factory: Any,
       member_factory: Any) -> Any:
    from tests.video.world import make_clinic

    return make_clinic(api, vapi, db, sa_token, clinic_factory, member_factory)


def post(vapi: Api, body: bytes, headers: dict[str, str]) -> Any:
    return vapi.http.post(PATH, content=body, headers=headers)


def stored(db: Db, *event_ids: str) -> int:
    return int(db.fetch("SELECT count(*) AS n FROM webhook_inbox WHERE provider = 'openvidu' "
                        "AND event_id = ANY($1::text[])", list(event_ids))[0]["n"])


def video_events(db: Db, kind: str, session_id: str) -> list[dict[str, Any]]:
    rows = db.fetch("SELECT data, audience FROM events WHERE type = $1 "
                    "AND data->>'session_id' = $2", kind, session_id)
    return [{"data": json.loads(r["data"]) if isinstance(r["data"], str) else r["data"],
             "audience": r["audience"]} for r in rows]


def live_session(vw: Any) -> dict[str, Any]:
    appointment = vw.book()
    return dict(vw.session(appointment["id"]))


def test_a_good_delivery_is_stored_once_and_emits_once(vapi: Api, openvidu: LiveKitFake, vw: Any,
                                                       db: Db, domain_layer: Any) -> None:
    s = live_session(vw)
    body, headers = openvidu.webhook("participant_joined", room=s["room"],
                                     identity=vw.user_id("patient"))
    event_id = json.loads(body)["id"]
    r = post(vapi, body, headers)
    assert r.status_code == 200 and (r.json()["stored"], r.json()["duplicates"]) == (1, 0), r.text
    again = post(vapi, body, headers)
    assert again.status_code == 200 and again.json()["duplicates"] == 1
    assert stored(db, event_id) == 1
    assert video_events(db, "video.participant_joined", s["id"]) == []  # not before processing
    handled = domain_layer.run(process("openvidu", event_id))
    assert handled is not None and handled.result == "participant_joined"
    assert str(handled.clinic_id) == vw.id
    assert domain_layer.run(process("openvidu", event_id)) is None
    [event] = video_events(db, "video.participant_joined", s["id"])
    assert event["data"]["participant_id"] == vw.user_id("patient")
    assert event["data"]["role"] == "patient"
    assert set(event["data"]) == {"session_id", "appointment_id", "provider", "status",
                                  "participant_id", "role"}  # ids and statuses only
    assert f"user:{vw.user_id('patient')}" in event["audience"]
    assert f"user:{vw.user_id('other_patient')}" not in event["audience"]


def test_forged_altered_stale_replayed_and_unsigned_deliveries_store_nothing(
        vapi: Api, openvidu: LiveKitFake, vw: Any, db: Db) -> None:
    s = live_session(vw)
    since = time.time()
    ids = [f"EV_refused_{uuid.uuid4().hex[:10]}" for _ in range(7)]
    who = {"room": s["room"], "identity": vw.user_id("doctor")}
    good_body, good_headers = openvidu.webhook("participant_joined", id=ids[0], **who)
    forged = openvidu.webhook("participant_joined", id=ids[1], api_secret="x" * 43, **who)
    other_key = openvidu.webhook("participant_joined", id=ids[2], api_key="APIother",
                                 api_secret="y" * 43, **who)
    stale = openvidu.webhook("participant_joined", id=ids[3],
                             created_at=int(time.time()) - 600, **who)
    expired = openvidu.webhook("participant_joined", id=ids[4], ttl=timedelta(minutes=-5), **who)
    altered = (good_body.replace(ids[0].encode(), ids[5].encode()), good_headers)
    unsigned = ({"Content-Type": "application/webhook+json"})
    bearer = {**good_headers, "Authorization": "Bearer " + good_headers["Authorization"]}
    cases = [forged, other_key, stale, expired, altered, (good_body, unsigned),
             (good_body, bearer), (b"not json", good_headers)]
    for body, headers in cases:
        r = post(vapi, body, headers)
        assert r.status_code == 401, (headers, r.text)
        assert r.headers["content-type"].startswith(PROBLEM)
    assert stored(db, *ids) == 0
    assert video_events(db, "video.participant_joined", s["id"]) == []
    # the good one, then its replay re-signed a long time later (the same id, an old createdAt)
    assert post(vapi, good_body, good_headers).status_code == 200
    replay = openvidu.webhook("participant_joined", id=ids[0],
                              created_at=int(time.time()) - 3600, **who)
    assert post(vapi, *replay).status_code == 401
    assert stored(db, *ids) == 1
    reasons = {r["reason"] for r in db.fetch(
        """SELECT detail->>'reason' AS reason FROM audit_log WHERE action = 'auth:refused'
           AND detail->>'transport' = 'webhook' AND occurred_at >= to_timestamp($1)""",
        since - 1)}
    assert {"bad_signature", "stale", "missing_signature", "unknown_key"} <= reasons


def test_an_unknown_room_or_egress_is_parked(vapi: Api, openvidu: LiveKitFake, db: Db,
                                             domain_layer: Any) -> None:
    for event, fields in (("participant_joined", {"room": "nosuchroom" + uuid.uuid4().hex,
                                                  "identity": str(uuid.uuid4())}),
                          ("room_finished", {"room": "nosuchroom" + uuid.uuid4().hex}),
                          ("egress_ended", {"egress_id": "EG_" + uuid.uuid4().hex[:12]})):
        body, headers = openvidu.webhook(event, **fields)
        assert post(vapi, body, headers).status_code == 200
        handled = domain_layer.run(process("openvidu", json.loads(body)["id"]))
        assert handled is not None
        assert handled.result in ("unknown_room", "unknown_egress") and handled.clinic_id is None
        [row] = db.fetch("SELECT processed_at, error FROM webhook_inbox WHERE provider = "
                         "'openvidu' AND event_id = $1", json.loads(body)["id"])
        assert row["processed_at"] is not None and row["error"] is None


def test_participant_events_reach_the_doctor_staff_and_the_patient_not_another_patient(
        video_server: Any, vapi: Api, openvidu: LiveKitFake, vw: Any,
        domain_layer: Any) -> None:
    s = live_session(vw)
    sent = []
    for event, who in (("participant_joined", "patient"), ("participant_joined", "nurse"),
                       ("participant_left", "patient"), ("room_finished", None)):
        fields: dict[str, Any] = {"room": s["room"]}
        if who:
            fields["identity"] = vw.user_id(who)
        sent.append(openvidu.webhook(event, **fields))

    async def flow() -> dict[str, Recorder]:
        sockets = {who: Recorder(video_server.base_url)
                   for who in ("doctor", "desk", "patient", "other_patient")}
        try:
            for who, sock in sockets.items():
                await sock.connect(vw.token(who))
            for body, headers in sent:
                r = await asyncio.to_thread(post, vapi, body, headers)
                assert r.status_code == 200, r.text
                await asyncio.to_thread(domain_layer.run, process("openvidu",
                                                                  json.loads(body)["id"]))
            for who in ("doctor", "desk", "patient"):
                await sockets[who].wait_for(lambda who=who: any(  # type: ignore[misc]
                    e["data"]["session_id"] == s["id"]
                    for e in sockets[who].named("video.room_finished")))
        finally:
            for sock in sockets.values():
                await sock.close()
        return sockets

    sockets = asyncio.run(flow())
    for who in ("doctor", "desk", "patient"):
        joined = [e["data"] for e in sockets[who].named("video.participant_joined")
                  if e["data"]["session_id"] == s["id"]]
        assert sorted((d["participant_id"], d["role"]) for d in joined) == sorted(
            [(vw.user_id("patient"), "patient"), (vw.user_id("nurse"), "observer")])
        assert [e["data"]["role"] for e in sockets[who].named("video.participant_left")
                if e["data"]["session_id"] == s["id"]] == ["patient"]
    assert not [e for name in ("video.participant_joined", "video.participant_left",
                               "video.room_finished")
                for e in sockets["other_patient"].named(name)
                if e["data"]["session_id"] == s["id"]]
