"""Pausing Python's cyclic garbage collector while an analysis allocates.

An analysis builds hundreds of thousands of small objects (DIE records,
functions, line rows) that all stay alive until it returns. Every 700 new
objects CPython runs a young-generation collection, and the older generations
are rescanned as they fill up: on a C++ binary with 24k functions that was
about a fifth of the analysis time, and more than half of the time spent
pickling and unpickling the result of a bounded analysis, all to find no
garbage (the analysis makes no reference cycles worth collecting; the few it
makes are collected once the collector runs again). Reference counting frees
everything else as usual.

``paused_gc()`` is reentrant and safe with threads: the collector is turned off
by the first caller in and back on (if it was on) by the last one out.
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["paused_gc"]

_lock = threading.Lock()
_depth = 0
_was_enabled = False


def _new_lock_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # another thread may have held it at the fork


os.register_at_fork(after_in_child=_new_lock_in_child)


@contextmanager
def paused_gc() -> Iterator[None]:
    """Run the ``with`` body with the cyclic garbage collector off."""
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
