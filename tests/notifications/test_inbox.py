"""The in-app inbox at /users/me/notifications: keyset pages newest first over the caller's
in-app rows only, the unread filter and count, read marks (idempotent; someone else's is 404),
read-all. Rows are written in the table's shape (inbox_rows.py); the flow that writes them is
tested end to end in test_notifications_e2e.py."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from domain.notifications import queries
from tests.notifications.inbox_rows import insert_notification

PATH = "/users/me/notifications"


@pytest.fixture(scope="module")
def inbox(db, clinic_factory, member_factory) -> dict[str, Any]:
    a, b = clinic_factory(), clinic_factory()
    pat = member_factory(a["id"], "PATIENT", tag="inbox-pat")
    other = member_factory(a["id"], "PATIENT", tag="inbox-other")
    # 7 in-app items across two clinics (oldest first), 2 already read; 1 not in-app
    mine = [insert_notification(db, (a if i % 2 else b)["id"], pat["user_id"],
                                age=timedelta(minutes=60 - i), read=i in (1, 4))
            for i in range(7)]
    hidden = insert_notification(db, a["id"], pat["user_id"], in_app=False)
    theirs = insert_notification(db, a["id"], other["user_id"])
    return {"pat": pat, "other": other, "mine": mine[::-1], "hidden": hidden, "theirs": theirs,
            "unread": [n for i, n in enumerate(mine) if i not in (1, 4)][::-1]}


def pages(api, token: str, **params: Any) -> tuple[list[dict[str, Any]], list[int]]:
    items: list[dict[str, Any]] = []
    counts: list[int] = []
    cursor = None
    while True:
        r = api.as_(token, "GET", PATH, params={**params, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        body = r.json()
        items += body["items"]
        counts.append(body["unread_count"])
        cursor = body["next_cursor"]
        if not cursor:
            return items, counts


def test_pages_are_newest_first_and_the_callers_in_app_only(api, inbox):
    items, counts = pages(api, inbox["pat"]["token"], limit=3)
    assert [i["id"] for i in items] == inbox["mine"]
    assert counts == [5, 5, 5]  # every page counts all the unread ones
    assert set(items[0]) == {"id", "clinic_id", "kind", "appointment_id", "title", "body", "late",
                             "read_at", "created_at"}
    assert inbox["hidden"] not in {i["id"] for i in items}
    assert inbox["theirs"] not in {i["id"] for i in items}
    unread, _ = pages(api, inbox["pat"]["token"], limit=2, unread="true")
    assert [i["id"] for i in unread] == inbox["unread"]
    assert all(i["read_at"] is None for i in unread)


def test_an_empty_inbox_is_an_empty_page(api, member_factory, clinic_factory):
    nobody = member_factory(clinic_factory()["id"], "NURSE", tag="inbox-empty")
    r = api.as_(nobody["token"], "GET", PATH)
    assert r.status_code == 200, r.text
    assert r.json() == {"items": [], "next_cursor": None, "unread_count": 0}


def test_read_marks_are_idempotent_and_the_callers_own(api, db, clinic_factory, member_factory):
    clinic = clinic_factory()
    me = member_factory(clinic["id"], "PATIENT", tag="inbox-marks")
    them = member_factory(clinic["id"], "PATIENT", tag="inbox-them")
    mine = [insert_notification(db, clinic["id"], me["user_id"], age=timedelta(minutes=m))
            for m in (3, 2, 1)]
    theirs = insert_notification(db, clinic["id"], them["user_id"])
    not_in_app = insert_notification(db, clinic["id"], me["user_id"], in_app=False)

    r = api.as_(me["token"], "POST", f"{PATH}/{mine[0]}/read")
    assert r.status_code == 200, r.text
    first = r.json()["read_at"]
    assert first and r.json()["id"] == mine[0]
    again = api.as_(me["token"], "POST", f"{PATH}/{mine[0]}/read")
    assert again.status_code == 200 and again.json()["read_at"] == first  # unchanged
    assert api.as_(me["token"], "GET", PATH).json()["unread_count"] == 2

    for other in (theirs, not_in_app, str(uuid.uuid4())):
        r = api.as_(me["token"], "POST", f"{PATH}/{other}/read")
        assert r.status_code == 404, r.text  # never 403: an id's existence is not told
        assert r.headers["content-type"].startswith("application/problem+json")
    assert db.fetch("SELECT read_at FROM notifications WHERE id = $1::uuid", theirs)[0][
        "read_at"] is None

    r = api.as_(me["token"], "POST", f"{PATH}/read-all")
    assert r.status_code == 200 and r.json() == {"updated": 2}, r.text
    assert api.as_(me["token"], "POST", f"{PATH}/read-all").json() == {"updated": 0}
    body = api.as_(me["token"], "GET", PATH).json()
    assert body["unread_count"] == 0 and all(i["read_at"] for i in body["items"])
    assert [i["read_at"] for i in body["items"] if i["id"] == mine[0]] == [first]
    assert db.fetch("SELECT read_at FROM notifications WHERE id = $1::uuid", theirs)[0][
        "read_at"] is None  # read-all is the caller's own only
    assert db.fetch("SELECT read_at FROM notifications WHERE id = $1::uuid", not_in_app)[0][
        "read_at"] is None


def test_a_page_is_one_statement(domain_layer, inbox):
    """The page and the unread count come back together; a read outside a transaction costs
    itself and the pool's reset."""
    me = domain_layer.principal(inbox["pat"]["token"])
    domain_layer.run(queries.my_notifications(me, limit=2))  # warm
    page, statements = domain_layer.count(queries.my_notifications(me, limit=2))
    assert len(page.items) == 2 and page.unread_count == 5
    assert len(statements) == 2, statements


@pytest.mark.parametrize(("params", "field"), [
    ({"limit": "0"}, "limit"), ({"limit": "201"}, "limit"), ({"limit": "x"}, "limit"),
    ({"cursor": "garbage"}, "cursor"), ({"unread": "maybe"}, "unread")])
def test_a_bad_query_is_named(api, inbox, params, field):
    r = api.as_(inbox["pat"]["token"], "GET", PATH, params=params)
    assert r.status_code == 400, r.text
    assert field in [e["field"] for e in r.json().get("errors") or []], r.json()


def test_no_login_is_401(api):
    for method, path in (("GET", PATH), ("POST", f"{PATH}/read-all"),
                         ("POST", f"{PATH}/{uuid.uuid4()}/read")):
        assert api.as_(None, method, path).status_code == 401
