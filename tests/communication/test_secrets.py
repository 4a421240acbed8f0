"""The credentials a clinic PUTs over REST: never in a response, a log line of the server, an
audit row or an event; a ciphertext copied to another clinic's row is a clean 409, never a 500;
`carewire keys rotate` leaves every clinic's credentials readable."""

from __future__ import annotations

import base64
import secrets
import uuid
from typing import Any

import pytest

from domain.tenancy.credentials import get_credentials
from tests import servers
from tests.tenancy.test_credentials import keys_in_process

CHAIN = {"email": {"providers": ["zeptomail", "local"],
                   "sender": {"from_address": "desk@secret.test"}}}


def _put(capi, token: str, clinic_id: str, body: dict[str, Any], **kw: Any) -> Any:
    return capi.as_(token, "PUT", f"/clinics/{clinic_id}/communication/config", json=body, **kw)


def test_a_canary_credential_appears_nowhere(capi, db, comm_server, clinic_factory,
                                             member_factory):
    clinic = clinic_factory()["id"]
    admin = member_factory(clinic, "CLINIC_ADMIN", tag="canary-admin")["token"]
    body = "CANARY" + secrets.token_hex(16).upper()  # what must appear nowhere
    canary, second = body + "ZZZZ", body + "-SECRET-YYYY"
    # two providers in the chain, so the test send reads (decrypts) every canary stored
    chain = {"email": {**CHAIN["email"], "providers": ["ses", "zeptomail", "local"]}}
    answers = []

    def keep(r: Any) -> Any:
        answers.append(r)
        return r

    r = keep(_put(capi, admin, clinic, {"channels": chain, "credentials": {
        "ses": {"access_key_id": canary, "secret_access_key": second, "region": "eu-west-1",
                "configuration_set": body + "-SET-WWWW"},
        "zeptomail": {"api_key": body + "-ZEPTO-XXXX"}}},
        headers={"Idempotency-Key": "canary-" + secrets.token_hex(4)}))
    assert r.status_code == 200, r.text
    assert r.json()["credentials"] == {
        "ses": {"access_key_id": "****ZZZZ", "secret_access_key": "****YYYY",
                "region": "****st-1", "configuration_set": "****WWWW"},
        "zeptomail": {"api_key": "****XXXX"}}
    path = f"/clinics/{clinic}/communication"
    keep(capi.as_(admin, "GET", f"{path}/config"))
    keep(capi.as_(admin, "GET", f"{path}/health"))
    keep(capi.as_(admin, "GET", f"/clinics/{clinic}/events"))
    assert keep(capi.as_(admin, "POST", f"{path}/test/email")).status_code == 202
    for bad in ({"zeptomail": {"api_key": canary, "bogus": canary}},
                {"ses": {"configuration_set": canary}},
                {"ses": {"access_key_id": canary, "region": "eu-west-1"}},
                {"nope": {"api_key": canary}},
                {"ses": {"access_key_id": canary, "secret_access_key": second, "region": 7}},
                {"zeptomail": {"api_key": canary + "\x00"}},
                {"zeptomail": {"api_key": canary * 1000}}):
        r = keep(_put(capi, admin, clinic, {"channels": chain, "credentials": bad}))
        assert r.status_code == 400, r.text
    r = keep(_put(capi, admin, clinic, {"channels": {"email": {**CHAIN["email"],
                                                               "providers": [canary]}}}))
    assert r.status_code == 400  # a "provider name" that is the canary: named by position
    # a caller who may not manage the settings, and one of another clinic
    doctor = member_factory(clinic, "DOCTOR", tag="canary-doc")["token"]
    keep(_put(capi, doctor, clinic, {"credentials": {"zeptomail": {"api_key": canary}}}))
    assert all(r.status_code < 500 for r in answers)
    for r in answers:
        assert body not in r.text, r.text
    assert body not in comm_server.log.read_text(errors="replace")
    assert comm_server.log.stat().st_size > 0  # the DEBUG server does log
    assert not db.fetch("SELECT 1 FROM events e WHERE position($1 in e::text) > 0", body)
    assert not db.fetch("SELECT 1 FROM audit_log a WHERE position($1 in a::text) > 0", body)
    assert not db.fetch("SELECT 1 FROM communication_messages m WHERE position($1 in m::text) > 0",
                        body)
    assert not db.fetch("SELECT 1 FROM communication_configs c WHERE position($1 in c::text) > 0",
                        body)
    assert not db.fetch("SELECT 1 FROM clinic_credentials c WHERE position($1 in c::text) > 0",
                        body)


@pytest.fixture
def pair(capi, clinic_factory, sa_token) -> dict[str, str]:
    a, b = clinic_factory()["id"], clinic_factory()["id"]
    for clinic in (a, b):
        r = _put(capi, sa_token, clinic, {"channels": CHAIN, "credentials": {
            "zeptomail": {"api_key": f"own-key-of-{clinic}"}}})
        assert r.status_code == 200, r.text
    return {"a": a, "b": b}


def test_ciphertext_copied_to_another_clinic_is_a_clean_error(capi, db, pair, sa_token):
    a, b = uuid.UUID(pair["a"]), uuid.UUID(pair["b"])
    db.fetch("""UPDATE clinic_credentials t SET key_id = s.key_id, nonce = s.nonce,
                    ciphertext = s.ciphertext
                FROM clinic_credentials s
                WHERE s.clinic_id = $1 AND s.provider = 'zeptomail'
                  AND t.clinic_id = $2 AND t.provider = 'zeptomail'""", a, b)
    try:
        r = capi.as_(sa_token, "POST", f"/clinics/{b}/communication/test/email")
        assert r.status_code == 409, r.text
        assert r.json()["code"] == "conflict" and "do not decrypt" in r.json()["detail"]
        assert f"own-key-of-{a}" not in r.text
        assert not db.fetch("SELECT 1 FROM communication_messages WHERE clinic_id = $1", b)
        # the settings still show (masks are stored, nothing is decrypted to show them)
        r = capi.as_(sa_token, "GET", f"/clinics/{b}/communication/config")
        assert r.status_code == 200 and "zeptomail" in r.json()["credentials"]
        # the clinic whose ciphertext it is still sends
        r = capi.as_(sa_token, "POST", f"/clinics/{a}/communication/test/email")
        assert r.status_code == 202, r.text
        # storing fresh credentials repairs it
        r = _put(capi, sa_token, str(b), {"credentials": {"zeptomail": {"api_key": "fresh-key-1"}}})
        assert r.status_code == 200, r.text
        r = capi.as_(sa_token, "POST", f"/clinics/{b}/communication/test/email")
        assert r.status_code == 202, r.text
    finally:  # an unreadable row would fail `keys rotate` for the rest of the run
        db.fetch("DELETE FROM clinic_credentials WHERE clinic_id = $1 AND provider = 'zeptomail'",
                 b)


def _rotate(env, keys: str) -> str:
    done = servers.cli({**env, "CAREWIRE_CREDENTIALS_KEY": keys}, "keys", "rotate")
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_after_keys_rotate_every_clinics_credentials_still_decrypt(capi, db, pair, env,
                                                                    domain_layer, sa_token):
    """tests/tenancy/test_credentials.py covers rotation's rules; this checks it against rows the
    REST PUT wrote, across every clinic of the run, and that the server reads them again after
    rotating back."""
    old = env["CAREWIRE_CREDENTIALS_KEY"]
    new = f"cfgrot:{base64.b64encode(secrets.token_bytes(32)).decode()}"
    rows = db.fetch("SELECT clinic_id, provider FROM clinic_credentials")
    assert {(uuid.UUID(pair[k]), "zeptomail") for k in "ab"} <= {
        (r["clinic_id"], r["provider"]) for r in rows}
    try:
        assert "unreadable: 0" in _rotate(env, f"{new},{old}")
        with keys_in_process(new):  # the old key could go now
            for r in rows:
                domain_layer.run(get_credentials(r["clinic_id"], r["provider"]))
            assert domain_layer.run(get_credentials(uuid.UUID(pair["a"]), "zeptomail")) == {
                "api_key": f"own-key-of-{pair['a']}"}
        assert {r["key_id"] for r in db.fetch("SELECT key_id FROM clinic_credentials")} == {"cfgrot"}
    finally:
        _rotate(env, f"{old},{new}")
    with keys_in_process(old):
        for r in rows:
            domain_layer.run(get_credentials(r["clinic_id"], r["provider"]))
    r = capi.as_(sa_token, "POST", f"/clinics/{pair['b']}/communication/test/email")
    assert r.status_code == 202, r.text
