"""The recipe format (docs/recipes.md): pydantic models, unknown keys are errors."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ByteSize,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from assemblage.urls import ARCHIVE_SCHEMES, GIT_SCHEMES, check_url, is_url, redact

__all__ = [
    "ArchiveSource",
    "BuildOptions",
    "DebianSelector",
    "DebianSource",
    "ExcludeRule",
    "GitSource",
    "GithubQuery",
    "GithubSource",
    "Matrix",
    "Outputs",
    "PathSource",
    "Recipe",
    "SourceSpec",
    "SOURCE_KINDS",
]

PLATFORMS = ("linux", "windows")
MAX_EXCLUDE_RULES = 1000
_REMOTE_HELPER = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*::")  # git's <transport>::<address>
ARCHS = ("x86_64", "i686", "aarch64", "armhf")
OPTS = ("O0", "O1", "O2", "O3", "Os", "Oz", "Og", "Ofast", "Od", "Ox")
# the literal types of the matrix (typed defaults: `list[Platform](...)` is a list of them for mypy)
Language = Literal["c", "c++"]
Platform = Literal["linux", "windows"]
Arch = Literal["x86_64", "i686", "aarch64", "armhf"]
OptLevel = Literal["O0", "O1", "O2", "O3", "Os", "Oz", "Og", "Ofast", "Od", "Ox"]

# pydantic's ByteSize reads sizes ("512MiB", "4 GiB", "100MB", plain bytes); bare K, M, G and T stay binary
# (as docker's --memory and ulimit read them), as recipes have always had them
_BARE_UNIT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT])\s*$")
_BYTES = TypeAdapter(ByteSize)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class _SourceBase(_Strict):
    name: str | None = Field(None, description="A short name for the source; derived when absent")
    subdir: str | None = Field(None, description="Build from this folder inside the source")

    @field_validator("subdir")
    @classmethod
    def _relative_subdir(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = v.replace("\\", "/").split("/")
        if v.startswith("/") or ".." in parts:
            raise ValueError("must be a relative path inside the source, without '..'")
        return v


class PathSource(_SourceBase):
    kind: Literal["path"] = Field("path", exclude=True)
    path: str


class GitSource(_SourceBase):
    kind: Literal["git"] = Field("git", exclude=True)
    git: str = Field(description="a URL or a local repository path")
    ref: str | None = Field(None, description="branch, tag or commit; the commit SHA is recorded")
    submodules: bool = Field(False, description="also fetch git submodules (pinned to the recorded commits)")

    @field_validator("ref")
    @classmethod
    def _sane_ref(cls, v: str | None) -> str | None:
        if v is not None and (not v or v.startswith("-") or any(c.isspace() for c in v) or ".." in v):
            raise ValueError(f"not a valid git ref: {v!r}")
        return v

    @field_validator("git")
    @classmethod
    def _sane_url(cls, v: str) -> str:
        if not v or v.startswith("-"):
            raise ValueError(f"not a valid git URL or path: {redact(v)!r}")
        if _REMOTE_HELPER.match(v):
            raise ValueError(f"{redact(v)!r}: git remote helpers ({v.split('::', 1)[0]}::) are refused")
        if is_url(v):
            check_url(v, GIT_SCHEMES)
        return v


class ArchiveSource(_SourceBase):
    kind: Literal["archive"] = Field("archive", exclude=True)
    archive: str = Field(description="a local file, or an http, https or file:// URL")
    sha256: str | None = None

    @field_validator("archive")
    @classmethod
    def _sane_archive(cls, v: str) -> str:
        if not v:
            raise ValueError("name an archive file or URL")
        if is_url(v):
            check_url(v, ARCHIVE_SCHEMES)
        return v

    @field_validator("sha256")
    @classmethod
    def _hex(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", v):
            raise ValueError("must be 64 hexadecimal digits")
        return v.lower() if v else v


class DebianSelector(_Strict):
    """[h8-debian-deps] Debian source packages chosen from the archive's Sources index (sources/debian_select.py)."""

    section: str | list[str] | None = Field(None, description="Debian section(s), e.g. libs, utils, devel")
    language: Language | list[Language] = Field(
        default_factory=lambda: list[Language](["c", "c++"]), description="the tree's main compiled language")
    licenses: list[str] = Field(default_factory=list, description="licence allow-list (DEP-5 debian/copyright)")
    build_depends_satisfiable: bool = Field(True, description="only packages whose Build-Depends apt can satisfy")
    max_size: str | int | None = Field(None, description="largest source package (sum of its files), e.g. 5MiB")
    exclude: list[str] = Field(default_factory=list, description="source package names never selected")
    limit: int = Field(100, ge=1, le=100_000)
    seed: int = Field(0, description="the sample's random seed: same index and seed, same packages")

    @field_validator("max_size")
    @classmethod
    def _size(cls, v: str | int | None) -> str | int | None:
        if v is not None:
            parse_memory(v, minimum=1)
        return v


class DebianSource(_SourceBase):
    kind: Literal["debian"] = Field("debian", exclude=True)
    debian: Annotated[
        Union[Annotated[str, Tag("name")], Annotated[DebianSelector, Tag("selector")]],
        Discriminator(lambda v: "selector" if isinstance(v, (dict, DebianSelector)) else "name"),
    ] = Field(description="a Debian source package name, or a selector")
    suite: str | None = Field(None, description="e.g. bookworm; apt-get source NAME/SUITE")
    version: str | None = Field(None, description="an exact package version")

    @field_validator("debian")
    @classmethod
    def _package_name(cls, v: str | DebianSelector) -> str | DebianSelector:
        if isinstance(v, str) and not re.fullmatch(r"[a-z0-9][a-z0-9+.\-]+", v):
            raise ValueError(f"not a Debian package name: {v!r}")
        return v

    @model_validator(mode="after")
    def _selector_unpinned(self) -> "DebianSource":
        if isinstance(self.debian, DebianSelector) and (self.version or self.name or self.subdir):
            raise ValueError("a debian selector takes no version, name or subdir (each package found gets its own)")
        return self

    @field_validator("suite", "version")
    @classmethod
    def _plain(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z0-9+.~:\-]+", v):
            raise ValueError(f"unexpected characters in {v!r}")
        return v


class GithubQuery(_Strict):
    query: str
    licenses: list[str] = Field(default_factory=list)
    created: str | None = None
    limit: int = Field(100, ge=1, le=100_000)

    @field_validator("created")
    @classmethod
    def _date_range(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"\d{4}-\d{2}-\d{2}(\.\.\d{4}-\d{2}-\d{2})?", v):
            raise ValueError("expected YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD")
        return v


class GithubSource(_SourceBase):
    kind: Literal["github"] = Field("github", exclude=True)
    github: GithubQuery


SOURCE_KINDS = ("path", "git", "archive", "debian", "github")


def _source_tag(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return getattr(value, "kind", None)
    if isinstance(value, dict):
        present = [k for k in SOURCE_KINDS if k in value]
        if len(present) == 1:
            return present[0]
    return None


SourceSpec = Annotated[
    Union[
        Annotated[PathSource, Tag("path")],
        Annotated[GitSource, Tag("git")],
        Annotated[ArchiveSource, Tag("archive")],
        Annotated[DebianSource, Tag("debian")],
        Annotated[GithubSource, Tag("github")],
    ],
    Discriminator(
        _source_tag,
        custom_error_type="source_kind",
        custom_error_message="a source needs exactly one of: path, git, archive, debian, github",
    ),
]


def _known_toolchain(name: str) -> str:
    from assemblage.toolchains.registry import TOOLCHAINS

    if name not in TOOLCHAINS:
        raise ValueError(f"unknown toolchain {name!r}; known: {', '.join(TOOLCHAINS)}")
    return name


def _compiler_flag(flag: str) -> str:
    if not flag.startswith("-"):
        raise ValueError(f"{flag!r}: a compiler flag starts with '-'")
    if any(c.isspace() for c in flag):
        raise ValueError(f"{flag!r}: one flag per list item, no spaces")
    if re.fullmatch(r"-O.*", flag):
        raise ValueError(f"{flag!r}: the optimisation level belongs in matrix.opt")
    return flag


# validated item by item, so that every bad entry is reported at its own place (matrix.flags[2])
ToolchainName = Annotated[str, AfterValidator(_known_toolchain)]
CompilerFlag = Annotated[str, AfterValidator(_compiler_flag)]


class Matrix(_Strict):
    platform: list[Platform] = Field(default_factory=lambda: list[Platform](["linux"]), min_length=1)
    arch: list[Arch] = Field(default_factory=lambda: list[Arch](["x86_64"]), min_length=1)
    toolchain: list[ToolchainName] = Field(min_length=1)
    opt: list[OptLevel] = Field(default_factory=lambda: list[OptLevel](["O0", "O2"]), min_length=1)
    flags: list[CompilerFlag] = Field(default_factory=list, max_length=200)

    @field_validator("platform", "arch", "toolchain", "opt")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        dupes = sorted({x for x in v if v.count(x) > 1})
        if dupes:
            raise ValueError(f"listed twice: {', '.join(dupes)}")
        return v


class ExcludeRule(_Strict):
    """Drops every configuration that matches all the keys given (values may be lists)."""

    platform: str | list[str] | None = None
    arch: str | list[str] | None = None
    toolchain: str | list[str] | None = None
    opt: str | list[str] | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> "ExcludeRule":
        if all(getattr(self, k) is None for k in ("platform", "arch", "toolchain", "opt")):
            raise ValueError("an exclude rule needs at least one of platform, arch, toolchain, opt")
        return self

    def matches(self, **values: str) -> bool:
        for key, value in values.items():
            want = getattr(self, key)
            if want is None:
                continue
            if isinstance(want, str):
                want = [want]
            if value not in want:
                return False
        return True


def parse_memory(value: str | int, *, minimum: int = 16 * 1024**2) -> int:
    """``"4GiB"`` -> bytes (pydantic's :class:`~pydantic.ByteSize`; bare ``K``/``M``/``G``/``T`` are binary).
    Plain integers are bytes."""
    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r} (write e.g. 512MiB or 4GiB)")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("must be positive")
        return value
    bare = _BARE_UNIT.match(value)
    try:
        number = int(_BYTES.validate_python(f"{bare.group(1)}{bare.group(2)}iB" if bare else value))
    except ValidationError:
        raise ValueError(f"not a size: {value!r} (write e.g. 512MiB or 4GiB)") from None
    if number < minimum:
        raise ValueError(f"{value!r} is below the 16MiB a compiler needs")
    return number


class BuildOptions(_Strict):
    runner: Literal["local", "docker"] = "local"
    image: str | None = Field(None, min_length=1, max_length=300,
                              description="the docker runner's toolchain image (default assemblage-linux:latest)")
    timeout: int = Field(600, ge=1, le=7 * 24 * 3600, description="seconds per build")
    memory: str | int = Field("4GiB", description="memory cap per build")
    processes: int = Field(512, ge=8, le=1_000_000, description="process cap per build")
    disk: str | int = Field("8GiB", description="disk cap per build: everything it writes (its folder and /tmp)")
    jobs_per_build: int = Field(1, ge=1, le=64, description="make -j inside one build")

    @field_validator("memory", "disk")
    @classmethod
    def _size(cls, v: str | int) -> str | int:
        parse_memory(v)
        return v

    @property
    def memory_bytes(self) -> int:
        return parse_memory(self.memory)

    @property
    def disk_bytes(self) -> int:
        return parse_memory(self.disk)


class Outputs(_Strict):
    stripped: bool = False
    executables: bool = True
    shared_libraries: bool = True
    static_libraries: bool = False
    objects: bool = False


class Recipe(_Strict):
    name: str = Field(pattern=r"^[a-z0-9-]+$", max_length=100)
    description: str = ""
    sources: list[SourceSpec] = Field(min_length=1)
    matrix: Matrix
    # expanding the matrix tries every rule on every configuration: bounded, so a recipe cannot make it slow
    exclude: list[ExcludeRule] = Field(default_factory=list, max_length=MAX_EXCLUDE_RULES)
    build: BuildOptions = Field(default_factory=BuildOptions)
    outputs: Outputs = Field(default_factory=Outputs)
