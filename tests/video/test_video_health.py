"""Provider choice, the OpenVidu breaker and the clinic's video provider settings.

Routes through the video server (OpenVidu fake as the deployment's, Jitsi configured); the
failover functions in process (tests/domain_layer.py) against the same database and Redis,
with the video server's settings. Clinics that break their OpenVidu on purpose use their own
fake (stored credentials), so the deployment's breaker stays closed for everyone else."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from domain import settings
from domain.communication import breakers
from domain.video import failover
from domain.video.providers.base import NotConfigured, ProviderRefused
from tests import servers
from tests.conftest import Api, Env
from tests.video.fakes.livekit import LiveKitFake

IN_PROCESS = ("CAREWIRE_CREDENTIALS_KEY", "CAREWIRE_BREAKER_THRESHOLD", "CAREWIRE_BREAKER_OPEN_SECONDS",
              "CAREWIRE_VIDEO_TIMEOUT_SECONDS", "CAREWIRE_VIDEO_URL_PATTERN", "CAREWIRE_VIDEO_PROVIDER",
              "CAREWIRE_OPENVIDU_URL", "CAREWIRE_OPENVIDU_API_KEY", "CAREWIRE_OPENVIDU_API_SECRET",
              "CAREWIRE_JITSI_DOMAIN", "CAREWIRE_JITSI_APP_ID", "CAREWIRE_JITSI_APP_SECRET",
              "CAREWIRE_JITSI_KEY_ID", "CAREWIRE_JITSI_SCHEME")


class Layer:
    """The domain layer with the video server's settings; `set(NAME=value)` changes one."""

    def __init__(self, domain_layer: Layer, monkeypatch: pytest.MonkeyPatch) -> None:
        self.domain = domain_layer
        self.monkeypatch = monkeypatch

    def run(self, coro: Any) -> Any:
        return self.domain.run(coro)

    def set(self, **values: str) -> None:
        for name, value in values.items():
            self.monkeypatch.setenv(f"CAREWIRE_{name}", value)
        settings.get.cache_clear()


@pytest.fixture
def layer(domain_layer: Layer, video_env: Env, monkeypatch: pytest.MonkeyPatch) -> Iterator[Layer]:
    for name in IN_PROCESS:
        if name in video_env:
            monkeypatch.setenv(name, video_env[name])
        else:
            monkeypatch.delenv(name, raising=False)
    settings.get.cache_clear()
    yield Layer(domain_layer, monkeypatch)
    monkeypatch.undo()
    settings.get.cache_clear()


@pytest.fixture(scope="module")
def house(clinic_factory: Any, member_factory: Any) -> dict[str, Any]:
    a, b = clinic_factory(), clinic_factory()
    return {"a": a["id"], "b": b["id"],
            "admin": member_factory(a["id"], "CLINIC_ADMIN", tag="vh-admin")["token"],
            "doctor": member_factory(a["id"], "DOCTOR", tag="vh-doc")["token"],
            "other": member_factory(b["id"], "CLINIC_ADMIN", tag="vh-other")["token"]}


@pytest.fixture
def own(vapi: Api, clinic_factory: Any, member_factory: Any) -> Iterator[dict[str, Any]]:
    """A clinic running its own OpenVidu (a fake of its own), stored through the route."""
    clinic = clinic_factory()
    admin = member_factory(clinic["id"], "CLINIC_ADMIN", tag="vh-own")["token"]
    fake = LiveKitFake().start()
    r = vapi.as_(admin, "PUT", f"/clinics/{clinic['id']}/video/credentials/openvidu",
                 json={"credentials": fake.credentials()})
    assert r.status_code == 200, r.text
    yield {"id": uuid.UUID(clinic["id"]), "admin": admin, "fake": fake}
    fake.stop()


def health(vapi: Api, token: str, clinic_id: Any) -> dict[str, Any]:
    r = vapi.as_(token, "GET", f"/clinics/{clinic_id}/video/health")
    assert r.status_code == 200, r.text
    found: dict[str, Any] = r.json()
    return {"first_choice": found["first_choice"], **{p["provider"]: p for p in found["providers"]}}


def test_health_shows_the_deployments_providers(vapi: Api, house: dict[str, Any]) -> None:
    shown = health(vapi, house["admin"], house["a"])
    assert shown["first_choice"] == "openvidu"
    assert shown["openvidu"] == {"provider": "openvidu", "configured": True, "own": False, "healthy": True,
                                 "breaker": {"state": "closed", "failure_count": 0, "opened_at": None}}
    # the deployment's Jitsi (meet.carewire.test) is configured but not reachable from here
    assert shown["jitsi"] == {"provider": "jitsi", "configured": True, "own": False, "healthy": False,
                              "breaker": None}
    path = f"/clinics/{house['a']}/video/health"
    assert vapi.as_(house["doctor"], "GET", path).status_code == 403
    r = vapi.as_(house["other"], "GET", path)
    assert r.status_code == 404 and house["a"] not in r.text
    assert vapi.as_(None, "GET", path).status_code == 401


def test_a_clinic_stores_its_own_accounts(vapi: Api, house: dict[str, Any], openvidu: LiveKitFake) -> None:
    base = f"/clinics/{house['b']}/video/credentials"
    assert vapi.as_(house["other"], "GET", f"{base}/openvidu").json() == {"provider": "openvidu",
                                                                        "credentials": {}}
    creds = {"url": openvidu.url, "api_key": openvidu.api_key, "api_secret": openvidu.api_secret}
    r = vapi.as_(house["other"], "PUT", f"{base}/openvidu", json={"credentials": creds})
    assert r.status_code == 200, r.text
    masked = r.json()["credentials"]
    assert masked["api_secret"] == "****" + openvidu.api_secret[-4:]
    assert openvidu.api_secret not in r.text
    assert vapi.as_(house["other"], "GET", f"{base}/openvidu").json()["credentials"] == masked
    shown = health(vapi, house["other"], house["b"])
    assert (shown["openvidu"]["own"], shown["openvidu"]["healthy"]) == (True, True)

    jitsi = {"domain": "meet.clinic.example", "app_id": "clinic-b", "app_secret": "s" * 32}
    r = vapi.as_(house["other"], "PUT", f"{base}/jitsi", json={"credentials": jitsi})
    assert r.status_code == 200 and r.json()["credentials"]["app_secret"] == "****ssss"
    assert health(vapi, house["other"], house["b"])["jitsi"]["own"] is True

    # another clinic's settings are not there; a doctor may not change them
    r = vapi.as_(house["admin"], "PUT", f"{base}/openvidu", json={"credentials": creds})
    assert r.status_code == 404 and house["b"] not in r.text
    r = vapi.as_(house["doctor"], "PUT", f"/clinics/{house['a']}/video/credentials/openvidu",
                 json={"credentials": creds})
    assert r.status_code == 403


@pytest.mark.parametrize(("provider", "fields", "field"), [
    ("openvidu", {"url": "https://ov.example.org", "api_key": "k"}, "credentials.api_secret"),
    ("openvidu", {"url": "https://ov.example.org", "api_key": "k", "api_secret": "s", "x": "1"},
     "credentials.x"),
    ("openvidu", {"url": "https://ov.example.org/path?q", "api_key": "k", "api_secret": "s"},
     "credentials.url"),
    ("openvidu", {"url": "http://10.0.0.1:7880", "api_key": "k", "api_secret": "s"}, "credentials.url"),
    ("jitsi", {"domain": "https://meet.example.org/", "app_id": "a", "app_secret": "s"},
     "credentials.domain"),
    ("jitsi", {"domain": "8x8.vc", "app_id": "vpaas-magic-cookie-1", "app_secret": "not a pem",
               "key_id": "k1"}, "credentials.app_secret"),
    ("zoom", {"url": "https://zoom.example.org"}, "provider"),
])
def test_bad_credentials_name_the_field(vapi: Api, house: dict[str, Any], provider: str,
                                        fields: dict[str, str], field: str) -> None:
    path = f"/clinics/{house['a']}/video/credentials/{provider}"
    r = vapi.as_(house["admin"], "PUT", path, json={"credentials": fields})
    assert r.status_code == 400, r.text
    assert field in r.text
    if provider != "zoom":
        assert vapi.as_(house["admin"], "GET", path).json()["credentials"] == {}


def test_first_choice_follows_settings_and_the_clinics_own(layer: Layer, house: dict[str, Any],
                                                           own: dict[str, Any]) -> None:
    a = uuid.UUID(house["a"])
    assert layer.run(failover.first_choice(a)) == "openvidu"
    layer.set(VIDEO_PROVIDER="jitsi")
    assert layer.run(failover.first_choice(a)) == "jitsi"
    assert layer.run(failover.first_choice(own["id"])) == "openvidu"  # its own OpenVidu says so
    layer.set(JITSI_DOMAIN="")
    assert layer.run(failover.first_choice(a)) == "openvidu"  # jitsi is not set up
    layer.set(OPENVIDU_URL="")
    with pytest.raises(NotConfigured):
        layer.run(failover.first_choice(a))
    assert layer.run(failover.first_choice(own["id"])) == "openvidu"


def test_the_breaker_opens_on_outages_and_recloses(layer: Layer, vapi: Api, house: dict[str, Any],
                                                   own: dict[str, Any], openvidu: LiveKitFake) -> None:
    fake: LiveKitFake = own["fake"]
    assert layer.run(failover.open_room(own["id"], "brk-1")) is None
    assert "brk-1" in fake.rooms and "brk-1" not in openvidu.rooms  # the clinic's own server

    fake.fail_next(1000, 503)
    assert layer.run(failover.open_room(own["id"], "brk-2")) == "openvidu unavailable: HTTP 503"
    assert layer.run(failover.open_room(own["id"], "brk-2")) == "openvidu unavailable: HTTP 503"
    hits = fake.hits
    assert layer.run(failover.open_room(own["id"], "brk-2")) == "openvidu unavailable: circuit open"
    assert fake.hits == hits  # an open breaker does not call
    fake.fail_next(0)
    # recovered, but the breaker stays open for breaker_open_seconds (2 s here)
    assert layer.run(failover.open_room(own["id"], "brk-2")) == "openvidu unavailable: circuit open"
    shown = health(vapi, own["admin"], own["id"])["openvidu"]
    # opened (half-opened once its 2 s are over: a slow machine may get there first)
    assert shown["own"] is True and shown["breaker"]["opened_at"] is not None
    assert shown["breaker"]["state"] in ("opened", "half-opened")

    # the deployment's OpenVidu is another circuit: other clinics are not moved
    assert layer.run(failover.open_room(uuid.UUID(house["a"]), "brk-deploy")) is None
    assert "brk-deploy" in openvidu.rooms

    # after the open period the next call is the trial; it succeeds and closes the breaker
    servers.eventually(lambda: layer.run(failover.open_room(own["id"], "brk-2")) is None, timeout=10)
    assert "brk-2" in fake.rooms
    assert health(vapi, own["admin"], own["id"])["openvidu"]["breaker"]["state"] == "closed"


def test_timeouts_and_refused_connections_count_too(layer: Layer, own: dict[str, Any]) -> None:
    fake: LiveKitFake = own["fake"]
    fake.hang_next(1)
    assert layer.run(failover.open_room(own["id"], "slow")) == "openvidu unavailable: timeout"
    fake.refuse(True)
    reason = layer.run(failover.open_room(own["id"], "slow"))
    assert reason is not None and reason.startswith("openvidu unavailable: connection failed")
    assert layer.run(failover.open_room(own["id"], "slow")) == "openvidu unavailable: circuit open"
    fake.refuse(False)
    # best effort: an end with OpenVidu unavailable neither raises nor calls
    hits = fake.hits
    layer.run(failover.close_room(own["id"], "openvidu", "slow"))
    assert fake.hits == hits


def test_a_refusal_propagates_and_does_not_count(layer: Layer, vapi: Api, own: dict[str, Any]) -> None:
    fake: LiveKitFake = own["fake"]
    wrong = {**fake.credentials(), "api_secret": "not-the-secret-" + "w" * 20}
    r = vapi.as_(own["admin"], "PUT", f"/clinics/{own['id']}/video/credentials/openvidu",
                 json={"credentials": wrong})
    assert r.status_code == 200
    for _ in range(3):
        with pytest.raises(ProviderRefused) as refused:
            layer.run(failover.open_room(own["id"], "refused"))
        assert refused.value.code == "unauthenticated"
    state = layer.run(breakers.state_of(failover.circuit(own["id"], True)))
    assert (state.state, state.failure_count) == ("closed", 0)
    layer.run(failover.close_room(own["id"], "openvidu", "refused"))  # logged, not raised


def test_close_room_ends_the_call(layer: Layer, house: dict[str, Any], openvidu: LiveKitFake) -> None:
    a = uuid.UUID(house["a"])
    assert layer.run(failover.open_room(a, "to-close")) is None
    layer.run(failover.close_room(a, "openvidu", "to-close"))
    assert "to-close" not in openvidu.rooms
    layer.run(failover.close_room(a, "openvidu", "to-close"))  # already gone: fine
    layer.run(failover.close_room(a, "jitsi", "to-close"))  # nothing to call


def test_concurrent_openings_make_one_room(layer: Layer, house: dict[str, Any],
                                           openvidu: LiveKitFake) -> None:
    a = uuid.UUID(house["a"])

    async def burst() -> list[str | None]:
        return list(await asyncio.gather(*(failover.open_room(a, "crowded") for _ in range(20))))

    assert layer.run(burst()) == [None] * 20
    assert openvidu.rooms_created["crowded"] == 1
    assert len([c for c in openvidu.calls if c["method"] == "CreateRoom"
                and c["request"]["name"] == "crowded"]) == 20


def test_a_concurrent_mix_of_settings_calls(vapi: Api, clinic_factory: Any, member_factory: Any,
                                            openvidu: LiveKitFake) -> None:
    """Puts of either provider's accounts, reads and health checks at once: no server error,
    and what is stored is one of the puts, whole."""
    clinic = clinic_factory()
    admin = member_factory(clinic["id"], "CLINIC_ADMIN", tag="vh-mix")["token"]
    base = f"/clinics/{clinic['id']}/video"
    secrets = ["mix-secret-" + "m" * 16 + f"-{i:02d}" for i in range(8)]
    rng = random.Random(14)

    def one(i: int) -> tuple[str, int]:
        kind = rng.choice(["openvidu", "jitsi", "read", "health"])
        if kind == "openvidu":
            body = {**openvidu.credentials(), "api_secret": secrets[i % 8]}
            r = vapi.as_(admin, "PUT", f"{base}/credentials/openvidu", json={"credentials": body})
        elif kind == "jitsi":
            body = {"domain": "meet.example.org", "app_id": f"app-{i}", "app_secret": secrets[i % 8]}
            r = vapi.as_(admin, "PUT", f"{base}/credentials/jitsi", json={"credentials": body})
        elif kind == "read":
            r = vapi.as_(admin, "GET", f"{base}/credentials/openvidu")
        else:
            r = vapi.as_(admin, "GET", f"{base}/health")
        return kind, r.status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, range(32)))
    assert all(status == 200 for _, status in results), results
    stored = vapi.as_(admin, "GET", f"{base}/credentials/openvidu").json()["credentials"]
    if any(kind == "openvidu" for kind, _ in results):
        assert stored["api_secret"] in {"****" + s[-4:] for s in secrets}
        assert stored["api_key"] == "****" + openvidu.api_key[-4:]
