"""The object store interface: binaries, PDBs and logs, content-addressed where it matters."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

__all__ = ["ObjectStore", "blob_key", "read_chunks", "safe_filename", "sha256_file"]


def sha256_file(path: Path, *, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_chunks(stream: BinaryIO, size: int = 1 << 20) -> Iterator[bytes]:
    """The bytes of an opened object, ``size`` at a time, closing it at the end (for streamed responses)."""
    try:
        while block := stream.read(size):
            yield block
    finally:
        stream.close()


def safe_filename(name: str, default: str = "download") -> str:
    """``name`` reduced to ``[A-Za-z0-9._-]`` for a Content-Disposition header."""
    return "".join(c for c in name if c.isalnum() or c in "._-") or default


def blob_key(sha256: str) -> str:
    """Where a content-addressed object lives: ``objects/ab/<sha256>``."""
    return f"objects/{sha256[:2]}/{sha256}"


@runtime_checkable
class ObjectStore(Protocol):
    """Where artifacts go. Implementations: a local folder (embedded) and S3 (service)."""

    def store(self, key: str, file_path: Path, *, meta: dict[str, str] | None = None) -> None:
        """Upload ``file_path`` under ``key`` (overwrites)."""
        ...

    def store_blob(
        self, file_path: Path, *, sha256: str | None = None, meta: dict[str, str] | None = None
    ) -> tuple[str, str]:
        """Store content-addressed once per sha256; returns (sha256, key). A second store is a no-op."""
        ...

    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""
        ...

    def get(self, key: str) -> bytes:
        """The object's bytes; ``FileNotFoundError`` when there is none."""
        ...

    def open(self, key: str) -> BinaryIO:
        """A readable stream of the object; ``FileNotFoundError`` when there is none."""
        ...

    def get_metadata(self, key: str) -> dict[str, str]:
        """Metadata given at store time."""
        ...

    def download_url(self, key: str, *, expires: int = 3600, filename: str | None = None) -> str | None:
        """A time-limited URL for the object (saved as ``filename`` when given), or None when the store
        serves bytes itself."""
        ...
