"""Shared plumbing for the fetchers: subprocesses, names, the checkout cache.

Subprocesses are always argument lists (never a shell string), run in their own
process group with stdin closed and a timeout; on timeout the whole group is
killed, so a stuck ``git-remote-https`` or ``apt`` method does not linger.

The cache is a plain folder. Each fetcher keeps its checkouts under
``CACHE/<kind>/`` and an index of *spec key -> result* under
``CACHE/<kind>/index/`` so that asking for the same source again (same URL and
ref, same archive sha256, same Debian package and version) returns the earlier
checkout without touching the network. Checkouts are published by renaming a
finished temporary folder into place under a per-key lock, so two workers that
fetch the same source at once end with one checkout, not a half-written one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from assemblage import _spawn
from assemblage.errors import SourceError

__all__ = [
    "StepTimeout",
    "file_sha256",
    "key_digest",
    "locked",
    "publish",
    "read_index",
    "run",
    "safe_name",
    "temp_dir",
    "write_index",
]

_NAME_BAD = re.compile(r"[^A-Za-z0-9._-]+")


class StepTimeout(SourceError):
    """A fetch step (a subprocess) ran out of time."""


def safe_name(text: str, fallback: str = "source") -> str:
    """A short name made of ``[A-Za-z0-9._-]``, never ``.``/``..``, at most 100 characters."""
    name = _NAME_BAD.sub("-", text).strip("-.")
    name = name[:100].strip("-.")
    return name or fallback


def key_digest(*parts: str) -> str:
    """A stable hex digest of the parts (used as a cache key)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode("utf-8", "surrogateescape"))
        h.update(b"\0")
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _tail(data: bytes | str | None, limit: int = 2000) -> str:
    if not data:
        return ""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]


def run(
    args: Sequence[str],
    *,
    what: str,
    timeout: float,
    cwd: Path | None = None,
    env: Mapping[str, str | None] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``args`` (a list, no shell); raise :class:`SourceError` naming ``what`` on failure.

    ``env`` entries are added to the current environment (``None`` removes one). Output is captured as
    text. With ``check=False`` a non-zero exit is returned, not raised; a
    missing program or a timeout always raises.
    """
    if isinstance(args, (str, bytes)):  # pragma: no cover - programming error
        raise TypeError("run() takes an argument list, never a string")
    full_env = dict(os.environ)
    for key, value in (env or {}).items():
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = value
    try:
        proc = _spawn.popen(
            list(args),
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,
        )
    except FileNotFoundError:
        raise SourceError(f"{what}: the program {args[0]!r} is not installed") from None
    except OSError as exc:
        raise SourceError(f"{what}: cannot run {args[0]!r}: {exc}") from None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise StepTimeout(f"{what}: gave up after {timeout:g} s (timeout)") from None
    except BaseException:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    result = subprocess.CompletedProcess(list(args), proc.returncode, out, err)
    if check and proc.returncode != 0:
        detail = _tail(err) or _tail(out) or f"exit status {proc.returncode}"
        raise SourceError(f"{what} failed: {detail}")
    return result


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (created if needed), across processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _index_file(root: Path, key: str) -> Path:
    return root / "index" / f"{key}.json"


def read_index(root: Path, key: str) -> dict | None:
    """The recorded result for ``key`` if it exists and its checkout is still there."""
    try:
        data = json.loads(_index_file(root, key).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("path"), str):
        return None
    if not (root / data["path"]).is_dir():
        return None
    return data


def write_index(root: Path, key: str, data: dict) -> None:
    """Record ``data`` (JSON-able; ``path`` relative to ``root``) atomically."""
    target = _index_file(root, key)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True, default=str)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def temp_dir(root: Path, prefix: str = ".tmp-") -> Iterator[Path]:
    """A temporary folder inside ``root`` (same filesystem, so it can be renamed into place)."""
    root.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(dir=root, prefix=prefix))
    try:
        yield path
    finally:
        remove_tree(path)


def remove_tree(path: Path) -> None:
    """Remove a folder even where an archive left read-only folders inside it."""

    def _retry(func, p, _exc):
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(p), 0o700)
            if os.path.isdir(p) and not os.path.islink(p):
                os.chmod(p, 0o700)
            func(p)

    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path, onerror=_retry)


def publish(tree: Path, final: Path) -> Path:
    """Move a finished ``tree`` to ``final``; if ``final`` already exists keep it (someone won)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.is_dir():
        return final
    try:
        os.rename(tree, final)
    except OSError:
        if final.is_dir():
            return final
        raise
    return final
