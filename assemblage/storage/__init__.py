"""Object stores: a local folder (embedded) and S3 (service), behind one interface."""

from assemblage.storage.base import ObjectStore, blob_key, sha256_file
from assemblage.storage.local import LocalStore

__all__ = ["LocalStore", "ObjectStore", "blob_key", "sha256_file", "open_store"]


def open_store(url: str) -> ObjectStore:
    """``file:///path`` or a plain path -> LocalStore; ``s3://bucket/prefix`` -> S3Store."""
    from pathlib import Path

    if url.startswith("s3://"):
        from assemblage.storage.s3 import S3Store

        return S3Store.from_url(url)
    if url.startswith("file://"):
        url = url[len("file://"):]
    return LocalStore(Path(url))
