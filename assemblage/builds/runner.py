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
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import IO

from assemblage import _spawn
from assemblage.builds.plan import Step

__all__ = ["BUILD_GID", "BUILD_UID", "Limits", "LocalRunner", "on_kill_all", "StepResult", "allow_builds", "builds_stopped", "kill_all_builds", "sandbox_available", "SANDBOX_ROOT"]

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
    file_size: int = 8 * 1024**3


@dataclass(kw_only=True)
class StepResult:
    step: Step
    returncode: int | None
    duration: float
    timed_out: bool = False
    signal: int | None = None
    tail: list[str] = field(default_factory=list)


@functools.cache
def sandbox_available() -> bool:
    """bubblewrap is installed and can create namespaces here."""
    if os.environ.get("ASSEMBLAGE_NO_SANDBOX"):
        return False
    bwrap = shutil.which("bwrap")
    if not bwrap:
        return False
    try:
        r = _spawn.run(
            [bwrap, *_system_binds(), "--unshare-all", "--die-with-parent", "--", "true"],
            capture_output=True, timeout=20, **_drop_user_kwargs(),
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return r.returncode == 0


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

    where = "here"  # where the toolchains come from, for messages

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
            return "bubblewrap (no network, read-only system, private /tmp)"
        return "NONE (bubblewrap missing or unusable): the build has network access"

    # -- reproducibility (assemblage.builds.reproducible): probing the toolchain where builds run

    def query(self, argv: list[str], *, timeout: float = 120) -> str:
        """The output of a command of ours run where builds run (here), for probing toolchains."""
        try:
            r = _spawn.run(argv, capture_output=True, text=True, timeout=timeout,
                           env={"PATH": _SYSTEM_PATH, "LC_ALL": "C.UTF-8"})
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

    def run(self, steps: list[Step], scratch: Path, src_rel: str, env: dict[str, str], log: IO[str],
            *, timeout: float | None = None) -> list[StepResult]:
        """Run steps in order until one fails or the deadline passes. Logs everything to ``log``."""
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
            "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
            "--bind", str(scratch), SANDBOX_ROOT,
            "--chdir", cwd_in,
            "--unshare-all", "--die-with-parent", "--new-session",
            "--hostname", "assemblage-build",
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

    def _run_step(self, step: Step, scratch: Path, src_rel: str, env: dict[str, str], log: IO[str], timeout: float) -> StepResult:
        argv, cwd = self._argv(step, scratch, src_rel)
        log.write(f"\n$ {step.name}: {' '.join(_show(a) for a in step.argv)}\n")
        log.flush()
        started = time.monotonic()
        tail: list[str] = []
        try:
            proc = _spawn.popen(
                argv, cwd=cwd, env=env,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                preexec_fn=self._limits, close_fds=True, **_drop_user_kwargs(),
            )
        except OSError as exc:
            log.write(f"! cannot start {step.argv[0]!r}: {exc}\n")
            return StepResult(step=step, returncode=127, duration=0.0, tail=[str(exc)])
        with _live_lock:
            _live.add(proc)
        if _stopping.is_set():
            _kill_group(proc)
        timed_out = False

        def pump() -> None:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.decode("utf-8", "replace")
                log.write(line)
                tail.append(line.rstrip("\n"))
                if len(tail) > 200:
                    del tail[:100]

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
        reader.join(timeout=10)
        with _live_lock:
            _live.discard(proc)
        rc = proc.returncode
        sig = -rc if rc is not None and rc < 0 else None
        duration = time.monotonic() - started
        if timed_out:
            log.write(f"\n! killed after the build's time limit ({self.limits.timeout:.0f}s)\n")
        log.write(f"# exit {rc} after {duration:.2f}s\n")
        return StepResult(step=step, returncode=rc, duration=duration, timed_out=timed_out, signal=sig, tail=tail)


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
