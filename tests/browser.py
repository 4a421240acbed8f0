"""Headless Chromium for page tests, driven over the Chrome DevTools Protocol.

Debian's `chromium` package (/usr/bin/chromium), no browser download and no extra Python
package: the CDP websocket is spoken with `websockets`, which uvicorn[standard] already brings.
`ensure_chromium()` installs the package with apt-get when it is missing (the machines start
without it; we run as root).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

CHROMIUM = Path("/usr/bin/chromium")


def ensure_chromium(timeout: float = 600) -> Path:
    """/usr/bin/chromium, installed from Debian's packages if it is not there yet."""
    if CHROMIUM.exists():
        return CHROMIUM
    if shutil.which("apt-get") is None:
        raise RuntimeError("chromium is not installed and there is no apt-get to install it; "
                           "install Debian's `chromium` package (/usr/bin/chromium) by hand")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends",
               "-o", "DPkg::Lock::Timeout=120", "chromium"]
    attempts = []
    # a fresh machine may have no package lists yet (or stale ones): update and try once more
    for cmd in (install, ["apt-get", "update", "-q", "-o", "DPkg::Lock::Timeout=120"], install):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout,
                              check=False)
        attempts.append(f"$ {' '.join(cmd)} -> exit {done.returncode}\n"
                        f"{(done.stdout + done.stderr)[-1500:]}")
        if cmd is install and done.returncode == 0 and CHROMIUM.exists():
            return CHROMIUM
    raise RuntimeError("could not install chromium with apt-get (needs root and Debian's "
                       "package lists):\n" + "\n".join(attempts))


class CdpError(RuntimeError):
    pass


class Browser:
    """One headless Chromium process with a private profile; `page()` opens a tab."""

    def __init__(self, executable: Path = CHROMIUM, start_timeout: float = 20) -> None:
        self.profile = Path(tempfile.mkdtemp(prefix="carewire-chromium-"))
        self.log = self.profile / "chromium.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [str(executable), "--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
                 "--disable-extensions", "--disable-background-networking",
                 "--disable-component-update", "--remote-debugging-address=127.0.0.1",
                 "--remote-debugging-port=0", f"--user-data-dir={self.profile}", "about:blank"],
                stdout=log, stderr=subprocess.STDOUT)
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + start_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited ({self.proc.returncode}):\n{self.tail()}")
            lines = port_file.read_text().split() if port_file.exists() else []
            if len(lines) == 2:
                break
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"chromium gave no DevTools port in {start_timeout}s:\n"
                                   f"{self.tail()}")
            time.sleep(0.05)  # polling for the file chromium writes once it listens
        self._stack = contextlib.ExitStack()
        self.ws: ClientConnection = self._stack.enter_context(
            connect(f"ws://127.0.0.1:{lines[0]}{lines[1]}", max_size=None, open_timeout=10))
        self._ids = itertools.count(1)
        #: CDP events seen so far (console messages, exceptions...), for failure messages
        self.events: list[dict[str, Any]] = []

    def tail(self, n: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def send(self, method: str, params: dict[str, Any] | None = None, *,
             session: str | None = None, timeout: float = 10) -> dict[str, Any]:
        msg_id = next(self._ids)
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"CDP {method}: no answer in {timeout}s")
            reply = json.loads(self.ws.recv(timeout=left))
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise CdpError(f"CDP {method}: {reply['error']}")
                return dict(reply.get("result", {}))
            if "method" in reply:
                self.events.append(reply)
                del self.events[:-200]

    def page(self, url: str = "about:blank") -> Page:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        page.send("Runtime.enable")
        page.send("Page.enable")
        if url != "about:blank":
            page.goto(url)
        return page

    def close(self) -> None:
        ws = getattr(self, "ws", None)
        if ws is not None:
            try:
                self.send("Browser.close", timeout=5)
            except Exception:
                pass
            self._stack.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Page:
    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session
        #: a JavaScript expression whose value a timed-out wait_for reports (what the page says)
        self.describe: str | None = None

    def send(self, method: str, params: dict[str, Any] | None = None, timeout: float = 10
             ) -> dict[str, Any]:
        return self.browser.send(method, params, session=self.session, timeout=timeout)

    def goto(self, url: str) -> None:
        result = self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise CdpError(f"navigate {url}: {result['errorText']}")

    def eval(self, expression: str) -> Any:
        """The expression's value (JSON-able), evaluated in the page."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise CdpError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float, interval: float = 0.02) -> tuple[Any, float]:
        """Poll `expression` until it is truthy; returns (value, seconds waited). On timeout,
        raises with the last value and the page's recent console output."""
        t0 = time.monotonic()
        last: Any = None
        while True:
            try:
                last = self.eval(expression)
            except CdpError as exc:  # e.g. the page is between documents
                last = exc
            if last and not isinstance(last, Exception):
                return last, time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                said = ""
                if self.describe:
                    try:
                        said = f"page shows: {self.eval(self.describe)!r}\n"
                    except CdpError as exc:
                        said = f"page shows: ({exc})\n"
                raise TimeoutError(f"{expression!r} not truthy after {timeout}s (last: {last!r})\n"
                                   f"{said}page console:\n{self.console()}")
            time.sleep(interval)  # polling the DOM, bounded by the deadline

    def console(self) -> str:
        out = []
        for e in self.browser.events:
            if e.get("sessionId") != self.session:
                continue
            p = e.get("params", {})
            if e["method"] == "Runtime.consoleAPICalled":
                out.append(f"console.{p.get('type')}: "
                           + " ".join(str(a.get("value", a.get("description"))) for a in p.get("args", [])))
            elif e["method"] == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                out.append(f"exception: {d.get('exception', {}).get('description') or d.get('text')}")
        return "\n".join(out[-30:]) or "(nothing)"
