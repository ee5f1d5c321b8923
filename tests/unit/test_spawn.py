"""A child must never inherit a file that a build will execute while it is still open for writing.

Without the spawn lock a forked analysis child kept a compiler wrapper open and the
build that ran it failed with "Text file busy" (exit 127) at random.
"""

from __future__ import annotations

import ast
import os
import threading
import time
from pathlib import Path

import assemblage
from assemblage import _spawn


class _SlowPath(type(Path())):  # type: ignore[misc]
    """A path whose write stays open until the test lets it finish."""

    writing = threading.Event()
    finish = threading.Event()

    def write_text(self, *args, **kwargs):  # type: ignore[override]
        with open(self, "w") as fh:
            fh.write(args[0])
            fh.flush()
            self.writing.set()
            assert self.finish.wait(10)
        return len(args[0])


def test_no_fork_while_an_executable_is_open(tmp_path: Path) -> None:
    target = _SlowPath(tmp_path / "cc")
    writer = threading.Thread(target=_spawn.write_executable, args=(target, "#!/bin/sh\nexit 0\n"))
    writer.start()
    assert _SlowPath.writing.wait(10)
    forked: list[int] = []

    def do_fork() -> None:
        pid = _spawn.fork()
        if pid == 0:  # pragma: no cover - the child
            time.sleep(1)
            os._exit(0)
        forked.append(pid)

    forker = threading.Thread(target=do_fork)
    forker.start()
    time.sleep(0.3)
    assert forked == [], "a child was forked while the wrapper was open for writing"
    _SlowPath.finish.set()
    writer.join(10)
    forker.join(10)
    assert len(forked) == 1
    # the child (alive for another ~0.7 s) holds nothing open for writing: the file runs
    r = _spawn.run([str(target)], capture_output=True, timeout=10)
    assert r.returncode == 0, r.stderr
    os.waitpid(forked[0], 0)


def test_executables_survive_concurrent_forks(tmp_path: Path) -> None:
    """Many wrappers written and run while another thread keeps forking long-lived children."""
    stop = threading.Event()
    children: list[int] = []

    def fork_loop() -> None:
        while not stop.is_set():
            pid = _spawn.fork()
            if pid == 0:  # pragma: no cover - the child
                time.sleep(0.2)
                os._exit(0)
            children.append(pid)
            time.sleep(0.001)

    t = threading.Thread(target=fork_loop)
    t.start()
    try:
        for i in range(100):
            p = tmp_path / f"w{i}"
            _spawn.write_executable(p, "#!/bin/sh\nexit 0\n")
            r = _spawn.run([str(p)], capture_output=True, timeout=10)
            assert r.returncode == 0, r.stderr
    finally:
        stop.set()
        t.join()
        for pid in children:
            os.waitpid(pid, 0)


def test_run_returns_output_and_raises_on_timeout() -> None:
    r = _spawn.run(["sh", "-c", "cat; echo err >&2; exit 3"], input="in", capture_output=True, text=True)
    assert (r.returncode, r.stdout, r.stderr) == (3, "in", "err\n")
    import subprocess

    try:
        _spawn.run(["sleep", "5"], timeout=0.2)
    except subprocess.TimeoutExpired:
        pass
    else:  # pragma: no cover
        raise AssertionError("no timeout")


def test_every_spawn_site_takes_the_lock() -> None:
    """No module but _spawn calls subprocess.Popen/run or os.fork directly."""
    root = Path(assemblage.__file__).parent
    direct = {
        ("subprocess", "Popen"),
        ("subprocess", "run"),
        ("subprocess", "check_output"),
        ("subprocess", "check_call"),
        ("subprocess", "call"),
        ("os", "fork"),
        ("os", "system"),
    }
    offenders = []
    for f in root.rglob("*.py"):
        if f.name == "_spawn.py":
            continue
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and (node.func.value.id, node.func.attr) in direct
            ):
                offenders.append(f"{f.relative_to(root)}:{node.lineno}")
    assert offenders == []
