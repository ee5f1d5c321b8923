"""The broker transport on a real Redis: one client object per channel, and kombu's delivery unchanged
(a message consumed and not acknowledged goes back to the queue; an acknowledged one is gone)."""

from __future__ import annotations

import pytest

from tests.integration.service_stack import REDIS_URL, require_services

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True, scope="module")
def _services_up() -> None:
    require_services("redis")


@pytest.fixture
def app(monkeypatch):
    import redis

    from assemblage.settings import get_settings
    from assemblage.tasks.app import make_celery

    url = f"{REDIS_URL}/8"
    r = redis.Redis.from_url(url)
    r.flushdb()
    monkeypatch.setenv("ASSEMBLAGE_BROKER_URL", url)
    get_settings.cache_clear()
    yield make_celery(get_settings())
    get_settings.cache_clear()
    r.flushdb()
    r.close()


def test_the_app_uses_the_transport_with_one_client_per_channel(app):
    from assemblage.tasks.broker import Transport

    with app.connection_for_write() as conn:
        assert isinstance(conn.transport, Transport)
        ch = conn.default_channel
        first = ch._create_client()
        assert ch._create_client() is first
        assert ch._create_client(asynchronous=True) is not first  # the event loop keeps kombu's own
        ch._disconnect_pools()  # after a fork or a lost connection: a new pool, so a new client
        again = ch._create_client()
        assert again is not first and again.connection_pool is ch.pool
        assert again.ping()


def test_unacknowledged_messages_come_back_and_acknowledged_ones_do_not(app):
    from assemblage.tasks.coordinator import queue_depths

    url = str(app.conf.broker_url)
    with app.producer_or_acquire() as producer:
        for i in range(3):
            app.send_task("assemblage.noop", args=[i], queue="crawl", producer=producer)
    assert queue_depths(url)["crawl"] == 3
    with app.connection_for_read() as conn:
        queue = app.amqp.queues["crawl"]
        ch = conn.default_channel
        m1 = queue(ch).get(no_ack=False)
        m2 = queue(ch).get(no_ack=False)
        depths = queue_depths(url)
        assert (depths["crawl"], depths["unacked"]) == (1, 2)
        m1.ack()
        assert queue_depths(url)["unacked"] == 1
        ch.qos.restore_unacked()  # what a worker that dies or closes does with what it did not acknowledge
        assert m2.delivery_tag not in ch.qos._delivered
    depths = queue_depths(url)
    assert (depths["crawl"], depths["unacked"]) == (2, 0)
