"""The suppression list at /clinics/{id}/communication/suppressions: add (idempotent,
normalised, audited with the address masked), list with filters and pages, remove, the
webhook/pipeline `suppress`, permissions and another clinic's list."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from domain.communication.commands.suppressions import suppress


@pytest.fixture(scope="module")
def clinic(clinic_factory, member_factory) -> dict[str, Any]:
    c = clinic_factory()
    c["admin"] = member_factory(c["id"], "CLINIC_ADMIN", tag="sup-admin")
    c["auditor"] = member_factory(c["id"], "SYSTEM_AUDITOR", tag="sup-auditor")
    c["nurse"] = member_factory(c["id"], "NURSE", tag="sup-nurse")
    return c


def base(clinic: dict[str, Any]) -> str:
    return f"/clinics/{clinic['id']}/communication/suppressions"


def add(api, clinic, token=None, **body: Any):
    return api.as_(token or clinic["admin"]["token"], "POST", base(clinic),
                   json={"channel": "email", "reason": "manual", **body})


def entries(api, clinic, token=None, **params: Any) -> list[dict[str, Any]]:
    items, cursor = [], None
    while True:
        r = api.as_(token or clinic["admin"]["token"], "GET", base(clinic),
                    params={**params, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        items += r.json()["items"]
        if not (cursor := r.json()["next_cursor"]):
            return items


def test_add_is_normalised_idempotent_and_audited_masked(api, db, clinic):
    local = f"Pat.{uuid.uuid4().hex[:8]}"
    r = add(api, clinic, address=f"  {local}@Example.TEST ", note="asked by phone")
    assert r.status_code == 201, r.text
    entry = r.json()
    assert entry["address"] == f"{local.lower()}@example.test"
    assert (entry["reason"], entry["note"], entry["created_by"]) == (
        "manual", "asked by phone", clinic["admin"]["user_id"])
    again = add(api, clinic, address=entry["address"].upper(), reason="unsubscribe", note="x")
    assert again.status_code == 200, again.text
    assert again.json() == entry  # the first entry, unchanged
    rows = db.fetch("""SELECT action, detail::text AS detail FROM audit_log
                       WHERE clinic_id = $1::uuid AND action LIKE 'communication_suppressions:%'""",
                    clinic["id"])
    mine = [r for r in rows if f"{local.lower()[0]}***@example.test" in r["detail"]]
    assert len(mine) == 1 and mine[0]["action"] == "communication_suppressions:create"
    assert not any(local.lower() in r["detail"] for r in rows)


def test_phone_numbers_are_e164(api, clinic):
    r = add(api, clinic, channel="sms", address="+91 98765 43210")
    assert r.status_code == 201 and r.json()["address"] == "+919876543210", r.text
    r = add(api, clinic, channel="whatsapp", address="+919876543210")
    assert r.status_code == 201, r.text  # another channel: another entry
    for address in ("98765 43210", "+0123456789", "call me", "+1" + "2" * 20):
        r = add(api, clinic, channel="sms", address=address)
        assert r.status_code == 400, r.text
        assert "address" in [e["field"] for e in r.json()["errors"]]


@pytest.mark.parametrize(("body", "field"), [
    ({"address": "not-an-email"}, "address"), ({"address": "a@b"}, "address"),
    ({"address": ""}, "address"),
    ({"channel": "push", "address": "f" * 40}, "channel"),
    ({"channel": "fax", "address": "x@example.test"}, "channel"),
    ({"reason": "hard_bounce", "address": "x@example.test"}, "reason"),
    ({"reason": "complaint", "address": "x@example.test"}, "reason"),
    ({"address": "x@example.test", "note": "n" * 501}, "note"),
    ({"address": "x@example.test", "created_by": str(uuid.uuid4())}, "created_by"),
])
def test_bad_input_is_400_naming_the_field(api, db, clinic, body, field):
    before = db.fetch("SELECT count(*) AS n FROM communication_suppressions")[0]["n"]
    r = add(api, clinic, **body)
    assert r.status_code == 400, r.text
    assert field in [e["field"] for e in r.json()["errors"]], r.text
    assert db.fetch("SELECT count(*) AS n FROM communication_suppressions")[0]["n"] == before


def test_list_filters_and_pages(api, clinic_factory, member_factory):
    c = clinic_factory()
    c["admin"] = member_factory(c["id"], "CLINIC_ADMIN", tag="sup-pages")
    emails = [f"p{i}-{uuid.uuid4().hex[:6]}@example.test" for i in range(5)]
    for e in emails:
        assert add(api, c, address=e).status_code == 201
    assert add(api, c, channel="sms", address="+441234567890").status_code == 201
    every = entries(api, c, limit=2)
    assert [e["address"] for e in every] == [*emails, "+441234567890"]  # oldest first
    assert [e["address"] for e in entries(api, c, channel="sms")] == ["+441234567890"]
    assert [e["address"] for e in entries(api, c, address=emails[3].upper())] == [emails[3]]
    assert entries(api, c, address="nobody@example.test") == []
    r = api.as_(c["admin"]["token"], "GET", base(c), params={"channel": "fax"})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "channel"
    r = api.as_(c["admin"]["token"], "GET", base(c), params={"cursor": "garbage"})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "cursor"


def test_remove_then_404(api, db, clinic):
    address = f"gone-{uuid.uuid4().hex[:6]}@example.test"
    assert add(api, clinic, address=address).status_code == 201
    path = f"{base(clinic)}/email/{quote(address.upper())}"
    assert api.as_(clinic["admin"]["token"], "DELETE", path).status_code == 204
    assert entries(api, clinic, address=address) == []
    r = api.as_(clinic["admin"]["token"], "DELETE", path)
    assert r.status_code == 404 and r.json()["code"] == "not_found", r.text
    assert db.fetch("""SELECT count(*) AS n FROM audit_log WHERE clinic_id = $1::uuid
                       AND action = 'communication_suppressions:delete'
                       AND detail->>'address' = $2""",
                    clinic["id"], "g***@example.test")[0]["n"] >= 1
    phone = "+15550001234"
    assert add(api, clinic, channel="sms", address=phone).status_code == 201
    r = api.as_(clinic["admin"]["token"], "DELETE", f"{base(clinic)}/sms/{quote(phone)}")
    assert r.status_code == 204, r.text
    for channel, address, field in (("sms", "12", "address"), ("push", "x" * 20, "channel"),
                                    ("fax", "a@example.test", "channel")):
        r = api.as_(clinic["admin"]["token"], "DELETE", f"{base(clinic)}/{channel}/{address}")
        assert r.status_code == 400 and r.json()["errors"][0]["field"] == field, r.text


def test_who_may_read_and_manage(api, clinic):
    address = f"perm-{uuid.uuid4().hex[:6]}@example.test"
    r = add(api, clinic, token=clinic["auditor"]["token"], address=address)
    assert r.status_code == 403, r.text
    r = add(api, clinic, token=clinic["nurse"]["token"], address=address)
    assert r.status_code == 403, r.text
    assert add(api, clinic, address=address).status_code == 201
    assert address in {e["address"] for e in entries(api, clinic, token=clinic["auditor"]["token"])}
    r = api.as_(clinic["nurse"]["token"], "GET", base(clinic))
    assert r.status_code == 403, r.text
    r = api.as_(clinic["auditor"]["token"], "DELETE", f"{base(clinic)}/email/{address}")
    assert r.status_code == 403, r.text
    assert api.as_(None, "GET", base(clinic)).status_code == 401


def test_another_clinics_list_is_404_and_untouched(api, clinic, clinic_factory, member_factory):
    other = clinic_factory()
    other["admin"] = member_factory(other["id"], "CLINIC_ADMIN", tag="sup-other")
    secret = f"secret-{uuid.uuid4().hex[:6]}@example.test"
    assert add(api, other, address=secret).status_code == 201
    mine = clinic["admin"]["token"]
    for method, path, body in (
            ("GET", base(other), None),
            ("POST", base(other), {"channel": "email", "address": secret}),
            ("DELETE", f"{base(other)}/email/{secret}", None)):
        r = api.as_(mine, method, path, json=body)
        assert r.status_code == 404, r.text
        assert secret not in r.text and other["id"] not in r.text
    assert [e["address"] for e in entries(api, other)] == [secret]


def test_suppress_for_webhooks_is_idempotent(api, db, clinic, domain_layer):
    cid = uuid.UUID(clinic["id"])
    address = f"Bounce-{uuid.uuid4().hex[:6]}@Example.test"
    assert domain_layer.run(suppress(cid, "email", address, "hard_bounce", "evt-1")) is True
    assert domain_layer.run(suppress(cid, "email", address, "complaint", "evt-2")) is False
    rows = db.fetch("""SELECT reason, source_event_id, created_by FROM communication_suppressions
                       WHERE clinic_id = $1::uuid AND address = $2""", clinic["id"],
                    address.lower())
    assert rows == [{"reason": "hard_bounce", "source_event_id": "evt-1", "created_by": None}]
    r = add(api, clinic, address=address)
    assert r.status_code == 200 and r.json()["reason"] == "hard_bounce", r.text


def test_adding_one_address_at_once_makes_one_entry(server, db, clinic):
    """Twelve admins' requests for one address at once: one 201, the rest 200 with that same
    entry, no 5xx, one row, one audit row."""
    address = f"race-{uuid.uuid4().hex[:6]}@example.test"

    def post(_: int) -> httpx.Response:
        with httpx.Client(base_url=server.base_url + "/api/v1", timeout=30) as client:
            return client.post(base(clinic), json={"channel": "email", "address": address},
                               headers={"Authorization": f"Bearer {clinic['admin']['token']}"})

    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(post, range(12)))
    assert sorted(r.status_code for r in answers) == [200] * 11 + [201], [r.text for r in answers]
    assert len({r.text for r in answers}) == 1  # the same entry every time
    assert db.fetch("""SELECT count(*) AS n FROM communication_suppressions
                       WHERE clinic_id = $1::uuid AND address = $2""",
                    clinic["id"], address)[0]["n"] == 1
    assert db.fetch("""SELECT count(*) AS n FROM audit_log WHERE clinic_id = $1::uuid
                       AND action = 'communication_suppressions:create'
                       AND detail->>'address' = 'r***@example.test'""",
                    clinic["id"])[0]["n"] == 1
