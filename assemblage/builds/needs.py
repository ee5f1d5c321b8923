"""What a failed build says it lacks, and which Debian package provides it.

A build log names a missing dependency in a handful of ways, one per tool
that noticed (each pattern below is copied from a real log of this machine's
gcc 12, clang 19, pkg-config, CMake 3.25, Meson 1.0, GNU ld/lld, dash and
dpkg-checkbuilddeps): a header (``fatal error: zstd.h: No such file or
directory``, ``fatal error: 'zstd.h' file not found``), a pkg-config module
(``No package 'jansson' found``, ``Dependency "jansson" not found``), a CMake
package (``Could not find a package configuration file provided by "Foo"``,
``Could NOT find ZLIB``), a library at link time (``cannot find -ljansson``,
``unable to find library -ljansson``), a tool (``makeinfo: not found``,
``WARNING: 'makeinfo' is missing on your system``, ``Program 'nasm' not
found``) and, for Debian packages, ``Unmet build dependencies: ...``.

Each :class:`Need` becomes regular expressions over the paths of Debian's
Contents index (headers under ``/usr/include``, ``NAME.pc`` under the
pkg-config folders, ``NAMEConfig.cmake``/``name-config.cmake``/``FindNAME.cmake``,
``libNAME.so``/``.a``, ``/usr/bin/NAME``), and :func:`resolve` picks, per need,
the package with the most specific path (``/usr/include/zstd.h`` before
``/usr/include/foo/zstd.h``), a ``-dev`` package before others, and never a
package for another architecture (``-cross``, ``mingw``, ``lib32``).

A C++ standard library header (``fatal error: 'string' file not found``) is
no header of some package under ``/usr/include`` (bobcat ships a
``/usr/include/bobcat/string``): it is a need for the standard library the
compiler was asked to use, a ``c++-stdlib`` need named ``libc++`` when the log
shows ``-stdlib=libc++`` (libvmime's CMake adds it for Clang) and
``libstdc++`` otherwise. :func:`resolve` maps it through the configuration's
compiler: ``libc++`` to ``libc++-N-dev`` of ``clang-N`` (which brings
``libc++abi-N-dev``: clang-N looks for ``/usr/lib/llvm-N/include/c++/v1``, not
for Debian's default ``libc++-dev``), ``libstdc++`` to ``libstdc++-N-dev`` of
``gcc-N`` (``g++`` otherwise).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from assemblage.builds.aptindex import BinaryArchive, parse_relations, search_contents

__all__ = ["CXX_STDLIB_HEADERS", "Need", "cxx_stdlib_package", "needs_from_log", "resolve"]

# tools whose command is an alternative (not a file any package ships under that name)
_TOOL_ALIASES = {
    "yacc": "bison",
    "lex": "flex",
    "awk": "gawk",
    "makeinfo": "texinfo",
    "texi2any": "texinfo",
    "pod2man": "perl",
    "python": "python3",
    "ninja": "ninja-build",
}
# CMake's own Find modules (shipped by cmake itself) -> a pkg-config module, header or package
_CMAKE_FIND = {
    "zlib": ("package", "zlib1g-dev"),
    "bzip2": ("package", "libbz2-dev"),
    "openssl": ("package", "libssl-dev"),
    "png": ("pkgconfig", "libpng"),
    "jpeg": ("package", "libjpeg-dev"),
    "curl": ("pkgconfig", "libcurl"),
    "libxml2": ("pkgconfig", "libxml-2.0"),
    "expat": ("pkgconfig", "expat"),
    "pkgconfig": ("tool", "pkg-config"),
    "bison": ("tool", "bison"),
    "flex": ("tool", "flex"),
    "doxygen": ("tool", "doxygen"),
    "perl": ("tool", "perl"),
    "python3": ("tool", "python3"),
    "pythoninterp": ("tool", "python3"),
    "liblzma": ("pkgconfig", "liblzma"),
    "gettext": ("tool", "msgfmt"),
    "intl": ("package", "libc6-dev"),
    "iconv": ("package", "libc6-dev"),
    "threads": ("package", "libc6-dev"),
    "boost": ("package", "libboost-dev"),
    "gtest": ("package", "libgtest-dev"),
    "sqlite3": ("pkgconfig", "sqlite3"),
    "readline": ("package", "libreadline-dev"),
    "curses": ("package", "libncurses-dev"),
    "lua": ("package", "liblua5.3-dev"),
    "zstd": ("pkgconfig", "libzstd"),
    "freetype": ("pkgconfig", "freetype2"),
    "gif": ("package", "libgif-dev"),
    "tiff": ("pkgconfig", "libtiff-4"),
    "x11": ("pkgconfig", "x11"),
    "opengl": ("package", "libgl-dev"),
    "glib": ("pkgconfig", "glib-2.0"),
}
# the headers of the C++ standard library (C++23, and the C library's <cNAME> wrappers): never
# looked up in Contents, where any package's /usr/include/<folder>/string would do
CXX_STDLIB_HEADERS = frozenset(
    """
    algorithm any array atomic barrier bit bitset cassert ccomplex cctype cerrno cfenv cfloat charconv chrono
    cinttypes ciso646 climits clocale cmath codecvt compare complex concepts condition_variable coroutine csetjmp
    csignal cstdalign cstdarg cstdbool cstddef cstdint cstdio cstdlib cstring ctgmath ctime cuchar cwchar cwctype
    deque exception execution expected filesystem format forward_list fstream functional future generator
    initializer_list iomanip ios iosfwd iostream istream iterator latch limits list locale map mdspan memory
    memory_resource mutex new numbers numeric optional ostream print queue random ranges ratio regex
    scoped_allocator semaphore set shared_mutex source_location span spanstream sstream stack stacktrace
    stdexcept stdfloat stop_token streambuf string string_view strstream syncstream system_error thread tuple
    type_traits typeindex typeinfo unordered_map unordered_set utility valarray variant vector version
    """.split()
)
_LIBCXX_FLAG = re.compile(r"(?:^|[\s'\"])-stdlib=libc\+\+(?=$|[\s'\"])", re.MULTILINE)
_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.+\-]*"
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("header", re.compile(r"fatal error: ([^\s:'\"]+\.(?:h|hh|hpp|hxx|H|inc|tcc)): No such file or directory")),
    ("header", re.compile(r"fatal error: '([^'\s]+)' file not found")),
    # gcc names an extensionless header bare: only the standard library's are taken
    ("c++-header", re.compile(r"fatal error: ([a-z_]+): No such file or directory")),
    ("pkgconfig", re.compile(rf"No package '({_NAME})' found")),
    ("pkgconfig", re.compile(rf"Package '?({_NAME})'?,? required by '[^']*',? not found")),
    ("pkgconfig", re.compile(rf"Package ({_NAME}) was not found in the pkg-config search path")),
    ("pkgconfig", re.compile(rf"Dependency \"?({_NAME})\"? not found")),
    ("pkgconfig", re.compile(rf"Run-time dependency ({_NAME}) found: NO \(tried pkgconfig")),
    ("cmake", re.compile(rf"package configuration file provided by\s+\"({_NAME})\"")),
    ("cmake-find", re.compile(rf"Could NOT find ({_NAME})")),
    ("library", re.compile(rf"cannot find -l({_NAME})")),
    ("library", re.compile(rf"unable to find library -l({_NAME})")),
    ("tool", re.compile(rf"(?:^|[\s:])({_NAME}): (?:[Cc]ommand )?not found\s*$", re.MULTILINE)),
    ("tool", re.compile(rf"WARNING: '({_NAME})' is missing on your system")),
    ("tool", re.compile(rf"Program '?({_NAME})'? not found")),
    ("tool", re.compile(rf"make(?:\[\d+\])?: ({_NAME}): No such file or directory")),
    ("debian", re.compile(r"Unmet build dependencies: (.+)$", re.MULTILINE)),
    ("pkgconfig-list", re.compile(r"Package requirements \((.+?)\) were not met")),
)
# names that show up in those messages but are no dependency (our own wrappers, shell builtins)
_NOT_TOOLS = {
    "cc",
    "c++",
    "gcc",
    "g++",
    "clang",
    "clang++",
    "ld",
    "make",
    "sh",
    "bash",
    "exec",
    "test",
    "true",
    "false",
    "echo",
    "cd",
    "set",
    "export",
    "then",
    "else",
    "fi",
    "do",
    "done",
    "if",
    "for",
}


@dataclass(frozen=True, order=True)
class Need:
    """One thing a build asked for.

    ``kind`` is header, pkgconfig, cmake, cmake-find, library, tool, package-relation or
    c++-stdlib (``name`` libc++ or libstdc++).
    """

    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


def needs_from_log(text: str) -> list[Need]:
    """Every missing dependency the log names, in a stable order, without duplicates."""
    found: set[Need] = set()
    stdlib = "libc++" if _LIBCXX_FLAG.search(text) else "libstdc++"
    for kind, rx in _PATTERNS:
        for m in rx.finditer(text):
            value = m.group(1).strip()
            if kind == "debian":
                for clause in parse_relations(_unmet_to_relations(value)):
                    if clause:
                        found.add(Need("package-relation", " | ".join(_show_alt(a) for a in clause)))
            elif kind == "pkgconfig-list":
                for name in re.findall(rf"(?:^|\s)({_NAME})(?=\s|$)", value):
                    if not re.fullmatch(r"[\d.]+", name) and name not in ("<", ">", "="):
                        found.add(Need("pkgconfig", name))
            elif kind == "tool":
                if value not in _NOT_TOOLS and not value.startswith(("-", ".")) and "/" not in value:
                    found.add(Need("tool", value))
            elif kind == "c++-header":
                if value in CXX_STDLIB_HEADERS:
                    found.add(Need("c++-stdlib", stdlib))
            elif kind == "header":
                if value in CXX_STDLIB_HEADERS:
                    found.add(Need("c++-stdlib", stdlib))
                elif not value.startswith(("/", ".")) and ".." not in value.split("/"):
                    found.add(Need("header", value))
            else:
                found.add(Need(kind, value))
    return sorted(found)


def _unmet_to_relations(text: str) -> str:
    """dpkg-checkbuilddeps separates unmet relations by spaces: ``a (>= 1) b | c`` -> ``a (>= 1), b | c``."""
    clauses: list[str] = []
    join_next = False
    for token in re.findall(r"[a-z0-9][a-z0-9+.\-]*(?::[a-z0-9]+)?(?:\s*\([^)]*\))?|\|", text):
        if token == "|":
            join_next = True
        elif join_next and clauses:
            clauses[-1] += " | " + token
            join_next = False
        else:
            clauses.append(token)
    return ", ".join(clauses)


def _show_alt(alt: dict) -> str:
    text = alt["name"]
    if alt.get("archqual"):
        text += f":{alt['archqual']}"
    if alt.get("version"):
        text += f" ({alt['version'][0]} {alt['version'][1]})"
    return text


# ----------------------------------------------------------------- Contents patterns

_TRIPLE = "(x86_64-linux-gnu/)?"


def _q(name: str) -> str:
    """Escape for both POSIX ERE and Python (names are ``[A-Za-z0-9_.+-]``)."""
    return re.sub(r"([.+])", r"\\\1", name)


def _patterns(need: Need) -> list[str]:
    """Patterns over Contents paths (no leading slash), valid as POSIX ERE and as Python regexes."""
    q = _q(need.name)
    if need.kind == "header":
        # usr/include/NAME, usr/include/<triple>/NAME, usr/include/<one folder>/NAME
        return [f"^usr/include/([^/]+/)?{q}$"]
    if need.kind == "pkgconfig":
        return [f"^usr/(lib/{_TRIPLE}|share/)pkgconfig/{q}\\.pc$"]
    if need.kind in ("cmake", "cmake-find"):
        lower = _q(need.name.lower())
        names = f"{q}Config|{lower}-config" + (f"|Find{q}" if need.kind == "cmake-find" else "")
        return [f"^usr/(lib/{_TRIPLE}|share/)([^/]+/){{0,3}}({names})\\.cmake$"]
    if need.kind == "library":
        return [f"^usr/lib/{_TRIPLE}lib{q}\\.(so|a)$"]
    if need.kind == "tool":
        return [f"^(usr/)?s?bin/{q}$"]
    return []


_FOREIGN = re.compile(
    r"(?:^|/)(?:lib32|libx32|lib64|i386-linux-gnu|aarch64-linux-gnu|arm-linux-gnueabihf|"
    r"[a-z0-9_]+-w64-mingw32|powerpc[^/]*|s390x[^/]*|mips[^/]*|riscv64[^/]*)(?:/|$)"
)


def _score(need: Need, path: str, pkg: str) -> tuple:
    depth = path.count("/")
    exact = {
        "header": (f"/usr/include/{need.name}", f"/usr/include/x86_64-linux-gnu/{need.name}"),
    }.get(need.kind, ())
    return (
        0 if path in exact else 1,
        depth,
        0 if pkg.endswith("-dev") or need.kind == "tool" else 1,
        len(pkg),
        pkg,
    )


def _ok_package(pkg: str, path: str) -> bool:
    if _FOREIGN.search(path):
        return False
    return not any(s in pkg for s in ("-cross", "mingw", "lib32", "libx32", "-dbgsym"))


_VERSIONED = re.compile(r"(?:^|-)(clang|gcc|g)(?:\+\+)?-(\d+(?:\.\d+)?)$")


def cxx_stdlib_package(stdlib: str, compiler: str | None, *, host_arch: str | None = None) -> str | None:
    """The Debian package with the headers of ``stdlib`` (libc++ or libstdc++) for ``compiler``.

    ``compiler`` is the configuration's compiler command (``clang++-19``, ``g++-12``,
    ``/usr/bin/clang-19``); ``host_arch`` a Debian architecture for a cross build's
    (multiarch) package. None when no package fits (libc++ for gcc).
    """
    name = (compiler or "").rsplit("/", 1)[-1]
    m = _VERSIONED.search(name)
    family = m.group(1) if m else ("clang" if name.startswith("clang") else "gcc")
    version = m.group(2) if m else None
    if stdlib == "libc++":
        if family != "clang":
            return None
        # clang-N's driver looks for /usr/lib/llvm-N/include/c++/v1: libc++-N-dev (it depends on
        # libc++abi-N-dev), not the default libc++-dev of another version
        pkg = f"libc++-{version}-dev" if version else "libc++-dev"
    elif stdlib == "libstdc++":
        pkg = f"libstdc++-{version}-dev" if family != "clang" and version else "g++"
    else:
        return None
    return f"{pkg}:{host_arch}" if host_arch and pkg != "g++" else pkg


def resolve(
    needs: Iterable[Need],
    *,
    archive: BinaryArchive | None = None,
    compiler: str | None = None,
    host_arch: str | None = None,
) -> tuple[dict[Need, str], list[Need]]:
    """({need: package}, needs nothing provides). One Contents search for all of them.

    ``compiler`` (the configuration's C++ compiler command) and ``host_arch`` (a cross
    build's Debian architecture) choose the package of a ``c++-stdlib`` need.
    """
    needs = sorted(set(needs))
    out: dict[Need, str] = {}
    unknown: list[Need] = []
    lookups: dict[Need, list[re.Pattern[str]]] = {}
    rest: list[Need] = []
    for need in needs:
        if need.kind == "package-relation":
            archive = archive or BinaryArchive.load()
            res = archive.satisfy(parse_relations(need.name), profiles=("nocheck",))
            if res.packages:
                out[need] = res.packages[0]
            else:
                unknown.append(need)
            continue
        if need.kind == "c++-stdlib":
            pkg = cxx_stdlib_package(need.name, compiler, host_arch=host_arch)
            if pkg:
                out[need] = pkg
            else:
                unknown.append(need)
            continue
        if need.kind == "tool" and need.name in _TOOL_ALIASES:
            out[need] = _TOOL_ALIASES[need.name]
            continue
        if need.kind == "cmake-find" and need.name.lower() in _CMAKE_FIND:
            kind, value = _CMAKE_FIND[need.name.lower()]
            if kind == "package":
                out[need] = value
                continue
            need = Need(kind, value)
        rest.append(need)
        lookups[need] = [re.compile(p) for p in _patterns(need)]
    hits = search_contents([p.pattern for ps in lookups.values() for p in ps]) if lookups else []
    for need in rest:
        cands = [
            (pkg, path)
            for pkg, path in hits
            if any(p.search(path[1:]) for p in lookups[need]) and _ok_package(pkg, path)
        ]
        if need.kind == "header" and "/" not in need.name:
            # a bare header name in a sub-folder (/usr/include/foo/x.h) only when one package has it
            exact = [c for c in cands if c[1].count("/") == 3 or "/x86_64-linux-gnu/" in c[1]]
            if not exact and len({pkg for pkg, _ in cands}) != 1:
                cands = exact
        if not cands:
            unknown.append(need)
            continue
        out[need] = min(cands, key=lambda c: _score(need, c[1], c[0]))[0]
    for original in needs:  # needs rewritten through _CMAKE_FIND keep their original key
        if original.kind == "cmake-find" and original not in out and original not in unknown:
            kind_value = _CMAKE_FIND.get(original.name.lower())
            if kind_value:
                mapped = Need(*kind_value)
                if mapped in out:
                    out[original] = out.pop(mapped)
                elif mapped in unknown:
                    unknown[unknown.index(mapped)] = original
    return out, unknown
