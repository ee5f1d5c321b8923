"""Run a function in a forked child while the parent keeps working (2-core speed-up).

The DWARF reader is pure Python and so single-threaded; the line programs and
the function hashes do not depend on the DIE walk's details, so they run in a
forked child at the same time (a fork of an already-imported parent costs
about a millisecond). The child pickles its result into a pipe. If ``fork``
is not possible the function simply runs in-process.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

from .. import _spawn

__all__ = ["Forked", "WorkerError"]

T = TypeVar("T")


class WorkerError(RuntimeError):
    """The child failed or died; the message says how."""


class Forked(Generic[T]):
    """``Forked(fn, *args)`` starts ``fn(*args)`` in a child; ``result()`` waits for it."""

    def __init__(self, fn: Callable[..., T], *args: Any, enabled: bool = True) -> None:
        self._pid = 0
        self._value: tuple[str, Any] | None = None
        if enabled:
            try:
                r, w = os.pipe()
                pid = _spawn.fork()
            except OSError:
                pid = -1
            if pid == 0:  # pragma: no cover - the child
                os.close(r)
                try:
                    try:
                        out: tuple[str, Any] = ("ok", fn(*args))
                    except BaseException as exc:  # noqa: BLE001 - the child reports every outcome to its parent
                        out = ("err", exc if isinstance(exc, Exception) else WorkerError(repr(exc)))
                    try:
                        data = pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL)
                    except Exception as exc:  # noqa: BLE001 - any result that cannot be sent is reported as such
                        data = pickle.dumps(("err", WorkerError(f"unpicklable result: {exc!r}")))
                    view = memoryview(data)
                    while view:
                        view = view[os.write(w, view) :]
                finally:
                    os._exit(0)
            if pid > 0:
                os.close(w)
                self._pid, self._fd = pid, r
                return
            if pid < 0:
                os.close(r)
                os.close(w)
        try:
            self._value = ("ok", fn(*args))
        except Exception as exc:  # noqa: BLE001 - handed to the caller, which re-raises it
            self._value = ("err", exc)

    def cancel(self) -> None:
        """Stop a child whose result is no longer wanted (the parent failed)."""
        if self._value is None and self._pid:
            try:
                os.kill(self._pid, 9)
            except ProcessLookupError:
                pass
            os.close(self._fd)
            os.waitpid(self._pid, 0)
            self._value = ("err", WorkerError("cancelled"))

    def result(self) -> T:
        """The function's return value; its exception is re-raised here."""
        if self._value is None:
            chunks = []
            try:
                while chunk := os.read(self._fd, 1 << 20):
                    chunks.append(chunk)
            finally:
                os.close(self._fd)
                _, status = os.waitpid(self._pid, 0)
            try:
                self._value = pickle.loads(b"".join(chunks))
            except Exception:  # noqa: BLE001 - a truncated or garbled result means the worker died
                self._value = ("err", WorkerError(f"worker process died (status {status})"))
        kind, value = self._value
        if kind == "err":
            raise value
        return cast(T, value)  # what fn returned, through pickle
