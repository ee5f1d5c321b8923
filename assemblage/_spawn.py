"""One lock between writing files that will be executed and starting child processes.

A file open for writing in this process is inherited by every child forked while
it is open, and the kernel refuses to execute a file that any process holds open
for writing (``ETXTBSY``, "Text file busy").  The descriptor is close-on-exec, so
a child started with :class:`subprocess.Popen` lets go of it when it execs; but
our analysis children (:mod:`assemblage.binaries.bounded`) fork without exec and
keep it for the whole analysis.  With builds on several threads, one thread
writing a compiler wrapper or copying a ``configure`` script while another forked
made the first build fail at random with exit status 127.

Every place that writes a file some build will execute, and every place that
forks, takes :data:`SPAWN_LOCK`; a child can then never inherit such a
descriptor.  The lock is held only while a file is written or until the child
has execed (``Popen`` returns after the exec), so it costs microseconds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

SPAWN_LOCK = threading.RLock()


def popen(args: Any, **kwargs: Any) -> subprocess.Popen:
    """``subprocess.Popen`` under the spawn lock."""
    with SPAWN_LOCK:
        return subprocess.Popen(args, **kwargs)


def run(
    args: Any,
    *,
    input: Any = None,
    capture_output: bool = False,
    timeout: float | None = None,
    check: bool = False,
    **kwargs: Any,
) -> subprocess.CompletedProcess:
    """``subprocess.run`` with the child started under the spawn lock."""
    if input is not None:
        kwargs["stdin"] = subprocess.PIPE
    if capture_output:
        kwargs["stdout"] = subprocess.PIPE
        kwargs["stderr"] = subprocess.PIPE
    with popen(args, **kwargs) as proc:
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            proc.kill()
            exc.output, exc.stderr = proc.communicate()
            raise
        except BaseException:
            proc.kill()
            raise
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    if check:
        result.check_returncode()
    return result


def fork() -> int:
    """``os.fork`` under the spawn lock."""
    with SPAWN_LOCK:
        return os.fork()


def write_executable(path: Path, text: str, mode: int = 0o755) -> None:
    """Write ``text`` to ``path`` and make it executable, with no child able to inherit it open."""
    with SPAWN_LOCK:
        path.write_text(text)
        path.chmod(mode)


def copy_file(src: str, dst: str) -> str:
    """A ``copy_function`` for :func:`shutil.copytree` (the copied tree holds scripts the build runs)."""
    with SPAWN_LOCK:
        return shutil.copy2(src, dst)
