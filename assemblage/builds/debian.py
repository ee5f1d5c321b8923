"""Building a Debian source package the way Debian does: ``debian/rules`` through ``dpkg-buildpackage``.

One step, argument list only::

    env -u CFLAGS ... dpkg-buildpackage --no-sign --rules-target=build-arch -jN [-a arm64]

``--rules-target=build-arch`` sets up the build environment as for a package
build (``dpkg-architecture`` variables, ``dpkg-checkbuilddeps`` against the
``Build-Depends``, which must have been installed beforehand, see
:mod:`assemblage.builds.deps`) and runs ``debian/rules build-arch``: configure
and compile the architecture-dependent packages, nothing else. The ``binary``
targets are not run: they only copy what the build made into ``debian/tmp``
and ``debian/<pkg>`` (the same binaries twice more), need root or fakeroot, and
run packaging checks that have nothing to do with the corpus. The binaries are
therefore collected from the build tree (in-tree for autotools packages,
``obj-<triplet>/`` for CMake and Meson ones), by magic bytes, like every build.

The configuration reaches the build through the knobs Debian gives builders:
``DEB_CFLAGS_SET``/``DEB_CXXFLAGS_SET``/``DEB_LDFLAGS_SET`` replace what
``dpkg-buildflags`` returns (Debian's ``-O2 -g``, its hardening
``-D_FORTIFY_SOURCE=2`` via ``DEB_CPPFLAGS_SET``, which is emptied), ``CC``/
``CXX`` name the compiler wrappers, whose names also cover the triplet-prefixed
compilers (``x86_64-linux-gnu-gcc``) that some rules call, and
``DEB_BUILD_OPTIONS=nocheck nodoc nostrip noautodbgsym`` with the build profile
``nocheck`` skip test suites and stripping. The wrappers still drop whatever
``-O`` a rules file adds on its own, so the binaries carry the requested level,
which the analysis reads back as for every build.

Cross builds (aarch64, armhf) use Debian's own cross support: ``-a arm64`` and
the profiles ``cross nocheck``; the host-architecture ``Build-Depends`` are
installed as ``libfoo-dev:arm64`` (multiarch) in the dependency image.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from debian.deb822 import Deb822

from assemblage.builds.aptindex import debian_arch, parse_relations
from assemblage.builds.plan import BuildTools, Step
from assemblage.toolchains.base import CompilerSet

__all__ = ["DebianRulesPlanner", "build_depends", "build_profiles", "debian_env", "is_debian_tree"]

# every package may assume these: build-essential (Debian policy 4.2), and fakeroot, which
# dpkg-buildpackage insists on for a package whose Rules-Requires-Root is not "no" even when
# only build-arch runs ("fakeroot not found", seen on morse2ascii and nagios-plugins-contrib)
IMPLICIT = ("build-essential", "fakeroot")


def is_debian_tree(root: Path) -> bool:
    return (root / "debian" / "rules").is_file() and (root / "debian" / "control").is_file()


def build_profiles(compilers: CompilerSet) -> tuple[str, ...]:
    return ("cross", "nocheck") if compilers.cross else ("nocheck",)


def build_depends(root: Path) -> list[list[dict]]:
    """``Build-Depends`` and ``Build-Depends-Arch`` of ``debian/control`` (parsed relations), implicit ones first."""
    # the repository's file, in the build's copy: never through a link (it could name a file of the host)
    fd = os.open(root / "debian" / "control", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with open(fd, encoding="utf-8", errors="replace") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{root / 'debian' / 'control'}: not a regular file")
        source = Deb822(fh)
    text = ", ".join(v for k in ("Build-Depends", "Build-Depends-Arch") if (v := source.get(k)))
    implicit = [
        [{"name": name, "archqual": "native", "version": None, "arch": None, "restrictions": None}] for name in IMPLICIT
    ]
    return [*implicit, *parse_relations(text)]


def debian_env(compilers: CompilerSet, tools: BuildTools, *, jobs: int) -> dict[str, str]:
    cflags = " ".join(compilers.cflags)
    ldflags = " ".join(compilers.ldflags)
    return {
        "CC": tools.cc,
        "CXX": tools.cxx,
        "DEB_CFLAGS_SET": cflags,
        "DEB_CXXFLAGS_SET": cflags,
        "DEB_OBJCFLAGS_SET": cflags,
        "DEB_OBJCXXFLAGS_SET": cflags,
        "DEB_FFLAGS_SET": cflags,
        "DEB_FCFLAGS_SET": cflags,
        "DEB_CPPFLAGS_SET": "",
        "DEB_LDFLAGS_SET": ldflags,
        "DEB_BUILD_OPTIONS": f"nocheck nodoc nostrip noautodbgsym parallel={jobs}",
        "DEB_BUILD_PROFILES": " ".join(build_profiles(compilers)),
        "DEB_BUILD_MAINT_OPTIONS": "hardening=-all",
        # clang's default errors that gcc only warns about stay warnings (builds/wrappers.py)
        "ASSEMBLAGE_COMPILER_LENIENT": "1",
    }


_BUILDFLAGS = ("CFLAGS", "CXXFLAGS", "CPPFLAGS", "LDFLAGS", "OBJCFLAGS", "OBJCXXFLAGS", "FFLAGS", "FCFLAGS")


class DebianRulesPlanner:
    name = "debian-rules"

    def detect(self, root: Path) -> bool:
        return is_debian_tree(root)

    def plan(self, root: Path, compilers: CompilerSet, tools: BuildTools, *, jobs: int = 1) -> list[Step]:
        # debhelper takes CFLAGS & co. from dpkg-buildflags (our *_SET plus the rules' own
        # DEB_*_MAINT_APPEND, such as clfft's -fpermissive) only when the environment has none:
        # the generic build systems' CFLAGS must not reach it
        unset = [arg for name in _BUILDFLAGS for arg in ("-u", name)]
        argv = ["env", *unset, "dpkg-buildpackage", "--no-sign", "--rules-target=build-arch", f"-j{jobs}"]
        if compilers.cross:
            argv += [f"--host-arch={debian_arch(compilers.arch)}"]
        argv.append(f"--build-profiles={','.join(build_profiles(compilers))}")
        env = debian_env(compilers, tools, jobs=jobs)
        return [Step(name="dpkg-buildpackage", argv=tuple(argv), env=env, phase="build")]
