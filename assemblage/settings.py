"""The service's settings: one frozen, typed object read from the environment.

Every field is an ``ASSEMBLAGE_*`` environment variable (``database_url`` is
``ASSEMBLAGE_DATABASE_URL``). A settings file (TOML, named by
``ASSEMBLAGE_SETTINGS_FILE`` or passed to :func:`load_settings`) may add to
them; the environment wins over the file. Outside ``environment =
"development"`` the default secret key is refused.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from assemblage.errors import SettingsError

__all__ = [
    "Settings",
    "SettingsError",
    "FleetSettings",
    "FleetGroup",
    "load_settings",
    "get_settings",
    "read_setting",
    "DEFAULT_SECRET",
    "MAX_BINARIES_PER_BUILD",
]

DEFAULT_SECRET = "change-this-development-secret"
# The most binaries one build may leave; a build that leaves more fails as ``too_many_binaries``.
MAX_BINARIES_PER_BUILD = 500
SETTINGS_FILE_VAR = "ASSEMBLAGE_SETTINGS_FILE"
_file: ContextVar[Path | None] = ContextVar("settings_file", default=None)


class FleetGroup(BaseModel):
    """One EC2 Auto Scaling group of workers for one queue family (``[fleet.groups.linux]`` in TOML)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)  # the Auto Scaling group's name
    min: int = Field(0, ge=0)
    max: int = Field(ge=0)
    builds_per_instance: int = Field(1, gt=0)  # also the worker's concurrency (-c)
    queues: list[str] = Field(default_factory=list)  # consumed by its workers; default: the family's own queue
    instance_type: str | None = None  # for `fleet cost`, with [fleet.prices]

    @model_validator(mode="after")
    def _order(self) -> FleetGroup:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        return self


class FleetSettings(BaseModel):
    """Workers on EC2: the groups the reconciler sizes, what user-data installs, prices for `fleet cost`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    region: str | None = None  # default: the AWS_DEFAULT_REGION of boto3
    groups: dict[str, FleetGroup] = Field(default_factory=dict)  # key: linux, windows-cross or msvc
    interval: float = Field(60.0, gt=0)  # seconds between reconciliations in the coordinator
    cooldown: float = Field(300.0, ge=0)  # seconds after a change before a group may shrink
    prices: dict[str, float] = Field(default_factory=dict)  # instance type -> USD per hour
    # what `fleet user-data` puts on an instance
    package: str = "assemblage[service]"  # a pip requirement: a version, a wheel URL, git+https://...
    image: str | None = None  # a toolchain image to pull for `runner: docker` builds (built from source if unset)
    source_url: str = "https://github.com/assemblage-dataset/assemblage"  # checked out to build the image
    source_ref: str = "main"
    secrets_parameter: str | None = None  # SSM SecureString holding the secret environment lines
    msvc_image: str = "assemblage-msvc:latest"
    # logs in the bucket (`fleet lifecycle`)
    log_prefix: str = "logs/"
    log_infrequent_after_days: int = Field(30, ge=30)  # S3 refuses STANDARD_IA before 30 days
    log_expire_after_days: int = Field(365, gt=0)

    @model_validator(mode="after")
    def _families(self) -> FleetSettings:
        known = ("linux", "windows-cross", "msvc")
        unknown = sorted(set(self.groups) - set(known))
        if unknown:
            raise ValueError(
                f"unknown queue famil{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}; "
                f"known: {', '.join(known)}"
            )
        if self.log_expire_after_days <= self.log_infrequent_after_days:
            raise ValueError("log_expire_after_days must be after log_infrequent_after_days")
        return self


class Settings(BaseSettings):
    """Where the service keeps things and how its parts find each other."""

    model_config = SettingsConfigDict(env_prefix="ASSEMBLAGE_", frozen=True, extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    database_url: str = "sqlite:///assemblage-data/assemblage.sqlite"
    broker_url: str = "redis://127.0.0.1:6379/0"
    storage_url: str = "file://assemblage-data"
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    secret_key: SecretStr = SecretStr(DEFAULT_SECRET)

    # GitHub crawls
    github_token: SecretStr | None = None  # one or several personal access tokens, comma-separated
    github_api_url: str = "https://api.github.com"
    github_max_wait: float = Field(120.0, ge=0)  # longest rate-limit wait inside one task (longer: retried later)
    github_clone_prefix: str = "https://github.com/"  # a search result whose clone URL starts otherwise is skipped

    # workers
    cache_dir: Path = Path("assemblage-data/sources")  # fetched sources on this worker
    work_root: Path | None = None  # scratch folders of builds
    # builds run in bubblewrap (or the docker runner); without it a build fails (sandbox_unavailable) unless this
    # is on: then it runs with the network and the host's files, and its row and the run's summary say so
    allow_unsandboxed: bool = False
    no_sandbox: bool = False  # bubblewrap off on purpose (developers, tests); needs allow_unsandboxed too
    keep_scratch: bool = False  # keep each build's scratch folder after the build (to look into a failure)
    install_dependencies: bool = False  # the local runner installs missing Debian packages on the host (root)
    apt_options: str = ""  # extra apt -o options, whitespace-separated Key=Value (Debian indexes, dependencies)
    max_log_bytes: int = Field(16 * 1024**2, ge=4096)  # a build log keeps its first and last halves of this
    source_root: Path = Path(".")  # submitted local sources resolve here and must stay inside (API and workers)
    # fetches reach public addresses only; these host names, addresses or networks (CIDR) are allowed
    # although private (mirrors on the local network). The service's own ports stay refused.
    fetch_allow: Annotated[tuple[str, ...], NoDecode] = ()
    fetch_timeout: float = Field(600.0, gt=0)  # seconds per fetch step (a git command, a download)
    heartbeat_interval: float = Field(5.0, gt=0)
    worker_dead_after: float = Field(30.0, gt=0)  # no heartbeat for this long: the worker is dead
    task_time_limit: int = Field(4 * 3600, gt=0)  # seconds; hard limit of one build task
    task_max_retries: int = Field(8, ge=0)
    max_binaries_per_build: int = Field(MAX_BINARIES_PER_BUILD, ge=1)  # past it the build fails (too_many_binaries)
    # stopping: SIGTERM or a spot interruption notice stops taking tasks; builds still running after
    # drain_timeout seconds (or spot_margin seconds before the interruption) are handed back
    drain_timeout: float = Field(90.0, ge=0)
    instance_metadata_url: str | None = None  # EC2: http://169.254.169.254 (off elsewhere: nothing is probed)
    spot_poll_interval: float = Field(5.0, gt=0)
    spot_margin: float = Field(30.0, ge=0)

    # logs and metrics
    log_format: Literal["text", "json"] = "text"  # json: one object per line with run_id and build_id
    log_level: str = "INFO"
    metrics_cache_seconds: float = Field(10.0, ge=0)  # corpus figures are read from the database this often

    # coordinator
    sweep_interval: float = Field(10.0, gt=0)  # how often dead workers and lost messages are looked for
    presign_expires: int = Field(3600, gt=0, le=7 * 24 * 3600)
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    max_request_bytes: int = Field(1 << 20, ge=1024)  # bodies past this are refused (413) while they stream in
    max_builds_per_run: int = Field(50_000, ge=1)  # sources x configurations of one submitted run

    @field_validator("fetch_allow", mode="before")
    @classmethod
    def _comma_list(cls, v: Any) -> Any:
        if isinstance(v, str):
            return tuple(item.strip() for item in v.split(",") if item.strip())
        return v

    @field_validator("fetch_allow")
    @classmethod
    def _allow_entries(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        import ipaddress
        import re

        for entry in v:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                if not re.fullmatch(r"[A-Za-z0-9_.-]+", entry):
                    raise ValueError(f"{entry!r} is neither a host name nor an address or network (CIDR)") from None
        return v

    fleet: FleetSettings = Field(default_factory=FleetSettings)

    @model_validator(mode="after")
    def _refuse_default_secret(self) -> Settings:
        if self.environment != "development" and self.secret_key.get_secret_value() == DEFAULT_SECRET:
            raise ValueError(
                "ASSEMBLAGE_SECRET_KEY is the development default; set a long random value "
                "(python -c 'import secrets; print(secrets.token_urlsafe(32))') outside development"
            )
        if self.environment != "development" and len(self.secret_key.get_secret_value()) < 16:
            raise ValueError("ASSEMBLAGE_SECRET_KEY must be at least 16 characters outside development")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        file = _file.get() or os.environ.get(SETTINGS_FILE_VAR)
        if file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(file)))
        return tuple(sources)

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith("postgresql")


def _check_file_keys(file: Path) -> None:
    """A key the settings do not have is an error (a misspelt ``databse_url`` is not silently ignored)."""
    import difflib
    import tomllib

    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"cannot read the settings file {file}: {exc}") from None
    known = set(Settings.model_fields)
    problems = []
    for key in sorted(data):
        name = key.lower()
        bare = name.removeprefix("assemblage_")
        if name != bare and bare in known:  # the variable's name: the TOML source would ignore it silently
            problems.append(f"{key}: a settings file names a setting without the ASSEMBLAGE_ prefix (write {bare})")
        elif name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            problems.append(f"{key}: unknown setting" + (f" (did you mean {close[0]}?)" if close else ""))
    if problems:
        raise SettingsError(f"invalid settings file {file}: " + "; ".join(problems))


def load_settings(file: Path | None = None, **overrides: Any) -> Settings:
    """Read the settings (environment, then the file); raise :class:`SettingsError` with every problem."""
    if file is not None and not Path(file).is_file():
        raise SettingsError(f"settings file {file}: no such file")
    named = (
        Path(file)
        if file is not None
        else (Path(os.environ[SETTINGS_FILE_VAR]) if os.environ.get(SETTINGS_FILE_VAR) else None)
    )
    if named is not None:
        if not named.is_file():
            raise SettingsError(f"settings file {named} ({SETTINGS_FILE_VAR}): no such file")
        _check_file_keys(named)
    token = _file.set(Path(file) if file is not None else None)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors(include_url=False)
        )
        raise SettingsError(f"invalid settings: {problems}") from None
    except (OSError, ValueError) as exc:  # an unreadable or malformed TOML file
        raise SettingsError(f"cannot read the settings file: {exc}") from None
    finally:
        _file.reset(token)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once)."""
    return load_settings()


def read_setting(name: str, default: Any) -> Any:
    """One setting read afresh (the environment, then the settings file), for the build steps that must see
    a value set after the process started (``--settings`` of a command, a test); ``default`` when the
    settings do not validate (so a broken file never turns a safety setting on)."""
    try:
        return getattr(_fresh_settings(), name)
    except SettingsError:
        return default


_fresh: tuple[tuple, Settings | SettingsError] | None = None


def _fresh_settings() -> Settings:
    """:func:`load_settings` again when what it reads changed: the environment or the settings file's bytes.

    A build asks for half a dozen settings, each validating the whole model (about 5 ms): a
    dozen builds spent a third of a second of CPU on it.
    """
    global _fresh
    named = os.environ.get(SETTINGS_FILE_VAR)
    try:
        content = Path(named).read_bytes() if named else None
    except OSError:
        content = None  # load_settings says why
    key = (tuple(sorted((k, v) for k, v in os.environ.items() if k.upper().startswith("ASSEMBLAGE_"))), content)
    hit = _fresh
    if hit is None or hit[0] != key:
        try:
            value: Settings | SettingsError = load_settings()
        except SettingsError as exc:
            value = exc
        hit = _fresh = (key, value)
    if isinstance(hit[1], SettingsError):
        raise hit[1]
    return hit[1]
