"""Provider credentials (domain/tenancy/credentials.py): encrypted with AES-256-GCM under the
clinic and provider, rotated by `carewire keys rotate`, never shown or written anywhere in the
clear. No route exposes them yet, so the domain layer runs in process against the session's real
database, and the CLI runs as a real process."""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from domain import settings
from domain.errors import Forbidden, Invalid, NotFound
from domain.tenancy.credentials import (
    CredentialsUnavailable,
    get_credentials,
    masked_credentials,
    put_credentials,
)
from tests import servers


def _entry(kid: str) -> str:
    return f"{kid}:{base64.b64encode(secrets.token_bytes(32)).decode()}"


@contextmanager
def keys_in_process(value: str) -> Iterator[None]:
    """The in-process domain layer reads CAREWIRE_CREDENTIALS_KEY as `value` inside the block."""
    import os

    before = os.environ.get("CAREWIRE_CREDENTIALS_KEY")
    os.environ["CAREWIRE_CREDENTIALS_KEY"] = value
    settings.get.cache_clear()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("CAREWIRE_CREDENTIALS_KEY", None)
        else:
            os.environ["CAREWIRE_CREDENTIALS_KEY"] = before
        settings.get.cache_clear()


@pytest.fixture(autouse=True)
def session_key(env) -> Iterator[None]:
    """The session's key (the server's) is the in-process one too."""
    with keys_in_process(env["CAREWIRE_CREDENTIALS_KEY"]):
        yield


@pytest.fixture(scope="module")
def house(clinic_factory, member_factory, domain_layer, sa_token) -> dict[str, Any]:
    a, b = clinic_factory(), clinic_factory()
    admin = member_factory(a["id"], "CLINIC_ADMIN", tag="cred-admin")
    doctor = member_factory(a["id"], "DOCTOR", tag="cred-doc")
    return {"a": uuid.UUID(a["id"]), "b": uuid.UUID(b["id"]),
            "sa": domain_layer.principal(sa_token),
            "admin": domain_layer.principal(admin["token"]),
            "doctor": domain_layer.principal(doctor["token"])}


def _row(db, clinic_id: uuid.UUID, provider: str) -> dict[str, Any]:
    rows = db.fetch("SELECT * FROM clinic_credentials WHERE clinic_id = $1 AND provider = $2",
                    clinic_id, provider)
    assert len(rows) == 1
    return rows[0]


@pytest.fixture
def spoiled(db) -> Iterator[list[tuple[uuid.UUID, str]]]:
    """Rows a test corrupts, deleted after it: `carewire keys rotate` in this session's database
    must find only rows it can read (but for the one its own test plants)."""
    rows: list[tuple[uuid.UUID, str]] = []
    yield rows
    for clinic_id, provider in rows:
        db.fetch("DELETE FROM clinic_credentials WHERE clinic_id = $1 AND provider = $2",
                 clinic_id, provider)


def _refused(layer, coro: Any, kind: type[Exception]) -> Exception:
    with pytest.raises(kind) as caught:
        layer.run(coro)
    return caught.value


def test_round_trip_stores_only_ciphertext_under_the_current_key(domain_layer, db, house, env):
    fields = {"api_key": "zepto-" + secrets.token_hex(16), "from_address": "desk@clinic.test"}
    masked = domain_layer.run(put_credentials(house["admin"], house["a"], "zeptomail", fields))
    assert domain_layer.run(get_credentials(house["a"], "zeptomail")) == fields
    row = _row(db, house["a"], "zeptomail")
    assert row["key_id"] == env["CAREWIRE_CREDENTIALS_KEY"].split(":")[0]
    assert len(row["nonce"]) == 12
    for value in fields.values():
        assert value.encode() not in row["ciphertext"]
        assert value not in str(row)
    assert masked == {"api_key": "****" + fields["api_key"][-4:], "from_address": "****test"}
    # a second put replaces the fields, with a fresh nonce
    again = {"api_key": "zepto-" + secrets.token_hex(16)}
    domain_layer.run(put_credentials(house["admin"], house["a"], "zeptomail", again))
    assert domain_layer.run(get_credentials(house["a"], "zeptomail")) == again
    assert _row(db, house["a"], "zeptomail")["nonce"] != row["nonce"]


def test_ciphertext_copied_to_another_clinic_or_provider_does_not_decrypt(domain_layer, db, house,
                                                                         spoiled):
    secret = {"api_key": "copied-" + secrets.token_hex(12)}
    domain_layer.run(put_credentials(house["sa"], house["a"], "meta", secret))
    domain_layer.run(put_credentials(house["sa"], house["b"], "meta", {"api_key": "b-own-value-1"}))
    domain_layer.run(put_credentials(house["sa"], house["a"], "fcm", {"api_key": "a-fcm-value-1"}))
    for clinic_id, provider in ((house["b"], "meta"), (house["a"], "fcm")):
        spoiled.append((clinic_id, provider))
        db.fetch("""UPDATE clinic_credentials t SET key_id = s.key_id, nonce = s.nonce,
                        ciphertext = s.ciphertext
                    FROM clinic_credentials s
                    WHERE s.clinic_id = $1 AND s.provider = 'meta'
                      AND t.clinic_id = $2 AND t.provider = $3""", house["a"], clinic_id, provider)
        error = _refused(domain_layer, get_credentials(clinic_id, provider), CredentialsUnavailable)
        assert f"provider {provider}" in error.message and "do not decrypt" in error.message
        assert secret["api_key"] not in error.message
    assert domain_layer.run(get_credentials(house["a"], "meta")) == secret  # the original is intact


@pytest.mark.parametrize("column", ["ciphertext", "nonce"])
def test_a_tampered_byte_does_not_decrypt(domain_layer, db, house, column, spoiled):
    provider = f"tamper_{column}"
    spoiled.append((house["a"], provider))
    domain_layer.run(put_credentials(house["sa"], house["a"], provider, {"token": "t-" + "x" * 20}))
    value = bytearray(_row(db, house["a"], provider)[column])
    value[len(value) // 2] ^= 0x01
    db.fetch(f"UPDATE clinic_credentials SET {column} = $3 WHERE clinic_id = $1 AND provider = $2",
             house["a"], provider, bytes(value))
    error = _refused(domain_layer, get_credentials(house["a"], provider), CredentialsUnavailable)
    assert "altered" in error.message


def test_masked_shows_the_last_four_characters_only(domain_layer, house, clinic_factory):
    fields = {"access_key_id": "AKIA" + "Q" * 12 + "WXYZ", "secret": "s3cr3t-" + secrets.token_hex(8),
              "pin": "123456"}
    domain_layer.run(put_credentials(house["sa"], house["a"], "ses", fields))
    shown = domain_layer.run(masked_credentials(house["admin"], house["a"]))["ses"]
    assert shown == {"access_key_id": "****WXYZ", "secret": "****" + fields["secret"][-4:],
                     "pin": "****"}  # too short for its last 4 to be shown
    for value in fields.values():
        assert value not in str(shown)
    # a member who may read the settings of another clinic sees nothing of this one's
    other = uuid.UUID(clinic_factory()["id"])
    assert domain_layer.run(masked_credentials(house["sa"], other)) == {}


def test_who_may_store_credentials_and_what_bad_input_gets(domain_layer, db, house):
    fields = {"api_key": "allowed-only-" + secrets.token_hex(8)}
    _refused(domain_layer, put_credentials(house["doctor"], house["a"], "smtp", fields), Forbidden)
    error = _refused(domain_layer, put_credentials(house["admin"], house["b"], "smtp", fields),
                     NotFound)
    assert error.hidden  # another clinic's looks like none
    _refused(domain_layer, put_credentials(house["sa"], uuid.uuid4(), "smtp", fields), NotFound)
    _refused(domain_layer, masked_credentials(house["admin"], house["b"]), NotFound)
    for provider, bad, field in (("Bad Provider", fields, "provider"), ("smtp", {}, "credentials"),
                                 ("smtp", {"api_key": ""}, "credentials.api_key"),
                                 ("smtp", {"API KEY": "v" * 10}, "credentials"),
                                 ("smtp", {"api_key": "v" * 10 + "\x00"}, "credentials.api_key")):
        error = _refused(domain_layer, put_credentials(house["sa"], house["a"], provider, bad), Invalid)
        assert [e.field for e in error.errors] == [field]
    # none of the refused writes stored anything for these clinics (other tests store smtp's)
    assert not db.fetch("SELECT 1 FROM clinic_credentials WHERE provider = 'smtp' "
                        "AND clinic_id = ANY($1::uuid[])", [house["a"], house["b"]])
    _refused(domain_layer, get_credentials(house["a"], "smtp"), NotFound)


def test_without_a_key_nothing_is_stored_or_read(domain_layer, house):
    domain_layer.run(put_credentials(house["sa"], house["a"], "sns", {"secret": "before-no-key"}))
    with keys_in_process(""):
        error = _refused(domain_layer, put_credentials(house["sa"], house["a"], "sns", {"secret": "v" * 9}),
                         CredentialsUnavailable)
        assert "CAREWIRE_CREDENTIALS_KEY is not set" in error.message
        _refused(domain_layer, get_credentials(house["a"], "sns"), CredentialsUnavailable)
    assert domain_layer.run(get_credentials(house["a"], "sns")) == {"secret": "before-no-key"}


def test_a_bad_key_setting_is_refused_without_echoing_the_key():
    base = {"DATABASE_URL": "postgresql://x/y", "REDIS_URL": "redis://x", "CAREWIRE_JWT_SECRET": "j" * 40}
    short = base64.b64encode(b"k" * 16).decode()
    for value, says in ((f"k1:{short}", "32 bytes"), ("k1:not base64!", "not base64"),
                        ("nokid", "kid:base64key"), (f"{_entry('k1')},{_entry('k1')}", "twice")):
        with pytest.raises(settings.SettingsError) as caught:
            settings.from_env({**base, "CAREWIRE_CREDENTIALS_KEY": value})
        assert says in str(caught.value) and short not in str(caught.value)
    two = f"{_entry('new')},{_entry('old')}"
    assert list(settings.credentials_keys(settings.from_env(
        {**base, "CAREWIRE_CREDENTIALS_KEY": two}).credentials_key)) == ["new", "old"]


def test_the_embedded_default_keeps_its_generated_key(tmp_path: Path):
    from gateway.runtime import _credentials_key

    first = _credentials_key(tmp_path)
    assert _credentials_key(tmp_path) == first
    assert len(settings.credentials_keys([first])) == 1
    assert (tmp_path / "credentials_key").stat().st_mode & 0o077 == 0
    assert _credentials_key(tmp_path / "other") != first


def test_keys_generate_and_a_refused_rotation(env):
    done = servers.cli(env, "keys", "generate", "--key-id", "fresh1")
    assert done.returncode == 0, done.stderr
    assert list(settings.credentials_keys([done.stdout.strip()])) == ["fresh1"]
    assert servers.cli(env, "keys", "generate", "--key-id", "bad:id").returncode == 2
    for keys, says in (("", "CAREWIRE_CREDENTIALS_KEY is not set"), ("k1:short", "not base64")):
        done = servers.cli({**env, "CAREWIRE_CREDENTIALS_KEY": keys}, "keys", "rotate")
        assert done.returncode == 2 and says in done.stderr and "Traceback" not in done.stderr, \
            done.stderr


def _rotate(env, keys: str, *, code: int = 0) -> str:
    done = servers.cli({**env, "CAREWIRE_CREDENTIALS_KEY": keys}, "keys", "rotate", "--batch-size", "2")
    assert done.returncode == code, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_keys_rotate_re_encrypts_everything_once(domain_layer, db, house, env, spoiled):
    old = env["CAREWIRE_CREDENTIALS_KEY"]
    new = _entry("rot2")
    expected = {}
    for n in range(5):
        fields = {"api_key": f"rotate-{n}-" + secrets.token_hex(8)}
        domain_layer.run(put_credentials(house["sa"], house["b"], f"rot{n}", fields))
        expected[f"rot{n}"] = fields
    # a row under a key nobody holds any more: reported, left as it is, the rest still rotate
    domain_layer.run(put_credentials(house["sa"], house["b"], "lost", {"api_key": "l" * 12}))
    spoiled.append((house["b"], "lost"))
    db.fetch("UPDATE clinic_credentials SET key_id = 'gone' WHERE clinic_id = $1 AND provider = 'lost'",
             house["b"])
    before = {r["provider"]: r for r in db.fetch(
        "SELECT * FROM clinic_credentials WHERE clinic_id = $1", house["b"])}
    try:
        out = _rotate(env, f"{new},{old}", code=1)
        rotated = int(out.split("credentials rotated: ")[1].split(",")[0])
        assert rotated >= 5 and "unreadable: 1" in out
        assert f"unreadable: clinic {house['b']} provider lost (key id gone)" in out
        assert db.fetch("SELECT nonce FROM clinic_credentials WHERE clinic_id = $1 AND provider = 'lost'",
                        house["b"])[0]["nonce"] == before["lost"]["nonce"]
        db.fetch("DELETE FROM clinic_credentials WHERE clinic_id = $1 AND provider = 'lost'", house["b"])
        del before["lost"]
        with keys_in_process(f"{new},{old}"):
            for provider, fields in expected.items():
                assert domain_layer.run(get_credentials(house["b"], provider)) == fields
        after = {r["provider"]: r for r in db.fetch(
            "SELECT * FROM clinic_credentials WHERE clinic_id = $1", house["b"])}
        assert {r["key_id"] for r in after.values()} == {"rot2"}
        assert all(after[p]["nonce"] != before[p]["nonce"] for p in expected)
        # the old key can go: everything decrypts with the new one alone
        with keys_in_process(new):
            for provider, fields in expected.items():
                assert domain_layer.run(get_credentials(house["b"], provider)) == fields
        # and without the new key, a clear refusal names the missing key id
        error = _refused(domain_layer, get_credentials(house["b"], "rot0"), CredentialsUnavailable)
        assert "key id rot2" in error.message
        # a re-run rotates nothing and touches nothing
        out = _rotate(env, f"{new},{old}")
        assert "credentials rotated: 0," in out
        again = {r["provider"]: r for r in db.fetch(
            "SELECT * FROM clinic_credentials WHERE clinic_id = $1", house["b"])}
        assert {p: (r["nonce"], r["updated_at"]) for p, r in again.items()} == \
            {p: (r["nonce"], r["updated_at"]) for p, r in after.items()}
    finally:  # back under the session's key, for the server and the other tests of this run
        _rotate(env, f"{old},{new}")
    for provider, fields in expected.items():
        assert domain_layer.run(get_credentials(house["b"], provider)) == fields


def test_keys_rotate_never_overwrites_a_put_made_meanwhile(domain_layer, db, house, env):
    """The row is locked while the rotation reads it; a put under the new key lands before the
    rotation's write, which then finds the row changed and leaves it (a re-run has nothing to do)."""
    old, new = env["CAREWIRE_CREDENTIALS_KEY"], _entry("race2")
    meanwhile = {"api_key": "written-meanwhile-" + secrets.token_hex(6)}
    with keys_in_process(f"{new},{old}"):  # what an app process already on the new key writes
        domain_layer.run(put_credentials(house["sa"], house["b"], "raced", meanwhile))
    donor = _row(db, house["b"], "raced")
    domain_layer.run(put_credentials(house["sa"], house["b"], "raced", {"api_key": "o" * 12}))

    async def race() -> tuple[int, str]:
        conn = await asyncpg.connect(env["DATABASE_URL"])
        watch = await asyncpg.connect(env["DATABASE_URL"])
        try:
            async with conn.transaction():
                await conn.execute("SELECT 1 FROM clinic_credentials WHERE clinic_id = $1 AND "
                                   "provider = 'raced' FOR UPDATE", house["b"])
                proc = await asyncio.create_subprocess_exec(
                    *servers.CAREWIRE, "keys", "rotate",
                    env={**env, "CAREWIRE_CREDENTIALS_KEY": f"{new},{old}"},
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
                deadline = time.monotonic() + 60
                while not await watch.fetchval(  # not `conn`: a transaction sees one snapshot
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND query LIKE 'UPDATE clinic_credentials SET key_id%'"):
                    if time.monotonic() > deadline:
                        proc.kill()
                        raise AssertionError(f"rotation never blocked: {await proc.communicate()}")
                    await asyncio.sleep(0.05)  # polling a condition, bounded by the deadline
                await conn.execute("UPDATE clinic_credentials SET key_id = $3, nonce = $4, ciphertext = $5 "
                                   "WHERE clinic_id = $1 AND provider = $2", house["b"], "raced",
                                   donor["key_id"], donor["nonce"], donor["ciphertext"])
            out, _ = await proc.communicate()
            return proc.returncode or 0, out.decode()
        finally:
            await conn.close()
            await watch.close()

    try:
        code, out = servers.run(race())
        assert code == 1 and "changed meanwhile: 1" in out and "run `carewire keys rotate` again" in out, out
        with keys_in_process(f"{new},{old}"):
            assert domain_layer.run(get_credentials(house["b"], "raced")) == meanwhile
        assert "credentials rotated: 0, " in _rotate(env, f"{new},{old}")
    finally:
        _rotate(env, f"{old},{new}")
    assert domain_layer.run(get_credentials(house["b"], "raced")) == meanwhile


def test_a_canary_secret_appears_in_no_log_audit_row_or_event(domain_layer, db, house, server,
                                                             caplog, env):
    canary = "CANARY-" + secrets.token_hex(16)
    caplog.set_level(logging.DEBUG)
    domain_layer.run(put_credentials(house["admin"], house["a"], "canary_provider",
                                     {"api_key": canary, "sender_id": canary + "-2"}))
    _refused(domain_layer, put_credentials(house["admin"], house["a"], "canary_provider",
                                           {"api_key": canary, "Bad Name": canary}), Invalid)
    rotated = servers.cli(env, "keys", "rotate")
    assert domain_layer.run(get_credentials(house["a"], "canary_provider"))["api_key"] == canary
    audit = db.fetch("""SELECT detail FROM audit_log WHERE clinic_id = $1
                        AND resource_type = 'clinic_credentials' AND resource_id = 'canary_provider'""",
                     house["a"])
    assert len(audit) == 1 and '"api_key"' in str(audit[0]["detail"]) \
        and '"sender_id"' in str(audit[0]["detail"])
    assert not db.fetch("SELECT 1 FROM audit_log a WHERE position($1 in a::text) > 0", canary)
    assert not db.fetch("SELECT 1 FROM events e WHERE position($1 in e::text) > 0", canary)
    assert canary not in server.log.read_text(errors="replace")
    assert canary not in caplog.text
    assert canary not in rotated.stdout + rotated.stderr


def test_put_credentials_statement_count(domain_layer, house):
    """BEGIN, the upsert, the audit row's append (lock, chain head, insert), COMMIT and the
    pool's reset (see tests/test_statement_counts.py): storing credentials reads nothing first,
    not even the clinic (the upsert selects it)."""
    def put() -> Any:
        return put_credentials(house["admin"], house["a"], "counted", {"api_key": "c" * 12})

    domain_layer.count(put())
    result, statements = domain_layer.count(put())
    assert not isinstance(result, BaseException), result
    assert len(statements) == 7, statements
