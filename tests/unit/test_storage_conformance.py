"""Every ObjectStore passes the same tests: the local folder, and S3 on a real S3 server (Swift + s3api).

The S3 case needs the server that ``make test`` starts (scripts/services-extra.sh); when
nothing answers on the endpoint it is skipped, saying so (a failure in CI: tests.conftest.unavailable).
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from assemblage.errors import StorageError
from assemblage.storage import LocalStore, ObjectStore, blob_key
from tests.conftest import unavailable

S3_ENDPOINT = os.environ.get("ASSEMBLAGE_TEST_S3", "http://127.0.0.1:8080")
S3_KEYS = {"AWS_ACCESS_KEY_ID": "test:tester", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
MiB = 1024 * 1024


def _s3_up() -> bool:
    try:
        urllib.request.urlopen(f"{S3_ENDPOINT}/healthcheck", timeout=2)
        return True
    except (OSError, urllib.error.URLError):
        return False


@pytest.fixture(scope="module")
def s3_bucket():
    if not _s3_up():
        unavailable(f"no S3 server at {S3_ENDPOINT} (start it: scripts/services-extra.sh start)")
    from assemblage.storage.s3 import S3Store

    os.environ.update({k: os.environ.get(k, v) for k, v in S3_KEYS.items()})
    bucket = f"asm-conf-{uuid.uuid4().hex[:8]}"
    S3Store(bucket, endpoint_url=S3_ENDPOINT).ensure_bucket()
    return bucket


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path) -> ObjectStore:
    if request.param == "local":
        return LocalStore(tmp_path / "objects")
    from assemblage.storage.s3 import S3Store

    bucket = request.getfixturevalue("s3_bucket")
    return S3Store(
        bucket, f"t-{uuid.uuid4().hex[:6]}", endpoint_url=S3_ENDPOINT, multipart_threshold=6 * MiB, part_size=5 * MiB
    )


def _file(tmp_path: Path, data: bytes, name: str = "f.bin") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_is_an_object_store(store):
    assert isinstance(store, ObjectStore)


def test_store_get_open_metadata(store, tmp_path):
    p = _file(tmp_path, b"hello\x00world" * 100)
    store.store("logs/build-1.log", p, meta={"content-type": "text/plain", "origin": "test"})
    assert store.exists("logs/build-1.log")
    assert store.get("logs/build-1.log") == p.read_bytes()
    with store.open("logs/build-1.log") as fh:
        assert fh.read() == p.read_bytes()
    meta = store.get_metadata("logs/build-1.log")
    assert meta["origin"] == "test"


def test_overwrite(store, tmp_path):
    store.store("k/x", _file(tmp_path, b"one"))
    store.store("k/x", _file(tmp_path, b"two"))
    assert store.get("k/x") == b"two"


def test_missing_key_is_file_not_found(store):
    assert not store.exists("nope/nothing")
    with pytest.raises(FileNotFoundError, match="No such key"):
        store.get("nope/nothing")
    with pytest.raises(FileNotFoundError):
        store.open("nope/nothing")
    with pytest.raises(FileNotFoundError):
        store.get_metadata("nope/nothing")


def test_blobs_are_content_addressed_once(store, tmp_path):
    data = os.urandom(4096)
    p = _file(tmp_path, data)
    digest, key = store.store_blob(p)
    assert digest == hashlib.sha256(data).hexdigest()
    assert key == blob_key(digest) == f"objects/{digest[:2]}/{digest}"
    assert store.store_blob(p, sha256=digest) == (digest, key)  # a no-op the second time
    assert store.get(key) == data


def test_empty_file(store, tmp_path):
    digest, key = store.store_blob(_file(tmp_path, b""))
    assert store.get(key) == b""


def test_keys_cannot_escape(store, tmp_path):
    with pytest.raises(StorageError):
        store.store("../outside", _file(tmp_path, b"x"))


def test_large_file_roundtrip(store, tmp_path):
    data = os.urandom(13 * MiB)  # above the S3 multipart threshold of this fixture: three parts
    digest, key = store.store_blob(_file(tmp_path, data))
    got = store.get(key)
    assert len(got) == len(data) and hashlib.sha256(got).hexdigest() == digest


def test_download_url(store, tmp_path):
    digest, key = store.store_blob(_file(tmp_path, b"binary bytes"))
    url = store.download_url(key, expires=60)
    if isinstance(store, LocalStore):
        assert url is None  # the API serves the bytes itself
        return
    with urllib.request.urlopen(url, timeout=10) as r:
        assert hashlib.sha256(r.read()).hexdigest() == digest


# ------------------------------------------------------------------ S3 only


def test_s3_blob_with_wrong_sha256_is_refused(s3_bucket, tmp_path):
    from assemblage.storage.s3 import S3Store

    s = S3Store(s3_bucket, "wrong", endpoint_url=S3_ENDPOINT)
    with pytest.raises(StorageError, match="sha256"):
        s.store_blob(_file(tmp_path, b"real bytes"), sha256="0" * 64)
    assert not s.exists(blob_key("0" * 64))


def test_s3_tampered_presigned_url_is_refused(s3_bucket, tmp_path):
    from assemblage.storage.s3 import S3Store

    s = S3Store(s3_bucket, "sig", endpoint_url=S3_ENDPOINT)
    _, key = s.store_blob(_file(tmp_path, b"secret corpus"))
    url = s.download_url(key, expires=60)
    sig = url.split("X-Amz-Signature=")[1].split("&")[0]
    forged = url.replace(sig, ("0" if sig[0] != "0" else "1") + sig[1:])
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(forged, timeout=10)
    assert err.value.code == 403
    other = url.replace(key.split("/")[-1], "f" * 64)  # the right signature for another key
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(other, timeout=10)
    assert err.value.code == 403


def test_s3_wrong_secret_is_a_storage_error(s3_bucket, tmp_path):
    import boto3
    from botocore.config import Config

    from assemblage.storage.s3 import S3Store

    client = boto3.client(
        "s3",
        endpoint_url=S3_ENDPOINT,
        aws_access_key_id="test:tester",
        aws_secret_access_key="wrong",
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
    s = S3Store(s3_bucket, "x", client=client)
    with pytest.raises(StorageError) as err:
        s.store("k", _file(tmp_path, b"x"))
    assert "botocore" not in type(err.value).__module__


def test_s3_unreachable_endpoint_is_transient(tmp_path):
    from assemblage.storage.s3 import S3Store, TransientStorageError

    s = S3Store(
        "b",
        endpoint_url="http://127.0.0.1:9",
    )
    s.client.meta.config.retries = {"max_attempts": 1}
    with pytest.raises(TransientStorageError):
        s.store("k", _file(tmp_path, b"x"))
