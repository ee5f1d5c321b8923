"""Run one analysis in a forked child with a wall-clock and a memory budget.

Why fork: the parent has already imported the parsers, so a forked child
starts in about a millisecond (a fresh interpreter would pay ~150 ms of
imports per binary). The child sets ``RLIMIT_AS`` to its current address
space plus ``memory`` bytes (so the budget is what the analysis adds, not
what the parent already mapped), analyses, and sends the pickled result back
through a pipe. The parent reads with a deadline and kills the child with
SIGKILL when it runs over ``timeout``.

Outcomes other than success are all :class:`InvalidBinaryError`:
``...: analysis exceeded its time budget (N s)``, ``...: analysis exceeded its
memory budget``, ``...: analysis crashed (SIGSEGV)`` and the child's own
InvalidBinaryError message.
"""

from __future__ import annotations

import gc
import os
import pickle
import resource
import select
import signal
import time

from .. import _spawn
from ..errors import InvalidBinaryError
from ._gc import paused_gc
from .model import BinaryAnalysis

__all__ = ["analyze_file_bounded"]


def _address_space() -> int:
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _child(path: str, pdb: str | None, memory: int, lines: bool, w: int) -> None:
    import faulthandler

    from . import analyze_file

    faulthandler.disable()  # a crash is reported by the parent; no traceback dump from the child
    gc.disable()  # for the pickling too (see ._gc); the child ends with os._exit, nothing to collect
    try:
        limit = _address_space() + memory
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        try:
            result: tuple[str, object] = ("ok", analyze_file(path, pdb=pdb, lines=lines))
        except InvalidBinaryError as exc:
            result = ("invalid", exc.problem)
        except MemoryError:
            result = ("invalid", "analysis exceeded its memory budget")
        except RecursionError:
            result = ("invalid", "analysis exceeded its recursion budget (deeply nested data)")
        except BaseException as exc:  # a bug: reported, never a crash of the caller
            result = ("invalid", f"analysis failed unexpectedly ({type(exc).__name__}: {exc})")
        try:
            data = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        except MemoryError:
            data = pickle.dumps(("invalid", "analysis exceeded its memory budget"))
        view = memoryview(data)
        while view:
            n = os.write(w, view)
            view = view[n:]
    finally:
        os._exit(0)


_preloaded = False


def _preload() -> None:
    """Import the parsers in the parent once, so each forked child starts warm.

    Without this every child imports them afresh: ~150 ms per binary instead of ~10 ms
    (measured on the demo corpus), which was most of the pipeline's overhead.
    """
    global _preloaded
    if _preloaded:
        return
    import importlib

    for name in ("assemblage.binaries.elf", "assemblage.binaries.pe", "capstone", "cxxfilt"):
        try:
            importlib.import_module(name)
        except ImportError:  # reported by the child when it needs the module
            pass
    _preloaded = True


def analyze_file_bounded(
    path: str | os.PathLike[str],
    *,
    pdb: str | os.PathLike[str] | None = None,
    timeout: float = 60.0,
    memory: int = 2 * 1024**3,
    lines: bool = True,
) -> BinaryAnalysis:
    """Like :func:`analyze_file`, in a child process limited to ``timeout`` s and ``memory`` bytes."""
    _preload()
    p = os.fspath(path)
    pdb_s = os.fspath(pdb) if pdb is not None else None
    r, w = os.pipe()
    pid = _spawn.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(r)
        _child(p, pdb_s, memory, lines, w)
    os.close(w)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    timed_out = False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([r], [], [], left)
            if not ready:
                continue
            chunk = os.read(r, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
        if timed_out:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _, status = os.waitpid(pid, 0)
    if timed_out:
        raise InvalidBinaryError(p, f"analysis exceeded its time budget ({timeout:g} s)")
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGKILL:
            raise InvalidBinaryError(p, "analysis was killed (most likely over its memory budget)")
        raise InvalidBinaryError(p, f"analysis crashed ({signal.Signals(sig).name})")
    try:
        with paused_gc():
            kind, value = pickle.loads(b"".join(chunks))
    except Exception:
        raise InvalidBinaryError(p, "analysis ended without a result (most likely over its memory budget)") from None
    if kind == "ok":
        assert isinstance(value, BinaryAnalysis)
        return value
    raise InvalidBinaryError(p, str(value))
