"""Find the binaries a build produced, by magic bytes, never by file name, and take them out of the build safely.

A build is hostile: what it leaves may be a link to a file of the host (``ln -s
/etc/shadow calc.pdb``), a folder that is a link, a FIFO, or a hard link. Files are
opened relative to folder descriptors with ``O_NOFOLLOW`` and copied out through the
descriptor that was checked (see :func:`collect_binaries`).
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "Collected",
    "FoundBinary",
    "RefusedOutput",
    "classify",
    "collect_binaries",
    "copy_out",
    "find_binaries",
    "open_inside",
    "snapshot",
]

# Trees that hold the build system's own probes, not the project's outputs (config.tests: Qt's configure
# probes, such as qt6-imageformats' binary_for_strip_built/liblib1.so, one function and no debug information)
_IGNORED_DIRS = {
    "CMakeFiles",
    "meson-private",
    "meson-logs",
    ".git",
    "conftest.dir",
    "autom4te.cache",
    "config.tests",
}


@dataclass(frozen=True, slots=True)
class FoundBinary:
    path: Path
    relpath: str
    format: str  # "elf" | "pe" | "ar"
    kind: str  # "executable" | "shared" | "object" | "static"


def classify(path: Path) -> tuple[str, str] | None:
    """(format, kind) of a file from its first bytes, or None when it is not a binary we collect."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(os.dup(fd), "rb") as fh:
            return classify_stream(fh)
    finally:
        os.close(fd)


def classify_stream(fh: BinaryIO) -> tuple[str, str] | None:
    """:func:`classify` on an open file (read from its start)."""
    try:
        fh.seek(0)
        head = fh.read(64)
        if head[:4] == b"\x7fELF" and len(head) >= 18:
            little = head[5] == 1
            (e_type,) = struct.unpack("<H" if little else ">H", head[16:18])
            kind = {1: "object", 2: "executable", 3: "shared"}.get(e_type)
            if kind == "shared" and _elf_is_pie_executable(fh, head):
                kind = "executable"
            return ("elf", kind) if kind else None
        if head[:2] == b"MZ" and len(head) >= 64:
            (pe_off,) = struct.unpack("<I", head[60:64])
            fh.seek(pe_off)
            sig = fh.read(24)
            if sig[:4] != b"PE\0\0" or len(sig) < 24:
                return None
            (characteristics,) = struct.unpack("<H", sig[22:24])
            return ("pe", "shared" if characteristics & 0x2000 else "executable")
        if head[:8] == b"!<arch>\n":
            return ("ar", "static")
    except (OSError, ValueError, struct.error):
        return None
    return None


def _elf_is_pie_executable(fh, head: bytes) -> bool:
    """A PIE executable is ET_DYN too: it has a PT_INTERP program header."""
    is64 = head[4] == 2
    end = "<" if head[5] == 1 else ">"
    try:
        if is64:
            fh.seek(0)
            hdr = fh.read(64)
            (phoff,) = struct.unpack(end + "Q", hdr[32:40])
            phentsize, phnum = struct.unpack(end + "HH", hdr[54:58])
        else:
            fh.seek(0)
            hdr = fh.read(52)
            (phoff,) = struct.unpack(end + "I", hdr[28:32])
            phentsize, phnum = struct.unpack(end + "HH", hdr[42:46])
        for i in range(min(phnum, 256)):
            fh.seek(phoff + i * phentsize)
            (p_type,) = struct.unpack(end + "I", fh.read(4))
            if p_type == 3:  # PT_INTERP
                return True
    except (struct.error, OSError):
        return False
    return False


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime_ns) of every regular file, to tell afterwards what the build made."""
    out = {}
    for dirpath, _dirnames, filenames in os.walk(root):
        for fn in filenames:
            p = os.path.join(dirpath, fn)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            out[os.path.relpath(p, root)] = (st.st_size, st.st_mtime_ns)
    return out


def find_binaries(root: Path, before: dict[str, tuple[int, int]], *, kinds: set[str]) -> list[FoundBinary]:
    """Binaries under ``root`` that are new or changed since ``before``, of the wanted kinds (not copied out).

    Used to tell whether a build system made anything; :func:`collect_binaries` takes them out of the build.
    """
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        found, _ = _walk(fd, before, kinds, dest=None)
    finally:
        os.close(fd)
    return [FoundBinary(path=Path(root, b.relpath), relpath=b.relpath, format=b.format, kind=b.kind) for b in found]


@dataclass
class Collected:
    """What :func:`collect_binaries` took out of a build, and what it refused (one line each)."""

    binaries: list[FoundBinary] = field(default_factory=list)
    pdbs: dict[str, Path] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)


def collect_binaries(
    build_fd: int,
    src_rel: str,
    before: dict[str, tuple[int, int]],
    *,
    kinds: set[str],
    dest: Path,
    view: str,
    pdbs: bool = False,
) -> Collected:
    """Copy the new binaries of the tree ``src_rel`` of the build folder (open at ``build_fd``) into ``dest``.

    Each file is opened relative to its folder's descriptor without following a link
    (``O_NOFOLLOW``; a folder reached through a link is never entered), must be a
    regular file (owned by the build user when we are root: a hard link to a file of
    the host is refused), and is classified and copied from that same descriptor: the
    bytes hashed and stored later are the copies in ``dest``, which the build cannot
    reach. ``pdbs``: also take ``X.pdb`` next to each PE ``X.exe``/``X.dll``. Links
    that point out of the build folder (``view``: where the build saw it) are noted.
    """
    out = Collected()
    src_fd = open_folder(build_fd, src_rel)
    try:
        found, refused = _walk(src_fd, before, kinds, dest=dest, view=f"{view}/{src_rel}")
        out.binaries, out.refused = found, refused
        if pdbs:
            for b in found:
                if b.format != "pe":
                    continue
                rel = str(Path(b.relpath).with_suffix(".pdb"))
                try:
                    fd = open_inside(src_fd, rel)
                except FileNotFoundError:
                    continue
                except RefusedOutput as exc:
                    if not any(r.startswith(f"{rel}: ") for r in out.refused):  # the walk may have named it
                        out.refused.append(f"{rel}: {exc}")
                    continue
                try:
                    target = dest / rel
                    copy_out(fd, target)
                    out.pdbs[b.relpath] = target
                finally:
                    os.close(fd)
    finally:
        os.close(src_fd)
    return out


class RefusedOutput(Exception):
    """A file a build left that is not taken out of it (a link, not a regular file, not the build's own)."""


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY


def open_folder(dir_fd: int, rel: str) -> int:
    """A descriptor of the folder ``rel`` under ``dir_fd``, no component a link (:class:`RefusedOutput`)."""
    fd = os.dup(dir_fd)
    for part in _parts(rel):
        try:
            nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise RefusedOutput(f"{part} is a link or not a folder") from None
            raise
        os.close(fd)
        fd = nfd
    return fd


def open_inside(dir_fd: int, rel: str) -> int:
    """A read-only descriptor of the regular file ``rel`` under ``dir_fd``, never through a link."""
    *folders, name = _parts(rel)
    parent = open_folder(dir_fd, "/".join(folders)) if folders else os.dup(dir_fd)
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=parent)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            try:
                target = os.readlink(name, dir_fd=parent)
            except OSError:
                target = "?"
            raise RefusedOutput(f"a symbolic link (to {target}), not followed") from None
        if exc.errno == errno.ENXIO:
            raise RefusedOutput("a socket, not a regular file") from None
        raise
    finally:
        os.close(parent)
    try:
        _check_regular(os.fstat(fd))
    except RefusedOutput:
        os.close(fd)
        raise
    return fd


def _check_regular(st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise RefusedOutput("not a regular file")
    if os.geteuid() == 0 and st.st_uid != _build_uid():
        # builds run as the build user when we are root: a file it did not make is a hard link to someone else's
        raise RefusedOutput(f"owned by uid {st.st_uid}, not by the build user (a hard link to a file of the host?)")


def _build_uid() -> int:
    from assemblage.builds.runner import BUILD_UID

    return BUILD_UID


def _parts(rel: str) -> list[str]:
    parts = [p for p in str(rel).split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise RefusedOutput(f"{rel!r} is not a path inside the build")
    return parts


def copy_out(fd: int, target: Path) -> int:
    """Copy the open file ``fd`` (from its start) to ``target`` (a new file, 0644); returns the size."""
    target.parent.mkdir(parents=True, exist_ok=True)
    out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    size = 0
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        while chunk := os.read(fd, 1 << 20):
            os.write(out, chunk)  # a regular file: written whole
            size += len(chunk)
    finally:
        os.close(out)
    return size


def _link_leaves(target: str, where: str, view: str) -> bool:
    """Whether a link at ``where`` (a folder as the build saw it) pointing at ``target`` leaves ``view``."""
    full = posixpath.normpath(target if target.startswith("/") else posixpath.join(where, target))
    root = posixpath.normpath(view.rsplit("/", 1)[0]) if "/" in view else view  # the build folder itself
    return not (full == root or full.startswith(root + "/"))


def _walk(
    top_fd: int, before: dict[str, tuple[int, int]], kinds: set[str], *, dest: Path | None, view: str = ""
) -> tuple[list[FoundBinary], list[str]]:
    found: list[FoundBinary] = []
    refused: list[str] = []
    for dirpath, dirnames, filenames, dfd in os.fwalk(".", dir_fd=top_fd, follow_symlinks=False):
        rel_dir = os.path.normpath(dirpath)
        names = sorted(dirnames + filenames)
        dirnames[:] = sorted(d for d in dirnames if d not in _IGNORED_DIRS)
        for fn in names:
            rel = os.path.normpath(os.path.join(rel_dir, fn))
            try:
                st = os.stat(fn, dir_fd=dfd, follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISLNK(st.st_mode):
                if view:
                    try:
                        target = os.readlink(fn, dir_fd=dfd)
                    except OSError:
                        continue
                    if _link_leaves(target, posixpath.normpath(posixpath.join(view, rel_dir)), view):
                        refused.append(f"{rel}: a symbolic link out of the build folder (to {target}), not followed")
                continue
            if stat.S_ISDIR(st.st_mode):
                continue
            if not stat.S_ISREG(st.st_mode):
                if dest is not None:
                    refused.append(f"{rel}: not a regular file")
                continue
            if before.get(rel) == (st.st_size, st.st_mtime_ns):
                continue
            try:
                fd = os.open(fn, _FILE_FLAGS, dir_fd=dfd)
            except OSError:
                continue
            try:
                fst = os.fstat(fd)
                if not stat.S_ISREG(fst.st_mode):
                    continue
                with os.fdopen(os.dup(fd), "rb") as fh:
                    c = classify_stream(fh)
                if not c or c[1] not in kinds:
                    continue
                if dest is None:
                    found.append(FoundBinary(path=Path(rel), relpath=rel, format=c[0], kind=c[1]))
                    continue
                try:
                    _check_regular(fst)
                except RefusedOutput as exc:
                    refused.append(f"{rel}: {exc}")
                    continue
                copied = dest / rel
                copy_out(fd, copied)
                with open(copied, "rb") as fh:  # classify what was copied (the build may have changed it since)
                    c = classify_stream(fh)
                if not c or c[1] not in kinds:
                    copied.unlink()
                    continue
                found.append(FoundBinary(path=copied, relpath=rel, format=c[0], kind=c[1]))
            finally:
                os.close(fd)
    found.sort(key=lambda b: b.relpath)
    return found, refused
