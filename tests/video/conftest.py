"""Video's session: a local OpenVidu (LiveKit server API) fake and a carewire server pointed at
it, with Jitsi as the fallback. Tests that break OpenVidu on purpose do it to a clinic of their
own with its own fake (per-clinic credentials), so the deployment's breaker stays closed for
everyone else."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests import servers
from tests.billing.adapter_calls import configure  # noqa: F401 - in-process adapters' settings
from tests.conftest import Api, Db, Env
from tests.video.fakes.livekit import LiveKitFake
from tests.video.world import Clinic, make_clinic

#: A provider call gives up after this long here (a hanging fake fails over quickly).
TIMEOUT = "1.5"


@pytest.fixture(scope="session")
def openvidu() -> Iterator[LiveKitFake]:
    """The deployment's OpenVidu."""
    fake = LiveKitFake().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def video_env(env: Env, openvidu: LiveKitFake) -> Env:
    e = Env(env)
    e.update(openvidu.env())
    e.update(CAREWIRE_VIDEO_TIMEOUT_SECONDS=TIMEOUT,
             # a clinic's own OpenVidu may be a loopback fake here (production: https only)
             CAREWIRE_VIDEO_URL_PATTERN=r"^https?://127\.0\.0\.1:\d+$",
             CAREWIRE_BREAKER_THRESHOLD="2", CAREWIRE_BREAKER_OPEN_SECONDS="2")
    return e


@pytest.fixture(scope="session")
def video_server(video_env: Env) -> Iterator[servers.Server]:
    srv = servers.Server(video_env)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def vapi(video_server: servers.Server) -> Iterator[Api]:
    """The API of the server that reaches the OpenVidu fake."""
    with httpx.Client(base_url=video_server.base_url + "/api/v1", timeout=30) as client:
        yield Api(client)


# --- video: sessions ---

@pytest.fixture(scope="session")
def world(api: Api, vapi: Api, db: Db, sa_token: str, clinic_factory: Any,
          member_factory: Any) -> Clinic:
    """The video suites' clinic (no prepayment), on the server in front of the OpenVidu fake."""
    return make_clinic(api, vapi, db, sa_token, clinic_factory, member_factory)


@pytest.fixture(scope="session")
def paid_world(api: Api, vapi: Api, db: Db, sa_token: str, clinic_factory: Any,
               member_factory: Any) -> Clinic:
    """A clinic whose video visits need prepayment (402 until paid at the desk)."""
    return make_clinic(api, vapi, db, sa_token, clinic_factory, member_factory, paid=True)


@pytest.fixture(scope="session")
def other_world(api: Api, vapi: Api, db: Db, sa_token: str, clinic_factory: Any,
                member_factory: Any) -> Clinic:
    """Another clinic: its people never reach `world`'s sessions (404)."""
    return make_clinic(api, vapi, db, sa_token, clinic_factory, member_factory)
