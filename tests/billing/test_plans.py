"""Plans CRUD over REST: the clinic's currency, quotas per appointment type, who may manage
and read them, keyset pages, and bad input named by field."""

from __future__ import annotations

from typing import Any

import pytest

from tests.billing.plan_fixtures import make_plan, plan_clinic
from tests.test_bad_input import assert_problem


@pytest.fixture(scope="module")
def clinic(api, sa_token, clinic_factory, member_factory) -> dict[str, Any]:
    return plan_clinic(api, sa_token, clinic_factory, member_factory, doctors=1, patients=1)


@pytest.fixture(scope="module")
def other(api, sa_token, clinic_factory, member_factory) -> dict[str, Any]:
    return plan_clinic(api, sa_token, clinic_factory, member_factory, doctors=1, patients=1,
                       currency="USD")


def test_create_read_and_patch(api, db, clinic) -> None:
    plan = make_plan(api, clinic, name="Ten visits a year", price=999900, interval="year",
                     trial_days=14, quotas={"in_person": 10, "video": None})
    assert plan["currency"] == "INR" and plan["active"] is True
    assert plan["quotas"] == {"in_person": 10, "video": None} and plan["trial_days"] == 14
    patient = clinic["patients"][0]
    got = api.as_(patient["token"], "GET", f"/billing/plans/{plan['id']}")
    assert got.status_code == 200 and got.json() == plan
    r = api.as_(clinic["accountant"]["token"], "PATCH", f"/billing/plans/{plan['id']}",
                json={"price": 1099900, "quotas": {"in_person": 12}, "active": False})
    assert r.status_code == 200, r.text
    assert (r.json()["price"], r.json()["quotas"], r.json()["active"]) == (
        1099900, {"in_person": 12}, False)
    assert r.json()["name"] == "Ten visits a year"
    audit = db.fetch("SELECT action, detail FROM audit_log WHERE resource_id = $1 ORDER BY id",
                     plan["id"])
    assert [a["action"] for a in audit] == ["billing_plans:manage"] * 2


def test_list_is_keyset_paged_and_filtered(api, clinic) -> None:
    made = [make_plan(api, clinic, name=f"Page plan {i}", active=i != 1) for i in range(3)]
    token = clinic["patients"][0]["token"]
    seen: list[str] = []
    cursor = None
    while True:
        r = api.as_(token, "GET", "/billing/plans",
                    params={"clinic_id": clinic["id"], "limit": 2, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        seen += [p["id"] for p in r.json()["items"]]
        cursor = r.json()["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) and {p["id"] for p in made} <= set(seen)
    active = api.as_(token, "GET", "/billing/plans",
                     params={"clinic_id": clinic["id"], "active": "false"}).json()["items"]
    assert made[1]["id"] in {p["id"] for p in active} and all(not p["active"] for p in active)


def test_currency_must_be_the_clinics(api, clinic) -> None:
    token = clinic["admin"]["token"]
    base = {"clinic_id": clinic["id"], "name": "Dollar plan", "price": 100, "interval": "month"}
    assert_problem(api.as_(token, "POST", "/billing/plans", json={**base, "currency": "USD"}),
                   400, field="currency")
    assert_problem(api.as_(token, "POST", "/billing/plans", json={**base, "currency": "QQQ"}),
                   400, field="currency")
    ok = api.as_(token, "POST", "/billing/plans", json={**base, "currency": "INR"})
    assert ok.status_code == 201 and ok.json()["currency"] == "INR"


@pytest.mark.parametrize(("body", "field"), [
    ({"price": -1}, "price"),
    ({"price": 10**12}, "price"),
    ({"price": 1.5}, "price"),
    ({"quotas": {"in_person": 0}}, "quotas"),
    ({"quotas": {"surgery": 2}}, "quotas.surgery"),
    ({"interval": "week"}, "interval"),
    ({"trial_days": 400}, "trial_days"),
    ({"name": "   "}, "name"),
])
def test_bad_plans_name_the_field(api, clinic, body, field) -> None:
    base = {"clinic_id": clinic["id"], "name": "Bad plan", "price": 100, "interval": "month"}
    r = api.as_(clinic["admin"]["token"], "POST", "/billing/plans", json={**base, **body})
    problem = assert_problem(r, r.status_code)
    assert r.status_code in (400, 422), r.text
    assert any(e["field"].startswith(field) for e in problem["errors"]), problem


def test_names_are_unique_per_clinic(api, clinic, other) -> None:
    first = make_plan(api, clinic, name="Family")
    r = api.as_(clinic["admin"]["token"], "POST", "/billing/plans",
                json={"clinic_id": clinic["id"], "name": "Family", "price": 1, "interval": "year"})
    assert_problem(r, 409, "conflict", field="name")
    second = make_plan(api, clinic, name="Family 2")
    r = api.as_(clinic["admin"]["token"], "PATCH", f"/billing/plans/{second['id']}",
                json={"name": "Family"})
    assert_problem(r, 409, "conflict", field="name")
    assert make_plan(api, other, name="Family")["currency"] == "USD"
    assert first["name"] == "Family"


def test_who_may_manage_and_read(api, clinic, other) -> None:
    plan = make_plan(api, clinic)
    body = {"clinic_id": clinic["id"], "name": "Mine", "price": 1, "interval": "year"}
    for who in (clinic["patients"][0], clinic["desk"], clinic["doctors"][0]):
        assert_problem(api.as_(who["token"], "POST", "/billing/plans", json=body), 403,
                       "forbidden")
        assert_problem(api.as_(who["token"], "PATCH", f"/billing/plans/{plan['id']}",
                               json={"price": 2}), 403, "forbidden")
    outsider = other["admin"]["token"]
    assert_problem(api.as_(outsider, "GET", f"/billing/plans/{plan['id']}"), 404, "not_found")
    assert_problem(api.as_(outsider, "PATCH", f"/billing/plans/{plan['id']}",
                           json={"price": 2}), 404, "not_found")
    assert_problem(api.as_(outsider, "GET", "/billing/plans", params={"clinic_id": clinic["id"]}),
                   404, "not_found")
    assert api.as_(clinic["admin"]["token"], "GET", f"/billing/plans/{plan['id']}").json()[
        "price"] == plan["price"]
