"""The Redis transport of the broker, with one client object per channel instead of one per command.

kombu's Redis channel builds a new ``redis.Redis`` object for every command it
sends outside the event loop: each publish, and twice per delivered task on a
worker (recording the unacknowledged message, then acknowledging it). With
redis-py 8 building that object costs about 0.1 ms (it fills a table of ~170
response callbacks), a third of what publishing an empty task costs. The
objects all share the channel's connection pool and hold no state of their own,
so one per channel does the same: a ``redis.Redis`` takes a connection from the
pool for each command and is safe to share between threads.

Everything else (acknowledgement after the task, redelivery of unacknowledged
messages after the visibility timeout, reconnection) is kombu's, unchanged.
"""

from __future__ import annotations

from kombu.transport import redis as kombu_redis

__all__ = ["Channel", "Transport", "TRANSPORT"]

TRANSPORT = "assemblage.tasks.broker:Transport"


class Channel(kombu_redis.Channel):
    _sync_client = None

    # the private methods overridden here are kombu's (pinned to its minor release in pyproject.toml); the
    # kombu stubs of celery-types declare only its public API, hence the ignores on their super() calls
    def _create_client(self, asynchronous: bool = False):
        if asynchronous:  # the event loop's clients (BRPOP, pub/sub) are kombu's own
            return super()._create_client(asynchronous=True)  # type: ignore[misc]
        pool = self.pool  # a new pool after a fork or a reconnect: a new client for it
        client = self._sync_client
        if client is None or client.connection_pool is not pool:
            client = self._sync_client = super()._create_client()  # type: ignore[misc]
        return client

    def _disconnect_pools(self) -> None:
        self._sync_client = None
        super()._disconnect_pools()  # type: ignore[misc]


class Transport(kombu_redis.Transport):
    Channel = Channel
