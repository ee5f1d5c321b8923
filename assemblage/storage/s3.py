"""S3 as the object store (AWS S3, MinIO, OpenStack Swift's s3api, any S3 endpoint).

Objects live under ``s3://BUCKET/PREFIX/<key>``. Uploads are checked: every
single-part upload and every part of a multipart upload carries its
``Content-MD5`` (the server refuses bytes that do not match), the object's
sha256 is stored in its metadata, and a content-addressed blob is refused
when the file's sha256 is not the one it is stored under. botocore's errors are
translated here: a missing key is ``FileNotFoundError``, a server-side (5xx)
or connection failure is :class:`TransientStorageError` (callers may retry),
anything else is :class:`~assemblage.errors.StorageError`.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlparse

from assemblage.errors import StorageError
from assemblage.storage.base import blob_key, safe_filename, sha256_file

__all__ = ["S3Store", "TransientStorageError"]

MiB = 1024 * 1024


class TransientStorageError(StorageError):
    """The store failed in a way that may pass (5xx, throttling, connection): retry later."""


_MISSING = {"NoSuchKey", "404", "NotFound"}
_TRANSIENT_CODES = {"SlowDown", "RequestTimeout", "ServiceUnavailable", "InternalError", "Throttling", "503", "500"}


def _translate(exc: Exception, what: str, key: str | None = None) -> Exception:
    """A botocore error as one of ours."""
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in _MISSING or status == 404:
            return FileNotFoundError(f"No such key: {key or what!r}")
        if status >= 500 or code in _TRANSIENT_CODES:
            return TransientStorageError(f"S3 {what}: {code or status} {err.get('Message', '')}".strip())
        return StorageError(f"S3 refused {what}: {code or status} {err.get('Message', '')}".strip())
    if isinstance(exc, BotoCoreError):
        return TransientStorageError(f"S3 {what}: {exc}")
    return exc


@contextmanager
def _translated(what: str) -> Iterator[None]:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise _translate(exc, what, what.split(" ")[-1]) from None


def _md5_file_parts(path: Path, part_size: int) -> tuple[str, list[bytes]]:
    """sha256 of the whole file and the MD5 digest of each part."""
    sha = hashlib.sha256()
    md5s = []
    with open(path, "rb") as fh:
        while block := fh.read(part_size):
            sha.update(block)
            md5s.append(hashlib.md5(block, usedforsecurity=False).digest())
    return sha.hexdigest(), md5s


class S3Store:
    """Objects in an S3 bucket, under a prefix. Thread-safe (one boto3 client)."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        client: Any = None,
        multipart_threshold: int = 64 * MiB,
        part_size: int = 16 * MiB,
    ) -> None:
        if part_size < 5 * MiB:
            raise ValueError("S3 parts are at least 5 MiB")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        if client is None:
            import boto3
            from botocore.config import Config

            config = Config(
                signature_version="s3v4",
                s3={"addressing_style": "path" if endpoint_url else "auto"},
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=10,
                read_timeout=120,
                # integrity is checked with Content-MD5 and our sha256 (works on every S3 server)
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            )
            client = boto3.session.Session().client(
                "s3",
                endpoint_url=endpoint_url,
                region_name=region or os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
                config=config,
            )
        self.client = client

    @classmethod
    def from_url(cls, url: str, *, endpoint_url: str | None = None, region: str | None = None, **kw: Any) -> S3Store:
        """``s3://BUCKET/PREFIX`` at ``endpoint_url`` (MinIO, Swift; None: AWS S3)."""
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise StorageError(f"not an S3 URL: {url!r} (expected s3://BUCKET/PREFIX)")
        return cls(parsed.netloc, parsed.path, endpoint_url=endpoint_url, region=region, **kw)

    def __repr__(self) -> str:
        return f"S3Store(s3://{self.bucket}/{self.prefix})"

    # ------------------------------------------------------------ keys

    def _key(self, key: str) -> str:
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise StorageError(f"refusing object key {key!r}")
        return f"{self.prefix}/{key}" if self.prefix else key

    # ------------------------------------------------------------ bucket

    def ensure_bucket(self) -> None:
        """Create the bucket when it does not exist (deployments usually create it themselves)."""
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            if status != 404:
                raise _translate(exc, f"bucket {self.bucket}") from None
        except Exception as exc:  # noqa: BLE001 - connection errors
            raise _translate(exc, f"bucket {self.bucket}") from None
        with _translated(f"create bucket {self.bucket}"):
            try:
                self.client.create_bucket(Bucket=self.bucket)
            except self.client.exceptions.BucketAlreadyOwnedByYou:
                pass

    def ping(self) -> None:
        """Raise :class:`StorageError` when the bucket cannot be reached."""
        with _translated(f"bucket {self.bucket}"):
            self.client.head_bucket(Bucket=self.bucket)

    # ------------------------------------------------------------ writes

    def store(self, key: str, file_path: Path, *, meta: dict[str, str] | None = None) -> None:
        """Upload ``file_path`` under ``key`` (overwrites), checked by Content-MD5 and sha256 metadata."""
        self._upload(key, Path(file_path), meta=meta)

    def _upload(self, key: str, path: Path, *, meta: dict[str, str] | None, expect_sha256: str | None = None) -> str:
        full = self._key(key)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc}") from None
        part_size = self.part_size if size > self.multipart_threshold else max(size, 1)
        sha, md5s = _md5_file_parts(path, part_size)
        if expect_sha256 is not None and sha != expect_sha256:
            raise StorageError(f"{path}: sha256 is {sha}, not {expect_sha256}: refusing to store it under that key")
        metadata = {k.lower(): str(v) for k, v in (meta or {}).items()}
        metadata["sha256"] = sha
        content_type = metadata.pop("content-type", "application/octet-stream")
        if size <= self.multipart_threshold:
            md5 = md5s[0] if md5s else hashlib.md5(b"", usedforsecurity=False).digest()
            with _translated(f"put {key}"), open(path, "rb") as fh:
                resp = self.client.put_object(
                    Bucket=self.bucket,
                    Key=full,
                    Body=fh,
                    ContentLength=size,
                    ContentType=content_type,
                    ContentMD5=base64.b64encode(md5).decode(),
                    Metadata=metadata,
                )
            etag = resp.get("ETag", "").strip('"')
            if etag and etag != md5.hex():
                raise StorageError(f"S3 put {key}: the server stored other bytes (ETag {etag}, expected {md5.hex()})")
            return sha
        self._multipart(key, full, path, part_size, md5s, metadata, content_type)
        return sha

    def _multipart(
        self,
        key: str,
        full: str,
        path: Path,
        part_size: int,
        md5s: list[bytes],
        metadata: dict[str, str],
        content_type: str,
    ) -> None:
        with _translated(f"start multipart {key}"):
            upload_id = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=full, Metadata=metadata, ContentType=content_type
            )["UploadId"]
        try:
            parts = []
            with open(path, "rb") as fh:
                for number, md5 in enumerate(md5s, start=1):
                    block = fh.read(part_size)
                    with _translated(f"upload part {number} of {key}"):
                        resp = self.client.upload_part(
                            Bucket=self.bucket,
                            Key=full,
                            UploadId=upload_id,
                            PartNumber=number,
                            Body=block,
                            ContentMD5=base64.b64encode(md5).decode(),
                        )
                    parts.append({"ETag": resp["ETag"], "PartNumber": number})
            with _translated(f"complete multipart {key}"):
                resp = self.client.complete_multipart_upload(
                    Bucket=self.bucket, Key=full, UploadId=upload_id, MultipartUpload={"Parts": parts}
                )
            expected = hashlib.md5(b"".join(md5s), usedforsecurity=False).hexdigest() + f"-{len(md5s)}"
            etag = resp.get("ETag", "").strip('"')
            if etag and etag != expected:
                raise StorageError(f"S3 multipart {key}: ETag {etag}, expected {expected}")
        except BaseException:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
            except Exception:  # noqa: BLE001 - the original error matters more
                pass
            raise

    def store_blob(
        self, file_path: Path, *, sha256: str | None = None, meta: dict[str, str] | None = None
    ) -> tuple[str, str]:
        """Store once per sha256 under ``objects/ab/<sha256>``; a second store is a no-op."""
        digest = sha256 or sha256_file(file_path)
        key = blob_key(digest)
        if not self.exists(key):
            self._upload(key, Path(file_path), meta=meta, expect_sha256=digest)
        return digest, key

    def delete(self, key: str) -> None:
        with _translated(f"delete {key}"):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    # ------------------------------------------------------------ reads

    def exists(self, key: str) -> bool:
        try:
            self._head(key)
        except FileNotFoundError:
            return False
        return True

    def _head(self, key: str) -> dict[str, Any]:
        with _translated(f"head {key}"):
            return self.client.head_object(Bucket=self.bucket, Key=self._key(key))

    def get(self, key: str) -> bytes:
        with self.open(key) as body:
            with _translated(f"read {key}"):
                return body.read()

    def open(self, key: str) -> BinaryIO:
        with _translated(f"get {key}"):
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]

    def get_metadata(self, key: str) -> dict[str, str]:
        head = self._head(key)
        meta = dict(head.get("Metadata", {}))
        if head.get("ContentType") and head["ContentType"] != "application/octet-stream":
            meta.setdefault("content-type", head["ContentType"])
        return meta

    def download_url(self, key: str, *, expires: int = 3600, filename: str | None = None) -> str | None:
        """A presigned GET URL valid for ``expires`` seconds."""
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key)}
        if filename:
            params["ResponseContentDisposition"] = f'attachment; filename="{safe_filename(filename)}"'
        with _translated(f"presign {key}"):
            return self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=int(expires))
