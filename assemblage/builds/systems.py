"""Build systems: detection and planning for make, CMake, autotools, Meson and a plain folder.

Each planner turns (source tree, compiler set) into argument lists. The
compiler reaches the build the way each system honours it: CC/CXX/CFLAGS in
the environment and on make's command line, ``-DCMAKE_C_COMPILER`` and a
toolchain file for CMake (with ``CMAKE_BUILD_TYPE`` empty so it adds no
``-O``), a native or cross file for Meson with ``--buildtype=plain``,
``--host`` for autotools. The compiler wrappers (see ``wrappers``) make the
configuration's flags win in every case.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Final

from assemblage.builds.plan import BuildTools, Planner, Step
from assemblage.toolchains.base import CompilerSet

__all__ = ["PLANNERS", "detect_build_system", "BuildTools", "PlainPlanner"]

BUILD_DIR = "_assemblage_build"
_C_EXT = {".c"}
_CXX_EXT = {".cc", ".cpp", ".cxx", ".c++", ".C"}
_MAIN_RE = re.compile(rb"\b(?:int|void)\s+(?:w?main|wWinMain|WinMain)\s*\(")


def compiler_env(compilers: CompilerSet, cc: str, cxx: str) -> dict[str, str]:
    flags = " ".join(compilers.cflags)
    env = {
        "CC": cc,
        "CXX": cxx,
        "AR": compilers.ar,
        "RANLIB": compilers.ranlib,
        "STRIP": compilers.strip,
        "CFLAGS": flags,
        "CXXFLAGS": flags,
        "LDFLAGS": " ".join(compilers.ldflags),
    }
    if compilers.windres:
        env["WINDRES"] = compilers.windres
        env["RC"] = compilers.windres
    env.update(dict(compilers.env))
    return {k: v for k, v in env.items() if v is not None}


class MakePlanner:
    name = "make"

    def detect(self, root: Path) -> bool:
        return any((root / n).is_file() for n in ("GNUmakefile", "makefile", "Makefile"))

    def plan(self, root: Path, compilers: CompilerSet, tools: BuildTools, *, jobs: int = 1) -> list[Step]:
        return [make_step(compilers, tools, jobs=jobs)]


def make_step(compilers: CompilerSet, tools: BuildTools, *, jobs: int, cwd: str = ".") -> Step:
    argv = [
        "make",
        f"-j{jobs}",
        f"CC={tools.cc}",
        f"CXX={tools.cxx}",
        f"AR={compilers.ar}",
        f"RANLIB={compilers.ranlib}",
    ]
    if compilers.windres:
        argv.append(f"WINDRES={compilers.windres}")
    return Step(name="make", argv=tuple(argv), cwd=cwd, phase="build")


class AutotoolsPlanner:
    name = "autotools"

    def detect(self, root: Path) -> bool:
        return any((root / n).is_file() for n in ("configure", "configure.ac", "configure.in"))

    def plan(self, root: Path, compilers: CompilerSet, tools: BuildTools, *, jobs: int = 1) -> list[Step]:
        steps = []
        if not (root / "configure").is_file():
            steps.append(Step(name="autoreconf", argv=("autoreconf", "-fi"), phase="configure"))
        # CC/CXX/CFLAGS come from the environment: autoconf scripts read them there, and
        # hand-written ``configure`` scripts (zlib's) refuse VAR=value arguments
        argv = ["sh", "./configure"]
        env = {}
        if compilers.host_triple:
            argv.append(f"--host={compilers.host_triple}")
            env["CHOST"] = compilers.host_triple
        steps.append(Step(name="configure", argv=tuple(argv), env=env, phase="configure"))
        steps.append(make_step(compilers, tools, jobs=jobs))
        return steps


class CMakePlanner:
    name = "cmake"

    def detect(self, root: Path) -> bool:
        return (root / "CMakeLists.txt").is_file()

    def plan(self, root: Path, compilers: CompilerSet, tools: BuildTools, *, jobs: int = 1) -> list[Step]:
        flags = " ".join(compilers.cflags)
        (root / BUILD_DIR).mkdir(parents=True, exist_ok=True)
        toolchain_file = f"{tools.src_dir}/{BUILD_DIR}/toolchain.cmake"
        lines = [
            f'set(CMAKE_C_COMPILER "{tools.cc}")',
            f'set(CMAKE_CXX_COMPILER "{tools.cxx}")',
            f'set(CMAKE_AR "{tools.path_of(compilers.ar)}" CACHE FILEPATH "")',
            f'set(CMAKE_RANLIB "{tools.path_of(compilers.ranlib)}" CACHE FILEPATH "")',
        ]
        if compilers.cross:
            lines += [
                f"set(CMAKE_SYSTEM_NAME {compilers.cmake_system_name})",
                f"set(CMAKE_SYSTEM_PROCESSOR {compilers.cpu})",
                "set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)",
                "set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)",
                "set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)",
                "set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)" if compilers.cmake_system_name == "Windows" else "",
            ]
            if compilers.windres:
                lines.append(f'set(CMAKE_RC_COMPILER "{tools.path_of(compilers.windres)}")')
        (root / BUILD_DIR / "toolchain.cmake").write_text("\n".join(lines) + "\n")
        configure = [
            "cmake",
            "-S",
            ".",
            "-B",
            BUILD_DIR,
            f"-DCMAKE_TOOLCHAIN_FILE={toolchain_file}",
            "-DCMAKE_BUILD_TYPE=",
            f"-DCMAKE_C_FLAGS={flags}",
            f"-DCMAKE_CXX_FLAGS={flags}",
            f"-DCMAKE_EXE_LINKER_FLAGS={' '.join(compilers.ldflags)}",
            f"-DCMAKE_SHARED_LINKER_FLAGS={' '.join(compilers.ldflags)}",
            "-DCMAKE_INSTALL_PREFIX=/nonexistent",
        ]
        if tools.which("ninja"):
            configure += ["-G", "Ninja"]
        return [
            Step(name="cmake-configure", argv=tuple(configure), phase="configure"),
            Step(name="cmake-build", argv=("cmake", "--build", BUILD_DIR, "--parallel", str(jobs)), phase="build"),
        ]


class MesonPlanner:
    name = "meson"

    def detect(self, root: Path) -> bool:
        return (root / "meson.build").is_file()

    def plan(self, root: Path, compilers: CompilerSet, tools: BuildTools, *, jobs: int = 1) -> list[Step]:
        machine_name = "cross.ini" if compilers.cross else "native.ini"
        (root / BUILD_DIR).mkdir(parents=True, exist_ok=True)
        text = [
            "[binaries]",
            f"c = '{tools.cc}'",
            f"cpp = '{tools.cxx}'",
            f"ar = '{tools.path_of(compilers.ar)}'",
            f"strip = '{tools.path_of(compilers.strip)}'",
        ]
        if compilers.windres:
            text.append(f"windres = '{tools.path_of(compilers.windres)}'")
        text += [
            "[built-in options]",
            f"c_args = {list(compilers.cflags)!r}",
            f"cpp_args = {list(compilers.cflags)!r}",
            f"c_link_args = {list(compilers.ldflags)!r}",
            f"cpp_link_args = {list(compilers.ldflags)!r}",
        ]
        if compilers.cross:
            system = "windows" if compilers.cmake_system_name == "Windows" else "linux"
            text += [
                "[host_machine]",
                f"system = '{system}'",
                f"cpu_family = '{compilers.cpu_family}'",
                f"cpu = '{compilers.cpu}'",
                "endian = 'little'",
            ]
        (root / BUILD_DIR / machine_name).write_text("\n".join(text) + "\n")
        kind = "--cross-file" if compilers.cross else "--native-file"
        machine = f"{tools.src_dir}/{BUILD_DIR}/{machine_name}"
        setup = ("meson", "setup", f"{BUILD_DIR}/meson", kind, machine, "--buildtype=plain", "-Db_ndebug=false")
        return [
            Step(name="meson-setup", argv=setup, phase="configure"),
            Step(name="meson-compile", argv=("ninja", "-C", f"{BUILD_DIR}/meson", f"-j{jobs}"), phase="build"),
        ]


class PlainPlanner:
    """A folder of C/C++ files and no build system: compile each, link what has a ``main``.

    Every file defining ``main`` becomes an executable linked with the files
    that do not; with no ``main`` at all, the files become one shared library.
    """

    name = "plain"

    def detect(self, root: Path) -> bool:
        return bool(self._sources(root))

    @staticmethod
    def _sources(root: Path) -> list[Path]:
        # a tree that has a build system we do not plan (SCons, waf, a CMakeLists.txt in a
        # sub-folder...) keeps its tests, fuzz targets and examples out of the plain build
        skip_aux = has_build_system_marker(root)
        found = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(
                d for d in dirnames if not d.startswith(".") and d != BUILD_DIR and not (skip_aux and _AUX_DIR.match(d))
            )
            for fn in sorted(filenames):
                p = Path(dirpath, fn)
                if skip_aux and _AUX_FILE.search(p.stem):
                    continue
                if p.suffix in _C_EXT | _CXX_EXT and p.is_file() and not p.is_symlink():
                    found.append(p)
        return found

    def plan(self, root: Path, compilers: CompilerSet, tools: BuildTools, *, jobs: int = 1) -> list[Step]:
        sources = self._sources(root)
        (root / BUILD_DIR).mkdir(parents=True, exist_ok=True)
        out = Path(BUILD_DIR)
        header_dirs = {p.parent for p in root.rglob("*.h") if p.is_file() and BUILD_DIR not in p.parts}
        incs = [f"-I./{d.relative_to(root)}" for d in sorted({p.parent for p in sources} | header_dirs)]
        steps: list[Step] = []
        mains: list[tuple[Path, Path]] = []  # (source, object)
        others: list[tuple[Path, Path]] = []
        any_cxx = False
        for i, src in enumerate(sources):
            cxx = src.suffix in _CXX_EXT
            any_cxx |= cxx
            obj = out / f"{i:05d}_{_safe_stem(src)}.o"
            argv = (tools.cxx if cxx else tools.cc, "-c", *incs, "-fPIC", "-o", str(obj), f"./{src.relative_to(root)}")
            steps.append(Step(name=f"compile {src.relative_to(root)}", argv=argv, phase="build"))
            try:
                has_main = bool(_MAIN_RE.search(src.read_bytes()))
            except OSError:
                has_main = False
            (mains if has_main else others).append((src, obj))
        linker = tools.cxx if any_cxx else tools.cc
        exe_suffix = ".exe" if compilers.cmake_system_name == "Windows" else ""
        if mains:
            for src, obj in mains:
                exe = out / (_safe_stem(src) + exe_suffix)
                argv = (linker, "-o", str(exe), str(obj), *(str(o) for _, o in others), "-lm")
                steps.append(Step(name=f"link {exe.name}", argv=argv, phase="link"))
        elif others:
            lib = out / ("lib" + _safe_stem(root) + (".dll" if exe_suffix else ".so"))
            argv = (linker, "-shared", "-o", str(lib), *(str(o) for _, o in others), "-lm")
            steps.append(Step(name=f"link {lib.name}", argv=argv, phase="link"))
        return steps


# [h8-debian-deps] the plain fallback next to a real build system: no tests, fuzz targets, examples
_AUX_DIR = re.compile(
    r"^(?:tests?|testing|testsuite|unittests?|fuzz\w*|oss-fuzz|examples?|samples?|demos?|"
    r"bench\w*|docs?|contrib|debian)$",
    re.IGNORECASE,
)
_AUX_FILE = re.compile(
    r"(?:^|[_\-.])(?:test|tests|fuzz|fuzzer|example|demo|bench)(?:$|[_\-.])|^fuzz|fuzz$", re.IGNORECASE
)
_MARKERS = (
    "SConstruct",
    "wscript",
    "Makefile.am",
    "Makefile.in",
    "build.ninja",
    "BUILD.bazel",
    "BUILD",
    "WORKSPACE",
    "Jamroot",
    "premake5.lua",
    "meson.build",
    "CMakeLists.txt",
    "configure.ac",
    "Makefile",
    "makefile",
    "GNUmakefile",
    "debian/rules",
)


def has_build_system_marker(root: Path) -> bool:
    """A build system's file at the top or one folder down (a real build system exists)."""
    for marker in _MARKERS:
        if (root / marker).is_file() or any(p.is_file() for p in root.glob(f"*/{marker}")):
            return True
    return False


def _safe_stem(p: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", p.stem) or "a"
    return stem.lstrip(".-") or "a"


# Order matters: a tree with both CMakeLists.txt and a generated Makefile is a CMake project;
# a tree with configure and a Makefile.in is autotools; Meson before make.
PLANNERS: Final[tuple[Planner, ...]] = (
    CMakePlanner(),
    MesonPlanner(),
    AutotoolsPlanner(),
    MakePlanner(),
    PlainPlanner(),
)


def build_system_candidates(root: Path) -> list[Planner]:
    """Every build system the tree offers, the preferred first.

    Many projects ship two (zlib has CMake and ``configure``; Debian's zlib
    tarball lacks the ``win32/`` files its CMakeLists.txt needs): when the
    configure step of one fails, the engine tries the next.
    """
    found = [p for p in PLANNERS if p.detect(root)]
    try:
        from assemblage.builds.msbuild import MsbuildPlanner  # Windows workers
    except ImportError:
        pass
    else:
        if MsbuildPlanner().detect(root):
            found.append(MsbuildPlanner())
    # the plain fallback only when nothing else is there
    if len(found) > 1:
        found = [p for p in found if p.name != "plain"]
    return found


def detect_build_system(root: Path) -> Planner | None:
    found = build_system_candidates(root)
    return found[0] if found else None
