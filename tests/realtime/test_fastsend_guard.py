"""realtime/fastsend_guard.py notices a library that moved under the bypass, and install() then
leaves the stock python-engineio path in place."""

from __future__ import annotations

import pytest
import socketio
from engineio.async_drivers import asgi as eio_asgi

from realtime import fastsend, fastsend_guard


def test_a_changed_engineio_driver_table_turns_the_bypass_off(monkeypatch: pytest.MonkeyPatch):
    sio = socketio.AsyncServer(async_mode="asgi")
    monkeypatch.setitem(eio_asgi._async, "websocket", object)  # as if engineio renamed it
    assert fastsend_guard.problems(sio.eio) == [
        "engineio's asgi driver no longer names WebSocket as its websocket class"]
    assert fastsend.install(sio) is False
    assert not fastsend.installed(sio)


def test_a_version_other_than_the_verified_one_is_named(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(fastsend_guard.TESTED, "uvicorn", "0.0.1")
    found = fastsend_guard.problems()
    assert len(found) == 1 and found[0].startswith("uvicorn ") and "verified on 0.0.1" in found[0]
