"""The local runner: run a build's steps in a sandbox with limits.

Every build runs in its own process group, with a wall-clock deadline that
kills the whole group, resource limits (address space, file size, processes,
no core files), a clean environment (none of the service's variables or
credentials), argument lists only, and, when bubblewrap works, in a mount,
PID, IPC, UTS and network namespace of its own: no network, a read-only
system, only the build's own folder writable, seen at the fixed path
``/build`` so that paths recorded in debug information do not depend on where
the scratch folder happened to be. When the service runs as root, builds run
as an unprivileged user (``nobody``), which also makes the process cap count.

The sandbox fails closed: when bubblewrap is missing or cannot create
namespaces, a build is refused (``failed``/``sandbox_unavailable``) unless the
setting ``allow_unsandboxed`` (``ASSEMBLAGE_ALLOW_UNSANDBOXED``) says
otherwise; ``ASSEMBLAGE_NO_SANDBOX=1`` (developers, tests) turns the sandbox
off on purpose and needs that setting too. An unsandboxed build still gets
only :meth:`LocalRunner.base_env`, never this process's environment.

The ``disk`` limit holds for the whole build: a watcher measures the build's
folder (its ``/tmp`` is a folder of it, not a tmpfs in memory) while a step
runs and kills the step's process group past the limit (``disk_limit``).
The build's output reaches the log through :class:`CappedLog`, which keeps
the head and the tail of a log past its cap and says how much was cut.
"""

from __future__ import annotations

import functools
import os
import resource
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from assemblage import _spawn
from assemblage.builds.plan import LogSink, Step
from assemblage.settings import read_setting

__all__ = [
    "BUILD_GID",
    "BUILD_UID",
    "CappedLog",
    "Limits",
    "LocalRunner",
    "on_kill_all",
    "StepExit",
    "StepNotStarted",
    "StepProcess",
    "StepResult",
    "allow_builds",
    "builds_stopped",
    "disk_usage",
    "kill_all_builds",
    "sandbox_available",
    "sandbox_refusal",
    "SANDBOX_ROOT",
    "unsandboxed_allowed",
]

SANDBOX_ROOT = "/build"
BUILD_UID = 65534  # nobody
BUILD_GID = 65534
_SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"


# Every build process running now, so that an interrupted run can stop them all:
# builds sit in process groups of their own, out of reach of the terminal's Ctrl-C.
_live: set[subprocess.Popen] = set()
_live_lock = threading.Lock()
_stopping = threading.Event()


def builds_stopped() -> bool:
    """Whether :func:`kill_all_builds` was called (and :func:`allow_builds` not since)."""
    return _stopping.is_set()


def allow_builds() -> None:
    _stopping.clear()


_other_killers: list[Callable[[], int]] = []


def on_kill_all(killer: Callable[[], int]) -> None:
    """Have :func:`kill_all_builds` also call ``killer`` (another runner's; returns how many it killed)."""
    _other_killers.append(killer)


def kill_all_builds() -> int:
    """Kill every build step running in this process (their whole groups); no new step starts after."""
    _stopping.set()
    with _live_lock:
        procs = list(_live)
    for proc in procs:
        _kill_group(proc)
    return len(procs) + sum(k() for k in _other_killers)


@dataclass(frozen=True, kw_only=True)
class Limits:
    timeout: float = 600.0  # seconds for the whole build
    memory: int = 4 * 1024**3  # address space per process, bytes
    processes: int = 512
    file_size: int = 8 * 1024**3  # one file (RLIMIT_FSIZE)
    disk: int | None = None  # the whole build folder, /tmp included (None: file_size)

    @property
    def disk_total(self) -> int:
        return self.disk if self.disk is not None else self.file_size


@dataclass(kw_only=True)
class StepResult:
    step: Step
    returncode: int | None
    duration: float
    timed_out: bool = False
    disk_exceeded: bool = False  # killed by the disk watcher (the build folder grew past ``Limits.disk``)
    signal: int | None = None
    tail: list[str] = field(default_factory=list)


DEFAULT_LOG_CAP = 16 * 1024**2


def log_cap() -> int:
    """The most a build's log keeps (``max_log_bytes``): its head and its tail, the middle cut."""
    return int(read_setting("max_log_bytes", DEFAULT_LOG_CAP))


def unsandboxed_allowed() -> bool:
    """Whether the settings allow builds without a sandbox (``allow_unsandboxed``; off unless set)."""
    return bool(read_setting("allow_unsandboxed", False))


def sandbox_forced_off() -> bool:
    """``no_sandbox`` (``ASSEMBLAGE_NO_SANDBOX``) asks for builds without bubblewrap (developers, tests)."""
    return bool(read_setting("no_sandbox", False))


def sandbox_available() -> bool:
    """bubblewrap is installed and can create namespaces here (and ``ASSEMBLAGE_NO_SANDBOX`` is not set)."""
    if sandbox_forced_off():
        return False
    bwrap = shutil.which("bwrap")
    return bool(bwrap) and _bwrap_works(bwrap)


@functools.cache
def _bwrap_works(bwrap: str) -> bool:
    try:
        r = _spawn.run(
            [bwrap, *_system_binds(), "--unshare-all", "--die-with-parent", "--", "true"],
            capture_output=True,
            timeout=20,
            **_drop_user_kwargs(),
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return r.returncode == 0


def sandbox_refusal() -> str:
    """Why a local build may not run here: the fix, for the build's message."""
    if sandbox_forced_off():
        why = "ASSEMBLAGE_NO_SANDBOX is set"
    elif shutil.which("bwrap") is None:
        why = "bubblewrap (bwrap) is not installed"
    else:
        why = (
            "bubblewrap cannot create namespaces here (in a container: run it with the seccomp profile and "
            "user namespaces docker-compose.yml documents, or use the docker runner)"
        )
    return (
        f"refusing to build without a sandbox: {why}. Install it (apt-get install bubblewrap), or use "
        "`runner: docker`; to build without isolation on purpose set allow_unsandboxed = true "
        "(ASSEMBLAGE_ALLOW_UNSANDBOXED=1): such builds have the network and the host's files"
    )


def _drop_user_kwargs() -> dict:
    if os.geteuid() == 0:
        return {"user": BUILD_UID, "group": BUILD_GID, "extra_groups": []}
    return {}


def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        p = Path("/", name)
        if p.is_symlink():
            args += ["--symlink", os.readlink(p), str(p)]
        elif p.is_dir():
            args += ["--ro-bind", str(p), str(p)]
    return args


def hand_to_build_user(scratch: Path) -> None:
    """Give the scratch folder to ``nobody`` when running as root, and let the build user reach it."""
    if os.geteuid() == 0:
        for dirpath, dirnames, filenames in os.walk(scratch):
            os.lchown(dirpath, BUILD_UID, BUILD_GID)
            for n in dirnames + filenames:
                os.lchown(os.path.join(dirpath, n), BUILD_UID, BUILD_GID)
    scratch.chmod(0o755)


class LocalRunner:
    """Runs the steps of one build on this machine."""

    name = "local"

    def __init__(self, limits: Limits, *, sandbox: bool | None = None) -> None:
        self.limits = limits
        self.sandbox = sandbox_available() if sandbox is None else sandbox
        # why this runner may not build (None: it may); fail closed without a sandbox unless allowed
        self.refusal: str | None = None
        if not self.sandbox and not unsandboxed_allowed():
            self.refusal = sandbox_refusal()

    @property
    def isolation(self) -> str:
        """How steps are isolated, in one word: ``bubblewrap``, ``docker`` or ``none``."""
        return "bubblewrap" if self.sandbox else "none"

    @property
    def where(self) -> str:
        """Where the toolchains come from, for messages."""
        return "here"

    def which(self, name: str) -> str | None:
        """Where the command ``name`` is (the host's PATH)."""
        return shutil.which(name)

    def install_hint(self, toolchain: str) -> str:
        return f"run: assemblage toolchains install {toolchain}"

    def view(self, scratch: Path) -> str:
        """Where the build sees its scratch folder."""
        return SANDBOX_ROOT if self.sandbox else str(scratch)

    def prepare(self, scratch: Path) -> None:
        """Hand the scratch folder to the build user."""
        if self.sandbox or os.geteuid() == 0:
            hand_to_build_user(scratch)

    def sandbox_note(self) -> str:
        """How the steps are isolated, for the log."""
        if self.sandbox:
            return "bubblewrap (no network, read-only system, /tmp in the build folder)"
        return (
            "NONE: UNSANDBOXED BUILD (allow_unsandboxed is on): the build has the network, the host's files "
            "and this user's rights"
        )

    # -- reproducibility (assemblage.builds.reproducible): probing the toolchain where builds run

    def query(self, argv: list[str], *, timeout: float = 120) -> str:
        """The output of a command of ours run where builds run (here), for probing toolchains."""
        try:
            r = _spawn.run(
                argv, capture_output=True, text=True, timeout=timeout, env={"PATH": _SYSTEM_PATH, "LC_ALL": "C.UTF-8"}
            )
        except (OSError, subprocess.SubprocessError):
            return ""  # recorded as "not found"
        return r.stdout

    def image_ref(self) -> dict | None:
        """The image builds run in (name, id, digest); None: the host."""
        return None

    def base_env(self, scratch: Path) -> dict[str, str]:
        view = self.view(scratch)
        return {
            "PATH": f"{view}/bin:{_SYSTEM_PATH}",
            "HOME": f"{view}/home",
            "TMPDIR": f"{view}/tmp",
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "SOURCE_DATE_EPOCH": "0",
            "TERM": "dumb",
        }

    def run(
        self,
        steps: list[Step],
        scratch: Path,
        src_rel: str,
        env: dict[str, str],
        log: LogSink,
        *,
        timeout: float | None = None,
    ) -> list[StepResult]:
        """Run steps in order until one fails or the deadline passes. Logs everything to ``log``."""
        if self.refusal:  # never reached through run_build (it refuses first); a safety net for direct callers
            raise PermissionError(self.refusal)
        for sub in ("home", "tmp"):
            (scratch / sub).mkdir(exist_ok=True)
        self.prepare(scratch)
        log.write(f"# sandbox: {self.sandbox_note()}\n")
        deadline = time.monotonic() + (self.limits.timeout if timeout is None else timeout)
        results: list[StepResult] = []
        for step in steps:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                results.append(StepResult(step=step, returncode=None, duration=0.0, timed_out=True))
                break
            if _stopping.is_set():  # Ctrl-C: no new step
                results.append(StepResult(step=step, returncode=None, duration=0.0, signal=signal.SIGTERM))
                break
            res = self._run_step(step, scratch, src_rel, {**env, **step.env}, log, remaining)
            results.append(res)
            if res.returncode != 0:
                break
        return results

    def _argv(self, step: Step, scratch: Path, src_rel: str) -> tuple[list[str], str]:
        view = self.view(scratch)
        cwd_in = os.path.normpath(f"{view}/{src_rel}/{step.cwd}")
        if not self.sandbox:
            return list(step.argv), cwd_in
        argv = [
            shutil.which("bwrap") or "bwrap",
            *_system_binds(),
            "--dev",
            "/dev",
            "--proc",
            "/proc",
            "--bind",
            str(scratch),
            SANDBOX_ROOT,
            # /tmp is the build folder's own: on disk, counted in the disk limit (a tmpfs would take RAM)
            "--bind",
            str(scratch / "tmp"),
            "/tmp",
            "--chdir",
            cwd_in,
            "--unshare-all",
            "--die-with-parent",
            "--new-session",
            "--hostname",
            "assemblage-build",
            "--",
            *step.argv,
        ]
        return argv, "/"

    def _limits(self) -> None:
        lim = self.limits
        os.setpgid(0, 0)
        os.umask(0o022)  # reproducible file modes (assemblage.builds.reproducible.UMASK)
        for res, value in (
            (resource.RLIMIT_AS, lim.memory),
            (resource.RLIMIT_FSIZE, lim.file_size),
            (resource.RLIMIT_CORE, 0),
            (resource.RLIMIT_NPROC, lim.processes),
        ):
            try:
                resource.setrlimit(res, (value, value))
            except (ValueError, OSError):
                pass

    def _run_step(
        self, step: Step, scratch: Path, src_rel: str, env: dict[str, str], log: LogSink, timeout: float
    ) -> StepResult:
        """One step, framed alike for every runner: its command in the log, its output copied there (the
        tail kept), the disk watcher, the deadline, and what ended it. Where and how it runs is
        :meth:`_start`'s (a process group here, a container for the docker runner)."""
        log.write(f"\n$ {step.name}: {' '.join(_show(a) for a in step.argv)}\n")
        log.flush()
        started = time.monotonic()
        try:
            proc = self._start(step, scratch, src_rel, env, timeout)
        except StepNotStarted as exc:
            log.write(f"! {exc}\n")
            return StepResult(step=step, returncode=127, duration=0.0, tail=[exc.detail])
        tail: list[str] = []
        timed_out = False
        try:
            reader = threading.Thread(target=proc.pump, args=(log, tail), daemon=True)
            reader.start()
            watch = DiskWatch(scratch, self.limits.disk_total, proc.kill)
            try:
                end = proc.wait(timeout)
                if end is None:
                    timed_out = True
                    proc.kill()
                    end = proc.wait(30) or StepExit(returncode=None)
            finally:
                watch.stop()
            reader.join(timeout=10)
        finally:
            proc.close(log)
        duration = time.monotonic() - started
        rc, sig, oom = end.returncode, end.signal, end.out_of_memory
        if watch.exceeded:
            timed_out = oom = False
            log.write(f"\n! {watch.message()}\n")
            tail.append(watch.message())
        if oom:
            tail.append("out of memory: killed by the container's memory limit")
            log.write(f"\n! out of memory: killed by the container's memory limit ({self.limits.memory} bytes)\n")
            sig = 9
        if timed_out:
            log.write(f"\n! killed after the build's time limit ({self.limits.timeout:.0f}s)\n")
        log.write(f"# exit {rc} after {duration:.2f}s\n")
        return StepResult(
            step=step,
            returncode=rc,
            duration=duration,
            timed_out=timed_out,
            signal=sig,
            tail=tail,
            disk_exceeded=watch.exceeded,
        )

    def _start(self, step: Step, scratch: Path, src_rel: str, env: dict[str, str], timeout: float) -> StepProcess:
        """Start ``step`` in a process group of its own, in the sandbox, under the limits.

        ``timeout`` is the step's deadline, for a runner that sets one of its own (the docker runner's
        containers end even when this process is killed).
        """
        argv, cwd = self._argv(step, scratch, src_rel)
        try:
            proc = _spawn.popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                preexec_fn=self._limits,
                close_fds=True,
                **_drop_user_kwargs(),
            )
        except OSError as exc:
            raise StepNotStarted(f"cannot start {step.argv[0]!r}: {exc}", str(exc)) from None
        with _live_lock:
            _live.add(proc)
        if _stopping.is_set():
            _kill_group(proc)
        return _LocalProcess(proc)


class StepNotStarted(Exception):
    """A step's process (or container) could not be started: the line for the log, and the detail for the tail."""

    def __init__(self, message: str, detail: str) -> None:
        super().__init__(message)
        self.detail = detail


@dataclass(frozen=True, kw_only=True)
class StepExit:
    """How a step's process ended."""

    returncode: int | None
    signal: int | None = None  # the signal that ended it
    out_of_memory: bool = False  # killed by a memory limit (a container's)


class StepProcess(Protocol):
    """One step under way, as a runner started it (:meth:`LocalRunner._start`)."""

    def pump(self, log: LogSink, tail: list[str]) -> None:
        """Copy the step's output to ``log`` until it ends; keep its last lines in ``tail``."""

    def wait(self, timeout: float) -> StepExit | None:
        """How the step ended, or None when it still runs after ``timeout`` seconds."""

    def kill(self) -> None:
        """End the step and everything it started."""

    def close(self, log: LogSink) -> None:
        """The step has ended: forget it (and remove what it leaves behind)."""


class _LocalProcess:
    """A step's process group on this machine."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc

    def pump(self, log: LogSink, tail: list[str]) -> None:
        assert self.proc.stdout is not None
        pump_output(self.proc.stdout, log, tail)

    def wait(self, timeout: float) -> StepExit | None:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return StepExit(returncode=rc, signal=-rc if rc < 0 else None)

    def kill(self) -> None:
        _kill_group(self.proc)

    def close(self, log: LogSink) -> None:
        with _live_lock:
            _live.discard(self.proc)


_TAIL_LINE = 4096  # longest line kept in a step's tail (for failure messages)


def pump_output(stream: IO[bytes], log: LogSink, tail: list[str]) -> None:
    """Copy a step's output to the log in chunks (a line without end cannot fill the memory); keep the tail."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    pending = ""
    fd = stream.fileno()
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except OSError:
            break
        if not chunk:
            break
        text = decoder.decode(chunk)
        log.write(text)
        *lines, pending = (pending + text).split("\n")
        tail.extend(line[:_TAIL_LINE] for line in lines)
        pending = pending[-_TAIL_LINE:]
        if len(tail) > 200:
            del tail[:-100]
    rest = decoder.decode(b"", final=True)
    if rest:
        log.write(rest)
    if pending or rest:
        tail.append((pending + rest)[:_TAIL_LINE])


def disk_usage(root: Path) -> int:
    """Bytes the files under ``root`` take on disk (allocated blocks; a hard-linked file once; links not followed).

    A folder the build made unreadable to hide what it holds is opened up again (this
    process owns it when it is not root; root reads it anyway).
    """
    total = 0
    seen: set[tuple[int, int]] = set()
    stack = [str(root)]
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(d)
        except PermissionError:
            try:
                os.chmod(d, 0o755)
                it = os.scandir(d)
            except OSError:
                continue
        except OSError:
            continue
        with it:
            for e in it:
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                if st.st_nlink > 1 and not e.is_dir(follow_symlinks=False):
                    if (st.st_dev, st.st_ino) in seen:
                        continue
                    seen.add((st.st_dev, st.st_ino))
                total += max(st.st_blocks * 512, 0)
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
    return total


class DiskWatch:
    """Measures a build folder while a step runs; calls ``kill`` once it holds more than ``limit`` bytes."""

    def __init__(self, root: Path, limit: int, kill: Callable[[], None], *, interval: float = 0.5) -> None:
        self.root, self.limit, self.kill, self.interval = root, limit, kill, interval
        self.exceeded = False
        self.used = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="assemblage-disk-watch")
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            self.used = disk_usage(self.root)
            if self.used > self.limit:
                self.exceeded = True
                self.kill()
                return
            self._stop.wait(self.next_wait(time.monotonic() - t0))

    # The fastest a build is assumed to fill its folder, and the longest wait between two measures.
    WRITE_RATE = 2 * 1024**3  # bytes per second
    MAX_WAIT = 2.0

    def next_wait(self, measured_in: float) -> float:
        """Seconds to the next measure: ``interval``, longer while the folder is far below the limit.

        While the build could not reach the limit before the next measure even writing at
        ``WRITE_RATE``, waiting longer (up to ``MAX_WAIT``) finds it over the limit just as soon:
        a build with 8 GiB to go is measured every 2 s instead of every 0.5 s (each measure is a
        walk of the whole tree, ~1 ms per 300 files, every half second of every build). A huge tree
        is measured less often: at most a fifth of the time goes to measuring.
        """
        slack = (self.limit - self.used) / self.WRITE_RATE
        return max(self.interval, 5 * measured_in, min(self.MAX_WAIT, slack))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def message(self) -> str:
        return f"killed: the build folder grew past the disk limit ({_size(self.used)} used, limit {_size(self.limit)})"


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


class CappedLog:
    """A build log file that keeps at most ``cap`` bytes: the first half, then the last half.

    What falls between is dropped while the build runs (only the tail is held in memory)
    and :meth:`finish` writes a marker saying how many bytes were cut, then the tail.
    Positions (:meth:`tell`, :meth:`text_since`) count every byte written, kept or not.
    """

    def __init__(self, fh: IO[str], cap: int) -> None:
        self.fh, self.cap = fh, max(int(cap), 1024)
        self.head_cap = self.cap // 2
        self.tail_cap = self.cap - self.head_cap
        self.written = 0  # characters written, kept or not
        self.in_head = 0
        self._tail: list[str] = []
        self._tail_len = 0
        self.cut = 0
        self._lock = threading.Lock()
        self._finished = False

    def write(self, text: str) -> int:
        with self._lock:
            n = len(text)
            self.written += n
            room = self.head_cap - self.in_head
            if room > 0 and not self._finished:
                part = text[:room]
                self.fh.write(part)
                self.in_head += len(part)
                text = text[room:]
            if text:
                if self._finished:
                    self.fh.write(text)
                    return n
                self._tail.append(text)
                self._tail_len += len(text)
                if self._tail_len > 2 * self.tail_cap:
                    self._trim()
            return n

    def _trim(self) -> None:
        joined = "".join(self._tail)
        drop = len(joined) - self.tail_cap
        if drop > 0:
            self.cut += drop
            joined = joined[drop:]
        self._tail, self._tail_len = [joined], len(joined)

    def flush(self) -> None:
        self.fh.flush()

    def tell(self) -> int:
        return self.written

    def text_since(self, offset: int, path: Path) -> str:
        """What was written from position ``offset`` on, as far as it was kept."""
        with self._lock:
            self.fh.flush()
            head = ""
            if offset < self.in_head:
                with open(path, encoding="utf-8", errors="replace") as fh:
                    head = fh.read(self.in_head)[offset:]
            self._trim()
            tail = "".join(self._tail)
            start = self.written - len(tail)
            return head + tail[max(0, offset - start) :]

    def finish(self) -> None:
        """Write the kept tail after a marker (once); later writes go straight to the file."""
        with self._lock:
            if self._finished:
                return
            self._trim()
            if self.cut:
                self.fh.write(
                    f"\n! [log cut: {self.cut} characters of output left out here; the log keeps its "
                    f"first and last {_size(self.tail_cap)} (max_log_bytes)]\n"
                )
            self.fh.write("".join(self._tail))
            self._tail, self._tail_len = [], 0
            self._finished = True
            self.fh.flush()


def _kill_group(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=3)
            return
        except subprocess.TimeoutExpired:
            continue


def _show(arg: str) -> str:
    return shlex.quote(arg)
