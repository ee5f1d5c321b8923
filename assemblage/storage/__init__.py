"""Object stores: a local folder (embedded) and S3 (service), behind one interface."""

from __future__ import annotations

from typing import TYPE_CHECKING

from assemblage.storage.base import ObjectStore, blob_key, sha256_file
from assemblage.storage.local import LocalStore

if TYPE_CHECKING:
    from assemblage.settings import Settings

__all__ = ["LocalStore", "ObjectStore", "blob_key", "sha256_file", "open_store", "store_from_settings"]


def open_store(url: str, *, endpoint_url: str | None = None, region: str | None = None) -> ObjectStore:
    """The one store factory: ``file:///path`` or a plain path -> LocalStore; ``s3://bucket/prefix`` ->
    S3Store at ``endpoint_url`` (MinIO, Swift; None: AWS) in ``region``."""
    from pathlib import Path

    if url.startswith("s3://"):
        from assemblage.storage.s3 import S3Store

        return S3Store.from_url(url, endpoint_url=endpoint_url, region=region)
    if url.startswith("file://"):
        url = url[len("file://") :]
    return LocalStore(Path(url))


def store_from_settings(settings: Settings, url: str | None = None) -> ObjectStore:
    """The store the settings name (``storage_url``, or ``url`` when given), with their S3 endpoint and region."""
    return open_store(url or settings.storage_url, endpoint_url=settings.s3_endpoint_url, region=settings.s3_region)
