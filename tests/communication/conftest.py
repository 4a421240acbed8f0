"""A carewire server of its own for the communication tests: the session's database and Redis,
the two adapters of tests/communication/registered.py registered (here too, in process), and
every log line kept (DEBUG) so the canary test can search all of it."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import httpx
import pytest

from tests import servers
from tests.communication.registered import install
from tests.conftest import Api, Env

install()


@pytest.fixture(scope="session")
def comm_server(env: Env) -> Iterator[servers.Server]:
    srv = servers.Server({**env, "CAREWIRE_LOG_LEVEL": "DEBUG"},
                         command=[sys.executable, "-m", "tests.communication.registered"])
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def capi(comm_server: servers.Server) -> Iterator[Api]:
    with httpx.Client(base_url=comm_server.base_url + "/api/v1", timeout=30) as client:
        yield Api(client)
