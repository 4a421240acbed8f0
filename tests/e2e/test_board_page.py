"""The waiting-room board page (GET /boards/{queue_id}#token=...) in a real headless Chromium:
it shows the queue, shows a call within a second, and comes back by itself after the server
restarts, with what happened meanwhile.

The page talks to a carewire process of this module's own (same database and Redis as the
session's), so restarting it leaves the session-wide server alone. Chromium is Debian's package;
the session installs it when it is missing (see tests/browser.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import servers
from tests.browser import Browser, Page, ensure_chromium
from tests.conftest import Api
from tests.queue_fixtures import book_day, check_in, make_clinic

pytestmark = [pytest.mark.slow, pytest.mark.browser]  # headless Chromium

CALLED = "document.getElementById('called').dataset.ticket"
NEXT = "[...document.querySelectorAll('#next li[data-ticket]')].map(li => li.dataset.ticket)"
CONNECTED = "document.body.dataset.connected"


@pytest.fixture(scope="session")
def chromium() -> Path:
    try:
        return ensure_chromium()
    except (RuntimeError, OSError, TimeoutError) as exc:  # no skip: the suite must run this
        pytest.fail(f"headless Chromium is needed for the board page tests: {exc}", pytrace=False)


@pytest.fixture(scope="module")
def board_server(env) -> Iterator[servers.Server]:
    """A carewire process these tests may stop and start again on the same port."""
    srv = servers.Server(env)
    # Its own origin is not in CAREWIRE_ALLOWED_ORIGINS (a random port): the page the gateway
    # serves itself may still open its socket (same origin).
    assert srv.base_url not in env.get("CAREWIRE_ALLOWED_ORIGINS", "")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def board_api(board_server: servers.Server) -> Iterator[Api]:
    with httpx.Client(base_url=board_server.base_url + "/api/v1", timeout=30) as client:
        yield Api(client)


@pytest.fixture(scope="module")
def board(api, board_api, board_server, sa_token, clinic_factory, member_factory, chromium
          ) -> Iterator[dict[str, Any]]:
    """Five patients checked in with one doctor, and the board of that queue open in Chromium."""
    c = make_clinic(api, sa_token, clinic_factory, member_factory, doctors=1, patients=5)
    positions = [check_in(board_api, c, a) for a in book_day(board_api, c)]
    queue_id = positions[0]["queue_id"]
    r = board_api.as_(c["desk"]["token"], "POST", f"/queues/{queue_id}/board-token")
    assert r.status_code == 201, r.text
    issued = r.json()
    assert issued["url"] == f"/boards/{queue_id}#token={issued['token']}"
    with Browser(chromium) as browser:
        page = browser.page(board_server.base_url + issued["url"])
        page.describe = ("({status: document.getElementById('status').textContent, "
                         f"called: {CALLED}, next: {NEXT}, connected: {CONNECTED}}})")
        yield {"clinic": c, "queue_id": queue_id, "page": page, "browser": browser}


def waiting(api: Api, c: dict[str, Any], queue_id: str) -> list[str]:
    r = api.as_(c["desk"]["token"], "GET", f"/queues/{queue_id}")
    assert r.status_code == 200, r.text
    return [e["ticket"] for e in r.json()["entries"] if e["status"] == "waiting"]


def call_next(api: Api, c: dict[str, Any], queue_id: str) -> str:
    r = api.as_(c["desk"]["token"], "POST", f"/queues/{queue_id}/call-next")
    assert r.status_code == 200, r.text
    return str(r.json()["ticket"])


def shows_called(page: Page, ticket: str, since: float, timeout: float = 5) -> float:
    """Seconds from `since` until the page showed `ticket` as called."""
    page.wait_for(f"{CALLED} === {ticket!r}", timeout)
    return time.monotonic() - since


def test_board_shows_the_queue_and_a_call_within_a_second(board, board_api) -> None:
    page: Page = board["page"]
    c, queue_id = board["clinic"], board["queue_id"]
    expected = waiting(board_api, c, queue_id)
    assert len(expected) == 5
    page.wait_for(f"{CONNECTED} === 'true'", 15)
    page.wait_for(f"JSON.stringify({NEXT}) === {json.dumps(json.dumps(expected, separators=(',', ':')))}",
                  10)
    assert page.eval(CALLED) == ""

    t0 = time.monotonic()
    ticket = call_next(board_api, c, queue_id)
    assert ticket == expected[0]
    took = shows_called(page, ticket, t0)
    assert took < 1.0, f"the board showed the call {took:.2f}s after the REST call"
    print(f"call shown {1000 * took:.0f} ms after the REST call")
    assert page.eval(NEXT) == expected[1:]


def test_board_recovers_by_itself_after_a_server_restart(board, board_api, board_server, api
                                                         ) -> None:
    page: Page = board["page"]
    c, queue_id = board["clinic"], board["queue_id"]
    page.wait_for(f"{CONNECTED} === 'true'", 15)

    board_server.stop()
    page.wait_for(f"{CONNECTED} === 'false'", 10)  # the page noticed, and retries
    # while the board's server is down, the desk calls the next patient through another one
    missed = call_next(api, c, queue_id)
    board_server.start()  # same port
    t_up = time.monotonic()

    page.wait_for(f"{CONNECTED} === 'true' && {CALLED} === {missed!r}", 15)
    print(f"board back and up to date {time.monotonic() - t_up:.2f} s after the server was ready")
    # the socket after the restart is live: the next call shows within a second again
    t0 = time.monotonic()
    ticket = call_next(board_api, c, queue_id)
    took = shows_called(page, ticket, t0)
    assert took < 1.0, f"after the restart the board showed the call {took:.2f}s late"
    print(f"after the restart: call shown {1000 * took:.0f} ms after the REST call")
    assert page.eval(NEXT) == waiting(board_api, c, queue_id)
    assert page.eval(CONNECTED) == "true"
