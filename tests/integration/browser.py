"""Headless Chromium (Debian's package) driven over the DevTools protocol, for the pages' tests.

One browser, one page: navigate, evaluate JavaScript in the page, read requests the
page sent, take screenshots. Started with the flags that keep it quiet on a machine
without a network (no background networking, component updates, sync or QUIC) and,
as root, ``--no-sandbox`` (Chromium refuses to run as root with its sandbox).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

__all__ = ["Browser", "chromium", "check_png"]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    def __init__(self, workdir: Path, *, width: int = 1280, height: int = 900) -> None:
        from websockets.sync.client import connect

        self.width, self.height = width, height
        self.profile = workdir / "chromium-profile"
        self.profile.mkdir(parents=True, exist_ok=True)
        args = [
            chromium(),
            "--headless",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-extensions",
            "--mute-audio",
            "--hide-scrollbars",
            f"--user-data-dir={self.profile}",
            "--remote-debugging-port=0",
            "--remote-debugging-address=127.0.0.1",
            f"--window-size={width},{height}",
            "about:blank",
        ]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")
        self.log = open(workdir / "chromium.log", "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start: {(workdir / 'chromium.log').read_text()[-2000:]}")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        pages = [t for t in httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json() if t["type"] == "page"]
        self._exits = contextlib.ExitStack()
        self.ws = self._exits.enter_context(connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=30))
        self._id = 0
        self.events: list[dict] = []
        for domain in ("Page", "Runtime", "Network"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def call(self, method: str, timeout: float = 60, **params: Any) -> dict:
        self._id += 1
        my = self._id
        self.ws.send(json.dumps({"id": my, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if msg.get("id") == my:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def _wait_event(self, name: str, timeout: float, since: int) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for ev in self.events[since:]:
                if ev.get("method") == name:
                    return ev
            since = len(self.events)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {name} in {timeout}s")
            try:
                self.events.append(json.loads(self.ws.recv(timeout=left)))
            except TimeoutError:
                raise TimeoutError(f"no {name} in {timeout}s") from None

    def goto(self, url: str, timeout: float = 60) -> None:
        mark = len(self.events)
        self.call("Page.navigate", url=url)
        self._wait_event("Page.loadEventFired", timeout, mark)

    def submit_and_wait(self, js: str, timeout: float = 60) -> None:
        """Run ``js`` (which submits a form or follows a link) and wait for the next page."""
        mark = len(self.events)
        self.eval(js)
        self._wait_event("Page.loadEventFired", timeout, mark)

    def eval(self, expression: str, timeout: float = 60) -> Any:
        res = self.call(
            "Runtime.evaluate", timeout=timeout, expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expression}: {res['exceptionDetails']}")
        return res["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60) -> Any:
        """Poll ``expression`` until it is truthy (the page's own scripts update the DOM meanwhile)."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.eval(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expression} still falsy after {timeout}s")
            try:
                self.events.append(json.loads(self.ws.recv(timeout=0.25)))
            except TimeoutError:
                pass

    def url(self) -> str:
        return self.eval("location.href")

    def requests(self, method: str, path: str) -> list[dict]:
        """Requests the page sent (``Network.requestWillBeSent``) with this method and URL path."""
        out = []
        for ev in self.events:
            if ev.get("method") == "Network.requestWillBeSent":
                req = ev["params"]["request"]
                if req["method"] == method and httpx.URL(req["url"]).path == path:
                    out.append(req)
        return out

    def cookies(self) -> list[dict]:
        return self.call("Network.getCookies")["cookies"]

    def screenshot(self, path: Path) -> bytes:
        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        path.write_bytes(data)
        return data

    def close(self) -> None:
        try:
            self._exits.close()
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, 15)
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, 9)
                    self.proc.wait(timeout=10)
            self.log.close()
            shutil.rmtree(self.profile, ignore_errors=True)


def check_png(data: bytes, width: int, height: int) -> None:
    """A PNG of the expected size that shows something (not one flat colour)."""
    from PIL import Image

    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    img = Image.open(io.BytesIO(data)).convert("RGB")
    assert img.size == (width, height), img.size
    colours = img.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 20, "a blank or nearly blank screenshot"
    dominant = max(n for n, _ in colours)
    assert dominant < 0.97 * width * height, "the screenshot is one flat colour"
