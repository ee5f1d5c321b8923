"""Run work on an untrusted binary in a forked child with a wall-clock and a memory budget.

Everything that reads a binary a build left (the analysis with its capstone
disassembly and demangling, the stripped copy made with ``llvm-strip``) runs
through :func:`run_bounded`: the binaries are built by the repository, so
they are hostile input.

Why fork: the parent has already imported the parsers, so a forked child
starts in about a millisecond (a fresh interpreter would pay ~150 ms of
imports per binary). The child makes its own process group, sets
``RLIMIT_AS`` to its current address space plus ``memory`` bytes (so the
budget is what the work adds, not what the parent already mapped), works,
and sends the pickled result back through a pipe. Whatever the child starts
(the forked helpers of :mod:`._forked` that read line tables and hash
functions, a tool like ``llvm-strip``) inherits the group and the limit. The
parent reads with a deadline; when the child runs over ``timeout`` (or the
parent is interrupted) the whole group is killed with SIGKILL, and once the
child has ended, whatever of its group is left is killed too: nothing the
work started outlives it.

Outcomes other than success are all :class:`InvalidBinaryError`:
``...: analysis exceeded its time budget (N s)``, ``...: analysis exceeded its
memory budget``, ``...: analysis crashed (SIGSEGV)`` and the child's own
InvalidBinaryError message (``analysis`` is the ``what`` of the call).
"""

from __future__ import annotations

import gc
import os
import pickle
import resource
import select
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from .. import _spawn
from ..errors import InvalidBinaryError
from . import dispatch
from ._gc import paused_gc
from .model import BinaryAnalysis

__all__ = ["analyze_file_bounded", "run_bounded", "run_tool", "strip_file_bounded"]

T = TypeVar("T")

# The start of a tool's error output kept for its message (a hostile file can make it long; a crash
# report puts the reason first and its stack after).
_TOOL_OUTPUT = 2000


def _address_space() -> int:
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _child(fn: Callable[..., Any], args: Sequence[Any], what: str, memory: int, w: int) -> None:
    import faulthandler

    try:
        os.setpgid(0, 0)  # the group the parent kills; what this child starts inherits it
    except OSError:  # the parent made it already
        pass
    faulthandler.disable()  # a crash is reported by the parent; no traceback dump from the child
    gc.disable()  # for the pickling too (see ._gc); the child ends with os._exit, nothing to collect
    try:
        limit = _address_space() + memory
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        try:
            result: tuple[str, object] = ("ok", fn(*args))
        except InvalidBinaryError as exc:
            result = ("invalid", exc.problem)
        except MemoryError:
            result = ("invalid", f"{what} exceeded its memory budget")
        except RecursionError:
            result = ("invalid", f"{what} exceeded its recursion budget (deeply nested data)")
        except BaseException as exc:  # noqa: BLE001 - a bug: reported, never a crash of the caller
            result = ("invalid", f"{what} failed unexpectedly ({type(exc).__name__}: {exc})")
        try:
            data = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        except MemoryError:
            data = pickle.dumps(("invalid", f"{what} exceeded its memory budget"))
        view = memoryview(data)
        while view:
            n = os.write(w, view)
            view = view[n:]
    finally:
        os._exit(0)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):  # nothing left of the group
        pass


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

    for name in ("assemblage.binaries.elf.analysis", "assemblage.binaries.pe.analysis", "capstone", "cxxfilt"):
        try:
            importlib.import_module(name)
        except ImportError:  # reported by the child when it needs the module
            pass
    _preloaded = True


def run_bounded(fn: Callable[..., T], *args: Any, path: str, what: str = "analysis", timeout: float, memory: int) -> T:
    """``fn(*args)`` in a child process group limited to ``timeout`` s and ``memory`` bytes.

    ``path`` names the binary in the :class:`InvalidBinaryError` of any outcome but success;
    ``what`` names the work in its message. ``fn``, its arguments and its result are pickled.
    """
    _preload()
    r, w = os.pipe()
    pid = _spawn.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(r)
        _child(fn, args, what, memory, w)
    os.close(w)
    try:
        os.setpgid(pid, pid)  # also here: a kill may come before the child has run a line
    except OSError:  # the child did it already (or has ended)
        pass
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    timed_out = ended = False
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
                ended = True
                break
            chunks.append(chunk)
    finally:
        os.close(r)
        if not ended:  # over time, or the caller was interrupted
            _kill_group(pid)
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # ended; its pid (and so its group) still held
        _kill_group(pid)  # whatever it started and left behind
        _, status = os.waitpid(pid, 0)
    if timed_out:
        raise InvalidBinaryError(path, f"{what} exceeded its time budget ({timeout:g} s)")
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGKILL:
            raise InvalidBinaryError(path, f"{what} was killed (most likely over its memory budget)")
        raise InvalidBinaryError(path, f"{what} crashed ({signal.Signals(sig).name})")
    try:
        with paused_gc():
            kind, value = pickle.loads(b"".join(chunks))
    except Exception:  # noqa: BLE001 - a child killed mid-write leaves bytes that do not unpickle
        raise InvalidBinaryError(path, f"{what} ended without a result (most likely over its memory budget)") from None
    if kind == "ok":
        return value
    raise InvalidBinaryError(path, str(value))


def _analyze(path: str, pdb: str | None, lines: bool) -> BinaryAnalysis:
    return dispatch.analyze_file(path, pdb=pdb, lines=lines)  # looked up when called (tests replace it)


def analyze_file_bounded(
    path: str | os.PathLike[str],
    *,
    pdb: str | os.PathLike[str] | None = None,
    timeout: float = 60.0,
    memory: int = 2 * 1024**3,
    lines: bool = True,
) -> BinaryAnalysis:
    """Like :func:`analyze_file`, in a child process limited to ``timeout`` s and ``memory`` bytes."""
    p = os.fspath(path)
    pdb_s = os.fspath(pdb) if pdb is not None else None
    value = run_bounded(_analyze, p, pdb_s, lines, path=p, timeout=timeout, memory=memory)
    assert isinstance(value, BinaryAnalysis)
    return value


def run_tool(argv: Sequence[str], memory: int, path: str) -> str:
    """Run a tool on an untrusted binary (inside :func:`run_bounded`'s child); its error output.

    The tool gets ``memory`` bytes of address space of its own (it starts afresh, so the
    child's own mapping is not counted) and stays in the child's process group. A tool
    that fails raises :class:`InvalidBinaryError` with the end of what it printed.
    """

    def limit() -> None:  # runs in the tool's process before exec; the child has one thread
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    proc = _spawn.run(list(argv), stdin=subprocess.DEVNULL, capture_output=True, preexec_fn=limit)
    err = proc.stderr.decode("utf-8", "replace").strip()[:_TOOL_OUTPUT]
    name = os.path.basename(argv[0])
    if proc.returncode < 0:
        sig = signal.Signals(-proc.returncode).name
        raise InvalidBinaryError(
            path, f"{name} was killed by {sig} (memory budget {memory} bytes){': ' + err if err else ''}"
        )
    if proc.returncode != 0:
        raise InvalidBinaryError(path, f"{name} failed (exit status {proc.returncode}){': ' + err if err else ''}")
    return err


def strip_file_bounded(
    tool: str,
    path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    timeout: float = 60.0,
    memory: int = 2 * 1024**3,
) -> None:
    """``tool --strip-all -o out path`` under the analysis limits (see :func:`run_bounded`).

    A tool that fails, runs over ``timeout`` or over ``memory`` raises :class:`InvalidBinaryError`.
    """
    p, o = os.fspath(path), os.fspath(out)
    run_bounded(
        run_tool, [tool, "--strip-all", "-o", o, p], memory, p, path=p, what="stripping", timeout=timeout, memory=memory
    )
