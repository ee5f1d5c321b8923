"""Archives: download (http/https) or read a local file, check and record its sha256, unpack safely.

:func:`safe_extract` is our own extractor rather than ``tarfile.extractall``
with a filter: it must also cover zip files, cap total size and member count
*while writing* (headers can lie), and defeat symlink chains, which a
per-member check cannot see. It works in three steps:

1. read every member's header and refuse the archive outright if any member is
   absolute, contains ``..``, is a device/FIFO, is a hard link to something
   outside the archive, lies under a member that is a symlink, or if the
   members or declared sizes exceed the caps;
2. write regular files and folders (no symlink exists yet, so nothing can be
   written through one), creating every file with ``O_NOFOLLOW|O_EXCL``;
3. create the symlinks last and check each one's resolved target stays inside
   the folder (this catches chains such as ``b -> .`` then ``l -> b/..``).

On any refusal the destination is removed, so nothing is left half-written.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import os
import stat
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from assemblage.errors import SourceError, UnsafeArchiveError
from assemblage.recipes.models import ArchiveSource
from assemblage.sources._util import (
    file_sha256,
    key_digest,
    locked,
    publish,
    read_index,
    remove_tree,
    safe_name,
    temp_dir,
    write_index,
)
from assemblage.sources.fetched import FetchedSource, newest_mtime, subdir
from assemblage.sources.kinds import FetchJob, SourceKind, register
from assemblage.sources.licenses import detect_license
from assemblage.sources.policy import DEFAULT_PORTS, FetchPolicy
from assemblage.urls import file_url_path, is_file_url, is_url, redact

__all__ = ["ArchiveKind", "DEFAULT_MAX_BYTES", "DEFAULT_MAX_MEMBERS", "archive_name", "fetch_archive", "safe_extract"]

DEFAULT_MAX_BYTES = 2 * 1024**3
DEFAULT_MAX_MEMBERS = 100_000
_SUFFIXES = (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tbz2", ".tbz", ".txz", ".tar", ".zip")
_CHUNK = 1 << 20


def archive_name(ref: str) -> str:
    """``https://x/foo-1.0.tar.gz?dl=1`` -> ``foo-1.0``."""
    path = urllib.parse.urlsplit(ref).path if "://" in ref else ref
    base = path.rstrip("/").rsplit("/", 1)[-1]
    for suffix in _SUFFIXES:
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
            break
    return safe_name(base, "archive")


# ---------------------------------------------------------------- members


@dataclass(frozen=True, slots=True)
class _Member:
    name: str  # normalised, relative, '/'-separated
    kind: str  # "file" | "dir" | "symlink" | "hardlink"
    size: int
    mode: int
    mtime: float
    target: str | None = None  # link target (symlink: as written; hardlink: normalised member name)
    ref: object = None  # the TarInfo / ZipInfo


def _refuse(archive: Path, member: str, why: str) -> UnsafeArchiveError:
    err = UnsafeArchiveError(f"unsafe archive {archive.name}: member {member!r} {why}")
    err.archive = str(archive)  # type: ignore[attr-defined]
    err.member = member  # type: ignore[attr-defined]
    return err


def _clean_name(archive: Path, raw: str) -> str:
    """The member path as a relative, normalised name; refuses absolute paths and ``..``."""
    if "\0" in raw:
        raise _refuse(archive, raw, "has a NUL byte in its name")
    unified = raw.replace("\\", "/")
    if unified.startswith("/") or (len(unified) > 1 and unified[1] == ":"):
        raise _refuse(archive, raw, "has an absolute path")
    parts = [p for p in unified.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise _refuse(archive, raw, "climbs out of the folder with '..'")
    return "/".join(parts)


def _tar_members(archive: Path, tf: tarfile.TarFile, max_members: int) -> Iterator[_Member]:
    count = 0
    while True:
        info = tf.next()
        if info is None:
            return
        count += 1
        if count > max_members:
            raise _refuse(archive, info.name, f"is past the cap of {max_members} members")
        name = _clean_name(archive, info.name)
        if info.isdir():
            kind = "dir"
        elif info.isreg():
            kind = "file"
        elif info.issym():
            kind = "symlink"
        elif info.islnk():
            kind = "hardlink"
        elif info.ischr() or info.isblk():
            raise _refuse(archive, info.name, "is a device file")
        elif info.isfifo():
            raise _refuse(archive, info.name, "is a FIFO")
        else:
            raise _refuse(archive, info.name, f"has an unsupported type {info.type!r}")
        target = info.linkname if kind in ("symlink", "hardlink") else None
        if kind == "hardlink":
            try:
                target = _clean_name(archive, info.linkname) if info.linkname else ""
            except UnsafeArchiveError:
                raise _refuse(archive, info.name, f"is a hard link outside the folder ({info.linkname!r})") from None
        yield _Member(name, kind, info.size if kind == "file" else 0, info.mode, info.mtime, target, info)


def _zip_members(archive: Path, zf: zipfile.ZipFile, max_members: int) -> Iterator[_Member]:
    infos = zf.infolist()
    if len(infos) > max_members:
        raise _refuse(archive, infos[max_members].filename, f"is past the cap of {max_members} members")
    for info in infos:
        name = _clean_name(archive, info.filename)
        unix_mode = (info.external_attr >> 16) & 0xFFFF
        ftype = stat.S_IFMT(unix_mode) if unix_mode else 0
        try:
            mtime = time.mktime(info.date_time + (0, 0, -1))
        except (OverflowError, ValueError):
            mtime = 0.0
        if info.is_dir() or ftype == stat.S_IFDIR:
            yield _Member(name, "dir", 0, unix_mode & 0o7777 or 0o755, mtime, None, info)
        elif ftype == stat.S_IFLNK:
            if info.file_size > 4096:
                raise _refuse(archive, info.filename, "is a symlink with an oversized target")
            target = zf.read(info).decode("utf-8", "surrogateescape")
            yield _Member(name, "symlink", 0, 0o777, mtime, target, info)
        elif ftype in (0, stat.S_IFREG):
            yield _Member(name, "file", info.file_size, unix_mode & 0o7777 or 0o644, mtime, None, info)
        elif ftype in (stat.S_IFCHR, stat.S_IFBLK):
            raise _refuse(archive, info.filename, "is a device file")
        else:
            raise _refuse(archive, info.filename, "is a special file (FIFO or socket)")


def _check_plan(archive: Path, members: list[_Member], max_bytes: int) -> None:
    symlinks = {m.name for m in members if m.kind == "symlink"}
    regular = set()
    total = 0
    for m in members:
        if not m.name:
            if m.kind == "dir":
                continue
            raise _refuse(archive, m.name, "has an empty name")
        parts = m.name.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in symlinks:
                raise _refuse(archive, m.name, f"lies under the symlink {'/'.join(parts[:i])!r}")
        if m.kind == "symlink":
            target = m.target or ""
            if not target or target.startswith("/") or "\0" in target:
                raise _refuse(archive, m.name, f"is a symlink to an absolute or empty path {target!r}")
            joined = os.path.normpath(os.path.join(os.path.dirname(m.name), target))
            if joined == ".." or joined.startswith("../"):
                raise _refuse(archive, m.name, f"is a symlink pointing outside the folder ({target!r})")
        elif m.kind == "hardlink":
            if m.target not in regular:
                raise _refuse(archive, m.name, f"is a hard link to {m.target!r}, not an earlier file of the archive")
        elif m.kind == "file":
            regular.add(m.name)
            total += m.size
            if total > max_bytes:
                raise _refuse(archive, m.name, f"takes the archive past the cap of {max_bytes} bytes")


# ---------------------------------------------------------------- writing


class _Writer:
    def __init__(self, archive: Path, dest: Path, max_bytes: int) -> None:
        self.archive = archive
        self.dest = dest
        self.max_bytes = max_bytes
        self.written = 0
        self.dir_times: list[tuple[Path, float, int]] = []

    def _path(self, name: str) -> Path:
        return self.dest.joinpath(*name.split("/"))

    def mkdirs(self, path: Path) -> None:
        rel = path.relative_to(self.dest)
        cur = self.dest
        for part in rel.parts:
            cur = cur / part
            try:
                os.mkdir(cur, 0o755)
            except FileExistsError:
                st = os.lstat(cur)
                if not stat.S_ISDIR(st.st_mode):
                    raise _refuse(self.archive, str(rel), "needs a folder where the archive put a file") from None

    def directory(self, m: _Member) -> None:
        path = self._path(m.name)
        self.mkdirs(path)
        self.dir_times.append((path, m.mtime, (m.mode & 0o777) | 0o700))

    def file(self, m: _Member, stream: IO[bytes]) -> None:
        path = self._path(m.name)
        self.mkdirs(path.parent)
        with contextlib.suppress(FileNotFoundError):
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                raise _refuse(self.archive, m.name, "is a file where the archive put a folder")
            os.unlink(path)  # a later member with the same name replaces the earlier one
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(path, flags, 0o600)
        got = 0
        with os.fdopen(fd, "wb") as out:
            while True:
                block = stream.read(_CHUNK)
                if not block:
                    break
                got += len(block)
                self.written += len(block)
                if got > m.size:
                    raise _refuse(self.archive, m.name, "holds more data than its header declares")
                if self.written > self.max_bytes:
                    raise _refuse(self.archive, m.name, f"takes the archive past the cap of {self.max_bytes} bytes")
                out.write(block)
        os.chmod(path, (m.mode & 0o777) | 0o600)
        with contextlib.suppress(OSError, OverflowError, ValueError):
            os.utime(path, (m.mtime, m.mtime), follow_symlinks=False)

    def hardlink(self, m: _Member) -> None:
        assert m.target is not None
        source = self._path(m.target)
        path = self._path(m.name)
        self.mkdirs(path.parent)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        if not stat.S_ISREG(os.lstat(source).st_mode):  # pragma: no cover - guarded by _check_plan
            raise _refuse(self.archive, m.name, "is a hard link to something that is not a file")
        os.link(source, path, follow_symlinks=False)

    def symlink(self, m: _Member) -> None:
        path = self._path(m.name)
        self.mkdirs(path.parent)
        with contextlib.suppress(FileNotFoundError):
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                raise _refuse(self.archive, m.name, "is a symlink where the archive put a folder")
            os.unlink(path)
        assert m.target is not None
        os.symlink(m.target, path)

    def check_symlinks(self, links: list[_Member]) -> None:
        root = os.path.realpath(self.dest)
        for m in links:
            resolved = os.path.realpath(self._path(m.name))
            if resolved != root and not resolved.startswith(root + os.sep):
                raise _refuse(self.archive, m.name, f"is a symlink that resolves outside the folder ({m.target!r})")

    def finish(self) -> None:
        for path, mtime, mode in reversed(self.dir_times):
            with contextlib.suppress(OSError):
                os.chmod(path, mode)
            with contextlib.suppress(OSError, OverflowError, ValueError):
                os.utime(path, (mtime, mtime), follow_symlinks=False)


def _sniff(archive: Path) -> str:
    with open(archive, "rb") as f:
        head = f.read(262 + 8)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00" or head[257:262] == b"ustar":
        return "tar"
    raise SourceError(f"{archive.name}: not a tar.gz, tar.bz2, tar.xz, tar or zip archive")


def safe_extract(
    archive: Path,
    dest: Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_members: int = DEFAULT_MAX_MEMBERS,
) -> Path:
    """Unpack ``archive`` into ``dest`` (which must be absent or empty) and return the source root.

    The root is ``dest`` itself, or its only entry when the archive holds a
    single top-level folder. Raises :class:`UnsafeArchiveError` (naming the
    archive and the member) for anything that would land outside ``dest`` or
    exceed the caps; ``dest`` is then removed again. Raises
    :class:`SourceError` for a file that is not a readable archive.
    """
    archive = Path(archive)
    dest = Path(dest)
    kind = _sniff(archive)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise SourceError(f"{dest}: the destination of an archive must be an empty folder")
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if kind == "zip":
            _extract_zip(archive, dest, max_bytes, max_members)
        else:
            _extract_tar(archive, dest, max_bytes, max_members)
    except UnsafeArchiveError:
        remove_tree(dest)
        raise
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, ValueError, RuntimeError) as exc:
        remove_tree(dest)
        raise SourceError(f"{archive.name}: cannot unpack: {exc}") from None
    entries = list(dest.iterdir())
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0]
    return dest


def _extract_tar(archive: Path, dest: Path, max_bytes: int, max_members: int) -> None:
    with tarfile.open(archive, "r:*") as tf:
        members = list(_tar_members(archive, tf, max_members))

        def open_member(m):
            stream = tf.extractfile(m.ref)
            assert stream is not None
            return stream

        _write_members(archive, dest, members, max_bytes, open_member)


def _extract_zip(archive: Path, dest: Path, max_bytes: int, max_members: int) -> None:
    with zipfile.ZipFile(archive) as zf:
        members = list(_zip_members(archive, zf, max_members))
        _write_members(archive, dest, members, max_bytes, lambda m: zf.open(m.ref))


def _write_members(archive: Path, dest: Path, members: list, max_bytes: int, open_member) -> None:
    """Check the whole plan, write directories and files (never through links), then the links."""
    _check_plan(archive, members, max_bytes)
    writer = _Writer(archive, dest, max_bytes)
    for m in members:
        if m.kind == "dir" and m.name:
            writer.directory(m)
        elif m.kind == "file":
            with open_member(m) as stream:
                writer.file(m, stream)
        elif m.kind == "hardlink":
            writer.hardlink(m)
    links = [m for m in members if m.kind == "symlink"]
    for m in links:
        writer.symlink(m)
    writer.check_symlinks(links)
    writer.finish()


# ---------------------------------------------------------------- fetching


def _guarded(base: type[http.client.HTTPConnection], policy: FetchPolicy) -> type[http.client.HTTPConnection]:
    """``base`` whose socket comes from ``policy.connect``: the address is checked after resolution.

    ``http.client`` makes its socket with ``self._create_connection(address, timeout,
    source_address)`` in ``connect()``; HTTPS wraps that socket afterwards with the
    host name for SNI and certificate checks, so only the address changes hands.
    """

    class Guarded(base):  # type: ignore[valid-type, misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)

            def connect(address: tuple[str, int], timeout: Any = None, source_address: Any = None):
                return policy.connect(address[0], address[1], timeout if isinstance(timeout, (int, float)) else None)

            self._create_connection = connect

    return Guarded


class _HTTP(urllib.request.HTTPHandler):
    def __init__(self, policy: FetchPolicy) -> None:
        super().__init__()
        self._connection = _guarded(http.client.HTTPConnection, policy)

    def http_open(self, req):
        return self.do_open(self._connection, req)


class _HTTPS(urllib.request.HTTPSHandler):
    def __init__(self, policy: FetchPolicy) -> None:
        super().__init__()
        self._connection = _guarded(http.client.HTTPSConnection, policy)

    def https_open(self, req):
        # HTTPSHandler.__init__ keeps its SSL context in _context, which typeshed does not declare
        return self.do_open(self._connection, req, context=self._context)  # type: ignore[attr-defined]


def _opener(policy: FetchPolicy) -> urllib.request.OpenerDirector:
    """http and https only (redirects too: urllib follows them to http, https and ftp, and ftp has no handler).

    A restricted policy gets no proxy handler, since a proxy would resolve names itself.
    """
    opener = urllib.request.OpenerDirector()
    handlers: list[urllib.request.BaseHandler] = [
        _HTTP(policy),
        _HTTPS(policy),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPRedirectHandler(),
        urllib.request.HTTPErrorProcessor(),
        urllib.request.UnknownHandler(),
    ]
    if not policy.restricts_network:
        handlers.append(urllib.request.ProxyHandler())
    for handler in handlers:
        opener.add_handler(handler)
    return opener


def _download(url: str, target: Path, *, timeout: float, max_bytes: int, policy: FetchPolicy | None = None) -> str:
    """Stream ``url`` to ``target``; return its sha256.

    Under a restricted policy every failure below HTTP (refused, timed out, reset,
    an answer that is not HTTP) reads the same, so errors do not map ports.
    """
    import hashlib

    policy = policy or FetchPolicy.unrestricted()
    shown = redact(url)
    try:
        parts = urllib.parse.urlsplit(url)
        where = f"{parts.hostname}:{parts.port or DEFAULT_PORTS.get(parts.scheme.lower(), '')}"
        # urllib takes user:password@ for part of the host name: send it as basic authentication instead,
        # on this request only (an unredirected header is not copied to where a redirect leads)
        netloc = parts.netloc.rpartition("@")[2]
        request = urllib.request.Request(
            urllib.parse.urlunsplit(parts._replace(netloc=netloc)), headers={"User-Agent": "assemblage"}
        )
        if "@" in parts.netloc:
            user = urllib.parse.unquote(parts.username or "")
            password = urllib.parse.unquote(parts.password or "")
            basic = base64.b64encode(f"{user}:{password}".encode()).decode()
            request.add_unredirected_header("Authorization", f"Basic {basic}")
    except ValueError as exc:
        raise SourceError(f"{shown}: not a valid URL ({exc})") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise SourceError(f"{shown}: only http and https archive URLs are supported")
    h = hashlib.sha256()
    size = 0
    deadline = time.monotonic() + timeout
    try:
        with _opener(policy).open(request, timeout=min(timeout, 60)) as resp, open(target, "wb") as out:
            while True:
                block = resp.read(_CHUNK)
                if not block:
                    break
                size += len(block)
                if size > max_bytes:
                    raise SourceError(f"{shown}: download is larger than the cap of {max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise SourceError(f"{shown}: download gave up after {timeout:g} s (timeout)")
                h.update(block)
                out.write(block)
    except urllib.error.HTTPError as exc:
        raise SourceError(f"{shown}: download failed: HTTP {exc.code} {redact(str(exc.reason))}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        # URLError wraps connection errors; OSError (reset, timeout) and HTTPException (BadStatusLine,
        # IncompleteRead, RemoteDisconnected) come from reading; ValueError from a URL http.client refuses
        if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, SourceError):
            raise exc.reason from None
        if policy.restricts_network:
            raise SourceError(f"{shown}: download failed: no usable HTTP answer from {where}") from None
        reason = getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"
        raise SourceError(f"{shown}: download failed: {redact(str(reason))}") from None
    return h.hexdigest()


def fetch_archive(
    ref: str,
    *,
    local: Path | None,
    expected_sha256: str | None,
    name: str,
    cache: Path,
    timeout: float,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_members: int = DEFAULT_MAX_MEMBERS,
    policy: FetchPolicy | None = None,
) -> dict:
    """Unpack the archive into ``cache/archive`` (once per sha256); return the index record.

    ``ref`` is the URL (or the path as the recipe wrote it); ``local`` the
    resolved file for a local archive, ``None`` for a URL, downloaded under ``policy``.
    """
    root = cache / "archive"
    root.mkdir(parents=True, exist_ok=True)
    if expected_sha256:
        hit = read_index(root, expected_sha256)
        if hit:
            return hit
    url_key = key_digest("url", ref) if local is None else None
    if url_key and not expected_sha256:
        hit = read_index(root, url_key)
        if hit:
            return hit
    with temp_dir(root) as tmp:
        if local is None:
            file = tmp / "download"
            digest = _download(ref, file, timeout=timeout, max_bytes=max_bytes, policy=policy)
        else:
            if not local.is_file():
                raise SourceError(f"{redact(ref)}: no such archive file")
            file = local
            digest = file_sha256(local)
        if expected_sha256 and digest != expected_sha256:
            raise SourceError(f"{redact(ref)}: sha256 is {digest}, but the recipe expects {expected_sha256}")
        with locked(root / "locks" / f"{digest}.lock"):
            hit = read_index(root, digest)
            if hit is None:
                tree = safe_extract(file, tmp / "x", max_bytes=max_bytes, max_members=max_members)
                final = publish(tree, root / f"{name}-{digest[:16]}")
                hit = {"path": final.name, "sha256": digest}
                write_index(root, digest, hit)
        if url_key:
            write_index(root, url_key, hit)
        return hit


@register
class ArchiveKind(SourceKind):
    """``archive:`` sources: a tarball or zip (a URL, or a path / ``file://`` URL on this machine)."""

    kind = "archive"
    model = ArchiveSource
    url_field = "archive"

    def label(self, spec: Any) -> str:
        return redact(spec.archive)

    def short_name(self, spec: Any) -> str:
        return archive_name(spec.archive)

    def local(self, spec: Any) -> tuple[str, str] | None:
        if is_file_url(spec.archive):
            return "archive", file_url_path(spec.archive)
        return None if is_url(spec.archive) else ("archive", spec.archive)

    def fetch(self, spec: Any, job: FetchJob) -> FetchedSource:
        rec = fetch_archive(
            spec.archive,
            local=job.local_path,
            expected_sha256=spec.sha256,
            name=job.name,
            cache=job.cache,
            timeout=job.timeout,
            policy=job.policy,
        )
        root = job.cache / "archive" / rec["path"]
        return FetchedSource(
            kind="archive",
            label=job.label,
            name=job.name,
            path=subdir(root, spec, job.label),
            sha256=rec["sha256"],
            license=detect_license(root),
            url=redact(spec.archive) if job.local_path is None else None,
            last_update=newest_mtime(root),
        )

    def pin(self, spec: Any, fetched: FetchedSource) -> Any:
        return spec.model_copy(update={"sha256": fetched.sha256}) if fetched.sha256 else spec
