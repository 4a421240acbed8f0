"""Per-clinic communication configuration over REST: provider chains per channel, credentials
stored through tenancy's store (masked on the way out, never echoed), validation naming each
bad field with nothing written, and concurrent PUTs that never mix."""

from __future__ import annotations

import random
import secrets
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from domain.communication.commands.config import ChannelSettings, put_config
from domain.tenancy.credentials import CredentialsUnavailable
from tests.tenancy.test_credentials import keys_in_process


@pytest.fixture(scope="module")
def place(clinic_factory, member_factory, sa_token) -> dict[str, Any]:
    a, b = clinic_factory(), clinic_factory()
    return {"a": a["id"], "b": b["id"], "sa": sa_token,
            "admin": member_factory(a["id"], "CLINIC_ADMIN", tag="cfg-admin"),
            "doctor": member_factory(a["id"], "DOCTOR", tag="cfg-doc"),
            "b_admin": member_factory(b["id"], "CLINIC_ADMIN", tag="cfg-b-admin")}


def _config(capi, token: str, clinic_id: str) -> dict[str, Any]:
    r = capi.as_(token, "GET", f"/clinics/{clinic_id}/communication/config")
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _put(capi, token: str, clinic_id: str, body: dict[str, Any]) -> Any:
    return capi.as_(token, "PUT", f"/clinics/{clinic_id}/communication/config", json=body)


def _stored(db, clinic_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The clinic's config rows and credential ciphertexts: what a refused PUT must not move."""
    cid = uuid.UUID(clinic_id)
    configs = db.fetch("SELECT channel, providers, sender::text AS sender, rate_per_second, "
                       "retry_unknown, updated_at FROM communication_configs WHERE clinic_id = $1 "
                       "ORDER BY channel", cid)
    creds = db.fetch("SELECT provider, key_id, nonce, ciphertext, last4::text AS last4 "
                     "FROM clinic_credentials WHERE clinic_id = $1 ORDER BY provider", cid)
    return configs, creds


EMAIL = {"providers": ["zeptomail", "local"],
         "sender": {"from_address": "Desk@Clinic.test", "from_name": "Clinic desk"},
         "rate_per_second": 10, "retry_unknown": False}


def test_a_fresh_clinic_shows_the_global_default(capi, clinic_factory, sa_token):
    clinic = clinic_factory()
    shown = _config(capi, sa_token, clinic["id"])
    assert shown["credentials"] == {}
    assert set(shown["channels"]) == {"email", "push", "whatsapp", "sms"}
    for channel, chain in shown["channels"].items():
        assert chain["channel"] == channel
        assert chain["providers"] == ["local"] and chain["source"] == "default"


def test_put_then_get_round_trip_and_null_goes_back_to_the_default(capi, db, place):
    key = "cfg-" + secrets.token_hex(12)
    smtp = {"host": "smtp.clinic.test", "username": "desk-account", "password": key,
            "port": "587"}  # three required fields and an optional one, too short to show
    r = _put(capi, place["admin"]["token"], place["a"],
             {"channels": {"email": {**EMAIL, "providers": ["smtp", "local"]},
                           "sms": {"providers": ["local"], "sender": {"sms_sender_id": "CLINIC1"}}},
              "credentials": {"smtp": smtp}})
    assert r.status_code == 200, r.text
    assert key not in r.text
    shown = _config(capi, place["admin"]["token"], place["a"])
    assert shown == r.json()
    email = shown["channels"]["email"]
    assert email["source"] == "clinic" and email["providers"] == ["smtp", "local"]
    assert email["sender"]["from_address"] == "desk@clinic.test"  # stored as validated
    assert email["rate_per_second"] == 10 and email["retry_unknown"] is False
    assert shown["channels"]["sms"]["sender"]["sms_sender_id"] == "CLINIC1"
    assert shown["channels"]["push"]["source"] == "default"
    assert shown["credentials"] == {"smtp": {"host": "****test", "username": "****ount",
                                             "password": "****" + key[-4:], "port": "****"}}
    # a chain naming a provider whose credentials are stored needs none given again
    r = _put(capi, place["admin"]["token"], place["a"], {"channels": {"email": {
        **EMAIL, "providers": ["smtp"]}}})
    assert r.status_code == 200, r.text
    assert r.json()["channels"]["email"]["providers"] == ["smtp"]
    assert r.json()["channels"]["sms"]["source"] == "clinic"  # a channel left out stays
    # null: the clinic's row goes, the default applies; its credentials stay stored
    r = _put(capi, place["admin"]["token"], place["a"], {"channels": {"sms": None}})
    assert r.status_code == 200, r.text
    assert r.json()["channels"]["sms"] == {**r.json()["channels"]["sms"], "source": "default",
                                           "providers": ["local"]}
    assert "smtp" in r.json()["credentials"]
    audit = db.fetch("""SELECT detail::text AS detail FROM audit_log WHERE clinic_id = $1
                        AND resource_type = 'communication_config' ORDER BY id""",
                     uuid.UUID(place["a"]))
    assert len(audit) == 3 and '"smtp"' in audit[0]["detail"]
    assert all(key not in row["detail"] for row in audit)


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("unknown provider", {"channels": {"email": {**EMAIL, "providers": ["nope"]}}},
     "channels.email.providers.0"),
    ("provider of another channel", {"channels": {"sms": {"providers": ["local", "zeptomail"]}}},
     "channels.sms.providers.1"),
    ("a push-only provider for sms", {"channels": {"sms": {"providers": ["fcm"]}}},
     "channels.sms.providers.0"),
    ("duplicate provider", {"channels": {"email": {**EMAIL, "providers": ["local", "local"]}}},
     "channels.email.providers.1"),
    ("empty chain", {"channels": {"email": {**EMAIL, "providers": []}}},
     "channels.email.providers"),
    ("chain too long", {"channels": {"email": {**EMAIL, "providers": ["local"] * 6}}},
     "channels.email.providers"),
    ("required credential neither given nor stored",
     {"channels": {"whatsapp": {"providers": ["whatsapp"]}}}, "credentials.whatsapp"),
    ("required credentials neither given nor stored, sms",
     {"channels": {"sms": {"providers": ["sns", "local"]}}}, "credentials.sns"),
    ("required credentials of a second email provider neither given nor stored",
     {"channels": {"email": {**EMAIL, "providers": ["zeptomail", "ses"]}}}, "credentials.ses"),
    ("unknown credential field",
     {"credentials": {"zeptomail": {"api_key": "k" * 12, "bogus": "x" * 12}}},
     "credentials.zeptomail.bogus"),
    ("a field of another provider",
     {"credentials": {"zeptomail": {"api_key": "k" * 12, "region": "eu-west-1"}}},
     "credentials.zeptomail.region"),
    ("credentials of an unknown provider", {"credentials": {"nope": {"api_key": "k" * 12}}},
     "credentials.nope"),
    ("credentials of the local sink", {"credentials": {"local": {"api_key": "k" * 12}}},
     "credentials.local"),
    ("a required field missing from the given credentials",
     {"credentials": {"ses": {"access_key_id": "AKIA" + "K" * 16, "region": "eu-west-1",
                              "configuration_set": "clinic-set"}}},
     "credentials.ses.secret_access_key"),
    ("only an optional field given",
     {"credentials": {"smtp": {"port": "587"}}}, "credentials.smtp.host"),
    ("an empty credential value", {"credentials": {"zeptomail": {"api_key": " "}}},
     "credentials.zeptomail.api_key"),
    ("bad from address", {"channels": {"email": {**EMAIL, "sender": {"from_address": "nope"}}}},
     "channels.email.sender.from_address"),
    ("no from address for a real email provider",
     {"channels": {"email": {**EMAIL, "sender": {"from_name": "Desk"}}}},
     "channels.email.sender.from_address"),
    ("bad reply-to", {"channels": {"email": {**EMAIL, "sender": {
        "from_address": "a@b.test", "reply_to": "x@"}}}}, "channels.email.sender.reply_to"),
    ("whatsapp number id not digits", {"channels": {"whatsapp": {
        "providers": ["local"], "sender": {"whatsapp_number_id": "12ab"}}}},
     "channels.whatsapp.sender.whatsapp_number_id"),
    ("sms sender id too short", {"channels": {"sms": {
        "providers": ["local"], "sender": {"sms_sender_id": "AB"}}}},
     "channels.sms.sender.sms_sender_id"),
    ("sms sender id too long", {"channels": {"sms": {
        "providers": ["local"], "sender": {"sms_sender_id": "ABCDEFGHIJKL"}}}},
     "channels.sms.sender.sms_sender_id"),
    ("sms sender id not alphanumeric", {"channels": {"sms": {
        "providers": ["local"], "sender": {"sms_sender_id": "AB-CD"}}}},
     "channels.sms.sender.sms_sender_id"),
    ("rate out of range", {"channels": {"email": {**EMAIL, "rate_per_second": 0}}},
     "channels.email.rate_per_second"),
    ("unknown channel", {"channels": {"fax": {"providers": ["local"]}}}, "channels.fax"),
    ("unknown sender field", {"channels": {"email": {**EMAIL, "sender": {"from": "x"}}}},
     "channels.email.sender.from"),
    ("providers not a list", {"channels": {"email": {**EMAIL, "providers": "local"}}},
     "channels.email.providers"),
    ("a NUL in a credential value", {"credentials": {"zeptomail": {"api_key": "k" * 8 + "\x00"}}},
     "credentials.zeptomail.api_key"),
    ("credential value not a string", {"credentials": {"zeptomail": {"api_key": 12345678}}},
     "credentials.zeptomail.api_key"),
    ("an optional credential value not a string",
     {"credentials": {"smtp": {"host": "smtp.clinic.test", "username": "desk-account",
                               "password": "p" * 12, "port": 587}}},
     "credentials.smtp.port"),
]


@pytest.mark.parametrize(("case", "bad", "field"), BAD, ids=[c for c, _, _ in BAD])
def test_bad_input_names_the_field_and_changes_nothing(capi, db, clinic_factory, sa_token, case,
                                                       bad, field):
    clinic = clinic_factory()["id"]
    r = _put(capi, sa_token, clinic, {"channels": {"email": EMAIL, "sms": {"providers": ["local"]}},
                                      "credentials": {"zeptomail": {"api_key": "first-" + "k" * 8}}})
    assert r.status_code == 200, r.text
    before = _stored(db, clinic)
    # the bad field rides along with valid changes to a chain and to credentials
    body = {"channels": {"push": {"providers": ["local"]}, **bad.get("channels", {})},
            "credentials": {"zeptomail": {"api_key": "second-" + "k" * 8},
                            **bad.get("credentials", {})}}
    r = _put(capi, sa_token, clinic, body)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert field in [e["field"] for e in r.json()["errors"]], r.json()
    assert _stored(db, clinic) == before


def test_a_failure_after_the_writes_rolls_all_of_them_back(domain_layer, db, clinic_factory,
                                                           sa_token, env):
    """Validation passes, the chain is written, then storing the credentials fails (no key in
    this process): the transaction takes the chain back with it."""
    clinic = clinic_factory()["id"]
    sa = domain_layer.principal(sa_token)
    with keys_in_process(env["CAREWIRE_CREDENTIALS_KEY"]):
        before = _stored(db, clinic)
        with keys_in_process(""), pytest.raises(CredentialsUnavailable):
            domain_layer.run(put_config(
                sa, uuid.UUID(clinic),
                channels={"email": ChannelSettings(providers=["local"]), "sms": None},
                credentials={"zeptomail": {"api_key": "k" * 12}}))
        assert _stored(db, clinic) == before == ([], [])


def test_who_may_read_and_change_it(capi, place):
    body = {"channels": {"push": {"providers": ["local"]}}}
    for method, data in (("GET", None), ("PUT", body)):
        path = f"/clinics/{place['a']}/communication/config"
        assert capi.as_(place["doctor"]["token"], method, path, json=data).status_code == 403
        r = capi.as_(place["b_admin"]["token"], method, path, json=data)
        assert r.status_code == 404 and place["a"] not in r.text
        assert capi.as_(None, method, path, json=data).status_code == 401
        r = capi.as_(place["sa"], method, f"/clinics/{uuid.uuid4()}/communication/config",
                     json=data)
        assert r.status_code == 404, r.text


def _valid_body(i: int) -> dict[str, Any]:
    """A PUT that names every channel and the credentials, each carrying `i`; every third one
    sends sms back to the default (a DELETE that must not interleave with another PUT's upsert)."""
    return {"channels": {
        "email": {**EMAIL, "rate_per_second": i, "sender": {"from_address": f"d{i}@c.test"}},
        "push": {"providers": ["local"], "rate_per_second": i},
        "whatsapp": {"providers": ["local"], "rate_per_second": i,
                     "sender": {"whatsapp_number_id": str(1000 + i)}},
        "sms": None if i % 3 == 0 else {"providers": ["local"], "rate_per_second": i,
                                        "sender": {"sms_sender_id": f"CLINIC{i}"}}},
        "credentials": {"zeptomail": {"api_key": f"concurrent-key-{i:04d}"}}}


def _invalid_body(i: int) -> dict[str, Any]:
    body = _valid_body(i)
    body["channels"]["whatsapp"]["sender"]["whatsapp_number_id"] = "x"
    return body


NO_SENDER = {"from_address": None, "from_name": None, "reply_to": None,
             "whatsapp_number_id": None, "sms_sender_id": None}


def _view(body: dict[str, Any]) -> dict[str, Any]:
    """What GET shows after `body` alone was applied (to a clinic whose other state it names)."""
    channels = {}
    for name, chain in body["channels"].items():
        if chain is None:
            channels[name] = {"channel": name, "providers": ["local"], "sender": NO_SENDER,
                              "rate_per_second": None, "retry_unknown": False, "source": "default"}
        else:
            channels[name] = {"channel": name, "providers": chain["providers"],
                              "sender": {**NO_SENDER, **chain.get("sender", {})},
                              "rate_per_second": chain.get("rate_per_second"),
                              "retry_unknown": chain.get("retry_unknown", False),
                              "source": "clinic"}
    return {"channels": channels, "credentials": {
        name: {field: "****" + value[-4:] for field, value in fields.items()}
        for name, fields in body["credentials"].items()}}


def test_concurrent_puts_never_mix(capi, clinic_factory, sa_token):
    clinic = clinic_factory()["id"]
    rng = random.Random(11)
    plan = [(i, rng.random() < 0.7) for i in range(1, 61)]

    def one(item: tuple[int, bool]) -> int:
        i, valid = item
        body = _valid_body(i) if valid else _invalid_body(i)
        return _put(capi, sa_token, clinic, body).status_code  # type: ignore[no-any-return]

    with ThreadPoolExecutor(max_workers=12) as pool:
        codes = list(pool.map(one, plan))
    assert all(code < 500 for code in codes), codes
    assert all(code == (200 if valid else 400) for code, (_, valid) in zip(codes, plan, strict=True))
    shown = _config(capi, sa_token, clinic)
    winner = shown["channels"]["email"]["rate_per_second"]
    assert dict(plan)[winner], f"the final config is from an invalid PUT ({winner})"
    assert shown == _view(_valid_body(winner))
