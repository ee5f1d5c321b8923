"""The files of an export: objects copied (and checked) from the store, the manifest, tar.zst archives.

Objects land at ``objects/<sha256[:2]>/<sha256>``, the path derived from the
sha256 (never from a key string read from the database). Each is streamed from
the store once: hashed while it is written, and refused (``ExportError``) when
its bytes do not hash to the name it is stored under, so an export never ships
a corrupt binary with a manifest that vouches for it.

``MANIFEST.sha256`` is written in ``sha256sum`` format (``<hex>  <path>``, two
spaces, paths relative to the export) as files are finished, so it costs no
memory whatever the number of objects; ``sha256sum -c MANIFEST.sha256`` run in
the export folder checks everything else in it.

Archives are deterministic (sorted members, mtime 0, owner 0, mode 0644/0755,
PAX headers), zstd level 3 with a content checksum: the same export packs to
the same bytes.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
import threading
from collections.abc import Iterable
from contextlib import closing
from pathlib import Path
from typing import BinaryIO, Protocol

from assemblage.errors import ExportError
from assemblage.storage import ObjectStore
from assemblage.storage.local import LocalStore

__all__ = ["Manifest", "ObjectCopier", "pack_folder", "sha256_of", "MANIFEST"]

MANIFEST = "MANIFEST.sha256"
_SHA = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            h.update(block)
    return h.hexdigest()


class Manifest:
    """Lines of ``sha256sum`` output, appended as files are finished.

    Work done in parallel (the Parquet tables, the objects, hashing ``dataset.sqlite``) writes to a
    :meth:`section` of its own, a file of its own: the manifest is the main part followed by the
    sections in the order of their keys, so it is the same whatever finished first, and it holds no
    line in memory whatever the number of objects.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._sections: dict[str, _Section] = {}
        self._lock = threading.Lock()
        self._main = self.section("")

    def section(self, key: str) -> _Section:
        """The part of the manifest for one thread's files, listed in the order of ``key`` (any thread may
        open one; opening the same key again returns the same section)."""
        with self._lock:
            if key not in self._sections:
                path = self.root / f".{MANIFEST}.partial-{len(self._sections)}"
                self._sections[key] = _Section(self.root, path)
            return self._sections[key]

    def add(self, path: Path, sha256: str | None = None) -> str:
        return self._main.add(path, sha256)

    @property
    def files(self) -> int:
        return sum(s.files for s in self._sections.values())

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self._sections.values())

    def close(self) -> Path:
        final = self.root / MANIFEST
        partial = self.root / f".{MANIFEST}.partial"
        with open(partial, "wb") as out:
            for key in sorted(self._sections):
                part = self._sections[key]
                part.close()
                with open(part.path, "rb") as fh:
                    shutil.copyfileobj(fh, out)
                part.path.unlink()
        os.replace(partial, final)
        return final


class _Section:
    """One part of the manifest, written by one thread."""

    def __init__(self, root: Path, path: Path) -> None:
        self.root, self.path = root, path
        self._fh = open(path, "w", encoding="utf-8")
        self.files = 0
        self.bytes = 0

    def add(self, path: Path, sha256: str | None = None) -> str:
        rel = path.relative_to(self.root).as_posix()
        if "\n" in rel or "\\" in rel:
            raise ExportError(f"cannot list {rel!r} in {MANIFEST}: newline or backslash in the name")
        digest = sha256 or sha256_of(path)
        self._fh.write(f"{digest}  {rel}\n")
        self.files += 1
        self.bytes += path.stat().st_size
        return digest

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()


class _Sink(Protocol):
    def write(self, block: bytes, /) -> int: ...


def _read_verified(src: BinaryIO, dst: _Sink, sha256: str, what: str) -> int:
    h = hashlib.sha256()
    n = 0
    while block := src.read(CHUNK):
        h.update(block)
        dst.write(block)
        n += len(block)
    if h.hexdigest() != sha256:
        raise ExportError(
            f"{what}: the store returned bytes with sha256 {h.hexdigest()}, not {sha256}; "
            "the object store is corrupt (the export was not written)"
        )
    return n


class _Discard:
    def write(self, block: bytes, /) -> int:
        return len(block)


class ObjectCopier:
    """Copies objects out of a store into ``root/objects/`` (or into ``root/objects.tar.zst``)."""

    def __init__(
        self,
        store: ObjectStore,
        root: Path,
        manifest: Manifest | _Section,
        *,
        archive: bool = False,
        links: bool = True,
    ) -> None:
        self.store, self.root, self.manifest = store, root, manifest
        self.count = 0
        self.bytes = 0
        self._tar: tarfile.TarFile | None = None
        self._zst = None
        self._archive_path = root / "objects.tar.zst"
        self._links = links
        if archive:
            import zstandard

            raw = open(self._archive_path, "wb")
            self._zst = zstandard.ZstdCompressor(level=3, write_checksum=True).stream_writer(raw, closefd=True)
            self._tar = tarfile.open(fileobj=self._zst, mode="w|", format=tarfile.PAX_FORMAT)

    def copy(self, sha256: str, key: str) -> None:
        if not _SHA.match(sha256 or ""):
            raise ExportError(f"object {key!r}: {sha256!r} is not a sha256")
        rel = f"objects/{sha256[:2]}/{sha256}"
        dest = self.root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        size = self._link(sha256, key, dest) if self._tar is None else None
        if size is None:
            try:
                src = self.store.open(key)
            except FileNotFoundError:
                raise ExportError(f"object {key} (sha256 {sha256}) is missing from the store") from None
            with closing(src), open(dest, "wb") as out:
                size = _read_verified(src, out, sha256, f"object {key}")
        self.count += 1
        self.bytes += size
        if self._tar is None:
            self.manifest.add(dest, sha256)
            return
        info = _info(rel, size, 0o644)
        with open(dest, "rb") as fh:
            self._tar.addfile(info, fh)
        dest.unlink()

    def _link(self, sha256: str, key: str, dest: Path) -> int | None:
        """A hard link to the store's file when the store is a local folder on the same filesystem.

        Objects are content-addressed and never rewritten in place (a store writes a temporary file and
        renames it), so the export's name and the store's name can share the bytes; they are still read and
        hashed, so a corrupt object fails the export as a copied one would. None when no link could be made
        (an object store that is not a folder, another filesystem, a filesystem without hard links, a file
        the user may not link): then the object is copied.
        """
        if not self._links:
            return None
        if not isinstance(self.store, LocalStore):
            self._links = False
            return None
        try:
            os.link(self.store.local_path(key), dest)
        except FileNotFoundError:
            raise ExportError(f"object {key} (sha256 {sha256}) is missing from the store") from None
        except OSError:  # EXDEV, EPERM, EMLINK, ...: copy this one (and the rest, when it is the filesystem)
            self._links = False
            return None
        try:
            with open(dest, "rb") as src:
                return _read_verified(src, _Discard(), sha256, f"object {key}")
        except ExportError:
            dest.unlink()
            raise

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()
            assert self._zst is not None  # opened with the tar
            self._zst.close()
            objects = self.root / "objects"
            for d in sorted(objects.glob("*"), reverse=True) if objects.exists() else []:
                d.rmdir()
            if objects.exists():
                objects.rmdir()
            self.manifest.add(self._archive_path)


def _info(name: str, size: int, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, mode, 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def pack_folder(folder: Path, dest: Path, *, prefix: str) -> str:
    """``folder`` as one deterministic ``.tar.zst`` at ``dest`` with members under ``prefix/``; its sha256."""
    import zstandard

    with open(dest, "wb") as raw:
        with zstandard.ZstdCompressor(level=3, write_checksum=True).stream_writer(raw, closefd=False) as zst:
            with tarfile.open(fileobj=zst, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for path in _walk(folder):
                    rel = f"{prefix}/{path.relative_to(folder).as_posix()}"
                    if path.is_dir():
                        info = _info(rel, 0, 0o755)
                        info.type = tarfile.DIRTYPE
                        tar.addfile(info)
                    else:
                        with open(path, "rb") as fh:
                            tar.addfile(_info(rel, path.stat().st_size, 0o644), fh)
    return sha256_of(dest)


def _walk(folder: Path) -> Iterable[Path]:
    for path in sorted(folder.iterdir()):
        if path.is_symlink():
            continue  # an export holds regular files and folders only
        yield path
        if path.is_dir():
            yield from _walk(path)
