"""A local folder as the object store. For the embedded mode, development and tests."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

from assemblage.errors import StorageError
from assemblage.storage.base import blob_key, sha256_file

__all__ = ["LocalStore"]


class LocalStore:
    """Objects as files under ``root``; writes are atomic (temporary file, then rename)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        p = (self.root / key).resolve()
        if not p.is_relative_to(self.root.resolve()) or ".." in Path(key).parts:
            raise StorageError(f"refusing object key outside the store: {key!r}")
        return p

    def store(self, key: str, file_path: Path, *, meta: dict[str, str] | None = None) -> None:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as out, open(file_path, "rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest)
            if meta:
                dest.with_name(dest.name + ".meta.json").write_text(json.dumps(meta, sort_keys=True))
        except OSError as exc:
            raise StorageError(f"cannot store {key!r} in {self.root}: {exc}") from None

    def store_blob(
        self, file_path: Path, *, sha256: str | None = None, meta: dict[str, str] | None = None
    ) -> tuple[str, str]:
        digest = sha256 or sha256_file(file_path)
        key = blob_key(digest)
        if not self._path(key).exists():
            self.store(key, file_path, meta=meta)
        return digest, key

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"No such key: {key!r}") from None

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError:
            raise FileNotFoundError(f"No such key: {key!r}") from None

    def get_metadata(self, key: str) -> dict[str, str]:
        p = self._path(key)
        meta = p.with_name(p.name + ".meta.json")
        if not p.exists():
            raise FileNotFoundError(f"No such key: {key!r}")
        return json.loads(meta.read_text()) if meta.exists() else {}

    def download_url(self, key: str, *, expires: int = 3600, filename: str | None = None) -> str | None:
        return None

    def local_path(self, key: str) -> Path:
        return self._path(key)
