"""The pipeline's steps as Celery tasks, worker heartbeats, and the coordinator's sweep.

The tasks are thin: they take IDs, call the same step functions as the
embedded mode (:mod:`assemblage.pipeline.steps`), and send the next tasks only
after the transaction that made their rows has committed.
"""

from assemblage.tasks.app import QUEUES, celery_app, make_celery, queue_for

__all__ = ["QUEUES", "celery_app", "make_celery", "queue_for"]
