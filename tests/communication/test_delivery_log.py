"""The delivery log's read side: a clinic's messages (filters, newest-first pages, attempts, no
body in lists), one message (its body behind `communication_messages:read_body`), the
caller's own messages, another clinic's (404), and body pruning by each clinic's retention.

The pipeline that writes these rows is not here yet, so the tests insert them with SQL in the
migration's shape."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain.communication.commands.retention import prune_bodies
from tasks.maintenance import prune_message_bodies
from tasks.registry import JOBS
from tests.communication.messages import insert_message

NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def log(db, clinic_factory, member_factory) -> dict[str, Any]:
    a, b = clinic_factory(), clinic_factory()
    for c, tag in ((a, "a"), (b, "b")):
        c["admin"] = member_factory(c["id"], "CLINIC_ADMIN", tag=f"log-admin-{tag}")
    a["auditor"] = member_factory(a["id"], "SYSTEM_AUDITOR", tag="log-auditor")
    a["nurse"] = member_factory(a["id"], "NURSE", tag="log-nurse")
    patient = member_factory(a["id"], "PATIENT", tag="log-patient")
    other = member_factory(a["id"], "PATIENT", tag="log-other")
    ids = {
        "failed": insert_message(db, a["id"], patient["user_id"], status="failed",
                                 age=timedelta(hours=5), attempts=[
                                     {"provider": "zeptomail", "outcome": "unavailable",
                                      "status_code": 503, "latency_ms": 12.5, "error": "5xx"},
                                     {"provider": "ses", "outcome": "rejected",
                                      "status_code": 400, "latency_ms": 30.0,
                                      "error": "bad recipient"}]),
        "sms": insert_message(db, a["id"], patient["user_id"], channel="sms",
                              age=timedelta(hours=4)),
        "other": insert_message(db, a["id"], other["user_id"], age=timedelta(hours=3)),
        "sent": insert_message(db, a["id"], patient["user_id"], age=timedelta(hours=2),
                               attempts=[{"provider": "local", "outcome": "sent",
                                          "status_code": 200, "latency_ms": 1.0}]),
        "b": insert_message(db, b["id"], patient["user_id"], age=timedelta(hours=1),
                            body="clinic B's secret body"),
    }
    return {"a": a, "b": b, "patient": patient, "other": other, "ids": ids}


def url(clinic: dict[str, Any], rest: str = "") -> str:
    return f"/clinics/{clinic['id']}/communication/messages{rest}"


def every(api, token: str, path: str, **params: Any) -> list[dict[str, Any]]:
    items, cursor = [], None
    while True:
        r = api.as_(token, "GET", path, params={**params, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        items += r.json()["items"]
        if not (cursor := r.json()["next_cursor"]):
            return items


def test_the_list_is_newest_first_with_attempts_and_no_body(api, log):
    a, ids = log["a"], log["ids"]
    items = every(api, a["admin"]["token"], url(a), limit=1)
    assert [i["id"] for i in items] == [ids["sent"], ids["other"], ids["sms"], ids["failed"]]
    for item in items:
        assert not {"subject", "body", "html", "data", "body_pruned_at"} & item.keys(), item
        assert "body of" not in json.dumps(item)
    failed = next(i for i in items if i["id"] == ids["failed"])
    assert failed["address"] == "pat@example.test" and failed["status"] == "failed"
    assert [(t["provider"], t["outcome"], t["status_code"], t["error"])
            for t in failed["attempts"]] == [("zeptomail", "unavailable", 503, "5xx"),
                                             ("ses", "rejected", 400, "bad recipient")]
    assert failed["attempts"][0]["latency_ms"] == 12.5 and failed["attempts"][0]["at"]
    assert next(i for i in items if i["id"] == ids["sms"])["attempts"] == []


def test_filters(api, log):
    a, ids, token = log["a"], log["ids"], log["a"]["admin"]["token"]

    def listed(**params: Any) -> list[str]:
        return [i["id"] for i in every(api, token, url(a), **params)]

    assert listed(status="failed") == [ids["failed"]]
    assert listed(channel="sms") == [ids["sms"]]
    assert listed(user_id=log["other"]["user_id"]) == [ids["other"]]
    since = (NOW - timedelta(hours=3, minutes=30)).isoformat()
    until = (NOW - timedelta(hours=1, minutes=30)).isoformat()
    assert listed(since=since, until=until) == [ids["sent"], ids["other"]]
    assert listed(status="delivered") == []


@pytest.mark.parametrize(("params", "field"), [
    ({"status": "lost"}, "status"), ({"channel": "fax"}, "channel"),
    ({"user_id": "me"}, "user_id"), ({"since": "yesterday"}, "since"),
    ({"since": "2026-12-01T10:00:00"}, "since"), ({"until": "0001-01-01T00:00:00+05:30"}, "until"),
    ({"since": "2026-12-02T10:00:00Z", "until": "2026-12-02T10:00:00Z"}, "until"),
    ({"limit": "0"}, "limit"), ({"limit": "201"}, "limit"), ({"cursor": "nope"}, "cursor"),
])
def test_bad_filters_are_400_naming_them(api, log, params, field):
    r = api.as_(log["a"]["admin"]["token"], "GET", url(log["a"]), params=params)
    assert r.status_code == 400, r.text
    assert field in [e["field"] for e in r.json()["errors"]], r.text


def test_one_message_shows_its_body_to_admins_only(api, log):
    a, message_id = log["a"], log["ids"]["sent"]
    r = api.as_(a["admin"]["token"], "GET", url(a, f"/{message_id}"))
    assert r.status_code == 200, r.text
    m = r.json()
    assert (m["subject"], m["body"], m["body_pruned_at"]) == (
        f"subject of {message_id}", f"body of {message_id}", None)
    assert [t["outcome"] for t in m["attempts"]] == ["sent"]
    assert "html" not in m and "data" not in m
    r = api.as_(a["auditor"]["token"], "GET", url(a, f"/{message_id}"))
    assert r.status_code == 200, r.text
    assert not {"subject", "body"} & r.json().keys() and "body of" not in r.text
    assert r.json()["attempts"] == m["attempts"]
    assert api.as_(a["nurse"]["token"], "GET", url(a, f"/{message_id}")).status_code == 403
    assert api.as_(log["patient"]["token"], "GET", url(a)).status_code == 403
    assert api.as_(None, "GET", url(a)).status_code == 401


def test_another_clinics_messages_are_404(api, log):
    a, b, ids = log["a"], log["b"], log["ids"]
    token = a["admin"]["token"]
    for path in (url(b), url(b, f"/{ids['b']}"), url(a, f"/{ids['b']}")):
        r = api.as_(token, "GET", path)
        assert r.status_code == 404, r.text
        assert "secret body" not in r.text and b["id"] not in r.text
    r = api.as_(token, "GET", url(a, f"/{uuid.uuid4()}"))
    assert r.status_code == 404
    assert ids["b"] not in {i["id"] for i in every(api, token, url(a))}


def test_my_messages_are_mine_from_every_clinic_with_bodies(api, log):
    ids = log["ids"]
    mine = every(api, log["patient"]["token"], "/users/me/messages", limit=2)
    assert [m["id"] for m in mine] == [ids["b"], ids["sent"], ids["sms"], ids["failed"]]
    assert mine[0]["body"] == "clinic B's secret body"
    assert all(m["subject"] and m["body_pruned_at"] is None for m in mine)
    theirs = every(api, log["other"]["token"], "/users/me/messages")
    assert [m["id"] for m in theirs] == [ids["other"]]
    assert every(api, log["a"]["admin"]["token"], "/users/me/messages") == []
    assert api.as_(None, "GET", "/users/me/messages").status_code == 401


def test_bodies_are_pruned_after_each_clinics_retention(api, db, domain_layer, clinic_factory,
                                                        member_factory):
    job = JOBS["communication.prune_bodies"]  # the worker keeps it scheduled hourly
    assert (job.fn, job.every) == (prune_message_bodies, 3600)
    short = clinic_factory(message_body_retention_days=7)
    default = clinic_factory()  # 30 days
    admin = member_factory(short["id"], "CLINIC_ADMIN", tag="prune-admin")
    user = member_factory(short["id"], "PATIENT", tag="prune-patient")["user_id"]
    old = insert_message(db, short["id"], user, age=timedelta(days=8))
    young = insert_message(db, short["id"], user, age=timedelta(days=6))
    stuck = insert_message(db, short["id"], user, status="queued", age=timedelta(days=9))
    old_default = insert_message(db, default["id"], None, age=timedelta(days=8))
    older_default = insert_message(db, default["id"], None, age=timedelta(days=31),
                                   status="failed")
    assert domain_layer.run(prune_bodies()) >= 2
    rows = {str(r["id"]): r for r in db.fetch(
        """SELECT id, subject, body, html, data, body_pruned_at, status, address
           FROM communication_messages WHERE id = ANY($1::uuid[])""",
        [old, young, stuck, old_default, older_default])}
    assert len(rows) == 5  # the rows stay
    for gone in (old, older_default):
        r = rows[gone]
        assert (r["subject"], r["body"], r["html"], r["data"]) == (None, None, None, None)
        assert r["body_pruned_at"] is not None and r["address"]
    for kept in (young, stuck, old_default):
        assert rows[kept]["body"] == f"body of {kept}" and rows[kept]["body_pruned_at"] is None
    r = api.as_(admin["token"], "GET", f"/clinics/{short['id']}/communication/messages/{old}")
    assert r.status_code == 200, r.text
    assert (r.json()["body"], r.json()["subject"]) == (None, None)
    assert r.json()["body_pruned_at"] and r.json()["status"] == "sent"
    domain_layer.run(prune_bodies())  # a second run leaves pruned rows as they were
    again = db.fetch("SELECT body_pruned_at FROM communication_messages WHERE id = $1::uuid", old)
    assert again[0]["body_pruned_at"] == rows[old]["body_pruned_at"]
