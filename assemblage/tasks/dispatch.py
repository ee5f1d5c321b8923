"""How the coordinator talks to workers: a dispatcher sends tasks and reports the broker's state.

``CeleryDispatcher`` is the real one. ``RecordingDispatcher`` is the test
double that ships with the library: it remembers what would have been sent,
so tests of the API need neither Redis nor a mocking framework.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["Dispatcher", "CeleryDispatcher", "RecordingDispatcher"]


class Dispatcher(Protocol):
    def send(self, kind: str, obj_id: int, config: str | None = None) -> None:
        """Send a ``start``, ``fetch`` or ``build`` task (call after the commit that made the rows)."""
        ...

    def ping(self) -> None:
        """Raise when the broker cannot be reached."""
        ...

    def depths(self) -> dict[str, int] | None:
        """Messages waiting per queue (and ``unacked``), or None when unknown."""
        ...


class CeleryDispatcher:
    def __init__(self, app=None) -> None:
        from assemblage.tasks.app import celery_app

        self.app = app or celery_app

    @property
    def broker_url(self) -> str:
        return str(self.app.conf.broker_url)

    def send(self, kind: str, obj_id: int, config: str | None = None) -> None:
        from assemblage.tasks.app import send

        send(kind, obj_id, config, app=self.app)

    def ping(self) -> None:
        if self.broker_url.startswith(("redis://", "rediss://")):
            import redis

            r = redis.Redis.from_url(self.broker_url, socket_timeout=2, socket_connect_timeout=2)
            try:
                r.ping()
            finally:
                r.close()
        else:
            with self.app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1)

    def depths(self) -> dict[str, int] | None:
        from assemblage.tasks.coordinator import queue_depths

        return queue_depths(self.broker_url)


class RecordingDispatcher:
    """Remembers sent tasks in ``sent`` as (kind, id, config) instead of sending them."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int, str | None]] = []

    def send(self, kind: str, obj_id: int, config: str | None = None) -> None:
        self.sent.append((kind, obj_id, config))

    def ping(self) -> None:
        return None

    def depths(self) -> dict[str, int] | None:
        return None
