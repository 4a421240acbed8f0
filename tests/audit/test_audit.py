"""The audit log records allowed, denied and failed actions, and tampering is detectable."""

from __future__ import annotations

import asyncpg
import pytest

from tests import servers
from tests.conftest import unique_email


def rows(db, **where):
    clause = " AND ".join(f"{k} = ${i}" for i, k in enumerate(where, 1))
    return db.fetch(f"SELECT * FROM audit_log WHERE {clause} ORDER BY id", *where.values())


def test_allowed_denied_and_failed_are_recorded(api, db, sa_token, clinic_factory,
                                                member_factory):
    a, b = clinic_factory(), clinic_factory()
    admin = member_factory(a["id"], "CLINIC_ADMIN", tag="aud")
    nurse = member_factory(a["id"], "NURSE", tag="aud-nurse")
    email = unique_email()
    created = api.as_(admin["token"], "POST", f"/clinics/{a['id']}/members",
                      json={"email": email, "name": "Pat", "role": "PATIENT"})
    assert created.status_code == 202  # clinic staff invite (tests/security/test_invitations.py)
    allowed = rows(db, action="members:create", resource_id=created.json()["invitation_id"])
    assert [(r["outcome"], str(r["actor_id"]), str(r["clinic_id"])) for r in allowed] == [
        ("allowed", admin["user_id"], a["id"])]
    assert allowed[0]["request_id"] == created.headers["x-request-id"]
    assert allowed[0]["ip"] == "127.0.0.1"

    # Denied: a role without the permission, and a request into another clinic.
    r = api.as_(nurse["token"], "POST", f"/clinics/{a['id']}/members",
                json={"email": unique_email(), "name": "X", "role": "PATIENT"})
    assert r.status_code == 403
    r2 = api.as_(admin["token"], "GET", f"/clinics/{b['id']}/members")
    assert r2.status_code == 404
    denied = {(row["request_id"], str(row["actor_id"]), row["outcome"]) for row in
              db.fetch("SELECT * FROM audit_log WHERE request_id = ANY($1::text[])",
                       [r.headers["x-request-id"], r2.headers["x-request-id"]])}
    assert denied == {(r.headers["x-request-id"], nurse["user_id"], "denied"),
                      (r2.headers["x-request-id"], admin["user_id"], "denied")}

    # Failed: an allowed action that the data refuses (duplicate membership; only a SUPER_ADMIN
    # links directly, so only they are told).
    dup = api.as_(sa_token, "POST", f"/clinics/{a['id']}/members",
                  json={"email": nurse["email"], "name": "Pat", "role": "PATIENT"})
    assert dup.status_code == 409
    failed = rows(db, request_id=dup.headers["x-request-id"])
    assert [(f["outcome"], f["action"]) for f in failed] == [("failed", "members:create")]


def test_reads_of_patient_data_are_audited(api, db, clinic_factory, member_factory):
    c = clinic_factory()
    doctor = member_factory(c["id"], "DOCTOR", tag="reader")
    r = api.as_(doctor["token"], "GET", f"/clinics/{c['id']}/members")
    assert r.status_code == 200
    assert [x["outcome"] for x in rows(db, request_id=r.headers["x-request-id"],
                                       action="members:read")] == ["allowed"]


def test_rows_cannot_be_updated_or_deleted(db):
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        db.fetch("UPDATE audit_log SET outcome = 'allowed' WHERE id = (SELECT min(id) FROM audit_log)")
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        db.fetch("DELETE FROM audit_log WHERE id = (SELECT max(id) FROM audit_log)")


def test_verify_detects_tampering(env, api, db, clinic_factory):
    clinic_factory()  # make sure there is history to verify
    ok = servers.cli(env, "audit", "verify")
    assert ok.returncode == 0, ok.stderr
    assert "intact" in ok.stdout
    victim = db.fetch("SELECT id, outcome FROM audit_log WHERE outcome = 'denied' LIMIT 1")
    if not victim:
        victim = db.fetch("SELECT id, outcome FROM audit_log ORDER BY id DESC LIMIT 1")
    row_id, original = victim[0]["id"], victim[0]["outcome"]
    forged = "allowed" if original != "allowed" else "failed"
    # An attacker with superuser rights can switch the trigger off; the chain still tells.
    db.fetch("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update")
    try:
        db.fetch("UPDATE audit_log SET outcome = $2 WHERE id = $1", row_id, forged)
        bad = servers.cli(env, "audit", "verify")
        assert bad.returncode == 1
        assert f"row {row_id}" in bad.stderr
        db.fetch("UPDATE audit_log SET outcome = $2 WHERE id = $1", row_id, original)
    finally:
        db.fetch("ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update")
    assert servers.cli(env, "audit", "verify").returncode == 0
