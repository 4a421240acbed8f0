"""Session-wide real services: one database, one Redis, one carewire server."""

from __future__ import annotations

import base64
import os
import secrets
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from tests import servers

SA_EMAIL = "root@carewire.test"
SA_PASSWORD = "root-password-1"


#: The shared server's Jitsi app secret (tests decode join tokens with it).
JITSI_SECRET = secrets.token_urlsafe(32)


class Env(dict[str, str]):
    """The environment every carewire process of this run gets."""


@pytest.fixture(scope="session")
def sns_host() -> Iterator[Any]:
    """SNS's certificate host for the run (tests/communication/fakes/webhooks.py): the server's
    webhook settings point at it."""
    from tests.communication.fakes import webhooks

    with webhooks.sns_host() as host:
        yield host


@pytest.fixture(scope="session")
def env(sns_host: Any) -> Iterator[Env]:
    with servers.database() as dsn, servers.redis() as redis_url:
        e = Env(os.environ)
        e.update(
            DATABASE_URL=dsn,
            REDIS_URL=redis_url,
            CAREWIRE_JWT_SECRET=secrets.token_urlsafe(48),
            CAREWIRE_CREDENTIALS_KEY=f"t1:{base64.b64encode(secrets.token_bytes(32)).decode()}",
            CAREWIRE_REDIS_PREFIX=f"cwtest-{secrets.token_hex(4)}:",
            CAREWIRE_LOGIN_ATTEMPTS_PER_IP="100000",
            CAREWIRE_REGISTER_ATTEMPTS_PER_IP="100000",
            CAREWIRE_UNSUBSCRIBE_ATTEMPTS_PER_IP="100000",
            CAREWIRE_LOG_LEVEL="WARNING",
            # Session fixtures log in once; the whole suite outlives the 15-minute default.
            # Tests of expiry start their own server with a short lifetime.
            CAREWIRE_ACCESS_TOKEN_TTL_SECONDS="86400",
            # No test reaches a real provider: a worker on this database (some tests start
            # them) would otherwise send the test sends queued here to the internet. Port 9
            # (discard) refuses; tests that deliver point these at their local servers.
            **{f"CAREWIRE_{name}": "http://127.0.0.1:9" for name in (
                "ZEPTOMAIL_URL", "FCM_URL", "GOOGLE_TOKEN_URL", "WHATSAPP_URL", "AWS_ENDPOINT_URL")},
            **sns_host.settings(),
            # Video on the shared server is Jitsi only (tokens are signed locally: no network);
            # tests/video starts its own server with the OpenVidu fake in front.
            CAREWIRE_JITSI_DOMAIN="meet.carewire.test",
            CAREWIRE_JITSI_APP_ID="carewire-test",
            CAREWIRE_JITSI_APP_SECRET=JITSI_SECRET,
        )
        done = servers.cli(e, "migrate")
        assert done.returncode == 0, done.stdout + done.stderr
        done = servers.cli(e, "create-admin", "--email", SA_EMAIL, "--password", SA_PASSWORD)
        assert done.returncode == 0, done.stdout + done.stderr
        yield e


@pytest.fixture(scope="session")
def server(env: Env) -> Iterator[servers.Server]:
    srv = servers.Server(env)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def http(server: servers.Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url + "/api/v1", timeout=30) as client:
        yield client


class Api:
    """A thin client: the tests speak HTTP, nothing more."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http

    def login(self, email: str, password: str) -> dict[str, Any]:
        r = self.http.post("/auth/login", json={"email": email, "password": password})
        assert r.status_code == 200, r.text
        return r.json()

    def token(self, email: str, password: str) -> str:
        return str(self.login(email, password)["access_token"])

    def as_(self, token: str | None, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = dict(kw.pop("headers", {}) or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.http.request(method, path, headers=headers, **kw)


@pytest.fixture(scope="session")
def api(http: httpx.Client) -> Api:
    return Api(http)


@pytest.fixture(scope="session")
def sa_token(api: Api) -> str:
    return api.token(SA_EMAIL, SA_PASSWORD)


def unique_email(tag: str = "user") -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}@example.test"


class Db:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        async def go() -> list[dict[str, Any]]:
            conn = await asyncpg.connect(self.dsn)
            try:
                return [dict(r) for r in await conn.fetch(sql, *args)]
            finally:
                await conn.close()

        return servers.run(go())  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def db(env: Env) -> Db:
    return Db(env["DATABASE_URL"])


@pytest.fixture(scope="session")
def clinic_factory(api: Api, sa_token: str) -> Any:
    def make(name: str | None = None, **settings: Any) -> dict[str, Any]:
        r = api.as_(sa_token, "POST", "/clinics", json={
            "name": name or f"Clinic {uuid.uuid4().hex[:6]}", "timezone": "Asia/Kolkata",
            "settings": settings,
        })
        assert r.status_code == 201, r.text
        clinic = r.json()
        locations = []
        for loc in ("North", "South"):
            r = api.as_(sa_token, "POST", f"/clinics/{clinic['id']}/locations",
                        json={"name": f"{loc} wing", "address": f"{loc} street 1"})
            assert r.status_code == 201, r.text
            locations.append(r.json())
        clinic["locations"] = locations
        return clinic

    return make


@pytest.fixture(scope="session")
def member_factory(api: Api, sa_token: str) -> Any:
    def make(clinic_id: str, role: str, *, location_id: str | None = None,
             password: str | None = "member-password-1", tag: str = "m") -> dict[str, Any]:
        body: dict[str, Any] = {"email": unique_email(tag), "name": f"{role.title()} {tag}",
                                "role": role, "location_id": location_id}
        if password:
            body["password"] = password
        r = api.as_(sa_token, "POST", f"/clinics/{clinic_id}/members", json=body)
        assert r.status_code == 201, r.text
        member = r.json()
        if password:
            member["password"] = password
            member["token"] = api.token(member["email"], password)
        return member

    return make


@pytest.fixture(scope="session")
def domain_layer(env: Env) -> Iterator[Any]:
    """Domain commands in this process against the session's database (tests/domain_layer.py)."""
    from tests.domain_layer import DomainLayer

    layer = DomainLayer(env)
    yield layer
    layer.close()
