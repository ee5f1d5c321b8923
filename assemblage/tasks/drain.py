"""Stopping a worker without losing or doubling a build: SIGTERM, scale-in, spot interruptions.

What happens, in the worker's main process and in its pool processes (prefork):

1. The worker is told to stop: SIGTERM (``systemctl stop``, ``docker stop``, an
   Auto Scaling scale-in) or, on EC2 with ``ASSEMBLAGE_INSTANCE_METADATA_URL``
   set, a spot interruption notice seen by :class:`SpotWatcher`, which sends
   the worker its own SIGTERM. Celery's warm shutdown stops taking messages at
   once (messages reserved but not started go back to Redis when the
   connection closes) and waits for running tasks.
2. :class:`Drainer` (main process) gives running builds until a deadline to
   finish: ``ASSEMBLAGE_DRAIN_TIMEOUT`` seconds after the signal, or
   ``ASSEMBLAGE_SPOT_MARGIN`` seconds before the announced interruption,
   whichever comes first. A build that finishes in time is stored as usual.
3. At the deadline the Drainer sends :data:`HANDBACK_SIGNAL` (SIGUSR2) to each
   pool process. A process inside a build kills the build's process groups
   (:func:`kill_all_builds`) and raises :class:`HandBack` out of the build. The
   task then *hands the build back* (:func:`assemblage.pipeline.states.hand_back_build`): in one transaction, the build (still
   ``running`` and still this process's) returns to ``pending``; then the task
   raises ``Reject(requeue=True)``, and Celery's main process gives the message
   back to its queue (kombu moves it from the ``unacked`` hash to the queue in
   one Redis transaction). The message exists once, the build row is pending
   once, and no binary was written (binaries are written in the transaction
   that records the final status, which the hand-back pre-empted).

Checked by ``tests/integration/test_worker_drain.py`` with real workers: SIGTERM
during 12-second builds with a 3-second drain (the worker was gone about 3 s
later; both builds were handed back and rebuilt once on the other worker),
SIGTERM with a 60-second drain (both finished in place), and a spot notice 9 s
ahead with a 4-second margin (handed back about 4.5 s after the notice). Every
build ended exactly once with one binary, no message was delivered twice, and
Redis ended with nothing queued or unacknowledged.

Only the prefork pool (Linux, the default) can hand back: signals reach pool
processes. Windows MSVC workers run ``--pool solo`` and finish their running
build (warm shutdown); one cut short by the machine's end comes back through
the coordinator's heartbeat sweep as before.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = [
    "HANDBACK_SIGNAL",
    "HandBack",
    "Drainer",
    "handback_point",
    "install_handback_handler",
    "handback_requested",
]

log = logging.getLogger(__name__)

HANDBACK_SIGNAL = getattr(signal, "SIGUSR2", None)  # billiard uses SIGUSR1 for soft time limits


class HandBack(BaseException):
    """Raised out of a build whose worker is stopping (a BaseException: no ``except Exception`` keeps it)."""


# ------------------------------------------------------------------ pool process side

_state = {"armed": False, "requested": False}


def handback_requested() -> bool:
    return _state["requested"]


def _on_signal(_signum, _frame) -> None:
    _state["requested"] = True
    if _state["armed"]:
        _state["armed"] = False
        from assemblage.builds.runner import kill_all_builds

        kill_all_builds()  # the build's process groups, before the exception unwinds past their wait
        raise HandBack()


def install_handback_handler() -> None:
    """In each pool process (worker_process_init)."""
    if HANDBACK_SIGNAL is not None:
        _state["armed"] = _state["requested"] = False
        signal.signal(HANDBACK_SIGNAL, _on_signal)


@contextmanager
def handback_point() -> Iterator[None]:
    """Inside the block a hand-back request interrupts the work with :class:`HandBack`."""
    if _state["requested"]:
        raise HandBack()
    _state["armed"] = True
    try:
        yield
    finally:
        _state["armed"] = False


# ------------------------------------------------------------------ main process side


class Drainer:
    """Sends the hand-back signal to the pool's processes at the drain deadline (once)."""

    def __init__(self, pool_pids: Callable[[], list[int]], *, timeout: float) -> None:
        self.pool_pids, self.timeout = pool_pids, timeout
        self.deadline_hint: float | None = None  # monotonic; set by the spot watcher
        self._started = False
        self._lock = threading.Lock()

    def begin(self, why: str) -> float:
        """Start the countdown (idempotent). Returns the deadline (monotonic seconds)."""
        with self._lock:
            deadline = time.monotonic() + self.timeout
            if self.deadline_hint is not None:
                deadline = min(deadline, self.deadline_hint)
            if self._started:
                return deadline
            self._started = True
        log.warning(
            "stopping (%s): builds still running in %.0f s are handed back", why, max(0.0, deadline - time.monotonic())
        )
        threading.Thread(target=self._run, args=(deadline,), name="drain", daemon=True).start()
        return deadline

    def _run(self, deadline: float) -> None:
        time.sleep(max(0.0, deadline - time.monotonic()))
        self.signal_pool()

    def signal_pool(self) -> int:
        if HANDBACK_SIGNAL is None:
            return 0
        sent = 0
        for pid in self.pool_pids():
            try:
                os.kill(pid, HANDBACK_SIGNAL)
                sent += 1
            except ProcessLookupError:
                pass
        if sent:
            log.warning("drain deadline: asked %d pool process(es) to hand back their builds", sent)
        return sent
