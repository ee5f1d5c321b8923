from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from assemblage.errors import StorageError
from assemblage.storage import LocalStore, ObjectStore, open_store


def test_blob_is_stored_once_by_sha256(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    f = tmp_path / "a.bin"
    f.write_bytes(b"hello")
    digest, key = store.store_blob(f)
    assert digest == hashlib.sha256(b"hello").hexdigest()
    assert key == f"objects/{digest[:2]}/{digest}"
    mtime = store.local_path(key).stat().st_mtime_ns
    assert store.store_blob(f) == (digest, key)
    assert store.local_path(key).stat().st_mtime_ns == mtime  # not rewritten
    assert store.get(key) == b"hello"
    assert store.exists(key)
    assert isinstance(store, ObjectStore)


def test_missing_key_and_escape(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}")
    with pytest.raises(FileNotFoundError, match="No such key"):
        store.get("objects/00/none")
    with pytest.raises(StorageError):
        store.get("../etc/passwd")


def test_metadata_round_trip(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    f = tmp_path / "log.txt"
    f.write_text("x")
    store.store("logs/1.log", f, meta={"content-type": "text/plain"})
    assert store.get_metadata("logs/1.log") == {"content-type": "text/plain"}
    with store.open("logs/1.log") as fh:
        assert fh.read() == b"x"
