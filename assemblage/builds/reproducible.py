"""Reproducible builds by default, and a record of what reached each build (for the run's lock).

Every build gets, whatever its build system does:

* the fixed build path ``/build`` (the sandbox and the docker runner mount the
  scratch folder there), and ``-ffile-prefix-map=<where the build sees its
  folder>=/build`` in the compiler wrapper, so that even a build without a
  sandbox records ``/build`` in its debug information and ``__FILE__``;
* ``SOURCE_DATE_EPOCH`` from the source (:func:`source_date_epoch`): gcc and
  clang >= 16 then write that date for ``__DATE__``/``__TIME__``, GNU ld for
  the PE time stamp; clang 14 gets the same date from a header of ours that
  defines ``__DATE__``/``__TIME__`` (``-include``; it ignores the variable:
  measured on Debian 12's 14.0.6);
* ``TZ=UTC``, ``LC_ALL=C.UTF-8`` (code-point collation: globs and ``sort``
  give one order), umask 022, and ``ARFLAGS=rvD`` (deterministic ``ar``
  members for Makefiles that use make's built-in archive rule; Debian's
  binutils and llvm-ar are deterministic by default anyway);
* for gcc, ``-frandom-seed=<output file>`` (the wrapper adds it per call), so
  names gcc would otherwise randomise (LTO sections, some global constructors)
  depend only on the file;
* for clang + lld PE output, lld-link's ``/Brepro`` (``-Wl,-Xlink=-Brepro``):
  the PE time stamp becomes a hash of the output. Measured: two links of the
  same objects a second apart differ only in TimeDateStamp without it or
  ``SOURCE_DATE_EPOCH``, and are identical with it (the PDB GUID is already a
  content hash). lld 19 also reads ``SOURCE_DATE_EPOCH``, older lld does
  not: ``/Brepro`` does not depend on the version. mingw-w64's GNU ld takes
  its PE time stamp from ``SOURCE_DATE_EPOCH``: identical links too.

What cannot be fixed by flags and stays visible to ``assemblage verify``: a
clang driver call that compiles and links at once names its temporary objects
at random (``/build/tmp/main-1a2b3c.o``), and lld copies those names into the
PDB. Makefiles that compile each file first (most) are not affected.

:func:`prepare` computes all of this for one build and probes the toolchain
*where the build runs* (the host for the local runner, the image for the
docker runner): each compiler's ``--version`` line and the Debian version of
the compiler packages and of the packages that own the linker, the C runtime
and libgcc. The result, :class:`BuildEnvironment`, is stored on the build row
and becomes part of the run's lock.
"""

from __future__ import annotations

import re
import threading
import time
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from assemblage.toolchains.base import CompilerSet

__all__ = [
    "BuildEnvironment",
    "BuildSettings",
    "FIXED_PREFIX",
    "ImageRef",
    "PATH_SOURCE_EPOCH",
    "ReproPlan",
    "ToolVersion",
    "ToolchainInfo",
    "UMASK",
    "date_header",
    "prepare",
    "probe_toolchain",
    "repro_env",
    "repro_flags",
    "source_date_epoch",
]

FIXED_PREFIX = "/build"
UMASK = 0o022
# A folder has no commit date, and its file times change with every copy or checkout; its tree hash
# pins the content. 1980-01-01T00:00:00Z: the earliest date every archive format (zip) can hold.
PATH_SOURCE_EPOCH = 315532800
_PROBE_TTL = 300.0  # seconds a toolchain probe is trusted (packages may be upgraded under a long-lived worker)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ToolVersion(_Model):
    command: str  # as the configuration names it: gcc-12, clang++-19
    path: str | None = None  # where it resolved (symlinks followed); None: not found
    version: str | None = None  # the first line of ``COMMAND --version``


class ImageRef(_Model):
    """A container image: its name, its id (the digest of its configuration) and its registry digest if any."""

    name: str
    id: str | None = None  # sha256:... (what ``docker image inspect`` calls Id); equal ids, equal images
    digest: str | None = None  # NAME@sha256:... when the image came from a registry


class ToolchainInfo(_Model):
    """One toolchain for one target, as the runner sees it."""

    toolchain: str
    platform: str
    arch: str
    runner: str
    image: ImageRef | None = None
    tools: list[ToolVersion]
    packages: dict[str, str | None] = Field(default_factory=dict)  # Debian package -> version (None: not installed)


class BuildSettings(_Model):
    """What reached one build besides its source and toolchain (environment, flags, limits)."""

    schema_version: int = 1
    runner: str  # local | docker
    sandboxed: bool
    sandbox: str  # how the steps were isolated
    image: ImageRef | None = None  # the docker runner's image
    # images the build used besides its own (e.g. images holding build dependencies), with their digests
    dependency_images: list[ImageRef] = Field(default_factory=list)
    build_path: str  # where the build saw its source
    umask: str
    source_date_epoch: int
    env: dict[str, str]  # every variable the build steps got
    cflags: list[str]  # the configuration's compile flags (also in CFLAGS and the build system's files)
    ldflags: list[str]
    wrapper_flags: list[str]  # appended by the compiler wrapper to every call (reproducibility)
    random_seed: bool  # the wrapper adds -frandom-seed=<output file>
    limits: dict[str, int | float]


class BuildEnvironment(BuildSettings):
    """:class:`BuildSettings` plus the toolchain as probed: what ``builds.environment`` stores."""

    toolchain: ToolchainInfo

    def settings(self) -> BuildSettings:
        return BuildSettings.model_validate(self.model_dump(exclude={"toolchain"}))

    def with_dependency_images(self, images: list[ImageRef]) -> BuildEnvironment:
        """The record with the images a build used besides its own (build dependencies), digests and all.

        Whoever runs a build in more than its toolchain image records them here; the lock
        carries them and ``rebuild`` refuses when one of them has another id here.
        """
        return self.model_copy(update={"dependency_images": [*self.dependency_images, *images]})


def source_date_epoch(kind: str, last_update: datetime | None) -> int:
    """``SOURCE_DATE_EPOCH`` for a source: its commit date (git), its changelog date (debian), its
    newest member's time (archive); :data:`PATH_SOURCE_EPOCH` for a local folder, or when unknown."""
    if kind == "path" or last_update is None:
        return PATH_SOURCE_EPOCH
    if last_update.tzinfo is None:  # SQLite hands back naive datetimes; we store UTC
        last_update = last_update.replace(tzinfo=UTC)
    return max(0, int(last_update.timestamp()))


def repro_env(epoch: int) -> dict[str, str]:
    """Variables every build gets for reproducibility (they win over the runner's defaults)."""
    return {
        "SOURCE_DATE_EPOCH": str(epoch),
        "TZ": "UTC",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "ARFLAGS": "rvD",
    }


def _major(version: str) -> int:
    m = re.match(r"\d+", version)
    return int(m.group(0)) if m else 0


DATE_HEADER = "assemblage-source-date.h"


def date_header(epoch: int) -> str:
    """A header defining ``__DATE__`` and ``__TIME__`` as C compilers spell them for ``epoch``.

    For compilers that ignore ``SOURCE_DATE_EPOCH``. A header, not ``-D__DATE__="..."``: clang
    records its command line in DW_AT_producer, and quotes there break every reader that
    prints producers quoted (llvm-dwarfdump's output, and our label checks against it).
    """
    t = datetime.fromtimestamp(epoch, tz=UTC)
    return (
        f"/* written by assemblage: SOURCE_DATE_EPOCH={epoch} */\n"
        f'#define __DATE__ "{t:%b} {t.day:2d} {t:%Y}"\n#define __TIME__ "{t:%H:%M:%S}"\n'
    )


def repro_flags(family: str, version: str, compilers: CompilerSet, *, view: str, epoch: int) -> tuple[str, ...]:
    """Flags the compiler wrapper appends to every call of this toolchain, for reproducible output."""
    if family not in ("gcc", "mingw-gcc", "clang"):
        return ()  # MSVC: its Windows workers have their own switches (/Brepro)
    major = _major(version)
    old = (family == "clang" and major < 10) or (family != "clang" and major < 8)
    if old:
        flags = [f"-fdebug-prefix-map={view}={FIXED_PREFIX}", f"-fmacro-prefix-map={view}={FIXED_PREFIX}"]
    else:
        flags = [f"-ffile-prefix-map={view}={FIXED_PREFIX}"]
    if family == "clang" and major < 16:  # ignores SOURCE_DATE_EPOCH: a header of ours defines the macros
        flags += ["-Wno-builtin-macro-redefined", "-include", f"{view}/bin/{DATE_HEADER}"]
    if family == "clang" and compilers.platform == "windows" and compilers.pdb:
        flags.append("-Wl,-Xlink=-Brepro")
    return tuple(flags)


# ---------------------------------------------------------------- probing the toolchain


class ProbeRunner(Protocol):
    name: str

    def query(self, argv: list[str], *, timeout: float = 120) -> str: ...

    def image_ref(self) -> dict[str, Any] | None: ...


# Our own text; every argument comes from the toolchain registry or from dpkg, and reaches the
# shell as a positional parameter, never as code. Arguments: CC CXX TARGET PACKAGE...
_PROBE_SCRIPT = r"""
cc=$1 cxx=$2 target=$3
shift 3
files=
for t in "$cc" "$cxx"; do
  if p=$(command -v "$t" 2>/dev/null); then
    r=$(readlink -f "$p")
    v=$("$p" --version 2>/dev/null | head -n 1)
    printf 'tool\t%s\t%s\t%s\n' "$t" "$r" "$v"
    files="$files $r"
  else
    printf 'tool\t%s\t\t\n' "$t"
  fi
done
for q in -print-libgcc-file-name -print-file-name=libc.so -print-file-name=crt2.o -print-file-name=libmsvcrt.a -print-prog-name=ld; do
  f=$("$cc" ${target:+"$target"} "$q" 2>/dev/null) || continue
  case "$f" in
    /*) ;;
    ld) f=$(command -v ld 2>/dev/null) || continue ;;
    *) continue ;;
  esac
  [ -e "$f" ] && files="$files $(readlink -f "$f")"
done
owners=
for f in $files; do
  o=$(dpkg-query -S "$f" 2>/dev/null | head -n 1) || continue
  owners="$owners ${o%%:*}"
done
for p in "$@" $owners; do
  case "$p" in *,*) continue ;; esac
  dpkg-query -W -f='pkg\t${Package}\t${db:Status-Abbrev}\t${Version}\n' "$p" 2>/dev/null || printf 'pkg\t%s\t\t\n' "$p"
done
"""

_probe_cache: dict[tuple, tuple[float, ToolchainInfo]] = {}
_probe_lock = threading.Lock()
_probe_running: dict[tuple, threading.Lock] = {}  # one probe per key at a time


def probe_toolchain(runner: ProbeRunner, toolchain: str, compilers: CompilerSet, packages: list[str]) -> ToolchainInfo:
    """The compilers' versions and the Debian package versions, where ``runner`` builds (cached a while).

    Builds that start together with the same toolchain (the first two of a run) wait for one probe
    instead of each running its own (``dpkg-query -S`` over the whole package database: ~0.5 s of CPU).
    """
    image = runner.image_ref()
    target = next((f for f in compilers.cflags if f.startswith("--target=")), "")
    key = (runner.name, image and image.get("id"), compilers.cc, compilers.cxx, target, tuple(packages))
    with _probe_lock:
        running = _probe_running.setdefault(key, threading.Lock())
    with running:
        with _probe_lock:
            hit = _probe_cache.get(key)
            if hit and time.monotonic() - hit[0] < _PROBE_TTL:
                return hit[1]
        return _probe(runner, toolchain, compilers, packages, image, target, key)


def _probe(
    runner: ProbeRunner,
    toolchain: str,
    compilers: CompilerSet,
    packages: list[str],
    image: dict | None,
    target: str,
    key: tuple,
) -> ToolchainInfo:
    out = runner.query(["sh", "-c", _PROBE_SCRIPT, "probe", compilers.cc, compilers.cxx, target, *packages])
    tools: list[ToolVersion] = []
    pkgs: dict[str, str | None] = {p: None for p in packages}
    for line in out.splitlines():
        parts = line.split("\t")
        if parts[0] == "tool" and len(parts) == 4:
            tools.append(ToolVersion(command=parts[1], path=parts[2] or None, version=parts[3].strip() or None))
        elif parts[0] == "pkg" and len(parts) == 4 and parts[1]:
            installed = parts[2].startswith("ii")
            if installed or parts[1] not in pkgs:
                pkgs[parts[1]] = parts[3] if installed else None
    info = ToolchainInfo(
        toolchain=toolchain,
        platform=compilers.platform,
        arch=compilers.arch,
        runner=runner.name,
        image=ImageRef(**image) if image else None,
        tools=tools,
        packages=dict(sorted(pkgs.items())),
    )
    with _probe_lock:
        _probe_cache[key] = (time.monotonic(), info)
    return info


class ReproPlan:
    """What :func:`prepare` decided for one build: the wrapper's flags, the variables, the record."""

    def __init__(
        self,
        *,
        flags: tuple[str, ...],
        random_seed: bool,
        env: dict[str, str],
        epoch: int,
        toolchain: ToolchainInfo | None,
        files: dict[str, str] | None = None,
        problem: str | None = None,
    ) -> None:
        self.files = files or {}  # name -> text, written next to the compiler wrappers
        self.problem = problem  # why the toolchain could not be probed (then nothing is recorded)
        self.flags = flags
        self.random_seed = random_seed
        self.env = env
        self.epoch = epoch
        self.toolchain = toolchain

    def debug_root(self, view: str) -> str:
        """Where debug information says the build folder is: the fixed prefix when the flags map it there."""
        maps = (f"-ffile-prefix-map={view}={FIXED_PREFIX}", f"-fdebug-prefix-map={view}={FIXED_PREFIX}")
        return FIXED_PREFIX if any(f in self.flags for f in maps) else view

    def write_files(self, bin_dir) -> None:
        """Write the files the flags name (the date header) into the build's ``bin`` folder."""
        for name, text in self.files.items():
            (bin_dir / name).write_text(text, encoding="utf-8")

    def describe(
        self, *, runner, compilers: CompilerSet, env: dict[str, str], build_path: str, limits
    ) -> BuildEnvironment | None:
        """The record of the build (None when the toolchain could not be probed)."""
        if self.toolchain is None:
            return None
        image = runner.image_ref()
        return BuildEnvironment(
            runner=runner.name,
            sandboxed=runner.sandbox,
            sandbox=runner.sandbox_note(),
            image=ImageRef(**image) if image else None,
            build_path=build_path,
            umask=f"{UMASK:04o}",
            source_date_epoch=self.epoch,
            env=dict(sorted(env.items())),
            cflags=list(compilers.cflags),
            ldflags=list(compilers.ldflags),
            wrapper_flags=list(self.flags),
            random_seed=self.random_seed,
            limits={
                "timeout": float(limits.timeout),
                "memory": int(limits.memory),
                "processes": int(limits.processes),
                "file_size": int(limits.file_size),
            },
            toolchain=self.toolchain,
        )


def prepare(
    runner: ProbeRunner, tc, compilers: CompilerSet, *, view: str, epoch: int | None, probe: bool = True
) -> ReproPlan:
    """The reproducibility settings of one build of toolchain ``tc`` (and its probed toolchain)."""
    from assemblage.errors import AssemblageError

    epoch = PATH_SOURCE_EPOCH if epoch is None else epoch
    info, problem = None, None
    if probe:
        try:
            info = probe_toolchain(runner, tc.name, compilers, tc.packages(compilers.platform, compilers.arch))
        except AssemblageError as exc:  # the build goes on; its lock entry says nothing was recorded
            problem = f"cannot probe the toolchain: {exc}"
    flags = repro_flags(tc.family, tc.version, compilers, view=view, epoch=epoch)
    return ReproPlan(
        flags=flags,
        random_seed=tc.family in ("gcc", "mingw-gcc"),
        env=repro_env(epoch),
        epoch=epoch,
        toolchain=info,
        files={DATE_HEADER: date_header(epoch)} if f"{view}/bin/{DATE_HEADER}" in flags else {},
        problem=problem,
    )
