"""EC2 instance metadata (IMDSv2): the instance id, and the spot interruption notice.

Only used when ``ASSEMBLAGE_INSTANCE_METADATA_URL`` is set (``fleet user-data``
sets ``http://169.254.169.254``); elsewhere nothing is probed. IMDSv2 first asks
for a session token with ``PUT /latest/api/token`` and sends it back in
``X-aws-ec2-metadata-token``. ``GET /latest/meta-data/spot/instance-action``
answers 404 until EC2 decides to interrupt the instance, then
``{"action": "terminate", "time": "2026-12-01T10:02:00Z"}`` about two minutes
ahead (``stop`` and ``hibernate`` likewise).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx

__all__ = ["Metadata", "SpotWatcher", "parse_notice"]

log = logging.getLogger(__name__)

TOKEN_TTL = 21600


class Metadata:
    """A small IMDSv2 client (a token per six hours, short timeouts: off EC2 it must fail fast)."""

    def __init__(self, base_url: str, *, timeout: float = 2.0) -> None:
        self.base = base_url.rstrip("/")
        self.client = httpx.Client(timeout=timeout, trust_env=False)  # never through a proxy
        self._token: tuple[str, float] | None = None

    def _headers(self) -> dict[str, str]:
        if self._token is None or self._token[1] < time.monotonic():
            r = self.client.put(
                f"{self.base}/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL)}
            )
            r.raise_for_status()
            self._token = (r.text.strip(), time.monotonic() + TOKEN_TTL - 60)
        return {"X-aws-ec2-metadata-token": self._token[0]}

    def get(self, path: str) -> str | None:
        """The text at ``/latest/meta-data/<path>``, or None when it does not exist (404)."""
        r = self.client.get(f"{self.base}/latest/meta-data/{path}", headers=self._headers())
        if r.status_code == 404:
            return None
        if r.status_code == 401:  # the token expired early: once more with a new one
            self._token = None
            r = self.client.get(f"{self.base}/latest/meta-data/{path}", headers=self._headers())
        r.raise_for_status()
        return r.text

    def instance_id(self) -> str | None:
        try:
            return (self.get("instance-id") or "").strip() or None
        except httpx.HTTPError as exc:
            log.warning("instance metadata at %s does not answer: %s", self.base, exc.__class__.__name__)
            return None

    def close(self) -> None:
        self.client.close()


def parse_notice(text: str) -> tuple[str, datetime]:
    """``(action, time)`` of an instance-action document."""
    doc = json.loads(text)
    when = datetime.fromisoformat(str(doc["time"]).replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return str(doc["action"]), when


class SpotWatcher:
    """Polls for an interruption notice; on one, calls ``on_notice(seconds_left)`` once and stops."""

    def __init__(self, metadata: Metadata, on_notice: Callable[[float], None], *, interval: float = 5.0) -> None:
        self.metadata, self.on_notice, self.interval = metadata, on_notice, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="spot-watch", daemon=True)

    def start(self) -> SpotWatcher:
        self._thread.start()
        return self

    def check(self) -> float | None:
        """Seconds until the announced interruption, or None when there is no notice."""
        text = self.metadata.get("spot/instance-action")
        if not text:
            return None
        action, when = parse_notice(text)
        left = (when - datetime.now(UTC)).total_seconds()
        log.warning("spot interruption notice: %s at %s (%.0f s from now)", action, when.isoformat(), left)
        return left

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                left = self.check()
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                log.debug("spot check failed: %s", exc)
                continue
            if left is not None:
                self.on_notice(left)
                return

    def stop(self) -> None:
        self._stop.set()
