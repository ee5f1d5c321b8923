"""boto3 for the fleet: clients whose errors become :class:`FleetError`, and S3 lifecycle rules for logs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlparse

from assemblage.errors import FleetError
from assemblage.settings import Settings

__all__ = ["client", "translated", "log_lifecycle_rules", "apply_log_lifecycle", "read_secret_parameter"]


def client(service: str, settings: Settings, **kw: Any):
    """A boto3 client in the fleet's region (or boto3's default: AWS_DEFAULT_REGION, the instance's)."""
    import boto3

    region = settings.fleet.region or None
    if service == "s3" and settings.s3_endpoint_url:
        kw.setdefault("endpoint_url", settings.s3_endpoint_url)
    return boto3.client(service, region_name=region, **kw)


@contextmanager
def translated(what: str) -> Iterator[None]:
    """botocore's errors as FleetError naming the call, the AWS error code and what to check."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

    try:
        yield
    except NoCredentialsError:
        raise FleetError(f"{what}: no AWS credentials (an instance role, AWS_PROFILE or AWS_ACCESS_KEY_ID)") from None
    except NoRegionError:
        raise FleetError(f"{what}: no AWS region (set [fleet] region or AWS_DEFAULT_REGION)") from None
    except ClientError as exc:
        err = exc.response.get("Error", {})
        raise FleetError(f"{what}: {err.get('Code', 'error')}: {err.get('Message', exc)}") from None
    except BotoCoreError as exc:
        raise FleetError(f"{what}: {exc}") from None


def _bucket_and_prefix(storage_url: str) -> tuple[str, str]:
    parsed = urlparse(storage_url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise FleetError(f"ASSEMBLAGE_STORAGE_URL is {storage_url!r}: lifecycle rules need s3://BUCKET/PREFIX")
    prefix = parsed.path.strip("/")
    return parsed.netloc, f"{prefix}/" if prefix else ""


def log_lifecycle_rules(settings: Settings) -> tuple[str, dict[str, Any]]:
    """The bucket and its lifecycle configuration: build logs to STANDARD_IA, then expired; stale uploads aborted.

    Logs are written once and read rarely (a failed build's log, by a person), so after
    ``log_infrequent_after_days`` they move to infrequent access and after
    ``log_expire_after_days`` they go; binaries and PDBs are the corpus and are never expired.
    Multipart uploads that a killed worker left unfinished are aborted after 7 days.
    """
    bucket, prefix = _bucket_and_prefix(settings.storage_url)
    f = settings.fleet
    rules = [
        {
            "ID": "assemblage-build-logs",
            "Filter": {"Prefix": prefix + f.log_prefix},
            "Status": "Enabled",
            "Transitions": [{"Days": f.log_infrequent_after_days, "StorageClass": "STANDARD_IA"}],
            "Expiration": {"Days": f.log_expire_after_days},
        },
        {
            "ID": "assemblage-abort-stale-uploads",
            "Filter": {"Prefix": prefix},
            "Status": "Enabled",
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
        },
    ]
    return bucket, {"Rules": rules}


def apply_log_lifecycle(settings: Settings, *, s3=None) -> tuple[str, dict[str, Any]]:
    """Put the rules on the bucket (replacing its lifecycle configuration); returns what was put."""
    bucket, config = log_lifecycle_rules(settings)
    s3 = s3 or client("s3", settings)
    with translated(f"PutBucketLifecycleConfiguration on {bucket}"):
        s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration=config)
    return bucket, config


def read_secret_parameter(settings: Settings, name: str) -> str:
    """The value of an SSM SecureString parameter (decrypted); never logged."""
    ssm = client("ssm", settings)
    with translated(f"GetParameter {name}"):
        return ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
