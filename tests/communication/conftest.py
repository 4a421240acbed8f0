"""A carewire server of its own for the communication tests: the session's database and Redis,
a plain `carewire serve` with every log line kept (DEBUG) so the canary test can search all of
it. The providers are the real adapters of domain/communication/providers/."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests import servers
from tests.conftest import Api, Env


@pytest.fixture(scope="session")
def comm_server(env: Env) -> Iterator[servers.Server]:
    srv = servers.Server({**env, "CAREWIRE_LOG_LEVEL": "DEBUG"})
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def capi(comm_server: servers.Server) -> Iterator[Api]:
    with httpx.Client(base_url=comm_server.base_url + "/api/v1", timeout=30) as client:
        yield Api(client)
