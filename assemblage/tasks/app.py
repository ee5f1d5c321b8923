"""The Celery application: Redis broker, one queue per toolchain family, safe delivery settings.

Queues: ``crawl`` (run expansion and fetching) and one per toolchain family
(``linux``, ``windows-cross``, ``msvc``), so that workers with different images
take different work: ``assemblage worker -Q crawl,linux``.
"""

from __future__ import annotations

from celery import Celery
from kombu import Exchange, Queue

from assemblage.settings import Settings, get_settings

__all__ = ["QUEUES", "CRAWL_QUEUE", "celery_app", "make_celery", "queue_for", "send"]

CRAWL_QUEUE = "crawl"
FAMILIES = ("linux", "windows-cross", "msvc")
QUEUES = (CRAWL_QUEUE, *FAMILIES)


def queue_for(config: str) -> str:
    """The queue of the workers that can build a configuration identifier."""
    from assemblage.recipes.matrix import Config

    c = Config.parse(config)
    if c.platform == "windows":
        return "msvc" if c.toolchain.startswith("msvc") else "windows-cross"
    return "linux"


def make_celery(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    app = Celery("assemblage", broker=settings.broker_url, include=["assemblage.tasks.jobs"])
    if settings.broker_url.startswith("redis://"):
        from assemblage.tasks.broker import TRANSPORT

        app.conf.broker_transport = TRANSPORT  # kombu's Redis transport, minus a client object per command
    app.conf.update(
        task_queues=[Queue(q, Exchange(q, type="direct"), routing_key=q) for q in QUEUES],
        task_default_exchange=CRAWL_QUEUE,
        task_default_routing_key=CRAWL_QUEUE,
        task_default_queue=CRAWL_QUEUE,
        task_acks_late=True,  # a task is acknowledged when it is done, so a dead worker's task comes back
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,  # builds are long: do not hoard them
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_time_limit=settings.task_time_limit,
        task_soft_time_limit=max(1, settings.task_time_limit - 60),
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a restarted Redis is waited for, not given up on
        broker_transport_options={
            # Redis redelivers an unacknowledged message after this long; the heartbeat sweep is faster
            "visibility_timeout": settings.task_time_limit + 600,
        },
        task_publish_retry=True,
        task_publish_retry_policy={"max_retries": 10, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 2},
        # task events feed Flower (the flower service of docker-compose.yml): a few small pub/sub
        # messages per task, nothing stored
        worker_send_task_events=True,
        task_send_sent_event=True,
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        broker_pool_limit=10,
    )
    app.conf.assemblage_settings = settings
    return app


celery_app = make_celery()


# exports run on the crawl queue: every deployment has crawl workers, and an export is database and
# store I/O like a fetch (assemblage/corpus/jobs.py)
_TASKS = {
    "start": ("assemblage.start_run", None),
    "fetch": ("assemblage.fetch", CRAWL_QUEUE),
    "crawl": ("assemblage.crawl", CRAWL_QUEUE),
    "build": ("assemblage.build", None),
    "export": ("assemblage.export", CRAWL_QUEUE),
}


def send(kind: str, obj_id: int, config: str | None = None, *, app: Celery | None = None) -> None:
    """Send one task by kind (``start``, ``fetch``, ``crawl``, ``build``, ``export``); only after the rows are
    committed."""
    name, queue = _TASKS[kind]
    if kind == "build":
        if config is None:
            raise ValueError("a build is sent to the queue of its configuration")
        queue = queue_for(config)
    (app or celery_app).send_task(name, args=[obj_id], queue=queue or CRAWL_QUEUE)
